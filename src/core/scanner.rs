//! The JSONL scanner: reads a part from a byte offset, splits complete lines, checks I-JSON and
//! crc, extracts the envelope into columns (no per-event objects), and reports bad lines.
//! An unterminated last line is never returned: a writer may still be writing it.

use super::clock;
use super::error::{Error, Result};
use super::ids;
use super::json::{unescape, Checker, Members, Nested};
use super::rules;
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

mod columns;
mod fast;
mod shape;
pub use columns::{Columns, ListColumn, StrColumn, MAX_COLUMN_BYTES};

/// A trial's shape and typed values: `events.shape`, `tint`, `tnum` (None, None when a number
/// did not parse as its kind).
pub type TrialShape = (String, Option<Vec<i64>>, Option<Vec<f64>>);

/// The shape and values of a checked `trial.recorded` event's `data` as the scanner stores
/// them (scanner/shape.rs); for rows that reach the index another way (an archived day).
pub fn trial_shape_of(data: &[u8]) -> TrialShape {
    let mut sc = shape::ShapeScratch::default();
    let text = String::from_utf8_lossy(shape::trial_shape(data, &mut sc)).into_owned();
    if sc.bad {
        return (text, None, None);
    }
    (text, Some(sc.ints), Some(sc.nums))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub offset: u64,
    pub len: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Refuse lines without `crc` (third-party lines are accepted otherwise).
    pub strict: bool,
    /// Read at most this many bytes per call (whole lines; a longer single line is still read).
    pub max_bytes: u64,
    /// A line longer than this (newline included) is bad: no writer may produce it.
    pub max_line_bytes: u64,
}

/// The writer's default `max_event_bytes`.
pub const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            strict: false,
            max_bytes: 0,
            max_line_bytes: MAX_LINE_BYTES,
        }
    }
}

#[derive(Debug, Default)]
pub struct ScanResult {
    pub columns: Columns,
    pub bad: Vec<BadLine>,
    /// Offset just past the last complete line examined.
    pub end_offset: u64,
    /// Bytes after `end_offset` (an unterminated tail, or more to read next call).
    pub pending_bytes: u64,
    pub file_size: u64,
}

/// Open a part for reading, refusing symlinks, FIFOs and other non-regular files.
fn open_regular(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let m = f.metadata().map_err(|e| Error::io(path, e))?;
    if !m.file_type().is_file() {
        return Err(Error::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    if std::os::unix::fs::MetadataExt::nlink(&m) > 1 {
        // A hard link to a file outside the root: never read as the log (like a symlink).
        return Err(Error::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "has other hard links"),
        ));
    }
    Ok(f)
}

/// Scan one part file from `start`.
pub fn scan_file(path: &Path, start: u64, opts: ScanOptions) -> Result<ScanResult> {
    scan_file_into(path, start, opts, &mut Vec::new())
}

/// `scan_file`, reading into `buf` (cleared first; its capacity is kept for the caller's next
/// call): a scan of many chunks reuses one read buffer per thread, where a fresh 32 MB buffer
/// per chunk made the kernel fault in and zero every page of it again.
pub fn scan_file_into(
    path: &Path,
    start: u64,
    opts: ScanOptions,
    buf: &mut Vec<u8>,
) -> Result<ScanResult> {
    buf.clear();
    let mut f = open_regular(path)?;
    let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
    // A trailing run of NUL bytes is a writer's preallocated space: not yet written.
    let size = super::appender::data_end(&f, size).map_err(|e| Error::io(path, e))?;
    let mut res = ScanResult {
        end_offset: start,
        file_size: size,
        ..Default::default()
    };
    if start >= size {
        return Ok(res);
    }
    let budget = if opts.max_bytes == 0 {
        u64::MAX
    } else {
        opts.max_bytes
    };
    let want = (size - start).min(budget.max(1 << 16));
    // No line longer than max_line_bytes can be valid, so no more than that (+1, to see that it
    // is longer) is ever held to find a line's end: memory stays bounded whatever the file.
    let cap = opts.max_line_bytes.saturating_add(1).max(1 << 16);
    f.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(path, e))?;
    // Into spare capacity: no zero-filling of a buffer the read overwrites anyway.
    buf.reserve_exact(want.min(cap) as usize);
    read_full(&mut f, buf, want.min(cap)).map_err(|e| Error::io(path, e))?;
    loop {
        let held = buf.len() as u64;
        if memchr::memchr(b'\n', buf).is_some() {
            if held < want {
                // The budget allows more than the first read: the rest of it, in one go.
                buf.reserve_exact((want - held) as usize);
                read_full(&mut f, buf, want - held).map_err(|e| Error::io(path, e))?;
            }
            break;
        }
        if start + held >= size {
            break; // an unterminated tail: a writer may still be writing it
        }
        if held >= cap {
            // Longer than any valid line and no end in sight: skip to its end without
            // holding it, and report it as one bad line.
            return skip_overlong(&mut f, path, start, start + held, size, opts, res);
        }
        // A line longer than the budget: read further (at most up to `cap`).
        let more = held.min(cap - held).min(size - start - held).max(1);
        buf.reserve_exact(more as usize);
        read_full(&mut f, buf, more).map_err(|e| Error::io(path, e))?;
        if buf.len() as u64 == held {
            break; // the file shrank under us
        }
    }
    let consumed = scan_buffer(buf, start, opts, &mut res.columns, &mut res.bad);
    res.end_offset = start + consumed as u64;
    res.pending_bytes = size - res.end_offset;
    Ok(res)
}

/// The line at `start` has no newline in its first `max_line_bytes` + 1 bytes: find its end
/// reading fixed-size blocks from `from`. Found: one bad line up to it, scanning resumes after.
/// Not found: an unterminated tail, left pending (nothing returned, nothing held).
fn skip_overlong(
    f: &mut File,
    path: &Path,
    start: u64,
    from: u64,
    size: u64,
    opts: ScanOptions,
    mut res: ScanResult,
) -> Result<ScanResult> {
    let mut block = vec![0u8; 1 << 20];
    let mut pos = from;
    f.seek(SeekFrom::Start(pos))
        .map_err(|e| Error::io(path, e))?;
    while pos < size {
        let n = f.read(&mut block).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        if let Some(k) = memchr::memchr(b'\n', &block[..n]) {
            let len = pos + k as u64 + 1 - start;
            res.bad.push(BadLine {
                offset: start,
                len,
                reason: format!("line of {len} bytes exceeds {} bytes", opts.max_line_bytes),
            });
            res.end_offset = start + len;
            res.pending_bytes = size - res.end_offset;
            return Ok(res);
        }
        pos += n as u64;
    }
    res.end_offset = start;
    res.pending_bytes = size - start;
    Ok(res)
}

/// Append up to `want` bytes from `f` to `buf`; returns how many were read.
fn read_full(f: &mut File, buf: &mut Vec<u8>, want: u64) -> io::Result<usize> {
    f.take(want).read_to_end(buf)
}

/// Scan complete lines of `buf` (which starts at file offset `base`). Returns bytes consumed
/// (up to and including the last `\n` taken): a batch ends early, before a line that would
/// take a string column past `MAX_COLUMN_BYTES`; the caller scans the rest in the next call.
pub fn scan_buffer(
    buf: &[u8],
    base: u64,
    opts: ScanOptions,
    cols: &mut Columns,
    bad: &mut Vec<BadLine>,
) -> usize {
    scan_buffer_upto(buf, base, opts, cols, bad, MAX_COLUMN_BYTES, false)
}

/// `scan_buffer` with a column limit; `general_only` (tests: the fast path's oracle) sends every
/// line down the general path.
fn scan_buffer_upto(
    buf: &[u8],
    base: u64,
    opts: ScanOptions,
    cols: &mut Columns,
    bad: &mut Vec<BadLine>,
    column_limit: usize,
    general_only: bool,
) -> usize {
    let mut sc = Scratch {
        general_only,
        ..Scratch::default()
    };
    let mut pos = 0;
    cols.data.values.reserve(buf.len().min(column_limit));
    while let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) {
        let line = &buf[pos..pos + nl];
        let off = base + pos as u64;
        if nl <= column_limit && !cols.has_room(nl, column_limit) {
            break; // the batch is full: the next call starts a new one here
        }
        if nl as u64 + 1 > opts.max_line_bytes || nl > column_limit {
            bad.push(BadLine {
                offset: off,
                len: nl as u64 + 1,
                reason: format!(
                    "line of {} bytes exceeds {} bytes",
                    nl + 1,
                    opts.max_line_bytes
                ),
            });
        } else if let Err(reason) = take_line(line, off, opts, cols, &mut sc) {
            // A valid event glued behind a torn prefix (a writer died mid-line and another
            // appended after it): recover the event, report the prefix.
            match glued_start(line)
                .filter(|&k| take_line(&line[k..], off + k as u64, opts, cols, &mut sc).is_ok())
            {
                Some(k) => bad.push(BadLine {
                    offset: off,
                    len: k as u64,
                    reason: format!("torn prefix before a valid event ({reason})"),
                }),
                None => bad.push(BadLine {
                    offset: off,
                    len: nl as u64 + 1,
                    reason,
                }),
            }
        }
        pos += nl + 1;
    }
    pos
}

fn glued_start(line: &[u8]) -> Option<usize> {
    let pat = b"{\"event_id\":";
    memchr::memmem::rfind(line, pat).filter(|&k| k > 0)
}

/// Per-scan buffers reused from line to line.
#[derive(Default)]
struct Scratch {
    members: Members,
    /// The fast path's record of `data`'s members (and theirs).
    nested: Vec<Nested>,
    shape: shape::ShapeScratch,
    /// Tests: every line takes the general path (the fast path's oracle).
    general_only: bool,
}

/// The v1 envelope keys, in the only order a line may have them; `crc` (last) is optional.
const ENVELOPE: [&[u8]; 9] = [
    b"event_id",
    b"event_type",
    b"schema_version",
    b"ts",
    b"run_id",
    b"writer",
    b"seq",
    b"data",
    b"crc",
];

/// A line is v1 only with exactly the envelope keys in order (`crc` last, optional): any other
/// top-level key, a missing one or a damaged `"Crc":` makes it a bad line, so one flipped bit
/// cannot switch the checksum off.
fn check_envelope(line: &[u8], members: &Members) -> std::result::Result<(), String> {
    for (i, (k, _)) in members.iter().enumerate() {
        let lit = &line[k.start..k.end];
        // The common case, a key written as the writer writes it: compared as it stands.
        if ENVELOPE
            .get(i)
            .is_some_and(|want| lit.len() == want.len() + 2 && &lit[1..lit.len() - 1] == *want)
        {
            continue;
        }
        let key = json_string(lit).unwrap_or_default();
        if ENVELOPE.get(i) != Some(&&key[..]) {
            let shown: String = String::from_utf8_lossy(&key).chars().take(40).collect();
            return Err(match ENVELOPE.get(i) {
                Some(want) => format!(
                    "not a v1 envelope: key {} is {shown:?}, expected {:?}",
                    i + 1,
                    String::from_utf8_lossy(want)
                ),
                None => format!("not a v1 envelope: key {shown:?} after crc"),
            });
        }
    }
    if members.len() < 8 {
        let want = String::from_utf8_lossy(ENVELOPE[members.len()]);
        return Err(format!("not a v1 envelope: missing {want:?}"));
    }
    Ok(())
}

/// A JSON string literal's text: borrowed when it has no escape (the line is valid UTF-8).
fn json_string(v: &[u8]) -> Option<Cow<'_, [u8]>> {
    if v.first() != Some(&b'"') {
        return None;
    }
    let inner = &v[1..v.len() - 1];
    Some(if memchr::memchr(b'\\', inner).is_none() {
        Cow::Borrowed(inner)
    } else {
        Cow::Owned(unescape(v).into_bytes())
    })
}

/// A JSON integer's value (`-`? digits), None beyond int64 (or for anything else): summed as
/// a negative number, whose range holds `i64::MIN`.
fn json_int(v: &[u8]) -> Option<i64> {
    let (neg, digits) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(c - b'0'))?;
    }
    if neg {
        Some(n)
    } else {
        n.checked_neg()
    }
}

fn hex8(s: &[u8]) -> Option<u32> {
    if s.len() != 8 {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | d as u32)
    })
}

/// The verdict on one line (without its `\n`) by the rules the scanner applies to every line
/// of a part: size, UTF-8, I-JSON, the v1 envelope, crc, run id and artifact paths. `schema
/// validate` checks the lines of any file with it, so it and `verify`/`rebuild` cannot disagree.
pub fn check_line(line: &[u8], opts: ScanOptions) -> std::result::Result<(), String> {
    if line.len() as u64 + 1 > opts.max_line_bytes {
        return Err(format!(
            "line of {} bytes exceeds {} bytes",
            line.len() + 1,
            opts.max_line_bytes
        ));
    }
    let mut cols = Columns::default();
    take_line(line, 0, opts, &mut cols, &mut Scratch::default())
}

/// The `crc` member, when present: introduced by `,"crc":` right after `data`, 8 lowercase hex
/// digits, the CRC-32C of every byte before that comma. Absent: bad only in strict mode.
fn check_crc(line: &[u8], members: &Members, strict: bool) -> std::result::Result<(), String> {
    match members.get(8) {
        Some(&(key, v)) => {
            if line[key.start - 1] != b',' {
                return Err("crc does not follow data as `,\"crc\":`".into());
            }
            let v = &line[v.start..v.end];
            let want = json_string(v).and_then(|s| hex8(&s));
            let Some(want) = want else {
                return Err("crc is not 8 lowercase hex digits".into());
            };
            let got = crc32c::crc32c(&line[..key.start - 1]);
            if got != want {
                return Err(format!(
                    "crc mismatch: line has {want:08x}, bytes give {got:08x}"
                ));
            }
            Ok(())
        }
        None if strict => Err("missing crc (strict mode)".into()),
        None => Ok(()),
    }
}

/// The envelope of a good line (the strings unescaped), `data` as written.
struct Envelope<'a> {
    event_id: Cow<'a, [u8]>,
    event_type: Cow<'a, [u8]>,
    version: i64,
    ts: i64,
    run_id: Option<Cow<'a, [u8]>>,
    writer: Cow<'a, [u8]>,
    seq: i64,
    data: &'a [u8],
}

/// The general path: any I-JSON line, checked member by member (the verdict on every line the
/// fast path does not take).
fn envelope<'a>(
    line: &'a [u8],
    opts: ScanOptions,
    members: &mut Members,
) -> std::result::Result<Envelope<'a>, String> {
    Checker::object_members_into(line, members).map_err(|e| format!("invalid JSON: {e}"))?;
    check_envelope(line, members)?;
    check_crc(line, members, opts.strict)?;
    let get = |j: usize| &line[members[j].1.start..members[j].1.end];
    let event_id = json_string(get(0))
        .filter(|s| ids::is_uuid(s))
        .ok_or("event_id is not a UUID string")?;
    let event_type = json_string(get(1))
        .filter(|s| !s.is_empty())
        .ok_or("event_type is not a non-empty string")?;
    // The index stores it as INTEGER: a larger value would fail the whole round's insert.
    let version = json_int(get(2))
        .filter(|&n| (1..=i32::MAX as i64).contains(&n))
        .ok_or("schema_version is not an integer in 1..=2147483647")?;
    let ts = json_string(get(3))
        .and_then(|s| clock::parse_ts(&s))
        .ok_or("ts is not an RFC 3339 timestamp")?;
    let run_id = match get(4) {
        b"null" => None,
        v => Some(json_string(v).ok_or("run_id is neither a string nor null")?),
    };
    let writer = json_string(get(5)).ok_or("writer is not a string")?;
    let seq = json_int(get(6))
        .filter(|&n| n >= 1)
        .ok_or("seq is not an integer >= 1")?;
    let data = Some(get(7))
        .filter(|v| v.first() == Some(&b'{'))
        .ok_or("data is not an object")?;
    Ok(Envelope {
        event_id,
        event_type,
        version,
        ts,
        run_id,
        writer,
        seq,
        data,
    })
}

/// Check one line and append its envelope to the columns; Err(reason) if it is bad.
fn take_line(
    line: &[u8],
    off: u64,
    opts: ScanOptions,
    cols: &mut Columns,
    sc: &mut Scratch,
) -> std::result::Result<(), String> {
    if line.is_empty() {
        return Err("empty line".into());
    }
    // Most lines are ASCII: checked a word at a time, cheaper than UTF-8 validation.
    if !line.is_ascii() && std::str::from_utf8(line).is_err() {
        return Err("not valid UTF-8".into());
    }
    let fast = if sc.general_only {
        None
    } else {
        fast::envelope(line, opts.strict, &mut sc.nested)
    };
    let took_fast = fast.is_some();
    #[cfg(test)]
    FAST_LINES.with(|n| n.set(n.get() + usize::from(took_fast)));
    let env = match fast {
        Some(env) => env,
        None => envelope(line, opts, &mut sc.members)?,
    };
    // What the writer refuses is bad on the read side too (a hand-written line): run ids end up
    // in paths, artifact paths must stay inside the root.
    if let Some(r) = env.run_id.as_deref().filter(|r| !rules::valid_run_id(r)) {
        rules::check_run_id(&String::from_utf8_lossy(r)).map_err(|e| e.to_string())?;
    }
    let et = std::str::from_utf8(&env.event_type).unwrap_or("");
    rules::check_artifact_paths(et, env.data).map_err(|e| e.to_string())?;
    cols.event_id.push(&env.event_id);
    cols.event_type.push(&env.event_type);
    cols.schema_version.push(env.version);
    cols.ts_us.push(env.ts);
    match &env.run_id {
        Some(r) => cols.run_id.push(r),
        None => cols.run_id.push_null(),
    }
    cols.writer.push(&env.writer);
    cols.seq.push(env.seq);
    cols.data.push(env.data);
    if et == shape::SHAPED_TYPE {
        cols.shape.push(if took_fast {
            shape::trial_shape_recorded(line, &sc.nested, &mut sc.shape)
        } else {
            shape::trial_shape(env.data, &mut sc.shape)
        });
        if sc.shape.bad {
            cols.tint.push_null();
            cols.tnum.push_null();
        } else {
            cols.tint.push(&sc.shape.ints);
            cols.tnum.push(&sc.shape.nums);
        }
    } else {
        cols.shape.push_null();
        cols.tint.push_null();
        cols.tnum.push_null();
    }
    cols.offset.push(off as i64);
    cols.line_bytes.push(line.len() as i64 + 1);
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Tests: how many lines this thread's scans took down the fast path.
    pub(crate) static FAST_LINES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod fast_tests;
#[cfg(test)]
mod tests;
