//! External merge sort of one stream's new records, partitioned by time so the
//! output can be sorted, merged and written by several threads at once.
//!
//! Records are buffered in memory in one bucket per chunk, in arrival order.
//! When the run's budget is exceeded the buckets are sorted (in parallel) and
//! spilled: grouped into the sorter's *partitions* (contiguous ranges of chunks,
//! chosen once from the record counts of the first spill) and written as one
//! sorted run per partition, in parallel. At the end each partition sorts its
//! buckets, and merges them with its runs (merged first in passes of at most
//! [`FAN_IN`] files when there are more), independently of the others: a
//! partition's output is every record of its chunks in order, so the
//! partitions concatenated are the whole stream in order. The output is the
//! same sequence whatever the budget, partitioning or thread count, because the
//! order ([`StreamRecord::cmp_total`]) is total and starts with `obt_ns`.

use crate::error::OrderError;
use crate::record::{Arena, StreamRecord};
use meridian_core::product::ProductWriter;
use meridian_core::{ProductError, ProductReader};
use rayon::iter::{IntoParallelRefIterator, IntoParallelRefMutIterator, ParallelIterator};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
/// Memory charged per chunk bucket besides its records (map node, vector).
const BUCKET_OVERHEAD: usize = 64;

/// One chunk's buffered records, in arrival order until sorted.
type Bucket<R> = Vec<<R as StreamRecord>::Held>;
/// Buckets with their chunk index, in chunk order.
type Buckets<R> = [(u64, Bucket<R>)];

/// Writes sorted buckets (in chunk order) as one sorted run.
fn write_run<R: StreamRecord>(
    path: &Path,
    buckets: &Buckets<R>,
    arena: &[u16],
) -> Result<(), OrderError> {
    let mut w = ProductWriter::<R>::with_level(path, SPILL_LEVEL)?;
    for held in buckets.iter().flat_map(|(_, b)| b) {
        w.push(&R::unhold(held, arena))?;
    }
    w.finish_scratch()?;
    Ok(())
}

/// Makes room for one more record in a bucket: doubling while small, then
/// growing by a quarter, as unused capacity counts against the memory budget.
/// Returns the capacity added.
fn reserve_one<T>(v: &mut Vec<T>) -> usize {
    if v.len() < v.capacity() {
        return 0;
    }
    let before = v.capacity();
    let extra = if before < 1024 {
        before.max(8)
    } else {
        before / 4
    };
    v.reserve_exact(extra);
    v.capacity() - before
}

/// The partitions of a stream: contiguous ranges of chunks, given by the first
/// chunk of every partition after the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bounds(Vec<u64>);

impl Bounds {
    /// Cuts chunks (in order, with their record counts) into at most
    /// [`MAX_PARTS`] ranges of about equal record counts, each of about
    /// `min_records` or more.
    fn from_counts(
        counts: impl Iterator<Item = (u64, usize)> + Clone,
        min_records: usize,
    ) -> Bounds {
        let total: usize = counts.clone().map(|(_, n)| n).sum();
        let parts = (total / min_records.max(1)).clamp(1, MAX_PARTS);
        let mut cuts = Vec::with_capacity(parts - 1);
        let (mut before, mut next) = (0usize, 1usize);
        for (chunk, n) in counts {
            if next < parts && before > 0 && before >= next * total / parts {
                cuts.push(chunk);
                while next < parts && before >= next * total / parts {
                    next += 1;
                }
            }
            before += n;
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
}

/// Accumulates one stream's records and spills sorted runs to `dir`.
pub struct ExternalSorter<R: StreamRecord> {
    dir: PathBuf,
    chunk_ns: u64,
    min_spill_part: usize,
    /// Buffered records by chunk, except the bucket being filled.
    buckets: BTreeMap<u64, Bucket<R>>,
    /// The bucket being filled: a packet's records, and the next packet's,
    /// mostly fall in the same chunk, so this saves a map lookup per record.
    current: Option<(u64, Bucket<R>)>,
    /// Window samples of the buffered records.
    arena: Arena,
    /// Bytes of the buffered records and their buckets.
    held_bytes: usize,
    /// Record slots allocated and not used, over all buckets.
    spare_slots: usize,
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
            buckets: BTreeMap::new(),
            current: None,
            arena: Arena::new(),
            held_bytes: 0,
            spare_slots: 0,
            bounds: None,
            runs: Vec::new(),
            next_run: 0,
            spilled: 0,
        }
    }

    pub fn push(&mut self, r: R) {
        let held = r.hold(&mut self.arena);
        self.place(held);
    }

    /// Adds a record held in another arena (a reader's batch).
    pub fn push_held(&mut self, held: R::Held, arena: &[u16]) {
        let held = R::rehold(held, arena, &mut self.arena);
        self.place(held);
    }

    /// Puts a record held in this sorter's arena into its chunk's bucket.
    fn place(&mut self, held: R::Held) {
        let chunk = R::held_obt_ns(&held) / self.chunk_ns;
        if self.current.as_ref().is_none_or(|(c, _)| *c != chunk) {
            self.stow_current();
            let bucket = self.buckets.remove(&chunk).unwrap_or_else(|| {
                self.held_bytes += BUCKET_OVERHEAD;
                Vec::new()
            });
            self.current = Some((chunk, bucket));
        }
        let (_, bucket) = self.current.as_mut().expect("just set");
        self.spare_slots += reserve_one(bucket);
        self.held_bytes += R::held_size(&held);
        bucket.push(held);
        self.spare_slots -= 1;
    }

    fn stow_current(&mut self) {
        if let Some((chunk, bucket)) = self.current.take() {
            self.buckets.insert(chunk, bucket);
        }
    }

    /// Bytes held in memory.
    pub fn mem_bytes(&self) -> usize {
        // Each record's size counts its slot and samples; unused capacity
        // counts too.
        self.held_bytes
            + self.spare_slots * std::mem::size_of::<R::Held>()
            + (self.arena.capacity() - self.arena.len()) * std::mem::size_of::<u16>()
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

    /// Takes the buffered buckets (in chunk order) and their arena, leaving
    /// the sorter empty.
    fn take_buffer(&mut self) -> (Vec<(u64, Bucket<R>)>, Arena) {
        self.stow_current();
        self.held_bytes = 0;
        self.spare_slots = 0;
        let buckets = std::mem::take(&mut self.buckets).into_iter().collect();
        (buckets, std::mem::take(&mut self.arena))
    }

    /// Sorts the buffer and writes it as one run per partition (in parallel),
    /// freeing the memory.
    pub fn spill(&mut self) -> Result<(), OrderError> {
        let started = std::time::Instant::now();
        let (mut buckets, arena) = self.take_buffer();
        if buckets.is_empty() {
            return Ok(());
        }
        buckets
            .par_iter_mut()
            .for_each(|(_, b)| b.sort_unstable_by(|x, y| R::cmp_held(x, y, &arena)));
        let sorted_s = started.elapsed().as_secs_f64();
        let bounds = match &self.bounds {
            Some(b) => b.clone(),
            None => Bounds::from_counts(
                buckets.iter().map(|(c, b)| (*c, b.len())),
                self.min_spill_part,
            ),
        };
        if self.runs.is_empty() {
            self.runs = vec![Vec::new(); bounds.parts()];
        }
        // Buckets are in chunk order, so each partition's are consecutive.
        let mut segments: Vec<(usize, &Buckets<R>, PathBuf)> = Vec::new();
        let mut from = 0;
        while from < buckets.len() {
            let part = bounds.part_of(buckets[from].0);
            let len = buckets[from..].partition_point(|(c, _)| bounds.part_of(*c) == part);
            segments.push((part, &buckets[from..from + len], self.run_path()));
            from += len;
        }
        segments
            .par_iter()
            .try_for_each(|(_, buckets, path)| write_run::<R>(path, buckets, &arena))?;
        tracing::debug!(
            "{}: spilled {} records as {} runs (sort {sorted_s:.3} s, total {:.3} s)",
            R::STREAM.as_str(),
            buckets.iter().map(|(_, b)| b.len()).sum::<usize>(),
            segments.len(),
            started.elapsed().as_secs_f64()
        );
        for (part, _, path) in segments {
            self.runs[part].push(path);
        }
        self.bounds = Some(bounds);
        Ok(())
    }

    /// Ends input and hands every record over, partition by partition, for
    /// sorting and merging.
    pub fn finish(mut self) -> Result<Partitioned<R>, OrderError> {
        let (buckets, arena) = self.take_buffer();
        let bounds = match self.bounds.take() {
            Some(b) => b,
            None => Bounds::from_counts(
                buckets.iter().map(|(c, b)| (*c, b.len())),
                MIN_MEMORY_PART_RECORDS,
            ),
        };
        let arena = Arc::new(arena);
        let mut runs = std::mem::take(&mut self.runs);
        runs.resize(bounds.parts(), Vec::new());
        let mut parts: Vec<Partition<R>> = runs
            .into_iter()
            .enumerate()
            .map(|(part, runs)| Partition {
                dir: self.dir.clone(),
                part,
                runs,
                memory: Vec::new(),
                arena: Arc::clone(&arena),
            })
            .collect();
        for (chunk, bucket) in buckets {
            parts[bounds.part_of(chunk)].memory.push(bucket);
        }
        Ok(Partitioned { bounds, parts })
    }
}

/// A stream's records, split into partitions that sort and merge independently.
pub struct Partitioned<R: StreamRecord> {
    pub bounds: Bounds,
    pub parts: Vec<Partition<R>>,
}

/// One partition's sorted runs on disk and unsorted chunk buckets in memory.
pub struct Partition<R: StreamRecord> {
    dir: PathBuf,
    part: usize,
    runs: Vec<PathBuf>,
    /// Buckets of its chunks, in chunk order.
    memory: Vec<Bucket<R>>,
    /// Samples of the held records (shared by the stream's partitions).
    arena: Arc<Arena>,
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
        let arena = Arc::clone(&self.arena);
        let mut memory = std::mem::take(&mut self.memory);
        // Chunks are in order, so sorting each is sorting them all.
        for bucket in &mut memory {
            bucket.sort_unstable_by(|x, y| R::cmp_held(x, y, &arena));
        }
        sources.push(Box::new(
            memory
                .into_iter()
                .flatten()
                .map(move |h| Ok(R::unhold(&h, &arena))),
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
        w.finish_scratch()?;
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
                assert_eq!(s.mem_bytes(), 0, "a spill frees the buffer");
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
        // Equal times too, so the buckets' sort sees ties of obt_ns.
        let mut expect: Vec<u64> = (0..20_000u64)
            .map(|i| (i * 7919) % 20_000 / 2 * 2)
            .collect();
        for &t in &expect {
            s.push(att(t));
        }
        let held = s.mem_bytes();
        assert!(held >= 20_000 * std::mem::size_of::<Attitude>(), "{held}");
        let (got, parts, passes) = drain(s.finish().unwrap(), chunk_ns);
        assert!(parts > 10, "{parts} partitions");
        assert_eq!(passes, 0);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no files"
        );
        expect.sort();
        assert_eq!(got, expect);
    }

    #[test]
    fn bounds_split_record_counts_at_chunk_boundaries() {
        // One chunk: one partition, however many records.
        assert_eq!(
            Bounds::from_counts([(7, 100_000)].into_iter(), 10).parts(),
            1
        );
        // Even counts: MAX_PARTS partitions of (almost) equal size.
        let even = (0..1000u64).map(|c| (c * 3, 100));
        let b = Bounds::from_counts(even.clone(), 1_000);
        assert_eq!(b.parts(), MAX_PARTS);
        assert_eq!(b.part_of(0), 0);
        assert_eq!(b.part_of(2997), MAX_PARTS - 1);
        assert_eq!(b.part_of(u64::MAX), MAX_PARTS - 1);
        let mut sizes = vec![0; b.parts()];
        for (c, n) in even {
            sizes[b.part_of(c)] += n;
        }
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(hi - lo <= 100, "{sizes:?}");
        // Few records: fewer, larger partitions.
        assert_eq!(
            Bounds::from_counts((0..10u64).map(|c| (c, 100)), 300).parts(),
            3
        );
    }
}
