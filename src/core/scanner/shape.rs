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

use super::json_string;
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
        _ if v.len() <= 18 => b'i',
        _ => match std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(_) => b'i',
            None => b'u',
        },
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
    let ShapeScratch { out, elem } = sc;
    out.clear();
    out.push(b'[');
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
                push_elem(out, &[b't', kind(&data[v..end])]);
            }
            return Some(end);
        };
        if data.get(v) != Some(&b'{') {
            return value_end(data, v);
        }
        members(data, v, |k2, v2| {
            let end = value_end(data, v2)?;
            let esc = k2[1..k2.len() - 1].contains(&b'\\');
            push_member(out, elem, obj, (k2, esc), &data[v2..end]);
            Some(end)
        })
    });
    out.push(b']');
    out
}

/// Append the element of a `params` (`obj` = `p`) or `metrics` (`m`) member.
/// `key`: the literal and whether it has an escape.
fn push_member(out: &mut Vec<u8>, elem: &mut Vec<u8>, obj: u8, key: (&[u8], bool), value: &[u8]) {
    let (key, esc) = key;
    let inner = &key[1..key.len() - 1];
    if !esc {
        // No escape: the literal holds no quote, backslash or control character, so it is
        // written as it stands (what write_str would produce, without the scan).
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(&[b'"', obj, kind(value)]);
        out.extend_from_slice(inner);
        out.push(b'"');
    } else if let Some(key) = json_string(key) {
        elem.clear();
        elem.push(obj);
        elem.push(kind(value));
        elem.extend_from_slice(&key);
        push_elem(out, elem);
    }
}

/// `trial_shape` from what the checker recorded while checking `data` in `line`
/// (`Checker::object_end_recording` at `DATA_DEPTH`): no second walk over the text.
pub(super) fn trial_shape_recorded<'a>(
    line: &[u8],
    rec: &[Nested],
    sc: &'a mut ShapeScratch,
) -> &'a [u8] {
    let ShapeScratch { out, elem } = sc;
    out.clear();
    out.push(b'[');
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
                if out.len() > 1 {
                    out.push(b',');
                }
                out.extend_from_slice(&[b'"', b't', kind(value), b'"']);
            }
            continue;
        };
        for n in inner {
            let key = &line[n.key.start..n.key.end];
            push_member(
                out,
                elem,
                obj,
                (key, n.esc),
                &line[n.value.start..n.value.end],
            );
        }
    }
    out.push(b']');
    out
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
