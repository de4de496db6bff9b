//! Shared by the daily end-to-end tests: the bundled sample day and its truth.

#![allow(dead_code)]

use meridian_daily::DailyConfig;
use std::path::{Path, PathBuf};

pub fn sample_day() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sample-day")
}

pub fn config(out: &Path) -> DailyConfig {
    let day = sample_day();
    DailyConfig {
        deliveries: day.join("deliveries"),
        catalogue: day.join("catalogue.csv"),
        ref_epoch: None,
        db: day.join("mission_db.toml"),
        out: out.to_owned(),
        radius_arcsec: 1.0,
        order_mem_bytes: 1 << 30,
    }
}

pub fn truth_jsonl(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(sample_day().join("truth").join(name)).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
