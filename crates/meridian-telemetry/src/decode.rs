//! Turns the reader's items into ICD §9 records (window, attitude, hk,
//! unknown_packet, quarantine) and per-delivery statistics with the byte
//! accounting of ICD §2.
//!
//! A CRC-valid packet of a known APID and service whose application data does not
//! decode (bad count, out-of-range field, housekeeping structure ID missing from
//! the mission database) is **quarantined whole** with the reason
//! `malformed_application_data: <detail>` and counted as `malformed_packets`: its
//! bytes are kept for an operator, and no record of it is half-emitted. Packets
//! of other APIDs or services become `unknown_packet` records.

use crate::mission_db::MissionDb;
use crate::reader::{Content, Item, Packet, Span, SpanReason};
use meridian_core::records::{Attitude, Hk, PacketRef, Quarantine, UnknownPacket, Window};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;

/// Where decoded records go, one method per record kind.
pub trait DecodeSink {
    type Error: std::error::Error + Send + Sync + 'static;
    fn window(&mut self, record: Window) -> Result<(), Self::Error>;
    fn attitude(&mut self, record: Attitude) -> Result<(), Self::Error>;
    fn hk(&mut self, record: Hk) -> Result<(), Self::Error>;
    fn unknown_packet(&mut self, record: UnknownPacket) -> Result<(), Self::Error>;
    fn quarantine(&mut self, record: Quarantine) -> Result<(), Self::Error>;
}

/// Records of a delivery (or part of one) held in memory, in stream order per kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub windows: Vec<Window>,
    pub attitude: Vec<Attitude>,
    pub hk: Vec<Hk>,
    pub unknown_packets: Vec<UnknownPacket>,
    pub quarantine: Vec<Quarantine>,
}

impl Decoded {
    /// Passes every record on to `sink`, kind by kind (order within a kind kept).
    pub fn drain_into<S: DecodeSink>(self, sink: &mut S) -> Result<(), S::Error> {
        self.windows.into_iter().try_for_each(|r| sink.window(r))?;
        self.attitude
            .into_iter()
            .try_for_each(|r| sink.attitude(r))?;
        self.hk.into_iter().try_for_each(|r| sink.hk(r))?;
        self.unknown_packets
            .into_iter()
            .try_for_each(|r| sink.unknown_packet(r))?;
        self.quarantine
            .into_iter()
            .try_for_each(|r| sink.quarantine(r))
    }
}

impl DecodeSink for Decoded {
    type Error = Infallible;
    fn window(&mut self, record: Window) -> Result<(), Infallible> {
        self.windows.push(record);
        Ok(())
    }
    fn attitude(&mut self, record: Attitude) -> Result<(), Infallible> {
        self.attitude.push(record);
        Ok(())
    }
    fn hk(&mut self, record: Hk) -> Result<(), Infallible> {
        self.hk.push(record);
        Ok(())
    }
    fn unknown_packet(&mut self, record: UnknownPacket) -> Result<(), Infallible> {
        self.unknown_packets.push(record);
        Ok(())
    }
    fn quarantine(&mut self, record: Quarantine) -> Result<(), Infallible> {
        self.quarantine.push(record);
        Ok(())
    }
}

/// Drops records, keeping only counts (benchmarks, dry runs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl DecodeSink for Discard {
    type Error = Infallible;
    fn window(&mut self, _: Window) -> Result<(), Infallible> {
        Ok(())
    }
    fn attitude(&mut self, _: Attitude) -> Result<(), Infallible> {
        Ok(())
    }
    fn hk(&mut self, _: Hk) -> Result<(), Infallible> {
        Ok(())
    }
    fn unknown_packet(&mut self, _: UnknownPacket) -> Result<(), Infallible> {
        Ok(())
    }
    fn quarantine(&mut self, _: Quarantine) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Records emitted per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCounts {
    pub window: u64,
    pub attitude: u64,
    pub hk: u64,
    pub unknown_packet: u64,
    pub quarantine: u64,
}

/// What decoding found in a delivery. Sums of parts merge with [`DecodeStats::merge`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeStats {
    /// Octets of the (decompressed) delivery, counted by the input, not by the reader.
    pub decompressed_len: u64,
    /// CRC-valid packets decoded or kept as unknown (malformed ones excluded).
    pub packets: u64,
    /// Octets of those packets.
    pub packet_bytes: u64,
    /// Those packets per APID, keyed `"0x101"` etc.
    pub packets_per_apid: BTreeMap<String, u64>,
    pub idle_packets: u64,
    pub idle_bytes: u64,
    /// Packets at a boundary whose CRC failed (`crc_mismatch` spans).
    pub crc_failures: u64,
    pub truncated_packets: u64,
    pub garbage_spans: u64,
    pub garbage_bytes: u64,
    /// CRC-valid packets of known kind whose application data did not decode.
    pub malformed_packets: u64,
    pub unknown_packets: u64,
    pub quarantine_spans: u64,
    pub quarantined_bytes: u64,
    pub records: RecordCounts,
}

impl DecodeStats {
    /// Adds the counts of a later part of the same delivery.
    pub fn merge(&mut self, other: &DecodeStats) {
        self.decompressed_len += other.decompressed_len;
        self.packets += other.packets;
        self.packet_bytes += other.packet_bytes;
        for (k, v) in &other.packets_per_apid {
            *self.packets_per_apid.entry(k.clone()).or_default() += v;
        }
        self.idle_packets += other.idle_packets;
        self.idle_bytes += other.idle_bytes;
        self.crc_failures += other.crc_failures;
        self.truncated_packets += other.truncated_packets;
        self.garbage_spans += other.garbage_spans;
        self.garbage_bytes += other.garbage_bytes;
        self.malformed_packets += other.malformed_packets;
        self.unknown_packets += other.unknown_packets;
        self.quarantine_spans += other.quarantine_spans;
        self.quarantined_bytes += other.quarantined_bytes;
        let (r, o) = (&mut self.records, &other.records);
        r.window += o.window;
        r.attitude += o.attitude;
        r.hk += o.hk;
        r.unknown_packet += o.unknown_packet;
        r.quarantine += o.quarantine;
    }

    /// ICD §2: decoded packets + idle packets + quarantined octets = the delivery.
    pub fn check_accounting(&self) -> Result<(), AccountingError> {
        let covered = self.packet_bytes + self.idle_bytes + self.quarantined_bytes;
        if covered == self.decompressed_len {
            Ok(())
        } else {
            Err(AccountingError {
                covered,
                decompressed_len: self.decompressed_len,
            })
        }
    }
}

/// The bytes of decoded, idle and quarantined items do not add up to the delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "accounting does not balance: packets + idle + quarantine cover {covered} octets of {decompressed_len}"
)]
pub struct AccountingError {
    pub covered: u64,
    pub decompressed_len: u64,
}

/// Decodes items of one delivery into a sink, counting as it goes.
#[derive(Debug, Clone)]
pub struct ItemDecoder<'d> {
    db: &'d MissionDb,
    delivery: String,
    stats: DecodeStats,
}

impl<'d> ItemDecoder<'d> {
    /// `delivery` is the delivery's file name, written into unknown_packet and
    /// quarantine records.
    pub fn new(db: &'d MissionDb, delivery: impl Into<String>) -> Self {
        Self {
            db,
            delivery: delivery.into(),
            stats: DecodeStats::default(),
        }
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    pub fn into_stats(self) -> DecodeStats {
        self.stats
    }

    /// Decodes one item into `sink`.
    pub fn decode<S: DecodeSink>(&mut self, item: Item<'_>, sink: &mut S) -> Result<(), S::Error> {
        match item {
            Item::Packet(p) => self.packet(p, sink),
            Item::Idle { len, .. } => {
                self.stats.idle_packets += 1;
                self.stats.idle_bytes += len as u64;
                Ok(())
            }
            Item::Quarantine(span) => {
                match span.reason {
                    SpanReason::Garbage => {
                        self.stats.garbage_spans += 1;
                        self.stats.garbage_bytes += span.bytes.len() as u64;
                    }
                    SpanReason::CrcMismatch => self.stats.crc_failures += 1,
                    SpanReason::TruncatedPacket => self.stats.truncated_packets += 1,
                }
                self.quarantine(span, span.reason.as_str().to_owned(), sink)
            }
        }
    }

    fn packet<S: DecodeSink>(&mut self, p: Packet<'_>, sink: &mut S) -> Result<(), S::Error> {
        let pref = PacketRef {
            seq: p.primary.seq_count,
            packet_obt_ns: p.secondary.obt_ns,
            packet_hash: p.hash(),
        };
        let outcome = p.content(self.db).map(|content| match content {
            Content::Windows(v) => {
                self.stats.records.window += v.len() as u64;
                v.iter().try_for_each(|w| sink.window(w.to_record(pref)))
            }
            Content::Attitude(v) => {
                self.stats.records.attitude += v.len() as u64;
                v.iter().try_for_each(|(obt_ns, q)| {
                    sink.attitude(Attitude {
                        obt_ns,
                        q,
                        seq: pref.seq,
                        packet_obt_ns: pref.packet_obt_ns,
                        packet_hash: pref.packet_hash,
                    })
                })
            }
            Content::Housekeeping(v) => {
                self.stats.records.hk += v.structure().params.len() as u64;
                v.records(pref).try_for_each(|r| sink.hk(r))
            }
            Content::Unknown => {
                self.stats.unknown_packets += 1;
                self.stats.records.unknown_packet += 1;
                sink.unknown_packet(UnknownPacket {
                    delivery: self.delivery.clone(),
                    apid: p.primary.apid,
                    service: Some(p.secondary.service),
                    subtype: Some(p.secondary.subtype),
                    seq: p.primary.seq_count,
                    obt_ns: Some(p.secondary.obt_ns),
                    bytes: p.bytes.to_vec(),
                    offset: p.offset,
                })
            }
        });
        match outcome {
            Ok(emitted) => {
                self.count_packet(&p);
                emitted
            }
            Err(e) => {
                self.stats.malformed_packets += 1;
                let span = Span {
                    offset: p.offset,
                    reason: SpanReason::Garbage,
                    bytes: p.bytes,
                };
                self.quarantine(span, format!("malformed_application_data: {e}"), sink)
            }
        }
    }

    fn count_packet(&mut self, p: &Packet<'_>) {
        self.stats.packets += 1;
        self.stats.packet_bytes += p.bytes.len() as u64;
        *self
            .stats
            .packets_per_apid
            .entry(format!("{:#05x}", p.primary.apid))
            .or_default() += 1;
    }

    fn quarantine<S: DecodeSink>(
        &mut self,
        span: Span<'_>,
        reason: String,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        self.stats.quarantine_spans += 1;
        self.stats.quarantined_bytes += span.bytes.len() as u64;
        self.stats.records.quarantine += 1;
        sink.quarantine(Quarantine {
            delivery: self.delivery.clone(),
            offset: span.offset,
            length: span.bytes.len() as u64,
            reason,
            bytes: span.bytes.to_vec(),
        })
    }
}
