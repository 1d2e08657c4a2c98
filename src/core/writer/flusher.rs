//! Group mode's background flusher: gathers queued segments, writes and fdatasyncs them
//! without holding the state lock, and reports the outcome to the waiting emitters.

use super::*;

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

/// The seq ranges of the last failed group commits with their failure and lost count (at most
/// `KEPT`; a range dropped beyond that is still reported, conservatively, to an older `first`).
#[derive(Default)]
pub(super) struct Failed {
    ranges: std::collections::VecDeque<(u64, u64, Failure, u64)>,
    dropped_through: u64,
}

impl Failed {
    const KEPT: usize = 64;

    fn record(&mut self, lo: u64, hi: u64, e: &Error) {
        let lost = match e {
            Error::Commit { lost, .. } => *lost,
            _ => hi + 1 - lo,
        };
        if self.ranges.len() == Self::KEPT {
            if let Some((_, h, _, _)) = self.ranges.pop_front() {
                self.dropped_through = h;
            }
        }
        self.ranges.push_back((lo, hi, failure_of(e), lost));
    }

    /// The failure of a commit that held an event with a seq in `first..=target`, as an error.
    pub(super) fn covering(&self, first: u64, target: u64) -> Option<Error> {
        let hit = self
            .ranges
            .iter()
            .find(|(lo, hi, _, _)| *hi >= first && *lo <= target);
        let (f, lost) = match hit {
            Some((_, _, f, lost)) => (f.clone(), *lost),
            None if first <= self.dropped_through && first <= target => {
                let (_, _, f, lost) = self.ranges.front()?;
                (f.clone(), *lost)
            }
            None => return None,
        };
        let source = match f.errno {
            Some(n) => std::io::Error::from_raw_os_error(n),
            None => std::io::Error::other(f.message),
        };
        Some(Error::Commit {
            path: f.path,
            source,
            lost,
        })
    }
}

/// Keep process-directed signals (SIGTERM, SIGINT, ...) off this thread: delivered here, they
/// would not interrupt the main thread's blocking call, so Python's handler would never run
/// (a worker stuck in a lock wait that `Pool.terminate()` can no longer end).
pub(super) fn block_signals() {
    // SAFETY: plain libc calls on a local, initialized signal set; only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

impl State {
    /// Group mode: append a line (at `offset` of the current part) to the last pending
    /// segment when that is of the current part and has room, else to a new segment in a
    /// free buffer (the part's Arc is cloned only then: no reference count per line).
    pub(super) fn queue(&mut self, line: &[u8], offset: u64, seq: u64, ts_ms: u64) {
        let current = self.current.as_ref().expect("current part");
        let fits = self.pending.last().is_some_and(|s| {
            Arc::ptr_eq(&s.part, current) && s.bytes.len() + line.len() <= SEGMENT_BYTES
        });
        if !fits {
            let part = Arc::clone(current);
            let (bytes, fixups) = self
                .free_bufs
                .pop()
                .unwrap_or_else(|| (Vec::with_capacity(SEGMENT_BYTES), Vec::with_capacity(4096)));
            self.pending.push(Segment {
                part,
                start: offset,
                bytes,
                fixups,
                last_seq: 0,
                events: 0,
                first_at: Instant::now(),
            });
        }
        self.seq = seq;
        let seg = self.pending.last_mut().expect("segment");
        seg.bytes.extend_from_slice(line);
        seg.fixups.push(Fixup::new(seg.bytes.len(), ts_ms));
        seg.last_seq = seq;
        seg.events += 1;
        self.pending_bytes += line.len();
        self.size += line.len() as u64;
    }
}

pub(super) fn flusher_loop(shared: &Shared, gather: Duration) {
    // The event ids of group-mode lines are made here (`finish_lines`).
    let mut rng = Rng::from_os();
    loop {
        let mut batch = {
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
        let error = write_batch(&mut batch, &mut rng);
        let waited = batch
            .first()
            .map_or(0, |s| s.first_at.elapsed().as_micros() as u64);
        let mut st = lock(&shared.state);
        let first_seq = st.done_seq + 1;
        st.done_seq = st.done_seq.max(last_seq);
        let stats = &mut st.stats;
        stats.batches += 1;
        stats.events += batch.iter().map(|s| s.events).sum::<u64>();
        stats.max_latency_us = stats.max_latency_us.max(waited);
        let bucket = (63 - waited.max(1).leading_zeros()) as usize;
        stats.latency_log2_us[bucket.min(23)] += 1;
        for seg in batch {
            let (mut b, mut f) = (seg.bytes, seg.fixups);
            if st.free_bufs.len() < FREE_BUFS_KEPT && b.capacity() <= 2 * SEGMENT_BYTES {
                b.clear();
                f.clear();
                st.free_bufs.push((b, f));
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
            st.failed.record(first_seq, last_seq, &e);
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
fn write_batch(batch: &mut [Segment], rng: &mut Rng) -> Option<Error> {
    let mut first_err = None;
    let mut lost = 0usize;
    for i in 0..batch.len() {
        let (seg, later) = batch[i..].split_first_mut().expect("segment");
        if seg.part.is_abandoned() {
            // Queued for a part that an earlier failed write or fdatasync abandoned: never
            // written, so these events fail with the batch (never reported durable).
            lost += memchr::memchr_iter(b'\n', &seg.bytes).count();
            first_err.get_or_insert_with(|| {
                Error::io(&seg.part.path, std::io::Error::from_raw_os_error(libc::EIO))
            });
            continue;
        }
        finish_lines(&mut seg.bytes, &seg.fixups, rng);
        let res = write_chunks(&seg.part, &seg.bytes, seg.start).and_then(|_| {
            let last_for_part = !later.iter().any(|s| Arc::ptr_eq(&s.part, &seg.part));
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

impl Writer {
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
}
