use super::*;

fn good_line(seq: u64) -> Vec<u8> {
    let mut l = format!(
        "{{\"event_id\":\"0190c1f0-0000-7000-8000-00000000000{seq}\",\"event_type\":\"run.heartbeat\",\"schema_version\":1,\"ts\":\"2026-01-02T03:04:05.000006Z\",\"run_id\":\"r\",\"writer\":\"w\",\"seq\":{seq},\"data\":{{}}"
    )
    .into_bytes();
    let crc = crc32c::crc32c(&l);
    l.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
    l
}

fn scan(buf: &[u8], strict: bool) -> (Columns, Vec<BadLine>, usize) {
    let mut c = Columns::default();
    let mut b = Vec::new();
    let n = scan_buffer(
        buf,
        0,
        ScanOptions {
            strict,
            ..ScanOptions::default()
        },
        &mut c,
        &mut b,
    );
    (c, b, n)
}

#[test]
fn good_bad_torn_and_glued() {
    let mut buf = good_line(1);
    let l2 = good_line(2);
    buf.extend_from_slice(&l2[..40]); // torn, then glued to the next event
    buf.extend_from_slice(&good_line(3));
    let mut flipped = good_line(4);
    flipped[60] ^= 1;
    buf.extend_from_slice(&flipped);
    // A third-party line: every envelope key but no crc (the writer may be any tool).
    buf.extend_from_slice(b"{\"event_id\":\"9f1c2d3e-4b5a-4c6d-8e7f-0123456789ab\",\"event_type\":\"t\",\"schema_version\":1,\"ts\":\"2026-01-02T00:00:00Z\",\"run_id\":null,\"writer\":\"\",\"seq\":1,\"data\":{}}\n");
    let tail = good_line(5);
    buf.extend_from_slice(&tail[..tail.len() - 1]); // unterminated
    let (c, bad, n) = scan(&buf, false);
    assert_eq!(c.seq, vec![1, 3, 1]);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].reason.contains("torn prefix"));
    assert!(bad[1].reason.contains("not a v1 envelope"), "{bad:?}");
    assert_eq!(n, buf.len() - (tail.len() - 1));
    assert_eq!(
        c.ts_us[0],
        clock::parse_ts(b"2026-01-02T03:04:05.000006Z").unwrap()
    );
    assert_eq!(c.run_id.get(2), None);
    let (c, bad, _) = scan(&buf, true);
    assert_eq!(c.len(), 2);
    assert_eq!(bad.len(), 3);
}

/// One flipped bit in a key must not switch the crc off: the line is no longer v1.
#[test]
fn damaged_or_extra_keys_make_a_bad_line() {
    let good = good_line(1);
    let text = String::from_utf8(good.clone()).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (text.replace("\"crc\"", "\"Crc\""), "key 9 is \"Crc\""),
        (text.replace("\"crc\"", "\"src\""), "key 9 is \"src\""),
        (text.replace("\"crc\"", "\"crk\""), "key 9 is \"crk\""),
        (text.replace("\"seq\"", "\"sep\""), "key 7 is \"sep\""),
        (
            text.replace("\"writer\":\"w\",", ""),
            "key 6 is \"seq\", expected \"writer\"",
        ),
        (
            text.replace(",\"data\":{}", ",\"data\":{},\"extra\":1"),
            "key 9 is \"extra\"",
        ),
        (
            text.replace("}\n", ",\"more\":1}\n"),
            "key \"more\" after crc",
        ),
        (
            text.replace(
                "\"event_type\":\"run.heartbeat\",\"schema_version\":1,",
                "\"schema_version\":1,\"event_type\":\"run.heartbeat\",",
            ),
            "key 2 is \"schema_version\"",
        ),
        (
            format!("{}}}\n", &text[..text.find(",\"crc\"").unwrap()])
                .replace("0190c1f0-0000-7000-8000-000000000001", "not-a-uuid"),
            "event_id is not a UUID",
        ),
    ];
    for (line, want) in cases {
        let (c, bad, _) = scan(line.as_bytes(), false);
        assert_eq!(c.len(), 0, "{line}");
        assert_eq!(bad.len(), 1, "{line}");
        assert!(bad[0].reason.contains(want), "{want}: {bad:?}");
    }
    // Only `data` and the crc-less end: a truncated envelope is not v1 either.
    let short = b"{\"event_id\":\"0190c1f0-0000-7000-8000-000000000001\",\"event_type\":\"t\"}\n";
    let (_, bad, _) = scan(short, false);
    assert!(
        bad[0].reason.contains("missing \"schema_version\""),
        "{bad:?}"
    );
}

#[test]
fn batches_end_before_a_string_column_passes_the_arrow_limit() {
    let lines: Vec<Vec<u8>> = (1..=5).map(good_line).collect();
    let all = lines.concat();
    // A line fits while the fullest column (event_id, 36 bytes a line) has room for the
    // whole line: 36 + len fits, 72 + len does not, so batches of two lines.
    let limit = lines[0].len() + 40;
    let (mut pos, mut seqs, mut batches) = (0, Vec::new(), 0);
    while pos < all.len() {
        let mut c = Columns::default();
        let mut b = Vec::new();
        let n = scan_buffer_upto(
            &all[pos..],
            pos as u64,
            ScanOptions::default(),
            &mut c,
            &mut b,
            limit,
            false,
        );
        assert!(n > 0 && b.is_empty(), "{b:?}");
        assert!(c.event_id.values.len() <= limit && c.data.values.len() <= limit);
        assert_eq!(c.offset[0], pos as i64);
        seqs.extend(c.seq);
        pos += n;
        batches += 1;
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(batches, 3, "2 + 2 + 1 lines");
    // A single line over the limit cannot fit any batch: it is bad, not an endless loop.
    let mut c = Columns::default();
    let mut b = Vec::new();
    let n = scan_buffer_upto(&all, 0, ScanOptions::default(), &mut c, &mut b, 10, false);
    assert_eq!(n, all.len());
    assert_eq!(b.len(), 5);
    assert!(c.is_empty());
}

#[test]
fn oversized_lines_are_bad() {
    let mut big = b"{\"x\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 100));
    big.extend_from_slice(b"\"}\n");
    let mut c = Columns::default();
    let mut b = Vec::new();
    let opts = ScanOptions {
        max_line_bytes: 50,
        ..ScanOptions::default()
    };
    scan_buffer(&big, 0, opts, &mut c, &mut b);
    assert!(b[0].reason.contains("exceeds 50 bytes"), "{b:?}");
}

/// A trailing run of NUL bytes (a writer's preallocated space) is not yet written: neither a
/// bad line nor pending bytes; a torn line in front of it stays pending.
#[test]
fn a_zero_tail_is_not_yet_written() {
    let dir = crate::core::testutil::tmp("scanzeros");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("part-000001.jsonl");
    let good = good_line(1);
    for torn in [&b""[..], &good_line(2)[..50]] {
        let mut raw = [&good[..], torn].concat();
        let data = raw.len() as u64;
        raw.resize(raw.len() + 300_000, 0);
        std::fs::write(&path, &raw).unwrap();
        let r = scan_file(&path, 0, ScanOptions::default()).unwrap();
        assert!(r.bad.is_empty(), "{:?}", r.bad);
        assert_eq!(r.columns.seq, vec![1]);
        assert_eq!(r.end_offset, good.len() as u64);
        assert_eq!((r.file_size, r.pending_bytes), (data, torn.len() as u64));
    }
}

/// One read buffer reused from call to call (`scan_file_into`, as a `Scanner`'s threads do)
/// gives what a fresh buffer gives: nothing of an earlier, longer read leaks into the next.
#[test]
fn a_reused_read_buffer_scans_like_a_fresh_one() {
    let dir = crate::core::testutil::tmp("scanreuse");
    std::fs::create_dir_all(&dir).unwrap();
    let long = dir.join("part-000001.jsonl");
    let short = dir.join("part-000002.jsonl");
    std::fs::write(&long, (1..=9).flat_map(good_line).collect::<Vec<u8>>()).unwrap();
    std::fs::write(&short, [good_line(1), good_line(2)[..30].to_vec()].concat()).unwrap();
    let mut buf = Vec::new();
    for (path, start) in [(&long, 0), (&short, 0), (&long, good_line(1).len() as u64)] {
        let fresh = scan_file(path, start, ScanOptions::default()).unwrap();
        let reused = scan_file_into(path, start, ScanOptions::default(), &mut buf).unwrap();
        assert_eq!(reused.columns.seq, fresh.columns.seq);
        assert_eq!(reused.columns.offset, fresh.columns.offset);
        assert_eq!(reused.columns.data.values, fresh.columns.data.values);
        assert_eq!(reused.bad, fresh.bad);
        assert_eq!(
            (reused.end_offset, reused.pending_bytes),
            (fresh.end_offset, fresh.pending_bytes)
        );
    }
}
