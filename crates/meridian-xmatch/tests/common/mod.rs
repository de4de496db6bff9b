//! Random skies and a brute-force ICD §8 reference for the integration tests.
#![allow(dead_code)]

use meridian_core::Vec3;
use meridian_core::geom::{MAS_PER_RAD, RAD_PER_ARCSEC, RAD_PER_MAS};
use meridian_core::records::{Flags, Match, Transit};
use meridian_core::time::julian_epoch_tt;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::fmt::Write;

/// A catalogue row as written to the CSV (pm exactly representable as f32, as the
/// index stores it).
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub id: i64,
    pub ra: f64,
    pub dec: f64,
    pub pmra: f64,
    pub pmdec: f64,
    pub epoch: f64,
    pub mag: Option<f64>,
}

pub const NS_PER_YEAR: f64 = 365.25 * 86400.0 * 1e9;

/// Points of interest: the poles, the RA wrap, ordinary sky.
const SPOTS: [(f64, f64); 7] = [
    (0.0, 90.0),
    (123.0, -90.0),
    (0.0, 0.0),
    (359.99999, -30.0),
    (180.0, 45.0),
    (45.0, 41.8103),
    (300.0, -89.9995),
];

fn near(rng: &mut Pcg64, (ra, dec): (f64, f64), spread_arcsec: f64) -> (f64, f64) {
    // Offset in a random direction by up to `spread`, on the sphere.
    let centre = Vec3::from_radec_deg(ra, dec);
    let helper = if centre.z.abs() < 0.9 {
        Vec3::new(0.0, 0.0, 1.0)
    } else {
        Vec3::new(1.0, 0.0, 0.0)
    };
    let e1 = centre.cross(helper).normalized();
    let e2 = centre.cross(e1);
    let r = rng.random::<f64>().sqrt() * spread_arcsec * RAD_PER_ARCSEC;
    let a = rng.random::<f64>() * std::f64::consts::TAU;
    let v = (centre + e1 * (r * a.cos()) + e2 * (r * a.sin())).normalized();
    v.to_radec_deg()
}

/// A random catalogue crowded around [`SPOTS`], with duplicates (exact ties)
/// and fast movers (some beyond the fast-tier limit).
pub fn random_catalogue(seed: u64, n: usize) -> Vec<Row> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut rows: Vec<Row> = Vec::with_capacity(n);
    let mut next_id = rng.random_range(-1_000_000i64..1_000_000);
    while rows.len() < n {
        let kind = rng.random_range(0..10);
        if kind == 0 && !rows.is_empty() {
            // An exact duplicate position with another id: a tie.
            let mut r = rows[rng.random_range(0..rows.len())];
            r.id = next_id;
            next_id += rng.random_range(1..1000);
            rows.push(r);
            continue;
        }
        let spot = SPOTS[rng.random_range(0..SPOTS.len())];
        let spread = [5.0, 30.0, 300.0][rng.random_range(0..3)];
        let (ra, dec) = if kind == 1 {
            (
                rng.random::<f64>() * 360.0,
                rng.random::<f64>() * 180.0 - 90.0,
            )
        } else {
            near(&mut rng, spot, spread)
        };
        let pm_scale = match rng.random_range(0..10) {
            0 => 10_000.0,
            1 => 1500.0,
            2..=4 => 50.0,
            _ => 0.0,
        };
        let pm = |rng: &mut Pcg64| ((rng.random::<f64>() * 2.0 - 1.0) * pm_scale) as f32 as f64;
        rows.push(Row {
            id: next_id,
            ra,
            dec,
            pmra: pm(&mut rng),
            pmdec: pm(&mut rng),
            epoch: [2016.0, 2015.5, 2000.0][rng.random_range(0..3)],
            mag: rng
                .random_bool(0.8)
                .then(|| (rng.random::<f64>() * 10.0 + 8.0) as f32 as f64),
        });
        next_id += rng.random_range(1..1000);
    }
    rows
}

/// Transits near catalogue sources (seen at their propagated positions, or
/// offset), plus random ones and some without position.
pub fn random_transits(seed: u64, rows: &[Row], n: usize) -> Vec<Transit> {
    let mut rng = Pcg64::seed_from_u64(seed ^ 0x5eed);
    let mut out = Vec::with_capacity(n);
    let mut id = rng.random_range(0..1000u64);
    for _ in 0..n {
        let t_obs_ns = (rng.random::<f64>() * 20.0 * NS_PER_YEAR) as u64;
        let epoch = julian_epoch_tt(t_obs_ns);
        let (ra, dec) = match rng.random_range(0..10) {
            0 => (None, None),
            1 => {
                let spot = SPOTS[rng.random_range(0..SPOTS.len())];
                let (ra, dec) = near(&mut rng, spot, 20.0);
                (Some(ra), Some(dec))
            }
            _ if !rows.is_empty() => {
                let r = rows[rng.random_range(0..rows.len())];
                let u = icd_propagate(&r, epoch);
                let (ra, dec) = near(&mut rng, u.to_radec_deg(), 2.0);
                (Some(ra), Some(dec))
            }
            _ => (None, None),
        };
        out.push(Transit {
            transit_id: id,
            fov: 0,
            row: 1,
            t_obs_ns,
            ra,
            dec,
            n_windows: 9,
            mag: None,
            flags: Flags::EMPTY,
            sigma_al_mas: None,
            sigma_ac_mas: None,
            scan_pa_deg: None,
        });
        id += rng.random_range(1..5);
    }
    out
}

pub fn csv_of(rows: &[Row], with_epoch_column: bool) -> String {
    let mut s = String::from("source_id,ra,dec,pmra,pmdec,phot_g_mean_mag");
    if with_epoch_column {
        s.push_str(",ref_epoch");
    }
    s.push('\n');
    for r in rows {
        let opt = |v: f64| {
            if v == 0.0 {
                String::new()
            } else {
                format!("{v:?}")
            }
        };
        let mag = r.mag.map(|m| format!("{m:?}")).unwrap_or_default();
        write!(
            s,
            "{},{:?},{:?},{},{},{}",
            r.id,
            r.ra,
            r.dec,
            opt(r.pmra),
            opt(r.pmdec),
            mag
        )
        .unwrap();
        if with_epoch_column {
            write!(s, ",{:?}", r.epoch).unwrap();
        }
        s.push('\n');
    }
    s
}

/// ICD §7 propagation written out with the sines and cosines of α and δ.
pub fn icd_propagate(r: &Row, epoch: f64) -> Vec3 {
    let (sa, ca) = r.ra.to_radians().sin_cos();
    let (sd, cd) = r.dec.to_radians().sin_cos();
    let pos = Vec3::new(cd * ca, cd * sa, sd);
    let p = Vec3::new(-sa, ca, 0.0);
    let q = Vec3::new(-sd * ca, -sd * sa, cd);
    let mu = p * (r.pmra * RAD_PER_MAS) + q * (r.pmdec * RAD_PER_MAS);
    (pos + mu * (epoch - r.epoch)).normalized()
}

/// ICD §8 by brute force: every transit against every source, then all pairs
/// of unmatched transits.
pub fn brute_force(rows: &[Row], transits: &[Transit], radius_arcsec: f64) -> Vec<Match> {
    let radius = radius_arcsec * RAD_PER_ARCSEC;
    let mut out = Vec::new();
    let mut unmatched: Vec<(u64, Vec3)> = Vec::new();
    for t in transits {
        let (Some(ra), Some(dec)) = (t.ra, t.dec) else {
            continue;
        };
        let tv = Vec3::from_radec_deg(ra, dec);
        let epoch = julian_epoch_tt(t.t_obs_ns);
        let mut c: Vec<(f64, i64, Vec3)> = rows
            .iter()
            .map(|r| {
                let u = icd_propagate(r, epoch);
                (tv.angle_to(u), r.id, u)
            })
            .filter(|c| c.0 <= radius)
            .collect();
        c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        if c.is_empty() {
            unmatched.push((t.transit_id, tv));
            continue;
        }
        let (ra_cat, dec_cat) = c[0].2.to_radec_deg();
        out.push(Match {
            transit_id: t.transit_id,
            source_id: Some(c[0].1),
            sep_mas: Some(c[0].0 * MAS_PER_RAD),
            n_candidates: c.len() as u32,
            ambiguous: c[1..].iter().map(|x| x.1).collect(),
            new_source: None,
            ra_cat: Some(ra_cat),
            dec_cat: Some(dec_cat),
        });
    }
    // Connected components by repeated relabelling to the minimum.
    let mut name: Vec<u64> = unmatched.iter().map(|u| u.0).collect();
    loop {
        let mut changed = false;
        for i in 0..unmatched.len() {
            for j in 0..unmatched.len() {
                if unmatched[i].1.angle_to(unmatched[j].1) <= radius && name[j] < name[i] {
                    name[i] = name[j];
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (u, n) in unmatched.iter().zip(name) {
        out.push(Match {
            transit_id: u.0,
            source_id: None,
            sep_mas: None,
            n_candidates: 0,
            ambiguous: vec![],
            new_source: Some(n),
            ra_cat: None,
            dec_cat: None,
        });
    }
    out.sort_by_key(|m| m.transit_id);
    out
}

/// Equal up to rounding of separations and propagated positions (1 µas).
pub fn assert_same_matches(got: &[Match], want: &[Match]) {
    assert_eq!(got.len(), want.len(), "record counts");
    for (g, w) in got.iter().zip(want) {
        let ctx = format!("got {g:?}\nwant {w:?}");
        assert_eq!(g.transit_id, w.transit_id, "{ctx}");
        assert_eq!(g.source_id, w.source_id, "{ctx}");
        assert_eq!(g.n_candidates, w.n_candidates, "{ctx}");
        assert_eq!(g.ambiguous, w.ambiguous, "{ctx}");
        assert_eq!(g.new_source, w.new_source, "{ctx}");
        match (g.sep_mas, w.sep_mas) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-3, "{ctx}"),
            (a, b) => assert_eq!(a, b, "{ctx}"),
        }
        if let (Some(ra), Some(dec), Some(ra2), Some(dec2)) =
            (g.ra_cat, g.dec_cat, w.ra_cat, w.dec_cat)
        {
            let d = meridian_core::geom::separation_deg(ra, dec, ra2, dec2) * MAS_PER_RAD;
            assert!(d < 1e-3, "{ctx}");
        } else {
            assert_eq!((g.ra_cat, g.dec_cat), (w.ra_cat, w.dec_cat), "{ctx}");
        }
    }
}
