//! Packet error control: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
//! reflection, no final XOR; check value 0x29B1), ICD §3.

use crc::{CRC_16_IBM_3740, Crc, Table};

/// Slice-by-16 tables: the decoder checks a CRC over every packet, so this is on
/// the hot path of the whole pipeline.
static CCITT_FALSE: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_3740);

/// CRC-16/CCITT-FALSE of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    CCITT_FALSE.checksum(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value_of_icd() {
        assert_eq!(super::crc16(b"123456789"), 0x29B1);
        assert_eq!(super::crc16(b""), 0xFFFF);
    }
}
