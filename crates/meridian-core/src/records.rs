//! The product records other centres read (ICD §9), as serde types.
//!
//! Field names are the ICD's and must not be renamed. Fields beyond the ICD are
//! additions (allowed by §9) and are documented where they are declared. Binary
//! product files store each kind in its own file (see [`crate::product`]); JSON
//! output adds the `"kind"` field.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every kind of product record. The discriminant is stored in product file
/// headers, so existing values must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RecordKind {
    Window = 1,
    Attitude = 2,
    Hk = 3,
    UnknownPacket = 4,
    Quarantine = 5,
    Gap = 6,
    Observation = 7,
    Transit = 8,
    Match = 9,
    HealthEvent = 10,
    /// Not an ICD §9 product: the simulator's truth of each window it made
    /// (`truth/windows.mprod`), in the product format so that it streams,
    /// checksums and dumps like the products it is compared with.
    WindowTruth = 11,
}

impl RecordKind {
    pub const ALL: [RecordKind; 11] = [
        Self::Window,
        Self::Attitude,
        Self::Hk,
        Self::UnknownPacket,
        Self::Quarantine,
        Self::Gap,
        Self::Observation,
        Self::Transit,
        Self::Match,
        Self::HealthEvent,
        Self::WindowTruth,
    ];

    /// The ICD §9 `kind` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::Attitude => "attitude",
            Self::Hk => "hk",
            Self::UnknownPacket => "unknown_packet",
            Self::Quarantine => "quarantine",
            Self::Gap => "gap",
            Self::Observation => "observation",
            Self::Transit => "transit",
            Self::Match => "match",
            Self::HealthEvent => "health_event",
            Self::WindowTruth => "window_truth",
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == v)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A product record type: something that can live in a product file.
pub trait Record: Serialize + for<'de> Deserialize<'de> + Send + 'static {
    const KIND: RecordKind;
}

macro_rules! record {
    ($t:ty, $k:ident) => {
        impl Record for $t {
            const KIND: RecordKind = RecordKind::$k;
        }
    };
}

/// Where a telemetry-derived record came from. Window, attitude and hk records
/// carry these as three added fields (`seq`, `packet_obt_ns`, `packet_hash`;
/// not flattened, because bincode cannot decode flattened structs). They are added fields that let the ordering stage drop retransmitted packets, detect
/// conflicting ones and find sequence gaps without re-reading the telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PacketRef {
    /// Packet sequence count (14 bits) of the packet that carried the record.
    pub seq: u16,
    /// Packet time (CUC of the secondary header) in OBT nanoseconds.
    pub packet_obt_ns: u64,
    /// xxh3-64 of the whole packet's bytes, to tell retransmissions (same hash)
    /// from conflicts (same APID, seq and time, different bytes).
    pub packet_hash: u64,
}

/// One CCD window of a transit (APID 0x101), ICD §4.1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub transit_id: u64,
    pub strip: u8,
    pub row: u8,
    pub fov: u8,
    pub ac: u16,
    pub obt_ns: u64,
    pub onboard_mag: u16,
    pub samples: Vec<u16>,
    /// Added (see [`PacketRef`]): sequence count of the carrying packet.
    pub seq: u16,
    /// Added: packet time of the carrying packet, OBT ns.
    pub packet_obt_ns: u64,
    /// Added: xxh3-64 of the carrying packet's bytes.
    pub packet_hash: u64,
}
record!(Window, Window);

impl Window {
    /// Identity of the packet that carried this record.
    pub fn packet_ref(&self) -> PacketRef {
        PacketRef {
            seq: self.seq,
            packet_obt_ns: self.packet_obt_ns,
            packet_hash: self.packet_hash,
        }
    }
}

/// One attitude sample (APID 0x102), ICD §4.2; `q` is `[x, y, z, w]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attitude {
    pub obt_ns: u64,
    pub q: [f64; 4],
    /// Added (see [`PacketRef`]): sequence count of the carrying packet.
    pub seq: u16,
    /// Added: packet time of the carrying packet, OBT ns.
    pub packet_obt_ns: u64,
    /// Added: xxh3-64 of the carrying packet's bytes.
    pub packet_hash: u64,
}
record!(Attitude, Attitude);

impl Attitude {
    /// Identity of the packet that carried this record.
    pub fn packet_ref(&self) -> PacketRef {
        PacketRef {
            seq: self.seq,
            packet_obt_ns: self.packet_obt_ns,
            packet_hash: self.packet_hash,
        }
    }
}

/// A number or a state name: the engineering value of a housekeeping parameter
/// (ICD §9 `hk.eng`) and the worst value of a health event.
///
/// In JSON it is a bare number or string; in binary product files it is tagged.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    State(String),
}

impl Value {
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(x) => Some(*x),
            Value::State(_) => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
enum TaggedValue {
    Number(f64),
    State(String),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BareValue {
    Number(f64),
    State(String),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (s.is_human_readable(), self) {
            (true, Value::Number(x)) => s.serialize_f64(*x),
            (true, Value::State(n)) => s.serialize_str(n),
            (false, Value::Number(x)) => TaggedValue::Number(*x).serialize(s),
            (false, Value::State(n)) => TaggedValue::State(n.clone()).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Ok(match BareValue::deserialize(d)? {
                BareValue::Number(x) => Value::Number(x),
                BareValue::State(n) => Value::State(n),
            })
        } else {
            Ok(match TaggedValue::deserialize(d)? {
                TaggedValue::Number(x) => Value::Number(x),
                TaggedValue::State(n) => Value::State(n),
            })
        }
    }
}

/// One calibrated housekeeping sample (APID 0x201), ICD §4.3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hk {
    pub obt_ns: u64,
    pub sid: u16,
    pub param: String,
    /// Raw value as transmitted (every u8..i32 and f32 value is exact in f64).
    pub raw: f64,
    pub eng: Value,
    /// Added (see [`PacketRef`]): sequence count of the carrying packet.
    pub seq: u16,
    /// Added: packet time of the carrying packet, OBT ns.
    pub packet_obt_ns: u64,
    /// Added: xxh3-64 of the carrying packet's bytes.
    pub packet_hash: u64,
}
record!(Hk, Hk);

impl Hk {
    /// Identity of the packet that carried this record.
    pub fn packet_ref(&self) -> PacketRef {
        PacketRef {
            seq: self.seq,
            packet_obt_ns: self.packet_obt_ns,
            packet_hash: self.packet_hash,
        }
    }
}

/// A CRC-valid packet whose APID or service is not in ICD §4: kept, not decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownPacket {
    pub delivery: String,
    pub apid: u16,
    pub service: Option<u8>,
    pub subtype: Option<u8>,
    pub seq: u16,
    pub obt_ns: Option<u64>,
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
    /// Added: octet offset of the packet in the delivery's decompressed stream.
    pub offset: u64,
}
record!(UnknownPacket, UnknownPacket);

/// Bytes of a delivery that are not part of any decoded packet (ICD §2, §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantine {
    pub delivery: String,
    pub offset: u64,
    pub length: u64,
    pub reason: String,
    /// Added: the quarantined bytes themselves, so nothing is ever lost.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
}
record!(Quarantine, Quarantine);

/// A hole in an APID's packet sequence count, found in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub apid: u16,
    pub first_missing_seq: u16,
    pub n_missing: u64,
    pub after_obt_ns: u64,
    pub before_obt_ns: u64,
}
record!(Gap, Gap);

/// Image parameters and sky position of one window (ICD §5, §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub transit_id: u64,
    pub strip: u8,
    pub row: u8,
    pub fov: u8,
    pub t_obs_ns: u64,
    /// Image centre in samples from the start of the window.
    pub centroid: f64,
    pub centroid_err: f64,
    /// Flux in e⁻ per CCD transit (whole line spread function).
    pub flux: f64,
    pub flux_err: f64,
    /// Background in e⁻ per sample.
    pub background: f64,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub flags: Flags,
    /// Added: across-scan pixel of the window centre, as in the window record.
    pub ac: u16,
}
record!(Observation, Observation);

/// Sky position of one transit: the normalised mean of its windows' directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transit {
    pub transit_id: u64,
    pub fov: u8,
    pub row: u8,
    pub t_obs_ns: u64,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub n_windows: u32,
    /// G magnitude from the mean flux through the ICD §5 zero point.
    pub mag: Option<f64>,
    pub flags: Flags,
    /// Added: along-scan and across-scan position uncertainty in mas.
    pub sigma_al_mas: Option<f64>,
    pub sigma_ac_mas: Option<f64>,
    /// Added: position angle (degrees east of north, [0, 360)) of the along-scan
    /// direction in which the star image moves at `t_obs_ns`, from the attitude
    /// (the ICRS image of the SRS direction −∂u/∂φ). Health splits residuals into
    /// along-scan and across-scan with it. None without position.
    pub scan_pa_deg: Option<f64>,
}
record!(Transit, Transit);

/// Cross-match result of one transit (ICD §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    pub transit_id: u64,
    pub source_id: Option<i64>,
    pub sep_mas: Option<f64>,
    pub n_candidates: u32,
    pub ambiguous: Vec<i64>,
    pub new_source: Option<u64>,
    /// Added: the matched source's catalogue position propagated to the
    /// transit's epoch (ICD §7), degrees; None if unmatched. Health computes
    /// residuals from it without needing the catalogue.
    pub ra_cat: Option<f64>,
    pub dec_cat: Option<f64>,
}
record!(Match, Match);

/// Severity of a health event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Alarm,
}

/// One episode of one health check (ICD §6 events, §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthEvent {
    pub param: String,
    pub check: String,
    pub severity: Severity,
    pub start_obt_ns: u64,
    pub end_obt_ns: Option<u64>,
    pub worst: Value,
    pub samples: u64,
    pub message: String,
}
record!(HealthEvent, HealthEvent);

/// The simulator's truth of one window (not an ICD §9 product; kind
/// `window_truth`): the star that made it, where and when that star really
/// was, and the true image parameters, for end-to-end tests with known truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowTruth {
    pub transit_id: u64,
    pub strip: u8,
    pub row: u8,
    pub fov: u8,
    pub ac: u16,
    /// OBT of the window's first sample, as in its `window` record.
    pub obt_ns: u64,
    pub source_id: i64,
    /// True centroid c, samples.
    pub centroid: f64,
    /// F, e⁻.
    pub flux: f64,
    /// B, e⁻ per sample.
    pub background: f64,
    /// `observation_time_ns(obt_ns, centroid)`.
    pub t_obs_ns: u64,
    /// True (propagated) direction of the star at t_obs, degrees.
    pub ra_deg: f64,
    pub dec_deg: f64,
    /// Catalogue G of the star.
    pub g: f64,
}
record!(WindowTruth, WindowTruth);

/// One quality flag of an observation or transit; JSON shows its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Flag {
    Saturated = 0,
    Truncated = 1,
    NoAttitude = 2,
    FitFailed = 3,
    NoPosition = 4,
    /// Background could not be constrained by the window and was estimated robustly.
    BackgroundFixed = 5,
}

impl Flag {
    pub const ALL: [Flag; 6] = [
        Flag::Saturated,
        Flag::Truncated,
        Flag::NoAttitude,
        Flag::FitFailed,
        Flag::NoPosition,
        Flag::BackgroundFixed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Saturated => "saturated",
            Flag::Truncated => "truncated",
            Flag::NoAttitude => "no_attitude",
            Flag::FitFailed => "fit_failed",
            Flag::NoPosition => "no_position",
            Flag::BackgroundFixed => "background_fixed",
        }
    }

    pub fn from_name(name: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// A set of [`Flag`]s: a bit set in binary files, an array of names in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u32);

impl Flags {
    pub const EMPTY: Flags = Flags(0);

    pub fn with(mut self, f: Flag) -> Self {
        self.insert(f);
        self
    }

    pub fn insert(&mut self, f: Flag) {
        self.0 |= 1 << f as u8;
    }

    pub fn contains(self, f: Flag) -> bool {
        self.0 & (1 << f as u8) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_u32(self.0);
        }
        let mut seq = s.serialize_seq(None)?;
        for f in self.iter() {
            seq.serialize_element(f.as_str())?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return u32::deserialize(d).map(Flags);
        }
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = Flags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of flag names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Flags, A::Error> {
                let mut flags = Flags::EMPTY;
                while let Some(name) = seq.next_element::<String>()? {
                    let f = Flag::from_name(&name)
                        .ok_or_else(|| de::Error::custom(format!("unknown flag {name:?}")))?;
                    flags.insert(f);
                }
                Ok(flags)
            }
        }
        d.deserialize_seq(Names)
    }
}

/// Byte strings as lowercase hex in JSON, as raw bytes in binary files.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_bytes(b);
        }
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(b.len() * 2);
        for &x in b {
            out.push(DIGITS[(x >> 4) as usize] as char);
            out.push(DIGITS[(x & 15) as usize] as char);
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if !d.is_human_readable() {
            return serde_bytes_vec(d);
        }
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd-length hex string"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }

    fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_names_and_bytes() {
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::from_u8(k as u8), Some(k));
            assert_eq!(RecordKind::from_name(k.as_str()), Some(k));
        }
    }

    #[test]
    fn json_shapes_follow_icd() {
        let o = Observation {
            transit_id: 7,
            strip: 0,
            row: 4,
            fov: 1,
            t_obs_ns: 5,
            centroid: 5.5,
            centroid_err: 0.01,
            flux: 1e5,
            flux_err: 300.0,
            background: 20.0,
            ra: None,
            dec: None,
            flags: Flags::EMPTY.with(Flag::NoAttitude).with(Flag::Saturated),
            ac: 900,
        };
        let j = serde_json::to_value(&o).unwrap();
        assert_eq!(j["flags"], serde_json::json!(["saturated", "no_attitude"]));
        assert!(j["ra"].is_null());
        let back: Observation = serde_json::from_value(j).unwrap();
        assert_eq!(back, o);

        let hk = Hk {
            obt_ns: 1,
            sid: 1,
            param: "HTR_MODE".into(),
            raw: 2.0,
            eng: Value::State("ECO".into()),
            seq: 3,
            packet_obt_ns: 1,
            packet_hash: 9,
        };
        let j = serde_json::to_value(&hk).unwrap();
        assert_eq!(j["eng"], serde_json::json!("ECO"));
        assert_eq!(j["seq"], serde_json::json!(3));
        let q = Quarantine {
            delivery: "d.tm".into(),
            offset: 3,
            length: 2,
            reason: "garbage".into(),
            bytes: vec![0xde, 0xad],
        };
        let j = serde_json::to_value(&q).unwrap();
        assert_eq!(j["bytes"], serde_json::json!("dead"));
        assert_eq!(serde_json::from_value::<Quarantine>(j).unwrap(), q);
    }
}
