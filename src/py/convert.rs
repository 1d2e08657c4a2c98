//! Python objects straight to JSON bytes (no intermediate string or tree), enforcing I-JSON;
//! and `JsonView` over Python objects so the validator reads them in place.

use super::SchemaError;
use crate::core::json::Tape;
use crate::core::json::{self, MAX_DEPTH};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::cell::RefCell;

thread_local! {
    /// Per-thread scratch: the serialized bytes and their token tape, reused between calls so
    /// the hot path allocates nothing once warm.
    static SCRATCH: RefCell<(Vec<u8>, Tape)> = RefCell::new((Vec::with_capacity(4096), Tape::default()));
}

/// Serialize `obj` into the thread's scratch buffer and hand the bytes and an empty tape to
/// `f` (which may release the GIL: the bytes no longer need Python).
pub fn with_serialized<R>(
    obj: &Bound<'_, PyAny>,
    f: impl FnOnce(&[u8], &mut Tape) -> R,
) -> Result<R, ConvertError> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let (buf, tape) = &mut *scratch;
            buf.clear();
            write_obj(buf, obj, 0)?;
            Ok(f(buf, tape))
        }
        // Re-entered while serializing (a list subclass's `__iter__` that emits): the outer
        // call holds the scratch, so this one gets its own buffers.
        Err(_) => {
            let (mut buf, mut tape) = (Vec::new(), Tape::default());
            write_obj(&mut buf, obj, 0)?;
            Ok(f(&buf, &mut tape))
        }
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

/// Append `obj` as JSON. Only JSON types are accepted: dict (str keys), list, tuple, str, int
/// (64-bit), float (finite), bool, None.
pub fn write_obj(
    out: &mut Vec<u8>,
    obj: &Bound<'_, PyAny>,
    depth: usize,
) -> Result<(), ConvertError> {
    if let Ok(s) = obj.downcast::<PyString>() {
        let s = s
            .to_str()
            .map_err(|_| ConvertError::new("string is not valid Unicode (lone surrogate?)"))?;
        json::write_str(out, s);
    } else if let Ok(d) = obj.downcast::<PyDict>() {
        if depth >= MAX_DEPTH {
            return Err(ConvertError::new(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        out.push(b'{');
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
            let key = key
                .to_str()
                .map_err(|_| ConvertError::new("key is not valid Unicode (lone surrogate?)"))?;
            json::write_str(out, key);
            out.push(b':');
            write_obj(out, &v, depth + 1).map_err(|e| e.at(key.to_string()))?;
        }
        out.push(b'}');
    } else if obj.is_instance_of::<PyBool>() {
        out.extend_from_slice(if obj.is_truthy().unwrap_or(false) {
            b"true"
        } else {
            b"false"
        });
    } else if obj.is_instance_of::<PyInt>() {
        if let Ok(v) = obj.extract::<i64>() {
            json::write_i64(out, v);
        } else if let Ok(v) = obj.extract::<u64>() {
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        } else {
            return Err(ConvertError::new("integer out of 64-bit range"));
        }
    } else if let Ok(f) = obj.downcast::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            return Err(ConvertError::new(format!(
                "{v} is not allowed (I-JSON: finite numbers only)"
            )));
        }
        json::write_f64(out, v);
    } else if obj.is_none() {
        out.extend_from_slice(b"null");
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        if depth >= MAX_DEPTH {
            return Err(ConvertError::new(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        out.push(b'[');
        for (i, item) in obj
            .try_iter()
            .map_err(|e| ConvertError::new(e.to_string()))?
            .enumerate()
        {
            if i > 0 {
                out.push(b',');
            }
            let item = item.map_err(|e| ConvertError::new(e.to_string()))?;
            write_obj(out, &item, depth + 1).map_err(|e| e.at(format!("[{i}]")))?;
        }
        out.push(b']');
    } else {
        return Err(ConvertError::new(format!(
            "value of type {} is not JSON-serializable",
            type_name(obj)
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
    write_obj(&mut out, obj, 0).map_err(|e| SchemaError::new_err(e.render("value")))?;
    Ok(PyBytes::new(py, &out))
}
