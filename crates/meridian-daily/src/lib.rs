//! The daily run: every stage in one incremental, crash-safe process, and run comparison.

pub mod compare;
pub mod health_stage;
pub mod memory;
pub mod metrics;
pub mod run;

pub use run::{DailyConfig, DailyError, DailyOutcome, DailyProgress, RunManifest, run_daily};
