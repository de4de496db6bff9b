//! The daily run: every stage in one incremental, crash-safe process, and run comparison.

pub mod compare;
