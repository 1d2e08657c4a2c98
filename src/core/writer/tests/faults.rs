//! The writer under real faults and audits, each in a child copy of the test binary: failed
//! group commits under a file-size limit (RLIMIT_FSIZE), each mode's system calls under strace,
//! the flusher thread's signal mask.

use super::guarantees::{cfg, emit_at, flusher_is_idle, part_lines, poll, A1, A2, DAY0, LONG};
use super::*;
use crate::core::testutil::{
    apply_file_size_limit, child_dir, read_data, run_in_child, run_under_file_size_limit,
    run_under_strace,
};

/// A line of 100 KiB against a 64 KiB file-size limit: each commit fails with a short write.
fn failing_group_writer(ev: &Path, interval: Duration) -> (Writer, String) {
    let mut c = cfg(ev, Durability::Group);
    c.commit_interval = interval;
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(100 << 10));
    (Writer::open(c).unwrap(), big)
}

fn assert_abandoned_and_empty(ev: &Path, rel: &str) {
    assert_eq!(fs::metadata(ev.join(rel)).unwrap().len(), 0, "{rel}");
    let marker = fs::read_to_string(ev.join(format!("{rel}.abandoned"))).unwrap();
    assert!(marker.contains("short write"), "{marker}");
}

#[test]
fn a_failed_group_commit_reaches_a_waiter_or_the_next_emit() {
    run_under_file_size_limit(
        "core::writer::tests::faults::child_failed_group_commits",
        64 << 10,
    );
}

#[test]
#[ignore = "runs in a child process under RLIMIT_FSIZE"]
fn child_failed_group_commits() {
    if !apply_file_size_limit() {
        return;
    }
    let ev = tmp("gfail");
    let (w, big) = failing_group_writer(&ev, Duration::ZERO);
    // Seq 1 is committed; seq 2 then fails in the same part, which is cut back to seq 1's end.
    emit_at(&w, DAY0, b"{}").unwrap();
    assert_eq!(w.wait_done(0, Duration::from_secs(120)).done_seq, 1);
    let kept = read_data(&ev.join(A1));
    // wait_done(2, _) covers no event past 2, so it leaves the failure to the next emit.
    assert_eq!(
        emit_at(&w, DAY0, big.as_bytes()).unwrap().0.file.as_ref(),
        A1
    );
    let d = poll("the failed commit", || {
        let d = w.wait_done(2, Duration::ZERO);
        (d.failed_through == 2).then_some(d)
    });
    assert_eq!(d.done_seq, 2);
    let f = d.failure.expect("failure");
    assert!(
        f.path.ends_with(A1) && f.message.contains("short write"),
        "{f:?}"
    );
    match emit_at(&w, DAY0, b"{}") {
        Err(Error::Commit { lost, .. }) => assert_eq!(lost, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(read_data(&ev.join(A1)), kept, "the committed line stays");
    // Seq 3 fails in a new part; wait_done(2, _) covers it: the failure reaches that waiter and
    // not the next emit, which goes to a third part.
    assert_eq!(
        emit_at(&w, DAY0, big.as_bytes()).unwrap().0.file.as_ref(),
        A2
    );
    let d = w.wait_done(2, Duration::from_secs(120));
    assert_eq!((d.done_seq, d.failed_through), (3, 3));
    let (pos, _) = emit_at(&w, DAY0, b"{}").expect("the failure was reported to the waiter");
    w.close().unwrap();
    assert_eq!(&*pos.file, "day=2023-11-14/part-000003.jsonl");
    assert!(ev.join(format!("{A1}.abandoned")).exists());
    assert_abandoned_and_empty(&ev, A2);
    let ls = part_lines(&ev, &pos.file);
    assert_eq!((ls.len(), &ls[0]["seq"]), (1, &serde_json::json!(4)));
}

#[test]
fn a_failed_segment_stops_the_rest_of_its_part_in_the_batch() {
    run_under_file_size_limit(
        "core::writer::tests::faults::child_failed_segment",
        512 << 10,
    );
}

#[test]
#[ignore = "runs in a child process under RLIMIT_FSIZE"]
fn child_failed_segment() {
    if !apply_file_size_limit() {
        return;
    }
    let ev = tmp("gseg");
    let mut c = cfg(&ev, Durability::Group);
    c.commit_interval = LONG;
    let w = Writer::open(c).unwrap();
    // ~1.1 MiB queued for one part: a 1 MiB segment, then a ~100 KiB one. The first is cut
    // short at 512 KiB; the second would fit, but its part is abandoned: not written.
    let data = format!("{{\"x\":\"{}\"}}", "a".repeat(800));
    for _ in 0..1100 {
        emit_at(&w, DAY0, data.as_bytes()).unwrap();
    }
    match w.flush() {
        Err(Error::Commit { lost, .. }) => assert_eq!(lost, 1100),
        other => panic!("{other:?}"),
    }
    assert_abandoned_and_empty(&ev, A1);
    let (pos, _) = emit_at(&w, DAY0, b"{}").unwrap();
    w.close().unwrap();
    assert_eq!(&*pos.file, A2);
    assert_eq!(part_lines(&ev, A2)[0]["seq"], 1101);
}

/// The system calls of each mode on its files, audited with strace: fsync mode fdatasyncs each
/// line before the next write, group mode writes a batch with one write() and one fdatasync,
/// os mode leaves the disk to the OS until close; every created file or directory has its
/// parent directory fsynced.
#[test]
fn each_mode_makes_its_lines_durable_as_documented() {
    let dir = tmp("strace");
    let calls = run_under_strace("core::writer::tests::faults::child_three_modes", &dir);
    let d = dir.canonicalize().unwrap().to_string_lossy().into_owned();
    // The calls on our files, `D/…`; the writers ran one after the other, each starting with
    // the fsync of `D` that follows the creation of its own directory in it.
    let ours: Vec<(String, String)> = calls
        .into_iter()
        .filter(|(_, p)| p == &d || p.starts_with(&format!("{d}/")))
        .map(|(c, p)| (c, p.replacen(&d, "D", 1)))
        .collect();
    let starts: Vec<usize> = (0..ours.len()).filter(|&i| ours[i].1 == "D").collect();
    assert_eq!(starts.len(), 3, "{ours:?}");
    for (k, mode) in ["fsync", "group", "os"].into_iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(ours.len());
        let got = &ours[starts[k]..end];
        let part = format!("D/{mode}/events/{A1}");
        let mut want: Vec<(&str, String)> = vec![
            ("fsync", "D".into()),
            ("fsync", format!("D/{mode}")),
            ("fsync", format!("D/{mode}/events")),
            ("fsync", format!("D/{mode}/events/day=2023-11-14")),
        ];
        let (writes, synced) = match mode {
            "fsync" => (3, true), // each line: write, fdatasync
            "group" => (2, true), // each batch of 500 lines: one write, one fdatasync
            _ => (3, false),      // os: writes only
        };
        for _ in 0..writes {
            want.push(("write", part.clone()));
            if synced {
                want.push(("fdatasync", part.clone()));
            }
        }
        if mode != "group" {
            want.push(("fdatasync", part.clone())); // close() flushes the current part
        }
        let want: Vec<(String, String)> = want.into_iter().map(|(c, p)| (c.into(), p)).collect();
        assert_eq!(got, &want[..], "{mode}");
    }
}

#[test]
#[ignore = "runs in a child process under strace"]
fn child_three_modes() {
    let Some(dir) = child_dir() else {
        return;
    };
    for (mode, durability) in [
        ("fsync", Durability::Fsync),
        ("group", Durability::Group),
        ("os", Durability::Os),
    ] {
        let mut c = cfg(&dir.join(mode).join("events"), durability);
        c.commit_interval = LONG;
        let w = Writer::open(c).unwrap();
        if durability == Durability::Group {
            for _ in 0..2 {
                for _ in 0..500 {
                    emit_at(&w, DAY0, b"{}").unwrap();
                }
                w.flush().unwrap();
            }
        } else {
            for _ in 0..3 {
                emit_at(&w, DAY0, b"{}").unwrap();
            }
        }
        w.close().unwrap();
    }
}

/// Process-directed signals (SIGTERM, SIGINT, SIGHUP) are blocked in the flusher thread, so
/// the kernel delivers them to a thread that can run the embedding runtime's handler. Run in a
/// child process: the only flusher there is this writer's.
#[test]
fn the_flusher_thread_blocks_process_signals() {
    run_in_child(
        "core::writer::tests::faults::child_flusher_signal_mask",
        &tmp("sigmask"),
    );
}

#[test]
#[ignore = "runs in a child process (the_flusher_thread_blocks_process_signals)"]
fn child_flusher_signal_mask() {
    let Some(dir) = child_dir() else {
        return;
    };
    let w = Writer::open(cfg(&dir.join("events"), Durability::Group)).unwrap();
    poll("the flusher to start", || flusher_is_idle(&w, true));
    let mut masks = Vec::new();
    for t in fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == "ledgerx-flusher" {
            let status = fs::read_to_string(t.path().join("status")).unwrap();
            let blk = status
                .lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .unwrap();
            masks.push(u64::from_str_radix(blk.trim(), 16).unwrap());
        }
    }
    assert_eq!(masks.len(), 1, "one flusher");
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        assert_ne!(masks[0] & (1 << (sig - 1)), 0, "signal {sig} not blocked");
    }
    w.close().unwrap();
}
