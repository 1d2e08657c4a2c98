//! JSON text: an escaping writer for the appender and a strict, allocation-light checker for
//! the scanner. The checker enforces I-JSON (RFC 7493): valid UTF-8, no lone surrogates in
//! escapes, no duplicate keys, bounded nesting; NaN/Infinity are not JSON and fail as syntax.

pub const MAX_DEPTH: usize = 128;

/// Bytes that need an escape inside a JSON string: controls, `"` and `\\` (the same bytes end
/// a run of plain characters when checking a string literal).
pub(crate) const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Whether the 8 bytes of `x` hold one that needs an escape (a control byte, `"` or `\\`):
/// the classic "has a byte less than n" and "has a zero byte" tests, exact as a yes/no.
pub(crate) fn word_needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
        || has_zero(x ^ (ONES * b'"' as u64))
        || has_zero(x ^ (ONES * b'\\' as u64))
}

/// Whether no byte of `bytes` needs an escape (8 bytes at a time, then the table).
fn is_plain(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        if word_needs_escape(x) {
            return false;
        }
    }
    !words.remainder().iter().any(|&c| NEEDS_ESCAPE[c as usize])
}

/// Append `s` as a JSON string literal (quotes included).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if !NEEDS_ESCAPE[c as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                use super::ids::HEX;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 15) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A byte range `[start, end)` inside the checked text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// Checks one JSON text; for a top-level object, records each member's key and value spans.
pub struct Checker<'a> {
    b: &'a [u8],
    i: usize,
    /// The members of every object at a depth in `rec_depths` are appended to `rec`.
    rec_depths: (usize, usize),
    rec: Vec<Nested>,
}

/// A member of a nested object, as `Checker::object_end_recording` records it: the object's
/// depth, the key's literal (quotes included) and the value, as spans of the text.
#[derive(Clone, Copy, Debug)]
pub struct Nested {
    pub depth: usize,
    pub key: Span,
    /// The key has an escape.
    pub esc: bool,
    pub value: Span,
}

pub type Members = Vec<(Span, Span)>;

impl<'a> Checker<'a> {
    /// Check that `b` is exactly one JSON object (surrounding whitespace allowed) and return
    /// its members. Error: a short reason.
    pub fn object_members(b: &'a [u8]) -> Result<Members, String> {
        let mut members = Vec::with_capacity(12);
        Self::object_members_into(b, &mut members)?;
        Ok(members)
    }

    /// Like `object_members`, into a reused vector.
    pub fn object_members_into(b: &'a [u8], members: &mut Members) -> Result<(), String> {
        members.clear();
        let mut c = Checker::at(b, 0);
        c.ws();
        if c.peek() != Some(b'{') {
            return Err("not a JSON object".into());
        }
        c.object(1, Some(members))?;
        c.ws();
        if c.i != b.len() {
            return Err(format!("trailing bytes at column {}", c.i + 1));
        }
        Ok(())
    }

    /// Check the object starting at `b[i]` (a `{`) at nesting depth `depth` (a text's
    /// outermost object is 1); returns the index just past it.
    pub fn object_end(b: &'a [u8], i: usize, depth: usize) -> Result<usize, String> {
        let mut c = Checker::at(b, i);
        c.object(depth, None)?;
        Ok(c.i)
    }

    /// `object_end`, appending to `rec` (cleared first) every member of this object and of the
    /// objects that are its members' values, each after the members of its own value: the
    /// members of `b[i]`'s object are at `depth`, those of a value's object at `depth + 1`.
    pub fn object_end_recording(
        b: &'a [u8],
        i: usize,
        depth: usize,
        rec: &mut Vec<Nested>,
    ) -> Result<usize, String> {
        rec.clear();
        let mut c = Checker {
            rec_depths: (depth, depth + 1),
            rec: std::mem::take(rec),
            ..Checker::at(b, i)
        };
        let r = c.object(depth, None);
        *rec = c.rec;
        r.map(|()| c.i)
    }

    fn at(b: &'a [u8], i: usize) -> Self {
        Checker {
            b,
            i,
            rec_depths: (usize::MAX, 0),
            rec: Vec::new(),
        }
    }

    /// Check that `b` is exactly one JSON value.
    pub fn value_only(b: &'a [u8]) -> Result<(), String> {
        let mut c = Checker::at(b, 0);
        c.ws();
        c.value(0)?;
        c.ws();
        if c.i != b.len() {
            return Err(format!("trailing bytes at column {}", c.i + 1));
        }
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at column {}", self.i + 1))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, None),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.lit(b"true"),
            Some(b'f') => self.lit(b"false"),
            Some(b'n') => self.lit(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'N') if self.b[self.i..].starts_with(b"NaN") => self.err("NaN is not valid JSON"),
            Some(b'I') if self.b[self.i..].starts_with(b"Infinity") => {
                self.err("Infinity is not valid JSON")
            }
            Some(_) => self.err("unexpected character"),
            None => self.err("unexpected end"),
        }
    }

    fn lit(&mut self, word: &[u8]) -> Result<(), String> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err("invalid literal")
        }
    }

    fn number(&mut self) -> Result<(), String> {
        let b = self.b;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        if b[self.i..].starts_with(b"Infinity") {
            return self.err("-Infinity is not valid JSON");
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return self.err("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let s = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if s == self.i {
                return self.err("invalid number");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            let s = self.i;
            while matches!(b.get(self.i), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if s == self.i {
                return self.err("invalid number");
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let Some(h) = self.b.get(self.i..self.i + 4) else {
            return self.err("bad \\u escape");
        };
        let mut v = 0u32;
        for &c in h {
            let d = (c as char).to_digit(16);
            match d {
                Some(d) => v = v * 16 + d,
                None => return self.err("bad \\u escape"),
            }
        }
        self.i += 4;
        Ok(v)
    }

    /// A string literal; Ok(true) when it has an escape.
    fn string(&mut self) -> Result<bool, String> {
        self.i += 1; // opening quote
        let mut esc = false;
        loop {
            // Keys and values are short: a byte loop beats a vector search here.
            let b = self.b;
            let mut k = self.i;
            while k < b.len() && !NEEDS_ESCAPE[b[k] as usize] {
                k += 1;
            }
            match b.get(k) {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.i = k + 1;
                    return Ok(esc);
                }
                Some(b'\\') => {}
                Some(_) => {
                    // A control character: reported as the search for the end of the string
                    // would report it (the position stays at the start of this run).
                    return match memchr::memchr3(b'"', b'\\', b'\n', &b[k..]) {
                        None => self.err("unterminated string"),
                        Some(_) => self.err("control character in string"),
                    };
                }
            }
            esc = true;
            self.i = k + 1;
            match self.peek() {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                Some(b'u') => {
                    self.i += 1;
                    let u = self.hex4()?;
                    if (0xDC00..0xE000).contains(&u) {
                        return self.err("lone surrogate");
                    }
                    if (0xD800..0xDC00).contains(&u) {
                        if !self.b[self.i..].starts_with(b"\\u") {
                            return self.err("lone surrogate");
                        }
                        self.i += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return self.err("lone surrogate");
                        }
                    }
                }
                _ => return self.err("bad escape"),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("expected , or ]"),
            }
        }
    }

    fn object(&mut self, depth: usize, mut out: Option<&mut Members>) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut keys = KeySet::default();
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.err("expected string key");
            }
            let ks = self.i;
            let esc = self.string()?;
            let key = Span {
                start: ks,
                end: self.i,
            };
            if !keys.insert(self.b, key, esc) {
                let name: String = unescape(&self.b[ks..self.i]).chars().take(40).collect();
                return self.err(&format!("duplicate key {name:?}"));
            }
            self.ws();
            if self.peek() != Some(b':') {
                return self.err("expected :");
            }
            self.i += 1;
            self.ws();
            let vs = self.i;
            self.value(depth)?;
            let value = Span {
                start: vs,
                end: self.i,
            };
            if let Some(m) = out.as_deref_mut() {
                m.push((key, value));
            }
            if (self.rec_depths.0..=self.rec_depths.1).contains(&depth) {
                self.rec.push(Nested {
                    depth,
                    key,
                    esc,
                    value,
                });
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("expected , or }"),
            }
        }
    }
}

/// Objects with more keys than this check duplicates through a hash set.
const FEW_KEYS: usize = 16;

/// The keys of one object, for the duplicate check in linear time. Keys compare decoded (a key
/// without escapes is its own decoded form, so only escaped keys are decoded, once each): by
/// bytes over a small inline list while the object is small, then through a hash set (std's
/// SipHash with a random key, so crafted keys cannot make it quadratic either).
#[derive(Default)]
struct KeySet<'a> {
    few: [(Span, bool); FEW_KEYS],
    n: usize,
    any_esc: bool,
    many: Option<std::collections::HashSet<std::borrow::Cow<'a, [u8]>>>,
}

impl<'a> KeySet<'a> {
    /// Add a key (its literal with quotes at `key` in `b`); false when it was already there.
    fn insert(&mut self, b: &'a [u8], key: Span, esc: bool) -> bool {
        if let Some(set) = self.many.as_mut() {
            return set.insert(canonical(b, key, esc));
        }
        let kb = &b[key.start..key.end];
        let decode = esc || self.any_esc;
        let dup = self.few[..self.n].iter().any(|(k, _)| {
            let other = &b[k.start..k.end];
            other == kb || decode && unescape(other) == unescape(kb)
        });
        if dup {
            return false;
        }
        self.any_esc |= esc;
        if self.n < FEW_KEYS {
            self.few[self.n] = (key, esc);
            self.n += 1;
            return true;
        }
        let mut set = std::collections::HashSet::with_capacity(4 * FEW_KEYS);
        for &(k, e) in &self.few {
            set.insert(canonical(b, k, e));
        }
        set.insert(canonical(b, key, esc));
        self.many = Some(set);
        true
    }
}

/// A key's decoded bytes: borrowed from the text when it has no escape.
fn canonical(b: &[u8], key: Span, esc: bool) -> std::borrow::Cow<'_, [u8]> {
    let lit = &b[key.start..key.end];
    if esc {
        std::borrow::Cow::Owned(unescape(lit).into_bytes())
    } else {
        std::borrow::Cow::Borrowed(&lit[1..lit.len() - 1])
    }
}

/// Decode a checked JSON string literal (quotes included) to a Rust string.
pub fn unescape(lit: &[u8]) -> String {
    let inner = &lit[1..lit.len() - 1];
    if !inner.contains(&b'\\') {
        return String::from_utf8_lossy(inner).into_owned();
    }
    serde_json::from_slice::<String>(lit).unwrap_or_default()
}

mod number;
mod tape;
#[cfg(test)]
use number::write_short_decimal;
pub use number::{is_integral, write_f64, write_i64};
pub use tape::{Record, Tape, Tok, TokKind};

#[cfg(test)]
mod tests;
