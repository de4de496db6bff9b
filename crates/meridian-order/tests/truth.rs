//! Gaps, duplicates and chunk contents of a generated day match its truth.

mod common;

use common::{run, snapshot};
use meridian_core::product::read_all;
use meridian_core::records::{Attitude, Gap, Hk, Window};
use meridian_order::synth::{DayConfig, Payload, generate_day, write_day};
use meridian_order::{ChunkStatus, Manifest, Stream, StreamRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const CHUNK_NS: u64 = 20_000_000_000;

/// Records of each distinct delivered packet, sorted and grouped by chunk start.
fn expected<R: StreamRecord>(all: Vec<R>) -> BTreeMap<u64, Vec<R>> {
    let mut all = all;
    all.sort_by(|a, b| a.cmp_total(b));
    let mut out: BTreeMap<u64, Vec<R>> = BTreeMap::new();
    for r in all {
        out.entry(r.obt_ns() / CHUNK_NS * CHUNK_NS)
            .or_default()
            .push(r);
    }
    out
}

fn chunks_of<R: StreamRecord>(out: &Path, m: &Manifest) -> BTreeMap<u64, Vec<R>> {
    m.chunks_of(R::STREAM)
        .map(|c| (c.start_obt_ns, read_all::<R>(out.join(&c.path)).unwrap()))
        .collect()
}

#[test]
fn a_day_with_losses_and_retransmissions_matches_its_truth() {
    let cfg = DayConfig {
        seed: 42,
        duration_s: 900,
        loss: 0.03,
        retransmit: 0.1,
        deliveries: 7,
        ..DayConfig::default()
    };
    let day = generate_day(&cfg);
    assert!(
        day.gaps.len() > 5 && day.duplicates > 10,
        "the day exercises both"
    );
    let decoded = common::tempdir();
    let ordered = common::tempdir();
    write_day(decoded.path(), &day, 7).unwrap();
    let summary = run(decoded.path(), ordered.path());
    assert!(summary.failed.is_empty());
    assert_eq!(summary.packets_duplicate, day.duplicates);
    assert_eq!(summary.packets_conflicting, 0);

    let out = ordered.path();
    let gaps: Vec<Gap> = read_all(out.join("gaps.mprod")).unwrap();
    assert_eq!(gaps, day.gaps);

    let mut seen = BTreeSet::new();
    let (mut w, mut a, mut h) = (Vec::new(), Vec::new(), Vec::new());
    for p in day.deliveries.iter().flatten() {
        if seen.insert((p.stream, p.seq, p.packet_obt_ns)) {
            match &p.payload {
                Payload::Window(v) => w.extend(v.iter().cloned()),
                Payload::Attitude(v) => a.extend(v.iter().cloned()),
                Payload::Hk(v) => h.extend(v.iter().cloned()),
            }
        }
    }
    assert_eq!(summary.packets_new, seen.len() as u64);
    let m = Manifest::load(out).unwrap();
    assert_eq!(chunks_of::<Window>(out, &m), expected(w));
    assert_eq!(chunks_of::<Attitude>(out, &m), expected(a));
    assert_eq!(chunks_of::<Hk>(out, &m), expected(h));

    // Status: no chunk where a lost packet's records could lie is complete. The
    // generator puts records up to 3 s (windows) or 4 s (attitude) before their
    // packet's time.
    for c in &m.chunks {
        let lead = match c.stream {
            Stream::Window => 3_000_000_000,
            Stream::Attitude => 4_000_000_000,
            Stream::Hk => 0,
        };
        let near_gap = gaps.iter().any(|g| {
            g.apid == c.stream.apid()
                && g.after_obt_ns < c.end_obt_ns + lead
                && g.before_obt_ns >= c.start_obt_ns
        });
        if c.status == ChunkStatus::Complete {
            assert!(!near_gap, "complete chunk {c:?} lies within a gap");
        }
    }
    assert!(m.chunks.iter().any(|c| c.status == ChunkStatus::Complete));
    assert!(
        m.chunks
            .iter()
            .any(|c| c.status == ChunkStatus::Provisional)
    );
    // Completeness counts agree with the truth.
    for s in Stream::ALL {
        let missing: u64 = day
            .gaps
            .iter()
            .filter(|g| g.apid == s.apid())
            .map(|g| g.n_missing)
            .sum();
        let counted: u64 = m
            .completeness
            .iter()
            .filter(|h| h.apid == s.apid())
            .map(|h| h.missing)
            .sum();
        assert_eq!(missing, counted, "{s:?}");
    }
    let _ = snapshot(out);
}
