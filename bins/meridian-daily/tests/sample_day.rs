//! The daily run on the bundled sample day, checked against the simulator's truth:
//! decoded records, gaps, cross-match identities and health events.

mod common;

use meridian_core::product;
use meridian_core::records::{Attitude, Gap, HealthEvent, Hk, Match, Transit, Window, WindowTruth};
use meridian_daily::compare::{Tolerance, compare_runs};
use meridian_daily::run::Quiet;
use meridian_daily::run_daily;
use meridian_order::{Manifest, Stream};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

fn chunk_records<R: meridian_core::Record>(ordered: &Path, stream: Stream) -> Vec<R> {
    let manifest = Manifest::load(ordered).unwrap();
    manifest
        .chunks_of(stream)
        .flat_map(|c| product::read_all::<R>(ordered.join(&c.path)).unwrap())
        .collect()
}

fn expected<R: meridian_core::Record>(kind: &str) -> Vec<R> {
    product::read_all(common::sample_day().join(format!("truth/expected/{kind}.mprod"))).unwrap()
}

/// Sorted debug renderings: a multiset comparison that names what differs.
fn canon<T: std::fmt::Debug>(records: &[T]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| format!("{r:?}")).collect();
    v.sort();
    v
}

#[test]
fn sample_day_products_match_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let outcome = run_daily(&common::config(&out), &Quiet).unwrap();
    assert!(!outcome.inputs_failed);
    let ordered = out.join("ordered");

    // Every packet that reached the ground intact is decoded exactly once, with
    // exactly the content the simulator encoded.
    let windows: Vec<Window> = chunk_records(&ordered, Stream::Window);
    let attitude: Vec<Attitude> = chunk_records(&ordered, Stream::Attitude);
    let hk: Vec<Hk> = chunk_records(&ordered, Stream::Hk);
    assert_eq!(canon(&windows), canon(&expected::<Window>("window")));
    assert_eq!(canon(&attitude), canon(&expected::<Attitude>("attitude")));
    assert_eq!(canon(&hk), canon(&expected::<Hk>("hk")));

    // Gaps are exactly the packets never delivered intact.
    // (Ordered writes them in time order across APIDs, the truth per APID.)
    let gaps: Vec<Gap> = product::read_all(ordered.join("gaps.mprod")).unwrap();
    let truth_gaps: Vec<Gap> = common::truth_jsonl("gaps.jsonl")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    assert!(!truth_gaps.is_empty());
    assert_eq!(canon(&gaps), canon(&truth_gaps));

    // Every transit is matched, and to the star that made it.
    let true_source: HashMap<u64, i64> =
        product::read_all::<WindowTruth>(common::sample_day().join("truth/windows.mprod"))
            .unwrap()
            .iter()
            .map(|w| (w.transit_id, w.source_id))
            .collect();
    let transits: Vec<Transit> = product::find_products(out.join("located"))
        .unwrap()
        .into_iter()
        .filter(|p| product::read_header(p).unwrap().kind == meridian_core::RecordKind::Transit)
        .flat_map(|p| product::read_all::<Transit>(p).unwrap())
        .collect();
    let n_true_transits = true_source.len();
    assert_eq!(transits.len(), n_true_transits);
    let matches: Vec<Match> = product::read_all(out.join("matched/match.mprod")).unwrap();
    assert_eq!(
        matches.len(),
        n_true_transits,
        "every transit has a position and a match record"
    );
    let wrong: Vec<&Match> = matches
        .iter()
        .filter(|m| m.source_id != Some(true_source[&m.transit_id]))
        .collect();
    assert!(
        wrong.is_empty(),
        "transits matched to the wrong star or unmatched: {wrong:?}"
    );

    // Health: exactly the housekeeping events of the truth, plus one science
    // event in the bin of each injected attitude disturbance, and nothing else.
    let events: Vec<HealthEvent> = product::find_products(out.join("health"))
        .unwrap()
        .into_iter()
        .filter(|p| product::read_header(p).unwrap().kind == meridian_core::RecordKind::HealthEvent)
        .flat_map(|p| product::read_all::<HealthEvent>(p).unwrap())
        .collect();
    let key = |e: &serde_json::Value| {
        (
            e["param"].as_str().unwrap().to_owned(),
            e["check"].as_str().unwrap().to_owned(),
            e["severity"].as_str().unwrap().to_owned(),
            e["start_obt_ns"].as_u64().unwrap(),
            e["end_obt_ns"].as_u64(),
            e["samples"].as_u64().unwrap(),
        )
    };
    let mut truth_hk: Vec<_> = common::truth_jsonl("health_events.jsonl")
        .iter()
        .map(key)
        .collect();
    let mut found_hk: Vec<_> = events
        .iter()
        .filter(|e| !e.param.starts_with("fov"))
        .map(|e| key(&serde_json::to_value(e).unwrap()))
        .collect();
    truth_hk.sort();
    found_hk.sort();
    assert_eq!(
        found_hk, truth_hk,
        "housekeeping events: precision and recall must both be 1"
    );

    let science: Vec<&HealthEvent> = events
        .iter()
        .filter(|e| e.param.starts_with("fov"))
        .collect();
    let disturbances = common::truth_jsonl("disturbances.jsonl");
    assert!(!disturbances.is_empty());
    for d in &disturbances {
        let t = d["obt_ns"].as_u64().unwrap();
        assert!(
            science
                .iter()
                .any(|e| e.start_obt_ns <= t && e.end_obt_ns.is_none_or(|end| t < end)),
            "disturbance at {t} not reported: {science:?}"
        );
    }
    for e in &science {
        assert!(
            disturbances.iter().any(|d| {
                let t = d["obt_ns"].as_u64().unwrap();
                e.start_obt_ns <= t && e.end_obt_ns.is_none_or(|end| t < end)
            }),
            "science event with no disturbance behind it (a false alarm): {e:?}"
        );
    }

    // A second run over the same deliveries does nothing new and changes nothing.
    let first = dir.path().join("first");
    copy_tree(&out, &first);
    let again = run_daily(&common::config(&out), &Quiet).unwrap();
    assert_eq!(again.manifest.closing.deliveries_new, 0);
    let cmp = compare_runs(&first, &out, Tolerance::default(), 3).unwrap();
    assert!(cmp.is_equal(), "{cmp:?}");
    let per_kind: BTreeMap<String, u64> = cmp
        .kinds
        .iter()
        .map(|k| (k.kind.clone(), k.count_a))
        .collect();
    assert!(per_kind["window"] > 0 && per_kind["match"] > 0 && per_kind["health_event"] > 0);
}

#[test]
fn compare_reports_a_deliberate_change() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_daily(&common::config(&a), &Quiet).unwrap();
    // The same telemetry with a much smaller match radius: a different pipeline.
    let mut changed = common::config(&b);
    changed.radius_arcsec = 0.0005;
    run_daily(&changed, &Quiet).unwrap();
    let cmp = compare_runs(&a, &b, Tolerance::default(), 3).unwrap();
    assert!(!cmp.is_equal());
    let matches = cmp.kinds.iter().find(|k| k.kind == "match").unwrap();
    assert!(matches.differing > 0 && !matches.first_differences.is_empty());
    // Upstream of the change, everything is identical.
    for kind in ["window", "attitude", "hk", "observation", "transit", "gap"] {
        let k = cmp.kinds.iter().find(|k| k.kind == kind).unwrap();
        assert!(k.is_equal(), "{kind}: {k:?}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
