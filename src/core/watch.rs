//! Waking up when a directory changes (Linux inotify): the daemon sleeps on the log's newest
//! directories instead of polling their sizes, so a new line starts the next round at once.
//! A wake-up is only a hint: the caller still compares what it cares about (`growth_mark`).

use super::error::{Error, Result};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The path errors of the instance itself name (it has none of its own).
const INOTIFY: &str = "inotify";

/// What counts as a change: a file written, created, moved in, closed after writing, or its
/// metadata (an fsync-mode append lands in preallocated space: a write all the same).
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_DELETE;

/// One inotify instance watching a few directories.
#[derive(Debug)]
pub struct DirWatch {
    fd: OwnedFd,
}

impl DirWatch {
    pub fn new() -> Result<Self> {
        // SAFETY: no pointer arguments; a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io(Path::new(INOTIFY), io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by inotify_init1 and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(DirWatch { fd })
    }

    /// Watch the directory `dir` (changes of the files in it, and of itself).
    pub fn add(&self, dir: &Path) -> Result<()> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
            let nul = io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL");
            Error::io(dir, nul)
        })?;
        // SAFETY: a valid descriptor and a NUL-terminated path that outlives the call.
        let wd = unsafe {
            libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK | libc::IN_ONLYDIR)
        };
        if wd < 0 {
            return Err(Error::io(dir, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Block until something changed in a watched directory since the last call (true), or
    /// `timeout_ms` passed or a signal arrived (false: the caller looks again anyway). Drains
    /// the pending notifications.
    pub fn wait(&self, timeout_ms: i32) -> Result<bool> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(Error::io(Path::new(INOTIFY), e))
            };
        }
        if n == 0 {
            return Ok(false);
        }
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads at most `buf.len()` bytes into `buf`.
            let r = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if r <= 0 {
                return Ok(true); // EAGAIN: drained
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::tmp;
    use std::io::Write;

    #[test]
    fn wakes_on_a_write_a_new_file_and_a_new_directory_only() {
        let d = tmp("watch");
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("part.jsonl");
        std::fs::write(&f, b"a\n").unwrap();
        let w = DirWatch::new().unwrap();
        w.add(&d).unwrap();
        assert!(!w.wait(20).unwrap(), "nothing changed yet");
        let mut open = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        open.write_all(b"b\n").unwrap(); // a writer keeps its part open: no close to see
        assert!(w.wait(1000).unwrap(), "an append");
        assert!(!w.wait(20).unwrap(), "drained");
        drop(open);
        w.wait(0).unwrap();
        std::fs::create_dir(d.join("day=2026-01-02")).unwrap();
        assert!(w.wait(1000).unwrap(), "a new directory");
        std::fs::write(d.join("part-2.jsonl"), b"").unwrap();
        assert!(w.wait(1000).unwrap(), "a new file");
        let _ = std::fs::read(&f).unwrap();
        w.wait(0).unwrap(); // the close of the new file's write, if not yet drained
        assert!(!w.wait(20).unwrap(), "a read changes nothing");
    }

    #[test]
    fn refuses_what_is_not_a_directory() {
        let d = tmp("watch-file");
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("x");
        std::fs::write(&f, b"").unwrap();
        let w = DirWatch::new().unwrap();
        assert!(w.add(&f).is_err());
        assert!(w.add(&d.join("missing")).is_err());
    }
}
