//! The simulated windows follow the ICD §5 instrument model and geometry: sample
//! statistics, star positions through the telemetered attitude, proper motion,
//! and the injected attitude disturbance.

mod science_common;

use meridian_core::geom::MAS_PER_RAD;
use meridian_core::instrument::{self, SAMPLE_PERIOD_NS};
use meridian_core::time::julian_epoch_tt;
use meridian_core::{Quat, Vec3};
use meridian_sim::science::*;
use science_common::*;

/// Telemetered attitude at t, slerped between the samples bracketing it (ICD §4.2).
fn attitude_at(samples: &[(u64, [f64; 4])], t_ns: u64) -> Option<Quat> {
    let i = samples.partition_point(|(t, _)| *t <= t_ns);
    if i == 0 || i == samples.len() {
        return None;
    }
    let (t0, q0) = samples[i - 1];
    let (t1, q1) = samples[i];
    let f = (t_ns - t0) as f64 / (t1 - t0) as f64;
    Some(Quat::from_array(q0).slerp(Quat::from_array(q1), f))
}

fn telemetered_attitude(packets: &[meridian_sim::GeneratedPacket]) -> Vec<(u64, [f64; 4])> {
    let mut out = Vec::new();
    for p in packets {
        if let PData::Attitude(s) = parse_packet(&p.bytes).data {
            out.extend(s);
        }
    }
    out
}

/// Along-scan and across-scan residuals (mas) of a window: the star's position
/// (catalogue, propagated to t_obs) seen in the SRS of the telemetered attitude,
/// against the window's field angles (ICD §5 "Direction").
fn residuals_mas(att: &[(u64, [f64; 4])], t: &WindowTruth, star: &[f64; 6]) -> Option<(f64, f64)> {
    let t_obs_ns = t.obt_ns as f64 + t.centroid * SAMPLE_PERIOD_NS as f64;
    let q = attitude_at(att, t_obs_ns.round() as u64)?;
    let window_dir = instrument::srs_direction(t.fov, t.strip, t.row, t.ac).unwrap();
    let u = propagate(
        star[0],
        star[1],
        star[2],
        star[3],
        star[4],
        julian_epoch_tt(t_obs_ns as u64),
    );
    // Star and window centre in the SRS.
    let v = q.conj().rotate(u);
    let (phi_star, zeta_star) = (v.y.atan2(v.x), v.z.asin());
    let (phi_win, zeta_win) = (window_dir.y.atan2(window_dir.x), window_dir.z.asin());
    let along = (phi_star - phi_win) * zeta_star.cos() * MAS_PER_RAD;
    let across = (zeta_star - zeta_win) * MAS_PER_RAD;
    // Cross-check in ICRS: the separation of window centre and star is made of
    // these two components.
    let sep = q.rotate(window_dir).angle_to(u) * MAS_PER_RAD;
    assert!(
        (sep - along.hypot(across)).abs() < 0.01 * sep.max(1.0),
        "{sep} {along} {across}"
    );
    Some((along, across))
}

struct ScanDay {
    sim: ScienceSim,
    csv: String,
    placed: Vec<Placed>,
    _dir: tempfile::TempDir,
}

fn scan_catalogue_sim(seed: u64, dur: f64, n: usize, disturbances: Vec<Disturbance>) -> ScanDay {
    let base = ScienceConfig {
        n_stars: 1000,
        disturbances: Some(disturbances.clone()),
        ..Default::default()
    };
    let law = ScienceSim::new(seed, START_NS, dur, &base)
        .unwrap()
        .scan_law()
        .clone();
    let (csv, placed) = scan_catalogue(&law, START_NS, dur, n);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalogue.csv");
    std::fs::write(&path, &csv).unwrap();
    let cfg = ScienceConfig {
        catalogue: Some(path),
        ..base
    };
    ScanDay {
        sim: ScienceSim::new(seed, START_NS, dur, &cfg).unwrap(),
        csv,
        placed,
        _dir: dir,
    }
}

#[test]
fn windows_place_catalogue_stars_through_the_telemetered_attitude() {
    let day = scan_catalogue_sim(21, 600.0, 400, Vec::new());
    let (sim, cat) = (&day.sim, parse_csv(&day.csv));
    let (packets, truth, stats) = run(sim);
    let att = telemetered_attitude(&packets);
    // Stars sit on the scan at random elevations: ~96 % fall on a CCD.
    assert!(stats.transits >= 350, "{stats:?}");
    let mut n = 0;
    let mut sum2 = 0.0;
    let mut high_pm = 0;
    for t in &truth.windows {
        let star = &cat[&t.source_id];
        // Truth direction = the catalogue propagated to t_obs.
        let u = propagate(
            star[0],
            star[1],
            star[2],
            star[3],
            star[4],
            julian_epoch_tt(t.t_obs_ns),
        );
        assert!(u.angle_to(Vec3::from_radec_deg(t.ra_deg, t.dec_deg)) * MAS_PER_RAD < 0.1);
        let Some((along, across)) = residuals_mas(&att, t, star) else {
            continue;
        };
        assert!(along.abs() < 3.0, "along-scan residual {along} mas: {t:?}");
        // Pixel quantisation (±88.4 mas) plus the 0.5 mas attitude noise.
        assert!(
            across.abs() <= 88.4 + 2.5,
            "across-scan residual {across} mas"
        );
        sum2 += along * along;
        n += 1;
        high_pm += (star[2] > 1000.0) as usize;
    }
    assert!(n > 3000 && high_pm > 100, "{n} {high_pm}");
    // Completeness: every star placed on a CCD (1″ from its edges) has a transit
    // in its field, with a strip-4 window at the pixel of its elevation.
    let mut on_ccd = 0;
    for p in &day.placed {
        let row = ((p.zeta.to_degrees() * 3600.0 / 360.0).round() + 4.0).clamp(1.0, 7.0) as u8;
        let margin = 1.0 / 206_264.806;
        let Some(ac) = instrument::ac_pixel_for_zeta(row, p.zeta) else {
            continue;
        };
        if instrument::ac_pixel_for_zeta(row, p.zeta - margin).is_none()
            || instrument::ac_pixel_for_zeta(row, p.zeta + margin).is_none()
        {
            continue;
        }
        on_ccd += 1;
        let w = truth
            .windows
            .iter()
            .find(|w| w.source_id == p.source_id && w.strip == 4)
            .unwrap_or_else(|| panic!("no strip-4 window of star {p:?}"));
        assert_eq!((w.fov, w.row), (p.fov, row));
        assert!(w.ac.abs_diff(ac) <= 1, "{} vs {ac}", w.ac);
        assert!(
            w.t_obs_ns.abs_diff(p.t_ns) < 1_000_000,
            "{} vs {}",
            w.t_obs_ns,
            p.t_ns
        );
    }
    assert!(on_ccd > 350, "{on_ccd}");
    // The along-scan scatter is the 0.5 mas attitude noise (plus interpolation).
    let rms = (sum2 / n as f64).sqrt();
    assert!((0.2..1.0).contains(&rms), "rms {rms}");
}

#[test]
fn ignoring_proper_motion_would_misplace_high_proper_motion_stars() {
    // The converse check: the 3.6″/yr stars, placed at their 2016.0 position,
    // miss by the proper motion over ten years, so propagation really happened.
    let day = scan_catalogue_sim(22, 120.0, 200, Vec::new());
    let (sim, cat) = (&day.sim, parse_csv(&day.csv));
    let (packets, truth, _) = run(sim);
    let att = telemetered_attitude(&packets);
    let mut checked = 0;
    for t in truth
        .windows
        .iter()
        .filter(|t| cat[&t.source_id][2] > 1000.0)
    {
        let star = cat[&t.source_id];
        let frozen = [star[0], star[1], 0.0, 0.0, star[4], star[5]];
        if let Some((along, across)) = residuals_mas(&att, t, &frozen) {
            assert!(along.hypot(across) > 10_000.0);
            checked += 1;
        }
    }
    assert!(checked > 20);
}

#[test]
fn disturbance_grows_along_scan_residuals_only_while_settling() {
    let hit = START_NS + 200_000_000_000;
    let d = Disturbance {
        obt_ns: hit,
        delta_rate_mas_per_s: 4.0,
        settle_s: 50.0,
    };
    let day = scan_catalogue_sim(23, 500.0, 1500, vec![d]);
    let (sim, cat) = (&day.sim, parse_csv(&day.csv));
    let (packets, truth, _) = run(sim);
    assert_eq!(truth.disturbances, vec![d]);
    let att = telemetered_attitude(&packets);
    let mut peak = 0.0f64;
    for t in &truth.windows {
        let Some((along, _)) = residuals_mas(&att, t, &cat[&t.source_id]) else {
            continue;
        };
        let since = (t.t_obs_ns as f64 - hit as f64) * 1e-9;
        // Expected: the on-board attitude lags the true spin by 4 mas/s × elapsed,
        // then recovers linearly; stars appear ahead along scan by that much.
        let lag = if since <= 0.0 || since >= 100.0 {
            0.0
        } else if since <= 50.0 {
            4.0 * since
        } else {
            4.0 * (100.0 - since)
        };
        assert!(
            (along.abs() - lag).abs() < 3.0,
            "t+{since:.1}s: {along} vs {lag}"
        );
        peak = peak.max(along.abs());
    }
    assert!(peak > 180.0, "peak {peak}");
}

#[test]
fn samples_follow_the_poisson_plus_read_noise_model() {
    let cfg = ScienceConfig {
        n_stars: 5_000_000,
        ..Default::default()
    };
    let sim = ScienceSim::new(31, START_NS, 240.0, &cfg).unwrap();
    let (packets, truth, _) = run(&sim);
    let mut windows = Vec::new();
    for p in &packets {
        if let PData::Windows(ws) = parse_packet(&p.bytes).data {
            windows.extend(ws);
        }
    }
    assert_eq!(windows.len(), truth.windows.len());
    // Standardised residuals z = (v − E v)/sd with E v = 1000 + λ/4 and
    // var v = (λ + 144)/16 + 1/12 (rounding), over unsaturated samples.
    let mut z = Vec::new();
    for (w, t) in windows.iter().zip(&truth.windows) {
        for (i, &v) in w.samples.iter().enumerate() {
            let lambda = instrument::expected_charge(i, t.centroid, t.flux, t.background);
            let mean = 1000.0 + lambda / 4.0;
            let sd = ((lambda + 144.0) / 16.0 + 1.0 / 12.0).sqrt();
            if mean + 6.0 * sd >= 65535.0 {
                continue;
            }
            z.push((v as f64 - mean) / sd);
        }
    }
    let n = z.len() as f64;
    assert!(n > 40_000.0, "{n}");
    let mean = z.iter().sum::<f64>() / n;
    let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 0.03, "var {var}");
    // Chi-square over 10 equiprobable bins of N(0, 1) (9 dof: p = 1e-4 at 33.7).
    let edges = [
        -1.2816, -0.8416, -0.5244, -0.2533, 0.0, 0.2533, 0.5244, 0.8416, 1.2816,
    ];
    let mut counts = [0f64; 10];
    for x in &z {
        counts[edges.partition_point(|e| e < x)] += 1.0;
    }
    let chi2: f64 = counts
        .iter()
        .map(|c| (c - n / 10.0).powi(2) / (n / 10.0))
        .sum();
    assert!(chi2 < 33.7, "chi2 {chi2}, counts {counts:?}");
    // Bright stars saturate (ICD §5): some samples hit 65535.
    assert!(windows.iter().flat_map(|w| &w.samples).any(|&v| v == 65535));
}

#[test]
fn truth_centroids_sit_near_the_window_centre_and_match_t_obs() {
    let cfg = ScienceConfig {
        n_stars: 3_000_000,
        ..Default::default()
    };
    let (_, truth, _) = run(&ScienceSim::new(41, START_NS, 120.0, &cfg).unwrap());
    assert!(truth.windows.len() > 500);
    for t in &truth.windows {
        let k = if t.g < 13.0 { 18.0 } else { 12.0 };
        assert!((t.centroid - k / 2.0).abs() <= 0.5 + 1e-6, "{}", t.centroid);
        assert_eq!(
            t.t_obs_ns,
            instrument::observation_time_ns(t.obt_ns, t.centroid)
        );
        assert!((20.0..=60.0).contains(&t.background));
        assert!((t.flux - instrument::flux_from_mag(t.g)).abs() < 1e-9 * t.flux);
    }
}

#[test]
fn catalogue_is_written_as_icd_csv_and_read_back_unchanged() {
    let cfg = ScienceConfig {
        n_stars: 20_000,
        ..Default::default()
    };
    let sim = ScienceSim::new(51, START_NS, 3600.0, &cfg).unwrap();
    let mut csv = Vec::new();
    sim.write_catalogue(&mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    let cat = parse_csv(&text);
    assert_eq!(cat.len(), 20_000);
    assert!(
        cat.values()
            .all(|s| s[4] == 2016.0 && (6.0..=20.7).contains(&s[5]))
    );
    assert!(
        cat.values().any(|s| s[2].hypot(s[3]) > 500.0),
        "no high proper motion star"
    );
    // The transits of the procedural sky are of catalogue stars, at their
    // catalogue positions propagated to t_obs.
    let (packets, truth, _) = run(&sim);
    let att = telemetered_attitude(&packets);
    assert!(truth.windows.len() > 100);
    for t in &truth.windows {
        let s = &cat[&t.source_id];
        assert!((s[5] - t.g).abs() < 1e-6);
        let u = propagate(s[0], s[1], s[2], s[3], s[4], julian_epoch_tt(t.t_obs_ns));
        assert!(u.angle_to(Vec3::from_radec_deg(t.ra_deg, t.dec_deg)) * MAS_PER_RAD < 0.1);
        if let Some((along, across)) = residuals_mas(&att, t, s) {
            let near_hit = truth
                .disturbances
                .iter()
                .any(|d| t.t_obs_ns >= d.obt_ns && t.t_obs_ns < d.obt_ns + 125_000_000_000);
            if !near_hit {
                assert!(along.abs() < 3.0, "{along}");
            }
            assert!(across.abs() < 88.4 + 2.5);
        }
    }
    // Reading the written catalogue back gives the same day.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cat.csv");
    std::fs::write(&path, &text).unwrap();
    let from_file = ScienceSim::new(
        51,
        START_NS,
        3600.0,
        &ScienceConfig {
            catalogue: Some(path),
            ..cfg
        },
    )
    .unwrap();
    let (_, truth2, _) = run(&from_file);
    let key = |t: &WindowTruth| (t.source_id, t.strip, t.obt_ns, t.ac);
    assert_eq!(
        truth.windows.iter().map(key).collect::<Vec<_>>(),
        truth2.windows.iter().map(key).collect::<Vec<_>>()
    );
}

#[test]
fn bad_configuration_and_catalogue_are_clear_errors() {
    let bad = |cfg: ScienceConfig| {
        ScienceSim::new(1, START_NS, 10.0, &cfg)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(
        bad(ScienceConfig {
            scale: Some(-1.0),
            ..Default::default()
        })
        .contains("scale")
    );
    assert!(
        bad(ScienceConfig {
            background_e: [60.0, 20.0],
            ..Default::default()
        })
        .contains("background")
    );
    assert!(ScienceSim::new(1, START_NS, f64::NAN, &ScienceConfig::default()).is_err());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.csv");
    std::fs::write(&path, "source_id,ra,dec\n1,10,95\n").unwrap();
    let e = bad(ScienceConfig {
        catalogue: Some(path.clone()),
        catalogue_ref_epoch: Some(2016.0),
        ..Default::default()
    });
    assert!(
        e.contains("c.csv") && e.contains("line 2") && e.contains("dec"),
        "{e}"
    );
    let e = bad(ScienceConfig {
        catalogue: Some(dir.path().join("missing.csv")),
        ..Default::default()
    });
    assert!(e.contains("missing.csv"), "{e}");
    // The configuration round-trips through JSON and rejects unknown fields.
    let cfg = ScienceConfig {
        scale: Some(0.01),
        ..Default::default()
    };
    let json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(serde_json::from_str::<ScienceConfig>(&json).unwrap(), cfg);
    assert!(serde_json::from_str::<ScienceConfig>("{\"n_star\": 5}").is_err());
}
