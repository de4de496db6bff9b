//! The binary end to end: build, info, errors and exit codes.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian-index"))
}

const CSV: &str = "source_id,ra,dec,pmra,pmdec,ref_epoch,phot_g_mean_mag\n\
1,10.0,20.0,1.5,-2.0,2016.0,12.0\n\
2,359.9999,-89.9,,,2016.0,\n\
3,180.0,0.0,5000.0,0.0,2015.5,9.0\n";

#[test]
fn builds_and_reports_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("cat.csv");
    std::fs::write(&csv, CSV).unwrap();
    let idx = dir.path().join("cat.idx");
    let summary = dir.path().join("build.json");
    let out = bin()
        .args([
            "build",
            csv.to_str().unwrap(),
            "-o",
            idx.to_str().unwrap(),
            "--summary",
        ])
        .arg(&summary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(report["sources"], 3);
    let out = bin().args(["info", "--verify"]).arg(&idx).output().unwrap();
    assert!(out.status.success());
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["sources"], 3);
    assert_eq!(info["tiers"][0]["sources"], 2);
    assert_eq!(info["tiers"][1]["sources"], 1);
    assert_eq!(info["tiers"][1]["max_pm_mas_yr"], 5000.0);
}

#[test]
fn malformed_rows_stop_the_build_or_are_skipped_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("cat.csv");
    std::fs::write(&csv, format!("{CSV}4,1.0,95.0,,,2016.0,\n")).unwrap();
    let idx = dir.path().join("cat.idx");
    let out = bin()
        .arg("build")
        .arg(&csv)
        .arg("-o")
        .arg(&idx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 5") && err.contains("dec 95"), "{err}");
    assert!(!idx.exists());
    let out = bin()
        .arg("build")
        .arg(&csv)
        .arg("-o")
        .arg(&idx)
        .arg("--skip-bad")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(idx.exists());
}

#[test]
fn damaged_index_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.idx");
    std::fs::write(&bad, b"not an index at all").unwrap();
    let out = bin().arg("info").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Meridian catalogue index"));
}
