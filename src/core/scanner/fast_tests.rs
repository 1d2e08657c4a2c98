//! The fast path (scanner/fast.rs) against the general path: which lines take it, and that
//! every line, damaged or not, gets the same verdict and the same columns either way.

use super::fast;
use super::{scan_buffer_upto, BadLine, Columns, ScanOptions, FAST_LINES, MAX_COLUMN_BYTES};
use proptest::prelude::*;

/// A line as a writer writes it (no trailing newline); `crc: false` leaves the crc out.
fn line(ty: &str, run_id: Option<&str>, data: &str, crc: bool) -> Vec<u8> {
    line_bytes(ty, run_id, data.as_bytes(), crc)
}

/// `line` with `data` as any bytes (the crc covers them as they are).
fn line_bytes(ty: &str, run_id: Option<&str>, data: &[u8], crc: bool) -> Vec<u8> {
    let run = run_id.map_or("null".to_string(), |r| format!("\"{r}\""));
    let mut l = format!(
        "{{\"event_id\":\"0190c1f0-0000-7000-8000-00000000000a\",\"event_type\":\"{ty}\",\
         \"schema_version\":1,\"ts\":\"2026-12-03T05:28:00.123456Z\",\"run_id\":{run},\
         \"writer\":\"w-00112233aabbccdd\",\"seq\":42,\"data\":"
    )
    .into_bytes();
    l.extend_from_slice(data);
    if crc {
        let c = crc32c::crc32c(&l);
        l.extend_from_slice(format!(",\"crc\":\"{c:08x}\"").as_bytes());
    }
    l.push(b'}');
    l
}

const TRIAL: &str = r#"{"trial_id":7,"params":{"fast":3,"slow":20,"stop":0.02},"metrics":{"sharpe":0.5,"ret":0.1,"dd":-0.2}}"#;

fn trial() -> Vec<u8> {
    line("trial.recorded", Some("run-0-000001"), TRIAL, true)
}

fn scan_both(buf: &[u8], strict: bool) -> [(String, Vec<BadLine>, usize); 2] {
    let opts = ScanOptions {
        strict,
        ..ScanOptions::default()
    };
    let run = |general: bool| {
        let (mut c, mut b) = (Columns::default(), Vec::new());
        let before = FAST_LINES.with(|n| n.get());
        let n = scan_buffer_upto(buf, 0, opts, &mut c, &mut b, MAX_COLUMN_BYTES, general);
        // The oracle is the general path only.
        assert!(
            !general || FAST_LINES.with(|n| n.get()) == before,
            "the oracle took the fast path"
        );
        (format!("{c:?}"), b, n)
    };
    [run(false), run(true)]
}

/// Both paths agree on `l` (a line without its newline), strict and not.
fn assert_same(l: &[u8]) {
    let mut buf = l.to_vec();
    buf.push(b'\n');
    for strict in [false, true] {
        let [fast, general] = scan_both(&buf, strict);
        assert_eq!(fast, general, "{}", String::from_utf8_lossy(l));
    }
}

#[test]
fn writer_lines_take_the_fast_path() {
    let t = trial();
    let env = fast::envelope_for_test(&t, true).expect("fast path");
    assert_eq!(&env.event_type[..], b"trial.recorded");
    assert_eq!((env.version, env.seq), (1, 42));
    assert_eq!(env.run_id.as_deref(), Some(&b"run-0-000001"[..]));
    assert_eq!(env.data, TRIAL.as_bytes());
    let no_run = line("alert.ingested", None, "{}", true);
    assert!(fast::envelope_for_test(&no_run, true).is_some_and(|e| e.run_id.is_none()));
    // No crc: taken unless strict (where the general path reports it).
    let no_crc = line("t.x", None, "{\"a\":[1,{\"b\":null}]}", false);
    assert!(fast::envelope_for_test(&no_crc, false).is_some());
    assert!(fast::envelope_for_test(&no_crc, true).is_none());
    assert_same(&t);
    assert_same(&no_run);
    assert_same(&no_crc);
    // And a scan takes it: one line each, strict and not, for the trial line.
    let before = FAST_LINES.with(|n| n.get());
    assert_same(&t);
    assert_eq!(FAST_LINES.with(|n| n.get()) - before, 2);
}

#[test]
fn a_trial_shape_from_the_fast_path_is_the_walkers() {
    let datas = [
        TRIAL,
        r#"{"metrics":{"s":1.5,"n":-3},"x":{"params":{"no":1}},"trial_id":7,"params":{"b":true,
            "big":9223372036854775808,"e":1E5,"t":"v","l":[1,{"z":2}],"o":{"y":[]}}}"#,
        r#"{ "params" : { "q\"" : 1 , "\u00e9" : [ ] } , "m\u0065trics" : { "a/b" : null } }"#,
        r#"{"params":[{"a":1}],"metrics":7,"trial_id":"x"}"#,
        r#"{"params":{},"metrics":{}}"#,
        "{}",
    ];
    for d in datas {
        let l = line("trial.recorded", Some("r"), d, true);
        assert!(fast::envelope_for_test(&l, true).is_some(), "{d}");
        assert_same(&l);
    }
}

#[test]
fn data_nested_to_the_depth_limit_gets_the_same_verdict() {
    use crate::core::json::MAX_DEPTH;
    // `data` is depth 2: MAX_DEPTH - 1 nested objects in it are the most a line may hold.
    let nested = |n: usize| format!("{}{}{}", "{\"a\":".repeat(n), "{}", "}".repeat(n));
    let ok = line("t.x", None, &nested(MAX_DEPTH - 2), true);
    let deep = line("t.x", None, &nested(MAX_DEPTH - 1), true);
    assert!(fast::envelope_for_test(&ok, true).is_some());
    assert!(fast::envelope_for_test(&deep, true).is_none());
    let [fast_ok, _] = scan_both(&[ok.as_slice(), b"\n"].concat(), true);
    let [fast_deep, _] = scan_both(&[deep.as_slice(), b"\n"].concat(), true);
    assert!(
        fast_ok.1.is_empty() && fast_deep.1.len() == 1,
        "{:?}",
        fast_deep.1
    );
    assert!(fast_deep.1[0].reason.contains("nesting too deep"));
    assert_same(&ok);
    assert_same(&deep);
}

#[test]
fn a_line_that_is_not_utf8_is_bad_whatever_its_crc() {
    // ASCII lines skip the UTF-8 validation: a non-ASCII byte must still get it.
    let cases: [(&[u8], bool); 5] = [
        (b"\xc3\xa9", true),
        (b"\xf0\x9f\x98\x80", true),
        (b"\xc3", false),
        (b"\xff", false),
        (b"\xed\xa0\x80", false), // a UTF-16 surrogate written as UTF-8
    ];
    for (bytes, good) in cases {
        let data = [b"{\"k\":\"" as &[u8], bytes, b"\"}"].concat();
        let l = [line_bytes("t.x", None, &data, true).as_slice(), b"\n"].concat();
        let [fast, general] = scan_both(&l, true);
        assert_eq!(fast, general);
        if good {
            assert!(fast.1.is_empty(), "{bytes:?}: {:?}", fast.1);
        } else {
            assert_eq!(fast.1.len(), 1, "{bytes:?}");
            assert_eq!(fast.1[0].reason, "not valid UTF-8");
        }
    }
}

#[test]
fn other_forms_fall_back_to_the_general_path() {
    let t = String::from_utf8(trial()).unwrap();
    let good_but_other = [
        t.replacen("{\"event_id\"", "{ \"event_id\"", 1), // whitespace
        t.replacen("\"event_type\"", "\"event\\u005ftype\"", 1), // an escaped key
        t.replacen("trial.recorded", "trial\\u002erecorded", 1), // an escaped value
        t.replacen("\"writer\":\"w-", "\"writer\":\"\\/w-", 1),
        t.replacen("\"seq\":42", "\"seq\":42.0", 1), // not an integer
    ];
    for l in &good_but_other {
        assert!(
            fast::envelope_for_test(l.as_bytes(), false).is_none(),
            "{l}"
        );
        assert_same(l.as_bytes());
    }
    let bad = [
        t.replacen("\"seq\":42", "\"seq\":042", 1),
        t.replacen("\"schema_version\":1", "\"schema_version\":2147483648", 1),
        t.replacen("\"seq\":42", "\"seq\":1234567890123456789012", 1),
        t.replacen("\"stop\":0.02", "\"stop\":0.02,\"stop\":1", 1), // duplicate in data
        t.replacen("0190c1f0", "0190c1fg", 1),
        t.replacen("05:28:00", "25:28:00", 1),
        t.replacen("\"data\":{", "\"data\":[{", 1),
        format!("{t} "),
        format!("{t}}}"),
    ];
    for l in &bad {
        assert!(
            fast::envelope_for_test(l.as_bytes(), false).is_none(),
            "{l}"
        );
        assert_same(l.as_bytes());
    }
}

#[test]
fn every_damaged_copy_of_a_writer_line_gets_the_same_verdict() {
    for l in [trial(), line("t.x", None, "{\"k\":\"v\"}", false)] {
        for i in 0..=l.len() {
            for ins in [
                b"0" as &[u8],
                b" ",
                b"\\",
                b"\"",
                b",",
                b"}",
                b"1",
                b"\xc3\xa9",
                b"\x01",
            ] {
                let mut m = l.clone();
                m.splice(i..i, ins.iter().copied());
                assert_same(&m);
            }
            if i < l.len() {
                let mut m = l.clone();
                m.remove(i);
                assert_same(&m);
                for bit in 0..8 {
                    let mut m = l.clone();
                    m[i] ^= 1 << bit;
                    assert_same(&m);
                }
            }
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z.]{0,8}",
        "\\PC{0,6}",
        Just("a\\\"b".to_string()),
        Just("\\u00e9".to_string()),
        Just("params".to_string()),
        Just("p\\u0061rams".to_string()),
        Just("metrics".to_string()),
        Just("trial_id".to_string()),
    ]
}

/// A JSON value's text, plain or odd (whitespace, nesting, big numbers).
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("1".to_string()),
        Just("-0.5e3".to_string()),
        Just("12345678901234567890".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("\"s\"".to_string()),
        Just(" [ 1 , { \"a\" : 2 } ] ".to_string()),
        text().prop_map(|t| format!("\"{t}\"")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop::collection::vec((text(), inner), 0..4).prop_map(|kv| {
            let m: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", m.join(","))
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Lines put together from writer-like and odd pieces (trial events with any `data`, whose
    /// shape the fast path takes from the checker's record): both paths agree.
    #[test]
    fn the_fast_path_agrees_with_the_general_path(
        trial in any::<bool>(), ty in text(), run in proptest::option::of("[A-Za-z0-9._-]{0,6}"),
        members in prop::collection::vec((text(), value()), 0..5), crc in any::<bool>(),
        cut in any::<prop::sample::Index>()
    ) {
        let ty = if trial { "trial.recorded".to_string() } else { ty };
        let m: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let data = format!("{{{}}}", m.join(","));
        let l = line(&ty, run.as_deref(), &data, crc);
        assert_same(&l);
        assert_same(&l[..cut.index(l.len())]);
    }
}
