//! Whole runs over product files: deterministic whatever the batch size or
//! thread count, and regions merged give the same products as one run.

mod common;

use common::*;
use meridian_core::Vec3;
use meridian_core::product;
use meridian_core::records::{Match, Transit};
use meridian_xmatch::run::{self, MATCH_FILE, SUMMARY_FILE};
use meridian_xmatch::{BuildOptions, Index, Region, RunOptions, build_index};
use std::path::{Path, PathBuf};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    rows: Vec<Row>,
    transits: Vec<Transit>,
    index: Index,
}

/// Four unmatched transits 0.4″ around a vertex of depth-2 cells, so that one
/// new-source group spans several cells (and regions).
fn straddling_group(first_id: u64) -> Vec<Transit> {
    let h = cdshealpix::nested::hash(2, 100f64.to_radians(), 20f64.to_radians());
    let (lon, lat) = cdshealpix::nested::vertices(2, h)[0];
    let v = Vec3::from_radec_rad(lon, lat);
    let e1 = v.cross(Vec3::new(0.0, 0.0, 1.0)).normalized();
    let e2 = v.cross(e1);
    let step = 0.4 * meridian_core::geom::RAD_PER_ARCSEC;
    [e1, e2, -e1, -e2]
        .iter()
        .enumerate()
        .map(|(k, d)| {
            let (ra, dec) = (v + *d * step).normalized().to_radec_deg();
            Transit {
                transit_id: first_id + k as u64,
                fov: 1,
                row: 2,
                t_obs_ns: 1_000_000_000,
                ra: Some(ra),
                dec: Some(dec),
                n_windows: 9,
                mag: None,
                flags: Default::default(),
                sigma_al_mas: None,
                sigma_ac_mas: None,
                scan_pa_deg: None,
            }
        })
        .collect()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let rows = random_catalogue(11, 1500);
    let mut transits = random_transits(11, &rows, 1200);
    transits.extend(straddling_group(1_000_000));
    let located = root.join("located");
    std::fs::create_dir_all(located.join("sub")).unwrap();
    let (a, b) = transits.split_at(500);
    product::write_all(located.join("a.mprod"), a).unwrap();
    product::write_all(located.join("sub/b.mprod"), b).unwrap();
    // Another kind of product in the folder is ignored.
    product::write_all::<Match>(located.join("other.mprod"), &[]).unwrap();
    let idx = root.join("cat.idx");
    build_index(
        csv_of(&rows, true).as_bytes(),
        Path::new("cat.csv"),
        &idx,
        &BuildOptions::default(),
    )
    .unwrap();
    let index = Index::open(&idx).unwrap();
    Fixture {
        _dir: dir,
        root,
        rows,
        transits,
        index,
    }
}

fn whole_run(f: &Fixture, opts: &RunOptions, out: &Path) -> Vec<u8> {
    let files = run::transit_products(&f.root.join("located")).unwrap();
    assert_eq!(files.len(), 2);
    let progress = meridian_core::stage::CountingProgress::default();
    let part = run::match_files(&f.index, &files, opts, &progress).unwrap();
    // Progress counts every transit record read, whatever the region.
    assert_eq!(progress.steps(), run::count_transits(&files).unwrap());
    let (records, summary) = run::finish_run(vec![part]).unwrap();
    run::write_final(out, &records, &summary).unwrap();
    std::fs::read(out.join(MATCH_FILE)).unwrap()
}

#[test]
fn products_match_brute_force_and_do_not_depend_on_batch_or_threads() {
    let f = fixture();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let big = RunOptions::default();
    let small = RunOptions {
        batch_size: 37,
        ..Default::default()
    };
    let a = one.install(|| whole_run(&f, &big, &f.root.join("a")));
    let b = two.install(|| whole_run(&f, &small, &f.root.join("b")));
    assert_eq!(a, b);
    let records: Vec<Match> = product::read_all(f.root.join("a").join(MATCH_FILE)).unwrap();
    assert_same_matches(&records, &brute_force(&f.rows, &f.transits, 1.0));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.root.join("a").join(SUMMARY_FILE)).unwrap())
            .unwrap();
    let no_pos = f.transits.iter().filter(|t| t.ra.is_none()).count() as u64;
    assert_eq!(summary["transits_read"], f.transits.len() as u64);
    assert_eq!(summary["transits_without_position"], no_pos);
    assert_eq!(
        summary["transits_matched"].as_u64().unwrap()
            + summary["transits_unmatched"].as_u64().unwrap(),
        records.len() as u64
    );
}

#[test]
fn regions_merge_into_the_same_products_as_one_run() {
    let f = fixture();
    let whole = whole_run(&f, &RunOptions::default(), &f.root.join("whole"));
    let files = run::transit_products(&f.root.join("located")).unwrap();
    // Three interleaved regions at depth 2: every cell border is a region border.
    let regions: Vec<Region> = (0..3u64)
        .map(|k| Region::new(2, (0..192).filter(|c| c % 3 == k).collect()).unwrap())
        .collect();
    let group = straddling_group(1_000_000);
    let owners: std::collections::BTreeSet<usize> = group
        .iter()
        .map(|t| {
            let v = Vec3::from_radec_deg(t.ra.unwrap(), t.dec.unwrap());
            regions.iter().position(|r| r.owns(v)).unwrap()
        })
        .collect();
    assert!(owners.len() >= 2, "the group straddles regions");
    let mut parts = Vec::new();
    for (k, region) in regions.iter().enumerate() {
        let opts = RunOptions {
            region: Some(region.clone()),
            batch_size: 100,
            ..Default::default()
        };
        let part =
            run::match_files(&f.index, &files, &opts, &meridian_core::stage::NoProgress).unwrap();
        let dir = f.root.join(format!("region{k}"));
        run::write_partial(&dir, &part).unwrap();
        parts.push(run::read_partial(&dir).unwrap());
    }
    let (records, summary) = run::finish_run(parts).unwrap();
    let merged = f.root.join("merged");
    run::write_final(&merged, &records, &summary).unwrap();
    assert_eq!(std::fs::read(merged.join(MATCH_FILE)).unwrap(), whole);
    assert_eq!(summary.regions.len(), 3);
    let whole_summary: meridian_xmatch::XmatchSummary =
        serde_json::from_slice(&std::fs::read(f.root.join("whole").join(SUMMARY_FILE)).unwrap())
            .unwrap();
    assert_eq!(
        meridian_xmatch::XmatchSummary {
            regions: vec![],
            ..summary
        },
        whole_summary
    );
    let names: Vec<Option<u64>> = records
        .iter()
        .filter(|m| m.transit_id >= 1_000_000)
        .map(|m| m.new_source)
        .collect();
    assert_eq!(names, vec![Some(1_000_000); 4]);
}

#[test]
fn folder_without_transits_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    product::write_all::<Match>(dir.path().join("m.mprod"), &[]).unwrap();
    let err = run::transit_products(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no `transit` product"), "{err}");
}

#[test]
fn merge_refuses_mixed_radii_and_overlapping_parts() {
    let f = fixture();
    let files = run::transit_products(&f.root.join("located")).unwrap();
    let one = run::match_files(
        &f.index,
        &files,
        &RunOptions::default(),
        &meridian_core::stage::NoProgress,
    )
    .unwrap();
    let wide = RunOptions {
        radius_arcsec: 2.0,
        ..Default::default()
    };
    let two = run::match_files(&f.index, &files, &wide, &meridian_core::stage::NoProgress).unwrap();
    let err = run::finish_run(vec![one.clone(), two]).unwrap_err();
    assert!(err.to_string().contains("radius"), "{err}");
    // The same sky twice: every transit appears in both parts.
    let err = run::finish_run(vec![one.clone(), one]).unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");
}

#[test]
fn a_damaged_file_after_matched_batches_is_an_error_naming_it() {
    // Reading runs ahead of matching: batches of the first file are already
    // matched when the second turns out damaged; the run must still fail
    // cleanly (no hang, no partial success) and name the file.
    let f = fixture();
    let located = f.root.join("located");
    let bad = located.join("sub/b.mprod");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let files = run::transit_products(&located).unwrap();
    let opts = RunOptions {
        batch_size: 50,
        ..Default::default()
    };
    let err =
        run::match_files(&f.index, &files, &opts, &meridian_core::stage::NoProgress).unwrap_err();
    assert!(err.to_string().contains("b.mprod"), "{err}");
}
