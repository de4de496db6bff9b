//! The health report of one run: overall status (monitoring-plugin convention),
//! its JSON form and the Prometheus text-format metrics.
//!
//! # Prometheus metrics (`metrics.prom`, for a node-exporter textfile collector)
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `meridian_health_status` | gauge | | 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN |
//! | `meridian_health_events` | gauge | `check`, `severity` | events reported by the run (closed during it or open at its end) |
//! | `meridian_health_open_events` | gauge | `severity` | events still open at the end of the data |
//! | `meridian_hk_samples_checked_total` | counter | | housekeeping samples checked over all runs |
//! | `meridian_hk_late_samples` | gauge | | samples of the run older than data already checked (skipped) |
//! | `meridian_hk_unknown_records` | gauge | | records of the run naming no database parameter |
//! | `meridian_hk_end_of_data_obt_seconds` | gauge | | latest housekeeping packet time, OBT seconds |
//! | `meridian_science_transits` | gauge | `fov` | transits in the run |
//! | `meridian_science_match_rate` | gauge | `fov` | matched / positioned transits over the run |
//! | `meridian_science_residual_al_median_mas` | gauge | `fov` | median of the per-bin along-scan medians |
//! | `meridian_science_residual_ac_median_mas` | gauge | `fov` | median of the per-bin across-scan medians |
//! | `meridian_data_completeness` | gauge | `apid` | received / (received + missing) over the run's hours |
//!
//! Metrics of a part that had no input are left out, not written as zero.

use crate::dataflow::apid_param;
use crate::hk::HkStats;
use crate::science::ScienceBin;
use meridian_core::records::{HealthEvent, Severity};
use meridian_order::HourCompleteness;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Overall status, with the exit codes of the monitoring-plugin convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// WARNING for any warning event, CRITICAL for any alarm, else OK.
    pub fn of_events(events: &[HealthEvent]) -> Status {
        match events.iter().map(|e| e.severity).max() {
            None => Status::Ok,
            Some(Severity::Warning) => Status::Warning,
            Some(Severity::Alarm) => Status::Critical,
        }
    }
}

/// Counts for the ten-second summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub alarms: u64,
    pub warnings: u64,
    pub open: u64,
    /// Events per check name.
    pub by_check: BTreeMap<String, u64>,
}

impl Summary {
    pub fn of(events: &[HealthEvent]) -> Summary {
        let mut s = Summary::default();
        for e in events {
            match e.severity {
                Severity::Alarm => s.alarms += 1,
                Severity::Warning => s.warnings += 1,
            }
            s.open += e.end_obt_ns.is_none() as u64;
            *s.by_check.entry(e.check.clone()).or_default() += 1;
        }
        s
    }
}

/// Housekeeping part of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HkReport {
    pub stats: HkStats,
    /// Samples checked over all runs.
    pub samples_checked_total: u64,
    pub first_obt_ns: Option<u64>,
    pub end_of_data_ns: Option<u64>,
    /// Database parameters with no sample in the checked span so far.
    pub never_reported: Vec<String>,
}

/// Everything one run found; serialised as `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub status: Status,
    pub exit_code: u8,
    pub summary: Summary,
    /// Parts with no input, so not evaluated (named so a quiet report is not
    /// mistaken for a healthy payload).
    pub not_evaluated: Vec<String>,
    pub events: Vec<HealthEvent>,
    pub hk: HkReport,
    pub science: Vec<ScienceBin>,
    pub completeness: Vec<HourCompleteness>,
}

impl HealthReport {
    /// Builds the report; `events` must already be sorted.
    pub fn new(
        events: Vec<HealthEvent>,
        hk: HkReport,
        science: Vec<ScienceBin>,
        completeness: Vec<HourCompleteness>,
        not_evaluated: Vec<String>,
    ) -> Self {
        let status = Status::of_events(&events);
        HealthReport {
            status,
            exit_code: status.exit_code(),
            summary: Summary::of(&events),
            not_evaluated,
            events,
            hk,
            science,
            completeness,
        }
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("report serialises");
        v.push(b'\n');
        v
    }

    /// The Prometheus text exposition (see the module docs).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {}", prom_value(*v));
            }
        };
        metric(
            "meridian_health_status",
            "gauge",
            "Overall payload health: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            &[(String::new(), self.exit_code as f64)],
        );
        let mut by: BTreeMap<(String, &str), u64> = BTreeMap::new();
        let mut open: BTreeMap<&str, u64> = BTreeMap::from([("alarm", 0), ("warning", 0)]);
        for e in &self.events {
            let sev = severity_name(e.severity);
            *by.entry((e.check.clone(), sev)).or_default() += 1;
            if e.end_obt_ns.is_none() {
                *open.entry(sev).or_default() += 1;
            }
        }
        let rows: Vec<_> = by
            .iter()
            .map(|((c, s), n)| (format!("{{check=\"{c}\",severity=\"{s}\"}}"), *n as f64))
            .collect();
        metric(
            "meridian_health_events",
            "gauge",
            "Health events reported by the last run, by check and severity.",
            &rows,
        );
        let rows: Vec<_> = open
            .iter()
            .map(|(s, n)| (format!("{{severity=\"{s}\"}}"), *n as f64))
            .collect();
        metric(
            "meridian_health_open_events",
            "gauge",
            "Health events still open at the end of the data.",
            &rows,
        );
        if self.hk.end_of_data_ns.is_some() {
            let hk = &self.hk;
            metric(
                "meridian_hk_samples_checked_total",
                "counter",
                "Housekeeping samples checked over all runs.",
                &[(String::new(), hk.samples_checked_total as f64)],
            );
            metric(
                "meridian_hk_late_samples",
                "gauge",
                "Housekeeping samples of the last run older than data already checked.",
                &[(String::new(), hk.stats.late as f64)],
            );
            metric(
                "meridian_hk_unknown_records",
                "gauge",
                "Housekeeping records of the last run naming no database parameter.",
                &[(String::new(), hk.stats.unknown as f64)],
            );
            metric(
                "meridian_hk_end_of_data_obt_seconds",
                "gauge",
                "Latest housekeeping packet time, OBT seconds.",
                &[(String::new(), hk.end_of_data_ns.unwrap_or(0) as f64 / 1e9)],
            );
        }
        self.science_metrics(&mut metric);
        let mut per_apid: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
        for h in &self.completeness {
            let e = per_apid.entry(h.apid).or_default();
            e.0 += h.received;
            e.1 += h.missing;
        }
        let rows: Vec<_> = per_apid
            .iter()
            .filter(|(_, (r, m))| r + m > 0)
            .map(|(a, (r, m))| {
                (
                    format!("{{apid=\"{}\"}}", &apid_param(*a)[5..]),
                    *r as f64 / (r + m) as f64,
                )
            })
            .collect();
        if !rows.is_empty() {
            metric(
                "meridian_data_completeness",
                "gauge",
                "Packets received / (received + missing) per APID over the last run.",
                &rows,
            );
        }
        out
    }

    fn science_metrics(&self, metric: &mut impl FnMut(&str, &str, &str, &[(String, f64)])) {
        if self.science.is_empty() {
            return;
        }
        let mut rows: [Vec<(String, f64)>; 4] = Default::default();
        for fov in [0u8, 1] {
            let bins: Vec<&ScienceBin> = self.science.iter().filter(|b| b.fov == fov).collect();
            if bins.is_empty() {
                continue;
            }
            let label = format!("{{fov=\"{fov}\"}}");
            let transits: u64 = bins.iter().map(|b| b.transits).sum();
            let positioned: u64 = bins.iter().map(|b| b.positioned).sum();
            let matched: u64 = bins.iter().map(|b| b.matched).sum();
            rows[0].push((label.clone(), transits as f64));
            if positioned > 0 {
                rows[1].push((label.clone(), matched as f64 / positioned as f64));
            }
            let mut al: Vec<f64> = bins.iter().filter_map(|b| b.median_al_mas).collect();
            let mut ac: Vec<f64> = bins.iter().filter_map(|b| b.median_ac_mas).collect();
            if let Some(m) = crate::science::median_of(&mut al) {
                rows[2].push((label.clone(), m));
            }
            if let Some(m) = crate::science::median_of(&mut ac) {
                rows[3].push((label, m));
            }
        }
        let names = [
            (
                "meridian_science_transits",
                "Transits in the last run, per field of view.",
            ),
            (
                "meridian_science_match_rate",
                "Matched / positioned transits over the last run, per field of view.",
            ),
            (
                "meridian_science_residual_al_median_mas",
                "Median of the per-bin median along-scan residuals, mas.",
            ),
            (
                "meridian_science_residual_ac_median_mas",
                "Median of the per-bin median across-scan residuals, mas.",
            ),
        ];
        for ((name, help), rows) in names.iter().zip(&rows) {
            if !rows.is_empty() {
                metric(name, "gauge", help, rows);
            }
        }
    }
}

pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Warning => "warning",
        Severity::Alarm => "alarm",
    }
}

/// Prometheus float text (`NaN`, `+Inf`, `-Inf` spelled its way).
fn prom_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}
