//! Sorted runs of records spilled to hidden scratch files and merged back in
//! `transit_id` order, so that a run's memory is bounded by its batch, not by
//! the day.
//!
//! A run is one batch's records, sorted. On disk it is a list of small
//! *segment* product files (a fast zstd level) in a hidden scratch folder of
//! the output folder. Segments are small on purpose: a product reader maps and
//! checksums its whole file when it opens it, so while `k` runs are merged
//! the resident mapped octets are `k` segments, not the whole day; a segment
//! is unmapped and deleted as soon as the merge has read it.
//!
//! The merge is stable: records with equal ids come out in run order (and
//! in their order within a run), exactly as a stable sort of the runs'
//! concatenation would give them.

use crate::run::RunError;
use meridian_core::product::{ProductError, ProductReader, ProductWriter};
use meridian_core::records::{Match, Record, Transit};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::{Path, PathBuf};

/// The scratch folder, inside the output folder. Hidden, so product listings
/// (`find_products`) never see it.
pub const SPILL_DIR: &str = ".xmatch-spill";
/// zstd level of spilled segments: written once, read once, soon deleted.
const SPILL_LEVEL: i32 = -7;
/// Records per segment file: about 1–2 MiB compressed, which bounds the
/// mapped octets of a merge to that per run.
const SEGMENT_RECORDS: usize = 1 << 15;

/// A record that is merged by a key (its `transit_id`).
pub trait Keyed {
    fn key(&self) -> u64;
}

impl Keyed for Match {
    fn key(&self) -> u64 {
        self.transit_id
    }
}

impl Keyed for Transit {
    fn key(&self) -> u64 {
        self.transit_id
    }
}

/// Where a run's spilled segments go; created on the first spill, removed
/// (with anything a killed earlier run left in it) when dropped or cleared.
pub struct SpillDir {
    dir: PathBuf,
    next_segment: u64,
    created: bool,
}

impl SpillDir {
    /// The scratch folder of `out`, emptied of anything an earlier run left.
    pub fn new(out: &Path) -> Result<Self, RunError> {
        let dir = out.join(SPILL_DIR);
        remove_tree(&dir)?;
        Ok(Self {
            dir,
            next_segment: 0,
            created: false,
        })
    }

    /// Writes one sorted run as segment files; returns their paths in order.
    /// Segments are independent files, written in parallel (each one's
    /// compression and fsync overlap the others').
    pub fn write_run<R: Record + Sync>(&mut self, records: &[R]) -> Result<Vec<PathBuf>, RunError> {
        self.ensure_dir()?;
        let first = self.next_segment;
        self.next_segment += records.chunks(SEGMENT_RECORDS).len() as u64;
        records
            .par_chunks(SEGMENT_RECORDS)
            .enumerate()
            .map(|(i, chunk)| {
                let path = self.segment_path::<R>(first + i as u64);
                let mut writer = ProductWriter::<R>::with_level(&path, SPILL_LEVEL)?;
                for r in chunk {
                    writer.push(r)?;
                }
                writer.finish_scratch()?;
                Ok(path)
            })
            .collect()
    }

    /// Writes a sorted stream of records as one run of segment files.
    pub fn write_stream<R: Record>(
        &mut self,
        records: impl Iterator<Item = Result<R, RunError>>,
    ) -> Result<Vec<PathBuf>, RunError> {
        self.ensure_dir()?;
        let mut segments = Vec::new();
        let mut writer: Option<ProductWriter<R>> = None;
        for record in records {
            let record = record?;
            let segment = match writer.take() {
                Some(w) if (w.count() as usize) < SEGMENT_RECORDS => w,
                full => {
                    if let Some(w) = full {
                        w.finish_scratch()?;
                    }
                    let path = self.segment_path::<R>(self.next_segment);
                    self.next_segment += 1;
                    segments.push(path.clone());
                    ProductWriter::with_level(&path, SPILL_LEVEL)?
                }
            };
            writer.insert(segment).push(&record)?;
        }
        if let Some(w) = writer {
            w.finish_scratch()?;
        }
        Ok(segments)
    }

    fn segment_path<R: Record>(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{}-{n:08}.mprod", R::KIND.as_str()))
    }

    /// A path for a scratch file of this name in the folder (created if needed).
    pub fn scratch_path(&mut self, name: &str) -> Result<PathBuf, RunError> {
        self.ensure_dir()?;
        Ok(self.dir.join(name))
    }

    fn ensure_dir(&mut self) -> Result<(), RunError> {
        if !self.created {
            std::fs::create_dir_all(&self.dir).map_err(|source| RunError::Io {
                path: self.dir.clone(),
                source,
            })?;
            self.created = true;
        }
        Ok(())
    }

    /// The scratch folder's path.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        // Best effort: a leftover is removed by the next run in any case.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a folder tree if it exists.
pub fn remove_tree(dir: &Path) -> Result<(), RunError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RunError::Io {
            path: dir.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// A source of records in key order.
pub type RunSource<'a, R> = Box<dyn Iterator<Item = Result<R, RunError>> + Send + 'a>;

/// A run held in memory (sorted by the caller).
pub fn memory_run<'a, R: Send + 'a>(records: Vec<R>) -> RunSource<'a, R> {
    Box::new(records.into_iter().map(Ok))
}

/// A run read back from product files in order, each checked to be sorted by
/// key; with `delete`, each file is removed once read (spilled segments).
pub fn file_run<'a, R: Record + Keyed>(files: Vec<PathBuf>, delete: bool) -> RunSource<'a, R> {
    Box::new(FileRun {
        files: files.into(),
        reader: None,
        last_key: None,
        delete,
        failed: false,
    })
}

struct FileRun<R: Record> {
    files: VecDeque<PathBuf>,
    reader: Option<ProductReader<R>>,
    last_key: Option<u64>,
    delete: bool,
    failed: bool,
}

impl<R: Record + Keyed> FileRun<R> {
    fn next_record(&mut self) -> Result<Option<R>, RunError> {
        loop {
            let reader = match &mut self.reader {
                Some(reader) => reader,
                None => match self.files.front() {
                    None => return Ok(None),
                    Some(path) => self.reader.insert(ProductReader::open(path)?),
                },
            };
            match reader.next() {
                Some(record) => {
                    let record = record?;
                    self.check_order(record.key())?;
                    return Ok(Some(record));
                }
                None => self.close_file()?,
            }
        }
    }

    /// Records of a file to merge must come in key order: anything else is a
    /// damaged or foreign file, named, rather than silently misordered output.
    fn check_order(&mut self, key: u64) -> Result<(), RunError> {
        if let Some(last) = self.last_key.filter(|&last| key < last) {
            let path = self.files.front().cloned().unwrap_or_default();
            return Err(RunError::Partial {
                path,
                detail: format!("not sorted by transit_id: {key} comes after {last}"),
            });
        }
        self.last_key = Some(key);
        Ok(())
    }

    /// Unmaps the file just read and, for scratch files, deletes it.
    fn close_file(&mut self) -> Result<(), RunError> {
        self.reader = None;
        if let Some(path) = self.files.pop_front()
            && self.delete
        {
            std::fs::remove_file(&path).map_err(|e| ProductError::Io { path, source: e })?;
        }
        Ok(())
    }
}

impl<R: Record + Keyed> Iterator for FileRun<R> {
    type Item = Result<R, RunError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_record();
        self.failed = next.is_err();
        next.transpose()
    }
}

/// Runs a merge reads at once at most: each costs about 2 MiB while open
/// (reader and decoder buffers, one mapped segment), so a day of many batches
/// first merges some of its runs together (see [`limit_runs`]).
pub const MAX_OPEN_RUNS: usize = 64;

/// Merges groups of consecutive runs into single spilled runs until at most
/// `max_open` remain, each group at most `max_open` runs, so that no merge
/// holds more readers; consecutive groups keep the merge stable. Only the
/// excess is merged twice: 70 runs and a limit of 64 merge 7 of them first.
pub fn limit_runs<'a, R: Record + Keyed>(
    mut runs: Vec<RunSource<'a, R>>,
    spill: &mut SpillDir,
    max_open: usize,
) -> Result<Vec<RunSource<'a, R>>, RunError> {
    let max_open = max_open.max(2);
    let mut pos = 0;
    while runs.len() > max_open {
        if runs.len() - pos < 2 {
            pos = 0;
        }
        let take = (runs.len() - max_open + 1)
            .min(max_open)
            .min(runs.len() - pos);
        let group: Vec<_> = runs.drain(pos..pos + take).collect();
        let merged = spill.write_stream(Merge::new(group)?)?;
        runs.insert(pos, file_run(merged, true));
        pos += 1;
    }
    Ok(runs)
}

/// A k-way merge of sorted runs by key; equal keys come out in run order.
pub struct Merge<'a, R> {
    runs: Vec<RunSource<'a, R>>,
    heads: Vec<Option<R>>,
    /// (key, run) of every run's head record, smallest first.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    failed: bool,
}

impl<'a, R: Keyed> Merge<'a, R> {
    /// Starts the merge: reads the first record of every run.
    pub fn new(runs: Vec<RunSource<'a, R>>) -> Result<Self, RunError> {
        let mut merge = Merge {
            heads: runs.iter().map(|_| None).collect(),
            heap: BinaryHeap::with_capacity(runs.len()),
            runs,
            failed: false,
        };
        for i in 0..merge.runs.len() {
            merge.advance(i)?;
        }
        Ok(merge)
    }

    /// Pulls run `i`'s next record into its head slot.
    fn advance(&mut self, i: usize) -> Result<(), RunError> {
        if let Some(record) = self.runs[i].next().transpose()? {
            self.heap.push(Reverse((record.key(), i)));
            self.heads[i] = Some(record);
        }
        Ok(())
    }

    fn next_record(&mut self) -> Result<Option<R>, RunError> {
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let record = self.heads[i].take().expect("a run in the heap has a head");
        self.advance(i)?;
        Ok(Some(record))
    }
}

impl<R: Keyed> Iterator for Merge<'_, R> {
    type Item = Result<R, RunError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_record();
        self.failed = next.is_err();
        next.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::records::Match;

    fn rec(id: u64, n: u32) -> Match {
        Match {
            transit_id: id,
            source_id: Some(id as i64),
            sep_mas: Some(n as f64),
            n_candidates: n,
            ambiguous: vec![],
            new_source: None,
            ra_cat: None,
            dec_cat: None,
        }
    }

    /// Spilled and in-memory runs merge into key order, equal keys in run
    /// order; spilled segments are deleted as they are read, the folder on drop.
    #[test]
    fn merge_is_a_stable_sort_of_the_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = SpillDir::new(dir.path()).unwrap();
        let a: Vec<Match> = (0..3 * SEGMENT_RECORDS as u64 + 5)
            .map(|i| rec(i * 3, 1))
            .collect();
        let b: Vec<Match> = (0..100u64).map(|i| rec(i * 7, 2)).collect();
        let c: Vec<Match> = vec![rec(0, 3), rec(21, 3), rec(u64::MAX, 3)];
        let segments = spill.write_run(&a).unwrap();
        assert_eq!(segments.len(), 4);
        let runs = vec![
            file_run::<Match>(segments.clone(), true),
            file_run::<Match>(spill.write_run(&b).unwrap(), true),
            memory_run(c.clone()),
        ];
        let merged: Vec<Match> = Merge::new(runs).unwrap().map(Result::unwrap).collect();
        let mut expected: Vec<Match> = a.into_iter().chain(b).chain(c).collect();
        expected.sort_by_key(|m| m.transit_id);
        assert_eq!(merged, expected);
        assert!(segments.iter().all(|p| !p.exists()));
        let path = spill.path().to_owned();
        assert!(path.exists());
        drop(spill);
        assert!(!path.exists());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any runs, some spilled and some in memory, merge into the stable
        /// sort of their concatenation (ties: run order, then order in the
        /// run), also when groups of them are first merged to limit the
        /// runs open at once.
        #[test]
        fn merge_equals_a_stable_sort(
            runs in proptest::collection::vec(proptest::collection::vec(0u64..40, 0..30), 0..12),
            spilled in proptest::collection::vec(proptest::bool::ANY, 12),
            max_open in 0usize..6,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut spill = SpillDir::new(dir.path()).unwrap();
            let mut sources = Vec::new();
            let mut all = Vec::new();
            for (r, keys) in runs.iter().enumerate() {
                let mut keys = keys.clone();
                keys.sort_unstable();
                // n_candidates tags each record with its run and place.
                let records: Vec<Match> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, &k)| rec(k, (r * 100 + i) as u32))
                    .collect();
                all.extend(records.clone());
                sources.push(if spilled[r] {
                    file_run::<Match>(spill.write_run(&records).unwrap(), true)
                } else {
                    memory_run(records)
                });
            }
            all.sort_by_key(|m| m.transit_id);
            let limited = limit_runs(sources, &mut spill, max_open).unwrap();
            proptest::prop_assert!(limited.len() <= max_open.max(2));
            let merged: Vec<Match> = Merge::new(limited).unwrap().map(Result::unwrap).collect();
            proptest::prop_assert_eq!(merged, all);
        }
    }

    #[test]
    fn an_unsorted_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.mprod");
        meridian_core::product::write_all(&path, &[rec(5, 1), rec(4, 1)]).unwrap();
        let err = Merge::new(vec![file_run::<Match>(vec![path], false)])
            .unwrap()
            .find_map(Result::err)
            .unwrap()
            .to_string();
        assert!(
            err.contains("m.mprod") && err.contains("not sorted"),
            "{err}"
        );
    }
}
