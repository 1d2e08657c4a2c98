use super::*;
use crate::core::testutil::{
    apply_file_size_limit, child_dir, run_in_child, run_under_file_size_limit, tmp, within,
};
use std::os::fd::AsRawFd;
use std::time::Duration;

const DAY: &str = "2026-01-02";

/// The quarantined bytes and the reason file's fields of the one cut recorded under `ev`.
fn only_quarantined(ev: &Path) -> (Vec<u8>, serde_json::Value) {
    let mut bin = Vec::new();
    let mut reason = Vec::new();
    for e in fs::read_dir(ev.join(QUARANTINE_DIR)).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".bin") {
            bin.push(fs::read(e.path()).unwrap());
        } else if name.ends_with(".reason.json") {
            reason.push(serde_json::from_slice(&fs::read(e.path()).unwrap()).unwrap());
        }
    }
    assert_eq!((bin.len(), reason.len()), (1, 1), "one cut, one reason");
    (bin.remove(0), reason.remove(0))
}

#[test]
fn creates_then_numbers_parts_exclusively() {
    let ev = tmp("create");
    let (a, _) = open_part(&ev, DAY, 1000, 1).unwrap();
    let (b, _) = open_part(&ev, DAY, 1000, 1).unwrap();
    assert!(a.rel.ends_with("part-000001.jsonl"));
    assert!(
        b.rel.ends_with("part-000002.jsonl"),
        "locked part must not be shared"
    );
    drop(a);
    let (c, _) = open_part(&ev, DAY, 1000, 1).unwrap();
    assert!(
        c.rel.ends_with("part-000001.jsonl"),
        "unlocked part is adopted"
    );
}

#[test]
fn adoption_cuts_torn_tail_to_quarantine() {
    let ev = tmp("torn");
    let dir = ev.join("day=2026-01-02");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("part-000001.jsonl"), b"{\"a\":1}\n{\"b\":").unwrap();
    let (p, size) = open_part(&ev, DAY, 1000, 1).unwrap();
    assert_eq!(size, 8);
    assert_eq!(fs::read(&p.path).unwrap(), b"{\"a\":1}\n");
    let (bin, reason) = only_quarantined(&ev);
    assert_eq!(bin, b"{\"b\":");
    assert_eq!(reason["file"], "day=2026-01-02/part-000001.jsonl");
    assert_eq!(
        (reason["offset"].as_u64(), reason["bytes"].as_u64()),
        (Some(8), Some(5))
    );
}

/// The backwards scan for the last newline reads 64 KiB chunks: torn tails shorter and longer
/// than a chunk, in parts shorter and longer than a chunk, and a part with no newline at all
/// (all of it is torn; the scan must stop at offset 0).
#[test]
fn torn_tails_of_any_length_are_cut_whole() {
    for (i, (lines, tail)) in [
        (1, 0),
        (0, 15),
        (1, 100_000),
        (9_000, 10),
        (0, 200_000),
        (9_000, 70_000),
    ]
    .into_iter()
    .enumerate()
    {
        let ev = tmp(&format!("tail{i}"));
        let dir = ev.join(format!("day={DAY}"));
        fs::create_dir_all(&dir).unwrap();
        let good: Vec<u8> = b"{\"a\":1}\n".repeat(lines);
        let torn: Vec<u8> = (0..tail).map(|k| b"{x:\"0123456789"[k % 14]).collect();
        fs::write(
            dir.join("part-000001.jsonl"),
            [&good[..], &torn[..]].concat(),
        )
        .unwrap();
        let ev2 = ev.clone();
        let (p, size) = within(Duration::from_secs(60), move || {
            open_part(&ev2, DAY, 10 << 20, 1).unwrap()
        });
        assert_eq!(size, good.len() as u64, "case {i}");
        assert_eq!(fs::read(&p.path).unwrap(), good, "case {i}");
        if tail == 0 {
            assert!(
                !ev.join(QUARANTINE_DIR).exists(),
                "case {i}: nothing to cut"
            );
            continue;
        }
        let (bin, reason) = only_quarantined(&ev);
        assert!(bin == torn, "case {i}: quarantined {} bytes", bin.len());
        assert_eq!(
            reason["offset"].as_u64(),
            Some(good.len() as u64),
            "case {i}"
        );
        assert_eq!(reason["bytes"].as_u64(), Some(tail as u64), "case {i}");
    }
}

#[test]
fn archived_part_numbers_are_not_reused() {
    let root = tmp("archived");
    let ev = root.join("events");
    let arch = root.join("archive/events/day=2026-01-02");
    fs::create_dir_all(&arch).unwrap();
    fs::write(arch.join("part-000003.parquet"), b"x").unwrap();
    let (p, _) = open_part(&ev, DAY, 1000, 1).unwrap();
    assert!(p.rel.ends_with("part-000004.jsonl"), "{}", p.rel);
}

#[test]
fn abandoned_and_full_parts_are_skipped() {
    let ev = tmp("skip");
    let (a, _) = open_part(&ev, DAY, 10, 1).unwrap();
    a.abandon("test");
    drop(a);
    let (b, _) = open_part(&ev, DAY, 10, 1).unwrap();
    assert!(b.rel.ends_with("part-000002.jsonl"));
    b.append(b"0123456789\n", 0).unwrap();
    drop(b);
    let (c, _) = open_part(&ev, DAY, 10, 1).unwrap();
    assert!(c.rel.ends_with("part-000003.jsonl"));
}

#[test]
fn abandon_marks_the_part_once_with_the_first_reason() {
    let ev = tmp("abandon");
    let (a, _) = open_part(&ev, DAY, 1000, 1).unwrap();
    assert!(!a.is_abandoned());
    a.abandon("write failed: first");
    assert!(a.is_abandoned());
    a.abandon("second");
    let marker = ev.join(format!("day={DAY}/part-000001.jsonl.abandoned"));
    assert_eq!(fs::read_to_string(marker).unwrap(), "write failed: first\n");
}

/// Parent of `child_short_write_and_efbig`: a 64-byte file-size limit.
#[test]
fn a_short_write_is_cut_back_and_efbig_is_reported() {
    run_under_file_size_limit("core::appender::tests::child_short_write_and_efbig", 64);
}

#[test]
#[ignore = "runs in a child process under RLIMIT_FSIZE (a_short_write_is_cut_back_and_efbig_is_reported)"]
fn child_short_write_and_efbig() {
    if !apply_file_size_limit() {
        return;
    }
    let ev = tmp("short");
    let (p, _) = open_part(&ev, DAY, 1000, 1).unwrap();
    let line = [&[b'a'; 31][..], b"\n"].concat();
    p.append(b"", 0)
        .expect("an empty append writes nothing and succeeds");
    p.append(&line, 0).unwrap();
    // 64 bytes from offset 32: the kernel writes 32 of them; the part is cut back to 32.
    let e = p
        .append(&[line.clone(), line.clone()].concat(), 32)
        .unwrap_err();
    match &e {
        Error::Io { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::WriteZero, "{e}");
            assert!(e.to_string().contains("short write: 32 of 64 bytes"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&p.path).unwrap(), line, "no partial line stays");
    p.append(&line, 32).unwrap();
    // At the limit: write() returns -1 with EFBIG, reported as that errno.
    let e = p.append(b"b\n", 64).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EFBIG), "{e}");
    assert_eq!(fs::read(&p.path).unwrap(), [&line[..], &line[..]].concat());
}

fn fd_flags(f: &File) -> (i32, i32) {
    // SAFETY: fcntl queries on a descriptor that `f` keeps open.
    unsafe {
        (
            libc::fcntl(f.as_raw_fd(), libc::F_GETFD),
            libc::fcntl(f.as_raw_fd(), libc::F_GETFL),
        )
    }
}

/// A created part and an adopted one are close-on-exec (a spawned program must not inherit a
/// writer's part); an adopted one was opened non-blocking (a FIFO put in its place must not
/// hang the writer).
#[test]
fn part_descriptors_are_close_on_exec() {
    let ev = tmp("cloexec");
    let (a, _) = open_part(&ev, DAY, 1000, 1).unwrap();
    let (fd, fl) = fd_flags(&a.file);
    assert_ne!(fd & libc::FD_CLOEXEC, 0, "created part");
    // Not O_APPEND: lines go at the data's end, in front of the preallocated zeros.
    assert_eq!(fl & libc::O_APPEND, 0);
    drop(a);
    let (b, _) = open_part(&ev, DAY, 1000, 1).unwrap();
    assert!(b.rel.ends_with("part-000001.jsonl"), "adopted");
    let (fd, fl) = fd_flags(&b.file);
    assert_ne!(fd & libc::FD_CLOEXEC, 0, "adopted part");
    assert_ne!(fl & libc::O_NONBLOCK, 0, "adopted part");
}

/// Writers racing to create the same day directory and parts: every one succeeds, and no two
/// get the same part (numbers 1..=N, each once).
#[test]
fn racing_writers_get_distinct_parts() {
    use std::sync::{Arc, Barrier};
    const THREADS: usize = 4;
    const EACH: usize = 40;
    for round in 0..5 {
        let ev = tmp(&format!("race{round}"));
        let go = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (ev, go) = (ev.clone(), Arc::clone(&go));
                std::thread::spawn(move || {
                    go.wait();
                    // Each keeps its parts (and their locks) until all are joined: none
                    // may be adopted.
                    (0..EACH)
                        .map(|_| open_part(&ev, DAY, 1000, 1).unwrap().0)
                        .collect::<Vec<Part>>()
                })
            })
            .collect();
        let got: Vec<String> = within(Duration::from_secs(120), move || {
            let parts: Vec<Part> = handles
                .into_iter()
                .flat_map(|h| h.join().expect("a racing writer failed"))
                .collect();
            let mut all: Vec<String> = parts.iter().map(|p| p.rel.to_string()).collect();
            all.sort();
            all
        });
        let want: Vec<String> = (1..=THREADS * EACH)
            .map(|n| format!("day={DAY}/part-{n:06}.jsonl"))
            .collect();
        assert_eq!(got, want, "round {round}");
    }
}

/// A file or a symlink (even to a directory) where a day directory belongs is refused, never
/// written through; an unusable path reports the OS's reason for that path.
#[test]
fn only_a_real_directory_is_used_as_a_day_directory() {
    let ev = tmp("notdir");
    let elsewhere = tmp("notdir-target");
    fs::create_dir_all(&ev).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, ev.join(format!("day={DAY}"))).unwrap();
    fs::write(ev.join("day=2026-01-03"), b"").unwrap();
    for day in [DAY, "2026-01-03"] {
        let e = open_part(&ev, day, 1000, 1).unwrap_err();
        assert!(
            e.to_string().contains("exists and is not a directory"),
            "{e}"
        );
    }
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    let e = ensure_dir(&ev.join("day=2026-01-03").join("sub")).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOTDIR), "{e}");
}

/// Directories the writer may not write to: each step reports the OS's EACCES for its path
/// (no endless retry, no recursion). The child drops root first (root may write anywhere).
#[test]
fn unwritable_directories_give_the_os_error() {
    let dir = tmp("eacces");
    fs::create_dir_all(dir.join(format!("day={DAY}"))).unwrap();
    run_in_child("core::appender::tests::child_unwritable", &dir);
}

#[test]
#[ignore = "runs in a child process (unwritable_directories_give_the_os_error)"]
fn child_unwritable() {
    let Some(dir) = child_dir() else {
        return;
    };
    // SAFETY: plain syscalls; the child runs this one test on one thread.
    unsafe {
        if libc::geteuid() == 0 {
            assert_eq!(libc::setgid(65534), 0, "setgid");
            assert_eq!(libc::setuid(65534), 0, "setuid");
        }
    }
    let e = ensure_dir(&dir.join("new").join("deeper")).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EACCES), "{e}");
    let d = dir.clone();
    let e = within(Duration::from_secs(60), move || {
        open_part(&d, DAY, 1000, 1).map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.errno(), Some(libc::EACCES), "{e}");
}

/// Preallocation: a live part keeps `PREALLOC_BYTES` of zeros written ahead of its data,
/// lines land at the data's end (in front of the zeros), and once let go the part ends with
/// its last line.
#[test]
fn a_live_part_keeps_zeros_ahead_and_ends_with_its_last_line_when_dropped() {
    let ev = tmp("prealloc");
    let (mut p, at) = open_part(&ev, DAY, 10 * PREALLOC_BYTES, 1).unwrap();
    p.keep_zeros_ahead(PREALLOC_BYTES);
    p.append(b"{\"a\":1}\n", at).unwrap();
    p.append(b"{\"b\":2}\n", 8).unwrap();
    let len = fs::metadata(&p.path).unwrap().len();
    assert_eq!(
        len,
        8 + PREALLOC_BYTES,
        "zeros written ahead at the first append"
    );
    assert_eq!(data_end(&p.file, len).unwrap(), 16);
    let raw = fs::read(&p.path).unwrap();
    assert_eq!(&raw[..16], b"{\"a\":1}\n{\"b\":2}\n");
    assert!(raw[16..].iter().all(|&b| b == 0));
    let path = p.path.clone();
    drop(p);
    assert_eq!(
        fs::read(&path).unwrap(),
        b"{\"a\":1}\n{\"b\":2}\n",
        "zero tail cut"
    );
}

/// The zeros never reach past the part's size limit (a rotated part stays under it).
#[test]
fn the_zero_tail_stops_at_the_size_limit() {
    let ev = tmp("prelimit");
    let (mut p, at) = open_part(&ev, DAY, 1000, 1).unwrap();
    p.keep_zeros_ahead(PREALLOC_BYTES);
    p.append(b"{\"a\":1}\n", at).unwrap();
    assert_eq!(fs::metadata(&p.path).unwrap().len(), 1000);
}

/// A writer that died leaves its zero tail: adoption cuts it without quarantining anything
/// (zeros are not data), a torn line in front of the zeros goes to quarantine, and the next
/// line lands right after the last complete one.
#[test]
fn adoption_cuts_a_zero_tail_and_quarantines_only_a_torn_line_before_it() {
    let ev = tmp("zerotail");
    let dir = ev.join(format!("day={DAY}"));
    fs::create_dir_all(&dir).unwrap();
    let mut raw = b"{\"a\":1}\n".to_vec();
    raw.resize(8 + 100_000, 0);
    fs::write(dir.join("part-000001.jsonl"), &raw).unwrap();
    let (p, size) = open_part(&ev, DAY, 1 << 30, 1).unwrap();
    assert_eq!(size, 8);
    assert!(!ev.join(QUARANTINE_DIR).exists(), "nothing quarantined");
    p.append(b"{\"b\":2}\n", size).unwrap();
    let path = p.path.clone();
    drop(p);
    assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
    let mut raw = b"{\"a\":1}\n{\"b\":".to_vec();
    raw.resize(13 + 4096, 0);
    fs::write(&path, &raw).unwrap();
    let (_p, size) = open_part(&ev, DAY, 1 << 30, 1).unwrap();
    assert_eq!(size, 8);
    assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}\n");
    assert_eq!(only_quarantined(&ev).0, b"{\"b\":");
}

#[test]
fn data_end_is_after_the_last_non_nul_byte() {
    let ev = tmp("dataend");
    fs::create_dir_all(&ev).unwrap();
    let path = ev.join("f");
    let long = [b"x\n".as_slice(), &[0u8; 200_000]].concat(); // zeros over several chunks
    let torn = [b"x\n{\"b".as_slice(), &[0u8; 3]].concat();
    for (raw, want) in [
        (b"ab\n".to_vec(), 3),
        (Vec::new(), 0),
        (vec![0u8; 5], 0),
        (long, 2),
        (torn, 5),
    ] {
        fs::write(&path, &raw).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(
            data_end(&f, raw.len() as u64).unwrap(),
            want,
            "{:?}",
            &raw[..raw.len().min(8)]
        );
    }
}

/// The zeros are extended in large steps, not per append: over 100 KB of appends the size of
/// the file does not move after the first (each fdatasync finds the size covering the line).
#[test]
fn the_size_stays_put_between_appends() {
    let ev = tmp("presteady");
    let (mut p, mut at) = open_part(&ev, DAY, 10 * PREALLOC_BYTES, 1).unwrap();
    p.keep_zeros_ahead(PREALLOC_BYTES);
    let line = [b"x".repeat(99).as_slice(), b"\n"].concat();
    let mut sizes = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        p.append(&line, at).unwrap();
        at += line.len() as u64;
        sizes.insert(fs::metadata(&p.path).unwrap().len());
    }
    assert_eq!(
        sizes.into_iter().collect::<Vec<_>>(),
        [100 + PREALLOC_BYTES]
    );
    // Past half of the zeros, one extension by PREALLOC_BYTES from the data's end.
    let big = vec![b'y'; (PREALLOC_BYTES / 2) as usize];
    p.append(&[&big[..big.len() - 1], b"\n"].concat(), at)
        .unwrap();
    at += big.len() as u64;
    assert_eq!(fs::metadata(&p.path).unwrap().len(), at + PREALLOC_BYTES);
    assert_eq!(data_end(&p.file, at + PREALLOC_BYTES).unwrap(), at);
}

/// Without `keep_zeros_ahead` (group and os mode) a part grows with its data, no zeros.
#[test]
fn a_part_without_zeros_ahead_grows_with_its_data() {
    let ev = tmp("nozeros");
    let (p, at) = open_part(&ev, DAY, 10 * PREALLOC_BYTES, 1).unwrap();
    p.append(b"{\"a\":1}\n", at).unwrap();
    assert_eq!(fs::read(&p.path).unwrap(), b"{\"a\":1}\n");
}

/// Sparse stretches (holes) read as zeros and are skipped unread: a 1 GiB sparse tail costs no
/// reading; data after a hole, or written zeros after one, are found where they are.
#[test]
fn data_end_skips_holes() {
    use std::os::unix::fs::FileExt;
    let ev = tmp("dataendholes");
    fs::create_dir_all(&ev).unwrap();
    let path = ev.join("f");
    let f = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all_at(b"x\n", 0).unwrap();
    f.set_len(1 << 30).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(data_end(&f, 1 << 30).unwrap(), 2);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    f.write_all_at(&[0u8; 100], (1 << 30) - 100).unwrap(); // written zeros after the hole
    assert_eq!(data_end(&f, 1 << 30).unwrap(), 2);
    f.write_all_at(b"y", (1 << 29) + 7).unwrap(); // data between two holes
    assert_eq!(data_end(&f, 1 << 30).unwrap(), (1 << 29) + 8);
}
