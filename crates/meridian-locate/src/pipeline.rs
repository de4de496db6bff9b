//! The `meridian-locate` stage over an ordered folder: which window chunks need
//! (re)processing, the per-chunk work (fit, geometry, transit grouping) in
//! parallel, and the output folder with its state file.
//!
//! # Output folder (read by xmatch and health)
//!
//! ```text
//! DIR/observation/<start_obt_ns:020>.mprod   `observation` records of every window of
//!                                            window chunk <start>, in the chunk's order
//! DIR/transit/<start_obt_ns:020>.mprod       `transit` records of the transits the chunk
//!                                            owns, by (first window obt_ns, transit_id)
//! DIR/locate-state.json                      input chunk versions each output pair was
//!                                            made from (LocateState)
//! DIR/.locate.lock                           held while a run works on DIR
//! ```
//!
//! Every product file under DIR is current: outputs are replaced atomically when
//! their inputs change, removed when their window chunk leaves the manifest or
//! cannot be processed, and stray files left by a crash are removed at the start of
//! a run. Consumers find them with `meridian_core::product::find_products` and the
//! header kind.
//!
//! # Transits across chunk boundaries
//!
//! A transit belongs to the window chunk holding its earliest window. The windows
//! of one transit are assumed to lie within [`TRANSIT_SPAN_NS`] (60 s) of its
//! earliest window (AF1 to AF9 take 38.8 s at the nominal scan rate), so chunk i
//! owns the transits that have a window in it and none in the chunks overlapping
//! the preceding 60 s, and collects their windows from itself and the chunks
//! overlapping the following 60 s. Attitude is read from the attitude chunks
//! overlapping [start − 2 s, end + 60 s + 3 s). The state records all of these
//! inputs, so a change in a neighbour redoes the chunks it can affect.

use crate::attitude::{ATTITUDE_REACH_NS, AttitudeSeries};
use crate::fit::fit_window;
use crate::geometry::{Located, locate_window, transit_record};
use meridian_core::Flag;
use meridian_core::product::{
    DEFAULT_ZSTD_LEVEL, ProductError, ProductWriter, read_all, write_file_atomic,
};
use meridian_core::records::{Attitude, Observation, Transit, Window};
use meridian_core::stage::Progress;
use meridian_core::time::NS_PER_S;
use meridian_order::{ChunkEntry, Manifest, Stream, manifest::ManifestError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the state file in the output folder.
pub const STATE_FILE: &str = "locate-state.json";
/// Folder of the observation products.
pub const OBSERVATION_DIR: &str = "observation";
/// Folder of the transit products.
pub const TRANSIT_DIR: &str = "transit";
const LOCK_FILE: &str = ".locate.lock";
/// State file format version.
pub const STATE_FORMAT: u32 = 1;
/// Identifies the algorithm that made the outputs: a different one redoes all.
/// It names everything that shapes the output bytes, the observation
/// products' zstd level included (a test keeps it equal to
/// [`OBSERVATION_ZSTD_LEVEL`]), so a folder never mixes two versions' bytes.
pub const ALGORITHM: &str = concat!(
    "meridian-locate ",
    env!("CARGO_PKG_VERSION"),
    " fit-2 obs-zstd-20"
);
/// The windows of one transit lie within this time of its earliest window.
pub const TRANSIT_SPAN_NS: u64 = 60 * NS_PER_S;
/// Beyond a window's `obt_ns`, its `t_obs` lies at most 32 samples later; 1 s
/// bounds that generously.
const T_OBS_MARGIN_NS: u64 = NS_PER_S;
/// Window chunks processed together by default, sharing their decoded
/// neighbours. Each batch also fits the chunk after its last (for transits
/// crossing the boundary), so larger batches fit fewer windows twice; 64 chunks
/// of a 1 % day hold ~110 MB. Outputs do not depend on it.
pub const BATCH_CHUNKS: usize = 64;
/// Threads compressing, writing and fsyncing the outputs.
const WRITERS: usize = 2;
/// Windows fitted per parallel task inside a chunk.
const FIT_BATCH: usize = 2048;
/// zstd level of the observation products. Their records are mostly
/// uncorrelated float bits, which the products' default level (−4) shrinks by
/// only 10 % while costing ~10 % of the stage's CPU; at this level compression
/// costs about a fifth of that for files 8 % larger (687 -> 743 MB on the 1 % day),
/// and readers decompress them faster too. Transit products, which compress by
/// a third, keep the default.
pub const OBSERVATION_ZSTD_LEVEL: i32 = -20;

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An input chunk could not be read (the message names the file).
    #[error("{0}")]
    Input(String),
    #[error("{path}: another meridian-locate run holds this output folder")]
    Locked { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LocateError + '_ {
    move |source| LocateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One input chunk version an output was made from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputRef {
    pub stream: Stream,
    pub start_obt_ns: u64,
    pub version: u64,
    pub checksum: String,
}

impl InputRef {
    fn of(c: &ChunkEntry) -> Self {
        InputRef {
            stream: c.stream,
            start_obt_ns: c.start_obt_ns,
            version: c.version,
            checksum: c.checksum.clone(),
        }
    }
}

/// `DIR/locate-state.json`: what each output pair was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocateState {
    pub format: u32,
    pub algorithm: String,
    /// Keyed by the window chunk's `start_obt_ns`.
    pub outputs: BTreeMap<u64, Vec<InputRef>>,
}

impl Default for LocateState {
    fn default() -> Self {
        LocateState {
            format: STATE_FORMAT,
            algorithm: ALGORITHM.to_owned(),
            outputs: BTreeMap::new(),
        }
    }
}

impl LocateState {
    /// Loads the state, or an empty one when there is none, it is unreadable or
    /// it was made by another algorithm (everything is then redone).
    fn load(out_dir: &Path) -> LocateState {
        let path = out_dir.join(STATE_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            return LocateState::default();
        };
        match serde_json::from_slice::<LocateState>(&bytes) {
            Ok(s) if s.format == STATE_FORMAT && s.algorithm == ALGORITHM => s,
            Ok(_) => {
                tracing::info!("{}: made by another version; redoing all", path.display());
                LocateState::default()
            }
            Err(e) => {
                tracing::warn!("{}: unreadable ({e}); redoing all", path.display());
                LocateState::default()
            }
        }
    }

    fn save(&self, out_dir: &Path) -> Result<(), LocateError> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("state serialises");
        bytes.push(b'\n');
        write_file_atomic(out_dir.join(STATE_FILE), &bytes)?;
        Ok(())
    }
}

/// Output paths of the chunk starting at `start`.
pub fn output_paths(out_dir: &Path, start: u64) -> (PathBuf, PathBuf) {
    let name = format!("{start:020}.mprod");
    (
        out_dir.join(OBSERVATION_DIR).join(&name),
        out_dir.join(TRANSIT_DIR).join(name),
    )
}

/// Everything one chunk's outputs are computed from.
#[derive(Debug, Clone)]
struct ChunkJob {
    own: ChunkEntry,
    before: Vec<ChunkEntry>,
    after: Vec<ChunkEntry>,
    attitude: Vec<ChunkEntry>,
}

impl ChunkJob {
    fn inputs(&self) -> Vec<InputRef> {
        let mut v: Vec<InputRef> = std::iter::once(&self.own)
            .chain(&self.before)
            .chain(&self.after)
            .chain(&self.attitude)
            .map(InputRef::of)
            .collect();
        v.sort();
        v
    }
}

fn overlapping(chunks: &[ChunkEntry], from: u64, to: u64) -> Vec<ChunkEntry> {
    chunks
        .iter()
        .filter(|c| c.start_obt_ns < to && c.end_obt_ns > from)
        .cloned()
        .collect()
}

fn jobs_of(manifest: &Manifest) -> Vec<ChunkJob> {
    let mut windows: Vec<ChunkEntry> = manifest.chunks_of(Stream::Window).cloned().collect();
    windows.sort_by_key(|c| c.start_obt_ns);
    let mut attitude: Vec<ChunkEntry> = manifest.chunks_of(Stream::Attitude).cloned().collect();
    attitude.sort_by_key(|c| c.start_obt_ns);
    windows
        .iter()
        .map(|own| {
            let (s, e) = (own.start_obt_ns, own.end_obt_ns);
            let before = overlapping(&windows, s.saturating_sub(TRANSIT_SPAN_NS), s)
                .into_iter()
                .filter(|c| c.start_obt_ns < s)
                .collect();
            let after = overlapping(&windows, e, e.saturating_add(TRANSIT_SPAN_NS))
                .into_iter()
                .filter(|c| c.start_obt_ns > s)
                .collect();
            let att_to = e
                .saturating_add(TRANSIT_SPAN_NS)
                .saturating_add(T_OBS_MARGIN_NS)
                .saturating_add(ATTITUDE_REACH_NS);
            let attitude = overlapping(&attitude, s.saturating_sub(ATTITUDE_REACH_NS), att_to);
            ChunkJob {
                own: own.clone(),
                before,
                after,
                attitude,
            }
        })
        .collect()
}

/// Counts of one run, also the body of the JSON run summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LocateSummary {
    pub window_chunks: u64,
    pub chunks_processed: u64,
    pub chunks_up_to_date: u64,
    pub chunks_removed: u64,
    pub chunks_failed: Vec<ChunkFailure>,
    /// Windows of the processed chunks (one observation each).
    pub windows: u64,
    pub observations_with_position: u64,
    pub fit_failed: u64,
    pub no_attitude: u64,
    pub saturated: u64,
    pub truncated: u64,
    pub background_fixed: u64,
    pub transits: u64,
    pub transits_no_position: u64,
}

/// A window chunk that could not be processed (its outputs are removed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkFailure {
    pub start_obt_ns: u64,
    pub error: String,
}

/// What one chunk's outputs hold, for the summary.
#[derive(Debug, Clone, Copy, Default)]
struct ChunkCounts {
    windows: u64,
    with_position: u64,
    fit_failed: u64,
    no_attitude: u64,
    saturated: u64,
    truncated: u64,
    background_fixed: u64,
    transits: u64,
    transits_no_position: u64,
}

impl ChunkCounts {
    fn of<'a>(
        observations: impl ExactSizeIterator<Item = &'a Observation>,
        transits: &[Transit],
    ) -> Self {
        let mut c = ChunkCounts {
            windows: observations.len() as u64,
            transits: transits.len() as u64,
            ..Default::default()
        };
        for obs in observations {
            let f = obs.flags;
            c.with_position += obs.ra.is_some() as u64;
            c.fit_failed += f.contains(Flag::FitFailed) as u64;
            c.no_attitude += f.contains(Flag::NoAttitude) as u64;
            c.saturated += f.contains(Flag::Saturated) as u64;
            c.truncated += f.contains(Flag::Truncated) as u64;
            c.background_fixed += f.contains(Flag::BackgroundFixed) as u64;
        }
        c.transits_no_position = transits
            .iter()
            .filter(|t| t.flags.contains(Flag::NoPosition))
            .count() as u64;
        c
    }
}

impl LocateSummary {
    fn add(&mut self, c: &ChunkCounts) {
        self.chunks_processed += 1;
        self.windows += c.windows;
        self.observations_with_position += c.with_position;
        self.fit_failed += c.fit_failed;
        self.no_attitude += c.no_attitude;
        self.saturated += c.saturated;
        self.truncated += c.truncated;
        self.background_fixed += c.background_fixed;
        self.transits += c.transits;
        self.transits_no_position += c.transits_no_position;
    }
}

/// A run's plan: the output folder locked, the state loaded, and which window
/// chunks to process, keep or remove.
pub struct Plan {
    in_dir: PathBuf,
    out_dir: PathBuf,
    state: LocateState,
    to_process: Vec<ChunkJob>,
    up_to_date: u64,
    to_remove: Vec<u64>,
    window_chunks: u64,
    batch_chunks: usize,
    _lock: File,
}

/// Reads the manifest and the state of `out_dir` (created if missing), locks it,
/// and decides which window chunks need processing.
pub fn plan(in_dir: &Path, out_dir: &Path) -> Result<Plan, LocateError> {
    let manifest = Manifest::load(in_dir)?;
    for d in [OBSERVATION_DIR, TRANSIT_DIR] {
        let p = out_dir.join(d);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    let lock_path = out_dir.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    if lock.try_lock().is_err() {
        return Err(LocateError::Locked { path: lock_path });
    }
    let state = LocateState::load(out_dir);
    let jobs = jobs_of(&manifest);
    let current: BTreeSet<u64> = jobs.iter().map(|j| j.own.start_obt_ns).collect();
    let to_remove = state
        .outputs
        .keys()
        .filter(|k| !current.contains(k))
        .copied()
        .collect();
    let window_chunks = jobs.len() as u64;
    let (mut to_process, mut up_to_date) = (Vec::new(), 0);
    for job in jobs {
        let (obs, tr) = output_paths(out_dir, job.own.start_obt_ns);
        let recorded = state.outputs.get(&job.own.start_obt_ns);
        if recorded == Some(&job.inputs()) && obs.is_file() && tr.is_file() {
            up_to_date += 1;
        } else {
            to_process.push(job);
        }
    }
    Ok(Plan {
        in_dir: in_dir.to_owned(),
        out_dir: out_dir.to_owned(),
        state,
        to_process,
        up_to_date,
        to_remove,
        window_chunks,
        batch_chunks: BATCH_CHUNKS,
        _lock: lock,
    })
}

impl Plan {
    /// Processes `n` window chunks per batch instead of [`BATCH_CHUNKS`]: less
    /// memory, more chunks fitted twice; the outputs are the same.
    pub fn with_batch_chunks(mut self, n: usize) -> Self {
        self.batch_chunks = n.max(1);
        self
    }

    /// Window chunks this run will process.
    pub fn chunks_to_process(&self) -> usize {
        self.to_process.len()
    }

    /// Processes the planned chunks in parallel, removes stale outputs and saves
    /// the state; `progress` gets one phase, "chunks", advanced per chunk computed. A chunk that fails
    /// (unreadable input) is reported in the summary and its outputs removed; only
    /// failures to write the output folder are errors.
    pub fn execute(mut self, progress: &dyn Progress) -> Result<LocateSummary, LocateError> {
        let mut summary = LocateSummary {
            window_chunks: self.window_chunks,
            chunks_up_to_date: self.up_to_date,
            ..LocateSummary::default()
        };
        for start in std::mem::take(&mut self.to_remove) {
            remove_outputs(&self.out_dir, start)?;
            self.state.outputs.remove(&start);
            summary.chunks_removed += 1;
        }
        self.remove_strays()?;
        let mut jobs = std::mem::take(&mut self.to_process);
        jobs.sort_by_key(|j| j.own.start_obt_ns);
        progress.phase("chunks", jobs.len() as u64);
        // Outputs are compressed, written and fsynced by writer threads, so the
        // fit workers never wait for the disk and a batch's writes overlap the
        // next batch's fits. A chunk enters the state only once both its files
        // are in place.
        let out_dir = self.out_dir.clone();
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel::<ChunkOutputs>(self.batch_chunks);
        let out_rx = std::sync::Mutex::new(out_rx);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| -> Result<(), LocateError> {
            for _ in 0..WRITERS {
                let (out_rx, done_tx, out_dir) = (&out_rx, done_tx.clone(), &out_dir);
                scope.spawn(move || {
                    loop {
                        let next = out_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(outputs)) = next else { break };
                        let written = outputs.write(out_dir);
                        if done_tx.send((outputs.start, written)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let mut pending: HashMap<u64, (Vec<InputRef>, ChunkCounts)> = HashMap::new();
            let batches: Vec<&[ChunkJob]> = jobs.chunks(self.batch_chunks).collect();
            let mut carried = HashMap::new();
            for (index, batch) in batches.iter().copied().enumerate() {
                let inputs = BatchInputs::load(&self.in_dir, batch, std::mem::take(&mut carried));
                if let Some(next) = batches.get(index + 1) {
                    carried = inputs.carry_to(batch, next);
                }
                let results: Vec<_> = batch
                    .par_iter()
                    .map(|job| {
                        let r = inputs.compute(job);
                        progress.advance(1);
                        r
                    })
                    .collect();
                for (job, result) in batch.iter().zip(results) {
                    let start = job.own.start_obt_ns;
                    match result {
                        Ok(outputs) => {
                            pending.insert(start, (job.inputs(), outputs.counts()));
                            out_tx.send(outputs).map_err(|_| {
                                LocateError::Input(
                                    "internal error: the output writers stopped".into(),
                                )
                            })?;
                        }
                        Err(e) => self.record_failure(start, e, &mut summary)?,
                    }
                }
                while let Ok((start, written)) = done_rx.try_recv() {
                    self.book(start, written, &mut pending, &mut summary)?;
                }
                // Saved per batch, so a killed run redoes at most the chunks
                // not yet booked.
                self.state.save(&self.out_dir)?;
            }
            drop(out_tx);
            for (start, written) in done_rx {
                self.book(start, written, &mut pending, &mut summary)?;
            }
            Ok(())
        })?;
        self.state.save(&self.out_dir)?;
        Ok(summary)
    }

    /// Books a chunk whose outputs were written (or failed to be) into the
    /// state and the summary.
    fn book(
        &mut self,
        start: u64,
        written: Result<(), LocateError>,
        pending: &mut HashMap<u64, (Vec<InputRef>, ChunkCounts)>,
        summary: &mut LocateSummary,
    ) -> Result<(), LocateError> {
        let (inputs, counts) = pending
            .remove(&start)
            .expect("every written chunk was pending");
        match written {
            Ok(()) => {
                summary.add(&counts);
                self.state.outputs.insert(start, inputs);
                Ok(())
            }
            Err(e) => self.record_failure(start, e, summary),
        }
    }

    /// Books a chunk that could not be processed. A failure to write the output
    /// folder ends the run; an unreadable input fails the chunk alone (its
    /// outputs are removed so nothing stale remains).
    fn record_failure(
        &mut self,
        start: u64,
        error: LocateError,
        summary: &mut LocateSummary,
    ) -> Result<(), LocateError> {
        match error {
            LocateError::Product(ProductError::Io { path, source })
                if path.starts_with(&self.out_dir) =>
            {
                Err(LocateError::Io { path, source })
            }
            e => {
                tracing::error!("window chunk {start}: {e}");
                remove_outputs(&self.out_dir, start)?;
                self.state.outputs.remove(&start);
                summary.chunks_failed.push(ChunkFailure {
                    start_obt_ns: start,
                    error: e.to_string(),
                });
                Ok(())
            }
        }
    }

    /// Removes files in the output folders that are not the output of a current
    /// window chunk (left by a crash or an older layout).
    fn remove_strays(&self) -> Result<(), LocateError> {
        let mut keep: HashSet<PathBuf> = HashSet::new();
        for start in self
            .to_process
            .iter()
            .map(|j| j.own.start_obt_ns)
            .chain(self.state.outputs.keys().copied())
        {
            let (o, t) = output_paths(&self.out_dir, start);
            keep.insert(o);
            keep.insert(t);
        }
        for d in [OBSERVATION_DIR, TRANSIT_DIR] {
            let dir = self.out_dir.join(d);
            for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                let path = entry.map_err(io_err(&dir))?.path();
                if path.is_file() && !keep.contains(&path) {
                    tracing::debug!("removing stray {}", path.display());
                    std::fs::remove_file(&path).map_err(io_err(&path))?;
                }
            }
        }
        Ok(())
    }
}

fn remove_outputs(out_dir: &Path, start: u64) -> Result<(), LocateError> {
    let (o, t) = output_paths(out_dir, start);
    for p in [o, t] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
    }
    Ok(())
}

/// One window chunk's outputs, computed and waiting to be written. The
/// observations are those of the located chunk, shared rather than copied.
struct ChunkOutputs {
    start: u64,
    chunk: Arc<LocatedChunk>,
    transits: Vec<Transit>,
}

impl ChunkOutputs {
    fn counts(&self) -> ChunkCounts {
        ChunkCounts::of(self.chunk.observations(), &self.transits)
    }

    fn write(&self, out_dir: &Path) -> Result<(), LocateError> {
        let (obs_path, tr_path) = output_paths(out_dir, self.start);
        write_products(&obs_path, self.chunk.observations(), OBSERVATION_ZSTD_LEVEL)?;
        write_products(&tr_path, &self.transits, DEFAULT_ZSTD_LEVEL)
    }
}

fn write_products<'a, R: meridian_core::Record + 'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a R>,
    level: i32,
) -> Result<(), LocateError> {
    let mut w = ProductWriter::<R>::with_level(path, level)?;
    for r in records {
        w.push(r)?;
    }
    w.finish()?;
    Ok(())
}

/// The windows of one chunk by transit: `(transit_id, window index)` sorted, so
/// a transit's windows form one run in chunk order.
#[derive(Debug, Default)]
pub struct TransitIndex {
    pairs: Vec<(u64, u32)>,
}

impl TransitIndex {
    /// Indexes transit ids given in window order.
    pub fn new(ids: impl IntoIterator<Item = u64>) -> Self {
        let mut pairs: Vec<(u64, u32)> = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, i as u32))
            .collect();
        pairs.sort_unstable();
        TransitIndex { pairs }
    }

    /// Indexes of the windows of `transit_id`, in chunk order.
    pub fn windows_of(&self, transit_id: u64) -> impl Iterator<Item = usize> + '_ {
        let from = self.pairs.partition_point(|p| p.0 < transit_id);
        self.pairs[from..]
            .iter()
            .take_while(move |p| p.0 == transit_id)
            .map(|p| p.1 as usize)
    }

    pub fn contains(&self, transit_id: u64) -> bool {
        self.windows_of(transit_id).next().is_some()
    }

    /// Each transit with the indexes of its windows in chunk order, by transit id.
    pub fn groups(&self) -> impl Iterator<Item = (u64, &[(u64, u32)])> + '_ {
        self.pairs
            .chunk_by(|a, b| a.0 == b.0)
            .map(|run| (run[0].0, run))
    }
}

/// A window chunk located: one [`Located`] per window in the chunk's order, and
/// its windows by transit.
#[derive(Debug)]
pub struct LocatedChunk {
    located: Vec<Located>,
    by_transit: TransitIndex,
}

impl LocatedChunk {
    /// Fits and locates every window (in parallel, order kept).
    pub fn new(windows: &[Window], attitude: &AttitudeSeries) -> Self {
        let located = locate_windows(windows, attitude);
        let by_transit = TransitIndex::new(windows.iter().map(|w| w.transit_id));
        LocatedChunk {
            located,
            by_transit,
        }
    }

    pub fn located(&self) -> &[Located] {
        &self.located
    }

    pub fn observations(&self) -> impl ExactSizeIterator<Item = &Observation> + '_ {
        self.located.iter().map(|l| &l.observation)
    }
}

/// The decoded inputs of a batch of consecutive jobs: each window chunk located
/// once (fit and direction), the transit ids of the chunks before them, and one
/// attitude series over all their attitude chunks. A window's observation
/// depends only on the window and the attitude samples within 2 s of its
/// `t_obs`, all of which every job's attitude range covers, so sharing the work
/// across the batch changes no output.
struct BatchInputs {
    located: HashMap<u64, Result<Arc<LocatedChunk>, String>>,
    transit_ids: HashMap<u64, Result<TransitIndex, String>>,
    attitude_failures: HashMap<u64, String>,
}

impl BatchInputs {
    /// Reads and locates what `batch` needs, taking the chunks in `carried`
    /// (located by the previous batch) as they are.
    fn load(
        in_dir: &Path,
        batch: &[ChunkJob],
        mut carried: HashMap<u64, Arc<LocatedChunk>>,
    ) -> BatchInputs {
        let mut locate: BTreeMap<u64, &ChunkEntry> = BTreeMap::new();
        let mut ids_only: BTreeMap<u64, &ChunkEntry> = BTreeMap::new();
        let mut attitude: BTreeMap<u64, &ChunkEntry> = BTreeMap::new();
        for job in batch {
            for c in std::iter::once(&job.own).chain(&job.after) {
                locate.insert(c.start_obt_ns, c);
            }
            for c in &job.before {
                ids_only.insert(c.start_obt_ns, c);
            }
            for c in &job.attitude {
                attitude.insert(c.start_obt_ns, c);
            }
        }
        ids_only.retain(|k, _| !locate.contains_key(k));
        let mut reused: HashMap<u64, Result<Arc<LocatedChunk>, String>> = HashMap::new();
        for k in locate.keys().chain(ids_only.keys()) {
            if let Some(chunk) = carried.remove(k) {
                reused.insert(*k, Ok(chunk));
            }
        }
        locate.retain(|k, _| !reused.contains_key(k));
        ids_only.retain(|k, _| !reused.contains_key(k));
        let read_windows = |c: &ChunkEntry| -> Result<Vec<Window>, String> {
            read_all::<Window>(in_dir.join(&c.path)).map_err(|e| e.to_string())
        };
        let att: Vec<(u64, Result<Vec<Attitude>, String>)> = attitude
            .par_iter()
            .map(|(&k, c)| {
                let r = read_all::<Attitude>(in_dir.join(&c.path)).map_err(|e| e.to_string());
                (k, r)
            })
            .collect();
        let mut attitude_failures = HashMap::new();
        let mut records = Vec::new();
        for (k, r) in att {
            match r {
                Ok(v) => records.extend(v),
                Err(e) => {
                    attitude_failures.insert(k, e);
                }
            }
        }
        let series = AttitudeSeries::from_records(&records);
        let mut located: HashMap<u64, Result<Arc<LocatedChunk>, String>> = locate
            .par_iter()
            .map(|(&k, c)| {
                let chunk = read_windows(c).map(|ws| Arc::new(LocatedChunk::new(&ws, &series)));
                (k, chunk)
            })
            .collect();
        located.extend(reused);
        let transit_ids = ids_only
            .par_iter()
            .map(|(&k, c)| {
                let ids =
                    read_windows(c).map(|ws| TransitIndex::new(ws.iter().map(|w| w.transit_id)));
                (k, ids)
            })
            .collect();
        BatchInputs {
            located,
            transit_ids,
            attitude_failures,
        }
    }

    /// The located chunks the `next` batch needs (as its own, later or earlier
    /// chunks), so it need not read and fit them again. Only chunks that were
    /// the own chunk of a job of `batch` are carried: the attitude read for a
    /// job covers its own chunk's windows (module docs), so such a chunk is
    /// located exactly as the next batch would locate it. A chunk this batch
    /// located only as a later chunk may reach past the attitude it read
    /// (whenever the chunk length is not 60 s), so it is located again.
    /// Nothing is carried from a batch that could not read some attitude, so
    /// a failure is met again, as without carrying.
    fn carry_to(&self, batch: &[ChunkJob], next: &[ChunkJob]) -> HashMap<u64, Arc<LocatedChunk>> {
        if !self.attitude_failures.is_empty() {
            return HashMap::new();
        }
        let own: HashSet<u64> = batch.iter().map(|job| job.own.start_obt_ns).collect();
        let needed: HashSet<u64> = next
            .iter()
            .flat_map(|job| {
                std::iter::once(&job.own)
                    .chain(&job.after)
                    .chain(&job.before)
            })
            .map(|c| c.start_obt_ns)
            .collect();
        self.located
            .iter()
            .filter(|(k, _)| needed.contains(k) && own.contains(k))
            .filter_map(|(k, r)| Some((*k, Arc::clone(r.as_ref().ok()?))))
            .collect()
    }

    fn located(&self, c: &ChunkEntry) -> Result<&Arc<LocatedChunk>, LocateError> {
        match self.located.get(&c.start_obt_ns) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(LocateError::Input(e.clone())),
            None => unreachable!("every own and later chunk of a batch is located"),
        }
    }

    /// Computes the outputs of one job of the batch.
    fn compute(&self, job: &ChunkJob) -> Result<ChunkOutputs, LocateError> {
        if let Some(e) = job
            .attitude
            .iter()
            .find_map(|c| self.attitude_failures.get(&c.start_obt_ns))
        {
            return Err(LocateError::Input(e.clone()));
        }
        let own = self.located(&job.own)?;
        let earlier = job
            .before
            .iter()
            .map(|c| match self.transit_ids.get(&c.start_obt_ns) {
                Some(Ok(ids)) => Ok(ids),
                Some(Err(e)) => Err(LocateError::Input(e.clone())),
                None => self.located(c).map(|l| &l.by_transit),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let later = job
            .after
            .iter()
            .map(|c| self.located(c).map(|l| &**l))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChunkOutputs {
            start: job.own.start_obt_ns,
            chunk: Arc::clone(own),
            transits: transits_of(own, &earlier, &later),
        })
    }
}

/// Fits and locates every window (in parallel batches, order kept).
pub fn locate_windows(windows: &[Window], attitude: &AttitudeSeries) -> Vec<Located> {
    windows
        .par_iter()
        .with_min_len(FIT_BATCH)
        .map(|w| locate_window(w, &fit_window(&w.samples), attitude))
        .collect()
}

/// The transit records a chunk owns: the transits with a window in `own` and
/// none in the chunks before it (`earlier`), completed with their windows in
/// the chunks after it (`later`), ordered by (first window obt_ns, transit_id).
/// A transit's windows are taken in chunk order, own chunk first, so its sums
/// do not depend on how the chunks were grouped or scheduled.
pub fn transits_of(
    own: &LocatedChunk,
    earlier: &[&TransitIndex],
    later: &[&LocatedChunk],
) -> Vec<Transit> {
    let mut windows: Vec<&Located> = Vec::new();
    let mut keyed: Vec<((u64, u64), Transit)> = own
        .by_transit
        .groups()
        .filter(|(id, _)| !earlier.iter().any(|e| e.contains(*id)))
        .map(|(id, run)| {
            windows.clear();
            windows.extend(run.iter().map(|p| &own.located[p.1 as usize]));
            for chunk in later {
                windows.extend(chunk.by_transit.windows_of(id).map(|i| &chunk.located[i]));
            }
            let first = windows.iter().map(|l| l.window_obt_ns).min().unwrap_or(0);
            let t = transit_record(&windows);
            ((first, t.transit_id), t)
        })
        .collect();
    keyed.sort_unstable_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, t)| t).collect()
}
