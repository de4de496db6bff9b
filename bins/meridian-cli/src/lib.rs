//! Plumbing shared by the thin `meridian-*` binaries, so they all log, show
//! progress, summarise and exit the same way. Nothing here is pipeline logic.

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use meridian_core::stage::Progress;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// Exit codes shared by the stage binaries (meridian-health uses the
/// monitoring-plugin convention instead, see its `--help`).
pub mod exit {
    /// Everything processed.
    pub const OK: u8 = 0;
    /// The run finished but some inputs failed (named in the log and summary).
    pub const PARTIAL: u8 = 1;
    /// Nothing useful could be done: bad arguments, unreadable configuration,
    /// unwritable output.
    pub const FATAL: u8 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines on stderr.
    #[default]
    Text,
    /// One JSON object per line on stderr, for log collectors.
    Json,
}

/// Logging options every binary accepts.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// More detail (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl LogArgs {
    /// Installs the global tracing subscriber writing to stderr.
    pub fn init(&self) {
        let level = match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => "info",
            (false, 1) => "debug",
            _ => "trace",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false);
        let _ = match self.log_format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
    }
}

/// A progress bar on stderr when it is a terminal, hidden otherwise (logs and
/// scripts then see no control characters).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), progress_target());
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// A progress bar counting bytes.
pub fn byte_progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), progress_target());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// A progress bar as a stage library's [`Progress`]: each phase restarts the bar
/// with its name and total (kept when the phase gives 0, "unknown"), and steps
/// advance it.
pub struct BarProgress(pub ProgressBar);

impl Progress for BarProgress {
    fn phase(&self, name: &str, total: u64) {
        if total > 0 {
            self.0.set_length(total);
        }
        self.0.set_position(0);
        self.0.set_message(name.to_owned());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

fn progress_target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// Writes a machine-readable run summary (pretty JSON) atomically.
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    meridian_core::product::write_file_atomic(path, &bytes)?;
    Ok(())
}

/// Runs a binary's body, reporting an error with its whole cause chain and
/// turning it into [`exit::FATAL`]; the body returns its own exit code otherwise.
pub fn run(body: impl FnOnce() -> anyhow::Result<u8>) -> ExitCode {
    match body() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            tracing::error!("{err:#}");
            // Also on plain stderr in case logging was never initialised.
            eprintln!("error: {err:#}");
            ExitCode::from(exit::FATAL)
        }
    }
}
