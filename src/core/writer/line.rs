//! One line of the log as the writer builds it (docs/format.md): the envelope in its fixed
//! order, then the CRC-32C of everything before `,"crc":`.

use super::*;

/// `{"event_id":…,"event_type":…,"schema_version":…,"ts":…,"run_id":…,"writer":…,"seq":…,
/// "data":…,"crc":"xxxxxxxx"}\n` with the crc over everything before `,"crc":`.
pub(super) fn build_line(
    out: &mut Vec<u8>,
    st: &mut State,
    head: &EventHead<'_>,
    ts: i64,
    ts_text: &[u8; 27],
    seq: u64,
    data: &[u8],
) {
    out.extend_from_slice(b"{\"event_id\":\"");
    match head.event_id {
        Some(id) => out.extend_from_slice(id.as_bytes()),
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
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(b",\"crc\":\"");
    out.extend_from_slice(&hex8(crc));
    out.extend_from_slice(b"\"}\n");
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
