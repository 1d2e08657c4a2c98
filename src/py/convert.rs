//! Python objects straight to JSON bytes (no intermediate string or tree), enforcing I-JSON;
//! and `JsonView` over Python objects so the validator reads them in place.

use super::keys::{self, Keys, Rec, WithKeys};
use super::SchemaError;
use crate::core::json::{self, MAX_DEPTH};
use crate::core::json::{Tape, TokKind};
use crate::core::schema::ShapeBuf;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
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

/// A serialization failure: path segments (innermost first) and the reason.
pub struct ConvertError {
    pub path: Vec<String>,
    pub message: String,
}

impl ConvertError {
    fn new(message: impl Into<String>) -> Self {
        ConvertError {
            path: Vec::new(),
            message: message.into(),
        }
    }

    fn at(mut self, seg: String) -> Self {
        self.path.push(seg);
        self
    }

    /// Where the value is: `data.params[2]`.
    pub fn path_str(&self, root: &str) -> String {
        let mut p = String::from(root);
        for seg in self.path.iter().rev() {
            if !seg.starts_with('[') {
                p.push('.');
            }
            p.push_str(seg);
        }
        p
    }

    pub fn render(&self, root: &str) -> String {
        format!("{}: {}", self.path_str(root), self.message)
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

fn kind_of(obj: &Bound<'_, PyAny>) -> Kind {
    use pyo3::ffi;
    let tp = obj.get_type_ptr();
    // Only the addresses of the interpreter's static type objects are taken.
    if tp == &raw mut ffi::PyUnicode_Type {
        return Kind::Str;
    } else if tp == &raw mut ffi::PyFloat_Type {
        return Kind::Float;
    } else if tp == &raw mut ffi::PyLong_Type {
        return Kind::Int;
    } else if tp == &raw mut ffi::PyDict_Type {
        return Kind::Dict;
    }
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
    let start = out.len();
    match kind_of(obj) {
        Kind::Str => {
            // SAFETY: `kind_of` found a str (or a subclass).
            let s = unsafe { obj.downcast_unchecked::<PyString>() };
            let s = s
                .to_str()
                .map_err(|_| ConvertError::new("string is not valid Unicode (lone surrogate?)"))?;
            json::write_str(out, s);
            rec.leaf(str_kind(out.len() - start, s.len()), start, out.len());
        }
        // SAFETY: `kind_of` found a dict (or a subclass).
        Kind::Dict => write_dict(out, rec, unsafe { obj.downcast_unchecked() }, depth, opts)?,
        Kind::Bool => {
            let yes = obj.is_truthy().unwrap_or(false);
            out.extend_from_slice(if yes { b"true" } else { b"false" });
            let kind = if yes { TokKind::True } else { TokKind::False };
            rec.leaf(kind, start, out.len());
        }
        Kind::Int => {
            if let Ok(v) = obj.extract::<i64>() {
                json::write_i64(out, v);
            } else if let Ok(v) = obj.extract::<u64>() {
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
        Kind::Null => {
            out.extend_from_slice(b"null");
            rec.leaf(TokKind::Null, start, out.len());
        }
        Kind::Seq => write_seq(out, rec, obj, depth, opts)?,
        Kind::Other => {
            // Rarer types (numpy, datetime, Decimal, `default`…): their text is tokenized.
            write_other(out, obj, depth, opts)?;
            rec.other(out, start, depth).map_err(ConvertError::new)?;
        }
    }
    Ok(())
}

fn check_depth(depth: usize) -> Result<(), ConvertError> {
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
fn write_dict<R: Rec>(
    out: &mut Vec<u8>,
    rec: &mut R,
    d: &Bound<'_, PyDict>,
    depth: usize,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    write_container(out, rec, TokKind::Obj, depth, |out, rec| {
        for (i, (k, v)) in d.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let key = k.downcast::<PyString>().map_err(|_| {
                ConvertError::new(format!(
                    "non-string key {} ({})",
                    k.repr().map(|r| r.to_string()).unwrap_or_default(),
                    type_name(&k)
                ))
            })?;
            let ks = out.len();
            let exact = key.get_type_ptr() == &raw mut pyo3::ffi::PyUnicode_Type;
            let written = match rec.keys() {
                Some(keys) if exact => keys.write(out, key),
                _ => keys::write_fresh(out, key), // a str subclass is not remembered
            };
            let kind = written
                .map_err(|_| ConvertError::new("key is not valid Unicode (lone surrogate?)"))?;
            rec.key(kind, out, ks, out.len());
            out.push(b':');
            write_value(out, rec, &v, depth + 1, opts).map_err(|e| e.at(key.to_string()))?;
        }
        Ok(())
    })
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

fn write_float(out: &mut Vec<u8>, v: f64, opts: Opts<'_, '_>) -> Result<(), ConvertError> {
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

fn type_name(obj: &Bound<'_, PyAny>) -> String {
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

/// The values quant code passes besides JSON's own types, recognized by their type's module
/// and name so numpy and pandas are never imported here: numpy scalars and 1-D arrays,
/// datetime/date/pandas.Timestamp, UUID, os.PathLike, Enum, Decimal; then `default`.
fn write_other(
    out: &mut Vec<u8>,
    obj: &Bound<'_, PyAny>,
    depth: usize,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    let py_err = |e: PyErr| ConvertError::new(e.to_string());
    let ty = obj.get_type();
    let module = ty.module().map(|m| m.to_string()).unwrap_or_default();
    let name = ty.name().map(|n| n.to_string()).unwrap_or_default();
    check_depth(depth)?;
    if module == "numpy" {
        if let Some(done) = write_numpy(out, obj, &name, depth, opts)? {
            return Ok(done);
        }
    } else if let Some(s) = datetime_text(obj).map_err(py_err)? {
        json::write_str(out, &s);
        return Ok(());
    } else if module == "uuid" && name == "UUID" {
        let s = obj.str().map_err(py_err)?;
        json::write_str(out, s.to_str().map_err(py_err)?);
        return Ok(());
    } else if module == "decimal" && name == "Decimal" {
        return write_decimal(out, obj, opts);
    } else if obj.hasattr("__fspath__").unwrap_or(false) {
        let p = obj.call_method0("__fspath__").map_err(py_err)?;
        if let Ok(s) = p.downcast::<PyString>() {
            json::write_str(out, s.to_str().map_err(py_err)?);
            return Ok(());
        }
    } else if is_enum(obj) {
        let v = obj.getattr("value").map_err(py_err)?;
        return write_obj(out, &v, depth + 1, opts);
    }
    if let Some(default) = opts.default {
        let v = default
            .call1((obj,))
            .map_err(|e| ConvertError::new(format!("default({}) raised {e}", type_name(obj))))?;
        return write_obj(out, &v, depth + 1, opts);
    }
    Err(ConvertError::new(format!(
        "value of type {} is not JSON-serializable (pass ledgerx.open(..., default=fn) to convert it)",
        if module.is_empty() || module == "builtins" { name } else { format!("{module}.{name}") }
    )))
}

/// numpy scalars (bool, every int/uint/float width) and 1-D arrays; None for other numpy types.
fn write_numpy(
    out: &mut Vec<u8>,
    obj: &Bound<'_, PyAny>,
    name: &str,
    depth: usize,
    opts: Opts<'_, '_>,
) -> Result<Option<()>, ConvertError> {
    let py_err = |e: PyErr| ConvertError::new(e.to_string());
    if name == "bool" || name == "bool_" {
        let b = obj.is_truthy().map_err(py_err)?;
        out.extend_from_slice(if b { b"true" } else { b"false" });
    } else if name.starts_with("int")
        || name.starts_with("uint")
        || name.ends_with("longlong")
        || matches!(
            name,
            "byte" | "ubyte" | "short" | "ushort" | "intc" | "uintc" | "long" | "ulong"
        )
    {
        if let Ok(v) = obj.extract::<i64>() {
            json::write_i64(out, v);
        } else if let Ok(v) = obj.extract::<u64>() {
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        } else {
            return Err(ConvertError::new("integer out of 64-bit range"));
        }
    } else if name.starts_with("float")
        || matches!(name, "half" | "single" | "double" | "longdouble")
    {
        let v = obj.extract::<f64>().map_err(py_err)?;
        write_float(out, v, opts)?;
    } else if name == "ndarray" {
        let ndim: usize = obj
            .getattr("ndim")
            .and_then(|n| n.extract())
            .map_err(py_err)?;
        if ndim != 1 {
            return Err(ConvertError::new(format!(
                "a {ndim}-D numpy array is not a value (only 1-D arrays become lists)"
            )));
        }
        let list = obj.call_method0("tolist").map_err(py_err)?;
        write_obj(out, &list, depth + 1, opts)?;
    } else {
        return Ok(None);
    }
    Ok(Some(()))
}

/// RFC 3339 text for datetime (aware: converted to UTC; naive: taken as UTC), pandas.Timestamp
/// (a datetime subclass) and date; None for anything else.
fn datetime_text(obj: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let py = obj.py();
    let dt = py.import("datetime")?;
    if obj.is_instance(&dt.getattr("datetime")?)? {
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let v = if obj.call_method0("utcoffset")?.is_none() {
            obj.clone()
        } else {
            obj.call_method1("astimezone", (utc,))?
        };
        let f = |k: &str| -> PyResult<i64> { v.getattr(k)?.extract() };
        return Ok(Some(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            f("year")?,
            f("month")?,
            f("day")?,
            f("hour")?,
            f("minute")?,
            f("second")?,
            f("microsecond")?
        )));
    }
    if obj.is_instance(&dt.getattr("date")?)? {
        let f = |k: &str| -> PyResult<i64> { obj.getattr(k)?.extract() };
        return Ok(Some(format!(
            "{:04}-{:02}-{:02}",
            f("year")?,
            f("month")?,
            f("day")?
        )));
    }
    Ok(None)
}

fn is_enum(obj: &Bound<'_, PyAny>) -> bool {
    let py = obj.py();
    py.import("enum")
        .and_then(|m| m.getattr("Enum"))
        .and_then(|e| obj.is_instance(&e))
        .unwrap_or(false)
}

/// A Decimal is a number when a double holds it exactly (I-JSON), otherwise refused.
fn write_decimal(
    out: &mut Vec<u8>,
    obj: &Bound<'_, PyAny>,
    opts: Opts<'_, '_>,
) -> Result<(), ConvertError> {
    let py_err = |e: PyErr| ConvertError::new(e.to_string());
    let v: f64 = obj
        .call_method0("__float__")
        .and_then(|f| f.extract())
        .map_err(py_err)?;
    if !v.is_finite() {
        return write_float(out, v, opts);
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v);
    let back = obj.get_type().call1((text,)).map_err(py_err)?;
    if !back.eq(obj).map_err(py_err)? {
        return Err(ConvertError::new(format!(
            "Decimal('{}') is not exactly representable as a JSON number (IEEE double); pass str() or float()",
            obj.str().map_err(py_err)?
        )));
    }
    out.extend_from_slice(text.as_bytes());
    Ok(())
}
