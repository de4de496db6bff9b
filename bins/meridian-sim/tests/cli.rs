//! The `meridian-sim` binary: help, configuration, a small day with its JSON
//! summary, a catalogue, and a clear failure on bad input.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian-sim"))
}

#[test]
fn help_explains_the_subcommands() {
    let out = sim().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["day", "catalogue", "print-config", "truth", "Exit codes"] {
        assert!(text.contains(word), "--help lacks {word:?}:\n{text}");
    }
}

#[test]
fn a_small_day_writes_its_folder_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let day = dir.path().join("day");
    let summary = dir.path().join("summary.json");
    let out = sim()
        .args([
            "day", "--hours", "1.5", "--stars", "3000", "--seed", "4", "-q", "--out",
        ])
        .arg(&day)
        .arg("--summary")
        .arg(&summary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(printed["day"], written["day"]);
    assert!(printed["day"]["deliveries"].as_u64().unwrap() > 0);
    for f in [
        "catalogue.csv",
        "mission_db.toml",
        "truth/config.json",
        "truth/expected/hk.mprod",
    ] {
        assert!(day.join(f).exists(), "{f} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(day.join("truth/config.json")).unwrap()).unwrap();
    assert_eq!(
        (cfg["seed"].as_u64(), cfg["science"]["n_stars"].as_u64()),
        (Some(4), Some(3000))
    );
}

#[test]
fn catalogue_and_config_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("cat.csv");
    // A bare relative file name (no folder part) works too.
    let out = sim()
        .current_dir(dir.path())
        .args(["catalogue", "--stars", "500", "-q", "--out", "cat.csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&cat).unwrap();
    assert!(text.starts_with("source_id,ra,dec"));
    assert!(text.lines().count() > 100);
    let out = sim().arg("print-config").output().unwrap();
    let cfg: meridian_sim::day::DayConfig = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg, meridian_sim::day::DayConfig::default());
}

#[test]
fn too_short_a_day_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = sim()
        .args(["day", "--hours", "0.2", "-q", "--out"])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("too short") && err.contains("hk.anomalies"),
        "{err}"
    );
}
