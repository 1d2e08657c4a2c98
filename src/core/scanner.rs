//! The JSONL scanner: reads a part from a byte offset, splits complete lines, checks I-JSON and
//! crc, extracts the envelope into columns (no per-event objects), and reports bad lines.
//! An unterminated last line is never returned: a writer may still be writing it.

use super::clock;
use super::error::{Error, Result};
use super::ids;
use super::json::{unescape, Checker, Members};
use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A UTF-8 column in Arrow layout: i32 offsets, values, optional validity bitmap.
#[derive(Debug, Default, Clone)]
pub struct StrColumn {
    pub offsets: Vec<i32>,
    pub values: Vec<u8>,
    /// One bit per row, 1 = valid; None when every row is valid.
    pub validity: Option<Vec<u8>>,
    pub len: usize,
}

impl StrColumn {
    fn new() -> Self {
        StrColumn {
            offsets: vec![0],
            ..Default::default()
        }
    }

    fn push(&mut self, s: &[u8]) {
        self.values.extend_from_slice(s);
        self.offsets.push(arrow_offset(self.values.len()));
        if let Some(v) = &mut self.validity {
            set_bit(v, self.len, true);
        }
        self.len += 1;
    }

    fn push_null(&mut self) {
        let v = self.validity.get_or_insert_with(|| {
            let mut bits = Vec::new();
            for i in 0..self.len {
                set_bit(&mut bits, i, true);
            }
            bits
        });
        set_bit(v, self.len, false);
        self.offsets.push(arrow_offset(self.values.len()));
        self.len += 1;
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if let Some(v) = &self.validity {
            if v[i / 8] & (1 << (i % 8)) == 0 {
                return None;
            }
        }
        Some(&self.values[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }
}

/// The most value bytes one string column of a batch may hold: Arrow `utf8` offsets are i32.
pub const MAX_COLUMN_BYTES: usize = i32::MAX as usize;

/// `scan_buffer` ends a batch before any column would pass `MAX_COLUMN_BYTES`, so this never
/// fails; if it did, a wrapped offset would corrupt the batch silently, so it panics instead.
fn arrow_offset(len: usize) -> i32 {
    i32::try_from(len).expect("string column over 2 GiB: scan_buffer splits batches before")
}

impl Columns {
    /// Whether a line of `n` bytes still fits: each string column takes at most `n` bytes of
    /// it, so it fits when the fullest column has room for `n` more.
    fn has_room(&self, n: usize, limit: usize) -> bool {
        let fullest = [
            &self.event_id,
            &self.event_type,
            &self.run_id,
            &self.writer,
            &self.data,
        ]
        .iter()
        .map(|c| c.values.len())
        .max()
        .unwrap_or(0);
        fullest.saturating_add(n) <= limit
    }
}

fn set_bit(bits: &mut Vec<u8>, i: usize, on: bool) {
    if bits.len() <= i / 8 {
        bits.resize(i / 8 + 1, 0);
    }
    if on {
        bits[i / 8] |= 1 << (i % 8);
    } else {
        bits[i / 8] &= !(1 << (i % 8));
    }
}

/// The envelope of every good event, column by column.
#[derive(Debug, Clone)]
pub struct Columns {
    pub event_id: StrColumn,
    pub event_type: StrColumn,
    pub schema_version: Vec<i64>,
    pub ts_us: Vec<i64>,
    pub run_id: StrColumn,
    pub writer: StrColumn,
    pub seq: Vec<i64>,
    pub data: StrColumn,
    pub offset: Vec<i64>,
    pub line_bytes: Vec<i64>,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            event_id: StrColumn::new(),
            event_type: StrColumn::new(),
            schema_version: Vec::new(),
            ts_us: Vec::new(),
            run_id: StrColumn::new(),
            writer: StrColumn::new(),
            seq: Vec::new(),
            data: StrColumn::new(),
            offset: Vec::new(),
            line_bytes: Vec::new(),
        }
    }
}

impl Columns {
    pub fn len(&self) -> usize {
        self.offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offset.is_empty()
    }
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
    Ok(f)
}

/// Scan one part file from `start`.
pub fn scan_file(path: &Path, start: u64, opts: ScanOptions) -> Result<ScanResult> {
    let mut f = open_regular(path)?;
    let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
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
    let mut want = (size - start).min(budget.max(1 << 16));
    let mut buf = Vec::new();
    loop {
        // Into spare capacity: no zero-filling of a buffer the read overwrites anyway.
        buf.clear();
        buf.reserve_exact(want as usize);
        f.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(path, e))?;
        let got = read_full(&mut f, &mut buf, want).map_err(|e| Error::io(path, e))?;
        // A line longer than the budget: read further until it ends or the file does.
        if memchr::memchr(b'\n', &buf).is_none() && start + (got as u64) < size {
            want = (want * 2).min(size - start);
            continue;
        }
        break;
    }
    let consumed = scan_buffer(&buf, start, opts, &mut res.columns, &mut res.bad);
    res.end_offset = start + consumed as u64;
    res.pending_bytes = size - res.end_offset;
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
    scan_buffer_upto(buf, base, opts, cols, bad, MAX_COLUMN_BYTES)
}

fn scan_buffer_upto(
    buf: &[u8],
    base: u64,
    opts: ScanOptions,
    cols: &mut Columns,
    bad: &mut Vec<BadLine>,
    column_limit: usize,
) -> usize {
    let mut pos = 0;
    let mut sc = Scratch::default();
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
        let key = json_string(&line[k.start..k.end]).unwrap_or_default();
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

fn json_int(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.parse().ok()
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
    if std::str::from_utf8(line).is_err() {
        return Err("not valid UTF-8".into());
    }
    Checker::object_members_into(line, &mut sc.members)
        .map_err(|e| format!("invalid JSON: {e}"))?;
    let members = &sc.members;
    check_envelope(line, members)?;
    let get = |j: usize| &line[members[j].1.start..members[j].1.end];
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
        }
        None if opts.strict => return Err("missing crc (strict mode)".into()),
        None => {}
    }
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
    cols.event_id.push(&event_id);
    cols.event_type.push(&event_type);
    cols.schema_version.push(version);
    cols.ts_us.push(ts);
    match run_id {
        Some(r) => cols.run_id.push(&r),
        None => cols.run_id.push_null(),
    }
    cols.writer.push(&writer);
    cols.seq.push(seq);
    cols.data.push(data);
    cols.offset.push(off as i64);
    cols.line_bytes.push(line.len() as i64 + 1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_line(seq: u64) -> Vec<u8> {
        let mut l = format!(
            "{{\"event_id\":\"0190c1f0-0000-7000-8000-00000000000{seq}\",\"event_type\":\"run.heartbeat\",\"schema_version\":1,\"ts\":\"2026-01-02T03:04:05.000006Z\",\"run_id\":\"r\",\"writer\":\"w\",\"seq\":{seq},\"data\":{{}}"
        )
        .into_bytes();
        let crc = crc32c::crc32c(&l);
        l.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
        l
    }

    fn scan(buf: &[u8], strict: bool) -> (Columns, Vec<BadLine>, usize) {
        let mut c = Columns::default();
        let mut b = Vec::new();
        let n = scan_buffer(
            buf,
            0,
            ScanOptions {
                strict,
                ..ScanOptions::default()
            },
            &mut c,
            &mut b,
        );
        (c, b, n)
    }

    #[test]
    fn good_bad_torn_and_glued() {
        let mut buf = good_line(1);
        let l2 = good_line(2);
        buf.extend_from_slice(&l2[..40]); // torn, then glued to the next event
        buf.extend_from_slice(&good_line(3));
        let mut flipped = good_line(4);
        flipped[60] ^= 1;
        buf.extend_from_slice(&flipped);
        // A third-party line: every envelope key but no crc (the writer may be any tool).
        buf.extend_from_slice(b"{\"event_id\":\"9f1c2d3e-4b5a-4c6d-8e7f-0123456789ab\",\"event_type\":\"t\",\"schema_version\":1,\"ts\":\"2026-01-02T00:00:00Z\",\"run_id\":null,\"writer\":\"\",\"seq\":1,\"data\":{}}\n");
        let tail = good_line(5);
        buf.extend_from_slice(&tail[..tail.len() - 1]); // unterminated
        let (c, bad, n) = scan(&buf, false);
        assert_eq!(c.seq, vec![1, 3, 1]);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].reason.contains("torn prefix"));
        assert!(bad[1].reason.contains("not a v1 envelope"), "{bad:?}");
        assert_eq!(n, buf.len() - (tail.len() - 1));
        assert_eq!(
            c.ts_us[0],
            clock::parse_ts(b"2026-01-02T03:04:05.000006Z").unwrap()
        );
        assert_eq!(c.run_id.get(2), None);
        let (c, bad, _) = scan(&buf, true);
        assert_eq!(c.len(), 2);
        assert_eq!(bad.len(), 3);
    }

    /// One flipped bit in a key must not switch the crc off: the line is no longer v1.
    #[test]
    fn damaged_or_extra_keys_make_a_bad_line() {
        let good = good_line(1);
        let text = String::from_utf8(good.clone()).unwrap();
        let cases: Vec<(String, &str)> = vec![
            (text.replace("\"crc\"", "\"Crc\""), "key 9 is \"Crc\""),
            (text.replace("\"crc\"", "\"src\""), "key 9 is \"src\""),
            (text.replace("\"crc\"", "\"crk\""), "key 9 is \"crk\""),
            (text.replace("\"seq\"", "\"sep\""), "key 7 is \"sep\""),
            (
                text.replace("\"writer\":\"w\",", ""),
                "key 6 is \"seq\", expected \"writer\"",
            ),
            (
                text.replace(",\"data\":{}", ",\"data\":{},\"extra\":1"),
                "key 9 is \"extra\"",
            ),
            (
                text.replace("}\n", ",\"more\":1}\n"),
                "key \"more\" after crc",
            ),
            (
                text.replace(
                    "\"event_type\":\"run.heartbeat\",\"schema_version\":1,",
                    "\"schema_version\":1,\"event_type\":\"run.heartbeat\",",
                ),
                "key 2 is \"schema_version\"",
            ),
            (
                format!("{}}}\n", &text[..text.find(",\"crc\"").unwrap()])
                    .replace("0190c1f0-0000-7000-8000-000000000001", "not-a-uuid"),
                "event_id is not a UUID",
            ),
        ];
        for (line, want) in cases {
            let (c, bad, _) = scan(line.as_bytes(), false);
            assert_eq!(c.len(), 0, "{line}");
            assert_eq!(bad.len(), 1, "{line}");
            assert!(bad[0].reason.contains(want), "{want}: {bad:?}");
        }
        // Only `data` and the crc-less end: a truncated envelope is not v1 either.
        let short =
            b"{\"event_id\":\"0190c1f0-0000-7000-8000-000000000001\",\"event_type\":\"t\"}\n";
        let (_, bad, _) = scan(short, false);
        assert!(
            bad[0].reason.contains("missing \"schema_version\""),
            "{bad:?}"
        );
    }

    #[test]
    fn batches_end_before_a_string_column_passes_the_arrow_limit() {
        let lines: Vec<Vec<u8>> = (1..=5).map(good_line).collect();
        let all = lines.concat();
        // A line fits while the fullest column (event_id, 36 bytes a line) has room for the
        // whole line: 36 + len fits, 72 + len does not, so batches of two lines.
        let limit = lines[0].len() + 40;
        let (mut pos, mut seqs, mut batches) = (0, Vec::new(), 0);
        while pos < all.len() {
            let mut c = Columns::default();
            let mut b = Vec::new();
            let n = scan_buffer_upto(
                &all[pos..],
                pos as u64,
                ScanOptions::default(),
                &mut c,
                &mut b,
                limit,
            );
            assert!(n > 0 && b.is_empty(), "{b:?}");
            assert!(c.event_id.values.len() <= limit && c.data.values.len() <= limit);
            assert_eq!(c.offset[0], pos as i64);
            seqs.extend(c.seq);
            pos += n;
            batches += 1;
        }
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(batches, 3, "2 + 2 + 1 lines");
        // A single line over the limit cannot fit any batch: it is bad, not an endless loop.
        let mut c = Columns::default();
        let mut b = Vec::new();
        let n = scan_buffer_upto(&all, 0, ScanOptions::default(), &mut c, &mut b, 10);
        assert_eq!(n, all.len());
        assert_eq!(b.len(), 5);
        assert!(c.is_empty());
    }

    #[test]
    fn oversized_lines_are_bad() {
        let mut big = b"{\"x\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', 100));
        big.extend_from_slice(b"\"}\n");
        let mut c = Columns::default();
        let mut b = Vec::new();
        let opts = ScanOptions {
            max_line_bytes: 50,
            ..ScanOptions::default()
        };
        scan_buffer(&big, 0, opts, &mut c, &mut b);
        assert!(b[0].reason.contains("exceeds 50 bytes"), "{b:?}");
    }
}
