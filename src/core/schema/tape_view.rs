//! `JsonView` over a token tape: the emit path validates the JSON text it has just written
//! without building a tree.

use super::*;

/// A position in a token tape, seen as JSON by the validator.
#[derive(Clone, Copy)]
pub struct TapeNode<'a> {
    pub src: &'a [u8],
    pub toks: &'a [crate::core::json::Tok],
    pub i: usize,
}

impl<'a> TapeNode<'a> {
    pub fn root(src: &'a [u8], tape: &'a crate::core::json::Tape) -> Self {
        TapeNode {
            src,
            toks: &tape.toks,
            i: 0,
        }
    }

    fn tok(&self) -> crate::core::json::Tok {
        self.toks[self.i]
    }

    fn text(&self) -> &'a [u8] {
        let t = self.tok();
        &self.src[t.start as usize..t.end as usize]
    }

    fn at(&self, i: usize) -> Self {
        TapeNode { i, ..*self }
    }

    fn key_is(&self, key: &str) -> bool {
        use crate::core::json::TokKind;
        let t = self.tok();
        let raw = &self.src[t.start as usize + 1..t.end as usize - 1];
        match t.kind {
            TokKind::Str => raw == key.as_bytes(),
            _ => crate::core::json::unescape(self.text()) == key,
        }
    }
}

impl JsonView for TapeNode<'_> {
    fn kind(&self) -> Kind {
        use crate::core::json::TokKind as T;
        match self.tok().kind {
            T::Null => Kind::Null,
            T::True | T::False => Kind::Bool,
            T::Int | T::Float => Kind::Number,
            T::Str | T::StrEsc => Kind::String,
            T::Arr => Kind::Array,
            T::Obj => Kind::Object,
        }
    }

    fn as_bool(&self) -> bool {
        self.tok().kind == crate::core::json::TokKind::True
    }

    fn as_num(&self) -> Num {
        let s = std::str::from_utf8(self.text()).unwrap_or("");
        if self.tok().kind == crate::core::json::TokKind::Int {
            if let Ok(i) = s.parse::<i128>() {
                return Num::Int(i);
            }
        }
        Num::Float(s.parse::<f64>().unwrap_or(f64::NAN))
    }

    fn is_integral(&self) -> bool {
        // An integer token has no fraction or exponent; only a float token needs parsing.
        self.tok().kind == crate::core::json::TokKind::Int || self.as_num().is_integral()
    }

    fn as_str(&self) -> Cow<'_, str> {
        let t = self.tok();
        match t.kind {
            crate::core::json::TokKind::Str => Cow::Borrowed(
                std::str::from_utf8(&self.src[t.start as usize + 1..t.end as usize - 1])
                    .unwrap_or(""),
            ),
            _ => Cow::Owned(crate::core::json::unescape(self.text())),
        }
    }

    fn array_len(&self) -> usize {
        let end = self.tok().next as usize;
        let mut i = self.i + 1;
        let mut n = 0;
        while i < end {
            n += 1;
            i = self.toks[i].next as usize;
        }
        n
    }

    fn array_item(&self, k: usize) -> Self {
        let mut i = self.i + 1;
        for _ in 0..k {
            i = self.toks[i].next as usize;
        }
        self.at(i)
    }

    fn object_len(&self) -> usize {
        self.array_len() / 2
    }

    fn for_each_item<E>(&self, f: &mut dyn FnMut(usize, Self) -> Result<(), E>) -> Result<(), E> {
        let end = self.tok().next as usize;
        let mut i = self.i + 1;
        let mut k = 0;
        while i < end {
            f(k, self.at(i))?;
            i = self.toks[i].next as usize;
            k += 1;
        }
        Ok(())
    }

    fn object_get(&self, key: &str) -> Option<Self> {
        let end = self.tok().next as usize;
        let mut i = self.i + 1;
        while i < end {
            let k = self.at(i);
            let v = i + 1;
            if k.key_is(key) {
                return Some(self.at(v));
            }
            i = self.toks[v].next as usize;
        }
        None
    }

    fn for_each_member<E>(&self, f: &mut dyn FnMut(&str, Self) -> Result<(), E>) -> Result<(), E> {
        let end = self.tok().next as usize;
        let mut i = self.i + 1;
        while i < end {
            let k = self.at(i);
            let v = i + 1;
            f(&k.as_str(), self.at(v))?;
            i = self.toks[v].next as usize;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "tape_tests.rs"]
mod tape_tests;
