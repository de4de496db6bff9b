//! Repeatable developer tasks: regenerate or verify the committed sample day,
//! and measure the simulator's throughput.

mod daily_bench;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use meridian_sim::day::{DayConfig, simulate_day};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Developer tasks for the Meridian workspace (run as `cargo xtask ...`).
#[derive(Parser)]
#[command(about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Regenerate fixtures/sample-day (DayConfig::sample_day), or with --check
    /// verify that regenerating it reproduces the committed files byte for byte.
    SampleDay {
        /// Where the sample day lives.
        #[arg(long, default_value = "fixtures/sample-day")]
        out: PathBuf,
        /// Regenerate into a temporary folder and compare instead of writing.
        #[arg(long)]
        check: bool,
    },
    /// Simulate a scaled day into a temporary folder and report throughput
    /// (MB/s of delivered telemetry) and peak memory.
    SimBench {
        /// Fraction of a Gaia-scale sky.
        #[arg(long, default_value_t = 0.002)]
        scale: f64,
        /// Length of the day in hours.
        #[arg(long, default_value_t = 2.0)]
        hours: f64,
        /// Keep the day here instead of a temporary folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also time the parts separately (catalogue, science, downlink).
        #[arg(long)]
        parts: bool,
    },
    /// Run meridian-daily (release) on a simulated fraction of a Gaia-scale day
    /// and report wall time and peak memory per stage, against `zstd -dc` of
    /// the same deliveries measured in the same invocation.
    DailyBench {
        /// Fraction of a Gaia-scale day (0.01: about 7 M windows, 350 MB).
        #[arg(long, default_value_t = 0.01)]
        scale: f64,
        /// Length of the simulated day in hours.
        #[arg(long, default_value_t = 24.0)]
        hours: f64,
        /// Work folder (the simulated day is kept there and reused).
        #[arg(long, default_value = "target/daily-bench")]
        work: PathBuf,
        /// Runs of `zstd -dc` whose median is the baseline.
        #[arg(long, default_value_t = 3)]
        zstd_repeats: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::SampleDay { out, check } => sample_day(&workspace_path(&out), check),
        Command::SimBench {
            scale,
            hours,
            out,
            parts,
        } => sim_bench(scale, hours, out, parts),
        Command::DailyBench {
            scale,
            hours,
            work,
            zstd_repeats,
        } => daily_bench::run(&daily_bench::Args {
            scale,
            hours,
            work: workspace_path(&work),
            zstd_repeats: zstd_repeats.max(1),
        }),
    }
}

/// Relative paths are taken from the workspace root, wherever cargo runs us.
fn workspace_path(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_owned();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

fn sample_day(out: &Path, check: bool) -> anyhow::Result<()> {
    let cfg = DayConfig::sample_day();
    if !check {
        let stats =
            simulate_day(&cfg, out).with_context(|| format!("writing {}", out.display()))?;
        let size: u64 = files(out)?.values().map(|b| b.len() as u64).sum();
        println!(
            "wrote {}: {} deliveries, {} octets in all",
            out.display(),
            stats.deliveries,
            size
        );
        return Ok(());
    }
    let tmp = std::env::temp_dir().join(format!("meridian-sample-day-{}", std::process::id()));
    let result = (|| {
        simulate_day(&cfg, &tmp)?;
        compare_trees(out, &tmp)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    println!("{} is reproduced byte for byte", out.display());
    Ok(())
}

/// Every file under `dir` (relative path → bytes), skipping nothing.
pub fn files(dir: &Path) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir)?.to_owned();
                out.insert(rel, std::fs::read(&p)?);
            }
        }
    }
    Ok(out)
}

fn compare_trees(committed: &Path, fresh: &Path) -> anyhow::Result<()> {
    let (a, b) = (files(committed)?, files(fresh)?);
    let mut problems = Vec::new();
    for (k, v) in &a {
        match b.get(k) {
            None => problems.push(format!("{}: not produced any more", k.display())),
            Some(w) if w != v => problems.push(format!("{}: differs", k.display())),
            _ => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        problems.push(format!("{}: new file, not committed", k.display()));
    }
    if !problems.is_empty() {
        bail!(
            "{} does not match a fresh simulation:\n  {}\n(run `cargo xtask sample-day` and commit if the change is intended)",
            committed.display(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

fn sim_bench(scale: f64, hours: f64, out: Option<PathBuf>, with_parts: bool) -> anyhow::Result<()> {
    let mut cfg = DayConfig::default();
    cfg.science.scale = Some(scale);
    cfg.duration_s = hours * 3600.0;
    let keep = out.is_some();
    let dir = out.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("meridian-sim-bench-{}", std::process::id()))
    });
    cfg.write_catalogue = false;
    let cpu_before = meridian_core::resources::cpu_seconds();
    let started = Instant::now();
    let stats = simulate_day(&cfg, &dir)?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = meridian_core::resources::cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let hwm = meridian_core::resources::peak_rss_bytes().map_or("peak RSS n/a".to_owned(), |b| {
        format!("peak RSS {:.0} MiB", b as f64 / (1u64 << 20) as f64)
    });
    let mb = stats.delivery_stream_bytes as f64 / 1e6;
    println!(
        "whole day without catalogue: scale {scale}, {hours} h: {} windows, {} deliveries, {mb:.1} MB of telemetry in {elapsed:.2} s = {:.1} MB/s; {hwm}",
        stats.windows,
        stats.deliveries,
        mb / elapsed,
    );
    if let Some(cpu) = cpu {
        // CPU time is steadier than wall time on a shared machine.
        println!(
            "  CPU {cpu:.2} s (user+sys, all threads) = {:.1} MB per CPU-second",
            mb / cpu
        );
    }
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if with_parts { parts(&cfg, mb) } else { Ok(()) }
}

/// Times the parts of a day separately: catalogue, science generation, and
/// the downlink (housekeeping + faults + delivery files) over packets held in memory.
fn parts(cfg: &DayConfig, mb: f64) -> anyhow::Result<()> {
    use meridian_sim::downlink::Downlink;
    use meridian_sim::hk::HkSim;
    use meridian_sim::science::{NoTruth, ScienceSim};
    let sim = ScienceSim::new(cfg.seed, cfg.start_obt_ns, cfg.duration_s, &cfg.science)?;
    let t = Instant::now();
    sim.write_catalogue(std::io::sink())?;
    let catalogue_s = t.elapsed().as_secs_f64();
    let mut packets = Vec::new();
    let t = Instant::now();
    let science = sim.generate(&mut |p| packets.push(p), &mut NoTruth)?;
    let science_s = t.elapsed().as_secs_f64();
    println!(
        "science: {} transits, {} windows, {} candidate stars examined",
        science.transits, science.windows, science.candidate_stars
    );
    let hk = HkSim::new(cfg.seed, cfg.start_obt_ns, cfg.duration_s, &cfg.hk)?;
    packets.extend(hk);
    packets.sort_by_key(|p| p.obt_ns);
    let bytes: usize = packets.iter().map(|p| p.bytes.len()).sum();
    let dir = std::env::temp_dir().join(format!("meridian-downlink-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let mut downlink = Downlink::new(cfg.seed, cfg.start_obt_ns, &cfg.downlink, &dir)?;
    for p in &packets {
        downlink.push(p, false, None)?;
    }
    downlink.finish()?;
    let downlink_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "parts: catalogue {catalogue_s:.2} s, science generation {science_s:.2} s ({:.1} MB/s), \
         downlink {downlink_s:.2} s ({:.1} MB/s of {:.1} MB of packets)",
        mb / science_s,
        bytes as f64 / 1e6 / downlink_s,
        bytes as f64 / 1e6
    );
    Ok(())
}
