//! `scan_files`: parallel scanning of part files without the GIL; each result is a `ScanBatch`
//! exported through the Arrow PyCapsule interface (`__arrow_c_array__`).

use super::arrow::{export_array, export_schema, ArrowC, FfiArray, FfiSchema};
use super::to_py;
use crate::core::appender;
use crate::core::json::Checker;
use crate::core::scanner::{
    self, scan_file_into, Columns, ListColumn, ScanOptions, ScanResult, StrColumn,
};
use crate::core::{Error, Result};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyList, PyString, PyTuple};
use std::collections::{HashSet, VecDeque};
use std::ffi::CString;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[pyclass(frozen, module = "ledgerx._core")]
pub struct ScanBatch {
    #[pyo3(get)]
    pub(super) file: String,
    #[pyo3(get)]
    start_offset: u64,
    #[pyo3(get)]
    end_offset: u64,
    #[pyo3(get)]
    pending_bytes: u64,
    #[pyo3(get)]
    file_size: u64,
    #[pyo3(get)]
    bad_lines: Vec<(u64, u64, String)>,
    /// Why the file could not be read at all (not a regular file, I/O error), else None.
    #[pyo3(get)]
    error: Option<String>,
    pub(super) columns: Arc<Columns>,
    /// The rows of `columns` this batch holds: all of them, or one piece (`pieces`).
    pub(super) rows: Range<usize>,
}

#[pymethods]
impl ScanBatch {
    #[getter]
    fn num_rows(&self) -> usize {
        self.rows.len()
    }

    /// The batch's rows as pieces of at most `max_rows` rows each (sharing its columns, no
    /// copy), for the streams of a big round to share: each piece keeps the batch's file and
    /// offsets but no bad lines (a piece is inserted, never accounted).
    fn pieces(&self, max_rows: usize) -> Vec<ScanBatch> {
        let step = max_rows.max(1);
        (self.rows.start..self.rows.end)
            .step_by(step)
            .map(|a| ScanBatch {
                file: self.file.clone(),
                start_offset: self.start_offset,
                end_offset: self.end_offset,
                pending_bytes: self.pending_bytes,
                file_size: self.file_size,
                bad_lines: Vec::new(),
                error: None,
                columns: Arc::clone(&self.columns),
                rows: a..a.saturating_add(step).min(self.rows.end),
            })
            .collect()
    }

    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let schema = PyCapsule::new_with_destructor(
            py,
            export_schema(),
            Some(CString::new("arrow_schema").expect("name")),
            |mut s: FfiSchema, _| s.release_if_owned(),
        )?;
        let array = PyCapsule::new_with_destructor(
            py,
            export_array(&self.columns, &self.rows),
            Some(CString::new("arrow_array").expect("name")),
            |mut a: FfiArray, _| a.release_if_owned(),
        )?;
        Ok((schema, array))
    }

    /// The columns as Python lists, for a small round that DuckDB reads from bound list
    /// parameters instead of the Arrow interface (which needs the `duckdb` package's Python
    /// layer, most of a one-event `ledgerx rebuild` process): event_id, event_type,
    /// schema_version, ts (microseconds since the epoch, UTC), run_id, writer, seq, data,
    /// shape, tint, tnum (lists), offset, line_bytes.
    fn columns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let c = &self.columns;
        let rows = self.rows.clone();
        let strs = |col: &StrColumn| -> PyResult<Bound<'py, PyList>> {
            let items = rows
                .clone()
                .map(|i| match col.get(i) {
                    None => Ok(py.None().into_bound(py)),
                    Some(b) => std::str::from_utf8(b)
                        .map(|s| PyString::new(py, s).into_any())
                        .map_err(|e| PyValueError::new_err(format!("scanned text: {e}"))),
                })
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)
        };
        let ints = |v: &Vec<i64>| PyList::new(py, v[rows.clone()].iter().copied());
        let cols: Vec<Bound<'py, PyAny>> = vec![
            strs(&c.event_id)?.into_any(),
            strs(&c.event_type)?.into_any(),
            ints(&c.schema_version)?.into_any(),
            ints(&c.ts_us)?.into_any(),
            strs(&c.run_id)?.into_any(),
            strs(&c.writer)?.into_any(),
            ints(&c.seq)?.into_any(),
            strs(&c.data)?.into_any(),
            strs(&c.shape)?.into_any(),
            list_rows(py, &c.tint, &rows)?.into_any(),
            list_rows(py, &c.tnum, &rows)?.into_any(),
            ints(&c.offset)?.into_any(),
            ints(&c.line_bytes)?.into_any(),
        ];
        PyTuple::new(py, cols)
    }

    fn __repr__(&self) -> String {
        format!(
            "ScanBatch(file={:?}, rows={}, {}..{}, bad={})",
            self.file,
            self.rows.len(),
            self.start_offset,
            self.end_offset,
            self.bad_lines.len()
        )
    }
}

/// Read buffers kept between the rounds of one `Scanner` (one per scanning thread).
type BufPool = Mutex<Vec<Vec<u8>>>;

/// Scan each (relative path, start offset) once, in parallel on `threads` threads (0: one per
/// core), without holding the GIL by itself (the callers release it). Each thread reads into a
/// buffer taken from `bufs` and puts it back when done.
fn scan_round(
    events_dir: &Path,
    files: &[(String, u64)],
    opts: ScanOptions,
    threads: usize,
    bufs: &BufPool,
) -> Vec<(ScanBatch, Option<Error>)> {
    let n = files.len();
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .clamp(1, n.max(1));
    let results: Vec<Mutex<Option<Result<ScanResult>>>> =
        (0..n).map(|_| Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = bufs
                    .lock()
                    .ok()
                    .and_then(|mut p| p.pop())
                    .unwrap_or_default();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let (rel, start) = &files[i];
                    let r = scan_file_into(&events_dir.join(rel), *start, opts, &mut buf);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                }
                if let Ok(mut p) = bufs.lock() {
                    p.push(buf);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(n);
    for ((rel, start), slot) in files.iter().zip(results) {
        let r = slot
            .into_inner()
            .ok()
            .flatten()
            .unwrap_or_else(|| Ok(ScanResult::default()));
        // One unreadable file (a FIFO or symlink dropped into the log, an I/O error) is reported
        // on its own batch; the other files are still scanned.
        let (r, error) = match r {
            Ok(r) => (r, None),
            Err(e) => (
                ScanResult {
                    end_offset: *start,
                    ..ScanResult::default()
                },
                Some(e),
            ),
        };
        let batch = ScanBatch {
            file: rel.clone(),
            start_offset: *start,
            end_offset: r.end_offset,
            pending_bytes: r.pending_bytes,
            file_size: r.file_size,
            bad_lines: r
                .bad
                .into_iter()
                .map(|b| (b.offset, b.len, b.reason))
                .collect(),
            error: None,
            rows: 0..r.columns.len(),
            columns: Arc::new(r.columns),
        };
        out.push((batch, error));
    }
    out
}

/// The batches, with the error of an unreadable file as its Python exception would print
/// (under the GIL).
fn with_errors(round: Vec<(ScanBatch, Option<Error>)>) -> Vec<ScanBatch> {
    round
        .into_iter()
        .map(|(mut b, e)| {
            b.error = e.map(|e| to_py(e).to_string());
            b
        })
        .collect()
}

/// Scan each (path relative to `events_dir`, start offset) once, in parallel, without the GIL.
#[pyfunction]
#[pyo3(signature = (events_dir, files, strict = false, max_bytes = 64 * 1024 * 1024, threads = 0))]
pub fn scan_files(
    py: Python<'_>,
    events_dir: PathBuf,
    files: Vec<(String, u64)>,
    strict: bool,
    max_bytes: u64,
    threads: usize,
) -> PyResult<Vec<ScanBatch>> {
    let opts = ScanOptions {
        strict,
        max_bytes,
        ..ScanOptions::default()
    };
    let bufs = BufPool::default();
    let round = py.allow_threads(|| scan_round(&events_dir, &files, opts, threads, &bufs));
    Ok(with_errors(round))
}

/// One file to scan: (path relative to events/, start offset[, stop offset]). With a stop
/// offset no round starts at or past it (a file that grew since it was listed waits for the
/// next indexing round; the last scan may return lines beyond it, as many as its read holds).
#[derive(FromPyObject)]
pub enum FileSpec {
    Until(String, u64, u64),
    From(String, u64),
}

/// The one "scan until done" loop: each `next()` scans up to `width` files (0: all) in
/// parallel, `max_bytes` of each at most, without the GIL, and returns their batches in order;
/// a file that advanced and has complete lines left is queued again (after the others). A file
/// that cannot be read yields one batch with `error` set and is dropped; an unterminated tail is
/// left pending (a writer may still be writing it). Iteration ends when no file has complete
/// lines left.
#[pyclass(module = "ledgerx._core")]
pub struct Scanner {
    events_dir: PathBuf,
    todo: VecDeque<(String, u64, u64)>,
    opts: ScanOptions,
    threads: usize,
    width: usize,
    /// Read buffers reused from round to round, dropped when the scan is done.
    bufs: BufPool,
    /// With `track_ids`: the event ids of every row yielded so far, as 64-bit hashes.
    ids: Option<IdSet>,
}

/// At most this many ids are tracked (a hash table of about 36 MB); a longer scan gives up and
/// leaves the duplicate check to the index.
const MAX_TRACKED_IDS: usize = 1 << 21;

/// Whether the event ids a scan yielded are distinct, told by their 64-bit hashes: no hash
/// seen twice proves the ids distinct; a hash seen twice (a duplicate, or a collision) proves
/// nothing, nor does a scan past `MAX_TRACKED_IDS` ids.
#[derive(Default)]
struct IdSet {
    seen: HashSet<u64, BuildHasherDefault<Mixed>>,
    repeated: bool,
    overflow: bool,
}

impl IdSet {
    fn add(&mut self, round: &[(ScanBatch, Option<Error>)]) {
        for (b, _) in round {
            let ids = &b.columns.event_id;
            if self.repeated || self.overflow {
                return;
            }
            if self.seen.len() + ids.len > MAX_TRACKED_IDS {
                self.overflow = true;
                self.seen = HashSet::default();
                return;
            }
            self.seen.reserve(ids.len);
            for w in ids.offsets.windows(2) {
                let id = &ids.values[w[0] as usize..w[1] as usize];
                if !self.seen.insert(id_hash(id)) {
                    self.repeated = true;
                    self.seen = HashSet::default();
                    return;
                }
            }
        }
    }

    fn distinct(&self) -> Option<bool> {
        if self.repeated {
            Some(false)
        } else if self.overflow {
            None
        } else {
            Some(true)
        }
    }
}

/// A 64-bit hash of an id's bytes (FxHash-style rounds, then murmur3's finalizer so every bit
/// depends on every byte): equal bytes, equal hash.
fn id_hash(id: &[u8]) -> u64 {
    let mut h = id.len() as u64;
    let mut chunks = id.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hasher of `IdSet`: its keys are `id_hash` values already, used as they are.
#[derive(Default)]
struct Mixed(u64);

impl Hasher for Mixed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64; // not used: u64 keys go through write_u64
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[pymethods]
impl Scanner {
    #[new]
    #[pyo3(signature = (events_dir, files, strict = false, max_bytes = 64 * 1024 * 1024, threads = 0, width = 0, track_ids = false))]
    fn new(
        events_dir: PathBuf,
        files: Vec<FileSpec>,
        strict: bool,
        max_bytes: u64,
        threads: usize,
        width: usize,
        track_ids: bool,
    ) -> Self {
        let todo = files
            .into_iter()
            .map(|f| match f {
                FileSpec::Until(rel, start, stop) => (rel, start, stop),
                FileSpec::From(rel, start) => (rel, start, u64::MAX),
            })
            .collect();
        let opts = ScanOptions {
            strict,
            max_bytes,
            ..ScanOptions::default()
        };
        Scanner {
            events_dir,
            todo,
            opts,
            threads,
            width,
            bufs: BufPool::default(),
            ids: track_ids.then(IdSet::default),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(mut slf: PyRefMut<'_, Self>, py: Python<'_>) -> Option<Vec<ScanBatch>> {
        let this = &mut *slf;
        if this.todo.is_empty() {
            if let Ok(mut p) = this.bufs.lock() {
                *p = Vec::new(); // the scan is done: its read buffers are freed now
            }
            if let Some(ids) = &mut this.ids {
                ids.seen = HashSet::default(); // the verdict stays, the hashes go
            }
            return None;
        }
        let take = if this.width == 0 {
            this.todo.len()
        } else {
            this.width.min(this.todo.len())
        };
        let group: Vec<(String, u64, u64)> = this.todo.drain(..take).collect();
        let files: Vec<(String, u64)> = group.iter().map(|(r, s, _)| (r.clone(), *s)).collect();
        let (dir, opts, threads, bufs) = (&this.events_dir, this.opts, this.threads, &this.bufs);
        let ids = &mut this.ids;
        let round = py.allow_threads(|| {
            let round = scan_round(dir, &files, opts, threads, bufs);
            if let Some(ids) = ids {
                ids.add(&round);
            }
            round
        });
        for ((rel, start, stop), (b, e)) in group.into_iter().zip(&round) {
            let more =
                e.is_none() && b.end_offset > start && b.end_offset < stop && b.pending_bytes > 0;
            if more {
                this.todo.push_back((rel, b.end_offset, stop));
            }
        }
        Some(with_errors(round))
    }

    /// With `track_ids=True`: True when the event ids of every row yielded so far are
    /// distinct (no 64-bit hash of one seen twice), False when one may repeat (an exact check
    /// must decide), None when not tracked (or past about 2M rows).
    #[getter]
    fn ids_distinct(&self) -> Option<bool> {
        self.ids.as_ref().and_then(IdSet::distinct)
    }

    /// Files still to scan, with their next offset.
    #[getter]
    fn pending(&self) -> Vec<(String, u64)> {
        self.todo.iter().map(|(r, s, _)| (r.clone(), *s)).collect()
    }
}

/// A list column's `rows` as a Python list of lists (None for a null row).
fn list_rows<'py, T>(
    py: Python<'py>,
    col: &ListColumn<T>,
    rows: &std::ops::Range<usize>,
) -> PyResult<Bound<'py, PyList>>
where
    T: Copy + IntoPyObject<'py>,
{
    let items = rows
        .clone()
        .map(|i| match col.get(i) {
            None => Ok(py.None().into_bound(py)),
            Some(v) => PyList::new(py, v.iter().copied()).map(|l| l.into_any()),
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// Why one line (its `\n` excluded) is not a valid v1 line, or None: the scanner's rules.
#[pyfunction]
#[pyo3(signature = (line, strict = false))]
pub fn check_line(line: &[u8], strict: bool) -> Option<String> {
    let opts = ScanOptions {
        strict,
        ..ScanOptions::default()
    };
    scanner::check_line(line, opts).err()
}

/// The shape and typed values the scanner stores for each `trial.recorded` event
/// (`events.shape`, `tint`, `tnum`), of each `data` text given (a row that reached the index
/// another way: an archived day).
#[pyfunction]
pub fn trial_shapes(data: Vec<String>) -> Vec<scanner::TrialShape> {
    data.iter()
        .map(|d| scanner::trial_shape_of(d.as_bytes()))
        .collect()
}

/// Why `text` is not one I-JSON value (duplicate keys, NaN/Infinity, lone surrogates, depth),
/// or None: the checks the scanner applies to every line.
#[pyfunction]
pub fn check_json(text: &[u8]) -> Option<String> {
    Checker::value_only(text).err()
}

/// Save `data` (bytes cut from or set aside of `rel` at `offset`) under events/_quarantine/ with
/// its reason file, both fsynced: the writer's own quarantine. Returns the .bin path.
#[pyfunction]
pub fn quarantine(
    events_dir: PathBuf,
    rel: &str,
    offset: u64,
    data: &[u8],
    reason: &str,
) -> PyResult<String> {
    appender::quarantine(&events_dir, rel, offset, data, reason)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(to_py)
}
