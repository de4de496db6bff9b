//! `meridian-health`: payload health of housekeeping, science and data flow, with
//! exit codes of the monitoring-plugin convention.

use clap::Parser;
use meridian_cli::LogArgs;
use meridian_health::bounded::BoundedOptions;
use meridian_health::run::{self, HealthConfig, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when the run could not evaluate (monitoring-plugin UNKNOWN).
const UNKNOWN: u8 = 3;

/// Checks payload health and writes health_event products and reports.
///
/// Housekeeping is checked against the mission database (ICD §6: limit, state,
/// delta, stale, frozen), science products per field of view per time bin
/// (match rate, along/across-scan residuals, outliers, flagged windows) and data
/// flow per APID per hour (completeness against a service level).
///
/// Each --in folder is an ordered folder (with manifest.json: its hk chunks in time
/// order and its completeness counts) or any folder of product files (hk,
/// observation, transit and match products are used). The checker state is kept
/// in OUT/hk_state.json, so an event open at the end of one run continues in the
/// next; re-running over the same inputs gives the same outputs.
///
/// Outputs in OUT: health_event.mprod, report.json, report.html (self-contained,
/// with plots), metrics.prom (Prometheus textfile collector), hk_state.json.
///
/// Exit codes (monitoring-plugin convention): 0 OK (no event), 1 WARNING (warning
/// events only), 2 CRITICAL (at least one alarm), 3 UNKNOWN (could not evaluate:
/// bad or missing input, named in the message).
#[derive(Debug, Parser)]
#[command(name = "meridian-health", version, verbatim_doc_comment)]
struct Cli {
    /// Mission database (ICD §6 TOML).
    #[arg(long, value_name = "MISSION_DB")]
    db: PathBuf,
    /// Input folders: ordered folders and/or folders of located/matched products.
    #[arg(long = "in", value_name = "DIR", num_args = 1.., required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (created if missing; holds the checker state between runs).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// JSON file of science and data-flow thresholds (missing keys keep their
    /// defaults), e.g. {"science": {"bin_s": 300}, "dataflow": {"service_level": 0.98}}.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Checker state file carried between runs (default OUT/hk_state.json).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Observation and transit files read at once by the science pass (default
    /// four per thread): memory grows with it, the outputs do not change.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    science_batch: Option<u32>,
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(UNKNOWN);
        }
    };
    cli.log.init();
    match body(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("UNKNOWN: {err:#}");
            ExitCode::from(UNKNOWN)
        }
    }
}

fn body(cli: &Cli) -> anyhow::Result<u8> {
    let config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            serde_json::from_str::<HealthConfig>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => HealthConfig::default(),
    };
    let opts = RunOptions {
        db: cli.db.clone(),
        inputs: cli.inputs.clone(),
        out: cli.out.clone(),
        config,
        state: cli.state.clone(),
    };
    let bounded = match cli.science_batch {
        Some(n) => BoundedOptions {
            files_per_batch: n as usize,
        },
        None => BoundedOptions::default(),
    };
    let outcome = run::run_with(&opts, bounded)?;
    let r = &outcome.report;
    tracing::info!(
        status = r.status.as_str(),
        alarms = r.summary.alarms,
        warnings = r.summary.warnings,
        open = r.summary.open,
        hk_samples = r.hk.stats.samples_checked,
        late = r.hk.stats.late,
        unknown = r.hk.stats.unknown,
        already_checked = outcome.already_checked,
        resumed = outcome.resumed,
        science_peak_open_bins = outcome.science.peak_open_bins,
        science_peak_buffered_matches = outcome.science.peak_buffered_matches,
        "health checked; report in {}",
        opts.out.join(run::REPORT_HTML).display()
    );
    for part in &r.not_evaluated {
        tracing::warn!("not evaluated: {part}");
    }
    // The one-line plugin output on stdout.
    println!(
        "{} - {} alarms, {} warnings, {} open | alarms={} warnings={} open={}",
        r.status.as_str(),
        r.summary.alarms,
        r.summary.warnings,
        r.summary.open,
        r.summary.alarms,
        r.summary.warnings,
        r.summary.open
    );
    Ok(r.exit_code)
}
