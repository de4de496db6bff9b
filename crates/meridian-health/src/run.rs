//! One `meridian-health` run: find the inputs, check, write every output.
//!
//! # Inputs
//!
//! Each `--in` folder is either an **ordered folder** (it has `manifest.json`):
//! its current `hk` chunks are read in time order, its `gaps.mprod` is noted and
//! its manifest's per-hour completeness is used; or any other folder, searched
//! for product files (by header) of kinds `hk`, `observation`, `transit` and
//! `match` (other kinds are ignored; loose `hk` records are sorted by time).
//! Products inside the output folder are never inputs.
//!
//! # Memory
//!
//! Housekeeping is read one ordered chunk at a time (its plotted series, one
//! point per sample, is the one list that grows with the day: housekeeping
//! rates do not grow with the sky). Science is read by [`crate::bounded`]: a
//! batch of observation and transit files at a time in time order, joined with
//! the match files by a merge on `transit_id`, each time bin finished as soon as
//! no later file can reach it, so it holds a few bins and a batch of files, not
//! the day (with the whole-day method as its fallback for inputs out of order).
//!
//! # Outputs (all written atomically; the state file last, as the commit point)
//!
//! ```text
//! OUT/health_event.mprod   this run's events (closed during it or open at its end)
//! OUT/report.json          status, summary, events, science bins, completeness
//! OUT/report.html          the self-contained report with plots
//! OUT/metrics.prom         Prometheus textfile-collector metrics (see `report`)
//! OUT/hk_state.json        checker state to resume from (see below)
//! ```
//!
//! # Runs
//!
//! `hk_state.json` holds the checker state before and after the run and a
//! fingerprint (xxh3) of the run's inputs (product files by their header, which
//! holds their body's checksum) and mission database. The next run
//! resumes from the *after* state, skipping housekeeping already checked
//! (`obt_ns` at or before the last checked time); a run over exactly the same
//! inputs (a re-run after a crash or by hand) starts again from the *before*
//! state, so it writes the same products byte for byte.

use crate::bounded::{BoundedOptions, BoundedStats, science_from_files};
use crate::dataflow::{DataFlowConfig, completeness_events};
use crate::hk::{CheckerState, HkChecker, sort_events};
use crate::html::{HkSeries, render};
use crate::report::{HealthReport, HkReport};
use crate::science::ScienceConfig;
use meridian_core::product::{self, ProductError, ProductReader, read_header, write_file_atomic};
use meridian_core::records::{HealthEvent, Hk, Record, RecordKind};
use meridian_order::{HourCompleteness, Manifest, Stream};
use meridian_telemetry::{MissionDb, MissionDbError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// Output file names.
pub const EVENTS_FILE: &str = "health_event.mprod";
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_HTML: &str = "report.html";
pub const METRICS_FILE: &str = "metrics.prom";
pub const STATE_FILE: &str = "hk_state.json";

/// Thresholds of the science and data-flow checks (a JSON file, `--config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    pub science: ScienceConfig,
    pub dataflow: DataFlowConfig,
}

/// What a run needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub db: PathBuf,
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub config: HealthConfig,
    /// Checker state file (default `OUT/hk_state.json`): point consecutive runs
    /// with different output folders at the same file to carry events across.
    pub state: Option<PathBuf>,
}

impl RunOptions {
    pub fn state_path(&self) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(|| self.out.join(STATE_FILE))
    }
}

/// Why a run could not evaluate (the binary's UNKNOWN).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    Db(#[from] MissionDbError),
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
}

fn input_error(path: &Path, message: impl Into<String>) -> HealthError {
    HealthError::Input {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The persisted run state (`hk_state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    pub format: u32,
    /// xxh3 of the run's inputs and database, lowercase hex.
    pub fingerprint: String,
    pub before: Option<CheckerState>,
    pub after: CheckerState,
}

/// Product files found in the inputs.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// `hk` sources: ordered chunks (each time-sorted, in time order) …
    pub hk_chunks: Vec<(PathBuf, u64)>,
    /// … and loose `hk` products (sorted after reading).
    pub hk_loose: Vec<PathBuf>,
    pub observations: Vec<PathBuf>,
    pub transits: Vec<PathBuf>,
    pub matches: Vec<PathBuf>,
    pub completeness: Vec<HourCompleteness>,
    /// Every file read, for the fingerprint.
    pub files: Vec<PathBuf>,
}

/// Finds the inputs of `dirs` (see the module docs).
pub fn discover(dirs: &[PathBuf], out: &Path) -> Result<Inputs, HealthError> {
    let mut inputs = Inputs::default();
    let out = out.canonicalize().unwrap_or_else(|_| out.to_owned());
    let mut ordered: Vec<(u64, Vec<(PathBuf, u64)>)> = Vec::new();
    for dir in dirs {
        if !dir.exists() {
            return Err(input_error(dir, "no such file or folder"));
        }
        if dir.join(meridian_order::manifest::MANIFEST_FILE).is_file() {
            let m = Manifest::load(dir).map_err(|e| input_error(dir, e.to_string()))?;
            let chunks: Vec<(PathBuf, u64)> = m
                .chunks_of(Stream::Hk)
                .map(|c| (dir.join(&c.path), c.end_obt_ns))
                .collect();
            inputs
                .files
                .push(dir.join(meridian_order::manifest::MANIFEST_FILE));
            inputs.files.extend(chunks.iter().map(|c| c.0.clone()));
            ordered.push((
                m.chunks_of(Stream::Hk).next().map_or(0, |c| c.start_obt_ns),
                chunks,
            ));
            inputs.completeness.extend(m.completeness);
            continue;
        }
        for path in product::find_products(dir)? {
            if path.canonicalize().is_ok_and(|p| p.starts_with(&out)) {
                continue;
            }
            let list = match read_header(&path)?.kind {
                RecordKind::Hk => &mut inputs.hk_loose,
                RecordKind::Observation => &mut inputs.observations,
                RecordKind::Transit => &mut inputs.transits,
                RecordKind::Match => &mut inputs.matches,
                _ => continue,
            };
            list.push(path.clone());
            inputs.files.push(path);
        }
    }
    ordered.sort_by_key(|o| o.0);
    inputs.hk_chunks = ordered.into_iter().flat_map(|o| o.1).collect();
    Ok(inputs)
}

/// Identifies the inputs by content. A product file stands for its header, whose
/// body checksum and length already identify the body (and are verified when the
/// body is read), so the run does not read every product twice; other files
/// (the database, manifests) are hashed whole.
fn fingerprint(db_path: &Path, files: &[PathBuf]) -> Result<String, HealthError> {
    let mut h = Xxh3::new();
    for path in std::iter::once(db_path).chain(files.iter().map(PathBuf::as_path)) {
        h.update(path.to_string_lossy().as_bytes());
        if let Ok(header) = read_header(path) {
            h.update(b"product");
            h.update(&[header.kind as u8]);
            for v in [header.record_count, header.body_len, header.body_checksum] {
                h.update(&v.to_le_bytes());
            }
            continue;
        }
        let bytes = std::fs::read(path).map_err(|e| input_error(path, e.to_string()))?;
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(format!("{:016x}", h.digest()))
}

fn read_kind<R: Record>(paths: &[PathBuf]) -> Result<Vec<R>, HealthError> {
    let mut out = Vec::new();
    for p in paths {
        for r in ProductReader::<R>::open(p)? {
            out.push(r?);
        }
    }
    Ok(out)
}

fn load_state(path: &Path) -> Result<Option<StateFile>, HealthError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| input_error(path, format!("unreadable checker state: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(input_error(path, e.to_string())),
    }
}

/// Feeds housekeeping to the checker and collects the plotted series.
struct HkPass<'a, 'db> {
    checker: HkChecker<'db>,
    db: &'db MissionDb,
    series: &'a mut HkSeries,
    skip_to: Option<u64>,
    already_checked: u64,
}

impl HkPass<'_, '_> {
    fn feed(&mut self, mut records: Vec<Hk>) {
        if let Some(t) = self.skip_to {
            let before = records.len();
            records.retain(|r| r.obt_ns > t);
            self.already_checked += (before - records.len()) as u64;
        }
        for r in &records {
            let Some(p) = self.db.param(&r.param) else {
                continue;
            };
            let v = if p.calibration.is_states() {
                r.raw
            } else {
                r.eng.as_number().unwrap_or(f64::NAN)
            };
            match self.series.get_mut(&r.param) {
                Some(s) => s.push((r.obt_ns, v)),
                None => {
                    self.series.insert(r.param.clone(), vec![(r.obt_ns, v)]);
                }
            }
        }
        self.checker.feed(&records);
    }
}

/// Records up to this time were fed by earlier runs (checked, or held in the
/// state's pending group): a re-read ordered folder skips them.
fn already_fed_through(s: &CheckerState) -> Option<u64> {
    s.pending.first().map(|p| p.obt_ns).or(s.last_checked_ns)
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub report: HealthReport,
    /// Housekeeping records skipped because an earlier run checked them.
    pub already_checked: u64,
    pub resumed: bool,
    /// How the science pass went (what it held at most, any fallback).
    pub science: BoundedStats,
}

/// Runs everything (see the module docs), science in the default bounded memory.
pub fn run(opts: &RunOptions) -> Result<RunOutcome, HealthError> {
    run_with(opts, BoundedOptions::default())
}

/// [`run`] with the science pass's batch of files in flight set by `bounded`
/// (the outputs do not depend on it).
pub fn run_with(opts: &RunOptions, bounded: BoundedOptions) -> Result<RunOutcome, HealthError> {
    let db = MissionDb::load(&opts.db)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| input_error(&opts.out, e.to_string()))?;
    let inputs = discover(&opts.inputs, &opts.out)?;
    if inputs.hk_chunks.is_empty() && inputs.hk_loose.is_empty() {
        let shown: Vec<String> = opts
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        return Err(input_error(
            Path::new(&shown.join(", ")),
            "no housekeeping (hk) products found: nothing to evaluate",
        ));
    }
    let mut files = inputs.files.clone();
    files.sort();
    let fp = fingerprint(&opts.db, &files)?;
    let previous = load_state(&opts.state_path())?;
    let resumed = previous.is_some();
    let start = previous.and_then(|s| {
        if s.fingerprint == fp {
            s.before
        } else {
            Some(s.after)
        }
    });

    let mut series = HkSeries::new();
    let mut pass = HkPass {
        checker: HkChecker::new(&db, start.clone()),
        db: &db,
        series: &mut series,
        skip_to: start.as_ref().and_then(already_fed_through),
        already_checked: 0,
    };
    for (path, end_ns) in &inputs.hk_chunks {
        if pass.skip_to.is_some_and(|t| *end_ns <= t) {
            continue;
        }
        pass.feed(read_kind::<Hk>(std::slice::from_ref(path))?);
    }
    if !inputs.hk_loose.is_empty() {
        let mut loose = read_kind::<Hk>(&inputs.hk_loose)?;
        loose.sort_by(|a, b| {
            (a.obt_ns, a.sid, &a.param, a.seq, a.packet_hash).cmp(&(
                b.obt_ns,
                b.sid,
                &b.param,
                b.seq,
                b.packet_hash,
            ))
        });
        pass.feed(loose);
    }
    let already_checked = pass.already_checked;
    let hk = pass.checker.finish();

    let (science, science_stats) = science_from_files(
        &inputs.observations,
        &inputs.transits,
        &inputs.matches,
        &opts.config.science,
        bounded,
    )?;
    tracing::debug!(?science_stats, "science health read");
    let dataflow = completeness_events(&inputs.completeness, &opts.config.dataflow);

    let mut events: Vec<HealthEvent> = hk.events();
    events.extend(science.events.iter().cloned());
    events.extend(dataflow);
    sort_events(&mut events);
    let mut not_evaluated = Vec::new();
    if science_stats.transits == 0 {
        not_evaluated.push("science (no transit products)".to_owned());
    }
    if inputs.completeness.is_empty() {
        not_evaluated.push("data flow (no ordered folder with completeness counts)".to_owned());
    }
    let hk_report = HkReport {
        stats: hk.stats.clone(),
        samples_checked_total: hk.state.samples_checked + hk.state.pending.len() as u64,
        first_obt_ns: hk.state.first_obt_ns,
        end_of_data_ns: hk.state.end_of_data_ns,
        never_reported: db
            .params()
            .filter(|p| {
                hk.state
                    .params
                    .get(&p.name)
                    .is_none_or(|s| s.last.is_none())
            })
            .filter(|p| !hk.state.pending.iter().any(|s| s.param == p.name))
            .map(|p| p.name.clone())
            .collect(),
    };
    let mut completeness = inputs.completeness.clone();
    completeness.sort_by_key(|c| (c.apid, c.hour_start_obt_ns));
    let report = HealthReport::new(events, hk_report, science.bins, completeness, not_evaluated);

    write_outputs(opts, &db, &report, &series, &fp, start, hk.state)?;
    Ok(RunOutcome {
        report,
        already_checked,
        resumed,
        science: science_stats,
    })
}

fn write_outputs(
    opts: &RunOptions,
    db: &MissionDb,
    report: &HealthReport,
    series: &HkSeries,
    fp: &str,
    before: Option<CheckerState>,
    after: CheckerState,
) -> Result<(), HealthError> {
    let out = &opts.out;
    product::write_all::<HealthEvent>(out.join(EVENTS_FILE), &report.events)?;
    write_file_atomic(out.join(REPORT_JSON), &report.to_json())?;
    write_file_atomic(
        out.join(REPORT_HTML),
        render(report, db, series, &opts.config.science).as_bytes(),
    )?;
    write_file_atomic(out.join(METRICS_FILE), report.prometheus().as_bytes())?;
    let state = StateFile {
        format: crate::hk::STATE_FORMAT,
        fingerprint: fp.to_owned(),
        before,
        after,
    };
    let mut bytes = serde_json::to_vec_pretty(&state).expect("state serialises");
    bytes.push(b'\n');
    write_file_atomic(opts.state_path(), &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::records::Quarantine;

    fn product(path: &Path, reason: &str) {
        let q = Quarantine {
            delivery: "d".into(),
            offset: 0,
            length: 1,
            reason: reason.into(),
            bytes: vec![1],
        };
        product::write_all(path, [&q]).unwrap();
    }

    /// The fingerprint reads product headers only, yet still changes with a
    /// product's content, and with other files' bytes.
    #[test]
    fn fingerprint_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        let (db, p) = (dir.path().join("db.toml"), dir.path().join("x.mprod"));
        std::fs::write(&db, "a").unwrap();
        product(&p, "one");
        let first = fingerprint(&db, std::slice::from_ref(&p)).unwrap();
        product(&p, "one");
        assert_eq!(fingerprint(&db, std::slice::from_ref(&p)).unwrap(), first);
        product(&p, "two");
        let second = fingerprint(&db, std::slice::from_ref(&p)).unwrap();
        assert_ne!(second, first);
        std::fs::write(&db, "b").unwrap();
        assert_ne!(fingerprint(&db, std::slice::from_ref(&p)).unwrap(), second);
    }
}
