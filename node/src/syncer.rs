//! fsync mode's fdatasyncs: one thread per writer, woken by the emit that wrote a line, runs one
//! fdatasync per part for every line written since its last one (pending fsync requests are
//! coalesced as group commit would coalesce them), then reports the batch to the event loop
//! through a napi threadsafe function, which calls the `setOnSynced` function once per event.
//!
//! The guarantee: an event is reported durable only after an fdatasync of its part that began
//! after its line's write() returned (a ticket is queued only then), and never after a failed
//! fdatasync of that part (every line written to it before the failure is reported failed).

use crate::fast::report_synced;
use ledgerx::core::sched::Follower;
use ledgerx::core::writer::SyncTicket;
use napi::bindgen_prelude::*;
use napi::sys;
use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct Queue {
    /// Tokens and tickets of lines written and not yet synced, in emit order.
    pending: Vec<(f64, Option<SyncTicket>)>,
    /// The writer is gone: end once `pending` is empty.
    stop: bool,
    /// The thread waits on `cv` (an emit wakes it only then).
    sleeping: bool,
    /// The threadsafe function was finalized (the environment is going away): the thread must
    /// not touch it any more (checked and used under this lock).
    closed: bool,
}

struct Shared {
    q: Mutex<Queue>,
    cv: Condvar,
    /// The thread, kept on the event loop's CPU while one event at a time is awaited.
    follower: std::sync::OnceLock<Follower>,
}

/// The event loop's side, owned by the threadsafe function (freed by its finalizer).
struct MainSide {
    tsfn: sys::napi_threadsafe_function,
    shared: Arc<Shared>,
    /// Events queued and not yet reported: the function keeps the loop alive while > 0.
    outstanding: Cell<usize>,
    /// Emits in a row that found nothing outstanding (one event at a time, awaited).
    alone: Cell<u32>,
}

/// The threadsafe function's handle, for the thread (napi allows calls from any thread).
struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: napi_call/release_threadsafe_function may be called from any thread.
unsafe impl Send for Tsfn {}

/// One batch's outcome per event: its token and its failure (a marked error message), if any.
type Report = Vec<(f64, Option<String>)>;

pub(crate) struct Syncer {
    shared: Arc<Shared>,
    main: *mut MainSide,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Syncer {
    /// Start the thread and its threadsafe function (unreferenced while nothing is pending).
    ///
    /// # Safety
    /// `env` must be the current call's environment.
    pub(crate) unsafe fn start(env: sys::napi_env) -> Result<Syncer> {
        let fail = || Error::from_reason("cannot start the fdatasync thread");
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            follower: std::sync::OnceLock::new(),
        });
        let main = Box::into_raw(Box::new(MainSide {
            tsfn: ptr::null_mut(),
            shared: Arc::clone(&shared),
            outstanding: Cell::new(0),
            alone: Cell::new(0),
        }));
        let mut name = ptr::null_mut();
        let mut st = sys::napi_create_string_latin1(env, c"ledgerx.fsync".as_ptr(), 13, &mut name);
        if st == sys::Status::napi_ok {
            st = sys::napi_create_threadsafe_function(
                env,
                ptr::null_mut(),
                ptr::null_mut(),
                name,
                0,
                1,
                main.cast(),
                Some(finalize),
                main.cast(),
                Some(call_js),
                &mut (*main).tsfn,
            );
        }
        if st != sys::Status::napi_ok {
            drop(Box::from_raw(main));
            return Err(fail());
        }
        let tsfn = (*main).tsfn;
        sys::napi_unref_threadsafe_function(env, tsfn);
        let for_thread = (Arc::clone(&shared), Tsfn(tsfn));
        let spawned = std::thread::Builder::new()
            .name("ledgerx-fsync".into())
            .spawn(move || {
                let (shared, tsfn) = for_thread;
                // Run as soon as woken (an emit queued a line, an fdatasync returned), not
                // after a busy CPU's current task ends its slice.
                ledgerx::core::sched::prefer_short_slice();
                if let Some(f) = Follower::this_thread() {
                    let _ = shared.follower.set(f);
                }
                sync_loop(&shared, tsfn);
            });
        if spawned.is_err() {
            // Frees `main` through the finalizer.
            sys::napi_release_threadsafe_function(
                tsfn,
                sys::ThreadsafeFunctionReleaseMode::release,
            );
            return Err(fail());
        }
        Ok(Syncer { shared, main })
    }

    /// End the thread once what is pending is synced and reported (the writer is closed: no
    /// line is written, so none is queued, after this).
    pub(crate) fn stop(&self) {
        let mut q = self.shared.q.lock().unwrap_or_else(|p| p.into_inner());
        q.stop = true;
        drop(q);
        self.shared.cv.notify_one();
    }

    /// Queue the fdatasync of a line whose write() returned; `token` is reported when done.
    ///
    /// # Safety
    /// `env` must be the current call's environment (the one this syncer was started in).
    pub(crate) unsafe fn enqueue(
        &self,
        env: sys::napi_env,
        token: f64,
        ticket: Option<SyncTicket>,
    ) {
        let m = &*self.main;
        // Kept on this CPU from the second emit in a row that waited for the one before (the
        // first of a batch after an awaited batch does not count: pinning the thread for it and
        // letting it go at the next emit cost a batch of 64 a quarter of its rate).
        m.alone.set(if m.outstanding.get() == 0 {
            m.alone.get().saturating_add(1)
        } else {
            0
        });
        if let Some(f) = self.shared.follower.get() {
            f.follow(m.alone.get() >= 2);
        }
        if m.outstanding.get() == 0 {
            sys::napi_ref_threadsafe_function(env, m.tsfn);
        }
        m.outstanding.set(m.outstanding.get() + 1);
        let mut q = self.shared.q.lock().unwrap_or_else(|p| p.into_inner());
        q.pending.push((token, ticket));
        let wake = q.sleeping;
        drop(q);
        if wake {
            self.shared.cv.notify_one();
        }
    }
}

/// The thread: take what is pending, sync it, report it; until the writer is gone.
fn sync_loop(shared: &Shared, tsfn: Tsfn) {
    loop {
        let batch = {
            let mut q = shared.q.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if !q.pending.is_empty() {
                    break std::mem::take(&mut q.pending);
                }
                if q.stop {
                    if !q.closed {
                        // SAFETY: this thread's own reference to a live function (not
                        // finalized: checked under the lock), released once.
                        unsafe {
                            sys::napi_release_threadsafe_function(
                                tsfn.0,
                                sys::ThreadsafeFunctionReleaseMode::release,
                            )
                        };
                    }
                    return;
                }
                q.sleeping = true;
                q = shared.cv.wait(q).unwrap_or_else(|p| p.into_inner());
                q.sleeping = false;
            }
        };
        let data = Box::into_raw(Box::new(sync_batch(&batch)));
        drop(batch);
        let q = shared.q.lock().unwrap_or_else(|p| p.into_inner());
        let st = if q.closed {
            sys::Status::napi_closing
        } else {
            // SAFETY: a live function (not finalized: checked under the lock, which the
            // finalizer takes); `data` is freed by `call_js`, or below when not handed over.
            unsafe {
                sys::napi_call_threadsafe_function(
                    tsfn.0,
                    data.cast(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                )
            }
        };
        drop(q);
        if st != sys::Status::napi_ok {
            // SAFETY: not handed over.
            drop(unsafe { Box::from_raw(data) });
            return; // closing: the environment is gone, nobody waits
        }
    }
}

/// One fdatasync per part in the batch (every line in it was written before the batch was
/// taken); each event gets its part's outcome.
fn sync_batch(batch: &[(f64, Option<SyncTicket>)]) -> Report {
    // A ticket of each part synced so far, and that part's outcome.
    let mut parts: Vec<(&SyncTicket, Option<String>)> = Vec::new();
    let mut out = Vec::with_capacity(batch.len());
    for (token, ticket) in batch {
        let Some(ticket) = ticket else {
            out.push((*token, None)); // nothing to sync (not fsync mode)
            continue;
        };
        let failure = match parts.iter().find(|(t, _)| t.same_part(ticket)) {
            Some((_, f)) => f.clone(),
            None => {
                let f = sync_one(ticket);
                parts.push((ticket, f.clone()));
                f
            }
        };
        out.push((*token, failure));
    }
    out
}

/// fdatasync one part (refused when an earlier fdatasync of it failed), as a marked message.
fn sync_one(ticket: &SyncTicket) -> Option<String> {
    // No panic may unwind out of this thread: it becomes the failure.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ticket.sync_unless_abandoned()
    })) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(crate::js_err(e).reason.clone()),
        Err(_) => Some("ledgerx: internal error (panic) in fdatasync".into()),
    }
}

/// On the event loop: report a batch (a null `env`: the environment is going away).
unsafe extern "C" fn call_js(
    env: sys::napi_env,
    _js_cb: sys::napi_value,
    context: *mut c_void,
    data: *mut c_void,
) {
    let report = Box::from_raw(data.cast::<Report>());
    if env.is_null() {
        return;
    }
    let m = &*context.cast::<MainSide>();
    let left = m.outstanding.get().saturating_sub(report.len());
    m.outstanding.set(left);
    if left == 0 {
        sys::napi_unref_threadsafe_function(env, m.tsfn);
    }
    for (token, failure) in report.iter() {
        report_synced(env, *token, failure.as_deref());
    }
}

/// The function is going away (the thread released it, or the environment is torn down):
/// tell the thread never to touch it again, and stop it.
unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    let m = Box::from_raw(data.cast::<MainSide>());
    let mut q = m.shared.q.lock().unwrap_or_else(|p| p.into_inner());
    q.closed = true;
    q.stop = true;
    drop(q);
    m.shared.cv.notify_one();
}
