//! Compares two `meridian-locate` output folders record by record and prints the
//! largest differences: how far a change of the fit moved the products.
//!
//! ```text
//! cargo run --release -p meridian-locate --example compare_located -- REF_DIR NEW_DIR
//! ```
//!
//! Both folders must hold the same chunks and records in the same order (as two
//! runs over one ordered folder do); anything else is reported and counted.

use meridian_core::geom::{MAS_PER_RAD, separation_deg};
use meridian_core::product::read_all;
use meridian_core::records::{Observation, Transit};
use std::path::Path;

#[derive(Default, Debug)]
struct Worst {
    records: u64,
    identical: u64,
    structural: u64,
    flags_differ: u64,
    centroid: f64,
    centroid_sigma: f64,
    centroid_err_rel: f64,
    flux_rel: f64,
    flux_sigma: f64,
    background: f64,
    t_obs_ns: u64,
    position_mas: f64,
    mag: f64,
}

fn sep_mas(a: (Option<f64>, Option<f64>), b: (Option<f64>, Option<f64>)) -> Option<f64> {
    match (a, b) {
        ((Some(r1), Some(d1)), (Some(r2), Some(d2))) => {
            Some(separation_deg(r1, d1, r2, d2) * MAS_PER_RAD)
        }
        ((None, None), (None, None)) => Some(0.0),
        _ => None,
    }
}

/// The record pairs of two files that differ, after counting the records and
/// the identical ones (a file whose length differs counts as one structural
/// difference and yields nothing).
fn differing<'a, T: PartialEq>(w: &mut Worst, a: &'a [T], b: &'a [T]) -> Vec<(&'a T, &'a T)> {
    if a.len() != b.len() {
        w.structural += 1;
        return Vec::new();
    }
    w.records += a.len() as u64;
    let pairs: Vec<_> = a.iter().zip(b).filter(|(x, y)| x != y).collect();
    w.identical += (a.len() - pairs.len()) as u64;
    pairs
}

fn observations(w: &mut Worst, a: &[Observation], b: &[Observation]) {
    for (x, y) in differing(w, a, b) {
        if (x.transit_id, x.strip, x.row, x.fov, x.ac)
            != (y.transit_id, y.strip, y.row, y.fov, y.ac)
        {
            w.structural += 1;
            continue;
        }
        w.flags_differ += (x.flags != y.flags) as u64;
        w.centroid = w.centroid.max((x.centroid - y.centroid).abs());
        w.centroid_sigma = w
            .centroid_sigma
            .max((x.centroid - y.centroid).abs() / x.centroid_err);
        w.centroid_err_rel = w
            .centroid_err_rel
            .max((x.centroid_err / y.centroid_err - 1.0).abs());
        w.flux_rel = w.flux_rel.max((x.flux / y.flux - 1.0).abs());
        w.flux_sigma = w.flux_sigma.max((x.flux - y.flux).abs() / x.flux_err);
        w.background = w.background.max((x.background - y.background).abs());
        w.t_obs_ns = w.t_obs_ns.max(x.t_obs_ns.abs_diff(y.t_obs_ns));
        match sep_mas((x.ra, x.dec), (y.ra, y.dec)) {
            Some(s) => w.position_mas = w.position_mas.max(s),
            None => w.structural += 1,
        }
    }
}

fn transits(w: &mut Worst, a: &[Transit], b: &[Transit]) {
    for (x, y) in differing(w, a, b) {
        if (x.transit_id, x.n_windows) != (y.transit_id, y.n_windows) {
            w.structural += 1;
            continue;
        }
        w.flags_differ += (x.flags != y.flags) as u64;
        w.t_obs_ns = w.t_obs_ns.max(x.t_obs_ns.abs_diff(y.t_obs_ns));
        if let (Some(m1), Some(m2)) = (x.mag, y.mag) {
            w.mag = w.mag.max((m1 - m2).abs());
        }
        match sep_mas((x.ra, x.dec), (y.ra, y.dec)) {
            Some(s) => w.position_mas = w.position_mas.max(s),
            None => w.structural += 1,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [reference, new] = args.as_slice() else {
        eprintln!("usage: compare_located REF_DIR NEW_DIR");
        std::process::exit(2);
    };
    let (reference, new) = (Path::new(reference), Path::new(new));
    let (mut obs, mut tr) = (Worst::default(), Worst::default());
    let mut names: Vec<_> = std::fs::read_dir(reference.join("observation"))
        .expect("REF_DIR/observation")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let read_obs = |d: &Path| read_all::<Observation>(d.join("observation").join(&name));
        let read_tr = |d: &Path| read_all::<Transit>(d.join("transit").join(&name));
        match (read_obs(reference), read_obs(new)) {
            (Ok(a), Ok(b)) => observations(&mut obs, &a, &b),
            _ => obs.structural += 1,
        }
        match (read_tr(reference), read_tr(new)) {
            (Ok(a), Ok(b)) => transits(&mut tr, &a, &b),
            _ => tr.structural += 1,
        }
    }
    println!("observations: {obs:#?}\ntransits: {tr:#?}");
    if obs.structural + tr.structural > 0 {
        std::process::exit(1);
    }
}
