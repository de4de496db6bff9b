//! CCSDS/PUS telemetry of the Meridian mission (ICD §2–4, §6): packet headers,
//! CRC, application data and the mission database, in both directions — the
//! simulator encodes with it and the decoder reads with it.
//!
//! Decoding: [`reader::PacketReader`] splits a delivery's bytes into packets,
//! idle packets and quarantined spans without copying; [`reader::Packet::content`]
//! gives the typed [`appdata`] views that read the
//! application data in place; [`decode::ItemDecoder`] turns items into ICD §9
//! records; [`input::decode_delivery`] handles zstd and parallelism; and
//! [`delivery`] writes a delivery's product folder and report.
//!
//! # Decoding choices where the ICD leaves room
//!
//! * **Sync points** are CRC-valid packets only. An idle packet is recognised
//!   only at a boundary (start of the delivery, end of a decoded packet, or the
//!   declared end of a `crc_mismatch` packet) and only if no CRC-valid packet
//!   starts inside it: an idle length has no CRC to vouch for it and must never
//!   swallow an intact packet. See [`reader`] for the quarantine reasons
//!   (`garbage`, `crc_mismatch`, `truncated_packet`) and where spans end.
//! * A CRC-valid packet of a known APID and service whose application data does
//!   not decode is **quarantined whole**, reason
//!   `malformed_application_data: <detail>`, and counted as a malformed packet
//!   (not in `packets`); packets of other APIDs/services are `unknown_packet`s.
//! * Quarantine spans are at most [`reader::MAX_QUARANTINE_SPAN`] (1 MiB) long;
//!   a longer run is cut at fixed distances from its start.
//! * A delivery in which no packet at all is found (an empty file, a JPEG, …) is
//!   **not telemetry**: it fails with an error naming it and gets no report,
//!   rather than a folder claiming a decoded delivery of pure garbage.
//! * A zstd stream that breaks fails the whole delivery (error naming the file and
//!   the decompressed offset); nothing of it looks complete.
//! * The same bytes received under several names are decoded once; records carry
//!   the first name in sorted order and the report lists all names.

pub mod appdata;
pub mod crc;
pub mod decode;
pub mod delivery;
pub mod input;
pub mod mission_db;
pub mod packet;
pub mod reader;

pub use mission_db::{MissionDb, MissionDbError};
pub use packet::{PrimaryHeader, SecondaryHeader};
