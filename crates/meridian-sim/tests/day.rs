//! A whole simulated day: deterministic files, and a truth that is
//! self-consistent when checked against the deliveries with an independent,
//! minimal resynchronising packet scanner written here.

use meridian_core::product::read_all;
use meridian_core::records::{Attitude, Gap, Hk, Window};
use meridian_sim::day::{DayConfig, DayStats, simulate_day};
use meridian_sim::downlink::{DeliveryTruth, DownlinkConfig};
use meridian_sim::science::ScienceConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod hk_reference;

fn small_day(seed: u64) -> DayConfig {
    DayConfig {
        seed,
        duration_s: 4800.0,
        science: ScienceConfig {
            n_stars: 20_000,
            ..ScienceConfig::default()
        },
        downlink: DownlinkConfig {
            pass_interval_s: 900.0,
            drop_rate: 0.01,
            corrupt_rate: 0.01,
            duplicate_rate: 0.03,
            garbage_rate: 0.01,
            idle_rate: 0.01,
            truncate_fraction: 0.7,
            events_per_pass: 2,
            ..DownlinkConfig::default()
        },
        ..DayConfig::default()
    }
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn crc(bytes: &[u8]) -> u16 {
    let mut c = 0xFFFFu16;
    for &b in bytes {
        c ^= (b as u16) << 8;
        for _ in 0..8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            };
        }
    }
    c
}

/// A CRC-valid telemetry packet at `o`: (apid, seq, packet time, length).
fn packet_at(s: &[u8], o: usize) -> Option<(u16, u16, u64, usize)> {
    let h = s.get(o..o + 6)?;
    let id = u16::from_be_bytes([h[0], h[1]]);
    let seq = u16::from_be_bytes([h[2], h[3]]);
    if id >> 11 != 1 || seq >> 14 != 3 || id & 0x7FF == 0x7FF {
        return None;
    }
    let len = u16::from_be_bytes([h[4], h[5]]) as usize + 7;
    if len < 22 {
        return None;
    }
    let p = s.get(o..o + len)?;
    if crc(&p[..len - 2]) != u16::from_be_bytes([p[len - 2], p[len - 1]]) {
        return None;
    }
    let coarse = u32::from_be_bytes(p[13..17].try_into().unwrap()) as u64;
    let fine = u32::from_be_bytes([0, p[17], p[18], p[19]]) as u64;
    Some((
        id & 0x7FF,
        seq & 0x3FFF,
        coarse * 1_000_000_000 + fine * 1_000_000_000 / (1 << 24),
        len,
    ))
}

/// An idle packet header at `o`: its length.
fn idle_at(s: &[u8], o: usize) -> Option<usize> {
    let h = s.get(o..o + 6)?;
    let id = u16::from_be_bytes([h[0], h[1]]);
    let seq = u16::from_be_bytes([h[2], h[3]]);
    (id == 0x07FF && seq >> 14 == 3).then(|| u16::from_be_bytes([h[4], h[5]]) as usize + 7)
}

struct Scan {
    /// (offset, apid, seq, obt, xxh3 of the packet).
    packets: Vec<(usize, u16, u16, u64, u64)>,
    idle: Vec<(usize, usize)>,
    /// Maximal runs of bytes that are part of no packet.
    skipped: Vec<(usize, usize)>,
}

/// What an ICD §2 decoder recovers from a stream: packets where header, length
/// and CRC agree; idle packets only where a packet ended; everything else skipped.
fn scan(s: &[u8]) -> Scan {
    let mut out = Scan {
        packets: vec![],
        idle: vec![],
        skipped: vec![],
    };
    let (mut o, mut boundary, mut skip_from) = (0, true, None);
    while o < s.len() {
        if let Some((apid, seq, t, len)) = packet_at(s, o) {
            if let Some(f) = skip_from.take() {
                out.skipped.push((f, o - f));
            }
            out.packets
                .push((o, apid, seq, t, xxhash_rust::xxh3::xxh3_64(&s[o..o + len])));
            o += len;
            boundary = true;
        } else if let Some(len) = idle_at(s, o).filter(|&l| boundary && o + l <= s.len()) {
            out.idle.push((o, len));
            o += len;
        } else {
            skip_from.get_or_insert(o);
            boundary = false;
            o += 1;
        }
    }
    if let Some(f) = skip_from {
        out.skipped.push((f, s.len() - f));
    }
    out
}

fn stream(dir: &Path, d: &DeliveryTruth) -> Vec<u8> {
    let raw = std::fs::read(dir.join("deliveries").join(&d.name)).unwrap();
    assert_eq!(raw.len() as u64, d.size, "{}", d.name);
    if d.compressed {
        assert!(d.name.ends_with(".tm.zst"));
        zstd::stream::decode_all(&raw[..]).unwrap()
    } else {
        assert!(d.name.ends_with(".tm"));
        raw
    }
}

fn jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn same_seed_gives_identical_files_and_another_seed_does_not() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let cfg = small_day(5);
    simulate_day(&cfg, a.path()).unwrap();
    // A re-run into the same folder replaces the day: same bytes again.
    simulate_day(&cfg, b.path()).unwrap();
    simulate_day(&cfg, b.path()).unwrap();
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(v == &fb[k], "{} differs", k.display());
    }
    assert!(fa.keys().any(|k| k.to_string_lossy().ends_with(".tm.zst")));
    let c = tempfile::tempdir().unwrap();
    simulate_day(&small_day(6), c.path()).unwrap();
    let fc = files(c.path());
    assert_ne!(
        fa[Path::new("truth/expected/hk.mprod")],
        fc[Path::new("truth/expected/hk.mprod")]
    );
}

#[test]
fn refuses_a_folder_that_is_not_a_day() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
    let e = simulate_day(&small_day(1), dir.path()).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    assert!(dir.path().join("precious.txt").exists());
}

#[test]
fn truth_is_consistent_with_the_deliveries() {
    check_consistency(&small_day(9));
}

#[test]
fn truth_is_consistent_for_many_faults_over_seeds() {
    for seed in [31, 32] {
        let mut cfg = small_day(seed);
        cfg.downlink.corrupt_rate = 0.05;
        cfg.downlink.garbage_rate = 0.05;
        cfg.downlink.max_garbage_len = 2000;
        check_consistency(&cfg);
    }
}

fn check_consistency(cfg: &DayConfig) {
    let dir = tempfile::tempdir().unwrap();
    let stats: DayStats = simulate_day(cfg, dir.path()).unwrap();
    let truth = dir.path().join("truth");
    let deliveries: Vec<DeliveryTruth> = jsonl(&truth.join("deliveries.jsonl"));
    assert_eq!(deliveries.len() as u64, stats.deliveries);
    let mut decoded: BTreeMap<(u16, u64, u16), u64> = BTreeMap::new(); // (apid, time, seq) -> hash
    let mut kinds = BTreeSet::new();
    for d in &deliveries {
        let s = stream(dir.path(), d);
        assert_eq!(s.len() as u64, d.stream_len, "{}", d.name);
        let sc = scan(&s);
        let at: BTreeMap<usize, (u16, u16, u64, u64)> = sc
            .packets
            .iter()
            .map(|&(o, a, q, t, h)| (o, (a, q, t, h)))
            .collect();
        assert_eq!(sc.packets.len() as u64, d.intact_packets, "{}", d.name);
        for p in d
            .duplicated
            .iter()
            .chain(&d.retransmitted)
            .chain(&d.unknown)
        {
            let (a, q, t, _) = at[&(p.offset as usize)];
            assert_eq!((a, q, t), (p.apid, p.seq, p.obt_ns), "{}", d.name);
        }
        assert!(d.unknown.iter().all(|p| p.apid == 0x3FF));
        for c in &d.corrupted {
            let o = c.offset as usize;
            let mut p = s[o..o + c.length as usize].to_vec();
            assert!(packet_at(&p, 0).is_none(), "a corrupted copy has a bad CRC");
            for &b in &c.flipped_bits {
                p[(b / 8) as usize] ^= 0x80 >> (b % 8);
            }
            let (a, q, t, _) = packet_at(&p, 0).expect("flipping the bits back repairs it");
            assert_eq!((a, q, t), (c.apid, c.seq, c.obt_ns));
        }
        for t in &d.truncated {
            assert_eq!(
                t.offset + t.length,
                d.stream_len,
                "the truncated copy ends the file"
            );
        }
        let idle: Vec<(usize, usize)> = d
            .idle
            .iter()
            .map(|i| (i.offset as usize, i.length as usize))
            .collect();
        assert_eq!(sc.idle, idle, "{}", d.name);
        // Every skipped byte is a declared fault, and every fault is skipped.
        let mut faults: Vec<(usize, usize)> = d
            .garbage
            .iter()
            .map(|g| (g.offset as usize, g.length as usize))
            .chain(
                d.corrupted
                    .iter()
                    .map(|c| (c.offset as usize, c.length as usize)),
            )
            .chain(
                d.truncated
                    .iter()
                    .map(|t| (t.offset as usize, t.length as usize)),
            )
            .collect();
        faults.sort();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (o, l) in faults {
            match merged.last_mut() {
                Some((mo, ml)) if *mo + *ml == o => *ml += l,
                _ => merged.push((o, l)),
            }
        }
        assert_eq!(sc.skipped, merged, "{}", d.name);
        kinds.extend(d.duplicated.first().map(|_| "duplicated"));
        kinds.extend(d.corrupted.first().map(|_| "corrupted"));
        kinds.extend(d.garbage.first().map(|_| "garbage"));
        kinds.extend(d.truncated.first().map(|_| "truncated"));
        kinds.extend(d.idle.first().map(|_| "idle"));
        kinds.extend(d.unknown.first().map(|_| "unknown"));
        kinds.extend(
            d.compressed
                .then_some(if d.frames > 1 { "zstd_multi" } else { "zstd" }),
        );
        for &(_, a, q, t, h) in &sc.packets {
            if let Some(old) = decoded.insert((a, t, q), h) {
                assert_eq!(old, h, "retransmissions are byte-for-byte copies");
            }
        }
    }
    assert_eq!(kinds.len(), 8, "fault kinds seen: {kinds:?}");

    // Expected products hold exactly the decoded packets, in (time, seq) order.
    let expected = truth.join("expected");
    let windows: Vec<Window> = read_all(expected.join("window.mprod")).unwrap();
    let attitude: Vec<Attitude> = read_all(expected.join("attitude.mprod")).unwrap();
    let hk: Vec<Hk> = read_all(expected.join("hk.mprod")).unwrap();
    let mut from_products: BTreeSet<(u16, u64, u16, u64)> = BTreeSet::new();
    let mut check_order = |apid: u16, refs: Vec<(u64, u16, u64)>| {
        assert!(
            refs.windows(2)
                .all(|w| (w[0].0, w[0].1) <= (w[1].0, w[1].1)),
            "{apid:#x} order"
        );
        from_products.extend(refs.into_iter().map(|(t, q, h)| (apid, t, q, h)));
    };
    check_order(
        0x101,
        windows
            .iter()
            .map(|w| (w.packet_obt_ns, w.seq, w.packet_hash))
            .collect(),
    );
    check_order(
        0x102,
        attitude
            .iter()
            .map(|a| (a.packet_obt_ns, a.seq, a.packet_hash))
            .collect(),
    );
    check_order(
        0x201,
        hk.iter()
            .map(|h| (h.packet_obt_ns, h.seq, h.packet_hash))
            .collect(),
    );
    let from_deliveries: BTreeSet<(u16, u64, u16, u64)> = decoded
        .iter()
        .filter(|((a, ..), _)| *a != 0x3FF)
        .map(|(&(a, t, q), &h)| (a, t, q, h))
        .collect();
    assert_eq!(from_products, from_deliveries);
    assert_eq!(hk.len() as u64, stats.expected_hk);

    // The expected health events are what a reference checker finds in the
    // housekeeping that reached the ground (downlink losses included).
    let db = meridian_telemetry::MissionDb::load(dir.path().join("mission_db.toml")).unwrap();
    let mut rows = hk_reference::Rows::new();
    for h in &hk {
        let s = rows.entry(h.sid).or_default();
        match s.last_mut() {
            Some((t, raw)) if *t == h.obt_ns => raw.push(h.raw),
            _ => s.push((h.obt_ns, vec![h.raw])),
        }
    }
    let end = hk.iter().map(|h| h.obt_ns).max().unwrap();
    assert_eq!(Some(end), stats.end_of_hk_data_ns);
    let events: Vec<meridian_sim::hk::TruthEvent> = jsonl(&truth.join("health_events.jsonl"));
    let events: Vec<_> = events
        .into_iter()
        .map(|e| meridian_sim::hk::TruthEvent {
            anomaly: String::new(),
            ..e
        })
        .collect();
    assert!(events.len() >= 10);
    hk_reference::assert_same_events(&events, &hk_reference::reference_events(&db, &rows, end));
    assert!(
        stats.packets["0x201"].lost > 0,
        "housekeeping losses were exercised"
    );

    // Gaps: holes in each APID's sequence between delivered packets.
    let mut gaps = Vec::new();
    for apid in [0x101u16, 0x102, 0x201, 0x3FF] {
        let seqs: Vec<(u64, u16)> = decoded
            .keys()
            .filter(|k| k.0 == apid)
            .map(|k| (k.1, k.2))
            .collect();
        for w in seqs.windows(2) {
            let n = (w[1].1 as u64 + 16384 - w[0].1 as u64 - 1) % 16384;
            if n > 0 {
                gaps.push(Gap {
                    apid,
                    first_missing_seq: (w[0].1 + 1) % 16384,
                    n_missing: n,
                    after_obt_ns: w[0].0,
                    before_obt_ns: w[1].0,
                });
            }
        }
    }
    let truth_gaps: Vec<Gap> = jsonl(&truth.join("gaps.jsonl"));
    assert!(!truth_gaps.is_empty());
    assert_eq!(truth_gaps, gaps);
}
