//! A reference ICD §6 checker for tests, written independently of the
//! simulator's own derivation of the expected events: it runs every check of
//! every parameter over all samples.

use meridian_core::records::{Severity, Value};
use meridian_sim::hk::TruthEvent;
use meridian_sim::{GeneratedPacket, PacketContent};
use meridian_telemetry::mission_db::{MissionDb, Param, Structure};
use std::collections::BTreeMap;

/// Samples of one parameter: time, raw, and the row of its structure.
struct Series<'a> {
    structure: &'a Structure,
    param: &'a Param,
    pos: usize,
    rows: Vec<(u64, Vec<f64>)>,
}

/// Reports of each structure: sid → time-ordered (time, raw values).
pub type Rows = BTreeMap<u16, Vec<(u64, Vec<f64>)>>;

/// The rows of generated housekeeping packets.
#[allow(dead_code)]
pub fn rows_of_packets(packets: &[GeneratedPacket]) -> Rows {
    let mut rows = Rows::new();
    for p in packets {
        if let PacketContent::Housekeeping { sid, raw } = &p.content {
            rows.entry(*sid).or_default().push((p.obt_ns, raw.clone()));
        }
    }
    rows
}

/// ICD §6 reference checker over the complete, time-ordered samples.
pub fn reference_events(db: &MissionDb, all_rows: &Rows, end_of_data: u64) -> Vec<TruthEvent> {
    let mut out = Vec::new();
    for s in &db.structures {
        let rows = all_rows.get(&s.sid).cloned().unwrap_or_default();
        for (pos, param) in s.params.iter().enumerate() {
            let series = Series {
                structure: s,
                param,
                pos,
                rows: rows.clone(),
            };
            check_param(&series, end_of_data, &mut out);
        }
    }
    out.sort_by(|x, y| {
        (x.start_obt_ns, &x.param, &x.check).cmp(&(y.start_obt_ns, &y.param, &y.check))
    });
    out
}

fn event(
    p: &Param,
    check: &str,
    severity: Severity,
    start: u64,
    end: Option<u64>,
    worst: Value,
    samples: u64,
) -> TruthEvent {
    TruthEvent {
        param: p.name.clone(),
        check: check.into(),
        severity,
        start_obt_ns: start,
        end_obt_ns: end,
        worst,
        samples,
        anomaly: String::new(),
    }
}

fn check_param(s: &Series, end_of_data: u64, out: &mut Vec<TruthEvent>) {
    let p = s.param;
    let persistence = p.persistence as usize;
    let value = |row: &[f64]| p.calibration.apply(row[s.pos]);
    // limit / state: same episode machine, different "bad" test.
    let limits = |row: &[f64]| {
        for c in &p.contexts {
            let ci = s
                .structure
                .params
                .iter()
                .position(|q| q.name == c.param)
                .unwrap();
            if c.equals
                .matches(&s.structure.params[ci].calibration.apply(row[ci]))
            {
                return (c.warning.or(p.warning), c.alarm.or(p.alarm));
            }
        }
        (p.warning, p.alarm)
    };
    let checks_limits = p.warning.is_some() || p.expected.is_some();
    if checks_limits {
        let is_state = p.expected.is_some();
        let mut run: Vec<usize> = Vec::new(); // consecutive bad samples not yet an episode
        let mut episode: Option<(Vec<usize>, usize)> = None; // (bad samples, good run)
        let close = |bad: &[usize], end: Option<u64>, out: &mut Vec<TruthEvent>| {
            let t0 = s.rows[bad[0]].0;
            if is_state {
                out.push(event(
                    p,
                    "state",
                    Severity::Alarm,
                    t0,
                    end,
                    value(&s.rows[bad[0]].1),
                    bad.len() as u64,
                ));
            } else {
                let eng = |i: usize| value(&s.rows[i].1).as_number().unwrap();
                let worst = *bad
                    .iter()
                    .max_by(|&&a, &&b| {
                        let ea = limits(&s.rows[a].1).0.unwrap().excess(eng(a));
                        let eb = limits(&s.rows[b].1).0.unwrap().excess(eng(b));
                        ea.total_cmp(&eb)
                    })
                    .unwrap();
                let alarm = bad
                    .iter()
                    .any(|&i| limits(&s.rows[i].1).1.is_some_and(|a| !a.contains(eng(i))));
                let sev = if alarm {
                    Severity::Alarm
                } else {
                    Severity::Warning
                };
                out.push(event(
                    p,
                    "limit",
                    sev,
                    t0,
                    end,
                    Value::Number(eng(worst)),
                    bad.len() as u64,
                ));
            }
        };
        let mut good_start = 0;
        for (i, (_, row)) in s.rows.iter().enumerate() {
            let bad = if is_state {
                !matches!(value(row), Value::State(n) if p.expected.as_ref().unwrap().contains(&n))
            } else {
                limits(row)
                    .0
                    .is_some_and(|w| !w.contains(value(row).as_number().unwrap()))
            };
            match &mut episode {
                None if bad => {
                    run.push(i);
                    if run.len() >= persistence {
                        episode = Some((std::mem::take(&mut run), 0));
                    }
                }
                None => run.clear(),
                Some((samples, good)) if bad => {
                    samples.push(i);
                    *good = 0;
                }
                Some((samples, good)) => {
                    if *good == 0 {
                        good_start = i;
                    }
                    *good += 1;
                    if *good >= persistence {
                        let samples = std::mem::take(samples);
                        close(&samples, Some(s.rows[good_start].0), out);
                        episode = None;
                    }
                }
            }
        }
        if let Some((samples, _)) = episode {
            close(&samples, None, out);
        }
    }
    if let Some(delta) = p.delta {
        let eng = |i: usize| value(&s.rows[i].1).as_number().unwrap();
        let mut i = 1;
        while i < s.rows.len() {
            if (eng(i) - eng(i - 1)).abs() > delta {
                let first = i;
                let mut worst = eng(i) - eng(i - 1);
                while i + 1 < s.rows.len() && (eng(i + 1) - eng(i)).abs() > delta {
                    i += 1;
                    let c = eng(i) - eng(i - 1);
                    if c.abs() > worst.abs() {
                        worst = c;
                    }
                }
                out.push(event(
                    p,
                    "delta",
                    Severity::Warning,
                    s.rows[first - 1].0,
                    Some(s.rows[i].0),
                    Value::Number(worst),
                    (i - first + 1) as u64,
                ));
            }
            i += 1;
        }
    }
    if let Some(stale_s) = p.stale_s {
        for w in s.rows.windows(2) {
            let gap = (w[1].0 - w[0].0) as f64 / 1e9;
            if gap > stale_s {
                out.push(event(
                    p,
                    "stale",
                    Severity::Warning,
                    w[0].0,
                    Some(w[1].0),
                    Value::Number(gap),
                    0,
                ));
            }
        }
        if let Some(last) = s.rows.last() {
            let gap = (end_of_data - last.0) as f64 / 1e9;
            if gap > stale_s {
                out.push(event(
                    p,
                    "stale",
                    Severity::Warning,
                    last.0,
                    None,
                    Value::Number(gap),
                    0,
                ));
            }
        }
    }
    if let Some(frozen_s) = p.frozen_s {
        let mut i = 0;
        while i < s.rows.len() {
            let mut j = i;
            while j + 1 < s.rows.len() && s.rows[j + 1].1[s.pos] == s.rows[i].1[s.pos] {
                j += 1;
            }
            if (s.rows[j].0 - s.rows[i].0) as f64 / 1e9 > frozen_s {
                let end = s.rows.get(j + 1).map(|r| r.0);
                out.push(event(
                    p,
                    "frozen",
                    Severity::Warning,
                    s.rows[i].0,
                    end,
                    value(&s.rows[i].1),
                    (j - i + 1) as u64,
                ));
            }
            i = j + 1;
        }
    }
}

/// Asserts that events read back from JSON equal the reference events; `worst`
/// numbers may differ by rounding (serde_json's default float parser is not
/// correctly rounded: it may be off by an ulp).
#[allow(dead_code)]
pub fn assert_same_events(from_json: &[TruthEvent], reference: &[TruthEvent]) {
    assert_eq!(
        from_json.len(),
        reference.len(),
        "{from_json:?}\n{reference:?}"
    );
    for (a, b) in from_json.iter().zip(reference) {
        let close = match (&a.worst, &b.worst) {
            (Value::Number(x), Value::Number(y)) => (x - y).abs() <= 1e-12 * y.abs().max(1.0),
            (x, y) => x == y,
        };
        assert!(close, "worst differs: {a:?} vs {b:?}");
        let strip = |e: &TruthEvent| TruthEvent {
            worst: Value::Number(0.0),
            anomaly: String::new(),
            ..e.clone()
        };
        assert_eq!(strip(a), strip(b));
    }
}
