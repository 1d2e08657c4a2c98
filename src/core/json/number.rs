//! Numbers as JSON text: floats in their shortest round-trip form (ryu's text, with a fast
//! path for short decimals) and integers in decimal (itoa's text, with a fast path under 1e8).

/// Append a finite float the way JSON expects (shortest round-trip form, as ryu writes it).
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if !write_short_decimal(out, v) {
        let mut buf = ryu::Buffer::new();
        out.extend_from_slice(buf.format_finite(v).as_bytes());
    }
}

/// The fast path of `write_f64` for the common values with at most 6 decimals (prices,
/// parameters, rounded metrics): ~0.1k instructions and one division instead of ryu's ~0.6k.
/// Writes what ryu would and returns true, or writes nothing and returns false.
///
/// Why it is ryu's text: for 1e-3 <= |v| < 1e9 the rounding interval of `v` is narrower than
/// 1e-7, so at most one decimal with at most 6 fraction digits parses to `v`. `|v| * 1e6` is
/// below 2^53 and within 0.2 of that decimal's millionths, so rounding it finds them, and
/// `i / 1e6 == |v|` (an exact integer divided by an exact power of ten, correctly rounded: how a
/// parser reads the decimal) proves the decimal parses to `v`. Without its trailing zeros it
/// has the fewest fraction digits; any other decimal that parses to `v` has more fraction
/// digits, hence more significant digits, so this one is the shortest round-trip form, the
/// digits ryu picks; in this range ryu writes them without an exponent.
pub(super) fn write_short_decimal(out: &mut Vec<u8>, v: f64) -> bool {
    let a = v.abs();
    if !(1e-3..1e9).contains(&a) {
        return false;
    }
    // Rounded by truncation (a native conversion, where `round` is a libm call); a wrong
    // neighbour only fails the exact check. (Signed: below 2^63, one instruction each way.)
    let i = (a * 1e6 + 0.5) as i64;
    if i as f64 / 1e6 != a {
        return false;
    }
    let (int, frac) = ((i / 1_000_000) as u32, (i % 1_000_000) as u32);
    // Built in a fixed buffer and appended whole, then cut to length (a fixed-size copy, no
    // call): `-`, the integer part (up to 9 digits), `.`, six fraction digits less their
    // trailing zeros (one kept: ryu writes an integer as `12.0`).
    let mut buf = [0u8; 32];
    let mut n = usize::from(v < 0.0);
    buf[0] = b'-';
    if int < 10 {
        buf[n] = b'0' + int as u8;
        n += 1;
    } else {
        let digits = int.ilog10() as usize + 1;
        let mut x = int;
        for d in buf[n..n + digits].iter_mut().rev() {
            *d = b'0' + (x % 10) as u8;
            x /= 10;
        }
        n += digits;
    }
    buf[n] = b'.';
    // The six fraction digits in one word, the first in the lowest byte: their trailing '0's
    // are the zero bytes at the top of `word ^ "000000"` (above its two unused bytes).
    let [a, b] = pair(frac / 10_000);
    let [c, d] = pair(frac / 100 % 100);
    let [e, f] = pair(frac % 100);
    let word = u64::from_le_bytes([a, b, c, d, e, f, 0, 0]);
    let zeros = ((word ^ 0x3030_3030_3030).leading_zeros() / 8) as usize - 2;
    buf[n + 1..n + 9].copy_from_slice(&word.to_le_bytes());
    let len = n + 1 + (6 - zeros).max(1);
    let start = out.len();
    out.extend_from_slice(&buf);
    out.truncate(start + len);
    true
}

/// The two decimal digits of `p` (< 100).
fn pair(p: u32) -> [u8; 2] {
    let i = p as usize * 2;
    [DIGIT_PAIRS[i], DIGIT_PAIRS[i + 1]]
}

/// "00" "01" … "99": two decimal digits per lookup.
const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Append an integer in decimal (as itoa writes it).
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    if (0..100_000_000).contains(&v) {
        return write_under_1e8(out, v as u32);
    }
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

/// `write_i64` of the common small counts and ids (`v` < 10^8): eight digits from four pair
/// lookups in one word, its leading zeros shifted out, appended whole and cut to length (a
/// fixed-size copy, no call).
fn write_under_1e8(out: &mut Vec<u8>, v: u32) {
    let n = match v {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1_000..=9_999 => 4,
        _ => v.ilog10() as usize + 1,
    };
    let (hi, lo) = (v / 10_000, v % 10_000);
    let [a, b] = pair(hi / 100);
    let [c, d] = pair(hi % 100);
    let [e, f] = pair(lo / 100);
    let [g, h] = pair(lo % 100);
    let word = u64::from_le_bytes([a, b, c, d, e, f, g, h]) >> (8 * (8 - n));
    let start = out.len();
    out.extend_from_slice(&word.to_le_bytes());
    out.truncate(start + n);
}

/// `v.fract() == 0.0` for a finite `v` without libm's `trunc` (a call where SSE4.1 is not
/// assumed): from 2^52 up every double is an integer; below, the conversion to i64 is exact
/// for the integer part, so `v` is integral exactly when it converts back to itself.
#[inline]
pub fn is_integral(v: f64) -> bool {
    v.abs() >= 4_503_599_627_370_496.0 || (v as i64) as f64 == v
}
