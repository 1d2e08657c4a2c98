//! The token tape: a JSON document parsed once into a flat list of tokens (I-JSON checked), which
//! the schema validator walks without building a tree.

use super::*;

/// A flat token tape of one JSON text: validation reads it instead of Python objects, so it
/// needs no GIL and no allocation per node (the tape is reused between events).
#[derive(Debug, Default)]
pub struct Tape {
    pub toks: Vec<Tok>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tok {
    pub kind: TokKind,
    pub start: u32,
    pub end: u32,
    /// Index of the token after this value (after its whole subtree for containers).
    pub next: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokKind {
    Null,
    True,
    False,
    Int,
    Float,
    Str,
    /// A string that contains escapes (decode before comparing).
    StrEsc,
    Arr,
    Obj,
}

/// What a serializer records about the JSON it writes, besides the bytes: the token tape
/// (`Tape`), the shape (`schema::ShapeBuf`), or nothing (`()`). Offsets are into the output.
pub trait Record {
    /// A scalar token over `out[start..end]` (a float goes to `float`).
    fn leaf(&mut self, kind: TokKind, start: usize, end: usize);
    /// A finite float written over `start..end`.
    fn float(&mut self, v: f64, start: usize, end: usize);
    /// A member key, `kind` Str or StrEsc, its JSON text `out[start..end]`.
    fn key(&mut self, kind: TokKind, out: &[u8], start: usize, end: usize);
    /// An array or object starting at `start`; `close` it once its members are recorded.
    fn open(&mut self, kind: TokKind, start: usize) -> usize;
    /// End the container `idx` (from `open`) at `end`, just past its closing bracket.
    fn close(&mut self, idx: usize, end: usize);
    /// The one value at `out[start..]`, written by other means.
    fn other(&mut self, out: &[u8], start: usize, depth: usize) -> Result<(), String>;
}

impl Record for () {
    fn leaf(&mut self, _: TokKind, _: usize, _: usize) {}
    fn float(&mut self, _: f64, _: usize, _: usize) {}
    fn key(&mut self, _: TokKind, _: &[u8], _: usize, _: usize) {}
    fn open(&mut self, _: TokKind, _: usize) -> usize {
        0
    }
    fn close(&mut self, _: usize, _: usize) {}
    fn other(&mut self, _: &[u8], _: usize, _: usize) -> Result<(), String> {
        Ok(())
    }
}

// A serializer that writes JSON records its tokens as it goes (the Python binding), so the text
// is not tokenized again: the calls give exactly the tokens `parse` would give for the written
// text; `other` tokenizes a value written otherwise.
impl Record for Tape {
    fn leaf(&mut self, kind: TokKind, start: usize, end: usize) {
        self.push(kind, start, end);
    }
    fn float(&mut self, _: f64, start: usize, end: usize) {
        self.push(TokKind::Float, start, end);
    }
    fn key(&mut self, kind: TokKind, _: &[u8], start: usize, end: usize) {
        self.push(kind, start, end);
    }
    fn open(&mut self, kind: TokKind, start: usize) -> usize {
        self.push(kind, start, start)
    }
    fn close(&mut self, idx: usize, end: usize) {
        self.toks[idx].end = end as u32;
        self.toks[idx].next = self.toks.len() as u32;
    }
    fn other(&mut self, out: &[u8], start: usize, depth: usize) -> Result<(), String> {
        let mut i = start;
        self.value(out, &mut i, depth)
    }
}

impl Tape {
    /// Tokenize `src`, which must be one valid JSON value (as written by our serializer or
    /// accepted by `Checker`).
    pub fn parse(&mut self, src: &[u8]) -> Result<(), String> {
        self.toks.clear();
        let mut i = 0;
        skip_ws(src, &mut i);
        self.value(src, &mut i, 0)?;
        skip_ws(src, &mut i);
        if i != src.len() {
            return Err("trailing bytes".into());
        }
        Ok(())
    }

    /// Tokenize the one value at `src[start..]` onto the tape (after what it holds).
    pub fn append(&mut self, src: &[u8], start: usize, depth: usize) -> Result<(), String> {
        self.other(src, start, depth)
    }

    fn push(&mut self, kind: TokKind, start: usize, end: usize) -> usize {
        let idx = self.toks.len();
        self.toks.push(Tok {
            kind,
            start: start as u32,
            end: end as u32,
            next: idx as u32 + 1,
        });
        idx
    }

    fn value(&mut self, s: &[u8], i: &mut usize, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("nesting too deep".into());
        }
        let start = *i;
        match s.get(*i) {
            Some(b'{') => {
                let me = self.push(TokKind::Obj, start, start);
                *i += 1;
                skip_ws(s, i);
                if s.get(*i) == Some(&b'}') {
                    *i += 1;
                } else {
                    loop {
                        skip_ws(s, i);
                        if s.get(*i) != Some(&b'"') {
                            return Err("expected key".into());
                        }
                        self.string(s, i)?;
                        skip_ws(s, i);
                        if s.get(*i) != Some(&b':') {
                            return Err("expected :".into());
                        }
                        *i += 1;
                        skip_ws(s, i);
                        self.value(s, i, depth + 1)?;
                        skip_ws(s, i);
                        match s.get(*i) {
                            Some(b',') => *i += 1,
                            Some(b'}') => {
                                *i += 1;
                                break;
                            }
                            _ => return Err("expected , or }".into()),
                        }
                    }
                }
                self.toks[me].end = *i as u32;
                self.toks[me].next = self.toks.len() as u32;
            }
            Some(b'[') => {
                let me = self.push(TokKind::Arr, start, start);
                *i += 1;
                skip_ws(s, i);
                if s.get(*i) == Some(&b']') {
                    *i += 1;
                } else {
                    loop {
                        skip_ws(s, i);
                        self.value(s, i, depth + 1)?;
                        skip_ws(s, i);
                        match s.get(*i) {
                            Some(b',') => *i += 1,
                            Some(b']') => {
                                *i += 1;
                                break;
                            }
                            _ => return Err("expected , or ]".into()),
                        }
                    }
                }
                self.toks[me].end = *i as u32;
                self.toks[me].next = self.toks.len() as u32;
            }
            Some(b'"') => self.string(s, i)?,
            Some(b't') if s[*i..].starts_with(b"true") => {
                *i += 4;
                self.push(TokKind::True, start, *i);
            }
            Some(b'f') if s[*i..].starts_with(b"false") => {
                *i += 5;
                self.push(TokKind::False, start, *i);
            }
            Some(b'n') if s[*i..].starts_with(b"null") => {
                *i += 4;
                self.push(TokKind::Null, start, *i);
            }
            Some(b'-' | b'0'..=b'9') => {
                let mut float = false;
                while let Some(&c) = s.get(*i) {
                    match c {
                        b'0'..=b'9' | b'-' | b'+' => {}
                        b'.' | b'e' | b'E' => float = true,
                        _ => break,
                    }
                    *i += 1;
                }
                let kind = if float { TokKind::Float } else { TokKind::Int };
                self.push(kind, start, *i);
            }
            _ => return Err(format!("unexpected byte at {start}")),
        }
        Ok(())
    }

    fn string(&mut self, s: &[u8], i: &mut usize) -> Result<(), String> {
        let start = *i;
        *i += 1;
        let mut esc = false;
        loop {
            let rest = &s[*i..];
            let Some(k) = memchr::memchr2(b'"', b'\\', rest) else {
                return Err("unterminated string".into());
            };
            *i += k;
            if s[*i] == b'"' {
                *i += 1;
                break;
            }
            esc = true;
            *i += 2;
        }
        let kind = if esc { TokKind::StrEsc } else { TokKind::Str };
        self.push(kind, start, *i);
        Ok(())
    }
}

fn skip_ws(s: &[u8], i: &mut usize) {
    while let Some(b' ' | b'\t' | b'\r' | b'\n') = s.get(*i) {
        *i += 1;
    }
}
