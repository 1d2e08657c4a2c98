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
