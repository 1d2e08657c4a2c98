//! Python objects straight to JSON bytes (no intermediate string or tree), enforcing I-JSON;
//! and `JsonView` over Python objects so the validator reads them in place.

use super::keys::{self, Keys, Rec, WithKeys};
use super::values::write_other;
use super::SchemaError;
use crate::core::json::{self, MAX_DEPTH};
use crate::core::json::{Tape, TokKind};
use crate::core::schema::ShapeBuf;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::Borrowed;
use std::cell::RefCell;

/// How values outside JSON's own types are handled (per ledger: `ledgerx.open(..., nonfinite=,
/// default=)`).
#[derive(Clone, Copy, Default)]
pub struct Opts<'a, 'py> {
    /// NaN/±Inf become `null` (else they are refused).
    pub nonfinite_null: bool,
    /// Called with any value no rule covers; its result is serialized instead.
    pub default: Option<&'a Bound<'py, PyAny>>,
}

thread_local! {
    /// Per-thread scratch: the serialized bytes and their token tape, reused between calls so
    /// the hot path allocates nothing once warm.
    static SCRATCH: RefCell<(Vec<u8>, Tape, Keys)> = RefCell::default();
    /// The same for emits validated by shape: the bytes and their shape.
    static SHAPED: RefCell<(Vec<u8>, ShapeBuf, Keys)> = RefCell::default();
}

/// Serialize `obj` into the thread's scratch buffer and hand the bytes and their token tape
/// (recorded while writing: the validator needs no second pass) to `f` (which may release the
/// GIL: the bytes no longer need Python).
pub fn with_serialized<R>(
    obj: &Bound<'_, PyAny>,
    opts: Opts<'_, '_>,
    f: impl FnOnce(&[u8], &mut Tape) -> R,
) -> Result<R, ConvertError> {
    SCRATCH.with(|cell| {
        // A `default` callable or a signal handler may emit while this thread's scratch is in
        // use: then work in fresh buffers instead of failing.
        let Ok(mut guard) = cell.try_borrow_mut() else {
            let (mut buf, mut tape, mut keys) = <(Vec<u8>, Tape, Keys)>::default();
            let mut rec = WithKeys {
                rec: &mut tape,
                keys: &mut keys,
            };
            write_value(&mut buf, &mut rec, obj, 0, opts)?;
            return Ok(f(&buf, &mut tape));
        };
        let (buf, tape, keys) = &mut *guard;
        buf.clear();
        tape.toks.clear();
        write_value(buf, &mut WithKeys { rec: tape, keys }, obj, 0, opts)?;
        Ok(f(buf, tape))
    })
}

/// `with_serialized` recording the shape of `obj` instead of its tape (`ShapeBuf`), for a
/// schema that validates by shape.
pub fn with_shape<R>(
    obj: &Bound<'_, PyAny>,
    opts: Opts<'_, '_>,
    f: impl FnOnce(&[u8], &ShapeBuf) -> R,
) -> Result<R, ConvertError> {
    SHAPED.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else {
            let (mut buf, mut shape, mut keys) = <(Vec<u8>, ShapeBuf, Keys)>::default();
            shape.clear();
            let mut rec = WithKeys {
                rec: &mut shape,
                keys: &mut keys,
            };
            write_value(&mut buf, &mut rec, obj, 0, opts)?;
            return Ok(f(&buf, &shape));
        };
        let (buf, shape, keys) = &mut *guard;
        buf.clear();
        shape.clear();
        write_value(buf, &mut WithKeys { rec: shape, keys }, obj, 0, opts)?;
        Ok(f(buf, shape))
    })
}

/// A serialization failure: path segments (innermost first) and the reason. Boxed, so the
/// hot path's `Result<(), ConvertError>` is one word.
pub struct ConvertError(Box<ConvertFailure>);

struct ConvertFailure {
    path: Vec<String>,
    message: String,
}

impl ConvertError {
    #[cold]
    pub(super) fn new(message: impl Into<String>) -> Self {
        ConvertError(Box::new(ConvertFailure {
            path: Vec::new(),
            message: message.into(),
        }))
    }

    #[cold]
    fn at(mut self, seg: String) -> Self {
        self.0.path.push(seg);
        self
    }

    /// Where the value is: `data.params[2]`.
    pub fn path_str(&self, root: &str) -> String {
        let mut p = String::from(root);
        for seg in self.0.path.iter().rev() {
            if !seg.starts_with('[') {
                p.push('.');
            }
            p.push_str(seg);
        }
        p
    }

    pub fn render(&self, root: &str) -> String {
        format!("{}: {}", self.path_str(root), self.0.message)
    }
}

/// Append `obj` as JSON: dict (str keys), list, tuple, str, int (64-bit), float (finite), bool,
/// None first (the hot path); then the values of `write_other` (numpy, datetime, ...).
pub fn write_obj(
    out: &mut Vec<u8>,
    obj: &Bound<'_, PyAny>,
    depth: usize,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    write_value(out, &mut (), obj, depth, opts)
}

/// A string's token kind: escaped when `write_str` wrote more than its bytes and quotes.
fn str_kind(written: usize, len: usize) -> TokKind {
    if written == len + 2 {
        TokKind::Str
    } else {
        TokKind::StrEsc
    }
}

/// What a value is written as. Exact built-in types are told by one pointer compare each
/// (with abi3 every `isinstance` check is a call); subclasses go through the same rules in the
/// same order as before (bool before int: a bool is an int).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Dict,
    Bool,
    Int,
    Float,
    Null,
    Seq,
    Other,
}

#[inline(always)]
fn kind_of(obj: &Bound<'_, PyAny>) -> Kind {
    use pyo3::ffi;
    let tp = obj.get_type_ptr();
    // Only the addresses of the interpreter's static type objects are taken.
    if tp == &raw mut ffi::PyUnicode_Type {
        Kind::Str
    } else if tp == &raw mut ffi::PyFloat_Type {
        Kind::Float
    } else if tp == &raw mut ffi::PyLong_Type {
        Kind::Int
    } else if tp == &raw mut ffi::PyDict_Type {
        Kind::Dict
    } else {
        kind_by_checks(obj)
    }
}

/// `kind_of` a value that is not an exact str, float, int or dict (out of line).
#[inline(never)]
fn kind_by_checks(obj: &Bound<'_, PyAny>) -> Kind {
    if obj.is_none() {
        Kind::Null
    } else if obj.is_instance_of::<PyString>() {
        Kind::Str
    } else if obj.is_instance_of::<PyDict>() {
        Kind::Dict
    } else if obj.is_instance_of::<PyBool>() {
        Kind::Bool
    } else if obj.is_instance_of::<PyInt>() {
        Kind::Int
    } else if obj.is_instance_of::<PyFloat>() {
        Kind::Float
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        Kind::Seq
    } else {
        Kind::Other
    }
}

/// `write_obj`, recording what it writes on `rec`.
fn write_value<R: Rec>(
    out: &mut Vec<u8>,
    rec: &mut R,
    obj: &Bound<'_, PyAny>,
    depth: usize,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    write_kind(out, rec, obj, kind_of(obj), depth, opts)
}

impl Kind {
    /// Whether writing a value of this kind runs no Python code (so nothing can change the
    /// container it is read from meanwhile): str, int, float, bool and None, subclasses
    /// included (their C-level value is read, no method is called). Only when it fails is an
    /// exception object made (a lone surrogate; an int over 64 bits), and with it possibly a
    /// garbage collection that runs finalizers: after a failure the member's objects are not
    /// touched again (`write_leaf`, `at_key_text`).
    fn runs_no_python(self) -> bool {
        matches!(
            self,
            Kind::Str | Kind::Int | Kind::Float | Kind::Bool | Kind::Null
        )
    }
}

/// `write_value` of `obj`, which is of kind `kind`.
fn write_kind<R: Rec>(
    out: &mut Vec<u8>,
    rec: &mut R,
    obj: &Bound<'_, PyAny>,
    kind: Kind,
    depth: usize,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    match kind {
        // SAFETY: `kind_of` found a dict (or a subclass).
        Kind::Dict => write_dict(out, rec, unsafe { obj.downcast_unchecked() }, depth, opts),
        Kind::Seq => write_seq(out, rec, obj, depth, opts),
        Kind::Other => {
            // Rarer types (numpy, datetime, Decimal, `default`…): their text is tokenized.
            let start = out.len();
            write_other(out, obj, depth, opts)?;
            rec.other(out, start, depth).map_err(ConvertError::new)
        }
        leaf => write_leaf(out, rec, obj, leaf, opts),
    }
}

/// `write_kind` of a value whose kind `runs_no_python` (inlined into the loops over members
/// and items: most values are leaves).
#[inline(always)]
fn write_leaf<R: Rec>(
    out: &mut Vec<u8>,
    rec: &mut R,
    obj: &Bound<'_, PyAny>,
    kind: Kind,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    let start = out.len();
    match kind {
        Kind::Str => {
            // SAFETY: `kind_of` found a str (or a subclass).
            let s = unsafe { obj.downcast_unchecked::<PyString>() };
            let s = s
                .to_str()
                .map_err(|_| ConvertError::new("string is not valid Unicode (lone surrogate?)"))?;
            json::write_str(out, s);
            rec.leaf(str_kind(out.len() - start, s.len()), start, out.len());
        }
        Kind::Bool => {
            let yes = obj.is_truthy().unwrap_or(false);
            out.extend_from_slice(if yes { b"true" } else { b"false" });
            let kind = if yes { TokKind::True } else { TokKind::False };
            rec.leaf(kind, start, out.len());
        }
        Kind::Int => {
            // Over i64 is told by a flag, not an exception (`runs_no_python`): `obj` is read
            // again only then, for u64, and not after that fails.
            let mut over = 0;
            // SAFETY: `obj` is an int (or a subclass: its value is read, `__index__` is not
            // called) and the GIL is held.
            let v = unsafe { pyo3::ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut over) };
            if over == 0 && v == -1 && PyErr::occurred(obj.py()) {
                return Err(ConvertError::new(PyErr::fetch(obj.py()).to_string()));
            }
            if over == 0 {
                json::write_i64(out, v);
            } else if let (1, Ok(v)) = (over, obj.extract::<u64>()) {
                out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            } else {
                return Err(ConvertError::new("integer out of 64-bit range"));
            }
            rec.leaf(TokKind::Int, start, out.len());
        }
        Kind::Float => {
            // SAFETY: `kind_of` found a float (or a subclass).
            let v = unsafe { obj.downcast_unchecked::<PyFloat>() }.value();
            write_float(out, v, opts)?;
            // NaN/±Inf were written as null (nonfinite="null"), else refused above.
            if v.is_finite() {
                rec.float(v, start, out.len());
            } else {
                rec.leaf(TokKind::Null, start, out.len());
            }
        }
        _ => {
            out.extend_from_slice(b"null");
            rec.leaf(TokKind::Null, start, out.len());
        }
    }
    Ok(())
}

pub(super) fn check_depth(depth: usize) -> Result<(), ConvertError> {
    if depth >= MAX_DEPTH {
        return Err(ConvertError::new(format!(
            "nested deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(())
}

/// `{`…`}` or `[`…`]` around what `body` writes, recorded on `rec` as one container.
fn write_container<R: Rec>(
    out: &mut Vec<u8>,
    rec: &mut R,
    kind: TokKind,
    depth: usize,
    body: impl FnOnce(&mut Vec<u8>, &mut R) -> Result<(), ConvertError>,
) -> Result<(), ConvertError> {
    check_depth(depth)?;
    let start = out.len();
    let me = rec.open(kind, start);
    let (open, close) = if kind == TokKind::Obj {
        (b'{', b'}')
    } else {
        (b'[', b']')
    };
    out.push(open);
    body(out, rec)?;
    out.push(close);
    rec.close(me, out.len());
    Ok(())
}

/// A dict as a JSON object (string keys only), recorded on `rec`.
///
/// Its items are read with `PyDict_Next` as borrowed references: a member whose value runs no
/// Python code while written (`Kind::runs_no_python`) is written without touching reference
/// counts; any other member is held (both references) while written, since Python code
/// (`default=`, a subclass's methods) may change the dict, which is then refused like a dict
/// iterator refuses it (changed size, or more items than it had).
fn write_dict<R: Rec>(
    out: &mut Vec<u8>,
    rec: &mut R,
    d: &Bound<'_, PyDict>,
    depth: usize,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    use pyo3::ffi;
    write_container(out, rec, TokKind::Obj, depth, |out, rec| {
        let py = d.py();
        let dp = d.as_ptr();
        // SAFETY: `dp` is a dict (or a subclass) and the GIL is held (`d` is bound to it).
        let size = unsafe { ffi::PyDict_Size(dp) };
        let (mut pos, mut left) = (0, size);
        let (mut k, mut v) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: as above; PyDict_Next only reads the dict and sets `k`, `v` to borrowed
        // references of one of its items (non-null) when it returns non-zero.
        while unsafe { ffi::PyDict_Next(dp, &mut pos, &mut k, &mut v) } != 0 {
            if left == 0 {
                return Err(ConvertError::new(
                    "dict keys changed while it was serialized",
                ));
            }
            if left < size {
                out.push(b',');
            }
            left -= 1;
            // SAFETY: `k` and `v` are live objects borrowed from the dict just now; they stay
            // alive while the dict is not changed, i.e. while no Python code runs.
            let (kb, vb) = unsafe { (Borrowed::from_ptr(py, k), Borrowed::from_ptr(py, v)) };
            let key = write_key(out, rec, &kb)?;
            let kind = kind_of(&vb);
            if kind.runs_no_python() {
                // (a failed leaf may have run finalizers: the key is read back from its text)
                write_leaf(out, rec, &vb, kind, opts).map_err(|e| at_key_text(e, &out[key]))?;
            } else {
                let (kb, vb) = (kb.to_owned(), vb.to_owned());
                write_kind(out, rec, &vb, kind, depth + 1, opts).map_err(|e| at_key(e, &kb))?;
                // SAFETY: `dp` is still a dict (`d` holds it) and the GIL is held.
                if unsafe { ffi::PyDict_Size(dp) } != size {
                    return Err(ConvertError::new(
                        "dict changed size while it was serialized",
                    ));
                }
            }
        }
        Ok(())
    })
}

/// A member's `"key":` (the key is checked to be a str here); where the key's JSON text is.
#[inline(always)]
fn write_key<R: Rec>(
    out: &mut Vec<u8>,
    rec: &mut R,
    k: &Bound<'_, PyAny>,
) -> Result<std::ops::Range<usize>, ConvertError> {
    let Ok(key) = k.downcast::<PyString>() else {
        return Err(non_string_key(k));
    };
    let ks = out.len();
    let exact = key.get_type_ptr() == &raw mut pyo3::ffi::PyUnicode_Type;
    let written = match rec.keys() {
        Some(keys) if exact => keys.write(out, key),
        _ => keys::write_fresh(out, key), // a str subclass is not remembered
    };
    let kind =
        written.map_err(|_| ConvertError::new("key is not valid Unicode (lone surrogate?)"))?;
    let ke = out.len();
    rec.key(kind, out, ks, ke);
    out.push(b':');
    Ok(ks..ke)
}

#[cold]
fn non_string_key(k: &Bound<'_, PyAny>) -> ConvertError {
    // (held: `repr` runs Python code)
    let k = k.clone();
    ConvertError::new(format!(
        "non-string key {} ({})",
        k.repr().map(|r| r.to_string()).unwrap_or_default(),
        type_name(&k)
    ))
}

/// `e`, located under the member whose key `write_key` wrote as the JSON text `text`.
#[cold]
fn at_key_text(e: ConvertError, text: &[u8]) -> ConvertError {
    let key = serde_json::from_slice::<String>(text)
        .unwrap_or_else(|_| String::from_utf8_lossy(text).into_owned());
    e.at(key)
}

/// `e`, located under the member `key` (a str: `write_key` wrote it).
#[cold]
fn at_key(e: ConvertError, key: &Bound<'_, PyAny>) -> ConvertError {
    // (held: a str subclass's `__str__` is Python code)
    let key = key.clone();
    e.at(key.to_string())
}

/// A list or tuple as a JSON array, recorded on `rec`.
fn write_seq<R: Rec>(
    out: &mut Vec<u8>,
    rec: &mut R,
    obj: &Bound<'_, PyAny>,
    depth: usize,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    write_container(out, rec, TokKind::Arr, depth, |out, rec| {
        let items = obj
            .try_iter()
            .map_err(|e| ConvertError::new(e.to_string()))?;
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let item = item.map_err(|e| ConvertError::new(e.to_string()))?;
            write_value(out, rec, &item, depth + 1, opts).map_err(|e| e.at(format!("[{i}]")))?;
        }
        Ok(())
    })
}

/// Tests only (the `test-hooks` feature): whether the tape recorded while serializing `obj`
/// (NaN/±Inf as null with `nonfinite_null`) is the one a parse of the written text gives.
#[cfg(feature = "test-hooks")]
#[pyfunction]
#[pyo3(signature = (obj, nonfinite_null = false))]
pub fn _tape_matches_parse(obj: &Bound<'_, PyAny>, nonfinite_null: bool) -> PyResult<bool> {
    let opts = Opts {
        nonfinite_null,
        default: None,
    };
    with_serialized(obj, opts, |bytes, tape| {
        let mut parsed = Tape::default();
        parsed.parse(bytes).is_ok() && parsed.toks == tape.toks
    })
    .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.render("data")))
}

/// Tests only (the `test-hooks` feature): whether the shape recorded while serializing `obj`
/// (for validation by shape) is the one the written text has, where the text's shape is plain.
#[cfg(feature = "test-hooks")]
#[pyfunction]
#[pyo3(signature = (obj, nonfinite_null = false))]
pub fn _shape_matches_parse(obj: &Bound<'_, PyAny>, nonfinite_null: bool) -> PyResult<bool> {
    let opts = Opts {
        nonfinite_null,
        default: None,
    };
    with_shape(obj, opts, |bytes, shape| {
        match crate::core::schema::shape_of_text(bytes) {
            Some(parsed) => shape.exact && parsed == shape.bytes,
            None => true, // an exponent: the text alone does not tell integrality
        }
    })
    .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.render("data")))
}

pub(super) fn write_float(
    out: &mut Vec<u8>,
    v: f64,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    if v.is_finite() {
        json::write_f64(out, v);
    } else if opts.nonfinite_null {
        out.extend_from_slice(b"null");
    } else {
        return Err(ConvertError::new(format!(
            "{v} is not allowed (I-JSON: finite numbers only); to record NaN/Inf as null, \
             open the ledger with ledgerx.open(..., nonfinite=\"null\")"
        )));
    }
    Ok(())
}

pub(super) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Serialize like emit() does; raises SchemaError for anything that is not I-JSON.
#[pyfunction]
pub fn to_json<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::new();
    write_obj(&mut out, obj, 0, Opts::default())
        .map_err(|e| SchemaError::new_err(e.render("value")))?;
    Ok(PyBytes::new(py, &out))
}
