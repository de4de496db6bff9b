//! The small traits stages compose through, so another centre can plug in its own
//! outputs (a database writer, a message queue) or feed its own records in.
//!
//! A *source* of records is any `Iterator<Item = Result<R, E>>` (a
//! [`crate::ProductReader`] is one); a *sink* is a [`RecordSink`]. Stage libraries
//! take sinks rather than paths wherever a caller may want the records elsewhere.

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
