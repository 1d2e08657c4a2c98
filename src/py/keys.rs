//! The JSON text of recently written dict keys, found by the key object: the dicts of a hot
//! loop are made with the same key objects (literal keys are interned), so a key's UTF-8 and
//! escaping are worked out once per thread instead of once per emit.

use crate::core::json::{self, Record, TokKind};
use pyo3::prelude::*;
use pyo3::types::PyString;

const SLOTS: usize = 64;
/// Longer keys are written each time.
const MAX_TEXT: usize = 40;

/// One remembered key. `key` holds a reference to the object at `ptr`, so while the slot holds
/// it no other object can be allocated at that address: equal addresses are the same string.
struct Slot {
    key: Option<Py<PyString>>,
    ptr: usize,
    kind: TokKind,
    len: u8,
    text: [u8; MAX_TEXT],
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            key: None,
            ptr: 0,
            kind: TokKind::Str,
            len: 0,
            text: [0; MAX_TEXT],
        }
    }
}

/// A thread's remembered keys (kept beside its serialization scratch buffers).
pub struct Keys {
    slots: Vec<Slot>,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }
}

impl Keys {
    /// Append `key` (an exact `str`) as a JSON string: remembered when this object was written
    /// before, else worked out and remembered. Returns the token kind (escaped or not); Err
    /// when the key is not valid Unicode (a lone surrogate).
    #[inline(always)]
    pub fn write(&mut self, out: &mut Vec<u8>, key: &Bound<'_, PyString>) -> Result<TokKind, ()> {
        let ptr = key.as_ptr() as usize;
        // Objects are 16-byte aligned: the bits above that spread neighbours over the slots.
        let i = (ptr >> 4 ^ ptr >> 10) % SLOTS;
        let slot = &self.slots[i];
        if slot.ptr == ptr {
            // All of `text` then cut to length: a fixed-size copy, no call.
            let start = out.len();
            out.extend_from_slice(&slot.text);
            out.truncate(start + slot.len as usize);
            return Ok(slot.kind);
        }
        self.remember(i, out, key)
    }

    /// `write` of a key its slot does not hold: worked out and remembered there (kept out of
    /// line, so the remembered case inlined into the serializer stays small).
    #[inline(never)]
    fn remember(
        &mut self,
        i: usize,
        out: &mut Vec<u8>,
        key: &Bound<'_, PyString>,
    ) -> Result<TokKind, ()> {
        let slot = &mut self.slots[i];
        let start = out.len();
        let kind = write_fresh(out, key)?;
        let text = &out[start..];
        if text.len() <= MAX_TEXT {
            // (the old key's reference is dropped here, under the GIL `key` proves held)
            slot.key = Some(key.clone().unbind());
            slot.ptr = key.as_ptr() as usize;
            slot.kind = kind;
            slot.len = text.len() as u8;
            slot.text[..text.len()].copy_from_slice(text);
        }
        Ok(kind)
    }
}

/// Append `key` as a JSON string, worked out now.
pub fn write_fresh(out: &mut Vec<u8>, key: &Bound<'_, PyString>) -> Result<TokKind, ()> {
    let s = key.to_str().map_err(|_| ())?;
    let start = out.len();
    json::write_str(out, s);
    Ok(if out.len() - start == s.len() + 2 {
        TokKind::Str
    } else {
        TokKind::StrEsc
    })
}

/// What `write_value` records on, with or without the thread's remembered keys.
pub trait Rec: Record {
    fn keys(&mut self) -> Option<&mut Keys> {
        None
    }
}

impl Rec for () {}

/// A recorder with the thread's remembered keys beside it (what emits serialize with).
pub struct WithKeys<'a, R> {
    pub rec: &'a mut R,
    pub keys: &'a mut Keys,
}

impl<R: Record> Rec for WithKeys<'_, R> {
    fn keys(&mut self) -> Option<&mut Keys> {
        Some(self.keys)
    }
}

impl<R: Record> Record for WithKeys<'_, R> {
    fn leaf(&mut self, kind: TokKind, start: usize, end: usize) {
        self.rec.leaf(kind, start, end);
    }
    fn float(&mut self, v: f64, start: usize, end: usize) {
        self.rec.float(v, start, end);
    }
    fn key(&mut self, kind: TokKind, out: &[u8], start: usize, end: usize) {
        self.rec.key(kind, out, start, end);
    }
    fn open(&mut self, kind: TokKind, start: usize) -> usize {
        self.rec.open(kind, start)
    }
    fn close(&mut self, idx: usize, end: usize) {
        self.rec.close(idx, end);
    }
    fn other(&mut self, out: &[u8], start: usize, depth: usize) -> Result<(), String> {
        self.rec.other(out, start, depth)
    }
}
