//! The `meridian-decode` binary: exit codes, named errors, output layout.

use std::path::Path;
use std::process::Command;

const DB: &str = r#"
[[structure]]
sid = 1
name = "THERMAL"
[[structure.param]]
name = "FPA_TEMP_1"
type = "u16"
calibration = { polynomial = [100.0, 0.01] }
"#;

fn delivery() -> Vec<u8> {
    use meridian_telemetry::packet::{SecondaryHeader, encode_idle, encode_packet};
    let mut out = Vec::new();
    for i in 0..50u16 {
        let sec = SecondaryHeader::new(3, 25, i, 1_000_000_000 * i as u64);
        encode_packet(&mut out, 0x201, i, &sec, &[0, 1, 0x17, i as u8]).unwrap();
        if i % 10 == 0 {
            out.extend_from_slice(b"noise");
        }
        encode_idle(&mut out, i, 12);
    }
    out
}

fn decode(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meridian-decode"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_explains_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = decode(tmp.path(), &["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("report.json") && text.contains("Exit codes"));
}

#[test]
fn exit_codes_say_what_happened() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("db.toml"), DB).unwrap();
    std::fs::write(d.join("good.tm"), delivery()).unwrap();
    std::fs::write(d.join("bad.tm"), b"this is not telemetry at all").unwrap();

    let ok = decode(d, &["--db", "db.toml", "--out", "out", "good.tm"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let id = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&delivery()));
    let report = d.join("out/deliveries").join(&id).join("report.json");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    assert_eq!(report["packets_per_apid"]["0x201"], 50);
    // An idle packet right after garbage is not a sync point (ICD §9): the five
    // noise runs and the idle packets after them are quarantined together.
    assert_eq!(report["idle_packets"], 45);
    assert_eq!(report["quarantined_bytes"], 5 * (5 + 12));
    assert_eq!(report["garbage_spans"], 5);
    assert_eq!(report["accounting"]["balanced"], true);
    assert!(d.join("out/decode-summary.json").is_file());

    let partial = decode(d, &["--db", "db.toml", "--out", "out", "good.tm", "bad.tm"]);
    assert_eq!(partial.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&partial.stderr);
    assert!(stderr.contains("bad.tm: not telemetry"), "{stderr}");

    std::fs::write(d.join("broken.toml"), "[[structure]]\nsid = \"x\"\n").unwrap();
    let fatal = decode(d, &["--db", "broken.toml", "--out", "out", "good.tm"]);
    assert_eq!(fatal.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&fatal.stderr).contains("broken.toml"));
}
