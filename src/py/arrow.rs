//! A minimal exporter of scanner columns through the Arrow C data interface (a struct array of
//! utf8 / int64 / timestamp children), so pyarrow and DuckDB take the batch without copying
//! through Python objects. Buffers stay owned by an `Arc<Columns>` until the consumer releases.

use crate::core::scanner::{Columns, StrColumn};
use std::ffi::{c_char, c_void, CString};
use std::ptr;
use std::sync::Arc;

#[repr(C)]
pub struct FfiSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut FfiSchema,
    dictionary: *mut FfiSchema,
    release: Option<unsafe extern "C" fn(*mut FfiSchema)>,
    private_data: *mut c_void,
}

#[repr(C)]
pub struct FfiArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut FfiArray,
    dictionary: *mut FfiArray,
    release: Option<unsafe extern "C" fn(*mut FfiArray)>,
    private_data: *mut c_void,
}

// SAFETY: the structs own what their pointers reach (boxed children, CStrings and buffers kept
// alive by an `Arc<Columns>` in `private_data`); nothing is shared with another thread, so
// moving one to another thread (PyCapsule destructors may run on any) is sound.
unsafe impl Send for FfiSchema {}
// SAFETY: as for FfiSchema above.
unsafe impl Send for FfiArray {}

impl FfiSchema {
    /// Free the struct unless a consumer moved it out (which nulls `release`).
    pub fn release_if_owned(&mut self) {
        if let Some(r) = self.release {
            // SAFETY: `release` is set only by `export_schema`/`leaf_schema` to
            // `release_schema`, which expects exactly this struct; a consumer that moved the
            // struct out nulled it, so it runs at most once.
            unsafe { r(self) }
        }
    }
}

impl FfiArray {
    /// Free the struct unless a consumer moved it out (which nulls `release`).
    pub fn release_if_owned(&mut self) {
        if let Some(r) = self.release {
            // SAFETY: `release` is set only by `array` to `release_array`, which expects exactly
            // this struct; a consumer that moved the struct out nulled it: it runs at most once.
            unsafe { r(self) }
        }
    }
}

const FLAG_NULLABLE: i64 = 2;

/// The column layout of a scan batch, in order.
pub const FIELDS: &[(&str, &str)] = &[
    ("event_id", "u"),
    ("event_type", "u"),
    ("schema_version", "l"),
    ("ts", "tsu:UTC"),
    ("run_id", "u"),
    ("writer", "u"),
    ("seq", "l"),
    ("data", "u"),
    ("offset", "l"),
    ("line_bytes", "l"),
    ("shape", "u"),
];

struct SchemaPrivate {
    _strings: Vec<CString>,
    children: Vec<*mut FfiSchema>,
}

/// # Safety
/// `s` is null or a schema made by `export_schema`/`leaf_schema` (the Arrow C data interface
/// release callback contract); it is released once, then marked released.
unsafe extern "C" fn release_schema(s: *mut FfiSchema) {
    if s.is_null() || (*s).release.is_none() {
        return;
    }
    let private = Box::from_raw((*s).private_data as *mut SchemaPrivate);
    for &c in &private.children {
        if let Some(r) = (*c).release {
            r(c);
        }
        drop(Box::from_raw(c));
    }
    (*s).release = None;
}

fn leaf_schema(name: &str, format: &str, nullable: bool) -> *mut FfiSchema {
    let strings = vec![
        CString::new(format).expect("format"),
        CString::new(name).expect("name"),
    ];
    let s = FfiSchema {
        format: strings[0].as_ptr(),
        name: strings[1].as_ptr(),
        metadata: ptr::null(),
        flags: if nullable { FLAG_NULLABLE } else { 0 },
        n_children: 0,
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: Box::into_raw(Box::new(SchemaPrivate {
            _strings: strings,
            children: Vec::new(),
        })) as *mut c_void,
    };
    Box::into_raw(Box::new(s))
}

/// The struct schema of a scan batch.
pub fn export_schema() -> FfiSchema {
    let children: Vec<*mut FfiSchema> = FIELDS
        .iter()
        .map(|(n, f)| leaf_schema(n, f, *n == "run_id" || *n == "shape"))
        .collect();
    let strings = vec![
        CString::new("+s").expect("fmt"),
        CString::new("").expect("name"),
    ];
    let mut private = Box::new(SchemaPrivate {
        _strings: strings,
        children,
    });
    FfiSchema {
        format: private._strings[0].as_ptr(),
        name: private._strings[1].as_ptr(),
        metadata: ptr::null(),
        flags: 0,
        n_children: private.children.len() as i64,
        children: private.children.as_mut_ptr(),
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: Box::into_raw(private) as *mut c_void,
    }
}

struct ArrayPrivate {
    _owner: Arc<Columns>,
    buffers: Vec<*const c_void>,
    children: Vec<*mut FfiArray>,
}

/// # Safety
/// `a` is null or an array made by `array` (the Arrow C data interface release callback
/// contract); it is released once, then marked released.
unsafe extern "C" fn release_array(a: *mut FfiArray) {
    if a.is_null() || (*a).release.is_none() {
        return;
    }
    let private = Box::from_raw((*a).private_data as *mut ArrayPrivate);
    for &c in &private.children {
        if let Some(r) = (*c).release {
            r(c);
        }
        drop(Box::from_raw(c));
    }
    (*a).release = None;
}

fn array(
    owner: &Arc<Columns>,
    len: usize,
    null_count: i64,
    buffers: Vec<*const c_void>,
    children: Vec<*mut FfiArray>,
) -> FfiArray {
    let mut private = Box::new(ArrayPrivate {
        _owner: Arc::clone(owner),
        buffers,
        children,
    });
    FfiArray {
        length: len as i64,
        null_count,
        offset: 0,
        n_buffers: private.buffers.len() as i64,
        n_children: private.children.len() as i64,
        buffers: private.buffers.as_mut_ptr(),
        children: private.children.as_mut_ptr(),
        dictionary: ptr::null_mut(),
        release: Some(release_array),
        private_data: Box::into_raw(private) as *mut c_void,
    }
}

fn str_child(owner: &Arc<Columns>, c: &StrColumn) -> *mut FfiArray {
    let (validity, nulls) = match &c.validity {
        Some(v) => {
            let valid: usize = (0..c.len)
                .filter(|&i| v[i / 8] & (1 << (i % 8)) != 0)
                .count();
            (v.as_ptr() as *const c_void, (c.len - valid) as i64)
        }
        None => (ptr::null(), 0),
    };
    let bufs = vec![
        validity,
        c.offsets.as_ptr() as *const c_void,
        c.values.as_ptr() as *const c_void,
    ];
    Box::into_raw(Box::new(array(owner, c.len, nulls, bufs, Vec::new())))
}

fn i64_child(owner: &Arc<Columns>, v: &[i64]) -> *mut FfiArray {
    let bufs = vec![ptr::null(), v.as_ptr() as *const c_void];
    Box::into_raw(Box::new(array(owner, v.len(), 0, bufs, Vec::new())))
}

/// The batch as a struct array; the buffers point into `cols`, kept alive by the Arc.
pub fn export_array(cols: &Arc<Columns>) -> FfiArray {
    let c = cols.as_ref();
    let children = vec![
        str_child(cols, &c.event_id),
        str_child(cols, &c.event_type),
        i64_child(cols, &c.schema_version),
        i64_child(cols, &c.ts_us),
        str_child(cols, &c.run_id),
        str_child(cols, &c.writer),
        i64_child(cols, &c.seq),
        str_child(cols, &c.data),
        i64_child(cols, &c.offset),
        i64_child(cols, &c.line_bytes),
        str_child(cols, &c.shape),
    ];
    array(cols, c.len(), 0, vec![ptr::null()], children)
}
