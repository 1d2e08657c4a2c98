//! The writer's guarantees, each checked so that it fails when the guarantee is broken: size
//! limits at their exact bounds, part take-back and release, group commit (flush, wait_done,
//! backpressure, the flusher's urgency and buffer pool). Faults and syscall audits: `faults.rs`.

use super::*;
use crate::core::testutil::{read_data, within, RemoveOnDrop};
use std::sync::atomic::AtomicUsize;

pub(super) const DAY0: i64 = 1_700_006_399_000_000; // 2023-11-14T23:59:59Z
const DAY1: i64 = DAY0 + 2_000_000; // 2023-11-15
pub(super) const A1: &str = "day=2023-11-14/part-000001.jsonl";
pub(super) const A2: &str = "day=2023-11-14/part-000002.jsonl";
const B1: &str = "day=2023-11-15/part-000001.jsonl";
pub(super) const LONG: Duration = Duration::from_secs(600); // the flusher gathers 300 s: only flush commits

pub(super) fn cfg(ev: &Path, mode: Durability) -> Config {
    let mut c = Config::new(ev);
    c.durability = mode;
    c.writer_id = Some("w-test".into());
    c
}

pub(super) fn emit_at(w: &Writer, ts: i64, data: &[u8]) -> Result<(Position, bool)> {
    let mut h = head("t");
    h.ts_us = Some(ts);
    w.emit(&h, data)
}

/// The length of the line `emit_at(_, DAY0, data)` writes (seq below 10), measured.
pub(super) fn line_len(data: &[u8]) -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    let ev = tmp(&format!("probe{}", N.fetch_add(1, Ordering::Relaxed)));
    let w = Writer::open(cfg(&ev, Durability::Os)).unwrap();
    let (pos, _) = emit_at(&w, DAY0, data).unwrap();
    w.close().unwrap();
    fs::metadata(ev.join(&*pos.file)).unwrap().len()
}

/// Poll `f` (every 5 ms, deadline 60 s) until it gives a value.
pub(super) fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The flusher runs from store(false) of `flusher_idle` to its gathering wait without letting
/// go of the state lock: seen false under the lock after it was idle, it is in that wait and will
/// not look at the queue again before the commit interval or a flush.
pub(super) fn flusher_is_idle(w: &Writer, idle: bool) -> Option<()> {
    let _st = lock(&w.shared.state);
    (w.shared.flusher_idle.load(Ordering::Acquire) == idle).then_some(())
}

pub(super) fn part_lines(ev: &Path, rel: &str) -> Vec<serde_json::Value> {
    let text = String::from_utf8(read_data(&ev.join(rel))).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn durability_names_parse() {
    assert_eq!(Durability::parse("fsync"), Some(Durability::Fsync));
    assert_eq!(Durability::parse("group"), Some(Durability::Group));
    assert_eq!(Durability::parse("os"), Some(Durability::Os));
    assert_eq!(Durability::parse("FSYNC"), None);
    assert_eq!(Durability::parse(""), None);
}

#[test]
fn the_writer_id_is_the_one_in_every_line() {
    let ev = tmp("wid");
    let w = Writer::open(cfg(&ev, Durability::Os)).unwrap();
    assert_eq!(w.writer_id(), "w-test");
    emit_at(&w, DAY0, b"{}").unwrap();
    drop(w);
    let ev2 = tmp("wid2");
    let w2 = Writer::open(Config::new(&ev2)).unwrap();
    let id = w2.writer_id();
    w2.emit(&head("t"), b"{}").unwrap();
    w2.close().unwrap();
    for (dir, id) in [(&ev, "w-test".to_string()), (&ev2, id)] {
        let v: serde_json::Value = serde_json::from_str(&lines(dir)[0]).unwrap();
        assert_eq!(v["writer"], id.as_str());
    }
    assert_eq!(events_dir(Path::new("/srv/l")), Path::new("/srv/l/events"));
}

#[test]
fn close_is_final_and_idempotent() {
    let ev = tmp("closed");
    let w = Writer::open(cfg(&ev, Durability::Group)).unwrap();
    assert!(!w.is_closed());
    emit_at(&w, DAY0, b"{}").unwrap();
    w.close().unwrap();
    assert!(w.is_closed());
    assert!(w.wait_done(1, Duration::ZERO).closed);
    assert!(matches!(emit_at(&w, DAY0, b"{}"), Err(Error::Closed)));
    w.close().unwrap();
    assert_eq!(lines(&ev).len(), 1);
}

#[test]
fn dropping_a_group_writer_commits_what_it_queued() {
    let ev = tmp("drop");
    let mut c = cfg(&ev, Durability::Group);
    c.commit_interval = LONG;
    let w = Writer::open(c).unwrap();
    for _ in 0..3 {
        emit_at(&w, DAY0, b"{}").unwrap();
    }
    drop(w);
    assert_eq!(lines(&ev).len(), 3);
}

#[test]
fn only_fsync_mode_leaves_an_fdatasync_to_run() {
    for (mode, want) in [
        (Durability::Fsync, true),
        (Durability::Os, false),
        (Durability::Group, false),
    ] {
        let ev = tmp(&format!("ticket-{mode:?}"));
        let w = Writer::open(cfg(&ev, mode)).unwrap();
        let mut h = head("t");
        h.ts_us = Some(DAY0);
        let e = w.emit_deferred(&h, b"{}").unwrap();
        assert_eq!(e.sync.is_some(), want, "{mode:?}");
        assert_eq!((e.seq, e.pos.offset, e.backpressure), (1, 0, false));
        if let Some(t) = &e.sync {
            t.sync().unwrap();
        }
        w.close().unwrap();
    }
}

#[test]
fn event_and_part_size_limits_are_inclusive() {
    let l = line_len(b"{}");
    for (max, ok) in [(l, true), (l - 1, false)] {
        let ev = tmp(&format!("maxev{max}"));
        let mut c = cfg(&ev, Durability::Os);
        c.max_event_bytes = max as usize;
        let w = Writer::open(c).unwrap();
        let r = emit_at(&w, DAY0, b"{}");
        assert_eq!(r.is_ok(), ok, "max_event_bytes {max}, line {l}: {r:?}");
    }
    let ev = tmp("maxpart");
    let mut c = cfg(&ev, Durability::Os);
    c.max_part_bytes = 3 * l;
    let w = Writer::open(c).unwrap();
    let got: Vec<(String, u64)> = (0..4)
        .map(|_| {
            let (p, _) = emit_at(&w, DAY0, b"{}").unwrap();
            (p.file.to_string(), p.offset)
        })
        .collect();
    let want = [(A1, 0), (A1, l), (A1, 2 * l), (A2, 0)].map(|(f, o)| (f.to_string(), o));
    assert_eq!(got, want);
}

/// A group writer keeps the part it left at a day switch while queued bytes hold it, and takes
/// it back when it returns to that day, but only while the line fits (3 lines a part here).
#[test]
fn group_writer_takes_a_part_back_only_while_it_has_room() {
    let l = line_len(b"{}");
    let ev = tmp("backroom");
    let mut c = cfg(&ev, Durability::Group);
    c.commit_interval = LONG;
    c.max_part_bytes = 3 * l;
    let w = Writer::open(c).unwrap();
    let files: Vec<String> = [DAY0, DAY1, DAY0, DAY1, DAY0, DAY1, DAY0]
        .iter()
        .map(|&ts| emit_at(&w, ts, b"{}").unwrap().0.file.to_string())
        .collect();
    w.close().unwrap();
    assert_eq!(files, [A1, B1, A1, B1, A1, B1, A2]);
    assert_eq!(fs::metadata(ev.join(A1)).unwrap().len(), 3 * l);
}

/// An os-mode writer lets go of the part it leaves at a day switch: another writer adopts it.
#[test]
fn a_part_left_at_a_day_switch_is_free_for_another_writer() {
    let l = line_len(b"{}");
    let ev = tmp("release");
    let w1 = Writer::open(cfg(&ev, Durability::Os)).unwrap();
    emit_at(&w1, DAY0, b"{}").unwrap();
    emit_at(&w1, DAY1, b"{}").unwrap();
    let w2 = Writer::open(cfg(&ev, Durability::Os)).unwrap();
    let (pos, _) = emit_at(&w2, DAY0, b"{}").unwrap();
    assert_eq!((&*pos.file, pos.offset), (A1, l));
}

/// A group writer keeps the part it left while queued bytes hold it, and lets go once the
/// flusher has written them: then another writer adopts it.
#[test]
fn a_group_writer_lets_go_of_a_left_part_once_it_is_committed() {
    let l = line_len(b"{}");
    let ev = tmp("release-group");
    let mut c = cfg(&ev, Durability::Group);
    c.commit_interval = LONG;
    let w1 = Writer::open(c).unwrap();
    emit_at(&w1, DAY0, b"{}").unwrap();
    emit_at(&w1, DAY1, b"{}").unwrap();
    let w2 = Writer::open(cfg(&ev, Durability::Os)).unwrap();
    assert_eq!(
        &*emit_at(&w2, DAY0, b"{}").unwrap().0.file,
        A2,
        "A1 is still held"
    );
    w1.flush().unwrap();
    let w3 = Writer::open(cfg(&ev, Durability::Os)).unwrap();
    let (pos, _) = emit_at(&w3, DAY0, b"{}").unwrap();
    assert_eq!((&*pos.file, pos.offset), (A1, l));
}

#[test]
fn group_flush_commits_everything_queued_in_one_batch() {
    let ev = tmp("flush");
    let mut c = cfg(&ev, Durability::Group);
    c.commit_interval = LONG;
    let w = Arc::new(Writer::open(c).unwrap());
    for i in 0..10 {
        emit_at(&w, DAY0, format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
    let w2 = Arc::clone(&w);
    within(Duration::from_secs(120), move || w2.flush()).unwrap();
    assert_eq!(
        part_lines(&ev, A1).len(),
        10,
        "flush returned before the commit"
    );
    let s = w.commit_stats();
    assert_eq!((s.batches, s.events), (1, 10));
    // One batch, in the bucket i with 2^i <= its latency < 2^(i+1) (the last bucket is open).
    let i = s.latency_log2_us.iter().position(|&n| n == 1).unwrap();
    assert_eq!(s.latency_log2_us.iter().sum::<u64>(), 1);
    let lat = s.max_latency_us.max(1);
    assert!(
        1u64 << i <= lat && (i == 23 || lat < 2u64 << i),
        "{lat} us in bucket {i}"
    );
    // The flush is over: the flusher gathers again, a new event waits for the interval.
    emit_at(&w, DAY0, b"{}").unwrap();
    let d = w.wait_done(10, Duration::from_secs(2));
    assert_eq!(
        d.done_seq, 10,
        "committed at once: the flusher still sees a flush waiter"
    );
    w.close().unwrap();
    assert_eq!(part_lines(&ev, A1).len(), 11);
}

#[test]
fn wait_done_waits_for_the_commit_and_not_for_events_never_emitted() {
    let ev = tmp("waitdone");
    let mut c = cfg(&ev, Durability::Group);
    c.commit_interval = Duration::from_millis(400); // gathers 200 ms
    let w = Arc::new(Writer::open(c).unwrap());
    emit_at(&w, DAY0, b"{}").unwrap();
    let d = w.wait_done(0, Duration::from_secs(120));
    assert_eq!((d.done_seq, d.failed_through, d.closed), (1, 0, false));
    assert!(d.failure.is_none());
    assert_eq!(part_lines(&ev, A1).len(), 1, "done means written");
    for after in [1, 5] {
        let w2 = Arc::clone(&w);
        let d = within(Duration::from_secs(60), move || {
            w2.wait_done(after, Duration::from_secs(600))
        });
        assert_eq!(d.done_seq, 1, "after {after}");
    }
    w.close().unwrap();
}

/// Group mode with over 64 MiB queued asks the caller to wait; wait_drained returns once the
/// flusher took the queue (at once, flusher left alone, with 32 MiB or less queued). The
/// flusher is made to sit in its 300 s gathering wait first, so the queue holds exactly what
/// was emitted: 64 MiB is not over the limit, one more line is.
#[test]
fn backpressure_past_64_mib_queued_and_wait_drained_clears_it() {
    let small = b"{\"x\":\"\"}";
    let l0 = line_len(small);
    let data = |len: u64| format!("{{\"x\":\"{}\"}}", "a".repeat((len - l0) as usize));
    let ev = tmp("bp");
    let _rm = RemoveOnDrop(ev.clone()); // 64 MiB
    let mut c = cfg(&ev, Durability::Group);
    c.commit_interval = LONG;
    let w = Arc::new(Writer::open(c).unwrap());
    poll("the flusher to start", || flusher_is_idle(&w, true));
    let mut flags = vec![emit_at(&w, DAY0, small).unwrap().1];
    poll("the flusher to gather", || flusher_is_idle(&w, false));
    let mib16 = 16u64 << 20;
    for len in [mib16, mib16 - l0] {
        flags.push(emit_at(&w, DAY0, data(len).as_bytes()).unwrap().1);
    }
    // Exactly 32 MiB queued, half the limit: wait_drained returns without waking the flusher.
    let w2 = Arc::clone(&w);
    within(Duration::from_secs(60), move || w2.wait_drained());
    assert_eq!(
        w.wait_done(0, Duration::from_secs(2)).done_seq,
        0,
        "flusher woken"
    );
    for len in [mib16, mib16] {
        flags.push(emit_at(&w, DAY0, data(len).as_bytes()).unwrap().1);
    }
    flags.push(emit_at(&w, DAY0, small).unwrap().1);
    assert_eq!(flags, [false, false, false, false, false, true]);
    let w2 = Arc::clone(&w);
    within(Duration::from_secs(120), move || w2.wait_drained());
    assert!(
        !emit_at(&w, DAY0, small).unwrap().1,
        "wait_drained left the queue full"
    );
    w.close().unwrap();
    let size = fs::metadata(ev.join(A1)).unwrap().len();
    assert_eq!(size, 4 * mib16 + 2 * l0);
}

/// A generated event id is a UUIDv7 whose 48-bit prefix is the event's Unix millisecond.
#[test]
fn event_ids_carry_the_event_millisecond() {
    let ev = tmp("uuid7");
    let w = Writer::open(cfg(&ev, Durability::Os)).unwrap();
    let ts = DAY0 + 123_456; // .123456 s: millisecond 123
    emit_at(&w, ts, b"{}").unwrap();
    w.close().unwrap();
    let v = &part_lines(&ev, A1)[0];
    let id = v["event_id"].as_str().unwrap().replace('-', "");
    assert_eq!(
        u64::from_str_radix(&id[..12], 16).unwrap(),
        (ts / 1000) as u64
    );
    assert_eq!(&id[12..13], "7", "version 7: {id}");
}

/// Group mode leaves each line's event id and crc to the flusher: every line on disk still has
/// its crc over the bytes before `,"crc":`, a generated id is a distinct UUIDv7 of the event's
/// millisecond and a given id is kept, across several segments (1 MiB each) of one commit.
#[test]
fn group_lines_get_their_event_id_and_crc_from_the_flusher() {
    let ev = tmp("deferred");
    let w = Writer::open(cfg(&ev, Durability::Group)).unwrap();
    let given = "0190c1f0-0000-7000-8000-00000000000a";
    let pad = "x".repeat(300 << 10);
    for i in 0..12u32 {
        let mut h = head("t");
        h.ts_us = Some(DAY0 + i64::from(i) * 1000);
        if i % 5 == 3 {
            h.event_id = Some(given);
        }
        let data = format!("{{\"i\":{i},\"pad\":\"{pad}\"}}");
        w.emit(&h, data.as_bytes()).unwrap();
    }
    w.close().unwrap();
    let text = fs::read_to_string(ev.join(A1)).unwrap();
    let mut ids = std::collections::HashSet::new();
    for (i, l) in text.lines().enumerate() {
        let cut = l.rfind(",\"crc\":").unwrap();
        let crc = crc32c::crc32c(&l.as_bytes()[..cut]);
        assert!(
            l.ends_with(&format!(",\"crc\":\"{crc:08x}\"}}")),
            "line {i}"
        );
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["data"]["i"], i as u64);
        let id = v["event_id"].as_str().unwrap();
        if i % 5 == 3 {
            assert_eq!(id, given);
            continue;
        }
        assert!(ids.insert(id.to_string()), "repeated id {id}");
        let hex = id.replace('-', "");
        let ms = (DAY0 / 1000) as u64 + i as u64;
        assert_eq!(u64::from_str_radix(&hex[..12], 16).unwrap(), ms, "{id}");
        assert_eq!(&hex[12..13], "7", "version 7: {id}");
    }
    assert_eq!(ids.len(), 10);
}

/// The flusher commits at once, without waiting for the commit interval, when it finds more
/// than 16 MiB (a quarter of the backpressure limit) queued; exactly 16 MiB waits.
#[test]
fn a_queue_over_16_mib_is_committed_without_waiting_for_the_interval() {
    let l0 = line_len(b"{\"x\":\"\"}");
    let data = |len: u64| format!("{{\"x\":\"{}\"}}", "a".repeat((len - l0) as usize));
    for (len, urgent) in [(16u64 << 20, false), ((16 << 20) + 1, true)] {
        let ev = tmp(&format!("urgent{len}"));
        let _rm = RemoveOnDrop(ev.clone());
        let mut c = cfg(&ev, Durability::Group);
        c.commit_interval = LONG;
        c.max_event_bytes = 32 << 20;
        let w = Writer::open(c).unwrap();
        poll("the flusher to start", || flusher_is_idle(&w, true));
        // The emit wakes the idle flusher, which then finds exactly this line queued.
        emit_at(&w, DAY0, data(len).as_bytes()).unwrap();
        let wait = if urgent { 60 } else { 3 };
        let d = w.wait_done(0, Duration::from_secs(wait));
        assert_eq!(d.done_seq, u64::from(urgent), "{len} bytes queued");
        w.close().unwrap();
        assert_eq!(fs::metadata(ev.join(A1)).unwrap().len(), len);
    }
}

/// The flusher hands emptied segment buffers back for reuse, at most 16, none over 2 MiB of
/// capacity: a burst of huge events must not leave the writer holding their memory.
#[test]
fn the_segment_buffer_pool_is_bounded() {
    let l0 = line_len(b"{\"x\":\"\"}");
    let data = |len: u64| format!("{{\"x\":\"{}\"}}", "a".repeat((len - l0) as usize));
    let ev = tmp("bufpool");
    let _rm = RemoveOnDrop(ev.clone());
    let mut c = cfg(&ev, Durability::Group);
    c.commit_interval = LONG;
    let w = Writer::open(c).unwrap();
    poll("the flusher to start", || flusher_is_idle(&w, true));
    // One segment each (15 MiB in all: the flusher stays in its gathering wait): a 1.5 MiB
    // line (its buffer grows to 2 MiB), a 3 MiB line (3 MiB), then 18 lines of 600 KiB (1 MiB).
    let mut sizes = vec![3 << 19, 3 << 20];
    sizes.extend([600 << 10; 18]);
    for len in sizes {
        emit_at(&w, DAY0, data(len).as_bytes()).unwrap();
    }
    w.flush().unwrap();
    let caps: Vec<usize> = lock(&w.shared.state)
        .free_bufs
        .iter()
        .map(|b| b.0.capacity())
        .collect();
    w.close().unwrap();
    let mib = 1 << 20;
    let mut want = vec![2 * mib];
    want.extend([mib; 15]);
    assert_eq!(caps, want);
}

#[test]
fn batched_tickets_know_their_part_and_an_abandoned_part_is_not_synced_again() {
    let ev = tmp("ticket-batch");
    let mut c = cfg(&ev, Durability::Fsync);
    c.max_part_bytes = line_len(b"{}") * 2; // two lines per part
    let w = Writer::open(c).unwrap();
    let mut h = head("t");
    h.ts_us = Some(DAY0);
    let t: Vec<SyncTicket> = (0..3)
        .map(|_| w.emit_deferred(&h, b"{}").unwrap().sync.unwrap())
        .collect();
    assert!(t[0].same_part(&t[1]), "one fdatasync serves both");
    assert!(!t[1].same_part(&t[2]), "the third line is in the next part");
    t[0].sync_unless_abandoned().unwrap();
    // An fdatasync of part 1 failed: the line of t[1], written before, may be lost whatever a
    // later fdatasync would say, so it is refused without one; part 2 is unaffected.
    t[0].part.abandon("test: an fdatasync of it failed");
    let err = t[1].sync_unless_abandoned().unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.raw_os_error() == Some(libc::EIO)),
        "{err}"
    );
    t[2].sync_unless_abandoned().unwrap();
    w.close().unwrap();
}
