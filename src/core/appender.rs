//! Part files on disk: day directories, part allocation with O_CREAT|O_EXCL, adoption of a
//! non-full part under an exclusive advisory lock (after cutting a torn tail to quarantine),
//! single-write appends, fdatasync, and directory fsyncs after every create.

use super::clock;
use super::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub const QUARANTINE_DIR: &str = "_quarantine";
const ABANDONED_SUFFIX: &str = ".abandoned";

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
}

impl Part {
    fn new(path: PathBuf, rel: String, day: &str, file: File) -> Self {
        Part {
            path,
            rel: rel.into(),
            day: day.to_string(),
            file,
            abandoned: AtomicBool::new(false),
        }
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

    /// Append whole lines with exactly one write(); a short write is an error, and the part is
    /// cut back to where it was so no partial line stays behind.
    pub fn append(&self, buf: &[u8], at: u64) -> Result<()> {
        // SAFETY: the fd is open for as long as `self.file` lives, and `buf` is a valid slice
        // of `buf.len()` readable bytes for the duration of the call.
        let n = unsafe { libc::write(self.file.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(Error::io(&self.path, io::Error::last_os_error()));
        }
        if n as usize != buf.len() {
            let _ = self.file.set_len(at);
            return Err(Error::io(
                &self.path,
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write: {n} of {} bytes", buf.len()),
                ),
            ));
        }
        Ok(())
    }

    pub fn datasync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
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
            return Ok((
                Part::new(path, format!("{rel_dir}/{name}"), day, file),
                size,
            ));
        }
    }
    let mut n = numbers.iter().chain(&archived).max().copied().unwrap_or(0) + 1;
    loop {
        let name = format!("part-{n:06}.jsonl");
        let path = dir.join(&name);
        let opened = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&path);
        match opened {
            Ok(file) => {
                fsync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
                // Someone may adopt an empty part between create and lock: then take the next.
                if lock_nb(&file) {
                    return Ok((Part::new(path, format!("{rel_dir}/{name}"), day, file), 0));
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
    if !meta.file_type().is_file() || meta.len() >= below || meta.nlink() > 1 {
        return Ok(None);
    }
    let file = match OpenOptions::new()
        .read(true)
        .append(true)
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
    if size >= below {
        return Ok(None);
    }
    let good = cut_torn_tail(events, path, &file, day, size)?;
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
