//! The fast path for a line as ledgerx's writers write it: the envelope keys in order, no
//! whitespace, no escape in an envelope string, plain integers, `crc` last. Such a line is
//! matched literal by literal (the keys are known and distinct: no key set, no members list,
//! no unescaping); only `data` goes through the I-JSON checker. Anything else (a
//! third-party line, an escape, whitespace, a bad line of any kind) returns `None` and the line
//! takes the general path, which gives the verdict: the fast path accepts only lines the general
//! path accepts, with the same values (tests: scanner/fast_tests.rs).

use super::shape::{DATA_DEPTH, SHAPED_TYPE};
use super::{hex8, Envelope};
use crate::core::clock;
use crate::core::ids;
use crate::core::json::{word_needs_escape, Checker, Nested, NEEDS_ESCAPE};
use std::borrow::Cow;

struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + s.len())? == s {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    /// The body of a string whose opening quote was just consumed, up to and past its closing
    /// quote: `None` at an escape or a control character (the general path decides those).
    fn plain(&mut self) -> Option<&'a [u8]> {
        let s = self.i;
        // Eight bytes at a time while none needs an escape (the closing quote does), then
        // byte by byte to find which one.
        while let Some(w) = self.b.get(self.i..self.i + 8) {
            if word_needs_escape(u64::from_le_bytes(w.try_into().ok()?)) {
                break;
            }
            self.i += 8;
        }
        loop {
            let c = *self.b.get(self.i)?;
            if NEEDS_ESCAPE[c as usize] {
                if c != b'"' {
                    return None;
                }
                let body = &self.b[s..self.i];
                self.i += 1;
                return Some(body);
            }
            self.i += 1;
        }
    }

    /// A JSON integer >= 1 of at most 18 digits (always an i64), as the text parses.
    fn uint(&mut self) -> Option<i64> {
        let s = self.i;
        let mut v: i64 = 0;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            if self.i == s && c == b'0' || self.i - s == 18 {
                return None;
            }
            v = v * 10 + (c - b'0') as i64;
            self.i += 1;
        }
        (self.i > s).then_some(v)
    }
}

/// The envelope of a line in the writer's form (valid UTF-8 already), or `None`; for a
/// `trial.recorded` line the members of `data` and of its objects are recorded into `rec`
/// (for `shape::trial_shape_recorded`).
pub(super) fn envelope<'a>(
    line: &'a [u8],
    strict: bool,
    rec: &mut Vec<Nested>,
) -> Option<Envelope<'a>> {
    let mut c = Cur { b: line, i: 0 };
    c.lit(b"{\"event_id\":\"")?;
    let event_id = line.get(c.i..c.i + 36).filter(|s| ids::is_uuid(s))?;
    c.i += 36;
    c.lit(b"\",\"event_type\":\"")?;
    let event_type = c.plain().filter(|s| !s.is_empty())?;
    c.lit(b",\"schema_version\":")?;
    let version = c.uint().filter(|&n| n <= i32::MAX as i64)?;
    c.lit(b",\"ts\":\"")?;
    let ts = clock::parse_ts(c.plain()?)?;
    c.lit(b",\"run_id\":")?;
    let run_id = if c.lit(b"null").is_some() {
        None
    } else {
        c.lit(b"\"")?;
        Some(Cow::Borrowed(c.plain()?))
    };
    c.lit(b",\"writer\":\"")?;
    let writer = c.plain()?;
    c.lit(b",\"seq\":")?;
    let seq = c.uint()?;
    c.lit(b",\"data\":")?;
    if line.get(c.i) != Some(&b'{') {
        return None;
    }
    let data_start = c.i;
    // Only a trial's shape is built from the record (`shape::trial_shape_recorded`).
    c.i = if event_type == SHAPED_TYPE.as_bytes() {
        Checker::object_end_recording(line, c.i, DATA_DEPTH, rec)
    } else {
        Checker::object_end(line, c.i, DATA_DEPTH)
    }
    .ok()?;
    let data = &line[data_start..c.i];
    let signed = c.i;
    if c.lit(b",\"crc\":\"").is_some() {
        let want = hex8(line.get(c.i..c.i + 8)?)?;
        c.i += 8;
        c.lit(b"\"")?;
        if crc32c::crc32c(&line[..signed]) != want {
            return None;
        }
    } else if strict {
        return None;
    }
    c.lit(b"}")?;
    (c.i == line.len()).then_some(())?;
    Some(Envelope {
        event_id: Cow::Borrowed(event_id),
        event_type: Cow::Borrowed(event_type),
        version,
        ts,
        run_id,
        writer: Cow::Borrowed(writer),
        seq,
        data,
    })
}

/// `envelope` with a recording buffer of its own.
#[cfg(test)]
pub(super) fn envelope_for_test(line: &[u8], strict: bool) -> Option<Envelope<'_>> {
    envelope(line, strict, &mut Vec::new())
}
