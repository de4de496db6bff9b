//! `meridian-order`: merges decoded deliveries into time-ordered, versioned chunks.

use anyhow::Context;
use clap::Parser;
use meridian_cli::{LogArgs, exit};
use meridian_order::{Manifest, Options, Progress, order};
use std::path::PathBuf;
use std::sync::Mutex;

/// Merge decoded deliveries into time-ordered chunks per stream (window,
/// attitude, hk) with a manifest saying which chunks are complete, provisional
/// or final.
///
/// Each run consumes the complete delivery folders of DECODED_DIR/deliveries/
/// (those with report.json) not consumed before, and rewrites only the chunks
/// they touch, as new versions. Retransmitted packets are kept once; the same
/// packet key with different bytes is set aside in conflicts.json and
/// conflicts/; sequence-count holes become gap records in gaps.mprod. The
/// result depends only on the set of deliveries consumed, never on their order
/// or on how they were split into runs. Killing a run at any point is safe: the
/// next run ends where an uninterrupted one would.
///
/// Prints a JSON run summary on stdout. Exit codes: 0 everything consumed,
/// 1 some deliveries could not be read (named in the log and summary; they are
/// retried next run), 2 nothing could be done (bad arguments, unreadable state,
/// unwritable output, another run holding the folder).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The decoded folder written by meridian-decode.
    #[arg(
        long = "in",
        value_name = "DECODED_DIR",
        required_unless_present = "changed_since"
    )]
    input: Option<PathBuf>,
    /// The ordered folder (created if missing).
    #[arg(long = "out", value_name = "ORDERED_DIR")]
    output: PathBuf,
    /// Chunk length in seconds, aligned to the mission epoch. Fixed once the
    /// folder has a manifest.
    #[arg(long, default_value_t = 60)]
    chunk_s: u64,
    /// Memory budget for buffered records, e.g. 1GiB, 512MiB, 64M; beyond it the
    /// records are sorted in runs on disk and merged (same result).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    mem: u64,
    /// Make every chunk that ends at or before this OBT (ns since the mission
    /// epoch) final. Later data for final chunks is reported and kept in late/,
    /// never merged.
    #[arg(long, value_name = "OBT_NS")]
    close_before: Option<u64>,
    /// Also write the run summary to this file (atomically).
    #[arg(long, value_name = "PATH")]
    summary: Option<PathBuf>,
    /// Do not run: print (JSON) the chunks whose content or status changed in
    /// runs after RUN (0 lists every chunk).
    #[arg(long, value_name = "RUN", conflicts_with_all = ["input", "close_before"])]
    changed_since: Option<u64>,
    #[command(flatten)]
    log: LogArgs,
}

/// Parses sizes like `1GiB`, `512MiB`, `64M`, `1000000`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => return Err(format!("bad size unit in {s:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

/// Draws the library's progress phases as meridian_cli bars.
struct Bars {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress for Bars {
    fn phase(&self, name: &str, total: u64) {
        let mut bar = self.bar.lock().expect("progress lock");
        if let Some(b) = bar.take() {
            b.finish_and_clear();
        }
        *bar = Some(meridian_cli::progress_bar(total, name));
    }
    fn advance(&self, n: u64) {
        if let Some(b) = self.bar.lock().expect("progress lock").as_ref() {
            b.inc(n);
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    meridian_cli::run(|| {
        if let Some(run) = cli.changed_since {
            let m = Manifest::load(&cli.output)?;
            let changed: Vec<_> = m.changed_or_restatused_since(run).collect();
            println!("{}", serde_json::to_string_pretty(&changed)?);
            return Ok(exit::OK);
        }
        let input = cli.input.clone().context("--in is required")?;
        let chunk_ns = cli
            .chunk_s
            .checked_mul(1_000_000_000)
            .filter(|&n| n > 0)
            .context("--chunk-s must be a positive number of seconds")?;
        let opts = Options {
            input,
            output: cli.output.clone(),
            chunk_ns,
            mem_bytes: cli.mem,
            close_before_obt_ns: cli.close_before,
        };
        let bars = Bars {
            bar: Mutex::new(None),
        };
        let summary = order(&opts, &bars)?;
        if let Some(b) = bars.bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
        tracing::info!(
            run = summary.run,
            deliveries = summary.deliveries_consumed,
            failed = summary.failed.len(),
            packets_new = summary.packets_new,
            duplicates = summary.packets_duplicate,
            conflicts = summary.packets_conflicting,
            late = summary.packets_late,
            chunks_written = summary.chunks_written,
            gaps = summary.gaps,
            "run finished{}",
            if summary.noop { " (nothing new)" } else { "" }
        );
        if let Some(path) = &cli.summary {
            meridian_cli::write_json_atomic(path, &summary)?;
        }
        println!("{}", serde_json::to_string_pretty(&summary)?);
        Ok(if summary.failed.is_empty() {
            exit::OK
        } else {
            exit::PARTIAL
        })
    })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
    }
}
