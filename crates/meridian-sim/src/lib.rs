//! Deterministic simulator of Meridian telemetry days with known truth: a star
//! catalogue, the scanning law, transit windows and attitude following the ICD §5
//! model, housekeeping with injected anomalies, and a faulty priority downlink.
//!
//! Layout: `science` (sky, scanning law, windows, attitude packets) and `hk`
//! (mission database, parameter behaviour, anomalies) each generate on-board
//! packets as [`GeneratedPacket`]s in time order; `downlink` turns them into
//! deliveries with realistic faults; `day` runs the whole thing and writes a day
//! folder with its truth. Everything is a pure function of the seed.

pub mod science;

/// A packet as the spacecraft generated it, before the downlink touches it.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedPacket {
    pub apid: u16,
    /// 14-bit sequence count.
    pub seq: u16,
    /// Packet time (as decoded from its CUC field), OBT ns.
    pub obt_ns: u64,
    /// The whole encoded packet, CRC included.
    pub bytes: Vec<u8>,
    /// What the packet was built from, as the generator knew it (not decoded
    /// back from `bytes`): the truth a decoder's output is compared with.
    pub content: PacketContent,
}

/// The records a packet carries, in packet order.
#[derive(Debug, Clone, PartialEq)]
pub enum PacketContent {
    /// APID 0x101: windows (their `seq`/`packet_obt_ns`/`packet_hash` fields are
    /// left 0 by generators; fill them from the packet when comparing).
    Windows(Vec<meridian_core::records::Window>),
    /// APID 0x102: `(obt_ns, [x, y, z, w])` samples.
    Attitude(Vec<(u64, [f64; 4])>),
    /// APID 0x201: structure ID and raw values in database order.
    Housekeeping { sid: u16, raw: Vec<f64> },
}

pub mod day;
pub mod downlink;
pub mod hk;
