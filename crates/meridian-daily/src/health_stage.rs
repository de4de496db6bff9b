//! The health stage of the daily run: housekeeping from the ordered chunks,
//! science from the located and matched products, data flow from the ordered
//! folder's completeness, all through `meridian_health::run`.

use meridian_health::run::{HealthConfig, RunOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the daily summary needs from the health run.
#[derive(Debug, Clone, Serialize)]
pub struct HealthStageSummary {
    /// OK, WARNING or CRITICAL.
    pub status: String,
    pub events: u64,
    pub alarms: u64,
    pub warnings: u64,
    pub report_html: PathBuf,
    pub not_evaluated: Vec<String>,
}

pub fn run(
    db_path: &Path,
    out: &Path,
) -> Result<HealthStageSummary, meridian_health::run::HealthError> {
    let health_dir = out.join("health");
    let opts = RunOptions {
        db: db_path.to_owned(),
        inputs: vec![
            out.join("ordered"),
            out.join("located"),
            out.join("matched"),
        ],
        out: health_dir.clone(),
        config: HealthConfig::default(),
        state: None,
    };
    let outcome = meridian_health::run::run(&opts)?;
    let report = outcome.report;
    Ok(HealthStageSummary {
        status: format!("{:?}", report.status).to_uppercase(),
        events: report.events.len() as u64,
        alarms: report.summary.alarms,
        warnings: report.summary.warnings,
        report_html: health_dir.join("report.html"),
        not_evaluated: report.not_evaluated,
    })
}
