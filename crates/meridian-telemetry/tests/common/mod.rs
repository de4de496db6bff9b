//! Test streams with known truth: valid packets of every ICD §4 kind (plus unknown
//! ones and idle packets) and the records each must decode into.
#![allow(dead_code)]

use meridian_core::records::{Attitude, Hk, PacketRef, Window};
use meridian_telemetry::MissionDb;
use meridian_telemetry::appdata::{encode_attitude, encode_hk, encode_windows};
use meridian_telemetry::decode::Decoded;
use meridian_telemetry::packet::{SecondaryHeader, encode_idle, encode_packet};
use std::path::Path;

pub const DB: &str = r#"
[[structure]]
sid = 1
name = "THERMAL"
[[structure.param]]
name = "FPA_TEMP_1"
type = "u16"
unit = "K"
calibration = { polynomial = [100.0, 0.01] }
[[structure.param]]
name = "HTR_MODE"
type = "u8"
calibration = { states = { 0 = "OFF", 1 = "NOMINAL", 2 = "ECO" } }

[[structure]]
sid = 2
name = "POWER"
[[structure.param]]
name = "BUS_V"
type = "f32"
[[structure.param]]
name = "BUS_I"
type = "i32"
calibration = { polynomial = [0.0, 0.001, 1e-9] }
[[structure.param]]
name = "CNT"
type = "u32"
"#;

pub fn db() -> MissionDb {
    MissionDb::parse(DB, Path::new("test_db.toml")).unwrap()
}

/// Deterministic splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One packet of a generated stream and what it must decode into.
#[derive(Debug, Clone)]
pub struct TruthPacket {
    pub apid: u16,
    pub bytes: Vec<u8>,
    pub records: Decoded,
    /// An APID/service outside ICD §4.
    pub unknown: bool,
}

/// A generated packet, or an idle packet (`records` empty, `apid` 0x7FF).
pub fn random_packet(rng: &mut Rng, db: &MissionDb, seq: u16) -> TruthPacket {
    let obt = 1_000_000_000_000 + rng.below(1 << 40);
    let sec_time = meridian_core::time::cuc_round(obt);
    let mut bytes = Vec::new();
    let mut records = Decoded::default();
    let (apid, service, data, unknown) = match rng.below(10) {
        0..=3 => {
            let n = rng.below(6) as usize;
            let ws: Vec<Window> = (0..n).map(|_| random_window(rng)).collect();
            let mut data = Vec::new();
            encode_windows(&mut data, &ws);
            records.windows = ws;
            (0x101, (200, 1), data, false)
        }
        4..=5 => {
            let n = rng.below(8) as usize;
            let s: Vec<(u64, [f64; 4])> = (0..n)
                .map(|_| {
                    let q = [0, 1, 2, 3].map(|_| (rng.below(2000) as f64 - 1000.0) / 1000.0);
                    (rng.next(), q)
                })
                .collect();
            let mut data = Vec::new();
            encode_attitude(&mut data, &s);
            records.attitude = s
                .iter()
                .map(|&(obt_ns, q)| Attitude {
                    obt_ns,
                    q,
                    seq: 0,
                    packet_obt_ns: 0,
                    packet_hash: 0,
                })
                .collect();
            (0x102, (200, 2), data, false)
        }
        6..=7 => {
            let structure = &db.structures[rng.below(2) as usize];
            let raw: Vec<f64> = structure
                .params
                .iter()
                .map(|p| match p.ptype {
                    meridian_telemetry::mission_db::ParamType::U8 => rng.below(4) as f64,
                    meridian_telemetry::mission_db::ParamType::F32 => {
                        (rng.below(100_000) as f32 / 7.0) as f64
                    }
                    meridian_telemetry::mission_db::ParamType::I32 => {
                        rng.below(2_000_000) as f64 - 1_000_000.0
                    }
                    _ => rng.below(60_000) as f64,
                })
                .collect();
            let mut data = Vec::new();
            encode_hk(&mut data, structure, &raw);
            records.hk = structure
                .params
                .iter()
                .zip(&raw)
                .map(|(p, &raw)| Hk {
                    obt_ns: sec_time,
                    sid: structure.sid,
                    param: p.name.clone(),
                    raw,
                    eng: p.calibration.apply(raw),
                    seq: 0,
                    packet_obt_ns: 0,
                    packet_hash: 0,
                })
                .collect();
            (0x201, (3, 25), data, false)
        }
        8 => {
            // Known APID, other service; or an APID outside the ICD.
            let len = rng.below(40) as usize;
            let data = rng.bytes(len);
            if rng.below(2) == 0 {
                (0x101, (200, 9), data, true)
            } else {
                (0x300 + rng.below(16) as u16, (5, 1), data, true)
            }
        }
        _ => {
            encode_idle(&mut bytes, seq, 7 + rng.below(60) as usize);
            return TruthPacket {
                apid: 0x7FF,
                bytes,
                records,
                unknown: false,
            };
        }
    };
    let sec = SecondaryHeader::new(service.0, service.1, seq, obt);
    encode_packet(&mut bytes, apid, seq, &sec, &data).unwrap();
    let pref = PacketRef {
        seq: seq % 16384,
        packet_obt_ns: sec_time,
        packet_hash: xxhash_rust::xxh3::xxh3_64(&bytes),
    };
    fill_refs(&mut records, pref);
    TruthPacket {
        apid,
        bytes,
        records,
        unknown,
    }
}

fn random_window(rng: &mut Rng) -> Window {
    let k = 1 + rng.below(32) as usize;
    Window {
        transit_id: rng.next(),
        strip: rng.below(9) as u8,
        row: 1 + rng.below(7) as u8,
        fov: rng.below(2) as u8,
        ac: rng.below(1966) as u16,
        obt_ns: rng.next(),
        onboard_mag: rng.below(21000) as u16,
        samples: (0..k).map(|_| rng.next() as u16).collect(),
        seq: 0,
        packet_obt_ns: 0,
        packet_hash: 0,
    }
}

pub fn fill_refs(r: &mut Decoded, p: PacketRef) {
    for w in &mut r.windows {
        (w.seq, w.packet_obt_ns, w.packet_hash) = (p.seq, p.packet_obt_ns, p.packet_hash);
    }
    for a in &mut r.attitude {
        (a.seq, a.packet_obt_ns, a.packet_hash) = (p.seq, p.packet_obt_ns, p.packet_hash);
    }
    for h in &mut r.hk {
        (h.seq, h.packet_obt_ns, h.packet_hash) = (p.seq, p.packet_obt_ns, p.packet_hash);
    }
}

/// `n` random packets (some idle) from `seed`.
pub fn packets(seed: u64, n: usize) -> Vec<TruthPacket> {
    let db = db();
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| random_packet(&mut rng, &db, i as u16))
        .collect()
}

/// A stream built from `packets` with injected faults, and where its intact
/// (non-idle) packets lie.
#[derive(Debug, Clone, Default)]
pub struct FaultyStream {
    pub bytes: Vec<u8>,
    /// `(offset, len)` of every TM packet whose bytes are intact (copies too).
    pub intact: Vec<(usize, usize)>,
    pub flipped: usize,
    pub garbage_runs: usize,
    pub duplicated_spans: usize,
    pub truncated: bool,
}

/// Faults, each with probability `rate_percent`%: bit flips (1–3) inside a
/// packet, a garbage run before a packet, a duplicated span of earlier bytes;
/// and a truncated last packet.
pub fn faulty_stream(seed: u64, packets: &[TruthPacket], rate_percent: u64) -> FaultyStream {
    let mut rng = Rng(seed ^ 0xFA17);
    let mut s = FaultyStream::default();
    for p in packets {
        if rng.below(100) < rate_percent {
            s.garbage_runs += 1;
            let n = 1 + rng.below(120) as usize;
            s.bytes.extend(rng.bytes(n));
        }
        if rng.below(100) < rate_percent / 2 && !s.bytes.is_empty() {
            s.duplicated_spans += 1;
            let a = rng.below(s.bytes.len() as u64) as usize;
            let b = (a + 1 + rng.below(400) as usize).min(s.bytes.len());
            let at = s.bytes.len();
            let copies: Vec<_> = s
                .intact
                .iter()
                .filter(|&&(o, l)| o >= a && o + l <= b)
                .map(|&(o, l)| (at + o - a, l))
                .collect();
            s.bytes.extend_from_within(a..b);
            s.intact.extend(copies);
        }
        let at = s.bytes.len();
        s.bytes.extend_from_slice(&p.bytes);
        if p.apid != 0x7FF && rng.below(100) < rate_percent {
            s.flipped += 1;
            for _ in 0..1 + rng.below(3) {
                let i = at + rng.below(p.bytes.len() as u64) as usize;
                s.bytes[i] ^= 1 << rng.below(8);
            }
        } else if p.apid != 0x7FF {
            s.intact.push((at, p.bytes.len()));
        }
    }
    if let Some(last) = packets.last().filter(|_| rng.below(100) < 3 * rate_percent) {
        s.truncated = true;
        let keep = rng.below(last.bytes.len() as u64) as usize;
        s.bytes.extend_from_slice(&last.bytes[..keep.max(1)]);
    }
    s
}
