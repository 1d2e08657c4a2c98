//! Property-based fuzz targets (proptest) for the scanner, the JSON checker and the validator.
//! `cargo test` runs a bounded number of cases (PROPTEST_CASES, default 256 per target);
//! `make soak` runs many more.

use super::json::{Checker, Tape};
use super::scanner::{scan_buffer, BadLine, Columns, ScanOptions};
use super::schema::{Schema, TapeNode};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn scan(buf: &[u8], strict: bool) -> (Columns, Vec<BadLine>, usize) {
    let mut c = Columns::default();
    let mut b = Vec::new();
    let opts = ScanOptions {
        strict,
        ..ScanOptions::default()
    };
    let n = scan_buffer(buf, 0, opts, &mut c, &mut b);
    (c, b, n)
}

/// A line as a writer writes it, crc included.
fn writer_line(id: u128, ty: &str, ts_us: i64, seq: i64, data: &Value) -> Vec<u8> {
    let id = format!("{:032x}", id);
    let eid = format!(
        "{}-{}-7{}-8{}-{}",
        &id[..8],
        &id[8..12],
        &id[13..16],
        &id[17..20],
        &id[20..]
    );
    let ts = String::from_utf8(super::clock::format_ts(ts_us).to_vec()).unwrap();
    let mut l = format!(
        "{{\"event_id\":\"{eid}\",\"event_type\":{},\"schema_version\":1,\"ts\":\"{ts}\",\"run_id\":null,\"writer\":\"w\",\"seq\":{seq},\"data\":{}",
        Value::from(ty),
        data
    )
    .into_bytes();
    let crc = crc32c::crc32c(&l);
    l.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
    l
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn data_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_]{1,5}", json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

fn any_line() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u128>(),
        "[a-z]{1,6}\\.[a-z]{1,6}",
        0i64..4_102_444_800_000_000,
        1i64..1000,
        data_object(),
    )
        .prop_map(|(id, ty, ts, seq, data)| writer_line(id, &ty, ts, seq, &data))
}

/// Bytes that look like a damaged log: valid lines, pieces of them, and noise.
fn log_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        any_line(),
        (any_line(), any::<prop::sample::Index>())
            .prop_map(|(l, i)| l[..i.index(l.len())].to_vec()),
        prop::collection::vec(any::<u8>(), 0..24),
        prop::sample::select(vec![
            b"\n".to_vec(),
            b"\r\n".to_vec(),
            b"{}\n".to_vec(),
            b"\xef\xbb\xbf".to_vec(),
            b"{\"event_id\":".to_vec(),
        ]),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

proptest! {
    // Cases from PROPTEST_CASES (default 256); a failure is printed, not saved to a file.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any bytes: no panic, and every complete line is accounted for exactly once: the good
    /// rows and the bad lines tile the consumed bytes, which end at the last `\n`.
    #[test]
    fn scanner_accounts_for_every_byte(buf in log_bytes(), strict in any::<bool>()) {
        let (c, bad, n) = scan(&buf, strict);
        let want = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        prop_assert_eq!(n, want);
        let mut spans: Vec<(u64, u64)> = bad.iter().map(|b| (b.offset, b.len)).collect();
        spans.extend((0..c.len()).map(|i| (c.offset[i] as u64, c.line_bytes[i] as u64)));
        spans.sort();
        let mut at = 0u64;
        for (off, len) in spans {
            prop_assert_eq!(off, at, "gap or overlap at {}", at);
            prop_assert!(len > 0);
            at += len;
        }
        prop_assert_eq!(at, n as u64);
        for i in 0..c.len() {
            let end = (c.offset[i] + c.line_bytes[i]) as usize;
            prop_assert_eq!(buf[end - 1], b'\n');
        }
    }

    /// A writer's line scans back to what was written.
    #[test]
    fn writer_lines_scan_back(id in any::<u128>(), ts in 0i64..4_102_444_800_000_000,
                              seq in 1..=i64::MAX, data in data_object()) {
        let line = writer_line(id, "t.x", ts, seq, &data);
        let (c, bad, _) = scan(&line, true);
        prop_assert!(bad.is_empty(), "{:?}", bad);
        prop_assert_eq!(c.ts_us[0], ts);
        prop_assert_eq!(c.seq[0], seq);
        let back: Value = serde_json::from_slice(c.data.get(0).unwrap()).unwrap();
        prop_assert_eq!(back, data);
    }

    /// One flipped bit anywhere in a writer's line never yields an event, strict or not: the
    /// crc, the envelope keys or the JSON catches it.
    #[test]
    fn a_flipped_bit_is_never_an_event(line in any_line(), pos in any::<prop::sample::Index>(),
                                       bit in 0u8..8, strict in any::<bool>()) {
        let mut l = line;
        let i = pos.index(l.len());
        l[i] ^= 1 << bit;
        let (c, _, _) = scan(&l, strict);
        prop_assert_eq!(c.len(), 0, "{}", String::from_utf8_lossy(&l));
    }

    /// What the checker accepts, serde_json parses (the checker is at least as strict); every
    /// serialized value passes the checker.
    #[test]
    fn json_checker_is_sound(text in "[\\[\\]{}\",:0-9a-z\\\\.eE+ -]{0,40}", v in json_value()) {
        if Checker::value_only(text.as_bytes()).is_ok() {
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{}", text);
        }
        let s = serde_json::to_vec(&v).unwrap();
        prop_assert!(Checker::value_only(&s).is_ok(), "{}", String::from_utf8_lossy(&s));
    }

    /// The validator sees the same document through serde_json and through the token tape the
    /// writer uses: both views give the same verdict, for any schema of the subset.
    #[test]
    fn validator_views_agree(schema in schema_value(), doc in json_value()) {
        let Ok(s) = Schema::compile(&schema) else { return Ok(()); };
        let text = serde_json::to_vec(&doc).unwrap();
        let mut tape = Tape::default();
        tape.parse(&text).unwrap();
        let a = s.validate(&&doc).is_ok();
        let b = s.validate(&TapeNode::root(&text, &tape)).is_ok();
        prop_assert_eq!(a, b, "schema {} doc {}", schema, doc);
    }
}

fn schema_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!(true)),
        Just(json!(false)),
        prop::sample::select(vec![
            "null", "boolean", "integer", "number", "string", "array", "object"
        ])
        .prop_map(|t| json!({ "type": t })),
        (-5i64..5).prop_map(|m| json!({ "minimum": m })),
        (-5.5f64..5.5).prop_map(|m| json!({ "maximum": m })),
        (0u64..4).prop_map(|m| json!({ "minLength": m, "maxLength": m + 2 })),
        prop::collection::vec(json_value(), 0..3).prop_map(|e| json!({ "enum": e })),
        Just(json!({ "type": "string", "format": "date-time" })),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|i| json!({ "type": "array", "items": i })),
            (
                prop::collection::btree_map("[a-z]{1,2}", inner.clone(), 0..3),
                prop::collection::vec("[a-z]{1,2}", 0..2),
                inner,
            )
                .prop_map(|(p, r, ap)| json!({
                    "type": "object",
                    "properties": Value::Object(p.into_iter().collect()),
                    "required": r,
                    "additionalProperties": ap,
                })),
        ]
    })
}
