//! Science health straight from product files, in memory bounded by a time bin
//! and a window of files rather than by the day's volume.
//!
//! # Why and how
//!
//! A Gaia-scale day holds ~70 M transits and ~700 M windows: holding every
//! transit and match record (≈ 14 GB) or every bin's residuals and backgrounds
//! (≈ 4 GB) does not scale. [`science_from_files`] instead
//!
//! 1. **schedules** the observation and transit files by the time their name
//!    gives (`meridian-locate` writes `<start_obt_ns:020>.mprod` per window
//!    chunk, and every record in it is at or after that time: an observation's
//!    `t_obs` is at or after its window's `obt_ns`, a transit's at or after its
//!    earliest window's); a name that is not a number gives time 0, so such files
//!    come first and hold every bin open until they are read;
//! 2. reads them **in batches** of [`BoundedOptions::files_per_batch`] files, the
//!    files of a batch in parallel, each into an accumulator of its own;
//! 3. **joins transits with their match records** by a merge on `transit_id`: the
//!    match files are sorted by it (`meridian-xmatch` writes them so), so they are
//!    read only as far as the largest `transit_id` of the batch, into a buffer
//!    from which each record is dropped once its transit has taken it (the
//!    files are decoded on a thread of their own, a few chunks ahead). Transit
//!    ids rise with time (up to some disorder between neighbouring chunks), so the
//!    buffer holds the records of one or two batches;
//! 4. **finishes a bin** (takes its medians, frees its values) once every file
//!    whose name time is before the bin's end plus [`SLACK_NS`] has been read.
//!
//! What is held at once is therefore the open bins (two or three per field of
//! view: the one being filled, the one a transit's later windows reach, the one
//! kept by [`SLACK_NS`]), the files of one batch and the match records of one or
//! two batches. On the 1 % benchmark day with 8 files per batch that is at most
//! 4 open bins and 5 528 match records. (`ProductReader` maps the match file
//! but gives its pages back every 32 MiB, so the file adds little to the
//! resident set whatever its size.)
//!
//! Every statistic of a bin is a sum or an exact median, neither of which
//! depends on the order in which values arrive, so the result equals the
//! whole-day computation ([`whole_day_from_files`]) bit for bit, whatever the
//! thread count or batch size.
//!
//! # When the inputs do not have that order
//!
//! The order is checked as the files are read. If a record falls into a bin
//! already finished (a file named later than its records), a match file is not
//! sorted by `transit_id`, or one `transit_id` is held by transits read in
//! different batches (the buffer had already given its match away), the bounded
//! pass stops and the science is recomputed by the whole-day method, with a
//! warning naming the reason: slower and unbounded, never a different result.
//! Inputs that are merely unhelpful stay correct on the bounded path but hold
//! more: transit ids unrelated to time keep match records buffered until their
//! transit comes; match records whose transit is not among the inputs stay
//! buffered to the end; a positioned transit without a match record costs its id
//! (8 octets) until the end, where the ids are checked against the match files.

use crate::science::{
    ScienceAccumulator, ScienceBin, ScienceConfig, ScienceHealth, catalogue_position,
};
use meridian_core::product::{ProductError, ProductReader};
use meridian_core::records::{Match, Observation, Transit};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// A record may precede the time of its file's name by this much before a bin
/// it falls into is taken as finished (none does for `meridian-locate`'s files;
/// the margin costs at most one more bin held).
pub const SLACK_NS: u64 = 60_000_000_000;

/// How much of the inputs the bounded pass holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundedOptions {
    /// Files read per batch (in parallel). Larger batches keep the threads
    /// busier at each batch's end and hold more.
    pub files_per_batch: usize,
}

impl Default for BoundedOptions {
    /// Four files per thread: a batch of 60 s chunks holds about two minutes per
    /// thread, and each thread has two observation files to even out the load.
    fn default() -> Self {
        Self {
            files_per_batch: (4 * rayon::current_num_threads()).max(4),
        }
    }
}

/// What the pass held at most, and whether it fell back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundedStats {
    /// Transit records read.
    pub transits: u64,
    /// Bins (field of view × time bin) open at once, at most.
    pub peak_open_bins: usize,
    /// Match records buffered at once, at most.
    pub peak_buffered_matches: usize,
    /// Positioned transits with no match record.
    pub without_match: u64,
    /// Batches read.
    pub batches: u64,
    /// Why the whole-day method was used instead (None: it was not).
    pub fallback: Option<String>,
}

/// Science health of the observation, transit and match files (see the module
/// docs): bounded when the inputs are in the expected order, the whole-day
/// method otherwise. Errors name the file that could not be read.
pub fn science_from_files(
    observations: &[PathBuf],
    transits: &[PathBuf],
    matches: &[PathBuf],
    cfg: &ScienceConfig,
    opts: BoundedOptions,
) -> Result<(ScienceHealth, BoundedStats), ProductError> {
    let mut stats = BoundedStats::default();
    match bounded_pass(observations, transits, matches, cfg, opts, &mut stats) {
        Ok(health) => Ok((health, stats)),
        Err(Stop::Read(e)) => Err(e),
        Err(Stop::OutOfOrder(reason)) => {
            tracing::warn!("science health by the whole-day method: {reason}");
            let (health, transits) = whole_day_from_files(observations, transits, matches, cfg)?;
            stats.transits = transits;
            stats.fallback = Some(reason);
            Ok((health, stats))
        }
    }
}

/// The whole-day method: every transit and match record in memory, joined by a
/// hash map, and every bin open to the end (observations streamed, files in
/// parallel). The reference the bounded pass must equal, and its fallback.
/// Also returns the number of transit records.
pub fn whole_day_from_files(
    observations: &[PathBuf],
    transits: &[PathBuf],
    matches: &[PathBuf],
    cfg: &ScienceConfig,
) -> Result<(ScienceHealth, u64), ProductError> {
    let (transits, matches) = rayon::join(
        || read_every::<Transit>(transits),
        || read_every::<Match>(matches),
    );
    let (transits, matches) = (transits?, matches?);
    let mut acc = observations
        .par_iter()
        .map(|path| read_observations(path, cfg))
        .try_reduce(
            || ScienceAccumulator::new(cfg),
            |mut a, b| {
                a.merge(b);
                Ok(a)
            },
        )?;
    acc.add_transits(&transits, &matches);
    Ok((acc.finish(), transits.len() as u64))
}

fn read_every<R: meridian_core::Record>(paths: &[PathBuf]) -> Result<Vec<R>, ProductError> {
    let mut out = Vec::new();
    for p in paths {
        for r in ProductReader::<R>::open(p)? {
            out.push(r?);
        }
    }
    Ok(out)
}

fn read_observations<'c>(
    path: &Path,
    cfg: &'c ScienceConfig,
) -> Result<ScienceAccumulator<'c>, ProductError> {
    let mut acc = ScienceAccumulator::new(cfg);
    for o in ProductReader::<Observation>::open(path)? {
        acc.add_observation(&o?);
    }
    Ok(acc)
}

/// Why the bounded pass stopped.
enum Stop {
    Read(ProductError),
    /// The inputs lack the order the pass relies on (the reason, for the log).
    OutOfOrder(String),
}

impl From<ProductError> for Stop {
    fn from(e: ProductError) -> Self {
        Stop::Read(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Observation,
    Transit,
}

/// One input file and the time its name gives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    name_ns: u64,
    source: Source,
    path: PathBuf,
}

/// The time a file's name gives: its stem as a number of ns, else 0.
fn name_time(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn schedule(observations: &[PathBuf], transits: &[PathBuf]) -> Vec<Scheduled> {
    let tagged = |paths: &[PathBuf], source| {
        paths
            .iter()
            .map(move |p| Scheduled {
                name_ns: name_time(p),
                source,
                path: p.clone(),
            })
            .collect::<Vec<_>>()
    };
    let mut files = tagged(observations, Source::Observation);
    files.extend(tagged(transits, Source::Transit));
    files.sort();
    files
}

/// One file of a batch, read.
enum Part<'c> {
    Observations(ScienceAccumulator<'c>),
    Transits(Vec<Transit>),
}

fn read_part<'c>(file: &Scheduled, cfg: &'c ScienceConfig) -> Result<Part<'c>, ProductError> {
    Ok(match file.source {
        Source::Observation => Part::Observations(read_observations(&file.path, cfg)?),
        Source::Transit => Part::Transits(
            ProductReader::<Transit>::open(&file.path)?.collect::<Result<Vec<_>, _>>()?,
        ),
    })
}

fn positioned(t: &Transit) -> bool {
    t.ra.is_some() && t.dec.is_some()
}

fn bounded_pass(
    observations: &[PathBuf],
    transits: &[PathBuf],
    matches: &[PathBuf],
    cfg: &ScienceConfig,
    opts: BoundedOptions,
    stats: &mut BoundedStats,
) -> Result<ScienceHealth, Stop> {
    let files = schedule(observations, transits);
    let mut join = MatchJoin::open(matches)?;
    let mut open = ScienceAccumulator::new(cfg);
    let mut finished: BTreeMap<(u8, u64), ScienceBin> = BTreeMap::new();
    let batches: Vec<&[Scheduled]> = files.chunks(opts.files_per_batch.max(1)).collect();
    for (i, batch) in batches.iter().enumerate() {
        let parts = batch
            .par_iter()
            .map(|f| read_part(f, cfg))
            .collect::<Result<Vec<_>, _>>()?;
        let largest_id = parts
            .iter()
            .filter_map(|p| match p {
                Part::Transits(ts) => ts
                    .iter()
                    .filter(|t| positioned(t))
                    .map(|t| t.transit_id)
                    .max(),
                Part::Observations(_) => None,
            })
            .max();
        if let Some(id) = largest_id {
            join.read_through(id)?;
        }
        stats.peak_buffered_matches = stats.peak_buffered_matches.max(join.buffer.len());
        let (buffer, no_matches) = (&join.buffer, join.files.is_empty());
        let joined: Vec<Joined> = parts
            .into_par_iter()
            .map(|p| buffer.apply(p, no_matches, cfg))
            .collect();
        for (j, file) in joined.into_iter().zip(batch.iter()) {
            if let Some(key) = j.acc.bin_keys().find(|k| finished.contains_key(k)) {
                return Err(Stop::OutOfOrder(format!(
                    "{}: holds records of the bin of field of view {} starting at obt_ns {}, \
                     finished before this file (named for a later time) was read",
                    file.path.display(),
                    key.0,
                    key.1
                )));
            }
            stats.transits += j.transits;
            join.take(&j.taken, &j.without_match);
            open.merge(j.acc);
        }
        stats.batches += 1;
        stats.peak_open_bins = stats.peak_open_bins.max(open.open_bins());
        let ended_by = match batches.get(i + 1) {
            Some(next) => next[0].name_ns.saturating_sub(SLACK_NS),
            None => u64::MAX,
        };
        for bin in open.finish_bins_ending_by(ended_by) {
            finished.insert((bin.fov, bin.start_obt_ns), bin);
        }
    }
    stats.without_match = join.without_match.len() as u64;
    join.check_no_duplicate_transit_ids()?;
    Ok(open.finish_with(finished.into_values().collect()))
}

/// A transit file of a batch joined with its match records.
struct Joined<'c> {
    acc: ScienceAccumulator<'c>,
    transits: u64,
    /// Ids whose match record the file's transits took.
    taken: Vec<u64>,
    /// Ids of positioned transits with no match record in the buffer.
    without_match: Vec<u64>,
}

/// The merge of the match files on `transit_id` (see the module docs).
struct MatchJoin {
    files: Vec<MatchFile>,
    /// Match records read and not yet taken, by transit id.
    buffer: MatchBuffer,
    /// Ids of positioned transits that found no match record.
    without_match: Vec<u64>,
}

/// What the join needs of a match record: its transit id and
/// [`catalogue_position`].
type MatchKey = (u64, Option<(f64, f64)>);

/// Match records sent at once by a file's reader thread.
const MATCH_CHUNK: usize = 8192;
/// Chunks a reader thread may run ahead of the join.
const MATCH_CHUNKS_AHEAD: usize = 4;

/// One match file being read in `transit_id` order. The records are decoded on
/// a thread of their own, a few chunks ahead: the join itself runs between the
/// parallel reads of two batches, so decoding there would leave the other
/// threads idle for the whole match file.
struct MatchFile {
    path: PathBuf,
    chunks: Option<Receiver<Result<Vec<MatchKey>, ProductError>>>,
    reader: Option<JoinHandle<()>>,
    current: std::vec::IntoIter<MatchKey>,
    next: Option<MatchKey>,
    index: u64,
}

impl MatchFile {
    fn open(path: &Path) -> Result<Self, Stop> {
        let (tx, rx) = sync_channel(MATCH_CHUNKS_AHEAD);
        let owned = path.to_owned();
        let reader = std::thread::Builder::new()
            .name("health-matches".into())
            .spawn(move || send_match_keys(&owned, &tx))
            .map_err(|e| ProductError::Io {
                path: path.to_owned(),
                source: e,
            })?;
        let mut f = MatchFile {
            path: path.to_owned(),
            chunks: Some(rx),
            reader: Some(reader),
            current: Vec::new().into_iter(),
            next: None,
            index: 0,
        };
        f.advance()?;
        Ok(f)
    }

    fn advance(&mut self) -> Result<(), Stop> {
        let previous = self.next.map(|m| m.0);
        self.next = loop {
            if let Some(m) = self.current.next() {
                break Some(m);
            }
            match self.chunks.as_ref().map(Receiver::recv) {
                Some(Ok(Ok(chunk))) => self.current = chunk.into_iter(),
                Some(Ok(Err(e))) => return Err(Stop::Read(e)),
                // The reader has sent everything.
                Some(Err(_)) | None => break None,
            }
        };
        if let (Some(p), Some((id, _))) = (previous, self.next)
            && id < p
        {
            return Err(Stop::OutOfOrder(format!(
                "{}: not sorted by transit_id (record {} has {id} after {p})",
                self.path.display(),
                self.index + 1,
            )));
        }
        self.index += 1;
        Ok(())
    }
}

impl Drop for MatchFile {
    /// Stops the reader (its next send fails once the receiver is gone) and
    /// waits for it, so no thread outlives the pass.
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The reader thread of a match file: sends its records' keys in chunks, then
/// any error, and stops early when the join no longer listens.
fn send_match_keys(path: &Path, tx: &SyncSender<Result<Vec<MatchKey>, ProductError>>) {
    let records = match ProductReader::<Match>::open(path) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let mut chunk = Vec::with_capacity(MATCH_CHUNK);
    for r in records {
        match r {
            Ok(m) => chunk.push((m.transit_id, catalogue_position(&m))),
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
        if chunk.len() == MATCH_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(MATCH_CHUNK));
            if tx.send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(chunk));
    }
}

impl MatchJoin {
    fn open(paths: &[PathBuf]) -> Result<Self, Stop> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            files.push(MatchFile::open(path)?);
        }
        Ok(MatchJoin {
            files,
            buffer: MatchBuffer::default(),
            without_match: Vec::new(),
        })
    }

    /// Reads every match record with `transit_id` ≤ `id` into the buffer,
    /// smallest id first and of equal ids the later file's last, so the record
    /// left is the one a map built over all files in order would keep.
    fn read_through(&mut self, id: u64) -> Result<(), Stop> {
        loop {
            let next = self
                .files
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.next.map(|m| (m.0, i)))
                .filter(|&(t, _)| t <= id)
                .min();
            let Some((_, i)) = next else {
                return Ok(());
            };
            let f = &mut self.files[i];
            let (id, position) = f.next.expect("peeked");
            self.buffer.push(id, position);
            f.advance()?;
        }
    }

    fn take(&mut self, taken: &[u64], without_match: &[u64]) {
        for &id in taken {
            self.buffer.take(id);
        }
        self.without_match.extend_from_slice(without_match);
    }

    /// A positioned transit found no match record in the buffer. Every record
    /// with its id had been read, so either there is none (it is unmatched, as
    /// the whole-day method also finds) or a transit of an earlier batch with the
    /// same id took it: re-read the match files to tell which.
    fn check_no_duplicate_transit_ids(&mut self) -> Result<(), Stop> {
        if self.without_match.is_empty() {
            return Ok(());
        }
        // Sorted in place: 8 octets an id, no second copy.
        let mut ids = std::mem::take(&mut self.without_match);
        ids.sort_unstable();
        ids.dedup();
        for f in &self.files {
            for m in ProductReader::<Match>::open(&f.path)? {
                let id = m?.transit_id;
                if ids.binary_search(&id).is_ok() {
                    return Err(Stop::OutOfOrder(format!(
                        "transit_id {id} is held by transits read in different batches"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Match records in `transit_id` order, as read: appended at the back, looked up
/// by binary search, marked when taken and dropped from the front (or, once
/// most are taken, by compaction, so records never taken cannot pin the rest).
#[derive(Default)]
struct MatchBuffer {
    records: std::collections::VecDeque<Buffered>,
    taken: usize,
}

struct Buffered {
    id: u64,
    position: Option<(f64, f64)>,
    taken: bool,
}

impl MatchBuffer {
    /// Appends a record read in `transit_id` order; of equal ids the last stays
    /// (none is taken before every record of its id has been read).
    fn push(&mut self, id: u64, position: Option<(f64, f64)>) {
        if let Some(last) = self.records.back_mut()
            && last.id == id
            && !last.taken
        {
            last.position = position;
            return;
        }
        self.records.push_back(Buffered {
            id,
            position,
            taken: false,
        });
    }

    fn find(&self, id: u64) -> Option<usize> {
        let from = self.records.partition_point(|r| r.id < id);
        (from..self.records.len())
            .take_while(|&i| self.records[i].id == id)
            .find(|&i| !self.records[i].taken)
    }

    /// The catalogue position of the record of `id` not yet taken, if any.
    fn get(&self, id: u64) -> Option<Option<(f64, f64)>> {
        self.find(id).map(|i| self.records[i].position)
    }

    fn take(&mut self, id: u64) {
        let Some(i) = self.find(id) else {
            return;
        };
        self.records[i].taken = true;
        self.taken += 1;
        while self.records.front().is_some_and(|r| r.taken) {
            self.records.pop_front();
            self.taken -= 1;
        }
        if self.taken > 64 && self.taken * 2 > self.records.len() {
            self.records.retain(|r| !r.taken);
            self.taken = 0;
        }
    }

    /// Joins one file of a batch (read-only: records are taken afterwards, in
    /// file order, by [`MatchJoin::take`]); `no_matches`: there are no match files.
    fn apply<'c>(&self, part: Part<'c>, no_matches: bool, cfg: &'c ScienceConfig) -> Joined<'c> {
        let ts = match part {
            Part::Observations(acc) => {
                return Joined {
                    acc,
                    transits: 0,
                    taken: Vec::new(),
                    without_match: Vec::new(),
                };
            }
            Part::Transits(ts) => ts,
        };
        let mut j = Joined {
            acc: ScienceAccumulator::new(cfg),
            transits: ts.len() as u64,
            taken: Vec::new(),
            without_match: Vec::new(),
        };
        for t in &ts {
            let mut matched = None;
            if positioned(t) && !no_matches {
                match self.get(t.transit_id) {
                    Some(m) => {
                        matched = m;
                        j.taken.push(t.transit_id);
                    }
                    None => j.without_match.push(t.transit_id),
                }
            }
            j.acc.add_transit(t, matched);
        }
        j
    }

    /// Records held (taken ones not yet dropped included).
    fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_never_taken_does_not_pin_the_buffer() {
        let mut b = MatchBuffer::default();
        b.push(0, None);
        let mut peak = 0;
        for id in 1..10_000u64 {
            b.push(id, Some((id as f64, 0.0)));
            peak = peak.max(b.len());
            assert_eq!(b.get(id), Some(Some((id as f64, 0.0))));
            b.take(id);
            assert_eq!(b.get(id), None);
        }
        assert!(peak <= 130, "{peak}");
        assert_eq!(b.get(0), Some(None));
    }

    #[test]
    fn of_equal_ids_the_last_record_read_stays() {
        let mut b = MatchBuffer::default();
        b.push(5, Some((1.0, 1.0)));
        b.push(5, Some((2.0, 2.0)));
        b.push(6, None);
        assert_eq!(b.get(5), Some(Some((2.0, 2.0))));
        b.take(5);
        assert_eq!((b.get(5), b.get(6), b.len()), (None, Some(None), 1));
    }

    #[test]
    fn file_names_give_times_only_when_numbers() {
        assert_eq!(name_time(Path::new("a/00000000000000000123.mprod")), 123);
        for stem in [
            "a/transit.mprod",
            "a/12x.mprod",
            "a/.mprod",
            "a/99999999999999999999999.mprod",
        ] {
            assert_eq!(name_time(Path::new(stem)), 0, "{stem}");
        }
    }
}
