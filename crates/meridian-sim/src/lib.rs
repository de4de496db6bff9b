//! Deterministic simulator of Meridian telemetry days with known truth: a star
//! catalogue, the scanning law, transit windows and attitude following the ICD §5
//! model, housekeeping with injected anomalies, and a faulty priority downlink.
//!
//! Layout: `science` (sky, scanning law, windows, attitude packets) and `hk`
//! (mission database, parameter behaviour, anomalies) each generate on-board
//! packets as [`GeneratedPacket`]s in time order; `downlink` turns them into
//! deliveries with realistic faults; `day` runs the whole thing and writes a day
//! folder with its truth. Everything is a pure function of the seed.

/// A packet as the spacecraft generated it, before the downlink touches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedPacket {
    pub apid: u16,
    /// 14-bit sequence count.
    pub seq: u16,
    /// Packet time (as decoded from its CUC field), OBT ns.
    pub obt_ns: u64,
    /// The whole encoded packet, CRC included.
    pub bytes: Vec<u8>,
}
