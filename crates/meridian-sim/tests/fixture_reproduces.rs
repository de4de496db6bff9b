//! The committed sample day (`fixtures/sample-day`) is exactly what the
//! simulator produces for `DayConfig::sample_day()`: every file, byte for byte.
//! If this fails after an intended change, run `cargo xtask sample-day` and
//! commit the new fixture.

use meridian_sim::day::{DayConfig, simulate_day};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod hk_reference;

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn sample_day_fixture_is_reproduced_byte_for_byte() {
    let committed_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sample-day");
    let committed = files(&committed_dir);
    let fresh_dir = tempfile::tempdir().unwrap();
    simulate_day(&DayConfig::sample_day(), fresh_dir.path()).unwrap();
    let fresh = files(fresh_dir.path());
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "file lists differ (run `cargo xtask sample-day`)"
    );
    for (name, bytes) in &committed {
        assert!(
            bytes == &fresh[name],
            "{} differs (run `cargo xtask sample-day`)",
            name.display()
        );
    }
    let deliveries = committed
        .keys()
        .filter(|k| k.starts_with("deliveries"))
        .count();
    assert!(deliveries >= 5, "{deliveries} deliveries");
    let total: usize = committed.values().map(Vec::len).sum();
    assert!(
        total <= 20_000_000,
        "the fixture must stay within 20 MB, it is {total} octets"
    );
}

/// The fixture's expected health events are exactly what a reference ICD §6
/// checker finds in its expected housekeeping (what reached the ground).
#[test]
fn sample_day_health_truth_matches_a_reference_checker() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sample-day");
    let db = meridian_telemetry::MissionDb::load(dir.join("mission_db.toml")).unwrap();
    let hk: Vec<meridian_core::records::Hk> =
        meridian_core::product::read_all(dir.join("truth/expected/hk.mprod")).unwrap();
    let mut rows = hk_reference::Rows::new();
    for h in &hk {
        let s = rows.entry(h.sid).or_default();
        match s.last_mut() {
            Some((t, raw)) if *t == h.obt_ns => raw.push(h.raw),
            _ => s.push((h.obt_ns, vec![h.raw])),
        }
    }
    let end = hk.iter().map(|h| h.obt_ns).max().unwrap();
    let text = std::fs::read_to_string(dir.join("truth/health_events.jsonl")).unwrap();
    let events: Vec<meridian_sim::hk::TruthEvent> = text
        .lines()
        .map(|l| meridian_sim::hk::TruthEvent {
            anomaly: String::new(),
            ..serde_json::from_str(l).unwrap()
        })
        .collect();
    assert!(events.len() >= 12, "{} events", events.len());
    hk_reference::assert_same_events(&events, &hk_reference::reference_events(&db, &rows, end));
}
