//! UUIDv7 event ids and writer ids, from a per-writer PRNG seeded by the OS.

use std::fs::File;
use std::io::Read;

/// wyrand: tiny and fast; seeded from /dev/urandom so writers never collide in practice. It also
/// keeps the last UUIDv7 millisecond and 12-bit counter of the writer it serves (`uuid7`).
pub struct Rng {
    state: u64,
    last_ms: u64,
    count: u16,
}

impl Rng {
    pub fn from_os() -> Self {
        let mut seed = [0u8; 8];
        if File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .is_err()
        {
            // Fall back to time and address entropy; ids stay unique by their timestamp part.
            let t = super::clock::now_us() as u64;
            seed = (t ^ (&seed as *const _ as u64).rotate_left(32)).to_le_bytes();
        }
        Rng {
            state: u64::from_le_bytes(seed),
            last_ms: u64::MAX,
            count: 0,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.state as u128).wrapping_mul((self.state ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }
}

/// Lowercase hex digits: the one table for every hex the log writes (ids, crc, `\u00XX`).
pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// Format 16 bytes as a canonical lowercase UUID string (36 bytes).
pub fn format_uuid(b: &[u8; 16]) -> [u8; 36] {
    let mut out = [b'-'; 36];
    let mut j = 0;
    for (i, &x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            j += 1;
        }
        out[j] = HEX[(x >> 4) as usize];
        out[j + 1] = HEX[(x & 15) as usize];
        j += 2;
    }
    out
}

/// UUIDv7 bytes from a millisecond timestamp and 74 bits of randomness.
pub fn uuid7_bytes(unix_ms: u64, rand_a: u16, rand_b: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    let a = (rand_a & 0x0fff) | 0x7000;
    b[6..8].copy_from_slice(&a.to_be_bytes());
    let rb = (rand_b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    b[8..].copy_from_slice(&rb.to_be_bytes());
    b
}

/// A UUIDv7 for `unix_ms`. Within one millisecond the ids of one `Rng` (one writer) increase:
/// its 12-bit `rand_a` is a counter started at a random value below 2048 (RFC 9562, 6.2,
/// method 1), so ids of events with the same timestamp sort in the order they were made (at
/// least 2048 per millisecond; after that, a fresh random start). `rand_b` stays random.
pub fn uuid7(unix_ms: u64, rng: &mut Rng) -> [u8; 36] {
    let a = if unix_ms == rng.last_ms && rng.count < 0x0fff {
        rng.count + 1
    } else {
        (rng.next_u64() >> 53) as u16 // 11 random bits
    };
    (rng.last_ms, rng.count) = (unix_ms, a);
    format_uuid(&uuid7_bytes(unix_ms, a, rng.next_u64()))
}

/// The one rule for an `event_id`, for writers, the scanner and `schema validate`: a UUID in
/// its 36-character text form (8-4-4-4-12 hex digits, either case, any version: writers make
/// lowercase UUIDv7, third-party tools often uuid4).
pub fn is_uuid(s: &[u8]) -> bool {
    // The dashes, then the five runs of hex digits between them (a table lookup per digit).
    s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| s[i] == b'-')
        && [0..8, 9..13, 14..18, 19..23, 24..36]
            .into_iter()
            .all(|r| s[r].iter().all(|&c| IS_HEX[c as usize]))
}

/// `IS_HEX[c]`: `c` is an ASCII hex digit, either case.
const IS_HEX: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_hexdigit();
        c += 1;
    }
    t
};

/// A short random id for a writer instance: `w-` + 16 hex digits.
pub fn writer_id(rng: &mut Rng) -> String {
    format!("w-{:016x}", rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid7_layout() {
        let mut rng = Rng::from_os();
        let u = uuid7(0x0123_4567_89ab, &mut rng);
        let s = std::str::from_utf8(&u).unwrap();
        assert_eq!(&s[..13], "01234567-89ab");
        assert_eq!(&s[14..15], "7");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(s.len(), 36);
        assert!(is_uuid(s.as_bytes()));
    }

    #[test]
    fn ids_of_one_millisecond_increase_in_the_order_they_are_made() {
        let mut rng = Rng::from_os();
        let ids: Vec<[u8; 36]> = (0..2048)
            .map(|_| uuid7(1_700_000_000_000, &mut rng))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "not increasing");
        // A new millisecond starts from a random counter again; every id stays a UUIDv7.
        let next = uuid7(1_700_000_000_001, &mut rng);
        assert!(ids[2047] < next && is_uuid(&next) && next[14] == b'7');
        assert!(ids.iter().all(|id| is_uuid(id) && id[14] == b'7'));
    }

    #[test]
    fn is_uuid_wants_the_canonical_layout() {
        assert!(is_uuid(b"0190c1f0-0000-7000-8000-00000000000a"));
        assert!(is_uuid(b"0190C1F0-0000-7000-8000-00000000000A"));
        assert!(!is_uuid("-".repeat(36).as_bytes()));
        assert!(!is_uuid(b"0190c1f0a0000-7000-8000-00000000000a"));
        assert!(!is_uuid(b"0190c1f0-0000-7000-8000-00000000000"));
        assert!(!is_uuid(b"0190c1f0-0000-7000-8000-00000000000g"));
        assert!(is_uuid(b"9f1c2d3e-4b5a-4c6d-8e7f-0123456789ab")); // a third-party uuid4
    }
}
