//! Payload health monitoring: ICD §6 housekeeping checks, science and data-flow
//! health, and their reports (health_event products, JSON, HTML, Prometheus).
//!
//! * [`hk`]: the housekeeping checker ([`HkChecker::new`] with an optional
//!   persisted [`CheckerState`], [`HkChecker::feed`] in time order,
//!   [`HkChecker::finish`] → events and the state for the next run).
//! * [`science`]: [`science_health`] per field of view per time bin.
//! * [`dataflow`]: [`completeness_events`] per APID per hour.
//! * [`report`], [`html`]: the JSON report, Prometheus metrics and HTML report.
//! * [`run`]: a whole `meridian-health` run over input folders.
//! * [`synth`]: realistic synthetic inputs for tests, benchmarks and demos.

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
