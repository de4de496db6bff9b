//! External merge sort of one stream's new records, partitioned by time so the
//! output can be merged and written by several threads at once.
//!
//! Records are buffered in memory. When the run's budget is exceeded the buffer
//! is sorted and spilled: cut at chunk boundaries into the sorter's *partitions*
//! (contiguous ranges of chunks, chosen once from the first sorted buffer) and
//! written as one sorted run per partition, in parallel. At the end each
//! partition's runs (merged first in passes of at most [`FAN_IN`] files when there
//! are more) and its share of the sorted buffer are merged independently: a
//! partition's output is every record of its chunks in order, so the partitions
//! concatenated are the whole stream in order. The output is the same sequence
//! whatever the budget, partitioning or thread count, because the order
//! ([`StreamRecord::cmp_total`]) is total and starts with `obt_ns`.

use crate::error::OrderError;
use crate::record::StreamRecord;
use meridian_core::product::ProductWriter;
use meridian_core::{ProductError, ProductReader};
use rayon::iter::{IntoParallelRefIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

/// Most sorted runs merged at once: bounds open files and decoder buffers.
pub const FAN_IN: usize = 16;
/// zstd level of spill files: speed matters more than size for scratch data,
/// read back once (the fastest level zstd has below the products' default).
const SPILL_LEVEL: i32 = -7;
/// Fewest records per partition when the partitions are chosen at a spill:
/// smaller spill files would only multiply files and merge sources.
pub const MIN_SPILL_PART_RECORDS: usize = 16_384;
/// Fewest records per partition when everything fitted in memory (no files).
pub const MIN_MEMORY_PART_RECORDS: usize = 1_024;
/// Most partitions of a stream: the spill files of one spill, and the units of
/// parallel output work. Fixed, so the work split does not depend on the
/// machine (the output never does).
pub const MAX_PARTS: usize = 64;

fn write_run<R: StreamRecord>(path: &Path, records: &[R]) -> Result<(), OrderError> {
    let mut w = ProductWriter::<R>::with_level(path, SPILL_LEVEL)?;
    for r in records {
        w.push(r)?;
    }
    w.finish()?;
    Ok(())
}

/// The partitions of a stream: contiguous ranges of chunks, given by the first
/// chunk of every partition after the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bounds(Vec<u64>);

impl Bounds {
    /// Cuts a sorted, non-empty buffer at chunk boundaries into at most
    /// [`MAX_PARTS`] ranges of about equal record counts, each of about
    /// `min_records` or more.
    fn choose<R: StreamRecord>(sorted: &[R], chunk_ns: u64, min_records: usize) -> Bounds {
        let n = sorted.len();
        let parts = (n / min_records.max(1)).clamp(1, MAX_PARTS);
        let mut cuts: Vec<u64> = Vec::with_capacity(parts - 1);
        let mut last = sorted.first().map_or(0, |r| r.obt_ns() / chunk_ns);
        for i in 1..parts {
            let chunk = sorted[i * n / parts].obt_ns() / chunk_ns;
            if chunk > last {
                cuts.push(chunk);
                last = chunk;
            }
        }
        Bounds(cuts)
    }

    /// Number of partitions.
    pub fn parts(&self) -> usize {
        self.0.len() + 1
    }

    /// The partition holding a chunk.
    pub fn part_of(&self, chunk: u64) -> usize {
        self.0.partition_point(|&b| b <= chunk)
    }

    /// Where each partition starts in a sorted slice, then its length.
    fn offsets<R: StreamRecord>(&self, sorted: &[R], chunk_ns: u64) -> Vec<usize> {
        let mut at = Vec::with_capacity(self.0.len() + 2);
        at.push(0);
        for &b in &self.0 {
            at.push(sorted.partition_point(|r| r.obt_ns() / chunk_ns < b));
        }
        at.push(sorted.len());
        at
    }
}

/// Accumulates one stream's records and spills sorted runs to `dir`.
pub struct ExternalSorter<R: StreamRecord> {
    dir: PathBuf,
    chunk_ns: u64,
    min_spill_part: usize,
    buf: Vec<R>,
    buf_bytes: usize,
    /// Fixed by the first spill, so every run of a partition covers its chunks.
    bounds: Option<Bounds>,
    /// Sorted run files of each partition, oldest first.
    runs: Vec<Vec<PathBuf>>,
    next_run: usize,
    spilled: u64,
}

impl<R: StreamRecord> ExternalSorter<R> {
    /// A sorter for records chunked by `chunk_ns` (> 0), spilling into `dir`.
    pub fn new(dir: &Path, chunk_ns: u64) -> Self {
        Self::with_min_spill_part(dir, chunk_ns, MIN_SPILL_PART_RECORDS)
    }

    /// Same, with another least partition size at spills (tests use small ones
    /// to get many partitions out of few records).
    pub fn with_min_spill_part(dir: &Path, chunk_ns: u64, min_spill_part: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            chunk_ns,
            min_spill_part,
            buf: Vec::new(),
            buf_bytes: 0,
            bounds: None,
            runs: Vec::new(),
            next_run: 0,
            spilled: 0,
        }
    }

    pub fn push(&mut self, r: R) {
        self.buf_bytes += r.mem_size();
        self.buf.push(r);
    }

    /// Bytes held in memory.
    pub fn mem_bytes(&self) -> usize {
        // Each record's size counts its slot; unused capacity counts too.
        self.buf_bytes + (self.buf.capacity() - self.buf.len()) * std::mem::size_of::<R>()
    }

    /// Sorted runs written to disk so far.
    pub fn spill_count(&self) -> u64 {
        self.spilled
    }

    fn run_path(&mut self) -> PathBuf {
        self.next_run += 1;
        self.spilled += 1;
        self.dir
            .join(format!("{}-{:06}.mprod", R::STREAM.as_str(), self.next_run))
    }

    /// Sorts the buffer and writes it as one run per partition (in parallel),
    /// freeing the memory.
    pub fn spill(&mut self) -> Result<(), OrderError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut buf = std::mem::take(&mut self.buf);
        self.buf_bytes = 0;
        buf.par_sort_unstable_by(|a, b| a.cmp_total(b));
        let sorted_s = started.elapsed().as_secs_f64();
        let bounds = match &self.bounds {
            Some(b) => b.clone(),
            None => Bounds::choose(&buf, self.chunk_ns, self.min_spill_part),
        };
        if self.runs.is_empty() {
            self.runs = vec![Vec::new(); bounds.parts()];
        }
        let at = bounds.offsets(&buf, self.chunk_ns);
        let mut segments: Vec<(usize, &[R], PathBuf)> = Vec::new();
        for part in 0..bounds.parts() {
            let records = &buf[at[part]..at[part + 1]];
            if !records.is_empty() {
                segments.push((part, records, self.run_path()));
            }
        }
        segments
            .par_iter()
            .try_for_each(|(_, records, path)| write_run(path, records))?;
        tracing::debug!(
            "{}: spilled {} records as {} runs (sort {sorted_s:.3} s, total {:.3} s)",
            R::STREAM.as_str(),
            buf.len(),
            segments.len(),
            started.elapsed().as_secs_f64()
        );
        for (part, _, path) in segments {
            self.runs[part].push(path);
        }
        self.bounds = Some(bounds);
        Ok(())
    }

    /// Ends input: sorts what is left in memory and hands every record over,
    /// partition by partition, for merging.
    pub fn finish(mut self) -> Result<Partitioned<R>, OrderError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.par_sort_unstable_by(|a, b| a.cmp_total(b));
        let bounds = match self.bounds.take() {
            Some(b) => b,
            None => Bounds::choose(&buf, self.chunk_ns, MIN_MEMORY_PART_RECORDS),
        };
        let at = bounds.offsets(&buf, self.chunk_ns);
        let mut runs = std::mem::take(&mut self.runs);
        runs.resize(bounds.parts(), Vec::new());
        // Cut from the back, handing the tail's memory back each time, so the
        // records are never held twice.
        let mut parts = Vec::with_capacity(bounds.parts());
        for (part, runs) in runs.into_iter().enumerate().rev() {
            let memory = buf.split_off(at[part]);
            buf.shrink_to_fit();
            parts.push(Partition {
                dir: self.dir.clone(),
                part,
                runs,
                memory,
            });
        }
        parts.reverse();
        Ok(Partitioned { bounds, parts })
    }
}

/// A stream's sorted records, split into partitions that merge independently.
pub struct Partitioned<R: StreamRecord> {
    pub bounds: Bounds,
    pub parts: Vec<Partition<R>>,
}

/// One partition's sorted runs on disk and sorted records in memory.
pub struct Partition<R: StreamRecord> {
    dir: PathBuf,
    part: usize,
    runs: Vec<PathBuf>,
    memory: Vec<R>,
}

impl<R: StreamRecord> Partition<R> {
    /// The partition's records in order; also returns how many runs merge
    /// passes wrote (when it had more than [`FAN_IN`] sources).
    pub fn merge(mut self) -> Result<(Merged<R>, u64), OrderError> {
        let mut passes = 0;
        while self.runs.len() + usize::from(!self.memory.is_empty()) > FAN_IN {
            self.merge_pass(passes)?;
            passes += 1;
        }
        let mut sources: Vec<Source<R>> = Vec::with_capacity(self.runs.len() + 1);
        for path in &self.runs {
            sources.push(Box::new(ProductReader::<R>::open(path)?));
        }
        sources.push(Box::new(
            std::mem::take(&mut self.memory).into_iter().map(Ok),
        ));
        Ok((Merged::new(sources)?, passes))
    }

    /// Merges the oldest `FAN_IN` runs into one.
    fn merge_pass(&mut self, pass: u64) -> Result<(), OrderError> {
        let take = FAN_IN.min(self.runs.len());
        let inputs: Vec<PathBuf> = self.runs.drain(..take).collect();
        let mut sources: Vec<Source<R>> = Vec::with_capacity(inputs.len());
        for path in &inputs {
            sources.push(Box::new(ProductReader::<R>::open(path)?));
        }
        // Names unique per partition, so partitions merge side by side.
        let path = self.dir.join(format!(
            "{}-p{:03}-m{pass:04}.mprod",
            R::STREAM.as_str(),
            self.part
        ));
        let mut w = ProductWriter::<R>::with_level(&path, SPILL_LEVEL)?;
        for r in Merged::new(sources)? {
            w.push(&r?)?;
        }
        w.finish()?;
        for p in &inputs {
            std::fs::remove_file(p).map_err(|e| OrderError::io(p, e))?;
        }
        self.runs.push(path);
        Ok(())
    }
}

type Source<R> = Box<dyn Iterator<Item = Result<R, ProductError>> + Send>;

struct Head<R: StreamRecord> {
    record: R,
    source: usize,
}

impl<R: StreamRecord> PartialEq for Head<R> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl<R: StreamRecord> Eq for Head<R> {}
impl<R: StreamRecord> PartialOrd for Head<R> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<R: StreamRecord> Ord for Head<R> {
    /// Reversed, so the max-heap yields the smallest record first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .record
            .cmp_total(&self.record)
            .then_with(|| other.source.cmp(&self.source))
    }
}

/// A k-way merge of sorted sources.
pub struct Merged<R: StreamRecord> {
    sources: Vec<Source<R>>,
    heap: BinaryHeap<Head<R>>,
    failed: bool,
}

impl<R: StreamRecord> Merged<R> {
    fn new(mut sources: Vec<Source<R>>) -> Result<Self, OrderError> {
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(r) = s.next() {
                heap.push(Head {
                    record: r?,
                    source: i,
                });
            }
        }
        Ok(Self {
            sources,
            heap,
            failed: false,
        })
    }

    /// The next record without taking it.
    pub fn peek(&self) -> Option<&R> {
        self.heap.peek().map(|h| &h.record)
    }
}

impl<R: StreamRecord> Iterator for Merged<R> {
    type Item = Result<R, OrderError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let head = self.heap.pop()?;
        match self.sources[head.source].next() {
            Some(Ok(r)) => self.heap.push(Head {
                record: r,
                source: head.source,
            }),
            Some(Err(e)) => {
                self.failed = true;
                return Some(Err(e.into()));
            }
            None => {}
        }
        Some(Ok(head.record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::records::Attitude;

    fn att(obt_ns: u64) -> Attitude {
        Attitude {
            obt_ns,
            q: [0.0, 0.0, 0.0, 1.0],
            seq: (obt_ns % 16384) as u16,
            packet_obt_ns: obt_ns,
            packet_hash: obt_ns.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }

    /// Every partition merged, concatenated in partition order.
    fn drain(sorted: Partitioned<Attitude>, chunk_ns: u64) -> (Vec<u64>, usize, u64) {
        let parts = sorted.parts.len();
        let mut got = Vec::new();
        let mut passes = 0;
        for (i, part) in sorted.parts.into_iter().enumerate() {
            let (merged, p) = part.merge().unwrap();
            passes += p;
            for r in merged {
                let t = r.unwrap().obt_ns;
                assert_eq!(
                    sorted.bounds.part_of(t / chunk_ns),
                    i,
                    "record {t} in its partition"
                );
                got.push(t);
            }
        }
        (got, parts, passes)
    }

    #[test]
    fn spilled_and_merged_output_is_sorted_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        // Small partitions: several of them, each with more than FAN_IN runs,
        // so the per-partition merge passes run too.
        let chunk_ns = 10;
        let mut s = ExternalSorter::<Attitude>::with_min_spill_part(dir.path(), chunk_ns, 20);
        let mut expect = Vec::new();
        // A permutation of 0..5000 pushed with a spill every 97 records.
        for i in 0..5000u64 {
            let t = (i * 7919) % 5000;
            s.push(att(t));
            expect.push(t);
            if i % 97 == 96 {
                s.spill().unwrap();
            }
        }
        assert!(s.spill_count() > FAN_IN as u64);
        let (got, parts, passes) = drain(s.finish().unwrap(), chunk_ns);
        assert!(parts > 1, "{parts} partitions");
        assert!(passes > 0, "merge passes ran");
        expect.sort();
        assert_eq!(got, expect);
    }

    #[test]
    fn records_outside_the_first_spills_range_land_in_the_edge_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let chunk_ns = 100;
        let mut s = ExternalSorter::<Attitude>::with_min_spill_part(dir.path(), chunk_ns, 10);
        // The first spill sees only the middle of time; later records fall
        // before and after it, and some stay in memory.
        let mut expect = Vec::new();
        for t in (50_000..60_000).step_by(37) {
            s.push(att(t));
            expect.push(t);
        }
        s.spill().unwrap();
        for t in (0..100_000).step_by(101) {
            s.push(att(t));
            expect.push(t);
        }
        s.spill().unwrap();
        for t in (3..100_000).step_by(997) {
            s.push(att(t));
            expect.push(t);
        }
        let (got, parts, _) = drain(s.finish().unwrap(), chunk_ns);
        assert!(parts > 2, "{parts} partitions");
        expect.sort();
        assert_eq!(got, expect);
    }

    #[test]
    fn without_spills_everything_is_partitioned_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let chunk_ns = 1000;
        let mut s = ExternalSorter::<Attitude>::new(dir.path(), chunk_ns);
        let mut expect: Vec<u64> = (0..20_000u64).map(|i| (i * 7919) % 20_000).collect();
        for &t in &expect {
            s.push(att(t));
        }
        let (got, parts, passes) = drain(s.finish().unwrap(), chunk_ns);
        assert_eq!((parts, passes), (20_000 / MIN_MEMORY_PART_RECORDS, 0));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no files"
        );
        expect.sort();
        assert_eq!(got, expect);
    }

    #[test]
    fn bounds_cut_at_chunk_boundaries_and_never_split_a_chunk() {
        // Every record in one chunk: one partition, however many records.
        let same: Vec<Attitude> = (0..100_000).map(|i| att(5_000 + i % 7)).collect();
        assert_eq!(Bounds::choose(&same, 1_000_000, 10).parts(), 1);
        let spread: Vec<Attitude> = (0..100_000u64).map(att).collect();
        let b = Bounds::choose(&spread, 1_000, 1_000);
        assert_eq!(b.parts(), MAX_PARTS);
        assert_eq!(b.part_of(0), 0);
        assert_eq!(b.part_of(99), MAX_PARTS - 1);
        assert_eq!(b.part_of(u64::MAX), MAX_PARTS - 1);
    }
}
