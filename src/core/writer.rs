//! The appender: builds each line (envelope, crc), routes it to the part of its UTC day, rotates
//! at `max_part_bytes`, and makes it durable per the ledger's mode. In group mode a background
//! flusher writes and fdatasyncs batches without holding the state lock (or the GIL).

use super::appender::{open_part, Part, PREALLOC_BYTES};
use super::clock;
use super::error::{Error, Result};
use super::ids::{self, Rng};
use super::json;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod batch;
mod flusher;
mod line;
mod unsynced;
use flusher::{block_signals, flusher_loop, Failed};
pub use flusher::{Done, Failure};
use line::{build_line, finish_lines, Fixup, ID_GIVEN};
use unsynced::{remember_unsynced, sync_all};
// The envelope rules live in `rules.rs`; re-exported where the writer's users find them.
pub use super::rules::{
    check_artifact_paths, check_overrides, check_run_id, check_run_scope, is_run_scoped,
};

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
    /// Shared with the part (an emit copies no path).
    pub file: Arc<str>,
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

/// Bytes waiting for the flusher, all for one part.
struct Segment {
    part: Arc<Part>,
    start: u64,
    bytes: Vec<u8>,
    /// The lines' event ids and crcs still to fill in (`finish_lines`, on the flusher).
    fixups: Vec<Fixup>,
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
    /// The envelope's text around the timestamp (with the writer id), kept between lines.
    heads: line::Heads,
    seq: u64,
    rng: Rng,
    fake_now_us: Option<i64>,
    current: Option<Arc<Part>>,
    size: u64,
    /// The part left at the last switch, with its size: while a pending segment still holds
    /// it (and its lock), open_part could not adopt it, so a return to its day takes it back.
    previous: Option<(Arc<Part>, u64)>,
    /// os mode: parts written and left at a switch since the last flush, which flush()
    /// fdatasyncs before the current one, each through a descriptor of its own (which holds
    /// no lock: another writer may adopt the part meanwhile). At most `MAX_UNSYNCED_PARTS`:
    /// beyond that the oldest is synced at the switch.
    unsynced: Vec<(PathBuf, File)>,
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
    /// The seq ranges of recent failed commits (`Failed`), for per-caller flushes.
    failed: Failed,
    /// flush() callers waiting: the flusher stops gathering and commits at once.
    flush_waiters: usize,
    stats: CommitStats,
    /// Emptied segment buffers handed back by the flusher: reusing them keeps emit() free of
    /// large allocations and page faults.
    free_bufs: Vec<(Vec<u8>, Vec<Fixup>)>,
    scratch: Vec<u8>,
    ts_cache: clock::TsCache,
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
/// os mode: parts left unsynced at switches before the oldest is fdatasynced at the switch.
const MAX_UNSYNCED_PARTS: usize = 8;

/// Pending bytes above which emit() asks the caller to wait (backpressure).
pub const MAX_PENDING_BYTES: usize = 64 << 20;

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
                heads: line::Heads::new(&writer_id),
                writer_id,
                seq: 0,
                rng,
                fake_now_us: None,
                current: None,
                size: 0,
                previous: None,
                unsynced: Vec::new(),
                pending: Vec::new(),
                pending_bytes: 0,
                done_seq: 0,
                error: None,
                failed_through: 0,
                last_failure: None,
                failed: Failed::default(),
                flush_waiters: 0,
                stats: CommitStats::default(),
                free_bufs: Vec::new(),
                scratch: Vec::with_capacity(1024),
                ts_cache: clock::TsCache::default(),
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

    /// Fix the clock (tests: midnight crossing); None returns to the system clock. Compiled only
    /// for `cargo test` and the `test-hooks` feature (the dev build of `make setup`), never
    /// into a wheel built from pyproject.toml.
    #[cfg(any(test, feature = "test-hooks"))]
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
        check_artifact_paths(head.event_type, data)?;
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
        // One formatting of the timestamp serves the line and the part's day (no allocation).
        let ts_text = st.ts_cache.format(ts);
        // Group mode leaves the event id and crc to the flusher (off the caller's thread).
        let deferred = self.cfg.durability == Durability::Group;
        build_line(&mut line, st, head, ts, &ts_text, seq, data, deferred);
        let fix = match head.event_id {
            Some(_) => ID_GIVEN,
            None => (ts.max(0) / 1000) as u64,
        };
        let result = self.place(st, &line, &ts_text[..10], seq, fix);
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
        day: &[u8],
        seq: u64,
        ts_ms: u64,
    ) -> Result<(Position, bool, Option<Arc<Part>>)> {
        if line.len() > self.cfg.max_event_bytes {
            return Err(Error::schema(format!(
                "event is {} bytes, over max_event_bytes {}",
                line.len(),
                self.cfg.max_event_bytes
            )));
        }
        let needs_new = match &st.current {
            None => true,
            Some(p) => {
                p.day.as_bytes() != day
                    || p.is_abandoned()
                    || (st.size > 0 && st.size + line.len() as u64 > self.cfg.max_part_bytes)
            }
        };
        if needs_new {
            let day = std::str::from_utf8(day).unwrap_or("0000-00-00");
            self.switch_part(st, day, line.len() as u64)?;
        }
        let current = st.current.as_ref().expect("current part");
        let offset = st.size;
        let pos = Position {
            file: Arc::clone(&current.rel),
            offset,
        };
        match self.cfg.durability {
            Durability::Group => {
                st.queue(line, offset, seq, ts_ms);
                if self.shared.flusher_idle.load(Ordering::Acquire) {
                    // One wake-up per idle spell: cleared here, under the lock the flusher
                    // holds when it sets the flag and waits (a futex wake per emit until then).
                    self.shared.flusher_idle.store(false, Ordering::Release);
                    self.shared.work.notify_one();
                }
                Ok((pos, st.pending_bytes > MAX_PENDING_BYTES, None))
            }
            Durability::Fsync | Durability::Os => {
                let part = Arc::clone(current);
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
                let (mut part, size) =
                    open_part(&self.cfg.events, day, self.cfg.max_part_bytes, need)?;
                if self.cfg.durability == Durability::Fsync {
                    part.keep_zeros_ahead(PREALLOC_BYTES); // an fdatasync per event: no size
                }
                (Arc::new(part), size)
            }
        };
        if self.cfg.durability == Durability::Os {
            if let Some((p, _)) = left.as_ref().filter(|(p, _)| !p.is_abandoned()) {
                remember_unsynced(&mut st.unsynced, p)?;
            }
        }
        // Kept only while queued bytes still hold it; the flusher lets go after writing them.
        st.previous = left.filter(|(p, _)| !p.is_abandoned() && Arc::strong_count(p) > 1);
        st.current = Some(part);
        st.size = size;
        Ok(())
    }

    /// Block until every event emitted so far is durable (group), or on disk (os: fsync).
    pub fn flush(&self) -> Result<()> {
        self.flush_from(None)
    }

    /// `flush`, also failing (group mode) when a failed commit held any event from seq `first`
    /// on, even if another caller already took that failure: each thread of a binding passes
    /// the first seq it emitted since its last flush, so every thread hears of its own loss.
    pub fn flush_from(&self, first: Option<u64>) -> Result<()> {
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
                let own = first.and_then(|f| st.failed.covering(f, target));
                match st.error.take() {
                    Some(e) => Err(e),
                    None => own.map_or(Ok(()), Err),
                }
            }
            Durability::Os | Durability::Fsync => {
                // os mode: the parts left since the last flush first, then the current one.
                let (left, current) = {
                    let mut st = lock(&self.shared.state);
                    (std::mem::take(&mut st.unsynced), st.current.clone())
                };
                sync_all(&left, current.as_deref())
            }
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
        st.unsynced.clear();
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

/// Path of the events directory under a ledger root.
pub fn events_dir(root: &Path) -> PathBuf {
    root.join("events")
}

#[cfg(test)]
mod tests;
