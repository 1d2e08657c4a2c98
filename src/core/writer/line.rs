//! One line of the log as the writer builds it (docs/format.md): the envelope in its fixed
//! order, then the CRC-32C of everything before `,"crc":`.

use super::*;

/// `{"event_id":…,"event_type":…,"schema_version":…,"ts":…,"run_id":…,"writer":…,"seq":…,
/// "data":…,"crc":"xxxxxxxx"}\n` with the crc over everything before `,"crc":`; `deferred`
/// (group mode) leaves a generated event id and the crc as zeros for `finish_lines`.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_line(
    out: &mut Vec<u8>,
    st: &mut State,
    head: &EventHead<'_>,
    ts: i64,
    ts_text: &[u8; 27],
    seq: u64,
    data: &[u8],
    deferred: bool,
) {
    out.extend_from_slice(b"{\"event_id\":\"");
    match head.event_id {
        Some(id) => out.extend_from_slice(id.as_bytes()),
        // Group mode: the flusher fills it in (`finish_lines`).
        None if deferred => out.extend_from_slice(&[b'0'; 36]),
        None => out.extend_from_slice(&ids::uuid7((ts.max(0) / 1000) as u64, &mut st.rng)),
    }
    out.extend_from_slice(st.heads.mid(head.event_type, head.schema_version));
    out.extend_from_slice(ts_text);
    out.extend_from_slice(st.heads.tail(head.run_id));
    json::write_i64(out, seq as i64);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data);
    if deferred {
        out.extend_from_slice(b",\"crc\":\"00000000\"}\n");
        return;
    }
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(b",\"crc\":\"");
    out.extend_from_slice(&hex8(crc));
    out.extend_from_slice(b"\"}\n");
}

/// The envelope's text between the event id and the timestamp, and between the timestamp and
/// the seq, as written for the last event type (and version) and the last run id: most emits
/// repeat both, so their envelope is a few copies (the buffers are reused: no allocation).
pub(super) struct Heads {
    /// `writer_id` as a JSON string (quoted, escaped).
    writer_json: Vec<u8>,
    /// `","event_type":…,"schema_version":…,"ts":"` for `mid_type` v`mid_version`.
    mid: Vec<u8>,
    mid_type: String,
    mid_version: u32,
    /// `","run_id":…,"writer":…,"seq":` for `tail_run` (None: null).
    tail: Vec<u8>,
    tail_run: Option<String>,
}

impl Heads {
    pub(super) fn new(writer_id: &str) -> Self {
        let mut writer_json = Vec::with_capacity(writer_id.len() + 2);
        json::write_str(&mut writer_json, writer_id);
        Heads {
            writer_json,
            mid: Vec::new(),
            mid_type: String::new(),
            mid_version: 0,
            tail: Vec::new(),
            tail_run: None,
        }
    }

    fn mid(&mut self, event_type: &str, version: u32) -> &[u8] {
        if self.mid.is_empty() || self.mid_type != event_type || self.mid_version != version {
            self.mid.clear();
            self.mid.extend_from_slice(b"\",\"event_type\":");
            json::write_str(&mut self.mid, event_type);
            self.mid.extend_from_slice(b",\"schema_version\":");
            json::write_i64(&mut self.mid, version as i64);
            self.mid.extend_from_slice(b",\"ts\":\"");
            self.mid_type.clear();
            self.mid_type.push_str(event_type);
            self.mid_version = version;
        }
        &self.mid
    }

    fn tail(&mut self, run_id: Option<&str>) -> &[u8] {
        if self.tail.is_empty() || self.tail_run.as_deref() != run_id {
            self.tail.clear();
            self.tail.extend_from_slice(b"\",\"run_id\":");
            match run_id {
                Some(r) => json::write_str(&mut self.tail, r),
                None => self.tail.extend_from_slice(b"null"),
            }
            self.tail.extend_from_slice(b",\"writer\":");
            self.tail.extend_from_slice(&self.writer_json);
            self.tail.extend_from_slice(b",\"seq\":");
            self.tail_run = run_id.map(str::to_owned);
        }
        &self.tail
    }
}

/// Group mode: a queued line whose event id (when the writer makes it) and crc the flusher
/// fills in before writing, off the emitting thread. `end` is where the line ends in its
/// segment (lines are contiguous); `ts_ms` the UUIDv7's time, `ID_GIVEN` when the head had one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Fixup {
    pub(super) end: usize,
    pub(super) ts_ms: u64,
}

impl Fixup {
    pub(super) fn new(end: usize, ts_ms: u64) -> Self {
        Fixup { end, ts_ms }
    }
}

pub(super) const ID_GIVEN: u64 = u64::MAX;
/// `{"event_id":"` before the id; `,"crc":"xxxxxxxx"}\n` after the bytes the crc covers.
const ID_AT: usize = 13;
const CRC_TAIL: usize = 19;

/// Fill in the event ids and crcs of a segment's lines built with `deferred` (the same bytes
/// `build_line` writes at once in the other modes).
pub(super) fn finish_lines(bytes: &mut [u8], fixups: &[Fixup], rng: &mut ids::Rng) {
    let mut start = 0usize;
    for f in fixups {
        let end = f.end;
        let line = &mut bytes[start..end];
        if f.ts_ms != ID_GIVEN {
            line[ID_AT..ID_AT + 36].copy_from_slice(&ids::uuid7(f.ts_ms, rng));
        }
        let body = line.len() - CRC_TAIL;
        let crc = crc32c::crc32c(&line[..body]);
        line[body + 8..body + 16].copy_from_slice(&hex8(crc));
        start = end;
    }
}

/// `{:08x}` without the formatting machinery (and its allocation).
fn hex8(v: u32) -> [u8; 8] {
    use crate::core::ids::HEX;
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = HEX[((v >> (28 - 4 * i)) & 15) as usize];
    }
    b
}
