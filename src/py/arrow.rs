//! A minimal exporter of scanner columns through the Arrow C data interface (a struct array of
//! utf8 / int64 / timestamp / list children), so pyarrow and DuckDB take the batch without copying
//! through Python objects. Buffers stay owned by an `Arc<Columns>` until the consumer releases.

use crate::core::scanner::{Columns, ListColumn, StrColumn};
use std::ffi::{c_char, c_void, CString};
use std::ops::Range;
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

/// The release protocol of the Arrow C interface's structs: `release` is null once the struct
/// was released or a consumer moved it out.
pub trait ArrowC: Sized {
    fn release_fn(&self) -> Option<unsafe extern "C" fn(*mut Self)>;

    /// Free the struct unless a consumer moved it out (which nulls `release`).
    fn release_if_owned(&mut self) {
        if let Some(r) = self.release_fn() {
            // SAFETY: `release` is set only by the exporter that made the struct (`schema_node`,
            // `into_ffi`, `ScanStream.__arrow_c_stream__`) to its own callback, which expects
            // exactly this struct; a consumer that moved the struct out nulled it: at most once.
            unsafe { r(self) }
        }
    }
}

impl ArrowC for FfiSchema {
    fn release_fn(&self) -> Option<unsafe extern "C" fn(*mut Self)> {
        self.release
    }
}

impl ArrowC for FfiArray {
    fn release_fn(&self) -> Option<unsafe extern "C" fn(*mut Self)> {
        self.release
    }
}

/// Release, then free, boxed children and a dictionary (null pointers skipped).
///
/// # Safety
/// Each non-null pointer came from `Box::into_raw` of a struct that only the caller's private
/// data owns, and is passed here once.
unsafe fn release_boxed<T: ArrowC>(nodes: impl Iterator<Item = *mut T>) {
    for c in nodes.filter(|c| !c.is_null()) {
        if let Some(r) = (*c).release_fn() {
            r(c);
        }
        drop(Box::from_raw(c));
    }
}

const FLAG_NULLABLE: i64 = 2;

/// The column layout of a scan batch, in order: name, Arrow format, and a list's item format
/// ("" for other columns).
pub const FIELDS: &[(&str, &str, &str)] = &[
    ("event_id", "u", ""),
    ("event_type", "u", ""),
    ("schema_version", "l", ""),
    ("ts", "tsu:UTC", ""),
    ("run_id", "u", ""),
    ("writer", "u", ""),
    ("seq", "l", ""),
    ("data", "u", ""),
    ("offset", "l", ""),
    ("line_bytes", "l", ""),
    ("shape", "u", ""),
    ("tint", "+l", "l"),
    ("tnum", "+l", "g"),
];

/// Columns that may hold nulls.
fn nullable(name: &str) -> bool {
    matches!(name, "run_id" | "shape" | "tint" | "tnum")
}

struct SchemaPrivate {
    _strings: Vec<CString>,
    _metadata: Vec<u8>,
    children: Vec<*mut FfiSchema>,
    dictionary: *mut FfiSchema,
}

/// # Safety
/// `s` is null or a schema made by `schema_node` (the Arrow C data interface release callback
/// contract); it is released once, then marked released.
unsafe extern "C" fn release_schema(s: *mut FfiSchema) {
    if s.is_null() || (*s).release.is_none() {
        return;
    }
    let private = Box::from_raw((*s).private_data as *mut SchemaPrivate);
    release_boxed(private.children.iter().copied().chain([private.dictionary]));
    (*s).release = None;
}

/// One schema node: its strings, metadata (already encoded), children and dictionary are owned
/// by its private data and freed by `release_schema`.
fn schema_node(
    name: &str,
    format: &str,
    flags: i64,
    metadata: Vec<u8>,
    children: Vec<*mut FfiSchema>,
    dictionary: *mut FfiSchema,
) -> FfiSchema {
    let strings = vec![
        CString::new(format).expect("format"),
        CString::new(name).expect("name"),
    ];
    let mut private = Box::new(SchemaPrivate {
        _strings: strings,
        _metadata: metadata,
        children,
        dictionary,
    });
    FfiSchema {
        format: private._strings[0].as_ptr(),
        name: private._strings[1].as_ptr(),
        metadata: if private._metadata.is_empty() {
            ptr::null()
        } else {
            private._metadata.as_ptr() as *const c_char
        },
        flags,
        n_children: private.children.len() as i64,
        children: if private.children.is_empty() {
            ptr::null_mut()
        } else {
            private.children.as_mut_ptr()
        },
        dictionary,
        release: Some(release_schema),
        private_data: Box::into_raw(private) as *mut c_void,
    }
}

fn leaf_schema(name: &str, format: &str, nullable: bool) -> *mut FfiSchema {
    let flags = if nullable { FLAG_NULLABLE } else { 0 };
    Box::into_raw(Box::new(schema_node(
        name,
        format,
        flags,
        Vec::new(),
        Vec::new(),
        ptr::null_mut(),
    )))
}

/// Arrow C data interface metadata: an i32 count, then each key and value as i32 length + bytes.
fn encode_metadata(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as i32).to_ne_bytes().to_vec();
    for (k, v) in pairs {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as i32).to_ne_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// The scan batch's fields; with `json_data`, `data` is typed `arrow.json` (the extension
/// type's metadata).
fn batch_fields(json_data: bool) -> Vec<*mut FfiSchema> {
    FIELDS
        .iter()
        .map(|&(n, f, item)| {
            let flags = if nullable(n) { FLAG_NULLABLE } else { 0 };
            let children = if item.is_empty() {
                Vec::new()
            } else {
                vec![leaf_schema("item", item, false)]
            };
            let metadata = if json_data && n == "data" {
                encode_metadata(&[
                    ("ARROW:extension:name", "arrow.json"),
                    ("ARROW:extension:metadata", ""),
                ])
            } else {
                Vec::new()
            };
            let s = schema_node(n, f, flags, metadata, children, ptr::null_mut());
            Box::into_raw(Box::new(s))
        })
        .collect()
}

/// The struct schema of a scan batch.
pub fn export_schema() -> FfiSchema {
    schema_node(
        "",
        "+s",
        0,
        Vec::new(),
        batch_fields(false),
        ptr::null_mut(),
    )
}

/// The struct schema of `export_stream_array`'s batches: a scan batch's columns with `data`
/// typed `arrow.json` (checked by the scanner: DuckDB stores it as JSON without parsing it
/// again), then `file`, dictionary-encoded (int32 indices into one string).
pub fn export_stream_schema() -> FfiSchema {
    let mut children = batch_fields(true);
    let values = leaf_schema("", "u", false);
    let file = schema_node("file", "i", 0, Vec::new(), Vec::new(), values);
    children.push(Box::into_raw(Box::new(file)));
    schema_node("", "+s", 0, Vec::new(), children, ptr::null_mut())
}

struct ArrayPrivate {
    _owner: Arc<Columns>,
    /// Buffers the array owns itself (a dictionary's indices, offsets and values).
    _held_i32: Vec<i32>,
    _held_u8: Vec<u8>,
    buffers: Vec<*const c_void>,
    children: Vec<*mut FfiArray>,
    dictionary: *mut FfiArray,
}

/// # Safety
/// `a` is null or an array made by `array` (the Arrow C data interface release callback
/// contract); it is released once, then marked released.
unsafe extern "C" fn release_array(a: *mut FfiArray) {
    if a.is_null() || (*a).release.is_none() {
        return;
    }
    let private = Box::from_raw((*a).private_data as *mut ArrayPrivate);
    release_boxed(private.children.iter().copied().chain([private.dictionary]));
    (*a).release = None;
}

/// An array of `rows` (an offset and a length into the buffers) over buffers `owner` keeps.
fn array(
    owner: &Arc<Columns>,
    rows: &Range<usize>,
    null_count: i64,
    buffers: Vec<*const c_void>,
    children: Vec<*mut FfiArray>,
) -> FfiArray {
    let mut a = into_ffi(
        ArrayPrivate {
            _owner: Arc::clone(owner),
            _held_i32: Vec::new(),
            _held_u8: Vec::new(),
            buffers,
            children,
            dictionary: ptr::null_mut(),
        },
        rows.len(),
        null_count,
    );
    a.offset = rows.start as i64;
    a
}

fn into_ffi(private: ArrayPrivate, len: usize, null_count: i64) -> FfiArray {
    let mut private = Box::new(private);
    FfiArray {
        length: len as i64,
        null_count,
        offset: 0,
        n_buffers: private.buffers.len() as i64,
        n_children: private.children.len() as i64,
        buffers: private.buffers.as_mut_ptr(),
        children: private.children.as_mut_ptr(),
        dictionary: private.dictionary,
        release: Some(release_array),
        private_data: Box::into_raw(private) as *mut c_void,
    }
}

/// The validity buffer and null count of a column's `rows`.
fn validity<T>(c: &ListColumn<T>, rows: &Range<usize>) -> (*const c_void, i64) {
    match &c.validity {
        Some(v) => {
            let valid: usize = rows
                .clone()
                .filter(|&i| v[i / 8] & (1 << (i % 8)) != 0)
                .count();
            (v.as_ptr() as *const c_void, (rows.len() - valid) as i64)
        }
        None => (ptr::null(), 0),
    }
}

fn str_child(owner: &Arc<Columns>, c: &StrColumn, rows: &Range<usize>) -> *mut FfiArray {
    let (valid, nulls) = validity(c, rows);
    let bufs = vec![
        valid,
        c.offsets.as_ptr() as *const c_void,
        c.values.as_ptr() as *const c_void,
    ];
    Box::into_raw(Box::new(array(owner, rows, nulls, bufs, Vec::new())))
}

/// A list column's `rows`: validity and offsets, which index into one child array holding
/// every value of the column.
fn list_child<T>(owner: &Arc<Columns>, c: &ListColumn<T>, rows: &Range<usize>) -> *mut FfiArray {
    let (valid, nulls) = validity(c, rows);
    let bufs = vec![valid, c.offsets.as_ptr() as *const c_void];
    let items = vec![ptr::null(), c.values.as_ptr() as *const c_void];
    let all = array(owner, &(0..c.values.len()), 0, items, Vec::new());
    let children = vec![Box::into_raw(Box::new(all))];
    Box::into_raw(Box::new(array(owner, rows, nulls, bufs, children)))
}

fn i64_child(owner: &Arc<Columns>, v: &[i64], rows: &Range<usize>) -> *mut FfiArray {
    let bufs = vec![ptr::null(), v.as_ptr() as *const c_void];
    Box::into_raw(Box::new(array(owner, rows, 0, bufs, Vec::new())))
}

/// `rows` of the batch as a struct array; the buffers point into `cols`, kept alive by the Arc.
/// The children carry the rows' offset; the struct itself starts at 0.
pub fn export_array(cols: &Arc<Columns>, rows: &Range<usize>) -> FfiArray {
    let children = batch_children(cols, rows);
    array(cols, &(0..rows.len()), 0, vec![ptr::null()], children)
}

/// `len` rows of the one string `value`: int32 indices (all 0) into a one-entry dictionary.
fn const_str_child(owner: &Arc<Columns>, len: usize, value: &str) -> *mut FfiArray {
    let offsets = vec![
        0,
        i32::try_from(value.len()).expect("a file name under 2 GiB"),
    ];
    let bytes = value.as_bytes().to_vec();
    let dict_buffers = vec![
        ptr::null(),
        offsets.as_ptr() as *const c_void,
        bytes.as_ptr() as *const c_void,
    ];
    let dict = into_ffi(
        ArrayPrivate {
            _owner: Arc::clone(owner),
            _held_i32: offsets,
            _held_u8: bytes,
            buffers: dict_buffers,
            children: Vec::new(),
            dictionary: ptr::null_mut(),
        },
        1,
        0,
    );
    let indices = vec![0i32; len];
    let buffers = vec![ptr::null(), indices.as_ptr() as *const c_void];
    let a = into_ffi(
        ArrayPrivate {
            _owner: Arc::clone(owner),
            _held_i32: indices,
            _held_u8: Vec::new(),
            buffers,
            children: Vec::new(),
            dictionary: Box::into_raw(Box::new(dict)),
        },
        len,
        0,
    );
    Box::into_raw(Box::new(a))
}

fn batch_children(cols: &Arc<Columns>, rows: &Range<usize>) -> Vec<*mut FfiArray> {
    let c = cols.as_ref();
    vec![
        str_child(cols, &c.event_id, rows),
        str_child(cols, &c.event_type, rows),
        i64_child(cols, &c.schema_version, rows),
        i64_child(cols, &c.ts_us, rows),
        str_child(cols, &c.run_id, rows),
        str_child(cols, &c.writer, rows),
        i64_child(cols, &c.seq, rows),
        str_child(cols, &c.data, rows),
        i64_child(cols, &c.offset, rows),
        i64_child(cols, &c.line_bytes, rows),
        str_child(cols, &c.shape, rows),
        list_child(cols, &c.tint, rows),
        list_child(cols, &c.tnum, rows),
    ]
}

/// `rows` of the batch of `file` as `export_stream_schema` describes them.
pub fn export_stream_array(cols: &Arc<Columns>, rows: &Range<usize>, file: &str) -> FfiArray {
    let mut children = batch_children(cols, rows);
    children.push(const_str_child(cols, rows.len(), file));
    array(cols, &(0..rows.len()), 0, vec![ptr::null()], children)
}

/// The end of a stream: an array marked released.
pub fn end_of_stream() -> FfiArray {
    FfiArray {
        length: 0,
        null_count: 0,
        offset: 0,
        n_buffers: 0,
        n_children: 0,
        buffers: ptr::null_mut(),
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: None,
        private_data: ptr::null_mut(),
    }
}
