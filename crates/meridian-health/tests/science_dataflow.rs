//! Science health (residual geometry, bins, thresholds, the disturbance) and
//! data-flow completeness.

use meridian_core::records::{Severity, Value};
use meridian_health::dataflow::{DataFlowConfig, completeness_events};
use meridian_health::science::{ScienceConfig, residual_al_ac_mas, science_health};
use meridian_health::synth::{Disturbance, completeness_day, offset, science_day};

const S: u64 = 1_000_000_000;
const T0: u64 = 520_560_000 * S;

#[test]
fn residuals_split_along_and_across_the_scan_direction() {
    // Scanning towards the north (PA 0): a star 10 mas north is +10 along scan.
    let (ra, dec) = (120.0, 30.0);
    let north = (ra, dec + 10.0 / 3.6e6);
    let (al, ac) = residual_al_ac_mas(north.0, north.1, ra, dec, 0.0);
    assert!((al - 10.0).abs() < 1e-6 && ac.abs() < 1e-6, "{al} {ac}");
    // Scanning east (PA 90): the same offset is across scan, at PA 90 + 90 = south, so −10.
    let (al, ac) = residual_al_ac_mas(north.0, north.1, ra, dec, 90.0);
    assert!(al.abs() < 1e-6 && (ac + 10.0).abs() < 1e-6, "{al} {ac}");
    // Any PA, near a pole: offset() and the residual are inverses.
    for (pa, al0, ac0) in [(37.0, 123.0, -45.0), (271.5, -3.0, 88.0), (180.0, 0.5, 0.0)] {
        let (r, d) = offset(10.0, 89.9, pa, al0, ac0);
        let (al, ac) = residual_al_ac_mas(r, d, 10.0, 89.9, pa);
        assert!(
            (al - al0).abs() < 1e-6 && (ac - ac0).abs() < 1e-6,
            "{pa}: {al} {ac}"
        );
    }
}

#[test]
fn a_quiet_day_has_no_science_event() {
    let (obs, transits, matches) = science_day(T0, 3.0, 0.1, 5, &[]);
    let h = science_health(&obs, &transits, &matches, &ScienceConfig::default());
    assert!(h.events.is_empty(), "{:#?}", h.events);
    // 3 h of 10-minute bins, both fields of view (windows binned by their own
    // time may spill into the next bin).
    assert_eq!(h.bins.iter().filter(|b| b.transits > 0).count(), 36);
    let windows: u64 = h.bins.iter().map(|b| b.windows).sum();
    assert_eq!(windows, 9 * transits.len() as u64);
    let b = &h.bins[0];
    assert!(b.match_rate.unwrap() > 0.9);
    assert!(b.median_background.unwrap() > 20.0 && b.median_background.unwrap() < 60.0);
}

#[test]
fn an_attitude_disturbance_is_an_event_in_its_bin() {
    // Hit 70 s before a bin ends: the affected two minutes straddle two bins; the
    // bin of the hit must have its event, the next one may too.
    let hit = Disturbance {
        obt_ns: T0 + (3600 + 530) * S,
        rate_mas_s: -3.0,
        settle_s: 60.0,
    };
    let (obs, transits, matches) = science_day(T0, 3.0, 0.1, 9, &[hit]);
    let h = science_health(&obs, &transits, &matches, &ScienceConfig::default());
    let bin_start = T0 + 3600 * S;
    for fov in ["fov0", "fov1"] {
        let e = h
            .events
            .iter()
            .find(|e| e.param == fov && e.start_obt_ns == bin_start)
            .unwrap_or_else(|| panic!("no {fov} event in the hit's bin: {:#?}", h.events));
        assert_eq!(e.check, "residual_al_outliers");
        assert!(e.end_obt_ns.unwrap() >= bin_start + 600 * S);
    }
    assert!(
        h.events.iter().all(|e| e.check == "residual_al_outliers"),
        "{:#?}",
        h.events
    );
    assert!(
        h.events
            .iter()
            .all(|e| e.end_obt_ns.unwrap() <= bin_start + 1200 * S)
    );
}

#[test]
fn thresholds_bin_length_and_minimum_counts_are_configurable() {
    let (obs, transits, mut matches) = science_day(T0, 1.0, 0.1, 3, &[]);
    // Lose every match in the second half hour: match-rate alarm there.
    for m in matches.iter_mut() {
        let t = transits[m.transit_id as usize].t_obs_ns;
        if t >= T0 + 1800 * S {
            m.source_id = None;
            m.ra_cat = None;
            m.dec_cat = None;
        }
    }
    let cfg = ScienceConfig {
        bin_s: 900,
        ..ScienceConfig::default()
    };
    let h = science_health(&obs, &transits, &matches, &cfg);
    let mr: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.check == "match_rate")
        .collect();
    assert_eq!(mr.len(), 2, "{mr:#?}");
    for e in mr {
        // Two 15-minute bins merged into one event of two samples.
        assert_eq!(
            (e.start_obt_ns, e.end_obt_ns, e.samples),
            (T0 + 1800 * S, Some(T0 + 3600 * S), 2)
        );
        assert_eq!(
            (e.severity, e.worst.clone()),
            (Severity::Alarm, Value::Number(0.0))
        );
    }
    // With too few matched transits a bin is not judged on match rate.
    let strict = ScienceConfig {
        min_positioned: 10_000,
        ..cfg
    };
    let h = science_health(&obs, &transits, &matches, &strict);
    assert!(h.events.iter().all(|e| e.check != "match_rate"));
}

#[test]
fn completeness_below_the_service_level_is_an_event_per_run_of_hours() {
    let mut hours = completeness_day(T0, 6, 2, 100);
    // Hour 3 of APID 0x101 bad too (alarm), hour 5 of 0x201 exactly at the level.
    for h in hours.iter_mut() {
        let k = (h.hour_start_obt_ns - T0) / (3600 * S);
        if h.apid == 0x101 && k == 3 {
            h.received = 4000;
            h.missing = 1000;
        }
        if h.apid == 0x201 && k == 5 {
            h.received = 99;
            h.missing = 1;
        }
    }
    let ev = completeness_events(&hours, &DataFlowConfig::default());
    assert_eq!(ev.len(), 1, "{ev:#?}");
    let e = &ev[0];
    assert_eq!(
        (e.param.as_str(), e.check.as_str()),
        ("apid_0x101", "completeness")
    );
    assert_eq!(
        (e.start_obt_ns, e.end_obt_ns),
        (T0 + 7200 * S, Some(T0 + 4 * 3600 * S))
    );
    assert_eq!(
        (e.samples, e.severity, e.worst.clone()),
        (1100, Severity::Alarm, Value::Number(0.8))
    );
}

#[test]
fn extreme_times_and_values_do_not_panic() {
    let (obs, mut transits, matches) = science_day(T0, 0.2, 0.1, 1, &[]);
    transits[0].t_obs_ns = u64::MAX;
    transits[1].ra = Some(f64::NAN);
    transits[2].scan_pa_deg = Some(f64::INFINITY);
    for bin_s in [0, 1, u64::MAX] {
        let cfg = ScienceConfig {
            bin_s,
            ..ScienceConfig::default()
        };
        let h = science_health(&obs, &transits, &matches, &cfg);
        assert!(!h.bins.is_empty());
    }
    let mut hours = completeness_day(T0, 1, 0, 1000);
    hours[0].hour_start_obt_ns = u64::MAX - 5;
    assert_eq!(
        completeness_events(&hours, &DataFlowConfig::default()).len(),
        1
    );
}

/// A sky as sparse as the sample day's (about 16 transits per field of view per
/// bin): the disturbance still shows in its bin, and nothing else is reported.
#[test]
fn a_disturbance_shows_on_a_sparse_sky() {
    let mut detected = 0;
    for seed in 0..20u64 {
        // Hits anywhere but the last 30 s of a bin, with either sign.
        let offset_s = 600 * (2 + seed % 5) + (seed * 97) % 570;
        let hit = Disturbance {
            obt_ns: T0 + offset_s * S,
            rate_mas_s: if seed % 2 == 0 { 3.0 } else { -3.0 },
            settle_s: 60.0,
        };
        let (obs, transits, matches) = science_day(T0, 1.75, 0.027, 100 + seed, &[hit]);
        let h = science_health(&obs, &transits, &matches, &ScienceConfig::default());
        let bin_start = T0 + offset_s / 600 * 600 * S;
        let after_bin = bin_start + 1200 * S;
        for e in &h.events {
            // Every event belongs to the disturbance: its bin or the next.
            assert!(
                e.start_obt_ns >= bin_start && e.end_obt_ns.unwrap() <= after_bin,
                "seed {seed}: {e:?}"
            );
            assert!(
                ["residual_al_outliers", "residual_al"].contains(&e.check.as_str()),
                "{e:?}"
            );
        }
        detected += h.events.iter().any(|e| e.start_obt_ns == bin_start) as u32;
    }
    assert_eq!(
        detected,
        20,
        "disturbance missed in {} of 20 days",
        20 - detected
    );
}

#[test]
fn accumulators_merged_in_any_split_give_the_whole_day() {
    use meridian_health::science::ScienceAccumulator;
    let hit = Disturbance {
        obt_ns: T0 + 5000 * S,
        rate_mas_s: -3.0,
        settle_s: 60.0,
    };
    let (obs, transits, matches) = science_day(T0, 2.0, 0.1, 3, &[hit]);
    let cfg = ScienceConfig::default();
    let whole = science_health(&obs, &transits, &matches, &cfg);
    assert!(
        !whole.events.is_empty(),
        "the hit must give events to compare"
    );
    // Observations split unevenly and merged in reverse order, as parallel
    // readers of several files would.
    let parts: Vec<&[_]> = vec![&obs[..7], &obs[7..obs.len() / 3], &obs[obs.len() / 3..]];
    let mut merged = ScienceAccumulator::new(&cfg);
    for part in parts.iter().rev() {
        let mut acc = ScienceAccumulator::new(&cfg);
        for o in *part {
            acc.add_observation(o);
        }
        merged.merge(acc);
    }
    merged.add_transits(&transits, &matches);
    let split = merged.finish();
    assert_eq!(split.bins, whole.bins);
    assert_eq!(split.events, whole.events);
}
