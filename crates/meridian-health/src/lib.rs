//! Payload health monitoring: ICD §6 housekeeping checks, science and data-flow
//! health, and their reports (health_event products, JSON, HTML, Prometheus).
//!
//! * [`hk`]: the housekeeping checker ([`HkChecker::new`] with an optional
//!   persisted [`CheckerState`], [`HkChecker::feed`] in time order,
//!   [`HkChecker::finish`] → [`HkOutcome::events`] and the state for the next run).
//!   Its module docs list every decision where ICD §6 is silent (NaN, parameters
//!   that never report, contexts setting one kind of limits, run boundaries).
//! * [`science`]: [`science_health`] per field of view per time bin (match rate,
//!   along/across-scan residuals, along-scan outliers, flagged windows).
//! * [`bounded`]: [`bounded::science_from_files`], science health straight from
//!   the product files in memory bounded by a time bin and a batch of files
//!   (the whole-day method as its reference and fallback).
//! * [`dataflow`]: [`completeness_events`] per APID per hour.
//! * [`report`]: status with monitoring-plugin exit codes, `report.json`, and the
//!   Prometheus metrics (documented there); [`html`]: the self-contained report.
//! * [`run`]: a whole `meridian-health` run over input folders, with the files it
//!   writes and how runs chain.
//! * [`synth`]: realistic synthetic inputs with known anomalies for tests,
//!   benchmarks and `cargo run -p meridian-health --example demo_report -- DIR`.
//!
//! All events share the ICD §9 `health_event` record. Check names: `limit`,
//! `state`, `delta`, `stale`, `frozen` (param = the housekeeping parameter);
//! `match_rate`, `residual_al`, `residual_ac`, `residual_al_outliers`,
//! `flagged_windows` (param `fov0`/`fov1`); `completeness` (param `apid_0x101`…).
//!
//! Not provided: packet latency (generation to arrival in a delivery). No input
//! carries an arrival time: ICD §2 gives delivery names and order no meaning and
//! the decoder's reports hold none, so there is nothing to measure it against.

pub mod bounded;
pub mod dataflow;
pub mod exact;
pub mod hk;
pub mod html;
pub mod report;
pub mod run;
pub mod science;
pub mod synth;

pub use dataflow::{DataFlowConfig, completeness_events};
pub use hk::{CheckerState, HkChecker, HkOutcome, HkStats};
pub use report::{HealthReport, Status};
pub use run::{HealthConfig, HealthError, RunOptions, RunOutcome};
pub use science::{ScienceConfig, ScienceHealth, science_health};
