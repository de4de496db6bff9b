//! A whole cross-match run over product files: located transits in, `match`
//! records (ICD §9) and a JSON summary out, optionally split into sky regions.
//!
//! # Regions and merging
//! New-source groups (ICD §8) link unmatched transits across the whole run, and a
//! group may straddle any boundary, so a region cannot finish them alone. A run
//! restricted by `--region` (a set of HEALPix cells at one depth; a transit
//! belongs to the region holding its position's cell) therefore writes a
//! *partial* result: `matched.mprod` (final `match` records of its matched
//! transits), `unmatched.mprod` (its unmatched `transit` records, positions
//! included) and `xmatch-region.json` (its counts). `merge` reads any number of
//! partials, links all unmatched transits together and writes the same
//! `match.mprod` and `xmatch-summary.json` as a single run: a single run is
//! literally one whole-sky partial merged in memory. Transits without a position
//! belong to no cell; they are counted by the region holding cell 0 of its
//! depth so that a partition of the sky counts each once. Merging refuses
//! partials with different radii or overlapping transits.
//!
//! # Memory
//! [`match_files`] reads and matches transits in batches (`batch_size`), so
//! the matcher's working set scales with the batch (a reader thread fills the
//! next batch while one is matched: two batches at most), but it returns every
//! finished record (about 120 octets per transit) for [`finish_run`]: memory
//! grows with the day. That in-memory path is kept for callers that want the
//! records; the runs of the binaries use [`run_whole`], [`run_region`] and
//! [`merge_to_dir`] (module `stream`), which spill sorted runs to disk and
//! stream a merge into the products, byte-identical, with memory bounded by
//! the batch (plus the unmatched transits: see that module's docs).

use crate::index::{Index, IndexError};
use crate::matcher::{MatchError, Matcher, TransitPos, finish_matches};
use meridian_core::Vec3;
use meridian_core::product::{self, ProductError, ProductReader};
use meridian_core::records::{Match, RecordKind, Transit};
use meridian_core::stage::Progress;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use crate::stream::{PartialCounts, merge_to_dir, run_region, run_whole};

/// Final match product's file name.
pub const MATCH_FILE: &str = "match.mprod";
/// Summary file name.
pub const SUMMARY_FILE: &str = "xmatch-summary.json";
/// Partial result file names.
pub const PARTIAL_MATCHED_FILE: &str = "matched.mprod";
pub const PARTIAL_UNMATCHED_FILE: &str = "unmatched.mprod";
pub const PARTIAL_INFO_FILE: &str = "xmatch-region.json";

/// What can go wrong in a run. Every variant names its file where there is one.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Match(#[from] MatchError),
    #[error("{0}: no `transit` product files found")]
    NoTransits(PathBuf),
    #[error("{path}: {detail}")]
    Partial { path: PathBuf, detail: String },
    #[error("invalid region {spec:?}: {detail}")]
    Region { spec: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A set of HEALPix cells (nested) at one depth: `DEPTH:CELLS`, where CELLS is a
/// comma-separated list of cell numbers and inclusive ranges `A-B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub depth: u8,
    cells: Vec<u64>,
}

impl Region {
    pub fn new(depth: u8, mut cells: Vec<u64>) -> Result<Self, String> {
        if depth > 29 {
            return Err(format!("depth {depth} is beyond HEALPix's 29"));
        }
        let n = cdshealpix::nested::n_hash(depth);
        if let Some(c) = cells.iter().find(|&&c| c >= n) {
            return Err(format!("cell {c} does not exist at depth {depth} (0..{n})"));
        }
        if cells.is_empty() {
            return Err("no cells".into());
        }
        cells.sort_unstable();
        cells.dedup();
        Ok(Region { depth, cells })
    }

    /// Whether a position belongs to this region.
    pub fn owns(&self, pos: Vec3) -> bool {
        let (lon, lat) = pos.to_radec_rad();
        let cell = cdshealpix::nested::hash(self.depth, lon, lat);
        self.cells.binary_search(&cell).is_ok()
    }

    /// Whether transits without a position are counted here (cell 0's region).
    pub fn owns_positionless(&self) -> bool {
        self.cells.first() == Some(&0)
    }
}

impl FromStr for Region {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        let (depth, list) = spec
            .split_once(':')
            .ok_or("expected DEPTH:CELLS, e.g. 2:0-15,40")?;
        let depth: u8 = depth
            .trim()
            .parse()
            .map_err(|_| format!("depth {depth:?} is not a number"))?;
        let n = cdshealpix::nested::n_hash(depth.min(29));
        let mut cells = Vec::new();
        for item in list.split(',') {
            let item = item.trim();
            let num = |s: &str| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("cell {s:?} is not a number"))
            };
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b || b >= n {
                        return Err(format!("bad cell range {item:?} at depth {depth}"));
                    }
                    cells.extend(a..=b);
                }
                None => cells.push(num(item)?),
            }
        }
        Region::new(depth, cells)
    }
}

impl std::fmt::Display for Region {
    /// Canonical form: ranges of consecutive cells.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.depth)?;
        let mut first = true;
        for run in self.cells.chunk_by(|a, b| a + 1 == *b) {
            let sep = if first { "" } else { "," };
            first = false;
            match run {
                [one] => write!(f, "{sep}{one}")?,
                [a, .., b] => write!(f, "{sep}{a}-{b}")?,
                [] => {}
            }
        }
        Ok(())
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub radius_arcsec: f64,
    /// Transits matched per batch.
    pub batch_size: usize,
    pub region: Option<Region>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            radius_arcsec: crate::matcher::DEFAULT_RADIUS_ARCSEC,
            batch_size: 1 << 20,
            region: None,
        }
    }
}

/// Counts of a (partial) run, as stored in `xmatch-region.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialInfo {
    pub radius_arcsec: f64,
    /// Canonical region, or None for the whole sky.
    pub region: Option<String>,
    /// Transits belonging to this part (with or without position).
    pub transits_read: u64,
    pub transits_without_position: u64,
}

/// Matched records and unmatched transits of one region (or the whole sky).
#[derive(Debug, Clone, PartialEq)]
pub struct PartialRun {
    pub info: PartialInfo,
    pub matched: Vec<Match>,
    pub unmatched: Vec<Transit>,
}

/// The `transit` product files under a folder (by header, in path order).
pub fn transit_products(dir: &Path) -> Result<Vec<PathBuf>, RunError> {
    let mut out = Vec::new();
    for path in product::find_products(dir)? {
        if product::read_header(&path)?.kind == RecordKind::Transit {
            out.push(path);
        }
    }
    if out.is_empty() {
        return Err(RunError::NoTransits(dir.to_owned()));
    }
    Ok(out)
}

/// Records read between progress reports.
const PROGRESS_STEP: u64 = 65536;

/// Total records in the transit files (from their headers), for progress.
pub fn count_transits(files: &[PathBuf]) -> Result<u64, RunError> {
    let mut n = 0;
    for f in files {
        n += product::read_header(f)?.record_count;
    }
    Ok(n)
}

/// Matches every transit of `files` that belongs to the run's region, in
/// batches; `progress` advances by the transit records read.
///
/// Reading (sequential decoding) runs on a thread of its own, one batch
/// ahead of the matching, so that it overlaps the matching of the previous
/// batch: at most two batches are in memory.
pub fn match_files(
    index: &Index,
    files: &[PathBuf],
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<PartialRun, RunError> {
    let matcher = Matcher::new(index, opts.radius_arcsec)?;
    let mut part = PartialRun {
        info: PartialInfo {
            radius_arcsec: opts.radius_arcsec,
            region: opts.region.as_ref().map(Region::to_string),
            transits_read: 0,
            transits_without_position: 0,
        },
        matched: Vec::new(),
        unmatched: Vec::new(),
    };
    let counts = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let reader = scope.spawn(move || read_batches(files, opts, progress, tx));
        for batch in rx {
            match_one_batch(&matcher, batch, &mut part);
        }
        reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    part.info.transits_read = counts.read;
    part.info.transits_without_position = counts.without_position;
    Ok(part)
}

/// What the reader counted for the region (see [`PartialInfo`]).
#[derive(Debug, Default)]
pub(crate) struct ReadCounts {
    pub(crate) read: u64,
    pub(crate) without_position: u64,
}

/// Reads the transits of `files` that belong to the run's region and sends
/// them in batches of `opts.batch_size`.
pub(crate) fn read_batches(
    files: &[PathBuf],
    opts: &RunOptions,
    progress: &dyn Progress,
    tx: std::sync::mpsc::SyncSender<Vec<Transit>>,
) -> Result<ReadCounts, RunError> {
    let batch_size = opts.batch_size.max(1);
    let new_batch = || Vec::with_capacity(batch_size.min(1 << 22));
    let owns_positionless = opts.region.as_ref().is_none_or(Region::owns_positionless);
    let mut counts = ReadCounts::default();
    let mut batch = new_batch();
    let mut seen = 0u64;
    for file in files {
        for record in ProductReader::<Transit>::open(file)? {
            let transit = record?;
            seen += 1;
            if seen.is_multiple_of(PROGRESS_STEP) {
                progress.advance(PROGRESS_STEP);
            }
            let belongs = match (TransitPos::position_of(&transit), &opts.region) {
                (None, _) => {
                    if owns_positionless {
                        counts.read += 1;
                        counts.without_position += 1;
                    }
                    false
                }
                (Some(_), None) => true,
                (Some((ra, dec)), Some(region)) => region.owns(Vec3::from_radec_deg(ra, dec)),
            };
            if belongs {
                counts.read += 1;
                batch.push(transit);
                // A send fails only when the matching side has stopped.
                if batch.len() >= batch_size
                    && tx.send(std::mem::replace(&mut batch, new_batch())).is_err()
                {
                    return Ok(counts);
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    progress.advance(seen % PROGRESS_STEP);
    Ok(counts)
}

fn match_one_batch(matcher: &Matcher, batch: Vec<Transit>, part: &mut PartialRun) {
    if batch.is_empty() {
        return;
    }
    let outcome = matcher.match_batch(&batch);
    let mut unmatched: Vec<u64> = outcome.unmatched.iter().map(|t| t.transit_id).collect();
    unmatched.sort_unstable();
    part.matched.extend(outcome.matched);
    part.unmatched.extend(
        batch
            .into_iter()
            .filter(|t| unmatched.binary_search(&t.transit_id).is_ok()),
    );
}

/// Writes a partial result into `dir` (created if needed).
pub fn write_partial(dir: &Path, part: &PartialRun) -> Result<(), RunError> {
    create_dir(dir)?;
    let mut matched: Vec<&Match> = part.matched.iter().collect();
    matched.sort_by_key(|m| m.transit_id);
    let mut unmatched: Vec<&Transit> = part.unmatched.iter().collect();
    unmatched.sort_by_key(|t| t.transit_id);
    product::write_all(dir.join(PARTIAL_MATCHED_FILE), matched)?;
    product::write_all(dir.join(PARTIAL_UNMATCHED_FILE), unmatched)?;
    write_json(&dir.join(PARTIAL_INFO_FILE), &part.info)
}

/// Reads a partial result written by [`write_partial`].
pub fn read_partial(dir: &Path) -> Result<PartialRun, RunError> {
    Ok(PartialRun {
        info: read_partial_info(dir)?,
        matched: product::read_all(dir.join(PARTIAL_MATCHED_FILE))?,
        unmatched: product::read_all(dir.join(PARTIAL_UNMATCHED_FILE))?,
    })
}

/// Reads the counts (`xmatch-region.json`) of a partial result.
pub fn read_partial_info(dir: &Path) -> Result<PartialInfo, RunError> {
    let info_path = dir.join(PARTIAL_INFO_FILE);
    let text = std::fs::read(&info_path).map_err(|source| RunError::Io {
        path: info_path.clone(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|e| RunError::Partial {
        path: info_path,
        detail: e.to_string(),
    })
}

/// The radius of parts to merge: the first part's, which every part must share.
pub(crate) fn common_radius(parts: &[PartialInfo]) -> Result<f64, RunError> {
    let radius_arcsec = parts
        .first()
        .map_or(crate::matcher::DEFAULT_RADIUS_ARCSEC, |p| p.radius_arcsec);
    if let Some(p) = parts.iter().find(|p| p.radius_arcsec != radius_arcsec) {
        return Err(RunError::Partial {
            path: PathBuf::from(p.region.clone().unwrap_or_default()),
            detail: format!(
                "radius {}″ differs from the first part's {radius_arcsec}″",
                p.radius_arcsec
            ),
        });
    }
    Ok(radius_arcsec)
}

/// The run summary written beside the match product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XmatchSummary {
    pub radius_arcsec: f64,
    /// Regions merged (empty: one whole-sky run).
    pub regions: Vec<String>,
    pub transits_read: u64,
    pub transits_without_position: u64,
    pub transits_matched: u64,
    pub transits_unmatched: u64,
    /// Matched / (matched + unmatched); null when no transit had a position.
    pub match_rate: Option<f64>,
    /// Number of transits by number of candidates.
    pub candidates_histogram: BTreeMap<u32, u64>,
    /// Matched transits with more than one candidate.
    pub ambiguous_transits: u64,
    /// Median and 90th percentile of the best-match separation, mas.
    pub sep_mas_median: Option<f64>,
    pub sep_mas_p90: Option<f64>,
    pub new_source_groups: u64,
    /// Number of new-source groups by size.
    pub new_source_group_sizes: BTreeMap<u64, u64>,
}

/// Finishes a run from its partials (one for a whole-sky run): links the
/// unmatched transits into new-source groups, sorts, summarises.
pub fn finish_run(parts: Vec<PartialRun>) -> Result<(Vec<Match>, XmatchSummary), RunError> {
    let infos: Vec<PartialInfo> = parts.iter().map(|p| p.info.clone()).collect();
    let radius_arcsec = common_radius(&infos)?;
    let (mut read, mut no_pos) = (0, 0);
    let mut regions = Vec::new();
    let mut matched = Vec::new();
    let mut unmatched = Vec::new();
    for p in parts {
        read += p.info.transits_read;
        no_pos += p.info.transits_without_position;
        regions.extend(p.info.region);
        // A whole-sky run has one part: its records are taken, not copied.
        if matched.is_empty() {
            matched = p.matched;
        } else {
            matched.extend(p.matched);
        }
        unmatched.par_extend(p.unmatched.par_iter().filter_map(TransitPos::from_transit));
    }
    regions.sort();
    let radius_rad = radius_arcsec * meridian_core::geom::RAD_PER_ARCSEC;
    let records = finish_matches(matched, &unmatched, radius_rad)?;
    let summary = summarise(&records, radius_arcsec, regions, read, no_pos);
    Ok((records, summary))
}

fn summarise(
    records: &[Match],
    radius_arcsec: f64,
    regions: Vec<String>,
    read: u64,
    no_pos: u64,
) -> XmatchSummary {
    // Counted in parallel: the run's records number in the millions.
    let hist = records
        .par_iter()
        .fold(BTreeMap::new, |mut h, m| {
            *h.entry(m.n_candidates).or_insert(0u64) += 1;
            h
        })
        .reduce(BTreeMap::new, |mut a, b| {
            for (k, v) in b {
                *a.entry(k).or_insert(0) += v;
            }
            a
        });
    let mut seps: Vec<f64> = records.par_iter().filter_map(|m| m.sep_mas).collect();
    seps.par_sort_unstable_by(f64::total_cmp);
    let quantile =
        |q: f64| (!seps.is_empty()).then(|| seps[((seps.len() - 1) as f64 * q).round() as usize]);
    // Group sizes: runs of equal names once the names are sorted.
    let mut names: Vec<u64> = records.par_iter().filter_map(|m| m.new_source).collect();
    names.par_sort_unstable();
    let mut sizes = BTreeMap::new();
    let mut n_groups = 0;
    for group in names.chunk_by(|a, b| a == b) {
        n_groups += 1;
        *sizes.entry(group.len() as u64).or_insert(0) += 1;
    }
    let matched = seps.len() as u64;
    let unmatched = records.len() as u64 - matched;
    XmatchSummary {
        radius_arcsec,
        regions,
        transits_read: read,
        transits_without_position: no_pos,
        transits_matched: matched,
        transits_unmatched: unmatched,
        match_rate: (!records.is_empty()).then(|| matched as f64 / records.len() as f64),
        candidates_histogram: hist,
        ambiguous_transits: records.par_iter().filter(|m| m.n_candidates > 1).count() as u64,
        sep_mas_median: quantile(0.5),
        sep_mas_p90: quantile(0.9),
        new_source_groups: n_groups,
        new_source_group_sizes: sizes,
    }
}

/// Writes `match.mprod` and `xmatch-summary.json` into `dir` (created if needed).
pub fn write_final(dir: &Path, records: &[Match], summary: &XmatchSummary) -> Result<(), RunError> {
    create_dir(dir)?;
    product::write_all(dir.join(MATCH_FILE), records)?;
    write_json(&dir.join(SUMMARY_FILE), summary)
}

fn create_dir(dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        path: dir.to_owned(),
        source,
    })
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RunError> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("plain data serialises");
    bytes.push(b'\n');
    Ok(product::write_file_atomic(path, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_spec_round_trips_and_rejects_nonsense() {
        let r: Region = "1:5,0-3,4,40".parse().unwrap();
        assert_eq!(r.to_string(), "1:0-5,40");
        assert!(r.owns_positionless());
        assert!("1:48".parse::<Region>().is_err());
        assert!("x:1".parse::<Region>().is_err());
        assert!("3".parse::<Region>().is_err());
        assert!("2:5-3".parse::<Region>().is_err());
        assert!("30:0".parse::<Region>().is_err());
    }

    #[test]
    fn region_owns_by_cell() {
        // Depth 0: base cell 4 is the equatorial cell centred on ra 0.
        let r: Region = "0:4".parse().unwrap();
        assert!(r.owns(Vec3::from_radec_deg(0.5, 0.0)));
        assert!(r.owns(Vec3::from_radec_deg(359.5, 0.0)));
        assert!(!r.owns(Vec3::from_radec_deg(180.0, 0.0)));
        assert!(!r.owns_positionless());
    }
}
