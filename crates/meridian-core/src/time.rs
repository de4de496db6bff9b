//! On-board time (ICD §1): nanoseconds of TAI since 2010-01-01T00:00:00 TAI, the
//! CCSDS CUC 4+3 code that carries it in packets, and the Julian epoch (TT) used to
//! propagate catalogue positions.

/// Nanoseconds per second.
pub const NS_PER_S: u64 = 1_000_000_000;

/// Length of a CUC 4+3 time field in octets.
pub const CUC_LEN: usize = 7;

/// Units of fine time per second (2^24).
const FINE_PER_S: u64 = 1 << 24;

/// Decodes a CUC 4+3 field (4 octets of seconds, 3 of 2^-24 s, big-endian) into
/// OBT nanoseconds: `coarse * 10^9 + floor(fine * 10^9 / 2^24)` (ICD §1).
pub fn cuc_decode(field: [u8; CUC_LEN]) -> u64 {
    let coarse = u32::from_be_bytes([field[0], field[1], field[2], field[3]]) as u64;
    let fine = u32::from_be_bytes([0, field[4], field[5], field[6]]) as u64;
    coarse * NS_PER_S + fine * NS_PER_S / FINE_PER_S
}

/// Encodes OBT nanoseconds as CUC 4+3.
///
/// CUC resolves 2^-24 s (about 60 ns), so not every nanosecond count is
/// representable. The fine count is rounded *up*, which makes
/// `cuc_decode(cuc_encode(t)) == t` for every `t` that `cuc_decode` can produce,
/// and the smallest representable time not before `t` otherwise. Times beyond the
/// 32-bit coarse range (year 2146) saturate.
pub fn cuc_encode(obt_ns: u64) -> [u8; CUC_LEN] {
    let mut coarse = obt_ns / NS_PER_S;
    let sub_ns = obt_ns % NS_PER_S;
    let mut fine = (sub_ns * FINE_PER_S).div_ceil(NS_PER_S);
    if fine == FINE_PER_S {
        coarse += 1;
        fine = 0;
    }
    if coarse > u32::MAX as u64 {
        coarse = u32::MAX as u64;
        fine = FINE_PER_S - 1;
    }
    let c = (coarse as u32).to_be_bytes();
    let f = (fine as u32).to_be_bytes();
    [c[0], c[1], c[2], c[3], f[1], f[2], f[3]]
}

/// The representable CUC time nearest at or after `obt_ns` (see [`cuc_encode`]).
pub fn cuc_round(obt_ns: u64) -> u64 {
    cuc_decode(cuc_encode(obt_ns))
}

/// Julian epoch in TT of an OBT, for proper-motion propagation (ICD §1):
/// `J(t) = 2000.0 + (3652.5 + (t + 32.184) / 86400) / 365.25`, t in seconds.
///
/// The mission epoch 2010-01-01T00:00:00 TAI is 3652.5 days after J2000 (TT 12:00).
pub fn julian_epoch_tt(obt_ns: u64) -> f64 {
    let whole_s = (obt_ns / NS_PER_S) as f64;
    let frac_s = (obt_ns % NS_PER_S) as f64 * 1e-9;
    let t = whole_s + frac_s;
    2000.0 + (3652.5 + (t + 32.184) / 86400.0) / 365.25
}

/// Seconds as f64 of an OBT (for display and physics; ns precision is kept only to
/// about 2^-52 of the value, i.e. sub-µs over a mission).
pub fn obt_seconds(obt_ns: u64) -> f64 {
    (obt_ns / NS_PER_S) as f64 + (obt_ns % NS_PER_S) as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuc_vectors_from_icd_formula() {
        assert_eq!(cuc_decode([0, 0, 0, 0, 0, 0, 0]), 0);
        assert_eq!(cuc_decode([0, 0, 0, 1, 0, 0, 0]), NS_PER_S);
        // Half a second: fine = 2^23.
        assert_eq!(cuc_decode([0, 0, 0, 0, 0x80, 0, 0]), 500_000_000);
        // One fine unit: floor(10^9 / 2^24) = 59.
        assert_eq!(cuc_decode([0, 0, 0, 0, 0, 0, 1]), 59);
        // Largest fine: floor((2^24-1) * 10^9 / 2^24) = 999_999_940.
        assert_eq!(cuc_decode([0, 0, 0, 0, 0xFF, 0xFF, 0xFF]), 999_999_940);
        assert_eq!(
            cuc_decode([0x12, 0x34, 0x56, 0x78, 0, 0, 0]),
            0x1234_5678 * NS_PER_S
        );
        assert_eq!(cuc_encode(500_000_000), [0, 0, 0, 0, 0x80, 0, 0]);
        assert_eq!(cuc_encode(59), [0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(cuc_encode(999_999_941), [0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn cuc_round_trips_every_decodable_time() {
        for coarse in [0u32, 1, 86_400, 500_000_000, u32::MAX] {
            for fine in [
                0u32, 1, 2, 3, 1000, 0x7F_FFFF, 0x80_0000, 0xFF_FFFE, 0xFF_FFFF,
            ] {
                let c = coarse.to_be_bytes();
                let f = fine.to_be_bytes();
                let field = [c[0], c[1], c[2], c[3], f[1], f[2], f[3]];
                assert_eq!(cuc_encode(cuc_decode(field)), field);
            }
        }
    }

    #[test]
    fn julian_epoch_vectors() {
        // Mission epoch: 2010-01-01T00:00:00 TAI = 2010-01-01T00:00:32.184 TT,
        // which is JD 2455197.500372..., J = 2000 + 3652.50037250/365.25.
        let j0 = julian_epoch_tt(0);
        assert!((j0 - (2000.0 + (3652.5 + 32.184 / 86400.0) / 365.25)).abs() < 1e-12);
        assert!((j0 - 2010.0).abs() < 0.002);
        // One Julian year later.
        let one_year_ns = (365.25 * 86400.0) as u64 * NS_PER_S;
        assert!((julian_epoch_tt(one_year_ns) - j0 - 1.0).abs() < 1e-12);
        // J2016.0 (Gaia DR3 reference epoch) lies 6 Julian years minus 3652.5 days offset.
        let t_2016 = ((2016.0 - 2000.0) * 365.25 - 3652.5) * 86400.0 - 32.184;
        let ns = (t_2016 * 1e9) as u64;
        assert!((julian_epoch_tt(ns) - 2016.0).abs() < 1e-10);
    }
}
