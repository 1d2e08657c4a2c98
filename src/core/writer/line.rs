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
    out.extend_from_slice(b"\",\"event_type\":");
    json::write_str(out, head.event_type);
    out.extend_from_slice(b",\"schema_version\":");
    json::write_i64(out, head.schema_version as i64);
    out.extend_from_slice(b",\"ts\":\"");
    out.extend_from_slice(ts_text);
    out.extend_from_slice(b"\",\"run_id\":");
    match head.run_id {
        Some(r) => json::write_str(out, r),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"writer\":");
    out.extend_from_slice(&st.writer_json);
    out.extend_from_slice(b",\"seq\":");
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
