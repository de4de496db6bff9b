//! `cargo xtask daily-bench`: the whole daily run on a simulated fraction of a
//! Gaia-scale day, timed per stage with peak memory, against `zstd -dc` of the
//! same deliveries measured in the same invocation.

use anyhow::{Context, bail};
use meridian_sim::day::{DayConfig, simulate_day};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub struct Args {
    pub scale: f64,
    pub hours: f64,
    pub work: PathBuf,
    pub zstd_repeats: usize,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let day = args.work.join("day");
    ensure_day(&day, args.scale, args.hours)?;
    let daily = build_daily()?;
    let deliveries = delivery_files(&day.join("deliveries"))?;
    let telemetry_bytes: u64 = deliveries
        .iter()
        .map(|p| p.metadata().map_or(0, |m| m.len()))
        .sum();

    let zstd_s = median(
        &mut (0..args.zstd_repeats)
            .map(|_| time_zstd(&deliveries))
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let out = args.work.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let started = Instant::now();
    let status = Command::new(&daily)
        .arg("--deliveries")
        .arg(day.join("deliveries"))
        .arg("--catalogue")
        .arg(day.join("catalogue.csv"))
        .arg("--db")
        .arg(day.join("mission_db.toml"))
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .status()?;
    let total_s = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("meridian-daily failed: {status}");
    }
    report(&out, &day, telemetry_bytes, total_s, zstd_s)
}

/// The day is simulated once per (scale, hours) and reused: the benchmark
/// measures the pipeline, not the simulator.
fn ensure_day(day: &Path, scale: f64, hours: f64) -> anyhow::Result<()> {
    let stamp = day.join("bench-config.txt");
    let key = format!("scale={scale} hours={hours}");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str()) {
        println!("reusing the simulated day in {}", day.display());
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(day);
    let mut cfg = DayConfig::default();
    cfg.science.scale = Some(scale);
    cfg.duration_s = hours * 3600.0;
    println!(
        "simulating scale {scale}, {hours} h into {} …",
        day.display()
    );
    let t = Instant::now();
    let stats =
        simulate_day(&cfg, day).with_context(|| format!("simulating into {}", day.display()))?;
    println!(
        "  {} windows, {:.1} MB of telemetry streams, {} deliveries in {:.1} s",
        stats.windows,
        stats.delivery_stream_bytes as f64 / 1e6,
        stats.deliveries,
        t.elapsed().as_secs_f64()
    );
    std::fs::write(&stamp, key)?;
    Ok(())
}

fn build_daily() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "meridian-daily-bin"])
        .status()?;
    if !status.success() {
        bail!("building meridian-daily failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("release/meridian-daily"))
}

fn delivery_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    Ok(files)
}

/// `zstd -dcf` decompresses the `.tm.zst` deliveries and passes raw ones through:
/// the least any decoder of these files must do.
fn time_zstd(files: &[PathBuf]) -> anyhow::Result<f64> {
    let t = Instant::now();
    let status = Command::new("zstd")
        .arg("-dcfq")
        .args(files)
        .stdout(Stdio::null())
        .status()
        .context("running zstd (apt-get install zstd)")?;
    if !status.success() {
        bail!("zstd -dc failed: {status}");
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds of one stage, or of every stage when `name` is empty.
fn stage_seconds(manifest: &serde_json::Value, name: &str) -> f64 {
    manifest["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| name.is_empty() || s["stage"] == name)
        .filter_map(|s| s["seconds"].as_f64())
        .sum()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(
    out: &Path,
    day: &Path,
    telemetry_bytes: u64,
    total_s: f64,
    zstd_s: f64,
) -> anyhow::Result<()> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run-manifest.json"))?)?;
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(day.join("truth/summary.json"))?)?;
    let gib = |b: &serde_json::Value| {
        b.as_f64().map_or("n/a".to_owned(), |b| {
            format!("{:.2} GiB", b / (1u64 << 30) as f64)
        })
    };
    println!(
        "\nday: {} windows, {} transits, {:.1} MB delivered ({:.1} MB decompressed)",
        summary["windows"],
        summary["transits"],
        telemetry_bytes as f64 / 1e6,
        summary["delivery_stream_bytes"].as_f64().unwrap_or(0.0) / 1e6
    );
    println!(
        "{:<10} {:>10} {:>10} {:>12}",
        "stage", "wall s", "CPU s", "peak RSS"
    );
    for stage in manifest["stages"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {:>10.2} {:>10.2} {:>12}",
            stage["stage"].as_str().unwrap_or("?"),
            stage["seconds"].as_f64().unwrap_or(f64::NAN),
            stage["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
            gib(&stage["peak_rss_bytes"])
        );
    }
    println!(
        "{:<10} {:>10.2} {:>10} {:>12}",
        "total",
        total_s,
        "",
        gib(&manifest["peak_rss_bytes"])
    );
    // The catalogue index is built once per catalogue release, not per day: in
    // operations --catalogue names a prebuilt index. The daily cost excludes it.
    let index_s = stage_seconds(&manifest, "index");
    let daily_s = stage_seconds(&manifest, "") - index_s;
    println!("zstd -dc of the same deliveries (median): {zstd_s:.2} s");
    println!(
        "per-day stages (all but the one-off index build): {daily_s:.2} s = {:.1}x zstd -dc (target ≤ 5x); \
         whole run with the index build: {:.1}x",
        daily_s / zstd_s,
        total_s / zstd_s
    );
    Ok(())
}
