//! End to end against a simulated day: every record of every packet that reached
//! the ground intact is decoded exactly (union over deliveries, one copy per
//! packet, compared with `truth/expected`), and the quarantined bytes of each
//! delivery are exactly its injected faults.

use meridian_core::product::read_all;
use meridian_core::records::{Attitude, Hk, Quarantine, UnknownPacket, Window};
use meridian_sim::day::{DayConfig, simulate_day};
use meridian_sim::downlink::{DeliveryTruth, DownlinkConfig};
use meridian_sim::science::ScienceConfig;
use meridian_telemetry::MissionDb;
use meridian_telemetry::delivery::{DeliveryReport, decode_deliveries, delivery_dir, delivery_id};
use meridian_telemetry::input::DecodeOptions;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

fn short_faulty_day() -> DayConfig {
    DayConfig {
        seed: 42,
        duration_s: 4800.0,
        science: ScienceConfig {
            n_stars: 200_000,
            ..ScienceConfig::default()
        },
        downlink: DownlinkConfig {
            pass_interval_s: 600.0,
            drop_rate: 0.01,
            corrupt_rate: 0.02,
            duplicate_rate: 0.03,
            garbage_rate: 0.02,
            idle_rate: 0.02,
            truncate_fraction: 0.7,
            events_per_pass: 2,
            ..DownlinkConfig::default()
        },
        ..DayConfig::default()
    }
}

/// Merged `[start, end)` ranges.
fn merged(mut spans: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    spans.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in spans.into_iter().filter(|(a, b)| a < b) {
        match out.last_mut() {
            Some(last) if last.1 >= a => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Records of each distinct packet (by hash) in first-seen order, then sorted
/// like the truth: (packet time, seq), records of a packet in packet order.
fn union_by_packet<R: meridian_core::Record>(
    folders: &[PathBuf],
    file: &str,
    key: impl Fn(&R) -> (u64, u64, u16),
) -> Vec<R> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for f in folders {
        let records: Vec<R> = read_all(f.join(file)).unwrap();
        let fresh: HashSet<u64> = records
            .iter()
            .map(|r| key(r).0)
            .filter(|h| !seen.contains(h))
            .collect();
        out.extend(records.into_iter().filter(|r| fresh.contains(&key(r).0)));
        seen.extend(fresh);
    }
    out.sort_by_key(|r| {
        let (_, t, s) = key(r);
        (t, s)
    });
    out
}

#[test]
fn a_simulated_day_decodes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let day = tmp.path().join("day");
    let stats = simulate_day(&short_faulty_day(), &day).unwrap();
    let db = MissionDb::load(day.join("mission_db.toml")).unwrap();
    let mut deliveries: Vec<PathBuf> = std::fs::read_dir(day.join("deliveries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    deliveries.sort();
    let out = tmp.path().join("out");
    let summary = decode_deliveries(
        &deliveries,
        &db,
        &out,
        DecodeOptions::default(),
        &meridian_core::stage::NoProgress,
    )
    .unwrap();
    assert_eq!(summary.failed, 0, "{:?}", summary.deliveries);
    assert_eq!(summary.decoded, stats.deliveries);

    let folders: Vec<PathBuf> = deliveries
        .iter()
        .map(|p| delivery_dir(&out, &delivery_id(&std::fs::read(p).unwrap())))
        .collect();
    let expected = day.join("truth/expected");
    let windows: Vec<Window> = union_by_packet(&folders, "window.mprod", |w: &Window| {
        (w.packet_hash, w.packet_obt_ns, w.seq)
    });
    assert!(!windows.is_empty());
    assert!(windows == read_all::<Window>(expected.join("window.mprod")).unwrap());
    let attitude: Vec<Attitude> = union_by_packet(&folders, "attitude.mprod", |a: &Attitude| {
        (a.packet_hash, a.packet_obt_ns, a.seq)
    });
    assert!(attitude == read_all::<Attitude>(expected.join("attitude.mprod")).unwrap());
    let hk: Vec<Hk> = union_by_packet(&folders, "hk.mprod", |h: &Hk| {
        (h.packet_hash, h.packet_obt_ns, h.seq)
    });
    assert!(hk == read_all::<Hk>(expected.join("hk.mprod")).unwrap());

    let truth: BTreeMap<String, DeliveryTruth> =
        std::fs::read_to_string(day.join("truth/deliveries.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<DeliveryTruth>(l).unwrap())
            .map(|t| (t.name.clone(), t))
            .collect();
    let mut faults_seen = 0;
    for (path, folder) in deliveries.iter().zip(&folders) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        check_delivery(&name, folder, &truth[&name]);
        faults_seen += truth[&name].corrupted.len() + truth[&name].garbage.len();
    }
    assert!(faults_seen > 5, "the day should exercise faults");
    assert!(windows.len() > 1000 && attitude.len() > 1000 && hk.len() > 1000);
}

/// Quarantine = injected faults (byte for byte), unknown packets = event
/// reports, idle and packet counts as injected.
fn check_delivery(name: &str, folder: &Path, t: &DeliveryTruth) {
    let report: DeliveryReport =
        serde_json::from_slice(&std::fs::read(folder.join("report.json")).unwrap()).unwrap();
    assert!(report.accounting.balanced);
    assert_eq!(report.stats.decompressed_len, t.stream_len, "{name}");
    assert_eq!(report.stats.packets, t.intact_packets, "{name}");
    assert_eq!(report.stats.malformed_packets, 0, "{name}");
    let idle: u64 = t.idle.iter().map(|s| s.length).sum();
    assert_eq!(
        (report.stats.idle_packets, report.stats.idle_bytes),
        (t.idle.len() as u64, idle),
        "{name}"
    );

    let q: Vec<Quarantine> = read_all(folder.join("quarantine.mprod")).unwrap();
    let got = merged(q.iter().map(|q| (q.offset, q.offset + q.length)).collect());
    let faults = merged(
        t.corrupted
            .iter()
            .map(|s| (s.offset, s.offset + s.length))
            .chain(t.garbage.iter().map(|s| (s.offset, s.offset + s.length)))
            .chain(t.truncated.iter().map(|s| (s.offset, s.offset + s.length)))
            .collect(),
    );
    assert_eq!(got, faults, "{name}: quarantined spans vs injected faults");
    for r in &q {
        assert_eq!(r.delivery, name);
        assert_eq!(r.bytes.len() as u64, r.length);
        assert!(
            ["garbage", "crc_mismatch", "truncated_packet"].contains(&r.reason.as_str()),
            "{}",
            r.reason
        );
    }
    for s in &t.truncated {
        assert!(
            q.iter()
                .any(|r| r.offset == s.offset && r.reason == "truncated_packet"),
            "{name}: truncated packet at {} not reported as such",
            s.offset
        );
    }
    let unknown: Vec<UnknownPacket> = read_all(folder.join("unknown_packet.mprod")).unwrap();
    let offsets: Vec<u64> = unknown.iter().map(|u| u.offset).collect();
    let want: Vec<u64> = t.unknown.iter().map(|s| s.offset).collect();
    assert_eq!(offsets, want, "{name}: unknown packets");
}
