//! Crash safety of the daily run: a child `meridian-daily` killed at random
//! moments (spread over the whole run, so every stage gets hit) and started
//! again gives exactly the products of an uninterrupted run.

mod common;

use meridian_daily::compare::{Tolerance, compare_runs};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn daily(out: &Path) -> Command {
    let day = common::sample_day();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian-daily"));
    cmd.arg("--deliveries")
        .arg(day.join("deliveries"))
        .arg("--catalogue")
        .arg(day.join("catalogue.csv"))
        .arg("--db")
        .arg(day.join("mission_db.toml"))
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn run_to_completion(out: &Path) {
    let status = daily(out).status().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn killed_runs_converge_to_the_uninterrupted_products() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let started = Instant::now();
    run_to_completion(&reference);
    let full = started.elapsed();

    const SEEDS: u64 = 4;
    let mut interrupted = 0;
    for seed in 0..SEEDS {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let out = dir.path().join(format!("crashed-{seed}"));
        // Seed i kills within the i-th slice of the run, then once more at a
        // random moment of the restarted run, before letting it finish.
        let slice = full.as_secs_f64() / SEEDS as f64;
        let delays = [
            slice * (seed as f64 + rng.random::<f64>()),
            full.as_secs_f64() * rng.random::<f64>(),
        ];
        for delay in delays {
            let mut child = daily(&out).spawn().unwrap();
            std::thread::sleep(Duration::from_secs_f64(delay));
            let _ = child.kill(); // SIGKILL: no chance to clean up
            child.wait().unwrap();
            // The run manifest is written last: without it the run was cut short.
            interrupted += !out.join("run-manifest.json").exists() as u32;
            std::fs::remove_file(out.join("run-manifest.json")).ok();
        }
        run_to_completion(&out);
        let cmp = compare_runs(&reference, &out, Tolerance { abs: 0.0, rel: 0.0 }, 3).unwrap();
        assert!(
            cmp.is_equal(),
            "seed {seed}: {}",
            serde_json::to_string_pretty(&cmp).unwrap()
        );
        assert!(
            cmp.kinds
                .iter()
                .any(|k| k.kind == "health_event" && k.count_a > 0)
        );
    }
    assert!(
        interrupted >= SEEDS as u32,
        "only {interrupted} kills interrupted a run"
    );
}
