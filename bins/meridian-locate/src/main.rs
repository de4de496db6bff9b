//! `meridian-locate`: image parameters and sky positions of every window and transit.

use clap::Parser;
use meridian_cli::{LogArgs, exit};
use meridian_locate::LocateSummary;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Measure every window's image parameters (maximum-likelihood centroid, flux
/// and background of the ICD §5 window model, with Fisher-information errors)
/// and turn windows and transits into sky positions with the attitude.
///
/// Reads the ordered folder written by meridian-order and writes, per window
/// chunk, DIR/observation/<start_obt_ns>.mprod (one observation per window) and
/// DIR/transit/<start_obt_ns>.mprod (the transits whose earliest window is in
/// the chunk), plus DIR/locate-state.json recording the input chunk versions
/// each output was made from. A re-run redoes only the chunks whose inputs
/// (the chunk, its neighbours within 60 s, the attitude around it) changed, and
/// removes the outputs of chunks gone from the manifest. Output is byte-identical
/// whatever the thread count. No window is dropped: problems become flags
/// (saturated, truncated, background_fixed, fit_failed, no_attitude).
///
/// Prints a JSON run summary on stdout. Exit codes: 0 every chunk processed,
/// 1 some chunks could not be read (named in the log and summary; their outputs
/// are removed and they are retried next run), 2 nothing could be done (no or
/// bad manifest, unwritable output, another run holding DIR).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The ordered folder written by meridian-order.
    #[arg(long = "in", value_name = "ORDERED_DIR")]
    input: PathBuf,
    /// The output folder (created if missing).
    #[arg(long = "out", value_name = "DIR")]
    output: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write the run summary to this file (atomically).
    #[arg(long, value_name = "PATH")]
    summary: Option<PathBuf>,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Serialize)]
struct RunSummary {
    #[serde(flatten)]
    locate: LocateSummary,
    elapsed_s: f64,
    /// Windows of the processed chunks per second of wall time.
    windows_per_s: f64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    meridian_cli::run(|| {
        if let Some(n) = cli.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()?;
        }
        let started = Instant::now();
        let plan = meridian_locate::plan(&cli.input, &cli.output)?;
        tracing::info!(
            chunks = plan.chunks_to_process(),
            "window chunks to process"
        );
        let bar = meridian_cli::BarProgress(meridian_cli::progress_bar(
            plan.chunks_to_process() as u64,
            "chunks",
        ));
        let locate = plan.execute(&bar)?;
        bar.0.finish_and_clear();
        let elapsed_s = started.elapsed().as_secs_f64();
        tracing::info!(
            processed = locate.chunks_processed,
            up_to_date = locate.chunks_up_to_date,
            removed = locate.chunks_removed,
            failed = locate.chunks_failed.len(),
            windows = locate.windows,
            transits = locate.transits,
            fit_failed = locate.fit_failed,
            no_attitude = locate.no_attitude,
            "run finished in {elapsed_s:.2} s"
        );
        let summary = RunSummary {
            windows_per_s: if elapsed_s > 0.0 {
                locate.windows as f64 / elapsed_s
            } else {
                0.0
            },
            locate,
            elapsed_s,
        };
        if let Some(path) = &cli.summary {
            meridian_cli::write_json_atomic(path, &summary)?;
        }
        println!("{}", serde_json::to_string_pretty(&summary)?);
        Ok(if summary.locate.chunks_failed.is_empty() {
            exit::OK
        } else {
            exit::PARTIAL
        })
    })
}
