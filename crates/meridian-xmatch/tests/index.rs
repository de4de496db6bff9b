//! Building and opening the catalogue index: deterministic bytes, external sort,
//! clear errors for bad rows and damaged files, no panic on any damage.

mod common;

use common::*;
use meridian_xmatch::{BuildOptions, Index, IndexError, Matcher, build_index};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::path::{Path, PathBuf};

fn build_to(
    csv: &str,
    path: &Path,
    opts: &BuildOptions,
) -> Result<meridian_xmatch::BuildReport, IndexError> {
    build_index(csv.as_bytes(), Path::new("cat.csv"), path, opts)
}

#[test]
fn every_row_round_trips_through_the_index() {
    let rows = random_catalogue(3, 700);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i");
    let report = build_to(&csv_of(&rows, true), &path, &BuildOptions::default()).unwrap();
    assert_eq!(report.sources, 700);
    let index = Index::open(&path).unwrap();
    let mut seen = Vec::new();
    for t in 0..2 {
        let tier = index.tier(t);
        for (cell, range) in tier.cells() {
            for i in range {
                let s = tier.source(i);
                let (ra, dec) = s.pos.to_radec_deg();
                let (lon, lat) = (ra.to_radians(), dec.to_radians());
                assert_eq!(cdshealpix::nested::hash(tier.depth, lon, lat), cell);
                assert!(tier.cell_range(cell).contains(&i));
                seen.push(s);
            }
        }
    }
    assert_eq!(seen.len(), rows.len());
    for r in &rows {
        let s = seen
            .iter()
            .find(|s| {
                s.source_id == r.id && s.pos == meridian_core::Vec3::from_radec_deg(r.ra, r.dec)
            })
            .unwrap();
        assert_eq!(
            (s.pmra, s.pmdec, s.ref_epoch, s.mag),
            (r.pmra, r.pmdec, r.epoch, r.mag)
        );
        let fast = r.pmra.hypot(r.pmdec) > 1000.0;
        assert_eq!(
            index.tier(1).cells().any(|(_, rg)| rg.clone().any(|i| index
                .tier(1)
                .source(i)
                .source_id
                == r.id
                && index.tier(1).source(i) == *s)),
            fast
        );
    }
    index.verify().unwrap();
}

#[test]
fn bytes_do_not_depend_on_row_order_or_on_spilling() {
    let rows = random_catalogue(5, 3000);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    build_to(&csv_of(&rows, true), &a, &BuildOptions::default()).unwrap();
    let mut shuffled = rows.clone();
    shuffled.shuffle(&mut rand_pcg::Pcg64::seed_from_u64(9));
    build_to(&csv_of(&shuffled, true), &b, &BuildOptions::default()).unwrap();
    // 1024 entries per run: the external merge of three runs.
    let tiny = BuildOptions {
        memory_budget: 0,
        ..Default::default()
    };
    let report = build_to(&csv_of(&shuffled, true), &c, &tiny).unwrap();
    assert_eq!(report.spilled_runs, 3);
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap());
    assert_eq!(bytes, std::fs::read(&c).unwrap());
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left.len(), 3, "no temporary files left: {left:?}");
}

#[test]
fn malformed_rows_fail_with_their_line_or_are_counted_when_skipped() {
    let csv = "source_id,ra,dec,ref_epoch\n1,10,10,2016\n2,10,abc,2016\n3,10,10,2016\n4,10\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i");
    let err = build_to(csv, &path, &BuildOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cat.csv: line 3: dec \"abc\" is not a finite number"
    );
    assert!(!path.exists(), "nothing published on error");
    let report = build_to(
        csv,
        &path,
        &BuildOptions {
            skip_bad: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((report.sources, report.skipped_rows), (2, 2));
    assert!(
        report.skipped_examples[1].starts_with("line 5:"),
        "{:?}",
        report.skipped_examples
    );
    // Header problems are never skipped.
    let err = build_to(
        "source_id,ra,dec\n1,2,3\n",
        &path,
        &BuildOptions {
            skip_bad: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("ref_epoch"), "{err}");
}

#[test]
fn ref_epoch_option_fills_a_catalogue_without_the_column() {
    let rows: Vec<Row> = random_catalogue(8, 200)
        .into_iter()
        .map(|r| Row { epoch: 2016.0, ..r })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    build_to(&csv_of(&rows, true), &a, &BuildOptions::default()).unwrap();
    build_to(
        &csv_of(&rows, false),
        &b,
        &BuildOptions {
            ref_epoch: Some(2016.0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn damaged_files_are_named_errors() {
    let rows = random_catalogue(4, 300);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i");
    build_to(&csv_of(&rows, true), &path, &BuildOptions::default()).unwrap();
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, &good[..good.len() - 8]).unwrap();
    assert!(
        Index::open(&bad)
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
    std::fs::write(&bad, b"source_id,ra\n").unwrap();
    assert!(matches!(
        Index::open(&bad),
        Err(IndexError::NotAnIndex { .. })
    ));
    let mut flipped = good.clone();
    flipped[100] ^= 1;
    std::fs::write(&bad, &flipped).unwrap();
    assert!(
        Index::open(&bad)
            .unwrap_err()
            .to_string()
            .contains("header checksum")
    );
    let mut flipped = good.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 0x10;
    std::fs::write(&bad, &flipped).unwrap();
    let err = Index::open(&bad).and_then(|i| i.verify()).unwrap_err();
    assert!(err.to_string().contains("bad"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any damaged byte gives an error at open or verify, or (in columns, before
    /// verify) still a run without panic.
    #[test]
    fn no_panic_on_any_damaged_byte(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let rows = random_catalogue(4, 300);
        let transits = random_transits(4, &rows, 50);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i");
        build_to(&csv_of(&rows, true), &path, &BuildOptions::default()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(index) = Index::open(&path) {
            prop_assert!(index.verify().is_err());
            let _ = Matcher::new(&index, 1.0).unwrap().match_transits(&transits);
        }
    }
}

#[test]
fn every_cell_sphere_holds_its_sources() {
    let rows = random_catalogue(5, 900);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i");
    let opts = BuildOptions {
        sources_per_cell: 4.0,
        ..Default::default()
    };
    build_to(&csv_of(&rows, true), &path, &opts).unwrap();
    let index = Index::open(&path).unwrap();
    let mut cells = 0;
    for t in 0..2 {
        let tier = index.tier(t);
        for (i, c) in tier.cell_table().iter().enumerate() {
            assert_eq!(tier.range_of(i), tier.cell_range(c.cell));
            for k in tier.range_of(i) {
                let p = tier.positions()[k];
                let d2: f64 = (0..3).map(|j| (p[j] - c.centre[j]).powi(2)).sum();
                assert!(d2.sqrt() <= c.radius, "tier {t} cell {} source {k}", c.cell);
            }
            cells += 1;
        }
    }
    assert!(cells > 50, "only {cells} cells: the test needs many");
}
