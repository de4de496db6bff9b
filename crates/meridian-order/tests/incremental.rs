//! Incremental runs: versions, what changed, no-op runs, closing, late data and
//! bad inputs.

mod common;

use common::{run, snapshot, tempdir, write_deliveries};
use meridian_core::product::read_all;
use meridian_core::records::{Attitude, Hk, Window};
use meridian_order::synth::{DayConfig, Packet, Payload, delivery_id, generate_day};
use meridian_order::{ChunkStatus, Manifest, NoProgress, Options, order};
use std::collections::BTreeSet;

const CHUNK_NS: u64 = 20_000_000_000;

fn sliced_day(seed: u64) -> (DayConfig, Vec<(u128, Vec<Packet>)>) {
    let cfg = DayConfig {
        seed,
        duration_s: 200,
        deliveries: 5,
        contiguous: true,
        ..DayConfig::default()
    };
    let day = generate_day(&cfg);
    let ds = day
        .deliveries
        .into_iter()
        .enumerate()
        .map(|(i, d)| (delivery_id(seed, i), d))
        .collect();
    (cfg, ds)
}

#[test]
fn a_new_run_rewrites_only_the_chunks_its_deliveries_touch() {
    let (_, ds) = sliced_day(3);
    let decoded = tempdir();
    let ordered = tempdir();
    let out = ordered.path();
    write_deliveries(decoded.path(), &ds[..3]);
    let first = run(decoded.path(), out);
    assert_eq!((first.run, first.deliveries_consumed), (1, 3));
    let m1 = Manifest::load(out).unwrap();
    write_deliveries(decoded.path(), &ds[3..]);
    let second = run(decoded.path(), out);
    assert_eq!((second.run, second.deliveries_consumed), (2, 2));
    let m2 = Manifest::load(out).unwrap();

    let changed: Vec<_> = m2.changed_since(1).collect();
    assert!(!changed.is_empty() && changed.len() < m2.chunks.len());
    assert_eq!(second.chunks_written as usize, changed.len());
    for c in &m2.chunks {
        let before = m1
            .chunks
            .iter()
            .find(|o| (o.stream, o.start_obt_ns) == (c.stream, c.start_obt_ns));
        match (c.run, before) {
            (1, Some(o)) => {
                assert_eq!((&o.path, &o.checksum, o.version), (&c.path, &c.checksum, 1))
            }
            (2, Some(o)) => {
                assert_eq!(c.version, o.version + 1);
                assert!(
                    out.join(&o.path).exists(),
                    "previous version kept for readers"
                );
            }
            (2, None) => assert_eq!(c.version, 1),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(m2.changed_since(2).next().is_none());
    assert_eq!(m2.changed_since(0).count(), m2.chunks.len());

    // Nothing new: nothing is committed.
    let bytes = std::fs::read(out.join("manifest.json")).unwrap();
    let third = run(decoded.path(), out);
    assert!(third.noop);
    assert_eq!(third.run, 2);
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), bytes);

    // The result equals a single run over everything.
    let all = tempdir();
    run(decoded.path(), all.path());
    assert_eq!(snapshot(all.path()), snapshot(out));
}

fn records_min_obt(p: &Packet) -> u64 {
    match &p.payload {
        Payload::Window(v) => v.iter().map(|r| r.obt_ns).min().unwrap(),
        Payload::Attitude(v) => v.iter().map(|r| r.obt_ns).min().unwrap(),
        Payload::Hk(v) => v.iter().map(|r| r.obt_ns).min().unwrap(),
    }
}

#[test]
fn closed_chunks_are_final_and_later_data_for_them_is_set_aside() {
    let (cfg, ds) = sliced_day(8);
    let decoded = tempdir();
    let ordered = tempdir();
    let out = ordered.path();
    write_deliveries(decoded.path(), &ds[1..]);
    let close = cfg.start_obt_ns + 3 * CHUNK_NS;
    let mut opts = Options::new(decoded.path(), out);
    opts.chunk_ns = CHUNK_NS;
    opts.close_before_obt_ns = Some(close);
    let first = order(&opts, &NoProgress).unwrap();
    assert_eq!(first.packets_late, 0, "data of the closing run is merged");
    let m1 = Manifest::load(out).unwrap();
    assert_eq!(m1.close_before_obt_ns, Some(close));
    let finals: Vec<_> = m1
        .chunks
        .iter()
        .filter(|c| c.status == ChunkStatus::Final)
        .collect();
    assert!(!finals.is_empty());
    for c in &m1.chunks {
        assert_eq!(c.status == ChunkStatus::Final, c.end_obt_ns <= close);
    }

    // The first time slice arrives late: packets already held are duplicates,
    // new ones starting in a final chunk are set aside, the rest merged.
    let held: BTreeSet<_> = ds[1..]
        .iter()
        .flat_map(|(_, d)| d)
        .map(|p| (p.stream, p.seq, p.packet_obt_ns))
        .collect();
    let mut expect_late = BTreeSet::new();
    for p in &ds[0].1 {
        let key = (p.stream, p.seq, p.packet_obt_ns);
        if !held.contains(&key) && records_min_obt(p) / CHUNK_NS * CHUNK_NS + CHUNK_NS <= close {
            expect_late.insert(key);
        }
    }
    assert!(!expect_late.is_empty());
    write_deliveries(decoded.path(), &ds[..1]);
    let second = run(decoded.path(), out);
    assert_eq!(second.packets_late, expect_late.len() as u64);
    let m2 = Manifest::load(out).unwrap();
    for f in &finals {
        let now = m2
            .chunks
            .iter()
            .find(|c| (c.stream, c.start_obt_ns) == (f.stream, f.start_obt_ns))
            .unwrap();
        assert_eq!(now, *f, "a final chunk never changes");
    }
    let mut late_keys = BTreeSet::new();
    if out.join("late/window.mprod").exists() {
        for r in read_all::<Window>(out.join("late/window.mprod")).unwrap() {
            late_keys.insert((meridian_order::Stream::Window, r.seq, r.packet_obt_ns));
        }
    }
    if out.join("late/attitude.mprod").exists() {
        for r in read_all::<Attitude>(out.join("late/attitude.mprod")).unwrap() {
            late_keys.insert((meridian_order::Stream::Attitude, r.seq, r.packet_obt_ns));
        }
    }
    if out.join("late/hk.mprod").exists() {
        for r in read_all::<Hk>(out.join("late/hk.mprod")).unwrap() {
            late_keys.insert((meridian_order::Stream::Hk, r.seq, r.packet_obt_ns));
        }
    }
    assert_eq!(late_keys, expect_late);
}

#[test]
fn unreadable_deliveries_are_named_skipped_and_retried() {
    let (_, ds) = sliced_day(11);
    let decoded = tempdir();
    write_deliveries(decoded.path(), &ds);
    let dir = |i: usize| {
        decoded
            .path()
            .join("deliveries")
            .join(format!("{:032x}", ds[i].0))
    };
    // Corrupted, missing a product, and still being written.
    let window = dir(0).join("window.mprod");
    let good = std::fs::read(&window).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    std::fs::write(&window, &bad).unwrap();
    let hk = dir(1).join("hk.mprod");
    let hk_bytes = std::fs::read(&hk).unwrap();
    std::fs::remove_file(&hk).unwrap();
    std::fs::remove_file(dir(2).join("report.json")).unwrap();
    std::fs::create_dir_all(decoded.path().join("deliveries/not-a-delivery")).unwrap();

    let ordered = tempdir();
    let s = run(decoded.path(), ordered.path());
    assert_eq!(s.deliveries_consumed, 2);
    assert_eq!(s.deliveries_incomplete, 1);
    assert_eq!(s.ignored, vec!["not-a-delivery".to_string()]);
    let failed: Vec<_> = s.failed.iter().map(|f| f.delivery.clone()).collect();
    let mut expect = vec![format!("{:032x}", ds[0].0), format!("{:032x}", ds[1].0)];
    expect.sort();
    assert_eq!(failed, expect);
    for f in &s.failed {
        assert!(
            f.error.contains(&f.delivery),
            "error names the file: {}",
            f.error
        );
    }

    // Still broken: nothing new is consumed, so nothing is committed.
    let again = run(decoded.path(), ordered.path());
    assert!(again.noop);
    assert_eq!((again.run, again.failed.len()), (1, 2));

    // Repaired and completed, they are consumed by the next run.
    std::fs::write(&window, &good).unwrap();
    std::fs::write(&hk, &hk_bytes).unwrap();
    std::fs::write(dir(2).join("report.json"), b"{}").unwrap();
    let s = run(decoded.path(), ordered.path());
    assert_eq!((s.deliveries_consumed, s.failed.len()), (3, 0));
    let clean = tempdir();
    run(decoded.path(), clean.path());
    assert_eq!(snapshot(clean.path()), snapshot(ordered.path()));
}

#[test]
fn a_folder_keeps_its_chunk_length_and_refuses_a_second_concurrent_run() {
    let (_, ds) = sliced_day(2);
    let decoded = tempdir();
    let ordered = tempdir();
    write_deliveries(decoded.path(), &ds[..1]);
    run(decoded.path(), ordered.path());
    let mut opts = Options::new(decoded.path(), ordered.path());
    opts.chunk_ns = 60_000_000_000;
    let err = order(&opts, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("20000000000 ns"), "{err}");
    let lock = std::fs::File::open(ordered.path().join(".lock")).unwrap();
    lock.lock().unwrap();
    opts.chunk_ns = CHUNK_NS;
    let err = order(&opts, &NoProgress).unwrap_err();
    assert!(
        matches!(err, meridian_order::OrderError::Locked { .. }),
        "{err}"
    );
}

#[test]
fn conflicting_variants_leave_the_chunks_for_the_conflict_report() {
    let (_, mut ds) = sliced_day(5);
    let original = ds[2].1[10].clone();
    let variant = original.conflicting_variant();
    let extra_id = delivery_id(5, 77);
    ds.push((extra_id, vec![variant.clone()]));
    let decoded = tempdir();
    let ordered = tempdir();
    let out = ordered.path();
    write_deliveries(decoded.path(), &ds);
    let s = run(decoded.path(), out);
    assert_eq!(s.packets_conflicting, 1);
    let m = Manifest::load(out).unwrap();
    assert_eq!(m.conflicts, 1);

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("conflicts.json")).unwrap()).unwrap();
    let c = &report[0];
    assert_eq!(c["apid"], original.stream.apid());
    assert_eq!(c["seq"], original.seq);
    assert_eq!(c["packet_obt_ns"], original.packet_obt_ns);
    let mut hashes = [original.hash, variant.hash];
    hashes.sort();
    let got: Vec<String> = c["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["packet_hash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        got,
        hashes
            .iter()
            .map(|h| format!("{h:016x}"))
            .collect::<Vec<_>>()
    );

    // Neither variant is in any chunk; both are in the conflict product; the
    // chunks they span are provisional.
    let key = |seq: u16, t: u64| (seq, t) == (original.seq, original.packet_obt_ns);
    let (aside, spans): (usize, Vec<u64>) = match &original.payload {
        Payload::Window(_) => {
            let recs = read_all::<Window>(out.join("conflicts/window.mprod")).unwrap();
            assert!(recs.iter().all(|r| key(r.seq, r.packet_obt_ns)));
            (recs.len(), recs.iter().map(|r| r.obt_ns).collect())
        }
        Payload::Attitude(_) => {
            let recs = read_all::<Attitude>(out.join("conflicts/attitude.mprod")).unwrap();
            (recs.len(), recs.iter().map(|r| r.obt_ns).collect())
        }
        Payload::Hk(_) => {
            let recs = read_all::<Hk>(out.join("conflicts/hk.mprod")).unwrap();
            (recs.len(), recs.iter().map(|r| r.obt_ns).collect())
        }
    };
    let n = |p: &Packet| match &p.payload {
        Payload::Window(v) => v.len(),
        Payload::Attitude(v) => v.len(),
        Payload::Hk(v) => v.len(),
    };
    assert_eq!(aside, n(&original) + n(&variant));
    for c in m.chunks_of(original.stream) {
        if spans
            .iter()
            .any(|t| (c.start_obt_ns..c.end_obt_ns).contains(t))
        {
            assert_eq!(c.status, ChunkStatus::Provisional);
        }
        match original.stream {
            meridian_order::Stream::Window => {
                let recs = read_all::<Window>(out.join(&c.path)).unwrap();
                assert!(!recs.iter().any(|r| key(r.seq, r.packet_obt_ns)));
            }
            meridian_order::Stream::Attitude => {
                let recs = read_all::<Attitude>(out.join(&c.path)).unwrap();
                assert!(!recs.iter().any(|r| key(r.seq, r.packet_obt_ns)));
            }
            meridian_order::Stream::Hk => {
                let recs = read_all::<Hk>(out.join(&c.path)).unwrap();
                assert!(!recs.iter().any(|r| key(r.seq, r.packet_obt_ns)));
            }
        }
    }
}
