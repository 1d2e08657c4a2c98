//! Helpers for the core's unit tests: real faults from the kernel, no mocks.
//!
//! A write past the process's file-size limit (RLIMIT_FSIZE) is cut short by the kernel, and one
//! that starts at the limit fails with EFBIG (SIGXFSZ ignored). The limit is per process, so a
//! test that needs it runs in a child copy of the test binary: the parent test calls
//! `run_under_file_size_limit` with the name of an `#[ignore]`d child test, which starts with
//! `if !apply_file_size_limit() { return; }`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

const LIMIT_ENV: &str = "LEDGERX_TEST_FSIZE_LIMIT";

/// A fresh, empty temporary directory path for one test of this process.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ledgerx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Run the ignored test `name` (its full path, `core::appender::tests::…`) alone in a child copy
/// of this test binary under a file-size limit of `limit` bytes. Panics unless exactly that test
/// ran there and passed.
pub fn run_under_file_size_limit(name: &str, limit: u64) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LIMIT_ENV, limit.to_string())
        .output()
        .expect("start the child test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "child test {name} under RLIMIT_FSIZE={limit}:\n{text}"
    );
}

/// In a child started by `run_under_file_size_limit`: ignore SIGXFSZ, apply the limit and return
/// true. In a plain test run (no limit asked for) return false: the child test does nothing.
pub fn apply_file_size_limit() -> bool {
    let Some(limit) = std::env::var(LIMIT_ENV).ok().and_then(|v| v.parse().ok()) else {
        return false;
    };
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: plain syscalls; the rlimit struct lives across the call.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rl), 0, "setrlimit");
    }
    true
}

/// Run `f` on its own thread and return its result, or panic if it has not finished within
/// `limit` (a loop that never ends fails the test instead of hanging the run; the stuck thread
/// is left behind and ends with the test process).
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the worker thread panicked"),
    }
}
