//! One daily run: decode → order → locate → index (when given a CSV) →
//! cross-match → health, each from its library, in one process.
//!
//! Every stage is incremental and crash-safe on its own (each keeps its state in
//! its output folder and publishes files atomically), so the daily run is simply
//! "run every stage again": work already done is found done and skipped, and a
//! run killed at any moment converges to the same products when run again.
//!
//! ```text
//! OUT/
//!   decoded/     meridian-decode output (one folder per delivery content)
//!   ordered/     meridian-order output (manifest.json, chunks/, gaps.mprod)
//!   located/     meridian-locate output (observation/, transit/)
//!   index/       catalogue index built from a CSV catalogue (reused while the CSV is unchanged)
//!   matched/     meridian-xmatch output (match.mprod, xmatch-summary.json)
//!   health/      meridian-health output (health_event products, report.json, report.html, metrics.prom)
//!   run-manifest.json   what this run consumed, did and measured
//!   metrics.prom        Prometheus textfile metrics of the run
//! ```

use crate::health_stage;
use meridian_core::product;
use meridian_core::stage::{NoProgress, Progress};
use meridian_order::{ChunkStatus, Manifest};
use meridian_telemetry::MissionDb;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a daily run is asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct DailyConfig {
    /// Folder of delivery files (`*.tm`, `*.tm.zst`, any names; searched recursively).
    pub deliveries: PathBuf,
    /// Catalogue: an index built by `meridian-index`, or an ICD §7 CSV.
    pub catalogue: PathBuf,
    /// `--ref-epoch` for a CSV catalogue without a `ref_epoch` column.
    pub ref_epoch: Option<f64>,
    /// Mission database (ICD §6 TOML).
    pub db: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Cross-match radius, arcsec.
    pub radius_arcsec: f64,
    /// Memory budget of the ordering stage, octets.
    pub order_mem_bytes: u64,
}

/// Callbacks for per-stage progress; the library counts, the binary draws.
pub trait DailyProgress: Sync {
    /// A stage starts with `total` units of work (0 when unknown).
    fn stage(&self, _name: &'static str, _total: u64) {}
    /// Absolute progress within the current stage.
    fn set(&self, _done: u64) {}
    /// The current stage is finished.
    fn done(&self) {}
}

/// No progress display.
pub struct Quiet;
impl DailyProgress for Quiet {}

/// Timing and memory of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub stage: &'static str,
    pub seconds: f64,
    /// Peak resident memory during the stage (Linux: VmHWM after resetting it
    /// at the stage's start), octets.
    pub peak_rss_bytes: Option<u64>,
    /// CPU seconds (user + system, all threads) the stage used: over `seconds`,
    /// how many cores it kept busy.
    pub cpu_seconds: Option<f64>,
    /// The stage's own summary.
    pub summary: serde_json::Value,
}

/// The run manifest written to `OUT/run-manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunManifest {
    pub software: &'static str,
    pub version: &'static str,
    pub config: DailyConfig,
    /// Delivery files found, with their content IDs (xxh3-128) where decoded.
    pub inputs: Vec<InputFile>,
    pub stages: Vec<StageReport>,
    pub total_seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    pub closing: ClosingSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub path: PathBuf,
    pub bytes: u64,
}

/// What an operator reads at the end of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClosingSummary {
    pub deliveries_found: u64,
    pub deliveries_new: u64,
    pub deliveries_failed: u64,
    pub input_bytes: u64,
    pub chunks_complete: u64,
    pub chunks_provisional: u64,
    pub chunks_final: u64,
    pub gaps: u64,
    pub windows: u64,
    pub transits: u64,
    pub transits_matched: u64,
    pub match_rate: Option<f64>,
    pub new_source_groups: u64,
    pub health_status: String,
    pub health_events: u64,
    pub health_report: PathBuf,
}

impl ClosingSummary {
    /// A few lines for a terminal.
    pub fn render(&self) -> String {
        format!(
            "deliveries: {} found, {} new, {} failed ({:.1} MB)\n\
             chunks:     {} complete, {} provisional, {} final; {} gaps\n\
             windows:    {}; transits: {}, matched {} (match rate {})\n\
             new-source candidate groups: {}\n\
             health:     {} ({} events) — report: {}",
            self.deliveries_found,
            self.deliveries_new,
            self.deliveries_failed,
            self.input_bytes as f64 / 1e6,
            self.chunks_complete,
            self.chunks_provisional,
            self.chunks_final,
            self.gaps,
            self.windows,
            self.transits,
            self.transits_matched,
            self.match_rate
                .map_or("n/a".into(), |r| format!("{:.2}%", 100.0 * r)),
            self.new_source_groups,
            self.health_status,
            self.health_events,
            self.health_report.display(),
        )
    }
}

/// Why a daily run stopped.
#[derive(Debug, thiserror::Error)]
pub enum DailyError {
    #[error("{stage}: {message}")]
    Stage {
        stage: &'static str,
        message: String,
    },
}

fn stage_err(stage: &'static str) -> impl Fn(&dyn std::fmt::Display) -> DailyError {
    move |e| DailyError::Stage {
        stage,
        message: e.to_string(),
    }
}

/// Outcome of a run: the manifest, and whether some inputs failed (the run
/// still finished the others).
#[derive(Debug)]
pub struct DailyOutcome {
    pub manifest: RunManifest,
    pub inputs_failed: bool,
}

/// Runs every stage once over `cfg`, incrementally.
pub fn run_daily(
    cfg: &DailyConfig,
    progress: &dyn DailyProgress,
) -> Result<DailyOutcome, DailyError> {
    let started = Instant::now();
    let out = &cfg.out;
    std::fs::create_dir_all(out)
        .map_err(|e| stage_err("setup")(&format!("{}: {e}", out.display())))?;
    let db = MissionDb::load(&cfg.db).map_err(|e| stage_err("setup")(&e))?;
    let inputs = find_deliveries(&cfg.deliveries).map_err(|e| stage_err("setup")(&e))?;
    let mut stages = Vec::new();
    let mut closing = ClosingSummary::default();
    let mut inputs_failed = false;

    // Decode.
    let paths: Vec<PathBuf> = inputs.iter().map(|i| i.path.clone()).collect();
    let total_bytes = inputs.iter().map(|i| i.bytes).sum();
    let decoded = timed(&mut stages, "decode", progress, total_bytes, || {
        meridian_telemetry::delivery::decode_deliveries(
            &paths,
            &db,
            &out.join("decoded"),
            Default::default(),
            &StageProgress::new(progress, "decode"),
        )
        .map_err(|e| stage_err("decode")(&e))
    })?;
    closing.deliveries_found = inputs.len() as u64;
    closing.deliveries_new = decoded.decoded;
    closing.deliveries_failed = decoded.failed;
    closing.input_bytes = decoded.input_bytes;
    inputs_failed |= decoded.any_failed();

    // Order.
    let mut order_opts = meridian_order::Options::new(out.join("decoded"), out.join("ordered"));
    order_opts.mem_bytes = cfg.order_mem_bytes;
    let ordered = timed(&mut stages, "order", progress, 0, || {
        meridian_order::order(&order_opts, &StageProgress::new(progress, "order"))
            .map_err(|e| stage_err("order")(&e))
    })?;
    inputs_failed |= !ordered.failed.is_empty();
    closing.gaps = ordered.gaps;
    let manifest = Manifest::load(&out.join("ordered")).map_err(|e| stage_err("order")(&e))?;
    for chunk in &manifest.chunks {
        match chunk.status {
            ChunkStatus::Complete => closing.chunks_complete += 1,
            ChunkStatus::Provisional => closing.chunks_provisional += 1,
            ChunkStatus::Final => closing.chunks_final += 1,
        }
    }

    // Locate.
    let located = timed(&mut stages, "locate", progress, 0, || {
        let plan = meridian_locate::plan(&out.join("ordered"), &out.join("located"))
            .map_err(|e| stage_err("locate")(&e))?;
        plan.execute(&StageProgress::new(progress, "locate"))
            .map_err(|e| stage_err("locate")(&e))
    })?;
    inputs_failed |= !located.chunks_failed.is_empty();

    // Catalogue index (built once per distinct CSV).
    let index_path = timed(&mut stages, "index", progress, 0, || ensure_index(cfg))?;

    // Cross-match.
    let matched = timed(&mut stages, "xmatch", progress, 0, || {
        xmatch(cfg, &index_path, progress)
    })?;
    closing.transits = matched.transits_read;
    closing.transits_matched = matched.transits_matched;
    closing.match_rate = matched.match_rate;
    closing.new_source_groups = matched.new_source_groups;

    // Health.
    let health = timed(&mut stages, "health", progress, 0, || {
        health_stage::run(&cfg.db, out).map_err(|e| stage_err("health")(&e))
    })?;
    closing.health_status = health.status.clone();
    closing.health_events = health.events;
    closing.health_report = health.report_html.clone();
    closing.windows = manifest
        .chunks_of(meridian_order::Stream::Window)
        .map(|c| c.records)
        .sum();

    let manifest = RunManifest {
        software: "meridian",
        version: env!("CARGO_PKG_VERSION"),
        config: cfg.clone(),
        inputs,
        stages,
        total_seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: crate::memory::process_peak_rss(),
        closing,
    };
    write_outputs(out, &manifest)?;
    Ok(DailyOutcome {
        manifest,
        inputs_failed,
    })
}

/// Runs one stage, recording its time, peak memory and summary.
fn timed<T: Serialize>(
    stages: &mut Vec<StageReport>,
    stage: &'static str,
    progress: &dyn DailyProgress,
    total: u64,
    body: impl FnOnce() -> Result<T, DailyError>,
) -> Result<T, DailyError> {
    tracing::info!(stage, "starting");
    progress.stage(stage, total);
    crate::memory::reset_peak_rss();
    let cpu_before = meridian_core::resources::cpu_seconds();
    let started = Instant::now();
    let result = body();
    progress.done();
    let value = result?;
    let report = StageReport {
        stage,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: crate::memory::peak_rss_since_reset(),
        cpu_seconds: meridian_core::resources::cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before),
        summary: serde_json::to_value(&value).unwrap_or(serde_json::Value::Null),
    };
    tracing::info!(stage, seconds = report.seconds, "finished");
    stages.push(report);
    Ok(value)
}

/// Shows a stage library's progress on the daily run's bar: a phase with a
/// known total restarts the stage's bar, steps move it.
struct StageProgress<'a> {
    daily: &'a dyn DailyProgress,
    stage: &'static str,
    done: std::sync::atomic::AtomicU64,
}

impl<'a> StageProgress<'a> {
    fn new(daily: &'a dyn DailyProgress, stage: &'static str) -> Self {
        Self {
            daily,
            stage,
            done: Default::default(),
        }
    }
}

impl Progress for StageProgress<'_> {
    fn phase(&self, name: &str, total: u64) {
        tracing::debug!(stage = self.stage, phase = name, total, "phase");
        if total > 0 {
            self.done.store(0, std::sync::atomic::Ordering::Relaxed);
            self.daily.stage(self.stage, total);
        }
    }
    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        self.daily.set(done);
    }
}

/// Delivery files under `dir`, recursively, in path order (names carry no
/// meaning, ICD §2, but a fixed order keeps logs and manifests stable).
fn find_deliveries(dir: &Path) -> Result<Vec<InputFile>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", d.display()))?;
            let path = entry.path();
            let meta = entry
                .metadata()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && !is_hidden(&path) {
                out.push(InputFile {
                    path,
                    bytes: meta.len(),
                });
            }
        }
    }
    if out.is_empty() {
        return Err(format!("{}: no delivery files found", dir.display()));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The index to match against: the given file if it is an index, else one built
/// from the CSV into `OUT/index/`, rebuilt only when the CSV's content changes.
fn ensure_index(cfg: &DailyConfig) -> Result<PathBuf, DailyError> {
    let err = stage_err("index");
    if meridian_xmatch::Index::open(&cfg.catalogue).is_ok() {
        return Ok(cfg.catalogue.clone());
    }
    let dir = cfg.out.join("index");
    std::fs::create_dir_all(&dir).map_err(|e| err(&format!("{}: {e}", dir.display())))?;
    let key = format!(
        "{:032x}-{:?}",
        content_hash(&cfg.catalogue).map_err(|e| err(&e))?,
        cfg.ref_epoch
    );
    let index = dir.join("catalogue.idx");
    let stamp = dir.join("catalogue.source");
    if index.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str()) {
        return Ok(index);
    }
    let opts = meridian_xmatch::BuildOptions {
        ref_epoch: cfg.ref_epoch,
        ..Default::default()
    };
    // Streamed from the file: a catalogue CSV may be far larger than memory.
    meridian_xmatch::index::build_index_from_path(&cfg.catalogue, &index, &opts, &NoProgress)
        .map_err(|e| err(&e))?;
    product::write_file_atomic(&stamp, key.as_bytes()).map_err(|e| err(&e))?;
    Ok(index)
}

/// xxh3-128 of a file's content, read in blocks (never the whole file at once).
fn content_hash(path: &Path) -> Result<u128, String> {
    use std::io::Read;
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut block) {
            Ok(0) => return Ok(hasher.digest128()),
            Ok(n) => hasher.update(&block[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e)),
        }
    }
}

fn xmatch(
    cfg: &DailyConfig,
    index_path: &Path,
    progress: &dyn DailyProgress,
) -> Result<meridian_xmatch::XmatchSummary, DailyError> {
    use meridian_xmatch::run;
    let err = stage_err("xmatch");
    let index = meridian_xmatch::Index::open(index_path).map_err(|e| err(&e))?;
    let files = run::transit_products(&cfg.out.join("located")).map_err(|e| err(&e))?;
    let total = run::count_transits(&files).map_err(|e| err(&e))?;
    progress.stage("xmatch", total);
    let opts = meridian_xmatch::RunOptions {
        radius_arcsec: cfg.radius_arcsec,
        ..Default::default()
    };
    // Streamed: memory bounded by the batch, not by the day's transits.
    meridian_xmatch::run_whole(
        &index,
        &files,
        &opts,
        &cfg.out.join("matched"),
        &StageProgress::new(progress, "xmatch"),
    )
    .map_err(|e| err(&e))
}

fn write_outputs(out: &Path, manifest: &RunManifest) -> Result<(), DailyError> {
    let err = stage_err("write run manifest");
    let mut json = serde_json::to_vec_pretty(manifest).map_err(|e| err(&e))?;
    json.push(b'\n');
    product::write_file_atomic(out.join("run-manifest.json"), &json).map_err(|e| err(&e))?;
    product::write_file_atomic(
        out.join("metrics.prom"),
        crate::metrics::render(manifest).as_bytes(),
    )
    .map_err(|e| err(&e))
}

/// Sets the number of worker threads of every stage (rayon's global pool).
pub fn set_threads(n: usize) -> Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
}

#[cfg(test)]
mod tests {
    /// The streamed hash is the one-shot xxh3-128 of the bytes, so catalogue
    /// stamps written by earlier versions stay valid.
    #[test]
    fn content_hash_streams_to_the_one_shot_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.csv");
        let bytes: Vec<u8> = (0..(3 << 20) + 17)
            .map(|i: u32| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            super::content_hash(&path).unwrap(),
            xxhash_rust::xxh3::xxh3_128(&bytes)
        );
        let missing = super::content_hash(&dir.path().join("none.csv")).unwrap_err();
        assert!(missing.contains("none.csv"), "{missing}");
    }
}
