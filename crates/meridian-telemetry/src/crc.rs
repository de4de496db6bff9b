//! Packet error control: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
//! reflection, no final XOR; check value 0x29B1), ICD §3.
//!
//! The decoder checks a CRC over every octet of every delivery, so this is the
//! hot path of the whole pipeline: on x86-64 with PCLMULQDQ, 16-octet blocks are
//! folded with carry-less multiplication and only the last 16–31 octets go
//! through the table; elsewhere a slice-by-16 table does all of it.

use crc::{CRC_16_IBM_3740, Crc, Table};

/// Slice-by-16 tables.
static CCITT_FALSE: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_3740);

/// The same CRC with initial value 0 (the folded path applies the init itself).
static CCITT_ZERO_INIT: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&crc::Algorithm {
    init: 0,
    ..CRC_16_IBM_3740
});

/// CRC-16/CCITT-FALSE of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= 32 && std::arch::is_x86_feature_detected!("pclmulqdq") {
        // SAFETY: the CPU supports PCLMULQDQ (checked just above).
        return unsafe { clmul::crc16(bytes) };
    }
    crc16_table(bytes)
}

/// CRC-16/CCITT-FALSE by table only: the reference the fast path is tested against.
pub fn crc16_table(bytes: &[u8]) -> u16 {
    CCITT_FALSE.checksum(bytes)
}

/// `x^n mod P` for P = x^16 + 0x1021, as a 16-bit remainder.
const fn x_pow_mod(n: u32) -> u64 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        r <<= 1;
        if r & 0x1_0000 != 0 {
            r ^= 0x1_1021;
        }
        i += 1;
    }
    r
}

#[cfg(target_arch = "x86_64")]
mod clmul {
    //! Folding (non-reflected): with the message read big-endian as a polynomial
    //! and a 128-bit accumulator `A = H·x^64 + L` followed `d` bits later by more
    //! data, `A·x^d ≡ H·(x^(d+64) mod P) + L·(x^d mod P) (mod P)`, which fits 128
    //! bits again. Four accumulators fold 64-octet stripes (d = 512) to hide the
    //! multiplier latency, then fold into one (d = 128); the CRC of what remains
    //! equals the CRC of the message.
    use super::{CCITT_ZERO_INIT, x_pow_mod};
    use std::arch::x86_64::{
        __m128i, _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_extract_epi64, _mm_set_epi64x,
        _mm_xor_si128,
    };

    const K_128: u64 = x_pow_mod(128);
    const K_192: u64 = x_pow_mod(192);
    const K_512: u64 = x_pow_mod(512);
    const K_576: u64 = x_pow_mod(576);

    /// Loads 16 octets as a big-endian 128-bit polynomial.
    #[inline(always)]
    fn load(b: &[u8]) -> __m128i {
        let hi = u64::from_be_bytes(b[..8].try_into().expect("16-octet block"));
        let lo = u64::from_be_bytes(b[8..16].try_into().expect("16-octet block"));
        // SAFETY: SSE2 is part of x86-64.
        unsafe { _mm_set_epi64x(hi as i64, lo as i64) }
    }

    /// `a·x^d mod P` up to 128 bits, with `k = (x^(d+64) mod P, x^d mod P)`.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse4.1")]
    fn fold(a: __m128i, k: __m128i) -> __m128i {
        _mm_xor_si128(
            _mm_clmulepi64_si128::<0x11>(a, k),
            _mm_clmulepi64_si128::<0x00>(a, k),
        )
    }

    /// # Safety
    /// The CPU must support PCLMULQDQ (and SSE4.1, which every such CPU has).
    #[target_feature(enable = "pclmulqdq,sse4.1")]
    pub unsafe fn crc16(bytes: &[u8]) -> u16 {
        debug_assert!(bytes.len() >= 32);
        let k128 = _mm_set_epi64x(K_192 as i64, K_128 as i64);
        let k512 = _mm_set_epi64x(K_576 as i64, K_512 as i64);
        // Init 0xFFFF = the first 16 message bits inverted.
        let init = _mm_set_epi64x((0xFFFFu64 << 48) as i64, 0);
        let mut acc = _mm_xor_si128(load(bytes), init);
        let mut rest = &bytes[16..];
        if rest.len() >= 128 {
            let mut a = [
                acc,
                load(&rest[..16]),
                load(&rest[16..32]),
                load(&rest[32..48]),
            ];
            rest = &rest[48..];
            while rest.len() >= 64 + 32 {
                for (i, a) in a.iter_mut().enumerate() {
                    *a = _mm_xor_si128(fold(*a, k512), load(&rest[16 * i..]));
                }
                rest = &rest[64..];
            }
            acc = a[0];
            for next in &a[1..] {
                acc = _mm_xor_si128(fold(acc, k128), *next);
            }
        }
        while rest.len() >= 32 {
            acc = _mm_xor_si128(fold(acc, k128), load(rest));
            rest = &rest[16..];
        }
        let hi = _mm_extract_epi64::<1>(acc) as u64;
        let lo = _mm_cvtsi128_si64(acc) as u64;
        let mut digest = CCITT_ZERO_INIT.digest();
        digest.update(&hi.to_be_bytes());
        digest.update(&lo.to_be_bytes());
        digest.update(rest);
        digest.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_value_of_icd() {
        assert_eq!(super::crc16(b"123456789"), 0x29B1);
        assert_eq!(super::crc16(b""), 0xFFFF);
    }

    #[test]
    fn folding_constants() {
        assert_eq!(x_pow_mod(16), 0x1021);
        assert_eq!(x_pow_mod(0), 1);
    }

    proptest! {
        #[test]
        fn fast_path_equals_table(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(crc16(&data), crc16_table(&data));
        }
    }

    #[test]
    fn fast_path_equals_table_at_every_length_near_blocks() {
        let data: Vec<u8> = (0..900u32).map(|i| (i * 131 + 7) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(crc16(&data[..n]), crc16_table(&data[..n]), "length {n}");
        }
    }
}
