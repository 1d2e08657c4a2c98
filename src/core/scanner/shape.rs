//! The shape of a `trial.recorded` event's `params` and `metrics`: which keys each object has,
//! in order, and the JSON kind of each value. The index stores it beside the event so that
//! `Reader.trials_table` knows the typed columns of a selection without parsing every trial's
//! JSON to find out (docs/index.md, "Trial shapes").
//!
//! The text is a JSON array of strings, one per key: the object (`p` params, `m` metrics), the
//! kind of the value, then the key itself, e.g. `["ti","pifast","pfstop","mfsharpe"]`; the
//! element `t` + kind is the kind of `trial_id` (no key). Kinds: `b`
//! boolean, `i` an integer in the int64 range, `u` an integer beyond it, `f` a number written
//! with a fraction or exponent, `s` string, `n` null, `j` array or object. A `params` or
//! `metrics` that is missing or not an object contributes no key.
//!
//! Beside the text, the values of the elements of kind `i` and `b` (true 1, false 0) go to
//! `ints` and those of kind `f` to `nums`, in the shape's order (`events.tint`, `events.tnum`),
//! so that the typed columns of numbers are read without parsing JSON; `bad` when a number did
//! not parse as its kind says (the row then gets no values: readers parse its JSON).

use super::{json_int, json_string};
use crate::core::json::{write_str, Nested};

/// The depth of `data`'s object in a line, as the checker counts it (the line's object is 1).
pub(super) const DATA_DEPTH: usize = 2;

/// The one event type whose rows get a shape (`trial_shape`, `trial_shape_recorded`).
pub(super) const SHAPED_TYPE: &str = "trial.recorded";

/// Reused buffers.
#[derive(Default)]
pub(super) struct ShapeScratch {
    out: Vec<u8>,
    elem: Vec<u8>,
    pub(super) ints: Vec<i64>,
    pub(super) nums: Vec<f64>,
    pub(super) bad: bool,
}

impl ShapeScratch {
    fn start(&mut self) {
        self.out.clear();
        self.out.push(b'[');
        self.ints.clear();
        self.nums.clear();
        self.bad = false;
    }

    /// Record the value `v` of kind `k` (`kind(v)`) in `ints` or `nums`.
    fn value(&mut self, k: u8, v: &[u8]) {
        match k {
            b'i' => match json_int(v) {
                Some(n) => self.ints.push(n),
                None => self.bad = true,
            },
            b'b' => self.ints.push(i64::from(v.first() == Some(&b't'))),
            b'f' => match std::str::from_utf8(v).map(str::parse::<f64>) {
                Ok(Ok(x)) if x.is_finite() => self.nums.push(x),
                _ => self.bad = true,
            },
            _ => {}
        }
    }
}

// A minimal walker over JSON the scanner has already checked (I-JSON, one object): it only
// finds where members and values start and end, so it never re-validates. Out-of-range input
// ends the walk (`None`) rather than panicking.

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `b[i]` is `"`: the index just past the closing quote. Keys and values are short: a byte
/// loop beats a vector search here (as in the checker).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2, // an escape: the next byte is never the closing quote
            _ => j += 1,
        }
    }
}

/// The index just past the value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let n = b
                .get(i..)?
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'));
            Some(n.map_or(b.len(), |n| i + n))
        }
    }
}

/// Calls `f(key literal, value start)` for each member of the object starting at
/// `b[i]`; `f` returns the index just past the value. Returns the index just past the object.
fn members(b: &[u8], i: usize, mut f: impl FnMut(&[u8], usize) -> Option<usize>) -> Option<usize> {
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut j = ws(b, i + 1);
    if b.get(j) == Some(&b'}') {
        return Some(j + 1);
    }
    loop {
        let k_end = string_end(b, j)?;
        let v = ws(b, ws(b, k_end) + 1); // past the colon
        let v_end = f(&b[j..k_end], v)?;
        j = ws(b, v_end);
        match b.get(j)? {
            b',' => j = ws(b, j + 1),
            _ => return Some(j + 1),
        }
    }
}

fn kind(v: &[u8]) -> u8 {
    match v.first() {
        Some(b't') | Some(b'f') => b'b',
        Some(b'n') => b'n',
        Some(b'"') => b's',
        Some(b'[') | Some(b'{') => b'j',
        _ if v.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) => b'f',
        // Up to 18 digits always fit int64; only longer ones are parsed.
        _ if v.len() <= 18 || json_int(v).is_some() => b'i',
        _ => b'u',
    }
}

/// Append one element (valid UTF-8: the line is, and so is an unescaped key).
fn push_elem(out: &mut Vec<u8>, elem: &[u8]) {
    if out.len() > 1 {
        out.push(b',');
    }
    write_str(out, std::str::from_utf8(elem).unwrap_or_default());
}

/// The key a literal names: compared without unescaping unless it has an escape.
fn key_is(lit: &[u8], name: &[u8]) -> bool {
    let inner = &lit[1..lit.len() - 1];
    if inner == name {
        return true;
    }
    inner.contains(&b'\\') && json_string(lit).as_deref() == Some(name)
}

/// The shape text of `data` (a checked JSON object) into `sc.out`; see the module doc.
pub(super) fn trial_shape<'a>(data: &[u8], sc: &'a mut ShapeScratch) -> &'a [u8] {
    sc.start();
    let start = ws(data, 0);
    // Params and metrics are walked once: their members' walk also finds where they end.
    members(data, start, |k, v| {
        let obj = if key_is(k, b"params") {
            b'p'
        } else if key_is(k, b"metrics") {
            b'm'
        } else {
            let end = value_end(data, v)?;
            if key_is(k, b"trial_id") {
                let kd = kind(&data[v..end]);
                push_elem(&mut sc.out, &[b't', kd]);
                sc.value(kd, &data[v..end]);
            }
            return Some(end);
        };
        if data.get(v) != Some(&b'{') {
            return value_end(data, v);
        }
        members(data, v, |k2, v2| {
            let end = value_end(data, v2)?;
            let esc = k2[1..k2.len() - 1].contains(&b'\\');
            push_member(sc, obj, (k2, esc), &data[v2..end]);
            Some(end)
        })
    });
    sc.out.push(b']');
    &sc.out
}

/// Append the element of a `params` (`obj` = `p`) or `metrics` (`m`) member.
/// `key`: the literal and whether it has an escape.
fn push_member(sc: &mut ShapeScratch, obj: u8, key: (&[u8], bool), value: &[u8]) {
    let (key, esc) = key;
    let inner = &key[1..key.len() - 1];
    let kd = kind(value);
    let ShapeScratch { out, elem, .. } = sc;
    if !esc {
        // No escape: the literal holds no quote, backslash or control character, so it is
        // written as it stands (what write_str would produce, without the scan).
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(&[b'"', obj, kd]);
        out.extend_from_slice(inner);
        out.push(b'"');
    } else if let Some(key) = json_string(key) {
        elem.clear();
        elem.push(obj);
        elem.push(kd);
        elem.extend_from_slice(&key);
        push_elem(out, elem);
    } else {
        return; // no element: no value either
    }
    sc.value(kd, value);
}

/// `trial_shape` from what the checker recorded while checking `data` in `line`
/// (`Checker::object_end_recording` at `DATA_DEPTH`): no second walk over the text.
pub(super) fn trial_shape_recorded<'a>(
    line: &[u8],
    rec: &[Nested],
    sc: &'a mut ShapeScratch,
) -> &'a [u8] {
    sc.start();
    // Each member of `data` comes after the members of its value's object, if any.
    let mut first = 0;
    for (j, m) in rec.iter().enumerate() {
        if m.depth != DATA_DEPTH {
            continue;
        }
        let inner = &rec[first..j];
        first = j + 1;
        let k = &line[m.key.start..m.key.end];
        let value = &line[m.value.start..m.value.end];
        // The checker told which keys have an escape: the others compare as they stand.
        let is = |name: &[u8]| {
            if m.esc {
                json_string(k).as_deref() == Some(name)
            } else {
                &k[1..k.len() - 1] == name
            }
        };
        let obj = if is(b"params") {
            b'p'
        } else if is(b"metrics") {
            b'm'
        } else {
            if is(b"trial_id") {
                let kd = kind(value);
                if sc.out.len() > 1 {
                    sc.out.push(b',');
                }
                sc.out.extend_from_slice(&[b'"', b't', kd, b'"']);
                sc.value(kd, value);
            }
            continue;
        };
        for n in inner {
            let key = &line[n.key.start..n.key.end];
            push_member(sc, obj, (key, n.esc), &line[n.value.start..n.value.end]);
        }
    }
    sc.out.push(b']');
    &sc.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(data: &str) -> String {
        let mut sc = ShapeScratch::default();
        String::from_utf8(trial_shape(data.as_bytes(), &mut sc).to_vec()).unwrap()
    }

    #[test]
    fn kinds_keys_and_order() {
        let d = r#"{"metrics":{"s":1.5,"n":-3},"trial_id":7,"params":{"b":true,"x":null,
            "big":9223372036854775808,"neg":-9223372036854775808,"e":1E5,"t":"v","l":[1],"o":{}}}"#;
        assert_eq!(
            shape(d),
            r#"["mfs","min","ti","pbb","pnx","pubig","pineg","pfe","pst","pjl","pjo"]"#
        );
    }

    fn values(data: &str) -> (Vec<i64>, Vec<f64>, bool) {
        let mut sc = ShapeScratch::default();
        trial_shape(data.as_bytes(), &mut sc);
        (sc.ints, sc.nums, sc.bad)
    }

    #[test]
    fn numbers_and_booleans_follow_the_shape_order() {
        let d = r#"{"metrics":{"s":1.5,"n":-3},"trial_id":7,"params":{"b":true,"x":null,
            "big":9223372036854775808,"neg":-9223372036854775808,"e":1E5,"t":"v","l":[1],"o":{},
            "f":false,"z":-0.0}}"#;
        let (ints, nums, bad) = values(d);
        assert_eq!(ints, vec![-3, 7, 1, i64::MIN, 0]);
        assert_eq!(nums, vec![1.5, 1e5, -0.0]);
        assert!(nums[2].is_sign_negative() && !bad);
        // A number that is not finite as a double: no values for the row.
        assert!(values(r#"{"params":{"x":1e999}}"#).2);
    }

    #[test]
    fn integers_parse_to_the_ends_of_int64() {
        for n in [
            0,
            7,
            -7,
            10,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
            123_456_789_012_345_678,
        ] {
            assert_eq!(json_int(n.to_string().as_bytes()), Some(n));
        }
        for bad in [
            "",
            "-",
            "9223372036854775808",
            "-9223372036854775809",
            "1.5",
            "1e3",
            "+1",
        ] {
            assert_eq!(json_int(bad.as_bytes()), None, "{bad}");
        }
    }

    /// The oracle: serde_json's reading of the same object, members in order.
    fn oracle(data: &str) -> (Vec<i64>, Vec<f64>) {
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        let (mut ints, mut nums) = (Vec::new(), Vec::new());
        let mut take = |x: &serde_json::Value| match x {
            serde_json::Value::Bool(b) => ints.push(i64::from(*b)),
            serde_json::Value::Number(n) if n.is_f64() => nums.push(n.as_f64().unwrap()),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    ints.push(i)
                }
            }
            _ => {}
        };
        for (k, x) in v.as_object().unwrap() {
            match (k.as_str(), x) {
                ("trial_id", _) => take(x),
                ("params" | "metrics", serde_json::Value::Object(m)) => {
                    m.values().for_each(&mut take)
                }
                _ => {}
            }
        }
        (ints, nums)
    }

    proptest::proptest! {
        /// The values of any object of numbers, booleans and strings are serde_json's.
        #[test]
        fn values_are_the_parsed_numbers(
            tid in proptest::option::of(proptest::num::i64::ANY),
            params in proptest::collection::vec(scalar(), 0..6),
            metrics in proptest::collection::vec(scalar(), 0..6),
        ) {
            let obj = |xs: &[String]| {
                let m: Vec<String> = xs.iter().enumerate().map(|(i, x)| format!("\"k{i}\":{x}")).collect();
                format!("{{{}}}", m.join(","))
            };
            let t = tid.map(|t| format!("\"trial_id\":{t},")).unwrap_or_default();
            let d = format!("{{{t}\"params\":{},\"metrics\":{}}}", obj(&params), obj(&metrics));
            let (ints, nums, bad) = values(&d);
            proptest::prop_assert!(!bad);
            let (oi, on) = oracle(&d);
            proptest::prop_assert_eq!(ints, oi, "{}", d);
            proptest::prop_assert_eq!(
                nums.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                on.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{}", d
            );
        }
    }

    fn scalar() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| format!("{x:?}")),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| format!("{x:e}")),
            any::<bool>().prop_map(|b| b.to_string()),
            Just("null".to_string()),
            Just("\"s\"".to_string()),
            Just("18446744073709551615".to_string()),
        ]
    }

    #[test]
    fn escaped_keys_are_unescaped_then_written_as_json() {
        let d = r#"{"trial_id":"a","params":{"q\"":1,"\u00e9":2,"a\/b":3},"metrics":{}}"#;
        assert_eq!(shape(d), r#"["ts","piq\"","pié","pia/b"]"#);
    }

    #[test]
    fn plain_keys_are_written_as_they_stand() {
        // The fast path (no escape in the key) and the escaped path give the same text.
        let plain = shape(r#"{"params":{"é":1,"a b":2.5,"/":"x"},"metrics":{"m":null}}"#);
        assert_eq!(plain, r#"["pié","pfa b","ps/","mnm"]"#);
        let escaped =
            shape(r#"{"params":{"\u00e9":1,"a\u0020b":2.5,"\/":"x"},"metrics":{"m":null}}"#);
        assert_eq!(escaped, plain);
    }

    #[test]
    fn whitespace_and_brackets_inside_strings_do_not_confuse_the_walk() {
        let d = " { \"x\" : { \"a\" : \"}]\\\"{\" } , \"params\" : { \"n\" : [ \"]\" , { } ] ,\n\"v\" : -12 } ,\"metrics\":{ } } ";
        assert_eq!(shape(d), r#"["pjn","piv"]"#);
        let d = r#"{"p\u0061rams":{"k":"s"},"metrics":{"a":12345678901234567890}}"#;
        assert_eq!(shape(d), r#"["psk","mua"]"#);
    }

    #[test]
    fn objects_that_are_not_objects_contribute_nothing() {
        assert_eq!(shape(r#"{"params":[1,2],"metrics":null}"#), "[]");
        assert_eq!(shape(r#"{"trial_id":2.0}"#), r#"["tf"]"#);
    }
}
