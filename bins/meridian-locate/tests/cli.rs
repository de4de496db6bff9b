//! The binary's contract: help, exit codes, the JSON summary.

use std::process::Command;

fn locate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian-locate"))
}

#[test]
fn help_explains_the_folders() {
    let out = locate().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ORDERED_DIR") && text.contains("locate-state.json"));
}

#[test]
fn missing_manifest_is_fatal_and_named() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let res = locate()
        .args(["--in".as_ref(), input.path().as_os_str()])
        .args(["--out".as_ref(), out.path().as_os_str()])
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("manifest.json"));
}

#[test]
fn empty_ordered_folder_gives_an_empty_summary() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(
        input.path().join("manifest.json"),
        r#"{"format":1,"chunk_ns":60000000000,"run":1,"chunks":[]}"#,
    )
    .unwrap();
    let summary_path = out.path().join("summary.json");
    let res = locate()
        .args(["--in".as_ref(), input.path().as_os_str()])
        .args(["--out".as_ref(), out.path().as_os_str()])
        .args(["--summary".as_ref(), summary_path.as_os_str()])
        .args(["--threads", "1"])
        .output()
        .unwrap();
    assert_eq!(
        res.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let stdout: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(stdout["windows"], 0);
    assert_eq!(stdout["window_chunks"], 0);
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary_path).unwrap()).unwrap();
    assert_eq!(file["windows"], 0);
    assert!(out.path().join("locate-state.json").is_file());
}
