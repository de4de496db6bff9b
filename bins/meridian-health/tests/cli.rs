//! The binary's exit codes follow the monitoring-plugin convention.

use meridian_health::synth::{DemoPaths, write_demo_inputs};
use std::path::Path;
use std::process::{Command, Output};

/// The binary over demo inputs, writing into `out`.
fn command(paths: &DemoPaths, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian-health"));
    cmd.arg("--db")
        .arg(&paths.db)
        .arg("--in")
        .arg(&paths.ordered)
        .arg(&paths.located)
        .arg("--out")
        .arg(out);
    cmd
}

fn health(root: &Path, hours: f64, rate: f64) -> Output {
    let paths = write_demo_inputs(root, hours, rate).unwrap();
    command(&paths, &root.join("out")).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn ok_warning_critical_follow_the_events() {
    let dir = tempfile::tempdir().unwrap();
    // First hour: nothing wrong.
    let quiet = health(&dir.path().join("ok"), 1.0, 0.02);
    assert_eq!(
        quiet.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    assert!(
        stdout(&quiet).starts_with("OK - 0 alarms, 0 warnings"),
        "{}",
        stdout(&quiet)
    );
    // 1.5 h: APID 0x101 is 96 % complete in hour 1, a warning.
    let warn = health(&dir.path().join("warn"), 1.5, 0.0);
    assert_eq!(warn.status.code(), Some(1), "{}", stdout(&warn));
    assert!(
        stdout(&warn).starts_with("WARNING - 0 alarms, 1 warnings"),
        "{}",
        stdout(&warn)
    );
    // The whole demo day has alarms.
    let crit = health(&dir.path().join("crit"), 7.0, 0.02);
    assert_eq!(crit.status.code(), Some(2), "{}", stdout(&crit));
    assert!(stdout(&crit).starts_with("CRITICAL"));
    for f in [
        "health_event.mprod",
        "report.json",
        "report.html",
        "metrics.prom",
        "hk_state.json",
    ] {
        assert!(dir.path().join("crit/out").join(f).is_file(), "{f} missing");
    }
}

#[test]
fn bad_input_is_unknown_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian-health"))
        .args([
            "--db",
            "/nonexistent/mission_db.toml",
            "--in",
            "/tmp",
            "--out",
        ])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UNKNOWN: /nonexistent/mission_db.toml"),
        "{err}"
    );
    // A usage error is UNKNOWN too, --help is OK.
    let usage = Command::new(env!("CARGO_BIN_EXE_meridian-health"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(3));
    let help = Command::new(env!("CARGO_BIN_EXE_meridian-health"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("monitoring-plugin"));
}

#[test]
fn science_batch_changes_nothing_written_and_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_demo_inputs(dir.path(), 2.0, 0.05).unwrap();
    let run = |out: &str, batch: &str| {
        command(&paths, &dir.path().join(out))
            .args(["--science-batch", batch])
            .output()
            .unwrap()
    };
    let (one, many) = (run("one", "1"), run("many", "1000"));
    assert_eq!(one.status.code(), many.status.code());
    for f in ["health_event.mprod", "report.json", "report.html"] {
        let read = |d: &str| std::fs::read(dir.path().join(d).join(f)).unwrap();
        assert!(read("one") == read("many"), "{f} differs");
    }
    let zero = run("zero", "0");
    assert_eq!(zero.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--science-batch"));
}
