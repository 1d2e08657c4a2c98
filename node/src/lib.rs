//! The Node binding (napi-rs): conversion and error mapping only; the work is in the same core
//! as the Python extension (`ledgerx::core`), which this shared object links without pyo3.
//!
//! Validation, serialization and the order of events happen synchronously at the call; what can
//! block (waiting for a group commit, flush, close, and fsync mode's fdatasync for data that is
//! not plain JSON) runs as an `AsyncTask` on the libuv thread pool, and fsync mode's fast path
//! fdatasyncs on the writer's own thread (`syncer.rs`); never on the event loop. `index.js` turns
//! these into the public Promise API.

mod convert;
pub mod fast;
mod heads;
mod syncer;

use convert::Serializer;
pub(crate) use heads::HeadEntry;
use ledgerx::core::json::Tape;
use ledgerx::core::schema_file::SchemaFile;
use ledgerx::core::writer::{self as cw, Config, Durability, EventHead, SyncTicket};
use ledgerx::core::Error as CoreError;
use napi::bindgen_prelude::*;
use napi::JsValue;
use napi_derive::napi;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Errors cross to JavaScript as `Error`s whose message starts with this marker followed by a
/// JSON object (`kind`, `message`, and for I/O `errno`, `path`); index.js makes the typed error.
const MARK: &str = "\u{1}ledgerx:";

pub(crate) fn js_err(e: CoreError) -> Error {
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "null".to_string(), quote);
    let body = match &e {
        CoreError::Schema {
            message,
            event_type,
            version,
            path,
        } => format!(
            r#"{{"kind":"schema","message":{},"eventType":{},"version":{},"path":{}}}"#,
            quote(message),
            opt(event_type),
            version.map_or_else(|| "null".to_string(), |v| v.to_string()),
            opt(path)
        ),
        CoreError::Config(m) => format!(r#"{{"kind":"config","message":{}}}"#, quote(m)),
        CoreError::Closed => r#"{"kind":"closed","message":"ledger is closed"}"#.to_string(),
        CoreError::Io { path, source } | CoreError::Commit { path, source, .. } => format!(
            r#"{{"kind":"io","errno":{},"path":{},"message":{}}}"#,
            source.raw_os_error().unwrap_or(EIO),
            quote(path),
            quote(&e.to_string())
        ),
    };
    Error::from_reason(format!("{MARK}{body}"))
}

fn failure_err(f: &cw::Failure) -> Error {
    js_err(CoreError::Io {
        path: f.path.clone(),
        source: match f.errno {
            Some(n) => std::io::Error::from_raw_os_error(n),
            None => std::io::Error::other(f.message.clone()),
        },
    })
}

fn schema_err(m: String) -> Error {
    js_err(CoreError::schema(m))
}

/// A SchemaError naming the event's type, schema version and the path in `data`, as in Python.
fn invalid(m: String, event_type: &str, version: Option<u32>, path: Option<String>) -> Error {
    js_err(CoreError::Schema {
        message: m,
        event_type: Some(event_type.to_string()),
        version,
        path,
    })
}

const EIO: i32 = 5;

fn quote(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    ledgerx::core::json::write_str(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

/// Where an event was written: part path relative to `events/`, and its byte offset.
#[napi(object)]
pub struct Position {
    pub file: String,
    pub offset: f64,
    /// The writer's sequence number of the event (group mode resolves by it).
    pub seq: f64,
}

impl Position {
    fn of(p: &cw::Position, seq: u64) -> Self {
        Position {
            file: p.file.to_string(),
            offset: p.offset as f64,
            seq: seq as f64,
        }
    }
}

/// Group-commit progress: events up to `doneSeq` were handed to the disk; those up to
/// `failedThrough` may not be durable (`failure` is the marked error message).
#[napi(object)]
pub struct Progress {
    pub done_seq: f64,
    pub failed_through: f64,
    pub failure: Option<String>,
    pub closed: bool,
}

/// What an emit needs, shared with the per-thread slot table of `fast.rs`.
pub(crate) struct Hot {
    pub(crate) inner: Arc<cw::Writer>,
    schemas: SchemaFile,
    /// Scratch for the serialized `data` and its token tape, reused between calls.
    scratch: RefCell<(Vec<u8>, Tape)>,
    pub(crate) last_file: RefCell<Arc<str>>,
    /// `(event type, run id)` by the numbers `headId` gave out.
    pub(crate) heads: RefCell<Vec<HeadEntry>>,
    /// fsync mode's fdatasync thread, started by the first `emitFsyncAt`.
    syncer: std::cell::OnceCell<syncer::Syncer>,
}

impl Hot {
    /// The fdatasync thread, started on first use.
    ///
    /// # Safety
    /// `env` must be the current call's environment.
    pub(crate) unsafe fn syncer(&self, env: napi::sys::napi_env) -> Result<&syncer::Syncer> {
        if let Some(s) = self.syncer.get() {
            return Ok(s);
        }
        let s = syncer::Syncer::start(env)?;
        Ok(self.syncer.get_or_init(|| s))
    }

    /// The writer is closed: let the fdatasync thread finish what is pending and end.
    pub(crate) fn stop_syncer(&self) {
        if let Some(s) = self.syncer.get() {
            s.stop();
        }
    }
}

#[napi]
pub struct NativeWriter {
    hot: Rc<Hot>,
    mode: Durability,
    slot: u32,
}

impl Drop for NativeWriter {
    fn drop(&mut self) {
        fast::unregister(self.slot);
    }
}

#[napi]
impl NativeWriter {
    #[napi(constructor)]
    pub fn new(
        root: String,
        durability: String,
        commit_interval_ms: u32,
        max_part_bytes: f64,
        max_event_bytes: f64,
    ) -> Result<Self> {
        let mode = Durability::parse(&durability).ok_or_else(|| {
            js_err(CoreError::config(format!(
                "durability must be 'fsync', 'group' or 'os', not {durability:?}"
            )))
        })?;
        let positive = |v: f64| v.is_finite() && v >= 1.0 && v.fract() == 0.0;
        if !positive(max_part_bytes) || !positive(max_event_bytes) {
            return Err(js_err(CoreError::config(
                "maxPartBytes and maxEventBytes must be positive integers",
            )));
        }
        let events = cw::events_dir(std::path::Path::new(&root));
        let mut cfg = Config::new(&events);
        cfg.durability = mode;
        cfg.commit_interval = Duration::from_millis(u64::from(commit_interval_ms.max(1)));
        cfg.max_part_bytes = max_part_bytes as u64;
        cfg.max_event_bytes = max_event_bytes as usize;
        let inner = cw::Writer::open(cfg).map_err(js_err)?;
        let schemas = SchemaFile::open(&events).map_err(js_err)?;
        let hot = Rc::new(Hot {
            inner: Arc::new(inner),
            schemas,
            scratch: RefCell::new((Vec::with_capacity(4096), Tape::default())),
            last_file: RefCell::new(Arc::from("")),
            heads: RefCell::new(Vec::new()),
            syncer: std::cell::OnceCell::new(),
        });
        let slot = fast::register(Rc::clone(&hot));
        Ok(NativeWriter { hot, mode, slot })
    }

    /// This writer's number for the slot functions (`emitJsonAt`, `emitFsyncAt`).
    #[napi(getter)]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    #[napi(getter)]
    pub fn writer_id(&self) -> String {
        self.hot.inner.writer_id()
    }

    /// Validate, serialize and append (group: queue) one event; in fsync mode the line is
    /// written but its fdatasync is left to `syncLast()`.
    #[napi]
    pub fn emit(
        &self,
        event_type: String,
        data: Unknown<'_>,
        run_id: Option<String>,
        schema_version: Option<u32>,
    ) -> Result<Position> {
        self.emit_sync(&event_type, Data::Value(data), run_id, schema_version)
    }

    /// `emit` with `data` already as JSON text (index.js passes `JSON.stringify(data)` when a
    /// quick check found only plain JSON values); the text is still parsed and validated here.
    #[napi]
    pub fn emit_json(
        &self,
        event_type: String,
        json: Unknown<'_>,
        run_id: Option<String>,
        schema_version: Option<u32>,
    ) -> Result<f64> {
        let e = self.hot.emit_inner(
            &event_type,
            Data::Json(json),
            run_id.as_deref(),
            schema_version,
        )?;
        if e.backpressure {
            self.hot.inner.wait_drained();
        }
        Ok(self.hot.offset_code(&e.pos))
    }

    /// The part file of the last `emitJson` that reported a change.
    #[napi(getter)]
    pub fn last_file(&self) -> String {
        self.hot.last_file.borrow().to_string()
    }

    /// fsync mode, `data` as JSON text (see `emitJson`).
    #[napi]
    pub fn emit_fsync_json(
        &self,
        event_type: String,
        json: Unknown<'_>,
        run_id: Option<String>,
        schema_version: Option<u32>,
    ) -> Result<AsyncTask<SyncTask>> {
        self.emit_task(&event_type, Data::Json(json), run_id, schema_version)
    }

    /// fsync mode: write the event now (order fixed at the call), fdatasync on the thread pool.
    #[napi]
    pub fn emit_fsync(
        &self,
        event_type: String,
        data: Unknown<'_>,
        run_id: Option<String>,
        schema_version: Option<u32>,
    ) -> Result<AsyncTask<SyncTask>> {
        self.emit_task(&event_type, Data::Value(data), run_id, schema_version)
    }

    /// Group mode: resolves once events past seq `after` were handed to the disk (or after
    /// `timeoutMs`), with the progress.
    #[napi]
    pub fn wait_done(&self, after: f64, timeout_ms: u32) -> AsyncTask<WaitTask> {
        AsyncTask::new(WaitTask {
            writer: Arc::clone(&self.hot.inner),
            after: after as u64,
            timeout: Duration::from_millis(u64::from(timeout_ms)),
        })
    }

    /// Everything emitted so far durable, on the thread pool.
    #[napi]
    pub fn flush(&self) -> AsyncTask<WriterTask> {
        AsyncTask::new(WriterTask {
            writer: Arc::clone(&self.hot.inner),
            close: None,
        })
    }

    /// Flush, stop the flusher and release the part, on the thread pool.
    #[napi]
    pub fn close(&self) -> AsyncTask<WriterTask> {
        AsyncTask::new(WriterTask {
            writer: Arc::clone(&self.hot.inner),
            close: Some(self.slot),
        })
    }

    /// Blocking flush (or close), for exit and signal handlers only.
    #[napi]
    pub fn flush_sync(&self, close: bool) -> Result<()> {
        let r = if close {
            self.hot.inner.close()
        } else {
            self.hot.inner.flush()
        };
        if close {
            self.hot.stop_syncer();
        }
        r.map_err(js_err)
    }

    /// Re-read `_schema.json` now.
    #[napi]
    pub fn reload_schemas(&self) -> Result<()> {
        self.hot.schemas.reload().map_err(js_err)
    }

    #[napi(getter)]
    pub fn durability(&self) -> &'static str {
        match self.mode {
            Durability::Fsync => "fsync",
            Durability::Group => "group",
            Durability::Os => "os",
        }
    }
}

/// The event's `data`: a JS value serialized here, or JSON text made by `JSON.stringify`.
pub(crate) enum Data<'a> {
    Value(Unknown<'a>),
    Json(Unknown<'a>),
}

impl NativeWriter {
    fn emit_sync(
        &self,
        event_type: &str,
        data: Data<'_>,
        run_id: Option<String>,
        schema_version: Option<u32>,
    ) -> Result<Position> {
        let e = self
            .hot
            .emit_inner(event_type, data, run_id.as_deref(), schema_version)?;
        if e.backpressure {
            // Over 64 MiB queued: wait for the flusher to catch up (bounded, rare).
            self.hot.inner.wait_drained();
        }
        Ok(Position::of(&e.pos, e.seq))
    }

    fn emit_task(
        &self,
        event_type: &str,
        data: Data<'_>,
        run_id: Option<String>,
        schema_version: Option<u32>,
    ) -> Result<AsyncTask<SyncTask>> {
        let e = self
            .hot
            .emit_inner(event_type, data, run_id.as_deref(), schema_version)?;
        Ok(AsyncTask::new(SyncTask {
            ticket: e.sync,
            pos: Some(Position::of(&e.pos, e.seq)),
        }))
    }
}

impl Hot {
    /// The hot path returns one number: the offset, or -(offset + 1) when the part changed
    /// since the last call (then `lastFile` has its name). The seq is the previous + 1.
    pub(crate) fn offset_code(&self, pos: &cw::Position) -> f64 {
        let mut last = self.last_file.borrow_mut();
        if Arc::ptr_eq(&last, &pos.file) || *last == pos.file {
            pos.offset as f64
        } else {
            *last = Arc::clone(&pos.file);
            -(pos.offset as f64) - 1.0
        }
    }

    pub(crate) fn emit_inner(
        &self,
        event_type: &str,
        data: Data<'_>,
        run_id: Option<&str>,
        schema_version: Option<u32>,
    ) -> Result<cw::Emitted> {
        self.emit_inner_with(event_type, data, run_id, schema_version, &mut |_| Ok(()))
    }

    /// `emit_inner`, calling `before_write` once the event is valid, right before the writer
    /// places it (fsync mode queues its fdatasync there); an error from it writes nothing.
    pub(crate) fn emit_inner_with(
        &self,
        event_type: &str,
        data: Data<'_>,
        run_id: Option<&str>,
        schema_version: Option<u32>,
        before_write: &mut dyn FnMut(&Hot) -> Result<()>,
    ) -> Result<cw::Emitted> {
        self.emit_head(event_type, data, run_id, schema_version, None, before_write)
    }

    /// `emit_inner_with` for a `headId` pair when `head` is given (its schema cached).
    pub(crate) fn emit_head(
        &self,
        event_type: &str,
        data: Data<'_>,
        run_id: Option<&str>,
        schema_version: Option<u32>,
        head: Option<&HeadEntry>,
        before_write: &mut dyn FnMut(&Hot) -> Result<()>,
    ) -> Result<cw::Emitted> {
        let found = self.schema_for(event_type, run_id, schema_version, head)?;
        let version = found.version;
        let mut scratch = self.scratch.borrow_mut();
        let (buf, tape) = &mut *scratch;
        buf.clear();
        let at = |e: convert::ConvertError| {
            let msg = format!("{event_type} v{version}: {}", e.render("data"));
            invalid(msg, event_type, Some(version), Some(e.path_str("data")))
        };
        match data {
            Data::Json(text) => {
                let raw = text.value();
                // SAFETY: a value of this very call (napi refuses one that is not a string).
                if let Err(e) = unsafe { convert::append_string(raw.env, raw.value, buf) } {
                    if text.get_type()? != ValueType::String {
                        return Err(schema_err(format!(
                            "{event_type}: JSON text must be a string"
                        )));
                    }
                    return Err(at(e));
                }
                // JSON.stringify writes a lone surrogate as an escape: refuse it (I-JSON), even
                // though index.js sends such data to the native serializer instead.
                if has_escaped_surrogate(buf) {
                    ledgerx::core::json::Checker::value_only(buf)
                        .map_err(|m| invalid(m, event_type, Some(version), Some("data".into())))?;
                }
            }
            Data::Value(v) => {
                if v.get_type()? != ValueType::Object {
                    let msg = format!(
                        "{event_type} v{version}: data must be an object, not {}",
                        type_name(v.get_type()?)
                    );
                    return Err(invalid(msg, event_type, Some(version), Some("data".into())));
                }
                let raw = v.value();
                // SAFETY: env and value come from this very call, inside its handle scope.
                unsafe { Serializer::new(raw.env).and_then(|s| s.write(buf, raw.value, 0)) }
                    .map_err(at)?;
            }
        }
        let bytes = &buf[..];
        tape.parse(bytes)
            .map_err(|m| invalid(m, event_type, Some(version), Some("data".into())))?;
        // By shape where the schema allows (the shape accepted last is accepted at once).
        found.validate_tape(bytes, tape).map_err(|v| {
            let msg = format!("{event_type} v{version}: {}", v.render("data"));
            invalid(msg, event_type, Some(version), Some(v.path_str("data")))
        })?;
        let head = EventHead {
            event_type,
            schema_version: version,
            run_id,
            event_id: None,
            ts_us: None,
        };
        before_write(self)?;
        self.inner.emit_deferred(&head, bytes).map_err(js_err)
    }
}

/// Whether JSON text has `\\ud` (an escaped surrogate, maybe lone); the finder is built once.
fn has_escaped_surrogate(buf: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\\ud"));
    FINDER.find(buf).is_some()
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "boolean",
        ValueType::Number => "number",
        ValueType::String => "string",
        ValueType::Symbol => "symbol",
        ValueType::Function => "function",
        ValueType::BigInt => "bigint",
        _ => "a non-object",
    }
}

pub struct SyncTask {
    ticket: Option<SyncTicket>,
    pos: Option<Position>,
}

impl Task for SyncTask {
    type Output = ();
    type JsValue = Position;

    fn compute(&mut self) -> Result<()> {
        match &self.ticket {
            Some(t) => t.sync_unless_abandoned().map_err(js_err),
            None => Ok(()),
        }
    }

    fn resolve(&mut self, _env: Env, _out: ()) -> Result<Position> {
        self.pos
            .take()
            .ok_or_else(|| Error::from_reason("resolved twice"))
    }
}

pub struct WaitTask {
    writer: Arc<cw::Writer>,
    after: u64,
    timeout: Duration,
}

impl Task for WaitTask {
    type Output = cw::Done;
    type JsValue = Progress;

    fn compute(&mut self) -> Result<cw::Done> {
        Ok(self.writer.wait_done(self.after, self.timeout))
    }

    fn resolve(&mut self, _env: Env, d: cw::Done) -> Result<Progress> {
        Ok(Progress {
            done_seq: d.done_seq as f64,
            failed_through: d.failed_through as f64,
            failure: d.failure.as_ref().map(|f| failure_err(f).reason.clone()),
            closed: d.closed,
        })
    }
}

pub struct WriterTask {
    writer: Arc<cw::Writer>,
    /// Close (the writer's slot, to stop its fdatasync thread once closed), or flush.
    close: Option<u32>,
}

impl Task for WriterTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> Result<()> {
        let r = if self.close.is_some() {
            self.writer.close()
        } else {
            self.writer.flush()
        };
        r.map_err(js_err)
    }

    fn resolve(&mut self, _env: Env, _out: ()) -> Result<()> {
        if let Some(h) = self.close.and_then(|slot| fast::hot(slot).ok()) {
            h.stop_syncer();
        }
        Ok(())
    }
}
