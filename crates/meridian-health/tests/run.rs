//! Whole runs on the synthetic demo day: every injected anomaly reported with the
//! right parameter, check, severity and time, and nothing else; re-runs and
//! continued runs.

use meridian_core::product::read_all;
use meridian_core::records::{HealthEvent, Severity};
use meridian_health::run::{self, HealthConfig, RunOptions};
use meridian_health::synth::{DEMO_HK_EVENTS, DEMO_START_NS, write_demo_inputs};
use meridian_health::{HealthReport, Status};
use std::path::Path;

const S: u64 = 1_000_000_000;

fn options(paths: &meridian_health::synth::DemoPaths, out: &Path) -> RunOptions {
    RunOptions {
        db: paths.db.clone(),
        inputs: vec![paths.ordered.clone(), paths.located.clone()],
        out: out.to_owned(),
        config: HealthConfig::default(),
        state: None,
    }
}

fn rel(t: u64) -> u64 {
    (t - DEMO_START_NS) / S
}

fn sev(e: &HealthEvent) -> &'static str {
    match e.severity {
        Severity::Warning => "warning",
        Severity::Alarm => "alarm",
    }
}

#[test]
fn the_demo_day_reports_exactly_its_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_demo_inputs(dir.path(), 7.0, 0.05).unwrap();
    let out = dir.path().join("out");
    let outcome = run::run(&options(&paths, &out)).unwrap();
    let r: &HealthReport = &outcome.report;
    let hk: Vec<&HealthEvent> = r
        .events
        .iter()
        .filter(|e| ["limit", "state", "delta", "stale", "frozen"].contains(&e.check.as_str()))
        .collect();
    // Recall: every expected event is there; precision: nothing else.
    assert_eq!(hk.len(), DEMO_HK_EVENTS.len(), "{hk:#?}");
    for (param, check, severity, start, end) in DEMO_HK_EVENTS {
        let found = hk.iter().find(|e| {
            e.param == param
                && e.check == check
                && sev(e) == severity
                && e.end_obt_ns.map(rel) == Some(end)
                && (start == 0 || rel(e.start_obt_ns) == start)
        });
        let e = found.unwrap_or_else(|| panic!("missing {param} {check}: {hk:#?}"));
        if start == 0 {
            // The FPA crosses 170 K 500 to 1000 s into the heater failure.
            assert!((7700..8200).contains(&rel(e.start_obt_ns)), "{e:?}");
        }
    }
    let science: Vec<&HealthEvent> = r
        .events
        .iter()
        .filter(|e| e.param.starts_with("fov"))
        .collect();
    assert_eq!(science.len(), 2, "{science:#?}");
    for (fov, e) in science.iter().enumerate() {
        // The hit is at 12240 s: the bin [12000, 12600) of both fields of view.
        assert_eq!(e.param, format!("fov{fov}"));
        assert_eq!(e.check, "residual_al_outliers");
        assert_eq!(
            (rel(e.start_obt_ns), e.end_obt_ns.map(rel)),
            (12_000, Some(12_600))
        );
    }
    let data: Vec<&HealthEvent> = r
        .events
        .iter()
        .filter(|e| e.param.starts_with("apid"))
        .collect();
    assert_eq!(data.len(), 1);
    assert_eq!(
        (data[0].param.as_str(), data[0].check.as_str()),
        ("apid_0x101", "completeness")
    );
    assert_eq!(
        (rel(data[0].start_obt_ns), data[0].end_obt_ns.map(rel)),
        (3600, Some(7200))
    );
    assert_eq!(data[0].samples, 200);
    assert_eq!(r.events.len(), 11);
    assert_eq!(r.status, Status::Critical);
    assert_eq!(r.exit_code, 2);

    // Products: the event file holds the same events.
    let stored: Vec<HealthEvent> = read_all(out.join(run::EVENTS_FILE)).unwrap();
    assert_eq!(format!("{stored:?}"), format!("{:?}", r.events));
    let metrics = std::fs::read_to_string(out.join(run::METRICS_FILE)).unwrap();
    assert!(metrics.contains("meridian_health_status 2\n"), "{metrics}");
    assert!(metrics.contains("meridian_health_events{check=\"limit\",severity=\"alarm\"} 2\n"));
    assert!(metrics.contains("meridian_data_completeness{apid=\"0x101\"}"));
    // Text exposition format: HELP and TYPE before each family, then samples.
    let mut declared = std::collections::BTreeSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(kind == "gauge" || kind == "counter", "{line}");
            declared.insert(name.to_owned());
        } else if !line.starts_with("# HELP meridian_") {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(
                name.starts_with("meridian_") && declared.contains(name),
                "{line}"
            );
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{line}"
            );
            assert!(value.parse::<f64>().is_ok(), "{line}");
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line}"
                );
            }
        }
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(run::REPORT_JSON)).unwrap()).unwrap();
    assert_eq!(json["status"], "CRITICAL");
    assert_eq!(json["events"].as_array().unwrap().len(), 11);

    // A re-run over the same inputs writes the same bytes.
    let names = [
        run::EVENTS_FILE,
        run::REPORT_JSON,
        run::REPORT_HTML,
        run::METRICS_FILE,
        run::STATE_FILE,
    ];
    let first: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(out.join(n)).unwrap())
        .collect();
    let again = run::run(&options(&paths, &out)).unwrap();
    assert!(again.resumed);
    for (n, bytes) in names.iter().zip(&first) {
        assert_eq!(
            &std::fs::read(out.join(n)).unwrap(),
            bytes,
            "{n} differs on re-run"
        );
    }
}

#[test]
fn an_event_open_at_the_end_of_a_run_closes_in_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Day one ends during the heater failure; the delivery of day two holds the rest.
    let early = write_demo_inputs(&dir.path().join("a"), 2.25, 0.0).unwrap();
    let mut opts = options(&early, &out);
    opts.inputs = vec![early.ordered.clone()];
    let first = run::run(&opts).unwrap().report;
    let open: Vec<&HealthEvent> = first
        .events
        .iter()
        .filter(|e| e.end_obt_ns.is_none())
        .collect();
    assert_eq!(open.len(), 2, "{open:#?}");
    assert!(
        open.iter()
            .any(|e| e.param == "HTR_CURRENT" && rel(e.start_obt_ns) == 7200)
    );
    assert!(first.not_evaluated.iter().any(|s| s.starts_with("science")));

    let full = write_demo_inputs(&dir.path().join("b"), 3.0, 0.0).unwrap();
    opts.inputs = vec![full.ordered.clone()];
    let second = run::run(&opts).unwrap();
    assert!(second.already_checked > 0);
    let e = second
        .report
        .events
        .iter()
        .find(|e| e.param == "HTR_CURRENT")
        .expect("continued event");
    assert_eq!(
        (rel(e.start_obt_ns), e.end_obt_ns.map(rel)),
        (7200, Some(9000))
    );
    assert_eq!(e.samples, 1800);
    // Nothing is reported twice within the second run, and nothing was late.
    assert_eq!(second.report.hk.stats.late, 0);
}

#[test]
fn missing_or_bad_input_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_demo_inputs(dir.path(), 0.1, 0.0).unwrap();
    let out = dir.path().join("out");
    let mut opts = options(&paths, &out);
    opts.inputs = vec![paths.located.clone()];
    let e = run::run(&opts).unwrap_err().to_string();
    assert!(e.contains("no housekeeping"), "{e}");
    opts.inputs = vec![dir.path().join("nowhere")];
    let e = run::run(&opts).unwrap_err().to_string();
    assert!(e.contains("nowhere"), "{e}");
    // A corrupted chunk is named.
    let chunk = std::fs::read_dir(paths.ordered.join("chunks/hk"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&chunk).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&chunk, bytes).unwrap();
    opts.inputs = vec![paths.ordered.clone()];
    let e = run::run(&opts).unwrap_err().to_string();
    assert!(e.contains(&chunk.display().to_string()), "{e}");
}
