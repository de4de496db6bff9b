//! Every ICD §6 housekeeping check on hand-made samples, edges included.

use meridian_core::records::{HealthEvent, Hk, Severity, Value};
use meridian_health::hk::{CheckerState, HkChecker, HkOutcome};
use meridian_telemetry::MissionDb;
use proptest::prelude::*;
use std::path::Path;

const DB: &str = r#"
[[structure]]
sid = 1
name = "THERMAL"

[[structure.param]]
name = "FPA_TEMP_1"
type = "u16"
unit = "K"
calibration = { polynomial = [100.0, 0.01] }
warning = [160.0, 170.0]
alarm   = [155.0, 175.0]
persistence = 3

[[structure.param.context]]
when = { param = "HTR_MODE", equals = "ECO" }
warning = [150.0, 170.0]
alarm   = [145.0, 175.0]

[[structure.param]]
name = "HTR_MODE"
type = "u8"
calibration = { states = { 0 = "OFF", 1 = "NOMINAL", 2 = "ECO" } }
expected = ["NOMINAL", "ECO"]

[[structure]]
sid = 2
name = "MISC"

[[structure.param]]
name = "BUS_V"
type = "f32"
unit = "V"
warning = { low = 27.0 }
delta = 0.5

[[structure.param]]
name = "GYRO"
type = "i16"
stale_s = 10.0
frozen_s = 5.0

[[structure.param]]
name = "SPARE"
type = "u8"
stale_s = 30.0
"#;

fn db() -> MissionDb {
    MissionDb::parse(DB, Path::new("test.toml")).unwrap()
}

const S: u64 = 1_000_000_000;

fn hk(db: &MissionDb, t_s: u64, param: &str, raw: f64) -> Hk {
    let p = db.param(param).unwrap();
    Hk {
        obt_ns: t_s * S,
        sid: 0,
        param: param.into(),
        raw,
        eng: p.calibration.apply(raw),
        seq: 0,
        packet_obt_ns: t_s * S,
        packet_hash: 0,
    }
}

/// FPA_TEMP_1 raw for an engineering value in K.
fn kelvin(k: f64) -> f64 {
    (k - 100.0) * 100.0
}

fn run(db: &MissionDb, records: &[Hk]) -> Vec<HealthEvent> {
    let mut c = HkChecker::new(db, None);
    c.feed(records);
    c.finish().events()
}

fn only(events: &[HealthEvent], check: &str) -> Vec<HealthEvent> {
    events
        .iter()
        .filter(|e| e.check == check)
        .cloned()
        .collect()
}

fn temps(db: &MissionDb, values_k: &[f64]) -> Vec<Hk> {
    values_k
        .iter()
        .enumerate()
        .map(|(i, &v)| hk(db, i as u64, "FPA_TEMP_1", kelvin(v)))
        .collect()
}

#[test]
fn limit_needs_exactly_persistence_violations() {
    let db = db();
    // Two violations then good: shorter than persistence, no event.
    let short = temps(&db, &[165.0, 171.0, 172.0, 165.0, 165.0, 165.0]);
    assert!(run(&db, &short).is_empty());
    // Exactly three: an event from the first violation; it closes at the first of
    // three good samples, a good run of two interrupted by a violation does not count.
    let three = temps(
        &db,
        &[
            165.0, 171.0, 172.0, 171.5, 165.0, 165.0, 171.0, 165.0, 165.0, 165.0, 165.0,
        ],
    );
    let ev = run(&db, &three);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    assert_eq!(
        (e.param.as_str(), e.check.as_str()),
        ("FPA_TEMP_1", "limit")
    );
    assert_eq!(e.severity, Severity::Warning);
    assert_eq!(e.start_obt_ns, S);
    assert_eq!(e.end_obt_ns, Some(7 * S));
    assert_eq!(e.samples, 4);
    assert_eq!(e.worst, Value::Number(172.0));
}

#[test]
fn limits_are_inclusive_and_alarm_raises_severity() {
    let db = db();
    assert!(run(&db, &temps(&db, &[170.0, 170.0, 160.0, 160.0, 160.0])).is_empty());
    // Low side, one sample beyond the alarm limit: worst is farthest below 160.
    let ev = run(
        &db,
        &temps(&db, &[165.0, 158.0, 154.0, 159.0, 165.0, 165.0, 165.0]),
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].severity, Severity::Alarm);
    assert_eq!(ev[0].worst, Value::Number(154.0));
    assert_eq!(ev[0].samples, 3);
    assert_eq!(ev[0].end_obt_ns, Some(4 * S));
}

#[test]
fn context_switching_mid_excursion_changes_the_limits_in_force() {
    let db = db();
    let mut r = vec![hk(&db, 0, "HTR_MODE", 1.0)];
    // 155 K: outside the default [160, 170], inside the ECO [150, 170].
    for t in 1..=4 {
        r.push(hk(&db, t, "FPA_TEMP_1", kelvin(155.0)));
    }
    // The mode changes in the same packet as a temperature sample: the context is
    // evaluated with the value at or before the sample time, so t = 5 is in ECO.
    r.push(hk(&db, 5, "HTR_MODE", 2.0));
    for t in 5..=8 {
        r.push(hk(&db, t, "FPA_TEMP_1", kelvin(155.0)));
    }
    r.sort_by_key(|h| (h.obt_ns, h.param.clone()));
    let ev = run(&db, &r);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].start_obt_ns, S);
    assert_eq!(ev[0].end_obt_ns, Some(5 * S));
    assert_eq!(ev[0].samples, 4);
    assert_eq!(ev[0].severity, Severity::Warning);
    assert_eq!(ev[0].worst, Value::Number(155.0));

    // The other way round: 152 K is fine in ECO and violates once NOMINAL.
    let mut r = vec![hk(&db, 0, "HTR_MODE", 2.0), hk(&db, 3, "HTR_MODE", 1.0)];
    for t in 0..=6 {
        r.push(hk(&db, t, "FPA_TEMP_1", kelvin(152.0)));
    }
    r.sort_by_key(|h| (h.obt_ns, h.param.clone()));
    let ev = run(&db, &r);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].start_obt_ns, 3 * S);
    assert_eq!(ev[0].end_obt_ns, None);
    assert_eq!(ev[0].samples, 4);
    assert_eq!(ev[0].severity, Severity::Alarm);
}

#[test]
fn state_check_reports_the_first_unexpected_state() {
    let db = db();
    let r: Vec<Hk> = [1.0, 0.0, 7.0, 0.0, 1.0, 2.0]
        .iter()
        .enumerate()
        .map(|(t, &raw)| hk(&db, t as u64, "HTR_MODE", raw))
        .collect();
    let ev = run(&db, &r);
    assert_eq!(ev.len(), 1);
    let e = &ev[0];
    assert_eq!(e.check, "state");
    assert_eq!(e.severity, Severity::Alarm);
    assert_eq!(e.worst, Value::State("OFF".into()));
    assert_eq!(
        (e.start_obt_ns, e.end_obt_ns, e.samples),
        (S, Some(4 * S), 3)
    );
    // An out-of-range raw value is a state with no name: never expected.
    let ev = run(&db, &[hk(&db, 0, "HTR_MODE", 200.0)]);
    assert_eq!(ev[0].worst, Value::State("UNDEFINED(200)".into()));
    assert_eq!(ev[0].end_obt_ns, None);
}

#[test]
fn delta_groups_consecutive_changes() {
    let db = db();
    let volts = [28.0, 28.5, 29.5, 28.0, 28.2, 28.0, 27.0, 27.0];
    let r: Vec<Hk> = volts
        .iter()
        .enumerate()
        .map(|(t, &v)| hk(&db, t as u64, "BUS_V", v))
        .collect();
    let ev = only(&run(&db, &r), "delta");
    // 28.0 → 28.5 is exactly 0.5: not a change. 28.5→29.5 (+1), 29.5→28.0 (−1.5):
    // one episode of two changes; 28.0→27.0 (−1.0) another, of one change.
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!((ev[0].start_obt_ns, ev[0].end_obt_ns), (S, Some(3 * S)));
    assert_eq!(ev[0].worst, Value::Number(-1.5));
    assert_eq!(ev[0].samples, 2);
    assert_eq!(ev[0].severity, Severity::Warning);
    assert_eq!((ev[1].start_obt_ns, ev[1].end_obt_ns), (5 * S, Some(6 * S)));
    assert_eq!(ev[1].samples, 1);
}

#[test]
fn stale_covers_gaps_the_end_of_data_and_parameters_that_never_report() {
    let db = db();
    let mut r = vec![];
    for t in [0, 10, 21, 22] {
        r.push(hk(&db, t, "GYRO", t as f64));
    }
    // Another parameter keeps the data going until t = 40.
    r.push(hk(&db, 40, "HTR_MODE", 1.0));
    r.sort_by_key(|h| h.obt_ns);
    let ev = only(&run(&db, &r), "stale");
    let gyro: Vec<_> = ev.iter().filter(|e| e.param == "GYRO").collect();
    // 0→10 is exactly stale_s (no event); 10→21 is 11 s; 22→end(40) is 18 s, open.
    assert_eq!(gyro.len(), 2, "{gyro:?}");
    assert_eq!(
        (gyro[0].start_obt_ns, gyro[0].end_obt_ns),
        (10 * S, Some(21 * S))
    );
    assert_eq!(gyro[0].worst, Value::Number(11.0));
    assert_eq!(gyro[0].samples, 0);
    assert_eq!((gyro[1].start_obt_ns, gyro[1].end_obt_ns), (22 * S, None));
    assert_eq!(gyro[1].worst, Value::Number(18.0));
    // SPARE never reports: stale from the start of the checked span (t = 0), 40 s.
    let spare: Vec<_> = ev.iter().filter(|e| e.param == "SPARE").collect();
    assert_eq!(spare.len(), 1);
    assert_eq!((spare[0].start_obt_ns, spare[0].end_obt_ns), (0, None));
    assert_eq!(spare[0].worst, Value::Number(40.0));
    assert!(
        spare[0].message.contains("never reported"),
        "{}",
        spare[0].message
    );
    // When it finally reports, the same episode closes.
    r.push(hk(&db, 41, "SPARE", 1.0));
    let ev = only(&run(&db, &r), "stale");
    let spare: Vec<_> = ev.iter().filter(|e| e.param == "SPARE").collect();
    assert_eq!(
        (spare[0].start_obt_ns, spare[0].end_obt_ns),
        (0, Some(41 * S))
    );
}

#[test]
fn frozen_needs_more_than_frozen_s_of_identical_raw_values() {
    let db = db();
    let series = |vals: &[(u64, f64)]| -> Vec<Hk> {
        vals.iter().map(|&(t, v)| hk(&db, t, "GYRO", v)).collect()
    };
    // Exactly 5 s identical: no event.
    assert!(
        only(
            &run(&db, &series(&[(0, 3.0), (5, 3.0), (6, 4.0)])),
            "frozen"
        )
        .is_empty()
    );
    let ev = only(
        &run(
            &db,
            &series(&[(0, 1.0), (1, 3.0), (4, 3.0), (7, 3.0), (8, 2.0), (9, 9.0)]),
        ),
        "frozen",
    );
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].start_obt_ns, ev[0].end_obt_ns), (S, Some(8 * S)));
    assert_eq!(
        (ev[0].samples, ev[0].worst.clone()),
        (3, Value::Number(3.0))
    );
    // Still identical at the end of the data: open.
    let ev = only(
        &run(&db, &series(&[(0, 3.0), (3, 3.0), (9, 3.0)])),
        "frozen",
    );
    assert_eq!(
        (ev[0].start_obt_ns, ev[0].end_obt_ns, ev[0].samples),
        (0, None, 3)
    );
}

#[test]
fn nan_violates_limits_and_breaks_delta_and_frozen() {
    let db = db();
    let nan = f64::NAN;
    let r: Vec<Hk> = [28.0, nan, 20.0, 28.0, 28.0]
        .iter()
        .enumerate()
        .map(|(t, &v)| hk(&db, t as u64, "BUS_V", v))
        .collect();
    let ev = run(&db, &r);
    let limit = only(&ev, "limit");
    assert_eq!(limit.len(), 1);
    // NaN and 20.0 violate; the finite one is the worst.
    assert_eq!(
        (limit[0].start_obt_ns, limit[0].end_obt_ns, limit[0].samples),
        (S, Some(3 * S), 2)
    );
    assert_eq!(limit[0].worst, Value::Number(20.0));
    // 28→NaN and NaN→20 are not changes; 20→28 is.
    let delta = only(&ev, "delta");
    assert_eq!(delta.len(), 1, "{delta:?}");
    assert_eq!(
        (delta[0].start_obt_ns, delta[0].end_obt_ns),
        (2 * S, Some(3 * S))
    );
    // A lone NaN: violating, worst NaN, and alarm-free because BUS_V has no alarm limits.
    let ev = only(&run(&db, &[hk(&db, 0, "BUS_V", nan)]), "limit");
    assert!(matches!(ev[0].worst, Value::Number(x) if x.is_nan()));
    assert_eq!(ev[0].severity, Severity::Warning);
    // NaN raw values never freeze.
    let g: Vec<Hk> = (0..20).map(|t| hk(&db, t, "GYRO", nan)).collect();
    assert!(only(&run(&db, &g), "frozen").is_empty());
    // NaN on a parameter with alarm limits raises the alarm.
    let ev = run(&db, &[0, 1, 2].map(|t| hk(&db, t, "FPA_TEMP_1", nan)));
    assert_eq!(ev[0].severity, Severity::Alarm);
}

#[test]
fn out_of_range_raw_values_are_checked_like_any_other() {
    let db = db();
    let ev = run(&db, &[0, 1, 2].map(|t| hk(&db, t, "FPA_TEMP_1", 1e12)));
    assert_eq!(ev[0].severity, Severity::Alarm);
    assert_eq!(ev[0].worst, Value::Number(100.0 + 1e10));
    let ev = run(&db, &[hk(&db, 0, "BUS_V", f64::NEG_INFINITY)]);
    assert_eq!(ev[0].worst, Value::Number(f64::NEG_INFINITY));
}

#[test]
fn an_event_open_at_the_end_of_a_run_continues_in_the_next() {
    let db = db();
    let all = temps(
        &db,
        &[165.0, 172.0, 172.0, 172.0, 176.0, 165.0, 165.0, 165.0],
    );
    let mut first = HkChecker::new(&db, None);
    first.feed(&all[..4]);
    let out1 = first.finish();
    assert_eq!(out1.events().len(), 1);
    assert_eq!(out1.events()[0].end_obt_ns, None);
    assert_eq!(out1.events()[0].severity, Severity::Warning);
    let json = serde_json::to_string(&out1.state).unwrap();
    let state: CheckerState = serde_json::from_str(&json).unwrap();
    let mut second = HkChecker::new(&db, Some(state));
    second.feed(&all[4..]);
    let out2 = second.finish();
    assert_eq!(out2.events(), run(&db, &all));
    assert_eq!(out2.events()[0].start_obt_ns, S);
    assert_eq!(out2.events()[0].end_obt_ns, Some(5 * S));
    assert_eq!(out2.events()[0].severity, Severity::Alarm);
}

#[test]
fn late_and_unknown_records_are_counted_not_checked() {
    let db = db();
    let mut c = HkChecker::new(&db, None);
    let mut stray = hk(&db, 5, "BUS_V", 28.0);
    stray.param = "NOPE".into();
    c.feed(&[hk(&db, 3, "BUS_V", 28.0), hk(&db, 4, "BUS_V", 28.0), stray]);
    c.feed(&[
        hk(&db, 2, "BUS_V", 1.0),
        hk(&db, 4, "GYRO", 1.0),
        hk(&db, 3, "GYRO", 1.0),
    ]);
    let out = c.finish();
    assert_eq!(out.stats.late, 2);
    assert_eq!(out.stats.unknown, 1);
    assert_eq!(out.stats.samples_checked, 3);
    assert!(only(&out.events(), "limit").is_empty());
    // The unknown record still counts as received: end of data is t = 5.
    assert_eq!(out.state.end_of_data_ns, Some(5 * S));
}

/// Random data touching every check, for the split property. A parameter has at
/// most one sample per time (as in ordered chunks, where one packet per structure
/// and time survives), so `(param, check, start)` identifies an episode.
fn arbitrary_day(db: &MissionDb, picks: &[(u8, u8, u8)]) -> Vec<Hk> {
    let names = ["FPA_TEMP_1", "HTR_MODE", "BUS_V", "GYRO", "SPARE"];
    let mut t = 0;
    let mut out = Vec::new();
    for &(step, which, v) in picks {
        t += (step % 8) as u64;
        let name = names[which as usize % names.len()];
        let raw = match name {
            "FPA_TEMP_1" => kelvin(150.0 + (v % 30) as f64),
            "HTR_MODE" => (v % 4) as f64,
            "BUS_V" if v == 255 => f64::NAN,
            "BUS_V" => 26.0 + (v % 6) as f64 * 0.4,
            _ => (v % 3) as f64,
        };
        if !out
            .iter()
            .any(|h: &Hk| h.obt_ns == t * S && h.param == name)
        {
            out.push(hk(db, t, name, raw));
        }
    }
    out
}

/// Runs `data` in two runs split after `k` records, the state going through JSON.
fn split_runs(db: &MissionDb, data: &[Hk], k: usize) -> (HkOutcome, HkOutcome) {
    let mut a = HkChecker::new(db, None);
    a.feed(&data[..k]);
    let first = a.finish();
    let state: CheckerState =
        serde_json::from_str(&serde_json::to_string(&first.state).unwrap()).unwrap();
    let mut b = HkChecker::new(db, Some(state));
    b.feed(&data[k..]);
    (first, b.finish())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Split anywhere, even inside a time group: the settled events of both runs
    /// and the second run's provisional ones are exactly the uninterrupted run's.
    #[test]
    fn any_split_gives_the_same_events(
        picks in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 1..160),
        cut in any::<prop::sample::Index>(),
    ) {
        let db = db();
        let data = arbitrary_day(&db, &picks);
        let whole = run(&db, &data);
        let (first, second) = split_runs(&db, &data, cut.index(data.len() + 1));
        let mut merged = first.settled.clone();
        merged.extend(second.events());
        meridian_health::hk::sort_events(&mut merged);
        prop_assert_eq!(format!("{merged:?}"), format!("{whole:?}"));
        prop_assert_eq!(second.state.samples_checked + second.state.pending.len() as u64, data.len() as u64);
    }

    /// Split between time groups (as runs over ordered chunks are): the consumer's
    /// rule, "(param, check, start) identifies an episode and the later report
    /// wins", turns the two runs' products into the uninterrupted run's.
    #[test]
    fn products_of_split_runs_merge_into_the_whole(
        picks in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 1..160),
        cut in any::<prop::sample::Index>(),
    ) {
        let db = db();
        let data = arbitrary_day(&db, &picks);
        let whole = run(&db, &data);
        let mut k = cut.index(data.len() + 1);
        while k > 0 && k < data.len() && data[k].obt_ns == data[k - 1].obt_ns {
            k += 1;
        }
        let (first, second) = split_runs(&db, &data, k);
        let mut by_key = std::collections::BTreeMap::new();
        for e in first.events().into_iter().chain(second.events()) {
            by_key.insert((e.start_obt_ns, e.param.clone(), e.check.clone()), e);
        }
        let mut merged: Vec<HealthEvent> = by_key.into_values().collect();
        meridian_health::hk::sort_events(&mut merged);
        prop_assert_eq!(format!("{merged:?}"), format!("{whole:?}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Any records at all (unsorted times, any floats, unknown names, states on
    /// numeric parameters): no panic, and every event is well formed.
    #[test]
    fn arbitrary_records_never_panic(
        recs in prop::collection::vec(
            (any::<u64>(), 0usize..7, any::<f64>(), any::<bool>(), any::<u64>()),
            0..120,
        ),
    ) {
        let db = db();
        let names = ["FPA_TEMP_1", "HTR_MODE", "BUS_V", "GYRO", "SPARE", "NOPE", ""];
        let records: Vec<Hk> = recs
            .iter()
            .map(|&(t, n, raw, state, packet)| Hk {
                obt_ns: t,
                sid: 1,
                param: names[n].into(),
                raw,
                eng: if state { Value::State("ECO".into()) } else { Value::Number(raw) },
                seq: 0,
                packet_obt_ns: packet,
                packet_hash: 0,
            })
            .collect();
        let mut c = HkChecker::new(&db, None);
        c.feed(&records);
        let out = c.finish();
        for e in out.events() {
            prop_assert!(e.end_obt_ns.is_none_or(|end| end >= e.start_obt_ns), "{e:?}");
        }
        let json = serde_json::to_string(&out.state).unwrap();
        let back: CheckerState = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(format!("{back:?}"), format!("{:?}", out.state));
    }
}
