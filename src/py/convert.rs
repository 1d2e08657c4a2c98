//! Python objects straight to JSON bytes (no intermediate string or tree), enforcing I-JSON;
//! and `JsonView` over Python objects so the validator reads them in place.

use super::SchemaError;
use crate::core::json::{self, MAX_DEPTH};
use crate::core::schema::{JsonView, Kind, Num};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::borrow::Cow;

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

    pub fn render(&self, root: &str) -> String {
        let mut p = String::from(root);
        for seg in self.path.iter().rev() {
            if !seg.starts_with('[') {
                p.push('.');
            }
            p.push_str(seg);
        }
        format!("{p}: {}", self.message)
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

/// A Python object seen as JSON (only after `write_obj` accepted it, or kinds default).
pub struct PyNode<'py>(pub Bound<'py, PyAny>);

impl JsonView for PyNode<'_> {
    fn kind(&self) -> Kind {
        let o = &self.0;
        if o.is_instance_of::<PyString>() {
            Kind::String
        } else if o.is_instance_of::<PyDict>() {
            Kind::Object
        } else if o.is_instance_of::<PyBool>() {
            Kind::Bool
        } else if o.is_instance_of::<PyInt>() || o.is_instance_of::<PyFloat>() {
            Kind::Number
        } else if o.is_instance_of::<PyList>() || o.is_instance_of::<PyTuple>() {
            Kind::Array
        } else {
            Kind::Null
        }
    }

    fn as_bool(&self) -> bool {
        self.0.is_truthy().unwrap_or(false)
    }

    fn as_num(&self) -> Num {
        if let Ok(f) = self.0.downcast::<PyFloat>() {
            return Num::Float(f.value());
        }
        if let Ok(i) = self.0.extract::<i64>() {
            return Num::Int(i as i128);
        }
        match self.0.extract::<u64>() {
            Ok(u) => Num::Int(u as i128),
            Err(_) => Num::Float(self.0.extract::<f64>().unwrap_or(f64::NAN)),
        }
    }

    fn as_str(&self) -> Cow<'_, str> {
        match self.0.downcast::<PyString>() {
            Ok(s) => s.to_cow().unwrap_or(Cow::Borrowed("")),
            Err(_) => Cow::Borrowed(""),
        }
    }

    fn array_len(&self) -> usize {
        self.0.len().unwrap_or(0)
    }

    fn array_item(&self, i: usize) -> Self {
        PyNode(
            self.0
                .get_item(i)
                .unwrap_or_else(|_| self.0.py().None().into_bound(self.0.py())),
        )
    }

    fn object_len(&self) -> usize {
        self.0.len().unwrap_or(0)
    }

    fn object_get(&self, key: &str) -> Option<Self> {
        let d = self.0.downcast::<PyDict>().ok()?;
        d.get_item(key).ok().flatten().map(PyNode)
    }

    fn for_each_member<E>(&self, f: &mut dyn FnMut(&str, Self) -> Result<(), E>) -> Result<(), E> {
        if let Ok(d) = self.0.downcast::<PyDict>() {
            for (k, v) in d.iter() {
                if let Ok(k) = k.downcast::<PyString>() {
                    if let Ok(k) = k.to_str() {
                        f(k, PyNode(v))?;
                    }
                }
            }
        }
        Ok(())
    }
}
