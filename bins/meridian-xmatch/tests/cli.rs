//! The binary end to end: a whole run, and regions merged to the same bytes.

use meridian_core::product;
use meridian_core::records::{Flags, Match, Transit};
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian-xmatch"))
}

fn transit(id: u64, radec: Option<(f64, f64)>) -> Transit {
    Transit {
        transit_id: id,
        fov: 0,
        row: 4,
        t_obs_ns: 200_000_000_000_000_000,
        ra: radec.map(|p| p.0),
        dec: radec.map(|p| p.1),
        n_windows: 9,
        mag: None,
        flags: Flags::EMPTY,
        sigma_al_mas: None,
        sigma_ac_mas: None,
        scan_pa_deg: None,
    }
}

fn setup(dir: &Path) {
    let csv = "source_id,ra,dec,ref_epoch\n10,10.0,20.0,2016.0\n11,200.0,-30.0,2016.0\n12,200.0,-30.0,2016.0\n";
    meridian_xmatch::build_index(
        csv.as_bytes(),
        Path::new("cat.csv"),
        &dir.join("cat.idx"),
        &Default::default(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("located")).unwrap();
    let transits = vec![
        transit(5, Some((10.0, 20.0001))),
        transit(3, Some((200.00005, -30.0))),
        transit(9, None),
        transit(7, Some((100.0, 10.0))),
        transit(8, Some((100.0, 10.0002))),
    ];
    product::write_all(dir.join("located/transits.mprod"), &transits).unwrap();
}

#[test]
fn whole_run_writes_matches_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let out = bin()
        .arg("--index")
        .arg(dir.path().join("cat.idx"))
        .arg("--in")
        .arg(dir.path().join("located"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Match> = product::read_all(dir.path().join("out/match.mprod")).unwrap();
    let ids: Vec<u64> = records.iter().map(|m| m.transit_id).collect();
    assert_eq!(ids, vec![3, 5, 7, 8]);
    // 11 and 12 share a position: an exact tie, won by the smaller id.
    assert_eq!(
        (records[0].source_id, records[0].n_candidates),
        (Some(11), 2)
    );
    assert_eq!(records[0].ambiguous, vec![12]);
    assert_eq!(records[1].source_id, Some(10));
    assert_eq!(
        (records[2].new_source, records[3].new_source),
        (Some(7), Some(7))
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/xmatch-summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["transits_read"], 5);
    assert_eq!(summary["transits_without_position"], 1);
    assert_eq!(summary["match_rate"], 0.5);
    assert_eq!(summary["new_source_groups"], 1);
}

#[test]
fn regions_then_merge_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let d = dir.path();
    let whole = bin()
        .args(["--threads", "1", "--index"])
        .arg(d.join("cat.idx"))
        .arg("--in")
        .arg(d.join("located"))
        .arg("--out")
        .arg(d.join("whole"))
        .status()
        .unwrap();
    assert!(whole.success());
    for (k, spec) in ["0:0-5", "0:6-11"].iter().enumerate() {
        let st = bin()
            .args(["--region", spec, "--index"])
            .arg(d.join("cat.idx"))
            .arg("--in")
            .arg(d.join("located"))
            .arg("--out")
            .arg(d.join(format!("part{k}")))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let st = bin()
        .args(["merge", "--out"])
        .arg(d.join("merged"))
        .arg(d.join("part0"))
        .arg(d.join("part1"))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read(d.join("merged/match.mprod")).unwrap(),
        std::fs::read(d.join("whole/match.mprod")).unwrap()
    );
}

#[test]
fn missing_arguments_and_inputs_are_clear_errors() {
    let out = bin().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--index, --in and --out are required"));
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let out = bin()
        .arg("--index")
        .arg(dir.path().join("cat.idx"))
        .arg("--in")
        .arg(dir.path().join("nowhere"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}
