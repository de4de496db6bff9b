//! The small traits stages compose through, so another centre can plug in its own
//! outputs (a database writer, a message queue) or feed its own records in.
//!
//! A *source* of records is any `Iterator<Item = Result<R, E>>` (a
//! [`crate::ProductReader`] is one); a *sink* is a [`RecordSink`]. Stage libraries
//! take sinks rather than paths wherever a caller may want the records elsewhere,
//! and report progress through [`Progress`].

use crate::product::{ProductError, ProductWriter};
use crate::records::Record;

/// Somewhere records of one kind go.
pub trait RecordSink<R> {
    type Error;
    /// Accepts one record.
    fn accept(&mut self, record: R) -> Result<(), Self::Error>;
}

impl<R> RecordSink<R> for Vec<R> {
    type Error = std::convert::Infallible;
    fn accept(&mut self, record: R) -> Result<(), Self::Error> {
        self.push(record);
        Ok(())
    }
}

impl<R: Record> RecordSink<R> for ProductWriter<R> {
    type Error = ProductError;
    fn accept(&mut self, record: R) -> Result<(), Self::Error> {
        self.push(&record)
    }
}

/// Counts records and drops them: for benchmarks and dry runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingSink {
    pub count: u64,
}

impl<R> RecordSink<R> for CountingSink {
    type Error = std::convert::Infallible;
    fn accept(&mut self, _record: R) -> Result<(), Self::Error> {
        self.count += 1;
        Ok(())
    }
}

/// How a stage reports progress: the library counts, the caller draws (a
/// progress bar, a log line, a metric). Every stage library takes `&dyn Progress`.
pub trait Progress: Sync {
    /// A phase of the stage starts, with `total` steps (0 when unknown). The
    /// unit of a step is the stage's own: octets, records or chunks, as its
    /// documentation says.
    fn phase(&self, _name: &str, _total: u64) {}
    /// `n` more steps of the current phase are done.
    fn advance(&self, _n: u64) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Records what a stage reported: each phase with its total, and the steps
/// done in all phases together. For tests, and for callers that only want the
/// totals in a summary.
#[derive(Debug, Default)]
pub struct CountingProgress {
    phases: std::sync::Mutex<Vec<(String, u64)>>,
    steps: std::sync::atomic::AtomicU64,
}

impl CountingProgress {
    /// The phases reported so far, in order, with their totals.
    pub fn phases(&self) -> Vec<(String, u64)> {
        self.phases.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The steps reported so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Progress for CountingProgress {
    fn phase(&self, name: &str, total: u64) {
        if let Ok(mut p) = self.phases.lock() {
            p.push((name.to_owned(), total));
        }
    }
    fn advance(&self, n: u64) {
        self.steps
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}
