//! A SIGTERM watchdog behind Python's own handler.
//!
//! Python runs a signal handler only between bytecodes of the main thread. A SIGTERM that lands
//! just before the main thread enters a blocking C call (a Pool worker about to wait on its
//! queue's semaphore) trips Python's flag but never interrupts that call, so the handler never
//! runs and the process never dies: `Pool.terminate()` hangs. The watchdog closes that gap: a
//! C-level handler (async-signal-safe: one `write` to a pipe) chains to Python's, and a thread
//! woken by the pipe waits `grace_ms`; if the process is still alive, it runs the Python
//! callback (end live runs, flush) under the GIL, restores the default action and re-raises
//! SIGTERM. No lock is taken in the handler itself.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicI32, Ordering};

static PIPE_W: AtomicI32 = AtomicI32::new(-1);
static PIPE_R: AtomicI32 = AtomicI32::new(-1);
static OWNER_PID: AtomicI32 = AtomicI32::new(0);
/// The handler that was installed before ours (Python's C-level handler), chained to. Written
/// only before our handler is installed.
static mut PREV_COPY: Option<libc::sigaction> = None;

extern "C" fn on_term(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: only async-signal-safe calls (getpid, write) and a read of a copy made before
    // the handler was installed; errno is saved and restored.
    unsafe {
        let saved = *libc::__errno_location();
        let fd = PIPE_W.load(Ordering::Relaxed);
        if fd >= 0 && libc::getpid() == OWNER_PID.load(Ordering::Relaxed) {
            let b = [1u8];
            libc::write(fd, b.as_ptr() as *const libc::c_void, 1);
        }
        #[allow(static_mut_refs)]
        if let Some(prev) = PREV_COPY.as_ref() {
            let h = prev.sa_sigaction;
            if h != libc::SIG_DFL && h != libc::SIG_IGN {
                if prev.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(h);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
                    f(sig);
                }
            }
        }
        *libc::__errno_location() = saved;
    }
}

fn block_all_signals() {
    // SAFETY: this thread's mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Install (or, in a forked child, re-install) the watchdog: `callback()` runs under the GIL
/// when SIGTERM arrived `grace_ms` ago and the process is still alive. Call it right after
/// Python's own SIGTERM handler was installed.
#[pyfunction]
pub fn install_sigterm_watchdog(callback: Py<PyAny>, grace_ms: u64) -> PyResult<()> {
    let mut fds = [0i32; 2];
    // SAFETY: plain libc calls on local storage; the handler reads statics set before it is
    // installed.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut old);
        if old.sa_sigaction != on_term as *const () as usize {
            PREV_COPY = Some(old);
        }
        let old_w = PIPE_W.swap(fds[1], Ordering::SeqCst);
        let old_r = PIPE_R.swap(fds[0], Ordering::SeqCst);
        let old_pid = OWNER_PID.swap(libc::getpid(), Ordering::SeqCst);
        // The previous pair: closing its write end wakes an old reader thread of this process
        // with EOF (it closes its read end); in a forked child that thread does not exist, so
        // the inherited read end is closed here.
        if old_w >= 0 {
            libc::close(old_w);
        }
        if old_r >= 0 && old_pid != libc::getpid() {
            libc::close(old_r);
        }
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_term as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigfillset(&mut act.sa_mask);
        libc::sigaction(libc::SIGTERM, &act, std::ptr::null_mut());
    }
    let read_fd = fds[0];
    std::thread::Builder::new()
        .name("ledgerx-sigterm".into())
        .spawn(move || {
            block_all_signals();
            let mut b = [0u8; 1];
            loop {
                // SAFETY: reading into a local buffer from our own pipe.
                let n = unsafe { libc::read(read_fd, b.as_mut_ptr() as *mut libc::c_void, 1) };
                if n == 1 {
                    break;
                }
                if n == 0 {
                    // SAFETY: our own read end; the write end was closed by a re-install.
                    unsafe { libc::close(read_fd) };
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(grace_ms));
            // Still alive: Python's handler did not run. Do its work here, then die.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Python::with_gil(|py| {
                    let _ = callback.call0(py);
                })
            }));
            // SAFETY: restoring the default action and re-raising, as the handler would.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
        })
        .map_err(PyErr::from)?;
    Ok(())
}
