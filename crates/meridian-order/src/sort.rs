//! External merge sort of one stream's new records: records are buffered in
//! memory; when the run's budget is exceeded the buffer is sorted and spilled as
//! [`RUNS_PER_SPILL`] product files written in parallel, and the sorted runs are
//! merged back (in passes of at most
//! [`FAN_IN`] files) into one ordered stream. The output is the same sequence
//! whatever the budget, because the order ([`StreamRecord::cmp_total`]) is total.

use crate::error::OrderError;
use crate::record::StreamRecord;
use meridian_core::product::ProductWriter;
use meridian_core::{ProductError, ProductReader};
use rayon::iter::{IndexedParallelIterator, ParallelIterator};
use rayon::slice::{ParallelSlice, ParallelSliceMut};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

/// Most sorted runs merged at once: bounds open files and decoder buffers.
pub const FAN_IN: usize = 16;
/// zstd level of spill files: speed matters more than size for scratch data,
/// read back once (the fastest level zstd has below the products' default).
const SPILL_LEVEL: i32 = -7;

/// Sorted runs written per spill (in parallel).
pub const RUNS_PER_SPILL: usize = 2;

fn write_run<R: StreamRecord>(path: &Path, records: &[R]) -> Result<(), OrderError> {
    let mut w = ProductWriter::<R>::with_level(path, SPILL_LEVEL)?;
    for r in records {
        w.push(r)?;
    }
    w.finish()?;
    Ok(())
}

/// Accumulates one stream's records and spills sorted runs to `dir`.
pub struct ExternalSorter<R: StreamRecord> {
    dir: PathBuf,
    buf: Vec<R>,
    buf_bytes: usize,
    runs: Vec<PathBuf>,
    next_run: usize,
    spilled: u64,
}

impl<R: StreamRecord> ExternalSorter<R> {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            buf: Vec::new(),
            buf_bytes: 0,
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

    /// Sorted runs written to disk so far (merge passes included).
    pub fn spill_count(&self) -> u64 {
        self.spilled
    }

    fn run_path(&mut self) -> PathBuf {
        self.next_run += 1;
        self.spilled += 1;
        self.dir
            .join(format!("{}-{:06}.mprod", R::STREAM.as_str(), self.next_run))
    }

    /// Sorts the buffer and writes it as one run, freeing the memory.
    pub fn spill(&mut self) -> Result<(), OrderError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        self.buf_bytes = 0;
        buf.par_sort_unstable_by(|a, b| a.cmp_total(b));
        // The sorted buffer is written as a few runs side by side: encoding and
        // compressing it is serial work the ingest otherwise waits for. A fixed
        // count keeps the runs, and so the merge, independent of the thread count.
        let per_run = buf.len().div_ceil(RUNS_PER_SPILL);
        let paths: Vec<PathBuf> = buf.chunks(per_run).map(|_| self.run_path()).collect();
        buf.par_chunks(per_run)
            .zip(&paths)
            .try_for_each(|(records, path)| write_run(path, records))?;
        self.runs.extend(paths);
        Ok(())
    }

    /// Ends input and returns every pushed record in order.
    pub fn finish(mut self) -> Result<Merged<R>, OrderError> {
        while self.runs.len() + usize::from(!self.buf.is_empty()) > FAN_IN {
            self.merge_pass()?;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.par_sort_unstable_by(|a, b| a.cmp_total(b));
        let mut sources: Vec<Source<R>> = Vec::with_capacity(self.runs.len() + 1);
        for path in &self.runs {
            sources.push(Box::new(ProductReader::<R>::open(path)?));
        }
        sources.push(Box::new(buf.into_iter().map(Ok)));
        Merged::new(sources)
    }

    /// Merges the oldest `FAN_IN` runs into one.
    fn merge_pass(&mut self) -> Result<(), OrderError> {
        let take = FAN_IN.min(self.runs.len());
        let inputs: Vec<PathBuf> = self.runs.drain(..take).collect();
        let mut sources: Vec<Source<R>> = Vec::with_capacity(inputs.len());
        for path in &inputs {
            sources.push(Box::new(ProductReader::<R>::open(path)?));
        }
        let path = self.run_path();
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

    #[test]
    fn spilled_and_merged_output_is_sorted_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ExternalSorter::<Attitude>::new(dir.path());
        let mut expect = Vec::new();
        // A permutation of 0..5000 pushed with a spill every 97 records: more than
        // FAN_IN runs, so merge passes run too.
        for i in 0..5000u64 {
            let t = (i * 7919) % 5000;
            s.push(att(t));
            expect.push(t);
            if i % 97 == 96 {
                s.spill().unwrap();
            }
        }
        assert!(s.spill_count() > FAN_IN as u64);
        let got: Vec<u64> = s.finish().unwrap().map(|r| r.unwrap().obt_ns).collect();
        expect.sort();
        assert_eq!(got, expect);
    }
}
