//! `meridian-decode`: decodes telemetry deliveries into per-delivery product folders.

use anyhow::Context;
use clap::Parser;
use meridian_cli::{LogArgs, exit};
use meridian_telemetry::MissionDb;
use meridian_telemetry::delivery::decode_deliveries;
use meridian_telemetry::input::DecodeOptions;
use std::path::PathBuf;

/// Decode Meridian telemetry deliveries (raw `.tm` or zstd `.tm.zst`, told apart by
/// content) into product files.
///
/// Each distinct delivery content gets a folder OUT/deliveries/<id>/ (id = xxh3-128
/// of the file's bytes, 32 hex digits) holding window.mprod, attitude.mprod,
/// hk.mprod, unknown_packet.mprod and quarantine.mprod (always all five, possibly
/// empty) and, written last, report.json: packets per APID, idle packets, CRC
/// failures, quarantined bytes, the byte accounting check, duration and
/// throughput. A folder without report.json is incomplete and is redone; one with
/// it is skipped, so decoding the same delivery twice adds nothing.
/// OUT/decode-summary.json lists every delivery of the run with failures and their
/// reasons.
///
/// Deliveries decode in parallel (set RAYON_NUM_THREADS to limit the threads); a
/// large raw delivery is also split across cores. A file that cannot be read, is
/// not telemetry, or whose zstd stream breaks fails alone, named in the log and
/// the summary.
///
/// Exit codes: 0 all decoded (or already decoded), 1 some deliveries failed,
/// 2 nothing could be done (bad mission database, unusable output folder).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Mission database (TOML, ICD §6), used to calibrate housekeeping.
    #[arg(long, value_name = "MISSION_DB")]
    db: PathBuf,
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Delivery files.
    #[arg(required = true, value_name = "DELIVERY")]
    deliveries: Vec<PathBuf>,
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    meridian_cli::run(|| {
        let db = MissionDb::load(&cli.db).context("cannot use the mission database")?;
        let total: u64 = cli
            .deliveries
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let bar = meridian_cli::BarProgress(meridian_cli::byte_progress_bar(total, "decoding"));
        let summary = decode_deliveries(
            &cli.deliveries,
            &db,
            &cli.out,
            DecodeOptions::default(),
            &bar,
        )?;
        bar.0.finish_and_clear();
        tracing::info!(
            "{} decoded, {} already decoded, {} failed ({} MB in {:.2} s); summary in {}",
            summary.decoded,
            summary.already_decoded,
            summary.failed,
            summary.input_bytes / 1_000_000,
            summary.duration_s,
            cli.out.join("decode-summary.json").display()
        );
        Ok(if summary.any_failed() {
            exit::PARTIAL
        } else {
            exit::OK
        })
    })
}
