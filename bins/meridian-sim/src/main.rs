//! `meridian-sim`: simulates a Meridian telemetry day (or just its catalogue)
//! with known truth. Thin wiring over `meridian_sim::day`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use meridian_cli::{LogArgs, exit, progress_bar, write_json_atomic};
use meridian_sim::day::{DayConfig, simulate_day_with_progress, write_catalogue_file};
use std::path::PathBuf;
use std::time::Instant;

/// Simulate Meridian telemetry with known truth.
///
/// `day` writes a day folder: the deliveries a mission operations centre would
/// send (raw and zstd CCSDS packet files with realistic downlink faults), the
/// star catalogue, the mission database, and under `truth/` everything a
/// correct pipeline must find (expected products, gaps, health events, fault
/// offsets). Everything is a pure function of the configuration: the same
/// seed gives byte-identical files.
///
/// Exit codes: 0 success, 2 failure (bad arguments or configuration, unwritable
/// output).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

/// Options that shape the simulated sky and time.
#[derive(clap::Args)]
struct SkyArgs {
    /// Random seed: everything derives from it.
    #[arg(long)]
    seed: Option<u64>,
    /// Stars on the procedural sky.
    #[arg(long)]
    stars: Option<u64>,
    /// Fraction of a Gaia-scale sky (overrides --stars): 1.0 ≈ 70 M transits a day.
    #[arg(long)]
    scale: Option<f64>,
    /// Read stars from this ICD §7 catalogue instead of generating them.
    #[arg(long)]
    catalogue: Option<PathBuf>,
    /// A day configuration (JSON, as in truth/config.json); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a day into a folder (see `meridian_sim::day` for the layout).
    Day {
        /// Output folder (created; an earlier simulated day there is replaced).
        #[arg(long)]
        out: PathBuf,
        /// Length of the day in hours.
        #[arg(long)]
        hours: Option<f64>,
        /// Start of the day, OBT nanoseconds.
        #[arg(long)]
        start_obt_ns: Option<u64>,
        /// Disable the injected housekeeping anomalies (needed below ~80 minutes).
        #[arg(long)]
        no_hk_anomalies: bool,
        #[command(flatten)]
        sky: SkyArgs,
        /// Also write the JSON run summary here (it is always printed on stdout).
        #[arg(long)]
        summary: Option<PathBuf>,
    },
    /// Write only the star catalogue (ICD §7 CSV) of a configuration.
    Catalogue {
        /// Output CSV file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        sky: SkyArgs,
    },
    /// Print the default day configuration as JSON (a starting point for --config).
    PrintConfig,
}

fn load_config(sky: &SkyArgs) -> anyhow::Result<DayConfig> {
    let mut cfg = match &sky.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
        None => DayConfig::default(),
    };
    if let Some(seed) = sky.seed {
        cfg.seed = seed;
    }
    if let Some(n) = sky.stars {
        cfg.science.n_stars = n;
        cfg.science.scale = None;
    }
    if let Some(s) = sky.scale {
        cfg.science.scale = Some(s);
    }
    if let Some(c) = &sky.catalogue {
        cfg.science.catalogue = Some(c.clone());
    }
    Ok(cfg)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    meridian_cli::run(|| match cli.command {
        Command::PrintConfig => {
            println!("{}", serde_json::to_string_pretty(&DayConfig::default())?);
            Ok(exit::OK)
        }
        Command::Catalogue { out, sky } => {
            let cfg = load_config(&sky)?;
            let size = write_catalogue_file(&cfg, &out)?;
            tracing::info!("wrote {} ({size} octets)", out.display());
            Ok(exit::OK)
        }
        Command::Day {
            out,
            hours,
            start_obt_ns,
            no_hk_anomalies,
            sky,
            summary,
        } => {
            let mut cfg = load_config(&sky)?;
            if let Some(h) = hours {
                cfg.duration_s = h * 3600.0;
            }
            if let Some(t) = start_obt_ns {
                cfg.start_obt_ns = t;
            }
            if no_hk_anomalies {
                cfg.hk.anomalies = false;
            }
            let bar = progress_bar(cfg.duration_s.ceil() as u64, "OBT s");
            let started = Instant::now();
            let stats = simulate_day_with_progress(&cfg, &out, &mut |t| {
                bar.set_position(t.saturating_sub(cfg.start_obt_ns) / 1_000_000_000);
            })?;
            bar.finish_and_clear();
            let elapsed = started.elapsed().as_secs_f64();
            let report = serde_json::json!({
                "out": out,
                "elapsed_s": elapsed,
                "delivered_mb_per_s": stats.delivery_stream_bytes as f64 / 1e6 / elapsed,
                "day": stats,
            });
            if let Some(path) = summary {
                write_json_atomic(&path, &report)?;
            }
            println!("{}", serde_json::to_string_pretty(&report)?);
            tracing::info!(
                "{} deliveries, {:.1} MB of telemetry in {elapsed:.1} s",
                stats.deliveries,
                stats.delivery_stream_bytes as f64 / 1e6
            );
            Ok(exit::OK)
        }
    })
}
