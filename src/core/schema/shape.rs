//! Validation by shape: for a schema whose verdict depends only on a value's shape, an emit
//! whose data has the shape of the last accepted one is accepted without walking the schema.
//!
//! The shape of a value is its JSON structure with member keys as written and every leaf reduced
//! to its class: null, true, false, string, integer, or float (integral or not, since `2.0`
//! is an `integer` in JSON Schema). A schema's verdict depends only on that when no rule looks
//! further into a leaf: no `enum`, `minimum`/`maximum`, `minLength`/`maxLength` or `format`
//! anywhere in it (`type`, `properties`, `required`, `additionalProperties` and `items` see
//! only the shape). Two values of one shape then get the same verdict, so an accepted shape
//! stays accepted until the registry changes (a `SchemaRef` is a lookup in one registry).

use super::{Node, Schema};
use crate::core::json::{is_integral, Record, Tape, Tok, TokKind};
use std::sync::Mutex;

impl Schema {
    /// Whether the verdict on a value depends only on the value's shape (see the module doc).
    pub fn verdict_by_shape(&self) -> bool {
        match self {
            Schema::Bool(_) => true,
            Schema::Node(n) => n.verdict_by_shape(),
        }
    }
}

impl Node {
    fn verdict_by_shape(&self) -> bool {
        let leaf_rules = self.enumeration.is_some()
            || self.minimum.is_some()
            || self.maximum.is_some()
            || self.min_length.is_some()
            || self.max_length.is_some()
            || self.date_time;
        !leaf_rules
            && self.properties.iter().all(|(_, s)| s.verdict_by_shape())
            && self
                .additional
                .as_ref()
                .is_none_or(Schema::verdict_by_shape)
            && self.items.as_ref().is_none_or(Schema::verdict_by_shape)
    }
}

/// Put the shape of the value at `toks[i]` (written from `src`) to `out`; the index after the
/// value, or None when a float's integrality is not plain from its text (an exponent).
/// The encoding is one-to-one: containers are bracketed, keys are their JSON text (quotes
/// included, so each ends where it is read to end), leaves one letter each.
fn shape_at(src: &[u8], toks: &[Tok], i: usize, out: &mut Vec<u8>) -> Option<usize> {
    let t = toks[i];
    let end = t.next as usize;
    match t.kind {
        TokKind::Obj => {
            out.push(b'{');
            let mut j = i + 1;
            while j < end {
                let k = toks[j];
                out.extend_from_slice(&src[k.start as usize..k.end as usize]);
                j = shape_at(src, toks, j + 1, out)?;
            }
            out.push(b'}');
        }
        TokKind::Arr => {
            out.push(b'[');
            let mut j = i + 1;
            while j < end {
                j = shape_at(src, toks, j, out)?;
            }
            out.push(b']');
        }
        TokKind::Float => out.push(float_class(&src[t.start as usize..t.end as usize])?),
        k => out.push(leaf_letter(k)),
    }
    Some(end)
}

/// The letter of a leaf other than a float.
fn leaf_letter(kind: TokKind) -> u8 {
    match kind {
        TokKind::Null => b'n',
        TokKind::True => b't',
        TokKind::False => b'f',
        TokKind::Int => b'i',
        _ => b's',
    }
}

/// `I` for a float text with only zeros after its point (integral), `F` for any other without
/// an exponent, None with an exponent.
fn float_class(text: &[u8]) -> Option<u8> {
    if text.iter().any(|&c| c == b'e' || c == b'E') {
        return None;
    }
    let frac = text
        .iter()
        .position(|&c| c == b'.')
        .map_or(&[][..], |p| &text[p + 1..]);
    Some(if frac.iter().all(|&c| c == b'0') {
        b'I'
    } else {
        b'F'
    })
}

/// The shape of the JSON text `src`, as `ShapeBuf` records it while writing; None when the
/// text is not JSON or its shape is not plain (a float with an exponent). For tests.
#[cfg(any(test, feature = "test-hooks"))]
pub fn shape_of_text(src: &[u8]) -> Option<Vec<u8>> {
    let mut tape = Tape::default();
    tape.parse(src).ok()?;
    let mut out = Vec::new();
    shape_at(src, &tape.toks, 0, &mut out)?;
    Some(out)
}

/// A shape recorded by a serializer while it writes (`Record`), in `shape_at`'s encoding: an
/// emit whose shape is remembered needs no token tape at all.
#[derive(Default)]
pub struct ShapeBuf {
    pub bytes: Vec<u8>,
    /// False once a value's shape could not be told (a float with an exponent written by
    /// other means): then the value is validated in full.
    pub exact: bool,
    scratch: Tape,
}

impl ShapeBuf {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.exact = true;
    }
}

impl Record for ShapeBuf {
    fn leaf(&mut self, kind: TokKind, _: usize, _: usize) {
        self.bytes.push(leaf_letter(kind));
    }
    fn float(&mut self, v: f64, _: usize, _: usize) {
        // The value says it exactly, whatever its text (`1e16` is integral too).
        self.bytes.push(if is_integral(v) { b'I' } else { b'F' });
    }
    fn key(&mut self, _: TokKind, out: &[u8], start: usize, end: usize) {
        self.bytes.extend_from_slice(&out[start..end]);
    }
    fn open(&mut self, kind: TokKind, _: usize) -> usize {
        self.bytes
            .push(if kind == TokKind::Obj { b'{' } else { b'[' });
        usize::from(kind == TokKind::Obj)
    }
    fn close(&mut self, is_obj: usize, _: usize) {
        self.bytes.push(if is_obj == 1 { b'}' } else { b']' });
    }
    fn other(&mut self, out: &[u8], start: usize, depth: usize) -> Result<(), String> {
        self.scratch.toks.clear();
        self.scratch.append(out, start, depth)?;
        if shape_at(out, &self.scratch.toks, 0, &mut self.bytes).is_none() {
            self.exact = false;
        }
        Ok(())
    }
}

/// The shapes of the last few values a schema accepted (for `verdict_by_shape` schemas only):
/// a few, since a number that is sometimes integral (JavaScript's `7 / 7` is written `1`)
/// alternates a value between two shapes.
#[derive(Default)]
pub struct ShapeMemo {
    by_shape: bool,
    /// (the accepted shapes, the newest first; scratch for a shape read off a tape)
    kept: Mutex<(Vec<Vec<u8>>, Vec<u8>)>,
}

/// How many accepted shapes a memo keeps.
const KEEP: usize = 4;

impl ShapeMemo {
    pub fn new(schema: &Schema) -> Self {
        ShapeMemo {
            by_shape: schema.verdict_by_shape(),
            kept: Mutex::default(),
        }
    }

    /// Whether values for this schema are worth recording as a shape (`ShapeBuf`).
    pub fn by_shape(&self) -> bool {
        self.by_shape
    }

    /// `schema.validate` of the value on `tape` (written as `src`), skipped when the memo holds
    /// its shape. `schema` must be the one the memo was made for.
    pub fn validate(
        &self,
        schema: &Schema,
        src: &[u8],
        tape: &Tape,
    ) -> Result<(), super::Violation> {
        let full = || schema.validate(&super::TapeNode::root(src, tape));
        // Another thread holding the memo: validate without it rather than wait.
        let Some(mut g) = self.by_shape.then(|| self.kept.try_lock().ok()).flatten() else {
            return full();
        };
        let (kept, shape) = &mut *g;
        shape.clear();
        if tape.toks.is_empty() || shape_at(src, &tape.toks, 0, shape).is_none() {
            return full();
        }
        remembered_or(kept, shape, full)
    }

    /// `schema.validate` of the JSON text `src` whose shape a serializer recorded: accepted at
    /// once when the memo holds that shape, else tokenized and validated in full.
    pub fn validate_shape(
        &self,
        schema: &Schema,
        shape: &ShapeBuf,
        src: &[u8],
    ) -> Result<(), super::Violation> {
        let full = || {
            let mut tape = Tape::default();
            tape.parse(src).map_err(super::Violation::new)?;
            schema.validate(&super::TapeNode::root(src, &tape))
        };
        let Some(mut g) = (self.by_shape && shape.exact)
            .then(|| self.kept.try_lock().ok())
            .flatten()
        else {
            return full();
        };
        remembered_or(&mut g.0, &shape.bytes, full)
    }
}

/// Ok when `shape` is one of `kept`, else `full()`'s verdict; an accepted shape is kept (the
/// newest first, the oldest of more than `KEEP` dropped).
fn remembered_or(
    kept: &mut Vec<Vec<u8>>,
    shape: &[u8],
    full: impl FnOnce() -> Result<(), super::Violation>,
) -> Result<(), super::Violation> {
    if kept.iter().any(|k| k.as_slice() == shape) {
        return Ok(());
    }
    full()?;
    let mut slot = if kept.len() >= KEEP {
        kept.pop().unwrap_or_default()
    } else {
        Vec::new()
    };
    slot.clear();
    slot.extend_from_slice(shape);
    kept.insert(0, slot);
    Ok(())
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod shape_tests;
