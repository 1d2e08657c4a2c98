use super::*;
use crate::core::rules::MAX_TS_US;
use std::fs;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ledgerx-w-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn head(t: &str) -> EventHead<'_> {
    EventHead {
        event_type: t,
        schema_version: 1,
        run_id: Some("r1"),
        event_id: None,
        ts_us: None,
    }
}

fn lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut days: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
    days.sort_by_key(|e| e.file_name());
    for d in days {
        if !d.file_name().to_string_lossy().starts_with("day=") {
            continue;
        }
        let mut parts: Vec<_> = fs::read_dir(d.path()).unwrap().flatten().collect();
        parts.sort_by_key(|e| e.file_name());
        for p in parts {
            let text = fs::read_to_string(p.path()).unwrap();
            out.extend(text.lines().map(String::from));
        }
    }
    out
}

#[test]
fn every_mode_writes_valid_lines_with_crc() {
    for mode in [Durability::Fsync, Durability::Group, Durability::Os] {
        let ev = tmp(&format!("{mode:?}"));
        let mut cfg = Config::new(&ev);
        cfg.durability = mode;
        let w = Writer::open(cfg).unwrap();
        for i in 0..100 {
            let (pos, _) = w
                .emit(&head("run.heartbeat"), format!("{{\"i\":{i}}}").as_bytes())
                .unwrap();
            assert!(pos.file.starts_with("day="));
        }
        w.close().unwrap();
        let ls = lines(&ev);
        assert_eq!(ls.len(), 100);
        for (i, l) in ls.iter().enumerate() {
            let cut = l.rfind(",\"crc\":").unwrap();
            let crc = crc32c::crc32c(&l.as_bytes()[..cut]);
            assert!(l.ends_with(&format!(",\"crc\":\"{crc:08x}\"}}")));
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["seq"], (i + 1) as u64);
            assert_eq!(v["data"]["i"], i as u64);
        }
    }
}

#[test]
fn rotates_and_crosses_midnight() {
    let ev = tmp("rot");
    let mut cfg = Config::new(&ev);
    cfg.max_part_bytes = 1000;
    cfg.durability = Durability::Os;
    let w = Writer::open(cfg).unwrap();
    let day0 = 1_700_006_399_000_000; // 2023-11-14T23:59:59Z
    w.set_fake_now(Some(day0));
    for _ in 0..20 {
        w.emit(&head("run.heartbeat"), b"{}").unwrap();
    }
    w.set_fake_now(Some(day0 + 2_000_000));
    let (pos, _) = w.emit(&head("run.heartbeat"), b"{}").unwrap();
    assert!(
        pos.file.starts_with("day=2023-11-15/part-000001"),
        "{pos:?}"
    );
    w.close().unwrap();
    let parts = fs::read_dir(ev.join("day=2023-11-14")).unwrap().count();
    assert!(parts >= 4, "rotation made {parts} parts");
    for p in fs::read_dir(ev.join("day=2023-11-14")).unwrap().flatten() {
        assert!(p.metadata().unwrap().len() <= 1000);
    }
    assert_eq!(lines(&ev).len(), 21);
}

#[test]
fn refuses_oversized_events_and_bad_run_ids() {
    let ev = tmp("big");
    let mut cfg = Config::new(&ev);
    cfg.max_event_bytes = 400;
    let w = Writer::open(cfg).unwrap();
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(400));
    assert!(matches!(
        w.emit(&head("t"), big.as_bytes()),
        Err(Error::Schema { .. })
    ));
    let mut h = head("t");
    h.run_id = Some("../etc");
    assert!(matches!(w.emit(&h, b"{}"), Err(Error::Schema { .. })));
    for t in [
        "run.created",
        "phase.started",
        "trial.recorded",
        "baseline.completed",
        "artifact.created",
    ] {
        let mut h = head(t);
        h.run_id = None;
        let e = w.emit(&h, b"{}");
        assert!(
            matches!(&e, Err(Error::Schema { message, .. }) if message.contains("run_id")),
            "{t}: {e:?}"
        );
    }
    let mut h = head("alert.ingested");
    h.run_id = None;
    w.emit(&h, b"{}").unwrap();
    w.emit(&head("t"), b"{}").unwrap();
    w.close().unwrap();
    let ls = lines(&ev);
    assert_eq!(ls.len(), 2);
    assert!(
        ls[0].contains("\"seq\":1,"),
        "failed emits must not consume seq"
    );
}

#[test]
fn refuses_bad_migration_overrides() {
    let ev = tmp("ovr");
    let w = Writer::open(Config::new(&ev)).unwrap();
    let dashes = "-".repeat(36);
    for (id, ts) in [
        (Some(dashes.as_str()), Some(1_700_000_000_000_000)),
        (Some("0190c1f0-0000-7000-8000-00000000000z"), None),
        (Some("0190c1f0-0000-7000-8000-00000000000a"), Some(0)),
        (None, Some(-5)),
        (None, Some(MAX_TS_US + 1)),
    ] {
        let mut h = head("t");
        h.event_id = id;
        h.ts_us = ts;
        assert!(
            matches!(w.emit(&h, b"{}"), Err(Error::Schema { .. })),
            "{id:?} {ts:?}"
        );
    }
    let mut h = head("t");
    h.event_id = Some("0190c1f0-0000-7000-8000-00000000000a");
    h.ts_us = Some(1_700_000_000_000_000);
    w.emit(&h, b"{}").unwrap();
    w.close().unwrap();
    let ls = lines(&ev);
    assert_eq!(ls.len(), 1);
    assert!(ls[0].contains("\"event_id\":\"0190c1f0-0000-7000-8000-00000000000a\""));
    assert!(ls[0].contains("\"ts\":\"2023-11-14T22:13:20.000000Z\""));
    assert!(ls[0].contains("\"seq\":1,"));
}

#[test]
fn group_writer_takes_its_own_part_back_after_a_day_switch() {
    let ev = tmp("back");
    let mut cfg = Config::new(&ev);
    // The flusher gathers for 30 s: every segment stays pending until close() flushes.
    cfg.commit_interval = Duration::from_secs(60);
    let w = Writer::open(cfg).unwrap();
    let day0 = 1_700_006_399_000_000; // 2023-11-14T23:59:59Z
    let mut files = Vec::new();
    for ts in [day0, day0 + 2_000_000, day0 - 1_000_000, day0 + 3_000_000] {
        let mut h = head("t");
        h.ts_us = Some(ts);
        files.push(w.emit(&h, b"{}").unwrap().0.file.to_string());
    }
    w.close().unwrap();
    assert_eq!(
        files,
        [
            "day=2023-11-14/part-000001.jsonl",
            "day=2023-11-15/part-000001.jsonl",
            "day=2023-11-14/part-000001.jsonl",
            "day=2023-11-15/part-000001.jsonl",
        ]
    );
    for day in ["day=2023-11-14", "day=2023-11-15"] {
        assert_eq!(fs::read_dir(ev.join(day)).unwrap().count(), 1, "{day}");
    }
    let seqs: Vec<String> = lines(&ev)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].to_string())
        .collect();
    assert_eq!(seqs, ["1", "3", "2", "4"]);
}

#[test]
fn group_events_queued_for_a_part_abandoned_before_their_commit_fail() {
    // Two events wait in the queue (60 s commit interval) when their part is abandoned, as a
    // failed write or fdatasync of an earlier batch does: they were never written, so their
    // commit fails instead of reporting them durable.
    let ev = tmp("abandoned-queued");
    let mut cfg = Config::new(&ev);
    cfg.commit_interval = Duration::from_secs(60);
    let w = Writer::open(cfg).unwrap();
    w.emit(&head("t"), b"{}").unwrap();
    w.emit(&head("t"), b"{}").unwrap();
    let part = lock(&w.shared.state).current.clone().unwrap();
    part.abandon("test: an earlier commit failed");
    let err = w.flush().unwrap_err();
    assert!(matches!(err, Error::Commit { lost: 2, .. }), "{err}");
    assert_eq!(w.wait_done(0, Duration::ZERO).failed_through, 2);
    let jsonl = |ev: &Path| -> usize {
        let day = fs::read_dir(ev)
            .unwrap()
            .flatten()
            .find(|d| d.file_name().to_string_lossy().starts_with("day="));
        let parts = fs::read_dir(day.unwrap().path()).unwrap().flatten();
        parts
            .filter(|p| p.path().extension().is_some_and(|x| x == "jsonl"))
            .map(|p| {
                crate::core::testutil::read_data(&p.path())
                    .split(|&b| b == b'\n')
                    .count()
                    - 1
            })
            .sum()
    };
    assert_eq!(jsonl(&ev), 0);
    // The next event goes to a new part and is made durable.
    w.emit(&head("t"), b"{}").unwrap();
    w.flush().unwrap();
    assert_eq!(jsonl(&ev), 1);
    w.close().unwrap();
    let _ = fs::remove_dir_all(&ev);
}

mod faults;
mod guarantees;

#[test]
fn envelope_follows_each_events_type_version_and_run_id() {
    // The envelope text around the timestamp is kept between lines (`line::Heads`): every
    // change of event type, schema version or run id (to and from none) must show in the line.
    for mode in [Durability::Group, Durability::Os] {
        let ev = tmp(&format!("heads-{mode:?}"));
        let mut cfg = Config::new(&ev);
        cfg.durability = mode;
        cfg.writer_id = Some("w-\"q\"".into());
        let w = Writer::open(cfg).unwrap();
        let heads = [
            ("trial.recorded", 1, Some("r1")),
            ("trial.recorded", 1, Some("r1")),
            ("trial.recorded", 2, Some("r1")),
            ("trial.recorde", 2, Some("r1")),
            ("trial.recorde", 2, Some("r12")),
            ("alert.ingested", 2, None),
            ("alert.ingested", 2, None),
            ("trial.recorded", 1, Some("r1")),
            ("x.\"y\"", 7, Some("r")),
        ];
        for (t, v, r) in heads {
            let h = EventHead {
                event_type: t,
                schema_version: v,
                run_id: r,
                event_id: None,
                ts_us: None,
            };
            w.emit(&h, b"{}").unwrap();
        }
        w.close().unwrap();
        let ls = lines(&ev);
        assert_eq!(ls.len(), heads.len());
        for (l, (t, v, r)) in ls.iter().zip(heads) {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(j["event_type"], t, "{l}");
            assert_eq!(j["schema_version"], v, "{l}");
            assert_eq!(j["run_id"], serde_json::json!(r), "{l}");
            assert_eq!(j["writer"], "w-\"q\"", "{l}");
            let keys: Vec<_> = j.as_object().unwrap().keys().cloned().collect();
            assert_eq!(
                keys,
                [
                    "event_id",
                    "event_type",
                    "schema_version",
                    "ts",
                    "run_id",
                    "writer",
                    "seq",
                    "data",
                    "crc"
                ]
            );
        }
    }
}

#[test]
fn group_events_become_durable_without_flush_after_each_idle_spell() {
    // The flusher waits idle while nothing is queued and the first emit after that wakes it
    // (the emit clears the idle flag so later ones skip the wake-up): no flush() here.
    let ev = tmp("idle-wake");
    let mut cfg = Config::new(&ev);
    cfg.durability = Durability::Group;
    cfg.commit_interval = Duration::from_millis(1);
    let w = Writer::open(cfg).unwrap();
    let mut seq = 0;
    for round in 0..5 {
        for _ in 0..50 {
            w.emit(&head("run.heartbeat"), b"{}").unwrap();
            seq += 1;
        }
        let d = w.wait_done(seq - 1, Duration::from_secs(10));
        assert!(d.done_seq >= seq, "round {round}: {d:?}");
        std::thread::sleep(Duration::from_millis(20)); // the flusher goes idle
    }
    w.close().unwrap();
    assert_eq!(lines(&ev).len(), 250);
}
