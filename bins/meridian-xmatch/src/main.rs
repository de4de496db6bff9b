//! `meridian-xmatch`: cross-matches located transits against the catalogue index.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use meridian_cli::{LogArgs, exit};
use meridian_xmatch::run::{self, RunOptions};
use meridian_xmatch::{Index, Region};
use std::path::PathBuf;

/// Identify every transit with its catalogue source (ICD §8).
///
/// Reads every `transit` product under --in, matches each transit with a
/// position against the index (sources propagated to the transit's epoch,
/// ICD §7) and writes OUT/match.mprod (one `match` record per transit with a
/// position, sorted by transit_id; print it with meridian-dump) and
/// OUT/xmatch-summary.json (match rate, candidates histogram, new-source
/// groups).
///
/// Scale-out: with --region DEPTH:CELLS only transits whose position lies in
/// those HEALPix cells are matched, and OUT receives a partial result
/// (matched.mprod, unmatched.mprod, xmatch-region.json); `meridian-xmatch merge
/// --out DIR PART...` then links new-source groups across all parts and writes
/// the same products as one whole-sky run. Regions should partition the sky;
/// transits without a position are counted by the region holding cell 0.
///
/// Crash safety: products appear under their final names only when complete,
/// and xmatch-summary.json (xmatch-region.json for a partial) is written last
/// and removed when a run starts; rerunning a killed run gives the same
/// products.
///
/// Exit codes: 0 success; 2 failed: no `xmatch-summary.json` (or `xmatch-region.json`), so
/// other files in OUT are incomplete or stale (bad arguments, unreadable index
/// or inputs, unwritable output).
#[derive(Parser)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The catalogue index (from meridian-index build).
    #[arg(long)]
    index: Option<PathBuf>,
    /// Folder (or file) of located products; every `transit` product is read.
    #[arg(long = "in")]
    input: Option<PathBuf>,
    /// Output folder (created if needed).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Match radius in arcseconds.
    #[arg(long, default_value_t = meridian_xmatch::matcher::DEFAULT_RADIUS_ARCSEC)]
    radius_arcsec: f64,
    /// Restrict to a sky region: HEALPix DEPTH:CELLS, e.g. 1:0-15 or 3:100,200-210.
    #[arg(long)]
    region: Option<Region>,
    /// Transits matched per batch. Memory scales with it, not with the day:
    /// every batch's records but the last are spilled to OUT/.xmatch-spill
    /// (removed at the end) and merged into the products.
    #[arg(long, default_value_t = 1 << 20)]
    batch: usize,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Merge partial results of --region runs into the final products.
    Merge {
        /// Output folder for match.mprod and xmatch-summary.json.
        #[arg(long)]
        out: PathBuf,
        /// Folders written by --region runs.
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        #[command(flatten)]
        log: LogArgs,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Merge { log, .. }) => log.init(),
        None => cli.log.init(),
    }
    meridian_cli::run(|| {
        if let Some(n) = cli.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("setting up worker threads")?;
        }
        match &cli.command {
            Some(Command::Merge { out, parts, .. }) => merge(out, parts),
            None => match_run(&cli),
        }
    })
}

fn match_run(cli: &Cli) -> anyhow::Result<u8> {
    let (Some(index_path), Some(input), Some(out)) = (&cli.index, &cli.input, &cli.out) else {
        bail!("--index, --in and --out are required (see --help)");
    };
    let started = std::time::Instant::now();
    let index = Index::open(index_path)?;
    let files = run::transit_products(input)?;
    let total = run::count_transits(&files)?;
    tracing::info!(
        files = files.len(),
        transits = total,
        sources = index.len(),
        "matching"
    );
    let opts = RunOptions {
        radius_arcsec: cli.radius_arcsec,
        batch_size: cli.batch.max(1),
        region: cli.region.clone(),
    };
    let bar = meridian_cli::BarProgress(meridian_cli::progress_bar(total, "transits"));
    if cli.region.is_some() {
        let part = run::run_region(&index, &files, &opts, out, &bar)?;
        bar.0.finish_and_clear();
        tracing::info!(
            transits = part.info.transits_read,
            matched = part.matched,
            unmatched = part.unmatched,
            seconds = started.elapsed().as_secs_f64(),
            "partial result written to {} (finish with `meridian-xmatch merge`)",
            out.display()
        );
        return Ok(exit::OK);
    }
    let summary = run::run_whole(&index, &files, &opts, out, &bar)?;
    bar.0.finish_and_clear();
    report(out, &summary, started)
}

fn merge(out: &std::path::Path, parts: &[PathBuf]) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    let summary = run::merge_to_dir(parts, out)?;
    report(out, &summary, started)
}

fn report(
    out: &std::path::Path,
    summary: &meridian_xmatch::XmatchSummary,
    started: std::time::Instant,
) -> anyhow::Result<u8> {
    tracing::info!(
        matched = summary.transits_matched,
        unmatched = summary.transits_unmatched,
        match_rate = summary.match_rate,
        new_source_groups = summary.new_source_groups,
        seconds = started.elapsed().as_secs_f64(),
        "wrote {}",
        out.join(run::MATCH_FILE).display()
    );
    Ok(exit::OK)
}
