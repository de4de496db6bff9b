//! `meridian-daily`: the whole daily pipeline in one command, and run comparison.

use anyhow::Context;
use clap::{Parser, Subcommand};
use meridian_cli::{LogArgs, exit};
use meridian_daily::compare::{Tolerance, compare_runs};
use meridian_daily::{DailyConfig, DailyProgress, run_daily};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Run the Meridian daily pipeline: decode → order → locate → cross-match → health.
///
/// With no arguments it runs on the bundled sample day (fixtures/sample-day) into
/// ./meridian-out and prints a summary. Runs are incremental: run it again as new
/// deliveries arrive and only the work they need is done; a run killed at any
/// moment and started again gives the same products as an uninterrupted one.
///
/// Output folder: decoded/, ordered/, located/, index/ (when the catalogue is a
/// CSV), matched/, health/ (report.html, report.json, health_event products),
/// run-manifest.json (inputs, configuration, per-stage counts, timings and peak
/// memory) and metrics.prom (Prometheus textfile collector).
///
/// Exit codes: 0 the run finished and every input was processed; 1 the run
/// finished but some inputs failed (named in the log and run-manifest.json);
/// 2 the run could not proceed (bad arguments, unreadable mission database or
/// catalogue, unwritable output). Payload health does not change the exit code:
/// read it from the summary, metrics.prom, or run meridian-health for
/// monitoring-plugin exit codes. `compare` exits 0 when the runs are equal and 1
/// when they differ.
#[derive(Parser)]
#[command(version, verbatim_doc_comment, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Folder of delivery files (*.tm, *.tm.zst; any names).
    #[arg(long, value_name = "DIR")]
    deliveries: Option<PathBuf>,
    /// Catalogue: an index from `meridian-index build`, or an ICD §7 CSV.
    #[arg(long, value_name = "INDEX_OR_CSV")]
    catalogue: Option<PathBuf>,
    /// Epoch (Julian year) of a CSV catalogue without a ref_epoch column.
    #[arg(long)]
    ref_epoch: Option<f64>,
    /// Mission database (ICD §6 TOML).
    #[arg(long, value_name = "MISSION_DB")]
    db: Option<PathBuf>,
    /// Output folder.
    #[arg(long, value_name = "DIR", default_value = "meridian-out")]
    out: PathBuf,
    /// Cross-match radius in arcseconds (ICD §8).
    #[arg(long, default_value_t = 1.0)]
    radius_arcsec: f64,
    /// Memory budget of the ordering stage in MiB (external merge beyond it).
    #[arg(long, default_value_t = 1024)]
    order_mem_mib: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write the closing summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Compare the products of two runs kind by kind (exit 0 equal, 1 different).
    Compare {
        run_a: PathBuf,
        run_b: PathBuf,
        /// Absolute tolerance of floating fields.
        #[arg(long, default_value_t = 1e-9)]
        abs_tol: f64,
        /// Relative tolerance of floating fields.
        #[arg(long, default_value_t = 1e-9)]
        rel_tol: f64,
        /// Differing records shown per kind.
        #[arg(long, default_value_t = 3)]
        examples: usize,
        /// Print the full comparison as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    meridian_cli::run(|| {
        if let Some(n) = cli.threads {
            rayon_threads(n)?;
        }
        match &cli.command {
            Some(Command::Compare {
                run_a,
                run_b,
                abs_tol,
                rel_tol,
                examples,
                json,
            }) => compare(
                run_a,
                run_b,
                Tolerance {
                    abs: *abs_tol,
                    rel: *rel_tol,
                },
                *examples,
                *json,
            ),
            None => daily(&cli),
        }
    })
}

fn rayon_threads(n: usize) -> anyhow::Result<()> {
    meridian_daily::run::set_threads(n).context("setting up worker threads")
}

/// The bundled sample day, found from the source tree this binary was built in
/// (so `cargo run` works from anywhere) or from the working folder.
fn sample_day() -> PathBuf {
    let built_in = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/sample-day"
    ));
    if built_in.is_dir() {
        built_in
    } else {
        PathBuf::from("fixtures/sample-day")
    }
}

fn daily(cli: &Cli) -> anyhow::Result<u8> {
    let day = sample_day();
    let pick =
        |given: &Option<PathBuf>, default: &str| given.clone().unwrap_or_else(|| day.join(default));
    let cfg = DailyConfig {
        deliveries: pick(&cli.deliveries, "deliveries"),
        catalogue: pick(&cli.catalogue, "catalogue.csv"),
        ref_epoch: cli.ref_epoch,
        db: pick(&cli.db, "mission_db.toml"),
        out: cli.out.clone(),
        radius_arcsec: cli.radius_arcsec,
        order_mem_bytes: cli.order_mem_mib << 20,
    };
    if cli.deliveries.is_none() {
        tracing::info!(
            "no --deliveries given: running on the sample day in {}",
            day.display()
        );
    }
    let bars = Bars::default();
    let outcome = run_daily(&cfg, &bars)?;
    let closing = &outcome.manifest.closing;
    println!("{}", closing.render());
    println!(
        "run manifest: {}",
        cfg.out.join("run-manifest.json").display()
    );
    if let Some(path) = &cli.summary_json {
        meridian_cli::write_json_atomic(path, closing)?;
    }
    Ok(if outcome.inputs_failed {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

fn compare(a: &Path, b: &Path, tol: Tolerance, examples: usize, json: bool) -> anyhow::Result<u8> {
    let cmp = compare_runs(a, b, tol, examples)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&cmp)?);
    } else {
        for k in &cmp.kinds {
            let verdict = if k.is_equal() { "equal" } else { "DIFFERENT" };
            println!(
                "{:<15} {:>10} {:>10} {:>10}  {verdict}",
                k.kind, k.count_a, k.count_b, k.differing
            );
            for d in &k.first_differences {
                println!("    record {}: fields {}", d.index, d.fields.join(", "));
            }
        }
        println!(
            "{}",
            if cmp.is_equal() {
                "runs are equal"
            } else {
                "runs differ"
            }
        );
    }
    Ok(if cmp.is_equal() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

/// One progress bar per stage on a terminal (hidden otherwise, by meridian_cli).
#[derive(Default)]
struct Bars {
    current: Mutex<Option<indicatif::ProgressBar>>,
}

impl DailyProgress for Bars {
    fn stage(&self, name: &'static str, total: u64) {
        let mut cur = self.current.lock().expect("progress lock");
        if let Some(bar) = cur.take() {
            bar.finish_and_clear();
        }
        *cur = Some(meridian_cli::progress_bar(total, name));
    }
    fn set(&self, done: u64) {
        if let Some(bar) = self.current.lock().expect("progress lock").as_ref() {
            bar.set_position(done);
        }
    }
    fn done(&self) {
        if let Some(bar) = self.current.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}
