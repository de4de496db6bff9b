//! `meridian-dump`: prints product files or folders as JSON Lines (ICD §9).

use anyhow::Context;
use clap::Parser;
use meridian_cli::{LogArgs, exit};
use std::io::Write;
use std::path::PathBuf;

/// Print Meridian product files as JSON Lines, one object per record with a
/// "kind" field and the ICD §9 field names.
///
/// Folders are searched recursively for product files (recognised by their
/// header, not their name) and printed in path order. A file that is truncated or
/// corrupted is named on stderr and the exit code is 1; the others still print.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Product files or folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print only records of this kind (e.g. window, match, health_event).
    #[arg(long)]
    kind: Option<String>,
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    meridian_cli::run(|| {
        let kind = match &cli.kind {
            Some(name) => Some(
                meridian_core::RecordKind::from_name(name)
                    .with_context(|| format!("unknown record kind {name:?}"))?,
            ),
            None => None,
        };
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut failed = 0;
        for path in &cli.paths {
            let files = meridian_core::product::find_products(path)?;
            for file in files {
                if let Some(k) = kind {
                    match meridian_core::product::read_header(&file) {
                        Ok(h) if h.kind != k => continue,
                        _ => {}
                    }
                }
                if let Err(err) = meridian_core::product::dump_jsonl(&file, &mut out) {
                    tracing::error!("{err}");
                    failed += 1;
                }
            }
        }
        out.flush()?;
        Ok(if failed > 0 { exit::PARTIAL } else { exit::OK })
    })
}
