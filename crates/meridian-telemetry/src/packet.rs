//! Packet structure (ICD §3): the CCSDS primary header, the PUS-C telemetry
//! secondary header with its CUC time, and whole-packet encoding with CRC.

use crate::crc::crc16;
use meridian_core::time::{CUC_LEN, cuc_decode, cuc_encode};

/// Octets of the primary header.
pub const PRIMARY_HEADER_LEN: usize = 6;
/// Octets of the PUS-C telemetry secondary header.
pub const SECONDARY_HEADER_LEN: usize = 14;
/// Octets of the packet error control field.
pub const CRC_LEN: usize = 2;
/// APID of idle packets (no secondary header, no CRC).
pub const IDLE_APID: u16 = 0x7FF;
/// Sequence counts wrap at 2^14.
pub const SEQ_MODULUS: u16 = 1 << 14;
/// The largest packet CCSDS allows: 6 + 65536 octets.
pub const MAX_PACKET_LEN: usize = PRIMARY_HEADER_LEN + 65536;
/// Smallest total length of a non-idle packet: headers plus CRC.
pub const MIN_TM_PACKET_LEN: usize = PRIMARY_HEADER_LEN + SECONDARY_HEADER_LEN + CRC_LEN;

/// APIDs of ICD §4.
pub mod apid {
    pub const TRANSIT_WINDOWS: u16 = 0x101;
    pub const ATTITUDE: u16 = 0x102;
    pub const HOUSEKEEPING: u16 = 0x201;
}

/// The CCSDS primary header (6 octets, big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryHeader {
    pub version: u8,
    pub packet_type: u8,
    pub sec_header_flag: bool,
    pub apid: u16,
    pub seq_flags: u8,
    pub seq_count: u16,
    /// Octets in the packet data field minus one.
    pub data_length: u16,
}

impl PrimaryHeader {
    /// Splits six octets into fields; any bytes parse, validity is checked apart.
    pub fn parse(b: &[u8; PRIMARY_HEADER_LEN]) -> Self {
        let id = u16::from_be_bytes([b[0], b[1]]);
        let seq = u16::from_be_bytes([b[2], b[3]]);
        Self {
            version: (id >> 13) as u8,
            packet_type: ((id >> 12) & 1) as u8,
            sec_header_flag: (id >> 11) & 1 == 1,
            apid: id & 0x7FF,
            seq_flags: (seq >> 14) as u8,
            seq_count: seq & 0x3FFF,
            data_length: u16::from_be_bytes([b[4], b[5]]),
        }
    }

    pub fn encode(&self) -> [u8; PRIMARY_HEADER_LEN] {
        let id = ((self.version as u16 & 7) << 13)
            | ((self.packet_type as u16 & 1) << 12)
            | ((self.sec_header_flag as u16) << 11)
            | (self.apid & 0x7FF);
        let seq = ((self.seq_flags as u16 & 3) << 14) | (self.seq_count & 0x3FFF);
        let [a, b] = id.to_be_bytes();
        let [c, d] = seq.to_be_bytes();
        let [e, f] = self.data_length.to_be_bytes();
        [a, b, c, d, e, f]
    }

    /// Whole packet length in octets: header plus data field.
    pub fn packet_len(&self) -> usize {
        PRIMARY_HEADER_LEN + self.data_length as usize + 1
    }

    pub fn is_idle(&self) -> bool {
        self.apid == IDLE_APID
    }

    /// Fixed fields as ICD §3 requires: version 0, telemetry, unsegmented, a
    /// secondary header except on idle packets.
    pub fn is_plausible(&self) -> bool {
        self.version == 0
            && self.packet_type == 0
            && self.seq_flags == 0b11
            && self.sec_header_flag != self.is_idle()
            && (self.is_idle() || self.packet_len() >= MIN_TM_PACKET_LEN)
    }
}

/// The PUS-C telemetry secondary header (14 octets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondaryHeader {
    pub pus_version: u8,
    pub time_ref_status: u8,
    pub service: u8,
    pub subtype: u8,
    pub msg_counter: u16,
    pub destination: u16,
    /// Packet time, decoded from its CUC 4+3 field.
    pub obt_ns: u64,
}

impl SecondaryHeader {
    /// A header as the spacecraft writes it (PUS version 2, time reference 0).
    pub fn new(service: u8, subtype: u8, msg_counter: u16, obt_ns: u64) -> Self {
        Self {
            pus_version: 2,
            time_ref_status: 0,
            service,
            subtype,
            msg_counter,
            destination: 0,
            obt_ns,
        }
    }

    pub fn parse(b: &[u8; SECONDARY_HEADER_LEN]) -> Self {
        let mut cuc = [0u8; CUC_LEN];
        cuc.copy_from_slice(&b[7..14]);
        Self {
            pus_version: b[0] >> 4,
            time_ref_status: b[0] & 0xF,
            service: b[1],
            subtype: b[2],
            msg_counter: u16::from_be_bytes([b[3], b[4]]),
            destination: u16::from_be_bytes([b[5], b[6]]),
            obt_ns: cuc_decode(cuc),
        }
    }

    /// Encodes the header; `obt_ns` goes through CUC, which rounds it up to the
    /// next 2^-24 s (see [`meridian_core::time::cuc_encode`]).
    pub fn encode(&self) -> [u8; SECONDARY_HEADER_LEN] {
        let mut b = [0u8; SECONDARY_HEADER_LEN];
        b[0] = (self.pus_version << 4) | (self.time_ref_status & 0xF);
        b[1] = self.service;
        b[2] = self.subtype;
        b[3..5].copy_from_slice(&self.msg_counter.to_be_bytes());
        b[5..7].copy_from_slice(&self.destination.to_be_bytes());
        b[7..14].copy_from_slice(&cuc_encode(self.obt_ns));
        b
    }
}

/// Why a packet could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("application data of {0} octets does not fit one packet")]
    TooLong(usize),
    #[error("APID {0:#x} does not fit 11 bits")]
    BadApid(u16),
}

/// Appends a complete telemetry packet (primary header, secondary header,
/// application data, CRC) to `out`.
pub fn encode_packet(
    out: &mut Vec<u8>,
    apid: u16,
    seq_count: u16,
    sec: &SecondaryHeader,
    app_data: &[u8],
) -> Result<(), EncodeError> {
    if apid > 0x7FF || apid == IDLE_APID {
        return Err(EncodeError::BadApid(apid));
    }
    let data_len = SECONDARY_HEADER_LEN + app_data.len() + CRC_LEN;
    if data_len > 65536 {
        return Err(EncodeError::TooLong(app_data.len()));
    }
    let start = out.len();
    let primary = PrimaryHeader {
        version: 0,
        packet_type: 0,
        sec_header_flag: true,
        apid,
        seq_flags: 0b11,
        seq_count: seq_count % SEQ_MODULUS,
        data_length: (data_len - 1) as u16,
    };
    out.extend_from_slice(&primary.encode());
    out.extend_from_slice(&sec.encode());
    out.extend_from_slice(app_data);
    let crc = crc16(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Appends an idle packet of `total_len` octets (at least 7) filled with 0x55.
pub fn encode_idle(out: &mut Vec<u8>, seq_count: u16, total_len: usize) {
    let total_len = total_len.clamp(PRIMARY_HEADER_LEN + 1, MAX_PACKET_LEN);
    let primary = PrimaryHeader {
        version: 0,
        packet_type: 0,
        sec_header_flag: false,
        apid: IDLE_APID,
        seq_flags: 0b11,
        seq_count: seq_count % SEQ_MODULUS,
        data_length: (total_len - PRIMARY_HEADER_LEN - 1) as u16,
    };
    out.extend_from_slice(&primary.encode());
    out.resize(out.len() + total_len - PRIMARY_HEADER_LEN, 0x55);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_header_round_trips_and_matches_bit_layout() {
        let h = PrimaryHeader {
            version: 0,
            packet_type: 0,
            sec_header_flag: true,
            apid: 0x101,
            seq_flags: 3,
            seq_count: 0x3FFF,
            data_length: 0x1234,
        };
        let b = h.encode();
        assert_eq!(b, [0x09, 0x01, 0xFF, 0xFF, 0x12, 0x34]);
        assert_eq!(PrimaryHeader::parse(&b), h);
        assert!(h.is_plausible());
    }

    #[test]
    fn packet_has_valid_crc_and_lengths() {
        let mut out = Vec::new();
        let sec = SecondaryHeader::new(200, 2, 7, 1_500_000_000);
        encode_packet(&mut out, 0x102, 16385, &sec, &[1, 2, 3]).unwrap();
        assert_eq!(out.len(), 6 + 14 + 3 + 2);
        let h = PrimaryHeader::parse(out[..6].try_into().unwrap());
        assert_eq!(h.packet_len(), out.len());
        assert_eq!(h.seq_count, 1);
        let n = out.len();
        assert_eq!(crc16(&out[..n - 2]).to_be_bytes(), [out[n - 2], out[n - 1]]);
        let s = SecondaryHeader::parse(out[6..20].try_into().unwrap());
        assert_eq!(s, sec);
    }

    #[test]
    fn idle_packet_is_plausible_without_secondary_header() {
        let mut out = Vec::new();
        encode_idle(&mut out, 3, 64);
        assert_eq!(out.len(), 64);
        let h = PrimaryHeader::parse(out[..6].try_into().unwrap());
        assert!(h.is_idle() && h.is_plausible() && h.packet_len() == 64);
    }
}
