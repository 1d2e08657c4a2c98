//! The values `emit()` serializes besides JSON's own types (numpy, datetime, UUID, PathLike,
//! Enum, Decimal, then the ledger's `default=`): the slow path of `convert.rs`, which may run
//! Python code.

use super::convert::{check_depth, type_name, write_float, write_obj, ConvertError, Opts};
use crate::core::json;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The values quant code passes besides JSON's own types, recognized by their type's module
/// and name so numpy and pandas are never imported here: numpy scalars and 1-D arrays,
/// datetime/date/pandas.Timestamp, UUID, os.PathLike, Enum, Decimal; then `default`.
pub(super) fn write_other(
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
