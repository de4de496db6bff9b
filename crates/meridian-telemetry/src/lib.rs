//! CCSDS/PUS telemetry of the Meridian mission (ICD §2–4, §6): packet headers,
//! CRC, application data and the mission database, in both directions — the
//! simulator encodes with it and the decoder reads with it.
//!
//! Decoding: [`reader::PacketReader`] splits a delivery's bytes into packets,
//! idle packets and quarantined spans without copying; [`appdata`] views read the
//! application data in place; [`decode::ItemDecoder`] turns items into ICD §9
//! records; [`input::decode_delivery`] handles zstd and parallelism; and
//! [`delivery`] writes a delivery's product folder and report.

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
