//! Time: microseconds since the Unix epoch, RFC 3339 formatting and parsing, UTC day names.

use std::time::{SystemTime, UNIX_EPOCH};

pub const US_PER_DAY: i64 = 86_400_000_000;

pub fn now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// Milliseconds since the epoch from the kernel's coarse clock (a few milliseconds of
/// resolution at a fraction of `now_us`'s cost, about 9 ns against 66 on this project's VM): for
/// checks made at most once a second on a hot path.
pub fn coarse_now_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
        return now_us().div_euclid(1000);
    }
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000 // (time_t and c_long: i64 on 64-bit Linux)
}

/// Days since 1970-01-01 -> (year, month, day). Howard Hinnant's civil_from_days.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) -> days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn put2(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (27 bytes) for years 0..=9999.
pub fn format_ts(us: i64) -> [u8; 27] {
    let days = us.div_euclid(US_PER_DAY);
    let rem = us.rem_euclid(US_PER_DAY);
    let (y, mo, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    let secs = (rem / 1_000_000) as u32;
    let frac = (rem % 1_000_000) as u32;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    put2(&mut b[0..2], y / 100);
    put2(&mut b[2..4], y % 100);
    put2(&mut b[5..7], mo);
    put2(&mut b[8..10], d);
    put2(&mut b[11..13], secs / 3600);
    put2(&mut b[14..16], secs / 60 % 60);
    put2(&mut b[17..19], secs % 60);
    put2(&mut b[20..22], frac / 10_000);
    put2(&mut b[22..24], frac / 100 % 100);
    put2(&mut b[24..26], frac % 100);
    b
}

/// `format_ts` keeping the text of the last second formatted: a writer formats every line's
/// timestamp, and the lines of one second differ only in their six fraction digits.
#[derive(Default)]
pub struct TsCache {
    sec: i64,
    /// The last text formatted (all zero bytes before the first).
    text: [u8; 27],
}

impl TsCache {
    pub fn format(&mut self, us: i64) -> [u8; 27] {
        let sec = us.div_euclid(1_000_000);
        if sec != self.sec || self.text[0] == 0 {
            self.sec = sec;
            self.text = format_ts(us);
            return self.text;
        }
        let frac = us.rem_euclid(1_000_000) as u32;
        put2(&mut self.text[20..22], frac / 10_000);
        put2(&mut self.text[22..24], frac / 100 % 100);
        put2(&mut self.text[24..26], frac % 100);
        self.text
    }
}

/// The UTC day of a timestamp, `YYYY-MM-DD`.
pub fn day_of(us: i64) -> String {
    String::from_utf8_lossy(&format_ts(us)[..10]).into_owned()
}

fn digits(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// The two places RFC 3339 is read, each with its documented rule, through one parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rfc3339 {
    /// The log's `ts` (docs/format.md): RFC 3339 §5.6, the date/time separator `T`, `t` or a
    /// space (§5.6's NOTE), any year 0000-9999.
    LogTs,
    /// JSON Schema's `date-time` format exactly as `jsonschema`'s FormatChecker checks it
    /// (docs/schema.md): separator `T`/`t` only, year >= 1, one trailing newline tolerated.
    SchemaDateTime,
}

/// Parse an RFC 3339 timestamp of the log (any offset, any fraction length) to UTC microseconds.
/// Returns None for anything that is not a valid RFC 3339 date-time.
pub fn parse_ts(s: &[u8]) -> Option<i64> {
    parse_rfc3339(s, Rfc3339::LogTs)
}

/// The one RFC 3339 parser: UTC microseconds (digits past the sixth of a fraction are
/// ignored), or None when `s` is not a date-time under `profile`.
pub fn parse_rfc3339(s: &[u8], profile: Rfc3339) -> Option<i64> {
    let s = match profile {
        Rfc3339::SchemaDateTime => s.strip_suffix(b"\n").unwrap_or(s),
        Rfc3339::LogTs => s,
    };
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let space_ok = profile == Rfc3339::LogTs;
    if !(matches!(s[10], b'T' | b't') || (space_ok && s[10] == b' ')) {
        return None;
    }
    let y = digits(&s[0..4])? as i64;
    if y == 0 && profile == Rfc3339::SchemaDateTime {
        return None;
    }
    let mo = digits(&s[5..7])?;
    let d = digits(&s[8..10])?;
    let h = digits(&s[11..13])?;
    let mi = digits(&s[14..16])?;
    let se = digits(&s[17..19])?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59
    {
        return None;
    }
    let mut i = 19;
    let mut frac_us: i64 = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let mut scale = 100_000;
        while i < s.len() && s[i].is_ascii_digit() {
            frac_us += (s[i] - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_s: i64 = match s.get(i) {
        Some(b'Z' | b'z') if i + 1 == s.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == s.len() && s[i + 3] == b':' => {
            let oh = digits(&s[i + 1..i + 3])? as i64;
            let om = digits(&s[i + 4..i + 6])? as i64;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + se) as i64 - offset_s;
    Some(secs * 1_000_000 + frac_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse_round_trip() {
        for us in [
            0i64,
            1_700_000_000_123_456,
            951_782_400_000_001,
            4_102_444_799_999_999,
        ] {
            let s = format_ts(us);
            assert_eq!(parse_ts(&s), Some(us), "{}", String::from_utf8_lossy(&s));
        }
        assert_eq!(&format_ts(0), b"1970-01-01T00:00:00.000000Z");
        assert_eq!(day_of(1_700_000_000_000_000), "2023-11-14");
    }

    #[test]
    fn the_two_profiles_differ_only_where_documented() {
        let log = |s: &str| parse_rfc3339(s.as_bytes(), Rfc3339::LogTs).is_some();
        let dt = |s: &str| parse_rfc3339(s.as_bytes(), Rfc3339::SchemaDateTime).is_some();
        for (s, in_log, in_schema) in [
            ("2026-01-02T03:04:05.123456Z", true, true),
            ("2026-01-02t03:04:05z", true, true),
            ("2026-01-02T03:04:05.1234567891+05:30", true, true),
            ("2026-01-02 03:04:05Z", true, false),
            ("0000-01-02T03:04:05Z", true, false),
            ("2026-01-02T03:04:05Z\n", false, true),
            ("2026-01-02T03:04:05Z\n\n", false, false),
            ("2026-01-02T03:04:05.Z", false, false),
            ("2026-01-02T03:04:60Z", false, false),
            ("2026-01-02T03:04:05+24:00", false, false),
            ("2026-01-02T03:04:05+01:60", false, false),
            ("2026-02-30T03:04:05Z", false, false),
            ("2026-01-02T03:04:05", false, false),
            ("２026-01-02T03:04:05Z", false, false),
        ] {
            assert_eq!((log(s), dt(s)), (in_log, in_schema), "{s:?}");
        }
    }

    proptest::proptest! {
        /// The cached text is `format_ts`'s for any sequence of timestamps: steps within a
        /// second, across seconds and days, backwards, before 1970 and past 9999.
        #[test]
        fn the_cached_text_is_format_ts(
            start in -100_000_000_000_000_000i64..400_000_000_000_000_000,
            steps in proptest::collection::vec(-3_000_000i64..3_000_000, 1..40),
        ) {
            let mut cache = TsCache::default();
            let mut us = start;
            for step in steps {
                proptest::prop_assert_eq!(cache.format(us), format_ts(us), "at {}", us);
                us += step;
            }
        }
    }

    #[test]
    fn the_coarse_clock_is_the_clock_within_its_resolution() {
        for _ in 0..100 {
            let (a, c, b) = (now_us() / 1000, coarse_now_ms(), now_us() / 1000);
            // CLOCK_REALTIME_COARSE lags by at most one tick (1-10 ms).
            assert!(c <= b && c >= a - 20, "{a} {c} {b}");
        }
    }

    #[test]
    fn parse_rejects_bad_dates() {
        assert!(parse_ts(b"2023-02-29T00:00:00Z").is_none());
        assert!(parse_ts(b"2024-02-29T00:00:00Z").is_some());
        assert!(parse_ts(b"2023-01-01T24:00:00Z").is_none());
        assert!(parse_ts(b"2023-01-01T00:00:00").is_none());
        assert_eq!(
            parse_ts(b"2023-01-01T01:00:00+01:00"),
            parse_ts(b"2023-01-01T00:00:00Z")
        );
    }
}
