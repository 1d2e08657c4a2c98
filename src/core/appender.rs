//! Part files on disk: day directories, part allocation with O_CREAT|O_EXCL, adoption of a
//! non-full part under an exclusive advisory lock (after cutting a torn tail to quarantine),
//! single-write appends, fdatasync, and directory fsyncs after every create.
//!
//! Preallocation (fsync mode, `Part::keep_zeros_ahead`): a part keeps a region of zeros written
//! ahead of its data (`PREALLOC_BYTES`, never past the part's size limit), so an fdatasync after
//! an append has no file size or extent to commit (written blocks inside the size: data only). The data of a part ends at
//! its last non-NUL byte (`data_end`): a trailing run of NUL bytes is not yet written, for
//! every reader. A part's zero tail is cut when its writer lets go of it, and before a part is
//! adopted.

use super::clock;
use super::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const QUARANTINE_DIR: &str = "_quarantine";
const ABANDONED_SUFFIX: &str = ".abandoned";
/// Zeros kept written ahead of a part's data (issue 15: fdatasync into written blocks inside
/// the file's size commits no metadata, ~0.7x the latency of an append to a growing file).
pub const PREALLOC_BYTES: u64 = 1 << 20;

/// An open part file owned (advisory-locked) by one writer.
#[derive(Debug)]
pub struct Part {
    pub path: PathBuf,
    /// Path relative to the events directory, e.g. `day=2026-11-25/part-000001.jsonl` (shared
    /// with every `Position` of the part: no copy per event).
    pub rel: std::sync::Arc<str>,
    pub day: String,
    pub file: File,
    abandoned: AtomicBool,
    /// The end of the data written through this part (its logical size).
    written: AtomicU64,
    /// The end of the zeros written ahead of the data (the file's size while we hold it).
    zeroed: AtomicU64,
    /// The descriptor's file offset, where the next write() lands (u64::MAX: unknown).
    pos: AtomicU64,
    /// The zero tail never reaches past this size (the part's size limit).
    limit: u64,
    /// Zeros kept written ahead of the data (0: none, the part grows with each append).
    ahead: u64,
    /// The process that opened it: a forked child dropping an inherited part cuts nothing.
    pid: u32,
}

impl Part {
    fn new(path: PathBuf, rel: String, day: &str, file: File, size: u64, limit: u64) -> Self {
        Part {
            path,
            rel: rel.into(),
            day: day.to_string(),
            file,
            abandoned: AtomicBool::new(false),
            written: AtomicU64::new(size),
            zeroed: AtomicU64::new(size),
            pos: AtomicU64::new(u64::MAX),
            limit,
            ahead: 0,
            pid: std::process::id(),
        }
    }

    /// Keep `bytes` of zeros written ahead of the data from the next append on. Worth it where
    /// every append is followed by its own fdatasync (fsync mode); in group and os mode the
    /// zeros would only double the bytes written back.
    pub fn keep_zeros_ahead(&mut self, bytes: u64) {
        self.ahead = bytes;
    }

    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Never trust this part again: no more writes, and a marker so no one adopts it.
    pub fn abandon(&self, reason: &str) {
        if !self.abandoned.swap(true, Ordering::AcqRel) {
            let mut marker = self.path.clone().into_os_string();
            marker.push(ABANDONED_SUFFIX);
            let _ = fs::write(&marker, format!("{reason}\n"));
            if let Some(dir) = self.path.parent() {
                let _ = fsync_dir(dir);
            }
        }
    }

    /// Append whole lines at `at` (the part's logical end) with exactly one write(); a short
    /// write is an error, and the part is cut back to where it was so no partial line stays
    /// behind. Then keep `PREALLOC_BYTES` of zeros written ahead (best effort).
    pub fn append(&self, buf: &[u8], at: u64) -> Result<()> {
        if self.pos.load(Ordering::Relaxed) != at {
            (&self.file)
                .seek(SeekFrom::Start(at))
                .map_err(|e| Error::io(&self.path, e))?;
        }
        self.pos.store(u64::MAX, Ordering::Relaxed);
        // SAFETY: the fd is open for as long as `self.file` lives, and `buf` is a valid slice
        // of `buf.len()` readable bytes for the duration of the call.
        let n = unsafe { libc::write(self.file.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(Error::io(&self.path, io::Error::last_os_error()));
        }
        if n as usize != buf.len() {
            let _ = self.file.set_len(at);
            self.zeroed.store(at, Ordering::Relaxed);
            return Err(Error::io(
                &self.path,
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write: {n} of {} bytes", buf.len()),
                ),
            ));
        }
        let end = at + buf.len() as u64;
        self.pos.store(end, Ordering::Relaxed);
        self.written.fetch_max(end, Ordering::AcqRel);
        self.zero_ahead(end);
        Ok(())
    }

    /// Keep zeros written from `end` to `ahead` bytes past it (never past `limit` unless the
    /// data is): extended when less than half of it is left. A failure only costs speed.
    fn zero_ahead(&self, end: u64) {
        let zeroed = self.zeroed.load(Ordering::Acquire).max(end);
        if self.ahead == 0 || zeroed >= end + self.ahead / 2 {
            return;
        }
        let target = (end + self.ahead).min(self.limit.max(end));
        if target <= zeroed {
            return;
        }
        let zeros = vec![0u8; (target - zeroed) as usize];
        if self.file.write_all_at(&zeros, zeroed).is_ok() {
            self.zeroed.store(target, Ordering::Release);
        }
    }

    pub fn datasync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for Part {
    /// Cut the zero tail when the last holder lets go (not after an abandon, and not in a
    /// forked child that inherited the part): a closed part ends with its last line.
    fn drop(&mut self) {
        let written = *self.written.get_mut();
        if written < *self.zeroed.get_mut()
            && !*self.abandoned.get_mut()
            && self.pid == std::process::id()
        {
            let _ = self.file.set_len(written);
        }
    }
}

/// Where the data of a part of `size` bytes ends: after its last non-NUL byte (a trailing run
/// of NUL bytes is preallocated space, not yet written; NUL never appears in a valid line).
/// Sparse stretches are skipped unread (SEEK_DATA), which moves `file`'s offset: callers read
/// with pread or seek first (a `Part` seeks before its first append).
pub fn data_end(file: &File, size: u64) -> io::Result<u64> {
    let mut last = [0u8; 1];
    if size == 0 || file.read_at(&mut last, size - 1)? != 1 || last[0] != 0 {
        return Ok(size); // ends with data (or shrank under us: the caller reads what is there)
    }
    let mut chunk = vec![0u8; 1 << 20];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        if is_hole(file, start, end) {
            end = start; // a sparse stretch reads as zeros: nothing to read
            continue;
        }
        let buf = &mut chunk[..(end - start) as usize];
        if file.read_at(buf, start)? != buf.len() {
            return Ok(size);
        }
        if let Some(i) = buf.iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Whether [start, end) of `file` is a hole (no data extent: it reads as zeros). Moves the
/// descriptor's offset (see `data_end`).
fn is_hole(file: &File, start: u64, end: u64) -> bool {
    // SAFETY: lseek on a descriptor that `file` keeps open; no memory is passed.
    let next = unsafe { libc::lseek(file.as_raw_fd(), start as libc::off_t, libc::SEEK_DATA) };
    if next < 0 {
        // ENXIO: no data at all after `start`; another error (unsupported): read it.
        return io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO);
    }
    next as u64 >= end
}

/// fsync a directory so entries created in it survive a power loss.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn part_number(name: &str) -> Option<u32> {
    name.strip_prefix("part-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

fn lock_nb(f: &File) -> bool {
    // SAFETY: flock on a file descriptor that `f` keeps open; no memory is passed.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Create `dir` if missing (refusing a symlink or non-directory in its place) and fsync its
/// parent when it was created.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(Error::io(
                dir,
                io::Error::new(io::ErrorKind::InvalidInput, "exists and is not a directory"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return ensure_dir(dir),
        Err(e) => return Err(Error::io(dir, e)),
    }
    if let Some(parent) = dir.parent() {
        fsync_dir(parent).map_err(|e| Error::io(parent, e))?;
    }
    Ok(())
}

/// Open a part for `day` under `events`: adopt an unlocked, trusted part with room for `need`
/// more bytes, or create the next number with O_EXCL. Returns the part and its current size.
pub fn open_part(events: &Path, day: &str, max_part_bytes: u64, need: u64) -> Result<(Part, u64)> {
    let rel_dir = format!("day={day}");
    let dir = events.join(&rel_dir);
    ensure_dir(&dir)?;
    let mut numbers = Vec::new();
    let mut abandoned = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = part_number(&name) {
            numbers.push(n);
        } else if let Some(stem) = name.strip_suffix(ABANDONED_SUFFIX) {
            if let Some(n) = part_number(stem) {
                abandoned.push(n);
            }
        }
    }
    // Parts moved to the archive by retention keep their numbers: a writer that comes back to
    // an archived day must not reuse a name and hide the archived part.
    let archived = archived_numbers(events, day);
    numbers.sort_unstable();
    for &n in &numbers {
        if abandoned.contains(&n) {
            continue;
        }
        let name = format!("part-{n:06}.jsonl");
        let path = dir.join(&name);
        if let Some((file, size)) =
            try_adopt(events, &path, day, max_part_bytes.saturating_sub(need))?
        {
            let rel = format!("{rel_dir}/{name}");
            return Ok((Part::new(path, rel, day, file, size, max_part_bytes), size));
        }
    }
    let mut n = numbers.iter().chain(&archived).max().copied().unwrap_or(0) + 1;
    loop {
        let name = format!("part-{n:06}.jsonl");
        let path = dir.join(&name);
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&path);
        match opened {
            Ok(file) => {
                fsync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
                // Someone may adopt an empty part between create and lock: then take the next.
                if lock_nb(&file) {
                    let rel = format!("{rel_dir}/{name}");
                    return Ok((Part::new(path, rel, day, file, 0, max_part_bytes), 0));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        n += 1;
    }
}

/// Part numbers of `day` already archived as `<root>/archive/events/day=D/part-N.parquet`.
fn archived_numbers(events: &Path, day: &str) -> Vec<u32> {
    let Some(root) = events.parent() else {
        return Vec::new();
    };
    let dir = root
        .join("archive")
        .join("events")
        .join(format!("day={day}"));
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let stem = name.to_str()?.strip_suffix(".parquet")?;
            stem.strip_prefix("part-")?.parse().ok()
        })
        .collect()
}

/// Lock and prepare an existing part for appending, or None when it is busy, not below
/// `below` bytes, or not a regular file.
fn try_adopt(events: &Path, path: &Path, day: &str, below: u64) -> Result<Option<(File, u64)>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    // A part with other hard links may be a file outside the root: never adopted (cut, appended).
    // (Its size may include a zero tail: compared again with its data end once locked.)
    if !meta.file_type().is_file()
        || meta.len() >= below.saturating_add(PREALLOC_BYTES)
        || meta.nlink() > 1
    {
        return Ok(None);
    }
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let m = file.metadata().map_err(|e| Error::io(path, e))?;
    let ft = m.file_type();
    if !ft.is_file() || ft.is_fifo() || m.nlink() > 1 || !lock_nb(&file) {
        return Ok(None);
    }
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let data = data_end(&file, size).map_err(|e| Error::io(path, e))?;
    if data >= below {
        return Ok(None);
    }
    if data < size {
        // A zero tail left by a writer that died: not data, cut before the torn-tail check.
        file.set_len(data).map_err(|e| Error::io(path, e))?;
    }
    let good = cut_torn_tail(events, path, &file, day, data)?;
    Ok(Some((file, good)))
}

/// If the file does not end with `\n`, move the bytes after the last `\n` to quarantine and
/// truncate. Returns the new size.
fn cut_torn_tail(events: &Path, path: &Path, file: &File, day: &str, size: u64) -> Result<u64> {
    if size == 0 {
        return Ok(0);
    }
    let mut f = file;
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(size - 1))
        .map_err(|e| Error::io(path, e))?;
    f.read_exact(&mut last).map_err(|e| Error::io(path, e))?;
    if last[0] == b'\n' {
        return Ok(size);
    }
    // Scan backwards in chunks for the last newline.
    let mut end = size;
    let mut keep = 0u64;
    let mut chunk = vec![0u8; 1 << 16];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(path, e))?;
        f.read_exact(buf).map_err(|e| Error::io(path, e))?;
        if let Some(i) = memchr::memrchr(b'\n', buf) {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    let mut torn = Vec::with_capacity((size - keep) as usize);
    f.seek(SeekFrom::Start(keep))
        .map_err(|e| Error::io(path, e))?;
    f.take(size - keep)
        .read_to_end(&mut torn)
        .map_err(|e| Error::io(path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    quarantine(
        events,
        &format!("day={day}/{name}"),
        keep,
        &torn,
        "torn tail: bytes after the last newline, cut before adopting the part",
    )?;
    file.set_len(keep).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(keep)
}

/// Save cut bytes under `events/_quarantine/` with a reason file; both are fsynced.
pub fn quarantine(
    events: &Path,
    rel: &str,
    offset: u64,
    bytes: &[u8],
    reason: &str,
) -> Result<PathBuf> {
    let qdir = events.join(QUARANTINE_DIR);
    ensure_dir(&qdir)?;
    let stem = format!("{}@{offset}.{}", rel.replace('/', "__"), clock::now_us());
    let data_path = qdir.join(format!("{stem}.bin"));
    let reason_path = qdir.join(format!("{stem}.reason.json"));
    let mut reason_json = Vec::new();
    reason_json.extend_from_slice(b"{\"file\":");
    super::json::write_str(&mut reason_json, rel);
    reason_json.extend_from_slice(b",\"offset\":");
    reason_json.extend_from_slice(offset.to_string().as_bytes());
    reason_json.extend_from_slice(b",\"bytes\":");
    reason_json.extend_from_slice(bytes.len().to_string().as_bytes());
    reason_json.extend_from_slice(b",\"reason\":");
    super::json::write_str(&mut reason_json, reason);
    reason_json.extend_from_slice(b"}\n");
    for (p, content) in [(&data_path, bytes), (&reason_path, &reason_json[..])] {
        let mut f = File::create(p).map_err(|e| Error::io(p, e))?;
        f.write_all(content).map_err(|e| Error::io(p, e))?;
        f.sync_all().map_err(|e| Error::io(p, e))?;
    }
    fsync_dir(&qdir).map_err(|e| Error::io(&qdir, e))?;
    Ok(data_path)
}

#[cfg(test)]
mod tests;
