//! The appender: builds each line (envelope, crc), routes it to the part of its UTC day, rotates
//! at `max_part_bytes`, and makes it durable per the ledger's mode. In group mode a background
//! flusher writes and fdatasyncs batches without holding the state lock (or the GIL).

use super::appender::{open_part, Part};
use super::clock;
use super::error::{Error, Result};
use super::ids::{self, Rng};
use super::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// emit() returns after write + fdatasync.
    Fsync,
    /// emit() queues; a flusher writes and fdatasyncs within `commit_interval`.
    Group,
    /// emit() returns after write(); fsync is left to the OS.
    Os,
}

impl Durability {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fsync" => Some(Durability::Fsync),
            "group" => Some(Durability::Group),
            "os" => Some(Durability::Os),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The `events/` directory.
    pub events: PathBuf,
    pub durability: Durability,
    pub commit_interval: Duration,
    pub max_part_bytes: u64,
    pub max_event_bytes: usize,
    /// Writer id override (legacy migration uses `legacy-…`); random otherwise.
    pub writer_id: Option<String>,
}

impl Config {
    pub fn new(events: impl Into<PathBuf>) -> Self {
        Config {
            events: events.into(),
            durability: Durability::Group,
            commit_interval: Duration::from_millis(2),
            max_part_bytes: 100 * 1000 * 1000,
            max_event_bytes: 16 * 1024 * 1024,
            writer_id: None,
        }
    }
}

/// Where an event was written: part path relative to `events/`, and the line's byte offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub offset: u64,
}

/// Everything about one event except `data`, which the caller has serialized already.
pub struct EventHead<'a> {
    pub event_type: &'a str,
    pub schema_version: u32,
    pub run_id: Option<&'a str>,
    /// Overrides for migration: a precomputed UUIDv7 and timestamp.
    pub event_id: Option<&'a str>,
    pub ts_us: Option<i64>,
}

/// What `emit_deferred` did: the position and seq, whether the caller should wait for the
/// flusher (group mode backpressure), and in fsync mode the fdatasync still to run.
pub struct Emitted {
    pub pos: Position,
    pub seq: u64,
    pub backpressure: bool,
    pub sync: Option<SyncTicket>,
}

/// fsync mode: the fdatasync an emitted line still needs; `sync()` may run on any thread.
pub struct SyncTicket {
    part: Arc<Part>,
    shared: Arc<Shared>,
}

impl SyncTicket {
    /// fdatasync without the state lock; a failure abandons the part.
    pub fn sync(&self) -> Result<()> {
        if let Err(e) = self.part.datasync() {
            self.part.abandon(&format!("fdatasync failed: {e}"));
            let mut st = lock(&self.shared.state);
            if st
                .current
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &self.part))
            {
                st.current = None;
            }
            return Err(e);
        }
        Ok(())
    }
}

/// A flusher failure as text: the path, errno and message of the I/O error.
#[derive(Clone, Debug)]
pub struct Failure {
    pub path: String,
    pub errno: Option<i32>,
    pub message: String,
}

/// Group-mode progress: every seq up to `done_seq` was handed to the disk; those up to
/// `failed_through` may not be durable (`failure` says why).
#[derive(Clone, Debug)]
pub struct Done {
    pub done_seq: u64,
    pub failed_through: u64,
    pub failure: Option<Failure>,
    pub closed: bool,
}

/// Bytes waiting for the flusher, all for one part.
struct Segment {
    part: Arc<Part>,
    start: u64,
    bytes: Vec<u8>,
    last_seq: u64,
    events: u64,
    /// When the first event of this segment was queued (for the commit-latency stats).
    first_at: Instant,
}

/// Group-commit figures: how many batches and events, and how long the oldest event of each
/// batch waited from emit() to the end of its fdatasync.
#[derive(Clone, Debug, Default)]
pub struct CommitStats {
    pub batches: u64,
    pub events: u64,
    pub max_latency_us: u64,
    /// Batches by latency bucket: bucket i holds latencies in [2^i, 2^(i+1)) microseconds.
    pub latency_log2_us: [u64; 24],
}

struct State {
    closed: bool,
    writer_id: String,
    seq: u64,
    rng: Rng,
    fake_now_us: Option<i64>,
    current: Option<Arc<Part>>,
    size: u64,
    /// The part left at the last switch, with its size: while a pending segment still holds
    /// it (and its lock), open_part could not adopt it, so a return to its day takes it back.
    previous: Option<(Arc<Part>, u64)>,
    pending: Vec<Segment>,
    pending_bytes: usize,
    /// Highest seq handed to the disk path (written, or failed and reported).
    done_seq: u64,
    /// A flusher failure not yet raised to a caller.
    error: Option<Error>,
    /// Highest seq of a batch the flusher failed to make durable, and that failure's text
    /// (read by `wait_done`, which may run while `error` is taken by another caller).
    failed_through: u64,
    last_failure: Option<Failure>,
    /// flush() callers waiting: the flusher stops gathering and commits at once.
    flush_waiters: usize,
    stats: CommitStats,
    /// Emptied segment buffers handed back by the flusher: reusing them keeps emit() free of
    /// large allocations and page faults.
    free_bufs: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    flusher_idle: AtomicBool,
}

pub struct Writer {
    cfg: Config,
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    pid: u32,
}

/// A segment is closed at this size so its buffer never grows by reallocation.
const SEGMENT_BYTES: usize = 1 << 20;
const FREE_BUFS_KEPT: usize = 16;

/// Pending bytes above which emit() asks the caller to wait (backpressure).
pub const MAX_PENDING_BYTES: usize = 64 << 20;

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn valid_run_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Checked before anything is built: run ids end up in paths, so they are strict.
pub fn check_run_id(id: &str) -> Result<()> {
    if valid_run_id(id) {
        Ok(())
    } else {
        Err(Error::schema(format!(
            "invalid run_id {id:?}: must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}"
        )))
    }
}

/// The latest timestamp a line can carry: 9999-12-31T23:59:59.999999Z.
const MAX_TS_US: i64 = 253_402_300_799_999_999;

/// The migration overrides are checked like run ids: the event id must be a canonical UUID
/// (8-4-4-4-12 hex digits) and the timestamp after the epoch (0 stands for a missing time)
/// and within the line format's four-digit years.
pub fn check_overrides(head: &EventHead<'_>) -> Result<()> {
    if let Some(id) = head.event_id {
        if !ids::is_uuid(id.as_bytes()) {
            return Err(Error::schema(format!("event_id {id:?} is not a UUID")));
        }
    }
    match head.ts_us {
        Some(t) if !(1..=MAX_TS_US).contains(&t) => Err(Error::schema(format!(
            "ts_us {t} is outside 1970-01-01T00:00:00Z (exclusive) .. 9999-12-31"
        ))),
        _ => Ok(()),
    }
}

/// Event types that belong to a run and so need a run id (`alert.ingested` and user types
/// do not): `run.*`, `phase.*`, `trial.recorded`, `baseline.completed`, `artifact.created`.
pub fn is_run_scoped(event_type: &str) -> bool {
    event_type.starts_with("run.")
        || event_type.starts_with("phase.")
        || matches!(
            event_type,
            "trial.recorded" | "baseline.completed" | "artifact.created"
        )
}

/// The one check of an event's run id: well-formed when given, present when the type is
/// run-scoped.
pub fn check_run_scope(event_type: &str, run_id: Option<&str>) -> Result<()> {
    match run_id {
        Some(r) => check_run_id(r),
        None if is_run_scoped(event_type) => Err(Error::schema(format!(
            "{event_type} belongs to a run: pass run_id=... (or emit it through `with ledger.run(...) as run`)"
        ))),
        None => Ok(()),
    }
}

impl Writer {
    pub fn open(cfg: Config) -> Result<Writer> {
        super::appender::ensure_dir(&cfg.events)?;
        let mut rng = Rng::from_os();
        let writer_id = match &cfg.writer_id {
            Some(w) => w.clone(),
            None => ids::writer_id(&mut rng),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                closed: false,
                writer_id,
                seq: 0,
                rng,
                fake_now_us: None,
                current: None,
                size: 0,
                previous: None,
                pending: Vec::new(),
                pending_bytes: 0,
                done_seq: 0,
                error: None,
                failed_through: 0,
                last_failure: None,
                flush_waiters: 0,
                stats: CommitStats::default(),
                free_bufs: Vec::new(),
                scratch: Vec::with_capacity(1024),
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            flusher_idle: AtomicBool::new(false),
        });
        let flusher = if cfg.durability == Durability::Group {
            // The flusher gathers for half the commit interval after the oldest pending event,
            // then writes and fdatasyncs: each event is durable within interval/2 + one
            // fdatasync, and the disk sees at most a few hundred commits a second.
            let s = Arc::clone(&shared);
            let gather = cfg.commit_interval / 2;
            Some(
                std::thread::Builder::new()
                    .name("ledgerx-flusher".into())
                    .spawn(move || {
                        block_signals();
                        flusher_loop(&s, gather)
                    })
                    .map_err(|e| Error::io(&cfg.events, e))?,
            )
        } else {
            None
        };
        Ok(Writer {
            cfg,
            shared,
            flusher: Mutex::new(flusher),
            pid: std::process::id(),
        })
    }

    pub fn writer_id(&self) -> String {
        lock(&self.shared.state).writer_id.clone()
    }

    /// Fix the clock (tests: midnight crossing); None returns to the system clock.
    pub fn set_fake_now(&self, us: Option<i64>) {
        lock(&self.shared.state).fake_now_us = us;
    }

    pub fn commit_stats(&self) -> CommitStats {
        lock(&self.shared.state).stats.clone()
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).closed
    }

    /// Append one event whose `data` is already valid, serialized JSON. Returns its position
    /// and whether the caller should wait for the flusher (group mode backpressure).
    pub fn emit(&self, head: &EventHead<'_>, data: &[u8]) -> Result<(Position, bool)> {
        let e = self.emit_deferred(head, data)?;
        if let Some(t) = &e.sync {
            t.sync()?;
        }
        Ok((e.pos, e.backpressure))
    }

    /// Like `emit`, but in fsync mode the fdatasync is left to the caller (`Emitted::sync`), so
    /// a binding can run it off its event loop while order stays fixed at the call.
    pub fn emit_deferred(&self, head: &EventHead<'_>, data: &[u8]) -> Result<Emitted> {
        check_run_scope(head.event_type, head.run_id)?;
        check_overrides(head)?;
        let mut guard = lock(&self.shared.state);
        if guard.closed {
            return Err(Error::Closed);
        }
        if let Some(e) = guard.error.take() {
            return Err(e);
        }
        let ts = head
            .ts_us
            .unwrap_or_else(|| guard.fake_now_us.unwrap_or_else(clock::now_us));
        let st = &mut *guard;
        let mut line = std::mem::take(&mut st.scratch);
        line.clear();
        // The seq is used up only when the line is placed: a failed emit leaves no gap.
        let seq = st.seq + 1;
        build_line(&mut line, st, head, ts, seq, data);
        let result = self.place(st, &line, ts, seq);
        st.scratch = line;
        drop(guard);
        let (pos, backpressure, to_sync) = result?;
        Ok(Emitted {
            pos,
            seq,
            backpressure,
            sync: to_sync.map(|part| SyncTicket {
                part,
                shared: Arc::clone(&self.shared),
            }),
        })
    }

    /// Group mode: wait up to `timeout` until events past seq `after` were handed to the
    /// disk, then report the progress (a binding resolves or rejects its callers from it).
    pub fn wait_done(&self, after: u64, timeout: Duration) -> Done {
        // (the lock is held from the wait's end to the report, so `error` is cleared only for
        // failures this report covers)
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        while st.done_seq <= after && st.seq > after && !st.closed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .shared
                .done
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if st.failed_through > after && st.flush_waiters == 0 {
            // The failure reaches the callers of the failed events through this report: it is
            // not raised a second time to the next emit().
            st.error = None;
        }
        Done {
            done_seq: st.done_seq,
            failed_through: st.failed_through,
            failure: st.last_failure.clone(),
            closed: st.closed,
        }
    }

    #[allow(clippy::type_complexity)]
    fn place(
        &self,
        st: &mut State,
        line: &[u8],
        ts: i64,
        seq: u64,
    ) -> Result<(Position, bool, Option<Arc<Part>>)> {
        if line.len() > self.cfg.max_event_bytes {
            return Err(Error::schema(format!(
                "event is {} bytes, over max_event_bytes {}",
                line.len(),
                self.cfg.max_event_bytes
            )));
        }
        let day = clock::day_of(ts);
        let needs_new = match &st.current {
            None => true,
            Some(p) => {
                p.day != day
                    || p.is_abandoned()
                    || (st.size > 0 && st.size + line.len() as u64 > self.cfg.max_part_bytes)
            }
        };
        if needs_new {
            self.switch_part(st, &day, line.len() as u64)?;
        }
        let part = Arc::clone(st.current.as_ref().expect("current part"));
        let offset = st.size;
        let pos = Position {
            file: part.rel.clone(),
            offset,
        };
        match self.cfg.durability {
            Durability::Group => {
                let fits = st.pending.last().is_some_and(|s| {
                    Arc::ptr_eq(&s.part, &part) && s.bytes.len() + line.len() <= SEGMENT_BYTES
                });
                if !fits {
                    let bytes = st
                        .free_bufs
                        .pop()
                        .unwrap_or_else(|| Vec::with_capacity(SEGMENT_BYTES));
                    st.pending.push(Segment {
                        part,
                        start: offset,
                        bytes,
                        last_seq: 0,
                        events: 0,
                        first_at: Instant::now(),
                    });
                }
                st.seq = seq;
                let seg = st.pending.last_mut().expect("segment");
                seg.bytes.extend_from_slice(line);
                seg.last_seq = seq;
                seg.events += 1;
                st.pending_bytes += line.len();
                st.size += line.len() as u64;
                if self.shared.flusher_idle.load(Ordering::Acquire) {
                    self.shared.work.notify_one();
                }
                Ok((pos, st.pending_bytes > MAX_PENDING_BYTES, None))
            }
            Durability::Fsync | Durability::Os => {
                if let Err(e) = part.append(line, offset) {
                    // Nothing of the line stays on disk, so its seq is not used up either.
                    part.abandon(&format!("write failed: {e}"));
                    st.current = None;
                    return Err(e);
                }
                st.size += line.len() as u64;
                st.seq = seq;
                st.done_seq = seq;
                let sync = (self.cfg.durability == Durability::Fsync).then_some(part);
                Ok((pos, false, sync))
            }
        }
    }

    /// Make `st.current` a part of `day` with room for `need` bytes: the part left at the last
    /// switch when it fits (our own lock would keep open_part from adopting it), else one from
    /// open_part.
    fn switch_part(&self, st: &mut State, day: &str, need: u64) -> Result<()> {
        let left = st.current.take().map(|p| (p, st.size));
        let back = st.previous.take().filter(|(p, size)| {
            p.day == day && !p.is_abandoned() && size + need <= self.cfg.max_part_bytes
        });
        let (part, size) = match back {
            Some(b) => b,
            None => {
                let (part, size) = open_part(&self.cfg.events, day, self.cfg.max_part_bytes, need)?;
                (Arc::new(part), size)
            }
        };
        // Kept only while queued bytes still hold it; the flusher lets go after writing them.
        st.previous = left.filter(|(p, _)| !p.is_abandoned() && Arc::strong_count(p) > 1);
        st.current = Some(part);
        st.size = size;
        Ok(())
    }

    /// Block until every event emitted so far is durable (group), or on disk (os: fsync).
    pub fn flush(&self) -> Result<()> {
        match self.cfg.durability {
            Durability::Group => {
                let mut st = lock(&self.shared.state);
                let target = st.seq;
                st.flush_waiters += 1;
                while st.done_seq < target && st.error.is_none() {
                    self.shared.work.notify_one();
                    st = self
                        .shared
                        .done
                        .wait_timeout(st, Duration::from_millis(20))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                st.flush_waiters -= 1;
                match st.error.take() {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            Durability::Os | Durability::Fsync => {
                let part = lock(&self.shared.state).current.clone();
                match part {
                    Some(p) => p.datasync(),
                    None => Ok(()),
                }
            }
        }
    }

    /// Wait until pending bytes drop under the backpressure limit (group mode).
    pub fn wait_drained(&self) {
        let mut st = lock(&self.shared.state);
        while st.pending_bytes > MAX_PENDING_BYTES / 2 && st.error.is_none() && !st.closed {
            self.shared.work.notify_one();
            st = self
                .shared
                .done
                .wait_timeout(st, Duration::from_millis(10))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Flush, stop the flusher, release the part. Idempotent.
    pub fn close(&self) -> Result<()> {
        if lock(&self.shared.state).closed {
            return Ok(());
        }
        let flushed = self.flush();
        {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            self.shared.work.notify_all();
        }
        let handle = self.flusher.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        let mut st = lock(&self.shared.state);
        st.current = None;
        st.previous = None;
        let late = st.error.take();
        drop(st);
        flushed?;
        match late {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // In a forked child the flusher thread does not exist and the lock may be held by a
        // thread that vanished: touch nothing, the parent owns the part.
        if std::process::id() != self.pid {
            let shared = Arc::clone(&self.shared);
            std::mem::forget(shared);
            return;
        }
        let _ = self.close();
    }
}

/// `{"event_id":…,"event_type":…,"schema_version":…,"ts":…,"run_id":…,"writer":…,"seq":…,
/// "data":…,"crc":"xxxxxxxx"}\n` with the crc over everything before `,"crc":`.
fn build_line(
    out: &mut Vec<u8>,
    st: &mut State,
    head: &EventHead<'_>,
    ts: i64,
    seq: u64,
    data: &[u8],
) {
    out.extend_from_slice(b"{\"event_id\":\"");
    match head.event_id {
        Some(id) => out.extend_from_slice(id.as_bytes()),
        None => out.extend_from_slice(&ids::uuid7((ts.max(0) / 1000) as u64, &mut st.rng)),
    }
    out.extend_from_slice(b"\",\"event_type\":");
    json::write_str(out, head.event_type);
    out.extend_from_slice(b",\"schema_version\":");
    json::write_i64(out, head.schema_version as i64);
    out.extend_from_slice(b",\"ts\":\"");
    out.extend_from_slice(&clock::format_ts(ts));
    out.extend_from_slice(b"\",\"run_id\":");
    match head.run_id {
        Some(r) => json::write_str(out, r),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"writer\":");
    json::write_str(out, &st.writer_id);
    out.extend_from_slice(b",\"seq\":");
    json::write_i64(out, seq as i64);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(b",\"crc\":\"");
    out.extend_from_slice(format!("{crc:08x}").as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Keep process-directed signals (SIGTERM, SIGINT, ...) off this thread: delivered here, they
/// would not interrupt the main thread's blocking call, so Python's handler would never run
/// (a worker stuck in a lock wait that `Pool.terminate()` can no longer end).
fn block_signals() {
    // SAFETY: plain libc calls on a local, initialized signal set; only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn flusher_loop(shared: &Shared, gather: Duration) {
    loop {
        let batch = {
            let mut st = lock(&shared.state);
            loop {
                if st.closed {
                    break;
                }
                if let Some(first) = st.pending.first() {
                    // Gather more events unless someone waits in flush() or memory fills up.
                    let age = first.first_at.elapsed();
                    let urgent = st.flush_waiters > 0 || st.pending_bytes > MAX_PENDING_BYTES / 4;
                    if urgent || age >= gather {
                        break;
                    }
                    st = shared
                        .work
                        .wait_timeout(st, gather - age)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
                shared.flusher_idle.store(true, Ordering::Release);
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
                shared.flusher_idle.store(false, Ordering::Release);
            }
            if st.pending.is_empty() && st.closed {
                return;
            }
            st.pending_bytes = 0;
            std::mem::take(&mut st.pending)
        };
        let last_seq = batch.last().map_or(0, |s| s.last_seq);
        let error = write_batch(&batch);
        let waited = batch
            .first()
            .map_or(0, |s| s.first_at.elapsed().as_micros() as u64);
        let mut st = lock(&shared.state);
        st.done_seq = st.done_seq.max(last_seq);
        let stats = &mut st.stats;
        stats.batches += 1;
        stats.events += batch.iter().map(|s| s.events).sum::<u64>();
        stats.max_latency_us = stats.max_latency_us.max(waited);
        let bucket = (63 - waited.max(1).leading_zeros()) as usize;
        stats.latency_log2_us[bucket.min(23)] += 1;
        for seg in batch {
            let mut b = seg.bytes;
            if st.free_bufs.len() < FREE_BUFS_KEPT && b.capacity() <= 2 * SEGMENT_BYTES {
                b.clear();
                st.free_bufs.push(b);
            }
        }
        if st
            .previous
            .as_ref()
            .is_some_and(|(p, _)| Arc::strong_count(p) == 1)
        {
            st.previous = None; // unlock it: another writer may adopt it now
        }
        if let Some(e) = error {
            if let Some(cur) = &st.current {
                if cur.is_abandoned() {
                    st.current = None;
                }
            }
            st.failed_through = last_seq;
            st.last_failure = Some(failure_of(&e));
            // Keep the first failure until a caller sees it.
            if st.error.is_none() {
                st.error = Some(e);
            }
        }
        shared.done.notify_all();
    }
}

fn failure_of(e: &Error) -> Failure {
    match e {
        Error::Io { path, source } | Error::Commit { path, source, .. } => Failure {
            path: path.clone(),
            errno: source.raw_os_error(),
            message: e.to_string(),
        },
        other => Failure {
            path: String::new(),
            errno: None,
            message: other.to_string(),
        },
    }
}

/// Write each segment with one write() and fdatasync each part once. On failure the part is
/// abandoned and the error returned; later segments of that part are not written.
fn write_batch(batch: &[Segment]) -> Option<Error> {
    let mut first_err = None;
    let mut lost = 0usize;
    for (i, seg) in batch.iter().enumerate() {
        if seg.part.is_abandoned() {
            lost += memchr::memchr_iter(b'\n', &seg.bytes).count();
            continue;
        }
        let res = write_chunks(&seg.part, &seg.bytes, seg.start).and_then(|_| {
            let last_for_part = !batch[i + 1..]
                .iter()
                .any(|s| Arc::ptr_eq(&s.part, &seg.part));
            if last_for_part {
                seg.part.datasync()
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            seg.part.abandon(&format!("{e}"));
            lost += memchr::memchr_iter(b'\n', &seg.bytes).count();
            first_err.get_or_insert(e);
        }
    }
    first_err.map(|e| match e {
        Error::Io { path, source } => Error::Commit {
            path,
            source,
            lost: lost as u64,
        },
        other => other,
    })
}

/// Large segments go out in chunks of whole lines (one write() never splits a line).
fn write_chunks(part: &Part, bytes: &[u8], start: u64) -> Result<()> {
    const CHUNK: usize = 8 << 20;
    let mut off = 0;
    while off < bytes.len() {
        let mut end = bytes.len().min(off + CHUNK);
        if end < bytes.len() {
            end = memchr::memrchr(b'\n', &bytes[off..end]).map_or(end, |i| off + i + 1);
        }
        part.append(&bytes[off..end], start + off as u64)?;
        off = end;
    }
    Ok(())
}

/// Path of the events directory under a ledger root.
pub fn events_dir(root: &Path) -> PathBuf {
    root.join("events")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ledgerx-w-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn head(t: &str) -> EventHead<'_> {
        EventHead {
            event_type: t,
            schema_version: 1,
            run_id: Some("r1"),
            event_id: None,
            ts_us: None,
        }
    }

    fn lines(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut days: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
        days.sort_by_key(|e| e.file_name());
        for d in days {
            if !d.file_name().to_string_lossy().starts_with("day=") {
                continue;
            }
            let mut parts: Vec<_> = fs::read_dir(d.path()).unwrap().flatten().collect();
            parts.sort_by_key(|e| e.file_name());
            for p in parts {
                let text = fs::read_to_string(p.path()).unwrap();
                out.extend(text.lines().map(String::from));
            }
        }
        out
    }

    #[test]
    fn every_mode_writes_valid_lines_with_crc() {
        for mode in [Durability::Fsync, Durability::Group, Durability::Os] {
            let ev = tmp(&format!("{mode:?}"));
            let mut cfg = Config::new(&ev);
            cfg.durability = mode;
            let w = Writer::open(cfg).unwrap();
            for i in 0..100 {
                let (pos, _) = w
                    .emit(&head("run.heartbeat"), format!("{{\"i\":{i}}}").as_bytes())
                    .unwrap();
                assert!(pos.file.starts_with("day="));
            }
            w.close().unwrap();
            let ls = lines(&ev);
            assert_eq!(ls.len(), 100);
            for (i, l) in ls.iter().enumerate() {
                let cut = l.rfind(",\"crc\":").unwrap();
                let crc = crc32c::crc32c(&l.as_bytes()[..cut]);
                assert!(l.ends_with(&format!(",\"crc\":\"{crc:08x}\"}}")));
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["seq"], (i + 1) as u64);
                assert_eq!(v["data"]["i"], i as u64);
            }
        }
    }

    #[test]
    fn rotates_and_crosses_midnight() {
        let ev = tmp("rot");
        let mut cfg = Config::new(&ev);
        cfg.max_part_bytes = 1000;
        cfg.durability = Durability::Os;
        let w = Writer::open(cfg).unwrap();
        let day0 = 1_700_006_399_000_000; // 2023-11-14T23:59:59Z
        w.set_fake_now(Some(day0));
        for _ in 0..20 {
            w.emit(&head("run.heartbeat"), b"{}").unwrap();
        }
        w.set_fake_now(Some(day0 + 2_000_000));
        let (pos, _) = w.emit(&head("run.heartbeat"), b"{}").unwrap();
        assert!(
            pos.file.starts_with("day=2023-11-15/part-000001"),
            "{pos:?}"
        );
        w.close().unwrap();
        let parts = fs::read_dir(ev.join("day=2023-11-14")).unwrap().count();
        assert!(parts >= 4, "rotation made {parts} parts");
        for p in fs::read_dir(ev.join("day=2023-11-14")).unwrap().flatten() {
            assert!(p.metadata().unwrap().len() <= 1000);
        }
        assert_eq!(lines(&ev).len(), 21);
    }

    #[test]
    fn refuses_oversized_events_and_bad_run_ids() {
        let ev = tmp("big");
        let mut cfg = Config::new(&ev);
        cfg.max_event_bytes = 400;
        let w = Writer::open(cfg).unwrap();
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(400));
        assert!(matches!(
            w.emit(&head("t"), big.as_bytes()),
            Err(Error::Schema { .. })
        ));
        let mut h = head("t");
        h.run_id = Some("../etc");
        assert!(matches!(w.emit(&h, b"{}"), Err(Error::Schema { .. })));
        for t in [
            "run.created",
            "phase.started",
            "trial.recorded",
            "baseline.completed",
            "artifact.created",
        ] {
            let mut h = head(t);
            h.run_id = None;
            let e = w.emit(&h, b"{}");
            assert!(
                matches!(&e, Err(Error::Schema { message, .. }) if message.contains("run_id")),
                "{t}: {e:?}"
            );
        }
        let mut h = head("alert.ingested");
        h.run_id = None;
        w.emit(&h, b"{}").unwrap();
        w.emit(&head("t"), b"{}").unwrap();
        w.close().unwrap();
        let ls = lines(&ev);
        assert_eq!(ls.len(), 2);
        assert!(
            ls[0].contains("\"seq\":1,"),
            "failed emits must not consume seq"
        );
    }

    #[test]
    fn refuses_bad_migration_overrides() {
        let ev = tmp("ovr");
        let w = Writer::open(Config::new(&ev)).unwrap();
        let dashes = "-".repeat(36);
        for (id, ts) in [
            (Some(dashes.as_str()), Some(1_700_000_000_000_000)),
            (Some("0190c1f0-0000-7000-8000-00000000000z"), None),
            (Some("0190c1f0-0000-7000-8000-00000000000a"), Some(0)),
            (None, Some(-5)),
            (None, Some(MAX_TS_US + 1)),
        ] {
            let mut h = head("t");
            h.event_id = id;
            h.ts_us = ts;
            assert!(
                matches!(w.emit(&h, b"{}"), Err(Error::Schema { .. })),
                "{id:?} {ts:?}"
            );
        }
        let mut h = head("t");
        h.event_id = Some("0190c1f0-0000-7000-8000-00000000000a");
        h.ts_us = Some(1_700_000_000_000_000);
        w.emit(&h, b"{}").unwrap();
        w.close().unwrap();
        let ls = lines(&ev);
        assert_eq!(ls.len(), 1);
        assert!(ls[0].contains("\"event_id\":\"0190c1f0-0000-7000-8000-00000000000a\""));
        assert!(ls[0].contains("\"ts\":\"2023-11-14T22:13:20.000000Z\""));
        assert!(ls[0].contains("\"seq\":1,"));
    }

    #[test]
    fn group_writer_takes_its_own_part_back_after_a_day_switch() {
        let ev = tmp("back");
        let mut cfg = Config::new(&ev);
        // The flusher gathers for 30 s: every segment stays pending until close() flushes.
        cfg.commit_interval = Duration::from_secs(60);
        let w = Writer::open(cfg).unwrap();
        let day0 = 1_700_006_399_000_000; // 2023-11-14T23:59:59Z
        let mut files = Vec::new();
        for ts in [day0, day0 + 2_000_000, day0 - 1_000_000, day0 + 3_000_000] {
            let mut h = head("t");
            h.ts_us = Some(ts);
            files.push(w.emit(&h, b"{}").unwrap().0.file);
        }
        w.close().unwrap();
        assert_eq!(
            files,
            [
                "day=2023-11-14/part-000001.jsonl",
                "day=2023-11-15/part-000001.jsonl",
                "day=2023-11-14/part-000001.jsonl",
                "day=2023-11-15/part-000001.jsonl",
            ]
        );
        for day in ["day=2023-11-14", "day=2023-11-15"] {
            assert_eq!(fs::read_dir(ev.join(day)).unwrap().count(), 1, "{day}");
        }
        let seqs: Vec<String> = lines(&ev)
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].to_string())
            .collect();
        assert_eq!(seqs, ["1", "3", "2", "4"]);
    }
}
