//! The downlink on its own: a perfect link delivers each packet once in priority
//! order, faults respect protection and the per-structure loss bound, the
//! configuration is validated, and the sync detector is right.

use meridian_sim::downlink::{DeliveryTruth, Downlink, DownlinkConfig, false_sync};
use meridian_sim::hk::{HkConfig, HkSim};
use meridian_sim::{GeneratedPacket, PacketContent};
use meridian_telemetry::appdata::encode_attitude;
use meridian_telemetry::packet::{SecondaryHeader, encode_idle, encode_packet};
use proptest::prelude::*;
use std::collections::BTreeMap;

const START: u64 = 510_000_000_000_000_000;

/// One attitude packet per 10 s and the housekeeping of `hours`, in time order.
fn packets(hours: f64) -> Vec<GeneratedPacket> {
    let mut out: Vec<GeneratedPacket> =
        HkSim::new(3, START, hours * 3600.0, &HkConfig { anomalies: false })
            .unwrap()
            .collect();
    let n = (hours * 360.0) as u64;
    for k in 0..n {
        let t = START + k * 10_000_000_000;
        let samples: Vec<(u64, [f64; 4])> = (0..10)
            .map(|i| (t + i * 1_000_000_000, [0.0, 0.0, 0.0, 1.0]))
            .collect();
        let mut app = Vec::new();
        encode_attitude(&mut app, &samples);
        let mut bytes = Vec::new();
        let seq = (k % 16384) as u16;
        encode_packet(
            &mut bytes,
            0x102,
            seq,
            &SecondaryHeader::new(200, 2, seq, t),
            &app,
        )
        .unwrap();
        out.push(GeneratedPacket {
            apid: 0x102,
            seq,
            obt_ns: t,
            bytes,
            content: PacketContent::Attitude(samples),
        });
    }
    out.sort_by_key(|p| (p.obt_ns, p.apid));
    out
}

fn sid(p: &GeneratedPacket) -> Option<u16> {
    match p.content {
        PacketContent::Housekeeping { sid, .. } => Some(sid),
        _ => None,
    }
}

fn run(
    cfg: &DownlinkConfig,
    ps: &[GeneratedPacket],
    protect: impl Fn(&GeneratedPacket) -> bool,
) -> (Vec<u32>, Vec<DeliveryTruth>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Downlink::new(42, START, cfg, dir.path()).unwrap();
    let fates = ps
        .iter()
        .map(|p| d.push(p, protect(p), sid(p)).unwrap().intact_copies)
        .collect();
    let (deliveries, _) = d.finish().unwrap();
    (fates, deliveries, dir)
}

#[test]
fn a_perfect_link_delivers_everything_once_housekeeping_first() {
    let ps = packets(1.0);
    let cfg = DownlinkConfig {
        pass_interval_s: 600.0,
        max_deliveries_per_pass: 1,
        ..DownlinkConfig::perfect()
    };
    let (fates, deliveries, dir) = run(&cfg, &ps, |_| false);
    assert!(fates.iter().all(|&f| f == 1));
    let mut all = Vec::new();
    for d in &deliveries {
        assert!(!d.compressed);
        let bytes = std::fs::read(dir.path().join(&d.name)).unwrap();
        assert_eq!(bytes.len() as u64, d.stream_len);
        all.push((d.pass, bytes));
    }
    let stream: Vec<u8> = all.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(
        stream.len(),
        ps.iter().map(|p| p.bytes.len()).sum::<usize>()
    );
    // Pass 0 has only housekeeping (science waits one pass); in every pass the
    // housekeeping comes before the science.
    let first_apid = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]) & 0x7FF;
    assert_eq!(first_apid(&all[0].1), 0x201);
    let last_pass = all.last().unwrap().0;
    assert!(last_pass >= 5);
    for (pass, bytes) in &all {
        let mut o = 0;
        let mut seen_science = false;
        while o < bytes.len() {
            let apid = first_apid(&bytes[o..]);
            let len = u16::from_be_bytes([bytes[o + 4], bytes[o + 5]]) as usize + 7;
            if apid == 0x102 {
                seen_science = true;
                let t = ps
                    .iter()
                    .find(|p| p.bytes == bytes[o..o + len])
                    .unwrap()
                    .obt_ns;
                // Science waits one pass, except in the final flush.
                assert!(
                    t < START + pass * 600_000_000_000 || *pass == last_pass,
                    "science of pass {pass} is older than the pass"
                );
            } else {
                assert!(!seen_science, "housekeeping after science in pass {pass}");
            }
            o += len;
        }
    }
}

#[test]
fn protected_packets_survive_and_structures_lose_at_most_two_in_a_row() {
    let ps = packets(1.0);
    let cfg = DownlinkConfig {
        drop_rate: 1.0,
        corrupt_rate: 0.5,
        retransmit_rate: 0.0,
        ..DownlinkConfig::default()
    };
    let window = (START + 1_000_000_000_000, START + 1_500_000_000_000);
    let protect = |p: &GeneratedPacket| p.apid == 0x201 && (window.0..window.1).contains(&p.obt_ns);
    let (fates, _, _) = run(&cfg, &ps, protect);
    let mut run_len: BTreeMap<u16, u32> = BTreeMap::new();
    let mut lost = 0;
    for (p, &f) in ps.iter().zip(&fates) {
        if protect(p) {
            assert!(f >= 1, "protected packet lost at {}", p.obt_ns);
        }
        if let Some(s) = sid(p) {
            let r = run_len.entry(s).or_default();
            *r = if f == 0 { *r + 1 } else { 0 };
            assert!(*r <= 2, "structure {s} lost {r} reports in a row");
        }
        lost += (f == 0) as u32;
    }
    assert!(lost > 100, "the faults did happen ({lost} lost)");
}

#[test]
fn configuration_is_validated_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    for (cfg, needle) in [
        (
            DownlinkConfig {
                drop_rate: 1.5,
                ..Default::default()
            },
            "drop_rate",
        ),
        (
            DownlinkConfig {
                pass_interval_s: 0.0,
                ..Default::default()
            },
            "pass_interval_s",
        ),
        (
            DownlinkConfig {
                max_zstd_frames: 0,
                ..Default::default()
            },
            "max_zstd_frames",
        ),
    ] {
        let e = Downlink::new(1, START, &cfg, dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(needle), "{e}");
    }
    let json = serde_json::to_string(&DownlinkConfig::default()).unwrap();
    assert_eq!(
        serde_json::from_str::<DownlinkConfig>(&json).unwrap(),
        DownlinkConfig::default()
    );
    assert_eq!(
        serde_json::from_str::<DownlinkConfig>("{}").unwrap(),
        DownlinkConfig::default()
    );
    assert!(serde_json::from_str::<DownlinkConfig>(r#"{"drop_rat": 0.1}"#).is_err());
}

#[test]
fn same_seed_same_deliveries() {
    let ps = packets(0.5);
    let cfg = DownlinkConfig {
        corrupt_rate: 0.05,
        garbage_rate: 0.05,
        duplicate_rate: 0.05,
        ..Default::default()
    };
    let (fa, da, dir_a) = run(&cfg, &ps, |_| false);
    let (fb, db, dir_b) = run(&cfg, &ps, |_| false);
    assert_eq!((fa, &da), (fb, &db));
    for d in &da {
        assert_eq!(
            std::fs::read(dir_a.path().join(&d.name)).unwrap(),
            std::fs::read(dir_b.path().join(&d.name)).unwrap()
        );
    }
}

#[test]
fn sync_points_are_crc_valid_packets_or_idle_at_a_boundary() {
    let mut buf = vec![0xAB, 0xCD];
    encode_packet(
        &mut buf,
        0x101,
        5,
        &SecondaryHeader::new(200, 1, 0, 7),
        &[0, 0],
    )
    .unwrap();
    let idle_at = buf.len();
    encode_idle(&mut buf, 1, 20);
    assert!(false_sync(&buf, 2, false));
    assert!(!false_sync(&buf, 0, true) && !false_sync(&buf, 3, true));
    assert!(false_sync(&buf, idle_at, true));
    assert!(
        !false_sync(&buf, idle_at, false),
        "idle is only recognised where a packet ended"
    );
    buf[10] ^= 1;
    assert!(!false_sync(&buf, 2, false), "CRC mismatch");
}

proptest! {
    #[test]
    fn sync_detection_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), o in 0usize..320) {
        let _ = false_sync(&bytes, o, o % 2 == 0);
    }
}
