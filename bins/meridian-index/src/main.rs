//! `meridian-index`: builds and inspects the memory-mapped catalogue index.

use anyhow::Context;
use clap::{Parser, Subcommand};
use meridian_cli::{LogArgs, exit};
use meridian_xmatch::{BuildOptions, Index, build_index_from_path};
use std::path::PathBuf;

/// Build or inspect the catalogue index used by meridian-xmatch.
///
/// `build` streams an ICD §7 catalogue CSV (Gaia column names: source_id, ra,
/// dec, pmra, pmdec, ref_epoch, optional phot_g_mean_mag; other columns are
/// ignored) of any size into one memory-mappable file: sources ordered by
/// HEALPix cell, split into a slow and a fast-proper-motion tier. Catalogues
/// larger than --memory-mib are sorted externally in runs beside the output.
/// The index appears atomically when complete.
///
/// Exit codes: 0 success; 1 the index was built but malformed rows were
/// skipped (--skip-bad); 2 nothing was built (bad input, bad arguments, I/O),
/// or `info --verify` found damage.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index from a catalogue CSV.
    Build {
        /// The catalogue CSV (ICD §7).
        catalogue: PathBuf,
        /// Where to write the index.
        #[arg(short, long)]
        output: PathBuf,
        /// Julian epoch of positions for rows without a ref_epoch value (the
        /// column wins where both are given).
        #[arg(long)]
        ref_epoch: Option<f64>,
        /// Skip malformed rows (counted, first ones logged) instead of stopping
        /// at the first one.
        #[arg(long)]
        skip_bad: bool,
        /// Memory for in-memory sorting, MiB; larger catalogues spill sorted runs.
        #[arg(long, default_value_t = 1024)]
        memory_mib: usize,
        /// Folder for the sort runs (default: the output's folder).
        #[arg(long)]
        tmp_dir: Option<PathBuf>,
        /// Mean sources per HEALPix cell aimed at when choosing each tier's depth.
        #[arg(long, default_value_t = 64.0)]
        sources_per_cell: f64,
        /// Proper motion (mas/yr) above which a source goes to the fast tier.
        #[arg(long, default_value_t = 1000.0)]
        fast_pm_limit: f64,
        /// Also write the build report as JSON here.
        #[arg(long)]
        summary: Option<PathBuf>,
    },
    /// Print an index's header as JSON.
    Info {
        index: PathBuf,
        /// Also recompute every section checksum (reads the whole file).
        #[arg(long)]
        verify: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    meridian_cli::run(|| match cli.command {
        Command::Build {
            catalogue,
            output,
            ref_epoch,
            skip_bad,
            memory_mib,
            tmp_dir,
            sources_per_cell,
            fast_pm_limit,
            summary,
        } => {
            let opts = BuildOptions {
                ref_epoch,
                skip_bad,
                memory_budget: memory_mib.saturating_mul(1 << 20),
                fast_pm_limit,
                sources_per_cell,
                temp_dir: tmp_dir,
            };
            let size = std::fs::metadata(&catalogue)
                .with_context(|| format!("{}", catalogue.display()))?
                .len();
            let bar = meridian_cli::BarProgress(meridian_cli::byte_progress_bar(size, "catalogue"));
            let started = std::time::Instant::now();
            let report = build_index_from_path(&catalogue, &output, &opts, &bar)?;
            bar.0.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                sources = report.sources,
                skipped = report.skipped_rows,
                spilled_runs = report.spilled_runs,
                seconds = secs,
                rate = report.sources as f64 / secs,
                "index built at {}",
                output.display()
            );
            for e in &report.skipped_examples {
                tracing::warn!("skipped {e}");
            }
            if let Some(path) = summary {
                meridian_cli::write_json_atomic(&path, &report)?;
            }
            Ok(if report.skipped_rows > 0 {
                exit::PARTIAL
            } else {
                exit::OK
            })
        }
        Command::Info { index, verify } => {
            let idx = Index::open(&index)?;
            if verify {
                idx.verify()?;
                tracing::info!("all section checksums verified");
            }
            println!("{}", serde_json::to_string_pretty(&idx.info())?);
            Ok(exit::OK)
        }
    })
}
