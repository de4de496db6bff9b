//! Payload health monitoring: ICD §6 housekeeping checks, science and data-flow
//! health, and their reports (health_event products, JSON, HTML, Prometheus).

pub mod dataflow;
pub mod exact;
pub mod hk;
pub mod science;

pub use dataflow::{DataFlowConfig, completeness_events};
pub use hk::{CheckerState, HkChecker, HkOutcome, HkStats};
pub use science::{ScienceConfig, ScienceHealth, science_health};
