//! CCSDS/PUS telemetry of the Meridian mission (ICD §2–4, §6): packet headers,
//! CRC, application data and the mission database, in both directions — the
//! simulator encodes with it and the decoder reads with it.

pub mod appdata;
pub mod crc;
pub mod mission_db;
pub mod packet;

pub use mission_db::{MissionDb, MissionDbError};
pub use packet::{PrimaryHeader, SecondaryHeader};
