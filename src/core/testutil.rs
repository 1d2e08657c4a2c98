//! Helpers for the core's unit tests: real faults from the kernel, no mocks.
//!
//! A write past the process's file-size limit (RLIMIT_FSIZE) is cut short by the kernel, and one
//! that starts at the limit fails with EFBIG (SIGXFSZ ignored). The limit is per process, so a
//! test that needs it runs in a child copy of the test binary: the parent test calls
//! `run_under_file_size_limit` with the name of an `#[ignore]`d child test, which starts with
//! `if !apply_file_size_limit() { return; }`. System calls are audited the same way: the child
//! test runs under strace (`run_under_strace`, `child_dir`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

const LIMIT_ENV: &str = "LEDGERX_TEST_FSIZE_LIMIT";
const DIR_ENV: &str = "LEDGERX_TEST_CHILD_DIR";

/// A fresh, empty temporary directory path for one test of this process.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ledgerx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Removes its directory when dropped, also when the test fails: for tests that write tens of
/// MiB (mutation runs fail them hundreds of times).
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the ignored test `name` (its full path, `core::appender::tests::…`) alone in a child copy
/// of this test binary under a file-size limit of `limit` bytes. Panics unless exactly that test
/// ran there and passed.
pub fn run_under_file_size_limit(name: &str, limit: u64) {
    run_child(name, &[(LIMIT_ENV, limit.to_string())], &[]);
}

/// Run the ignored test `name` in a child copy of this test binary under
/// `strace -f -y -e trace=write,fsync,fdatasync`, with `dir` (a fresh directory) as the child's
/// working directory for its files (`child_dir()`). Returns the traced calls in order as
/// (call, path of the descriptor). strace is required (`make setup` installs it).
pub fn run_under_strace(name: &str, dir: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.with_extension("strace");
    let log_s = log.to_string_lossy().into_owned();
    let wrap = [
        "strace",
        "-f",
        "-qq",
        "-y",
        "-s",
        "0",
        "-o",
        &log_s,
        "-e",
        "trace=write,fsync,fdatasync",
    ];
    run_child(
        name,
        &[(DIR_ENV, dir.to_string_lossy().into_owned())],
        &wrap,
    );
    let text = std::fs::read_to_string(&log).expect("strace log");
    let call = |line: &str| -> Option<(String, String)> {
        // `1234 fdatasync(5</tmp/x/part-000001.jsonl>) = 0`, or `… <unfinished ...>`.
        let rest = line.split_once(char::is_whitespace)?.1.trim_start();
        let (name, rest) = rest.split_once('(')?;
        let path = rest.split_once('<')?.1.split_once('>')?.0;
        Some((name.to_string(), path.to_string()))
    };
    text.lines()
        .filter(|l| !l.contains("resumed>"))
        .filter_map(call)
        .collect()
}

/// Run the ignored test `name` in a child copy of this test binary with `dir` as its working
/// directory (`child_dir()`).
pub fn run_in_child(name: &str, dir: &Path) {
    run_child(name, &[(DIR_ENV, dir.to_string_lossy().into_owned())], &[]);
}

fn run_child(name: &str, env: &[(&str, String)], wrapper: &[&str]) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut argv: Vec<std::ffi::OsString> = wrapper.iter().map(|a| a.into()).collect();
    argv.push(exe.into());
    for a in [
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ] {
        argv.push(a.into());
    }
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "start {:?}: {e} (strace: `make setup` installs it)",
                argv[0]
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "child test {name} ({env:?}):\n{text}"
    );
}

/// In a child started by `run_under_strace`: the directory to work in; None in a plain test
/// run (the child test then does nothing).
pub fn child_dir() -> Option<PathBuf> {
    std::env::var_os(DIR_ENV).map(PathBuf::from)
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

/// A part's data as every reader sees it: without the trailing run of NUL bytes (the zeros a
/// live writer keeps written ahead, `appender::data_end`).
pub fn read_data(path: &Path) -> Vec<u8> {
    let mut raw = std::fs::read(path).unwrap();
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    raw.truncate(end);
    raw
}
