//! Throughput and peak memory of the science simulation on a larger slice of a
//! scaled day: `cargo bench -p meridian-sim --bench science_volume -- [scale] [hours]`
//! (defaults 0.01 and 1). Prints MB/s of packets and the peak resident set.

use meridian_sim::science::{NoTruth, ScienceConfig, ScienceSim};
use std::time::Instant;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; keep only numeric arguments.
    let nums: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let scale = nums.first().copied().unwrap_or(0.01);
    let hours = nums.get(1).copied().unwrap_or(1.0);
    let cfg = ScienceConfig {
        scale: Some(scale),
        ..Default::default()
    };
    let t0 = Instant::now();
    let sim = ScienceSim::new(2026, 520_000_000_000_000_000, hours * 3600.0, &cfg).expect("config");
    let setup = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut bytes = 0u64;
    let stats = sim
        .generate(&mut |p| bytes += p.bytes.len() as u64, &mut NoTruth)
        .expect("generate");
    let secs = t1.elapsed().as_secs_f64();
    println!(
        "science_volume scale={scale} hours={hours} threads={}: {} transits, {} windows, {:.1} MB in {:.2} s \
         (+{setup:.2} s setup) = {:.1} MB/s; peak RSS {:.0} MiB",
        rayon::current_num_threads(),
        stats.transits,
        stats.windows,
        bytes as f64 / 1e6,
        secs,
        bytes as f64 / 1e6 / secs,
        peak_rss_mib().unwrap_or(f64::NAN),
    );
}
