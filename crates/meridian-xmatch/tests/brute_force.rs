//! The index + matcher give exactly the brute-force ICD §8 result on random
//! skies with poles, the RA wrap, exact ties and fast movers.

mod common;

use common::*;
use meridian_xmatch::{BuildOptions, Index, Matcher, build_index};
use proptest::prelude::*;
use std::path::Path;

fn build(csv: &str, dir: &Path, opts: &BuildOptions) -> Index {
    let path = dir.join("cat.idx");
    build_index(csv.as_bytes(), Path::new("test.csv"), &path, opts).unwrap();
    Index::open(&path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn matches_brute_force(
        seed in any::<u64>(),
        n_sources in 0usize..400,
        n_transits in 1usize..300,
        radius in prop::sample::select(vec![0.3, 1.0, 2.5, 40.0]),
        per_cell in prop::sample::select(vec![1.0, 4.0, 16.0]),
        fast_limit in prop::sample::select(vec![1000.0, 0.0, 1e9]),
    ) {
        let rows = random_catalogue(seed, n_sources);
        let transits = random_transits(seed, &rows, n_transits);
        let dir = tempfile::tempdir().unwrap();
        let opts = BuildOptions { sources_per_cell: per_cell, fast_pm_limit: fast_limit, ..Default::default() };
        let index = build(&csv_of(&rows, true), dir.path(), &opts);
        prop_assert_eq!(index.len(), rows.len() as u64);
        let got = Matcher::new(&index, radius).unwrap().match_transits(&transits).unwrap();
        assert_same_matches(&got, &brute_force(&rows, &transits, radius));
    }
}

#[test]
fn dense_sky_at_depth_many_cells() {
    // Enough sources that tier 0 is several levels deep and groups hold many transits.
    let rows = random_catalogue(7, 4000);
    let transits = random_transits(7, &rows, 3000);
    let dir = tempfile::tempdir().unwrap();
    let index = build(
        &csv_of(&rows, true),
        dir.path(),
        &BuildOptions {
            sources_per_cell: 2.0,
            ..Default::default()
        },
    );
    assert!(index.tier(0).depth >= 4, "depth {}", index.tier(0).depth);
    assert!(!index.tier(1).is_empty(), "fast movers present");
    let got = Matcher::new(&index, 1.0)
        .unwrap()
        .match_transits(&transits)
        .unwrap();
    let want = brute_force(&rows, &transits, 1.0);
    assert_same_matches(&got, &want);
    // The sky was built to exercise every rule.
    assert!(
        got.iter().any(|m| m.n_candidates > 1),
        "ties/ambiguous seen"
    );
    assert!(got.iter().any(|m| m.source_id.is_none()), "unmatched seen");
    assert!(
        got.iter()
            .any(|m| m.new_source.is_some_and(|n| n != m.transit_id)),
        "a linked group"
    );
}

#[test]
fn every_transit_positioned_takes_the_in_place_path_and_still_matches() {
    // prepare() has a separate path when no transit lacks a position.
    let rows = random_catalogue(21, 2000);
    let transits: Vec<_> = random_transits(21, &rows, 2000)
        .into_iter()
        .filter(|t| t.ra.is_some())
        .collect();
    assert!(transits.len() > 1500);
    let dir = tempfile::tempdir().unwrap();
    let index = build(&csv_of(&rows, true), dir.path(), &BuildOptions::default());
    let got = Matcher::new(&index, 1.0)
        .unwrap()
        .match_transits(&transits)
        .unwrap();
    assert_eq!(got.len(), transits.len());
    assert_same_matches(&got, &brute_force(&rows, &transits, 1.0));
}

#[test]
fn a_transit_id_seen_twice_is_an_error_naming_the_smallest() {
    let rows = random_catalogue(5, 200);
    let dir = tempfile::tempdir().unwrap();
    let index = build(&csv_of(&rows, true), dir.path(), &BuildOptions::default());
    let matcher = Matcher::new(&index, 1.0).unwrap();
    let mut transits: Vec<_> = random_transits(5, &rows, 300)
        .into_iter()
        .filter(|t| t.ra.is_some())
        .collect();
    assert!(matcher.match_transits(&transits).is_ok());
    // Two duplicated ids, in sorted and in shuffled input.
    let (a, b) = (transits[40].clone(), transits[10].clone());
    transits.push(a.clone());
    transits.push(b.clone());
    let smallest = a.transit_id.min(b.transit_id);
    transits.sort_by_key(|t| t.transit_id);
    let want = Err(meridian_xmatch::MatchError::DuplicateTransit(smallest));
    assert_eq!(matcher.match_transits(&transits), want);
    transits.reverse();
    assert_eq!(matcher.match_transits(&transits), want);
}
