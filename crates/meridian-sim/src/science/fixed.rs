//! Fixed-decimal formatting of `f64`, byte for byte what `format!("{x:.N$}")`
//! gives, with integer arithmetic for the values the catalogue holds.
//!
//! `core::fmt` prints `{:.12}` by exact multi-precision conversion, which made
//! the catalogue CSV (five such numbers a star, millions of stars) take far
//! longer than the day it describes. Catalogue values are almost all of the
//! form "the double nearest to k / 10^N" (procedural stars are rounded to
//! what the CSV carries): for those the printed digits are exactly k, which is
//! checked, and anything else falls back to `core::fmt`.

use std::io::Write;

const POW10: [u64; 13] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
];

/// Appends `x` with `decimals` (at most 12) digits after the point, exactly as
/// `write!(out, "{x:.decimals$}")`.
pub fn push_fixed(out: &mut Vec<u8>, x: f64, decimals: usize) {
    match exact_scaled(x, decimals) {
        Some(k) => push_scaled(out, x.is_sign_negative(), k, decimals),
        None => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{x:.decimals$}");
        }
    }
}

/// `|k|` with `x` the double nearest to `k / 10^decimals`, when that makes
/// `k` the correctly rounded `decimals`-digit value of `x`.
///
/// If `x == fl(k / 10^d)` then `|x − k/10^d| ≤ ulp(x)/2`, and for
/// `|x| < 2^52 · 10^−d` that is below `10^−d / 2`: no other multiple of
/// `10^−d` is as close, nor is there a tie. So any way of guessing k will do
/// (truncation and a half-step correction, cheaper than `f64::round`'s libm
/// call); the bitwise check decides. A negative zero (k = 0, x < 0) never
/// passes it, so it keeps `core::fmt`'s "-0.000".
fn exact_scaled(x: f64, decimals: usize) -> Option<u64> {
    let scale = *POW10.get(decimals)? as f64;
    // Too large for the argument above, or not finite.
    if !x.is_finite() || x.abs() >= 4_503_599_627_370_496.0 / scale {
        return None;
    }
    let y = (x * scale).abs();
    let mut k = y as u64; // exact: y < 2^52
    if y - k as f64 >= 0.5 {
        k += 1;
    }
    let guess = (k as f64 / scale).copysign(x);
    (guess.to_bits() == x.to_bits()).then_some(k)
}

/// "00" to "99".
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `±k / 10^decimals` with exactly `decimals` fraction digits.
fn push_scaled(out: &mut Vec<u8>, negative: bool, mut k: u64, decimals: usize) {
    // Sign, 20 digits, point, 12 decimals at most.
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    let mut left = decimals;
    while left >= 2 {
        let r = (k % 100) as usize;
        k /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[2 * r..2 * r + 2]);
        left -= 2;
    }
    if left == 1 {
        i -= 1;
        buf[i] = b'0' + (k % 10) as u8;
        k /= 10;
    }
    if decimals > 0 {
        i -= 1;
        buf[i] = b'.';
    }
    i = push_digits_back(&mut buf[..i], k);
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes the digits of `v` (at least one) at the end of `buf`; returns
/// where they start.
fn push_digits_back(buf: &mut [u8], mut v: u64) -> usize {
    let mut i = buf.len();
    while v >= 100 {
        let r = (v % 100) as usize;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[2 * r..2 * r + 2]);
    }
    if v >= 10 {
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[2 * v as usize..2 * v as usize + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    i
}

/// Appends the decimal digits of `v`.
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let i = push_digits_back(&mut buf, v);
    out.extend_from_slice(&buf[i..]);
}

/// Appends the decimal digits of `v`, with a minus sign if negative.
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(x: f64, decimals: usize) {
        let mut ours = Vec::new();
        push_fixed(&mut ours, x, decimals);
        let reference = format!("{x:.decimals$}");
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            reference,
            "{x:e} .{decimals}"
        );
    }

    #[test]
    fn edge_values_match_core_fmt() {
        let specials = [
            0.0,
            -0.0,
            -1e-15,
            1e-15,
            0.5,
            -0.5,
            0.000_000_000_000_5,
            359.999_999_999_999_9,
            -89.999_999_999_999,
            4503.0,
            4504.0,
            1e300,
            -1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            2016.0,
            u64::MAX as f64,
        ];
        for x in specials {
            for d in [0, 1, 6, 12] {
                check(x, d);
            }
        }
        for v in [0, 7, 10, 99, 12_345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
        for v in [0, -1, 42, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            push_i64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    proptest! {
        #[test]
        fn rounded_catalogue_values_match_core_fmt(
            k in -360_000_000_000_000i64..360_000_000_000_000,
            m in -5_000_000_000i64..5_000_000_000,
        ) {
            // What the procedural sky writes: doubles nearest to k/10^12, m/10^6.
            check(k as f64 / 1e12, 12);
            check(m as f64 / 1e6, 6);
            check(m as f64 / 1e6, 12);
            check(k as f64 / 1e12, 6);
        }

        #[test]
        fn arbitrary_doubles_match_core_fmt(x in any::<f64>(), y in -1e4..1e4f64, d in 0usize..=12) {
            check(x, d);
            check(y, d);
        }
    }
}
