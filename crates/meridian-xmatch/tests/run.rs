//! Whole runs over product files: deterministic whatever the batch size or
//! thread count, and regions merged give the same products as one run.

mod common;

use common::*;
use meridian_core::Vec3;
use meridian_core::product;
use meridian_core::records::{Match, Transit};
use meridian_core::stage::NoProgress;
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
        let part = run::match_files(&f.index, &files, &opts, &NoProgress).unwrap();
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
    let one = run::match_files(&f.index, &files, &RunOptions::default(), &NoProgress).unwrap();
    let wide = RunOptions {
        radius_arcsec: 2.0,
        ..Default::default()
    };
    let two = run::match_files(&f.index, &files, &wide, &NoProgress).unwrap();
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
    let err = run::match_files(&f.index, &files, &opts, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("b.mprod"), "{err}");
}

/// The octets of every file under `dir` (hidden ones included), by name.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap_or_default())
        })
        .collect();
    out.sort();
    out
}

/// The in-memory path's products (one batch), for reference.
fn reference_products(f: &Fixture, out: &Path) -> Vec<(String, Vec<u8>)> {
    whole_run(f, &RunOptions::default(), out);
    files_of(out)
}

#[test]
fn streaming_runs_write_the_same_bytes_whatever_the_batch_or_threads() {
    let f = fixture();
    let reference = reference_products(&f, &f.root.join("reference"));
    let files = run::transit_products(&f.root.join("located")).unwrap();
    for (batch_size, threads) in [(1 << 20, 1), (37, 2), (1, 1), (500, 2)] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let out = f.root.join(format!("stream-{batch_size}-{threads}"));
        let opts = RunOptions {
            batch_size,
            ..Default::default()
        };
        let progress = meridian_core::stage::CountingProgress::default();
        let summary = pool
            .install(|| run::run_whole(&f.index, &files, &opts, &out, &progress))
            .unwrap();
        assert_eq!(progress.steps(), run::count_transits(&files).unwrap());
        // Same products, and nothing else left behind (no spill folder).
        assert_eq!(files_of(&out), reference, "batch {batch_size}");
        assert_eq!(summary.transits_read, f.transits.len() as u64);
    }
}

#[test]
fn streaming_regions_write_the_same_partials_and_merge_into_the_same_products() {
    let f = fixture();
    let reference = reference_products(&f, &f.root.join("reference"));
    let files = run::transit_products(&f.root.join("located")).unwrap();
    let mut parts = Vec::new();
    for k in 0..3u64 {
        let region = Region::new(2, (0..192).filter(|c| c % 3 == k).collect()).unwrap();
        let in_memory = RunOptions {
            region: Some(region.clone()),
            ..Default::default()
        };
        let part = run::match_files(&f.index, &files, &in_memory, &NoProgress).unwrap();
        let old = f.root.join(format!("old-region{k}"));
        run::write_partial(&old, &part).unwrap();
        let new = f.root.join(format!("new-region{k}"));
        let small = RunOptions {
            batch_size: 29,
            ..in_memory
        };
        let counts = run::run_region(&f.index, &files, &small, &new, &NoProgress).unwrap();
        assert_eq!(files_of(&new), files_of(&old), "region {k}");
        assert_eq!(counts.matched, part.matched.len() as u64);
        assert_eq!(counts.unmatched, part.unmatched.len() as u64);
        parts.push(new);
    }
    let merged = f.root.join("merged");
    let summary = run::merge_to_dir(&parts, &merged).unwrap();
    assert_eq!(summary.regions.len(), 3);
    let (records, expected) = run::finish_run(
        parts
            .iter()
            .map(|p| run::read_partial(p).unwrap())
            .collect(),
    )
    .unwrap();
    assert_eq!(summary, expected);
    let old_merged = f.root.join("old-merged");
    run::write_final(&old_merged, &records, &expected).unwrap();
    assert_eq!(files_of(&merged), files_of(&old_merged));
    // Apart from the regions listed, the merge is the whole-sky run.
    let whole = reference.iter().find(|(n, _)| n == MATCH_FILE).unwrap();
    assert_eq!(std::fs::read(merged.join(MATCH_FILE)).unwrap(), whole.1);
}

#[test]
fn a_rerun_after_a_crash_cleans_up_and_gives_the_same_products() {
    let f = fixture();
    let reference = reference_products(&f, &f.root.join("reference"));
    let files = run::transit_products(&f.root.join("located")).unwrap();
    let out = f.root.join("out");
    // What a run killed in its merge leaves: spilled segments, a temporary
    // match product, and the previous run's summary.
    std::fs::create_dir_all(out.join(".xmatch-spill")).unwrap();
    std::fs::write(out.join(".xmatch-spill/match-00000000.mprod"), b"junk").unwrap();
    std::fs::write(out.join(".match.mprod.999-0.tmp"), b"half a product").unwrap();
    std::fs::write(out.join(SUMMARY_FILE), b"{}").unwrap();
    let opts = RunOptions {
        batch_size: 40,
        ..Default::default()
    };
    run::run_whole(&f.index, &files, &opts, &out, &NoProgress).unwrap();
    assert_eq!(files_of(&out), reference);
}

#[test]
fn a_bad_radius_leaves_a_finished_run_untouched() {
    let f = fixture();
    let out = f.root.join("out");
    let finished = reference_products(&f, &out);
    let files = run::transit_products(&f.root.join("located")).unwrap();
    for (spec, region) in [("whole", None), ("region", Some("2:1,2".parse().unwrap()))] {
        let opts = RunOptions {
            radius_arcsec: -1.0,
            region,
            ..Default::default()
        };
        let err = match opts.region {
            None => run::run_whole(&f.index, &files, &opts, &out, &NoProgress).err(),
            Some(_) => run::run_region(&f.index, &files, &opts, &out, &NoProgress).err(),
        };
        assert!(err.unwrap().to_string().contains("radius"), "{spec}");
        assert_eq!(files_of(&out), finished, "{spec}");
    }
}

#[test]
fn a_failed_streaming_run_leaves_nothing_that_looks_complete() {
    let f = fixture();
    let files = run::transit_products(&f.root.join("located")).unwrap();
    let out = f.root.join("out");
    let opts = RunOptions {
        batch_size: 50,
        ..Default::default()
    };
    run::run_whole(&f.index, &files, &opts, &out, &NoProgress).unwrap();
    // Damage the second file: batches of the first are spilled by then.
    let bad = f.root.join("located/sub/b.mprod");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = run::run_whole(&f.index, &files, &opts, &out, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("b.mprod"), "{err}");
    // No summary (the completion marker), no spill folder, no temporary file.
    let names: Vec<String> = files_of(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec![MATCH_FILE.to_string()], "{names:?}");
}

#[test]
fn a_transit_id_repeated_across_batches_is_an_error_naming_the_smallest() {
    let f = fixture();
    let located = f.root.join("located");
    // Copies of two transits with a position, in a file read after the others.
    let dups: Vec<Transit> = f
        .transits
        .iter()
        .filter(|t| t.ra.is_some())
        .skip(3)
        .step_by(300)
        .take(2)
        .cloned()
        .collect();
    let smallest = dups.iter().map(|t| t.transit_id).min().unwrap();
    product::write_all(located.join("z.mprod"), &dups).unwrap();
    let files = run::transit_products(&located).unwrap();
    let opts = RunOptions {
        batch_size: 64,
        ..Default::default()
    };
    let err =
        run::run_whole(&f.index, &files, &opts, &f.root.join("out"), &NoProgress).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("transit_id {smallest} appears more than once")),
        "{err}"
    );
    // Nothing under a final name, no temporary file, no spill folder.
    assert_eq!(files_of(&f.root.join("out")), vec![]);
}

#[test]
fn streaming_merge_refuses_mixed_radii_and_overlapping_parts() {
    let f = fixture();
    let files = run::transit_products(&f.root.join("located")).unwrap();
    let mut parts = Vec::new();
    for (k, radius) in [1.0, 2.0].into_iter().enumerate() {
        let opts = RunOptions {
            radius_arcsec: radius,
            region: Some("0:0-11".parse().unwrap()),
            batch_size: 100,
        };
        let dir = f.root.join(format!("part{k}"));
        run::run_region(&f.index, &files, &opts, &dir, &NoProgress).unwrap();
        parts.push(dir);
    }
    let out = f.root.join("merged");
    let err = run::merge_to_dir(&parts, &out).unwrap_err();
    assert!(err.to_string().contains("radius"), "{err}");
    let same_twice = [parts[0].clone(), parts[0].clone()];
    let err = run::merge_to_dir(&same_twice, &out).unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");
    assert!(!out.join(SUMMARY_FILE).exists());
}

#[test]
fn an_empty_day_and_a_day_without_positions_give_the_same_products() {
    let f = fixture();
    for (k, transits) in [vec![], f.transits.iter().take(3).cloned().collect()]
        .into_iter()
        .enumerate()
    {
        let located = f.root.join(format!("located-{k}"));
        std::fs::create_dir_all(&located).unwrap();
        let transits: Vec<Transit> = transits
            .into_iter()
            .map(|t| Transit { ra: None, ..t })
            .collect();
        product::write_all(located.join("t.mprod"), &transits).unwrap();
        let files = run::transit_products(&located).unwrap();
        let no_progress = meridian_core::stage::NoProgress;
        let opts = RunOptions::default();
        let part = run::match_files(&f.index, &files, &opts, &no_progress).unwrap();
        let (records, summary) = run::finish_run(vec![part]).unwrap();
        let old = f.root.join(format!("old-{k}"));
        run::write_final(&old, &records, &summary).unwrap();
        let new = f.root.join(format!("new-{k}"));
        let streamed = run::run_whole(&f.index, &files, &opts, &new, &no_progress).unwrap();
        assert_eq!(streamed, summary);
        assert_eq!(streamed.transits_without_position, transits.len() as u64);
        assert_eq!(files_of(&new), files_of(&old));
    }
}
