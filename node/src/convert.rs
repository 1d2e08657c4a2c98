//! JavaScript values straight to JSON bytes (no `JSON.stringify`, no intermediate string),
//! enforcing I-JSON: plain objects, arrays, strings, finite numbers, booleans, null, BigInt in
//! the 64-bit range and valid `Date`s (RFC 3339 UTC). Everything else is refused with the path.

use ledgerx::core::clock;
use ledgerx::core::json::{self, MAX_DEPTH};
use napi::sys::{self, KeyCollectionMode, KeyConversion, KeyFilter, ValueType};
use std::ptr;

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

    /// Where the failure is, e.g. `data.metrics.x` or `data.params.l[1]`.
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

type R<T> = Result<T, ConvertError>;

fn ok(status: sys::napi_status) -> R<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(ConvertError::new(format!(
            "cannot read the value (napi status {status})"
        )))
    }
}

/// Walks one value tree; `object_proto` is `Object.prototype`, to tell plain objects apart.
pub struct Serializer {
    env: sys::napi_env,
    object_proto: sys::napi_value,
}

impl Serializer {
    /// # Safety
    /// `env` must be the live environment of the current call.
    pub unsafe fn new(env: sys::napi_env) -> R<Self> {
        let mut global = ptr::null_mut();
        ok(sys::napi_get_global(env, &mut global))?;
        let mut object = ptr::null_mut();
        ok(sys::napi_get_named_property(
            env,
            global,
            c"Object".as_ptr(),
            &mut object,
        ))?;
        let mut proto = ptr::null_mut();
        ok(sys::napi_get_named_property(
            env,
            object,
            c"prototype".as_ptr(),
            &mut proto,
        ))?;
        Ok(Serializer {
            env,
            object_proto: proto,
        })
    }

    /// Append `v` as JSON to `out`.
    ///
    /// # Safety
    /// `v` must be a value of this serializer's environment, in the current handle scope.
    pub unsafe fn write(&self, out: &mut Vec<u8>, v: sys::napi_value, depth: usize) -> R<()> {
        let mut t = 0;
        ok(sys::napi_typeof(self.env, v, &mut t))?;
        match t {
            ValueType::napi_string => self.write_string(out, v),
            ValueType::napi_number => {
                let mut f = 0.0;
                ok(sys::napi_get_value_double(self.env, v, &mut f))?;
                write_number(out, f)
            }
            ValueType::napi_boolean => {
                let mut b = false;
                ok(sys::napi_get_value_bool(self.env, v, &mut b))?;
                out.extend_from_slice(if b { b"true" } else { b"false" });
                Ok(())
            }
            ValueType::napi_null => {
                out.extend_from_slice(b"null");
                Ok(())
            }
            ValueType::napi_bigint => {
                let (mut n, mut lossless) = (0i64, false);
                ok(sys::napi_get_value_bigint_int64(
                    self.env,
                    v,
                    &mut n,
                    &mut lossless,
                ))?;
                if !lossless {
                    return Err(ConvertError::new("BigInt outside the 64-bit integer range"));
                }
                json::write_i64(out, n);
                Ok(())
            }
            ValueType::napi_object => {
                if depth >= MAX_DEPTH {
                    return Err(ConvertError::new(format!(
                        "nested deeper than {MAX_DEPTH} levels (a cycle?)"
                    )));
                }
                self.write_object(out, v, depth)
            }
            ValueType::napi_undefined => Err(ConvertError::new("undefined is not JSON")),
            ValueType::napi_function => Err(ConvertError::new("a function is not JSON")),
            ValueType::napi_symbol => Err(ConvertError::new("a Symbol is not JSON")),
            _ => Err(ConvertError::new("this value is not JSON")),
        }
    }

    unsafe fn write_string(&self, out: &mut Vec<u8>, v: sys::napi_value) -> R<()> {
        let s = self.string(v)?;
        json::write_str(out, &s);
        Ok(())
    }

    /// The UTF-8 of a JS string; a lone surrogate is refused (V8 would turn it into U+FFFD).
    unsafe fn string(&self, v: sys::napi_value) -> R<String> {
        let mut len = 0usize;
        ok(sys::napi_get_value_string_utf8(
            self.env,
            v,
            ptr::null_mut(),
            0,
            &mut len,
        ))?;
        let mut buf = vec![0u8; len + 1];
        let mut written = 0usize;
        ok(sys::napi_get_value_string_utf8(
            self.env,
            v,
            buf.as_mut_ptr().cast(),
            len + 1,
            &mut written,
        ))?;
        buf.truncate(written);
        if memchr::memmem::find(&buf, "\u{FFFD}".as_bytes()).is_some()
            && self.has_lone_surrogate(v)?
        {
            return Err(ConvertError::new(
                "string has a lone surrogate (not valid Unicode)",
            ));
        }
        String::from_utf8(buf).map_err(|_| ConvertError::new("string is not valid Unicode"))
    }

    unsafe fn has_lone_surrogate(&self, v: sys::napi_value) -> R<bool> {
        let mut len = 0usize;
        ok(sys::napi_get_value_string_utf16(
            self.env,
            v,
            ptr::null_mut(),
            0,
            &mut len,
        ))?;
        let mut buf = vec![0u16; len + 1];
        let mut written = 0usize;
        ok(sys::napi_get_value_string_utf16(
            self.env,
            v,
            buf.as_mut_ptr(),
            len + 1,
            &mut written,
        ))?;
        Ok(char::decode_utf16(buf[..written].iter().copied()).any(|c| c.is_err()))
    }

    unsafe fn write_object(&self, out: &mut Vec<u8>, v: sys::napi_value, depth: usize) -> R<()> {
        let mut is_array = false;
        ok(sys::napi_is_array(self.env, v, &mut is_array))?;
        if is_array {
            return self.write_array(out, v, depth);
        }
        let mut proto = ptr::null_mut();
        ok(sys::napi_get_prototype(self.env, v, &mut proto))?;
        let mut plain = false;
        ok(sys::napi_strict_equals(
            self.env,
            proto,
            self.object_proto,
            &mut plain,
        ))?;
        if !plain {
            let mut pt = 0;
            ok(sys::napi_typeof(self.env, proto, &mut pt))?;
            plain = pt == ValueType::napi_null;
        }
        if !plain {
            let mut is_date = false;
            ok(sys::napi_is_date(self.env, v, &mut is_date))?;
            if is_date {
                return self.write_date(out, v);
            }
            return Err(ConvertError::new(
                "only plain objects, arrays and Dates are JSON (a class instance, Map, Set or Buffer is not)",
            ));
        }
        let mut keys = ptr::null_mut();
        ok(sys::napi_get_all_property_names(
            self.env,
            v,
            KeyCollectionMode::own_only,
            KeyFilter::enumerable | KeyFilter::skip_symbols,
            KeyConversion::numbers_to_strings,
            &mut keys,
        ))?;
        let mut n = 0u32;
        ok(sys::napi_get_array_length(self.env, keys, &mut n))?;
        out.push(b'{');
        let mut first = true;
        for i in 0..n {
            let mut key = ptr::null_mut();
            ok(sys::napi_get_element(self.env, keys, i, &mut key))?;
            let mut val = ptr::null_mut();
            ok(sys::napi_get_property(self.env, v, key, &mut val))?;
            let mut vt = 0;
            ok(sys::napi_typeof(self.env, val, &mut vt))?;
            if vt == ValueType::napi_undefined {
                continue; // as JSON.stringify: a property set to undefined is left out
            }
            let name = self.string(key)?;
            if !first {
                out.push(b',');
            }
            first = false;
            json::write_str(out, &name);
            out.push(b':');
            self.write(out, val, depth + 1).map_err(|e| e.at(name))?;
        }
        out.push(b'}');
        Ok(())
    }

    unsafe fn write_array(&self, out: &mut Vec<u8>, v: sys::napi_value, depth: usize) -> R<()> {
        let mut n = 0u32;
        ok(sys::napi_get_array_length(self.env, v, &mut n))?;
        out.push(b'[');
        for i in 0..n {
            if i > 0 {
                out.push(b',');
            }
            let mut item = ptr::null_mut();
            ok(sys::napi_get_element(self.env, v, i, &mut item))?;
            self.write(out, item, depth + 1)
                .map_err(|e| e.at(format!("[{i}]")))?;
        }
        out.push(b']');
        Ok(())
    }

    unsafe fn write_date(&self, out: &mut Vec<u8>, v: sys::napi_value) -> R<()> {
        let mut ms = 0.0;
        ok(sys::napi_get_date_value(self.env, v, &mut ms))?;
        if !ms.is_finite() {
            return Err(ConvertError::new("an invalid Date is not JSON"));
        }
        out.push(b'"');
        out.extend_from_slice(&clock::format_ts((ms as i64) * 1000));
        out.push(b'"');
        Ok(())
    }
}

/// Append the UTF-8 of the JS string `v` to `out` (one copy, straight into the buffer; a text
/// that may not have fit is measured and written again).
///
/// # Safety
/// `v` must be a string value of `env`, in the current handle scope.
pub unsafe fn append_string(env: sys::napi_env, v: sys::napi_value, out: &mut Vec<u8>) -> R<()> {
    let start = out.len();
    out.reserve(4096);
    let room = out.capacity() - start;
    let mut written = 0usize;
    ok(sys::napi_get_value_string_utf8(
        env,
        v,
        out.as_mut_ptr().add(start).cast(),
        room,
        &mut written,
    ))?;
    // napi writes at most `room - 1` bytes, and only whole characters (up to 4 bytes each): with
    // 4 bytes or more of that left unused, nothing was cut off.
    if written + 4 < room {
        out.set_len(start + written);
        return Ok(());
    }
    let mut len = 0usize;
    ok(sys::napi_get_value_string_utf8(
        env,
        v,
        ptr::null_mut(),
        0,
        &mut len,
    ))?;
    // Room for all of it and the terminating NUL napi writes after it.
    out.reserve(len + 1);
    ok(sys::napi_get_value_string_utf8(
        env,
        v,
        out.as_mut_ptr().add(start).cast(),
        len + 1,
        &mut written,
    ))?;
    out.set_len(start + written.min(len));
    Ok(())
}

/// Integral values in the i64 range as integers (as `JSON.stringify` writes them), others as
/// the shortest round-tripping float; NaN and ±Infinity refused (I-JSON).
fn write_number(out: &mut Vec<u8>, f: f64) -> R<()> {
    if !f.is_finite() {
        return Err(ConvertError::new(format!(
            "{f} is not allowed (I-JSON: finite numbers only)"
        )));
    }
    if json::is_integral(f) && f.abs() < 9.2e18 {
        json::write_i64(out, f as i64);
    } else {
        json::write_f64(out, f);
    }
    Ok(())
}
