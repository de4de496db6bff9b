//! Housekeeping simulation: packets parse back independently, generation is
//! deterministic, and the expected health events are exactly what a reference
//! ICD §6 checker (written here, independently of the simulator's derivation)
//! reports over the generated samples.

use meridian_core::records::Severity;
use meridian_sim::hk::{HkConfig, HkSim, NonEvent, TruthEvent, db::MISSION_DB_TOML};
use meridian_sim::{GeneratedPacket, PacketContent};
use meridian_telemetry::mission_db::{MissionDb, ParamType};
use std::path::Path;

mod hk_reference;
use hk_reference::reference_events;

const START: u64 = 500_000_000 * 1_000_000_000 + 123_456_789;
const DAY_S: f64 = 2.0 * 3600.0;

fn day(seed: u64) -> (Vec<GeneratedPacket>, HkSim) {
    let mut sim = HkSim::new(seed, START, DAY_S, &HkConfig::default()).unwrap();
    let packets: Vec<_> = sim.by_ref().collect();
    (packets, sim)
}

/// Bitwise CRC-16/CCITT-FALSE, independent of the telemetry crate's tables.
fn crc_ccitt_false(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in bytes {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Parses one housekeeping packet by hand: header fields, CRC, then the
/// parameters of its structure in database order.
fn parse_by_hand(db: &MissionDb, b: &[u8]) -> (u16, u16, u64, u16, Vec<f64>) {
    assert_eq!(crc_ccitt_false(b"123456789"), 0x29B1);
    let id = u16::from_be_bytes([b[0], b[1]]);
    assert_eq!(id >> 11, 0b00001, "version 0, telemetry, secondary header");
    let apid = id & 0x7FF;
    let seq_word = u16::from_be_bytes([b[2], b[3]]);
    assert_eq!(seq_word >> 14, 0b11);
    let len = u16::from_be_bytes([b[4], b[5]]) as usize + 7;
    assert_eq!(len, b.len());
    assert_eq!(
        crc_ccitt_false(&b[..len - 2]),
        u16::from_be_bytes([b[len - 2], b[len - 1]])
    );
    assert_eq!(b[6], 0x20, "PUS version 2");
    assert_eq!((b[7], b[8]), (3, 25));
    let coarse = u32::from_be_bytes(b[13..17].try_into().unwrap()) as u64;
    let fine = u32::from_be_bytes([0, b[17], b[18], b[19]]) as u64;
    let obt = coarse * 1_000_000_000 + fine * 1_000_000_000 / (1 << 24);
    let sid = u16::from_be_bytes([b[20], b[21]]);
    let s = db.structure(sid).expect("known structure");
    let mut at = 22;
    let mut raw = Vec::new();
    for p in &s.params {
        let n = p.ptype.size();
        let f = &b[at..at + n];
        raw.push(match p.ptype {
            ParamType::U8 => f[0] as f64,
            ParamType::U16 => u16::from_be_bytes([f[0], f[1]]) as f64,
            ParamType::I16 => i16::from_be_bytes([f[0], f[1]]) as f64,
            ParamType::U32 => u32::from_be_bytes(f.try_into().unwrap()) as f64,
            ParamType::I32 => i32::from_be_bytes(f.try_into().unwrap()) as f64,
            ParamType::F32 => f32::from_be_bytes(f.try_into().unwrap()) as f64,
        });
        at += n;
    }
    assert_eq!(at, len - 2, "no octets between the parameters and the CRC");
    (apid, seq_word & 0x3FFF, obt, sid, raw)
}

#[test]
fn packets_parse_back_and_match_their_content() {
    let db = MissionDb::parse(MISSION_DB_TOML, Path::new("mission_db.toml")).unwrap();
    let (packets, _) = day(7);
    assert!(packets.len() > 2500, "{} reports", packets.len());
    let mut last = 0;
    for (i, p) in packets.iter().enumerate() {
        let (apid, seq, obt, sid, raw) = parse_by_hand(&db, &p.bytes);
        assert_eq!((apid, seq, obt), (0x201, p.seq, p.obt_ns));
        assert_eq!(seq as usize, i % 16384);
        assert!(obt >= last, "time order");
        last = obt;
        let PacketContent::Housekeeping { sid: s, raw: r } = &p.content else {
            panic!("not housekeeping")
        };
        assert_eq!((sid, &raw), (*s, r));
    }
}

#[test]
fn same_seed_same_packets_and_truth() {
    let (a, sa) = day(11);
    let (b, sb) = day(11);
    assert_eq!(a, b);
    let end = a.last().unwrap().obt_ns;
    assert_eq!(sa.truth(end).unwrap(), sb.truth(end).unwrap());
    let (c, _) = day(12);
    assert_ne!(a, c);
}

fn strip_anomaly(events: &[TruthEvent]) -> Vec<TruthEvent> {
    events
        .iter()
        .map(|e| TruthEvent {
            anomaly: String::new(),
            ..e.clone()
        })
        .collect()
}

#[test]
fn truth_equals_a_reference_checker_over_several_seeds() {
    for seed in [1, 2, 3, 4, 5] {
        let (packets, sim) = day(seed);
        let end = packets.iter().map(|p| p.obt_ns).max().unwrap();
        let truth = sim.truth(end).unwrap();
        let reference = reference_events(sim.db(), &hk_reference::rows_of_packets(&packets), end);
        assert_eq!(strip_anomaly(&truth.events), reference, "seed {seed}");
        let checks: std::collections::BTreeSet<_> =
            truth.events.iter().map(|e| e.check.as_str()).collect();
        assert_eq!(
            checks.into_iter().collect::<Vec<_>>(),
            ["delta", "frozen", "limit", "stale", "state"]
        );
        assert!(
            truth
                .events
                .iter()
                .any(|e| e.severity == Severity::Alarm && e.check == "limit")
        );
        assert!(
            truth
                .events
                .iter()
                .any(|e| e.check == "stale" && e.end_obt_ns.is_none())
        );
        let non: Vec<&str> = truth
            .non_events
            .iter()
            .map(|n| n.anomaly.as_str())
            .collect();
        for a in [
            "limit_short",
            "limit_long_short",
            "frozen_edge",
            "context",
            "state_short",
        ] {
            assert!(non.contains(&a), "seed {seed}: {a} missing from {non:?}");
        }
    }
}

/// The persistence edge by explicit enumeration: FPA_TEMP_1 (persistence 3,
/// warning high 170 K) leaves its limits for exactly 2 samples once (no event)
/// and exactly 3 samples once (one event), and nowhere else.
#[test]
fn persistence_edge_by_enumeration() {
    let (packets, sim) = day(21);
    let end = packets.last().unwrap().obt_ns;
    let truth = sim.truth(end).unwrap();
    let temps: Vec<(u64, f64, f64)> = packets
        .iter()
        .filter_map(|p| match &p.content {
            // THERMAL: FPA_TEMP_1 is raw[0] (K = 100 + 0.01 raw), HTR_MODE raw[3].
            PacketContent::Housekeeping { sid: 1, raw } => {
                Some((p.obt_ns, 100.0 + 0.01 * raw[0], raw[3]))
            }
            _ => None,
        })
        .collect();
    // Maximal runs above 170 K (the ECO context only lowers the low limit).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < temps.len() {
        if temps[i].1 > 170.0 {
            let from = i;
            while i < temps.len() && temps[i].1 > 170.0 {
                i += 1;
            }
            runs.push((from, i - from));
        } else {
            i += 1;
        }
    }
    let lengths: Vec<usize> = runs.iter().map(|r| r.1).collect();
    let mut sorted = lengths.clone();
    sorted.sort();
    assert_eq!(sorted, [2, 3], "runs above the warning limit: {lengths:?}");
    let (two, three) = if runs[0].1 == 2 {
        (runs[0], runs[1])
    } else {
        (runs[1], runs[0])
    };
    let fpa: Vec<&TruthEvent> = truth
        .events
        .iter()
        .filter(|e| e.param == "FPA_TEMP_1")
        .collect();
    assert_eq!(fpa.len(), 1, "{fpa:?}");
    let e = fpa[0];
    assert_eq!(
        (e.check.as_str(), e.severity, e.samples),
        ("limit", Severity::Warning, 3)
    );
    assert_eq!(e.start_obt_ns, temps[three.0].0);
    assert_eq!(
        e.end_obt_ns,
        Some(temps[three.0 + 3].0),
        "end = first good sample"
    );
    let peak = (three.0..three.0 + 3)
        .map(|k| temps[k].1)
        .fold(f64::MIN, f64::max);
    assert_eq!(e.worst.as_number(), Some(peak));
    let short: Vec<&NonEvent> = truth
        .non_events
        .iter()
        .filter(|n| n.anomaly == "limit_short")
        .collect();
    assert_eq!(short.len(), 1);
    assert_eq!(
        (short[0].samples, short[0].start_obt_ns),
        (2, temps[two.0].0)
    );
    // The ECO period cools FPA_TEMP_1 below 160 K with no event.
    let cold: Vec<&(u64, f64, f64)> = temps.iter().filter(|t| t.1 < 160.0).collect();
    assert!(!cold.is_empty() && cold.iter().all(|t| t.2 == 2.0 && t.1 >= 150.0));
}

#[test]
fn protected_slots_cover_every_anomaly() {
    let (_, sim) = day(3);
    let slots = sim.protected();
    assert_eq!(slots.len(), 14);
    for w in slots.windows(2) {
        assert!(w[0].1 <= w[1].0 || w[1].1 <= w[0].0, "slots overlap: {w:?}");
    }
}
