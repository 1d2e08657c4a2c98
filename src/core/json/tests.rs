use super::*;

#[test]
fn escapes_controls_and_quotes() {
    let mut v = Vec::new();
    write_str(&mut v, "a\"b\\c\n\u{1}é");
    assert_eq!(
        std::str::from_utf8(&v).unwrap(),
        "\"a\\\"b\\\\c\\n\\u0001é\""
    );
    assert_eq!(
        serde_json::from_slice::<String>(&v).unwrap(),
        "a\"b\\c\n\u{1}é"
    );
}

#[test]
fn checker_accepts_and_rejects() {
    let m = Checker::object_members(br#"{"a":1,"b":{"c":[1,2.5e3,"x"]},"d":null}"#).unwrap();
    assert_eq!(m.len(), 3);
    for bad in [
        &br#"{"a":1,"a":2}"#[..],
        br#"{"a":NaN}"#,
        br#"{"a":"\ud800"}"#,
        br#"{"a":1"#,
        br#"{"a":01}"#,
        br#"[1]"#,
        br#"{"a":1} x"#,
        br#"{"a":"\u0061","\u0061":2}"#,
    ] {
        assert!(
            Checker::object_members(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // Past the inline list: the hash set still compares keys decoded.
    let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
    for (tail, ok) in [
        (r#""k39x":1}"#, true),
        (r#""k7":1}"#, false),
        (r#""\u006b7":1}"#, false),
        (r#""\u006b7x":1}"#, true),
    ] {
        let text = format!("{{{many}{tail}");
        assert_eq!(
            Checker::object_members(text.as_bytes()).is_ok(),
            ok,
            "{tail}"
        );
    }
    let esc_first = format!(r#"{{"\u006b0":0,{many}"x":1}}"#);
    assert!(Checker::object_members(esc_first.as_bytes()).is_err());
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert!(Checker::value_only(deep.as_bytes()).is_err());
    assert!(Checker::value_only(br#""\ud83d\ude00""#).is_ok());
}

#[test]
fn rejections_name_what_is_wrong() {
    let e = |s: &str| Checker::value_only(s.as_bytes()).unwrap_err();
    assert!(e(r#"{"x":NaN}"#).starts_with("NaN is not valid JSON"));
    assert!(e("[Infinity]").starts_with("Infinity is not valid JSON"));
    assert!(e("[-Infinity]").starts_with("-Infinity is not valid JSON"));
    assert!(e(r#"{"a":1,"a":2}"#).starts_with("duplicate key \"a\""));
    assert!(e(r#"{"a":1,"\u0061":2}"#).starts_with("duplicate key \"a\""));
}

fn ryu_text(v: f64) -> String {
    ryu::Buffer::new().format_finite(v).to_string()
}

fn fast_text(v: f64) -> String {
    let mut out = Vec::new();
    write_f64(&mut out, v);
    String::from_utf8(out).unwrap()
}

#[test]
fn floats_are_written_as_ryu_writes_them_at_the_edges() {
    for v in [
        0.02,
        1.25,
        -0.05,
        1200.0,
        0.001,
        0.00099999,
        0.0010000001,
        999_999_999.999_999,
        999_999_999.0,
        1e9,
        0.1 + 0.2,
        0.3,
        123_456.789,
        -7.0,
        0.000_5,
        1e-3,
        5e-324,
        0.0,
        -0.0,
        4.35,
        2.675,
        1.005,
        0.123_456,
        0.123_456_7,
        536_870_912.5,
        536_870_912.000_001,
        1e-6,
        -1e-6,
        5e-5,
        1e-5,
        1.5e-6,
        0.000_999,
    ] {
        assert_eq!(fast_text(v), ryu_text(v), "{v:e}");
    }
    let mut out = Vec::new();
    assert!(write_short_decimal(&mut out, 0.02) && out == b"0.02");
    assert!(!write_short_decimal(&mut Vec::new(), 0.1 + 0.2)); // 17 digits: ryu's
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

    #[test]
    fn any_float_is_written_as_ryu_writes_it(bits in proptest::prelude::any::<u64>()) {
        let v = f64::from_bits(bits);
        if v.is_finite() {
            proptest::prop_assert_eq!(fast_text(v), ryu_text(v));
        }
    }

    #[test]
    fn short_decimals_are_written_as_ryu_writes_them(
        m in 0u64..2_000_000_000_000_000, k in 0u32..10, neg in proptest::prelude::any::<bool>()
    ) {
        let text = format!("{}{}e-{k}", if neg { "-" } else { "" }, m);
        let v: f64 = text.parse().unwrap();
        proptest::prop_assert_eq!(fast_text(v), ryu_text(v));
        let scaled: f64 = format!("{}e-{k}", m % 1_000_000).parse().unwrap();
        proptest::prop_assert_eq!(fast_text(scaled), ryu_text(scaled));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

    /// The word-at-a-time check agrees with the byte table, wherever the special byte is.
    #[test]
    fn the_plain_check_agrees_with_the_byte_table(
        bytes in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::Just(b'"'), proptest::prelude::Just(b'\\'),
                0u8..0x20, 0x20u8..=0xff
            ],
            0..40,
        )
    ) {
        let want = !bytes.iter().any(|&c| NEEDS_ESCAPE[c as usize]);
        proptest::prop_assert_eq!(is_plain(&bytes), want);
    }
}

#[test]
fn every_single_special_byte_is_seen_in_every_position() {
    for pos in 0..17 {
        for c in 0u8..=255 {
            let mut b = vec![b'a'; 17];
            b[pos] = c;
            assert_eq!(
                is_plain(&b),
                !NEEDS_ESCAPE[c as usize],
                "byte {c:#x} at {pos}"
            );
        }
    }
}

fn int_text(v: i64) -> String {
    let mut out = b"x".to_vec();
    write_i64(&mut out, v);
    String::from_utf8(out[1..].to_vec()).unwrap()
}

#[test]
fn integers_are_written_as_itoa_writes_them_at_the_edges() {
    let mut edges = vec![
        i64::MIN,
        i64::MAX,
        -1,
        0,
        100_000_000,
        99_999_999,
        -99_999_999,
    ];
    for k in 0..=8 {
        let p = 10i64.pow(k);
        edges.extend([p - 1, p, p + 1, 2 * p, 9 * p]);
    }
    for v in edges {
        assert_eq!(int_text(v), itoa::Buffer::new().format(v), "{v}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

    #[test]
    fn any_integer_is_written_as_itoa_writes_it(v in proptest::prelude::any::<i64>(),
                                                  small in 0i64..100_001_000) {
        proptest::prop_assert_eq!(int_text(v), itoa::Buffer::new().format(v).to_string());
        proptest::prop_assert_eq!(int_text(small), itoa::Buffer::new().format(small).to_string());
    }
}
