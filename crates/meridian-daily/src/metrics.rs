//! Prometheus text-format metrics of a daily run, for a node-exporter textfile
//! collector. Names (all gauges, labels where noted):
//!
//! | metric | meaning |
//! |---|---|
//! | `meridian_daily_last_run_timestamp_seconds` | Unix time the run finished |
//! | `meridian_daily_run_seconds` | wall time of the run |
//! | `meridian_daily_peak_rss_bytes` | peak resident memory of the run |
//! | `meridian_daily_stage_seconds{stage}` | wall time per stage |
//! | `meridian_daily_stage_peak_rss_bytes{stage}` | peak resident memory per stage |
//! | `meridian_daily_stage_cpu_seconds{stage}` | CPU time (all threads) per stage |
//! | `meridian_daily_deliveries{state="found"/"new"/"failed"}` | deliveries |
//! | `meridian_daily_input_bytes` | bytes of delivery files decoded this run |
//! | `meridian_daily_chunks{status}` | chunks by status |
//! | `meridian_daily_gaps` | sequence gaps known |
//! | `meridian_daily_transits` / `meridian_daily_transits_matched` | cross-match counts |
//! | `meridian_daily_match_rate` | matched / transits with a position |
//! | `meridian_daily_health_status` | 0 OK, 1 WARNING, 2 CRITICAL |
//! | `meridian_daily_health_events` | health events |

use crate::run::RunManifest;
use std::fmt::Write;

pub fn render(m: &RunManifest) -> String {
    let c = &m.closing;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    gauge(
        "meridian_daily_last_run_timestamp_seconds",
        "Unix time the last daily run finished.",
        &[("", now)],
    );
    gauge(
        "meridian_daily_run_seconds",
        "Wall time of the last daily run.",
        &[("", m.total_seconds)],
    );
    if let Some(p) = m.peak_rss_bytes {
        gauge(
            "meridian_daily_peak_rss_bytes",
            "Peak resident memory of the last run.",
            &[("", p as f64)],
        );
    }
    let labels: Vec<String> = m
        .stages
        .iter()
        .map(|s| format!("{{stage=\"{}\"}}", s.stage))
        .collect();
    let seconds: Vec<(&str, f64)> = m
        .stages
        .iter()
        .zip(&labels)
        .map(|(s, l)| (l.as_str(), s.seconds))
        .collect();
    gauge(
        "meridian_daily_stage_seconds",
        "Wall time per stage of the last run.",
        &seconds,
    );
    let rss: Vec<(&str, f64)> = m
        .stages
        .iter()
        .zip(&labels)
        .filter_map(|(s, l)| s.peak_rss_bytes.map(|p| (l.as_str(), p as f64)))
        .collect();
    gauge(
        "meridian_daily_stage_peak_rss_bytes",
        "Peak resident memory per stage of the last run.",
        &rss,
    );
    let cpu: Vec<(&str, f64)> = m
        .stages
        .iter()
        .zip(&labels)
        .filter_map(|(s, l)| s.cpu_seconds.map(|c| (l.as_str(), c)))
        .collect();
    gauge(
        "meridian_daily_stage_cpu_seconds",
        "CPU time (user + system, all threads) per stage of the last run.",
        &cpu,
    );
    gauge(
        "meridian_daily_deliveries",
        "Deliveries seen by the last run.",
        &[
            ("{state=\"found\"}", c.deliveries_found as f64),
            ("{state=\"new\"}", c.deliveries_new as f64),
            ("{state=\"failed\"}", c.deliveries_failed as f64),
        ],
    );
    gauge(
        "meridian_daily_input_bytes",
        "Bytes of delivery files read by the last run.",
        &[("", c.input_bytes as f64)],
    );
    gauge(
        "meridian_daily_chunks",
        "Time-ordered chunks by status.",
        &[
            ("{status=\"complete\"}", c.chunks_complete as f64),
            ("{status=\"provisional\"}", c.chunks_provisional as f64),
            ("{status=\"final\"}", c.chunks_final as f64),
        ],
    );
    gauge(
        "meridian_daily_gaps",
        "Packet sequence gaps known.",
        &[("", c.gaps as f64)],
    );
    gauge(
        "meridian_daily_transits",
        "Transits cross-matched.",
        &[("", c.transits as f64)],
    );
    gauge(
        "meridian_daily_transits_matched",
        "Transits matched to a catalogue source.",
        &[("", c.transits_matched as f64)],
    );
    if let Some(r) = c.match_rate {
        gauge(
            "meridian_daily_match_rate",
            "Matched fraction of transits with a position.",
            &[("", r)],
        );
    }
    let status = match c.health_status.as_str() {
        "OK" => 0.0,
        "WARNING" => 1.0,
        _ => 2.0,
    };
    gauge(
        "meridian_daily_health_status",
        "Payload health: 0 OK, 1 WARNING, 2 CRITICAL.",
        &[("", status)],
    );
    gauge(
        "meridian_daily_health_events",
        "Health events reported.",
        &[("", c.health_events as f64)],
    );
    out
}
