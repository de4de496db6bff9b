//! Synthetic windows drawn from the ICD §5 noise model, shared by the tests, the
//! benches and the example (included by path).
#![allow(dead_code)]

use meridian_core::instrument::{adu_from_charge, expected_charge};
use rand::Rng;
use rand_distr::{Distribution, Normal, Poisson};
use rand_pcg::Pcg64;

/// Background used by the synthetic windows, e⁻ per sample.
pub const BACKGROUND_E: f64 = 20.0;

/// One noisy realisation of a window: `round(1000 + (Poisson(λ) + N(0,12))/4)`.
pub fn draw_window(
    rng: &mut Pcg64,
    k: usize,
    centroid: f64,
    flux: f64,
    background: f64,
) -> Vec<u16> {
    let read = Normal::new(0.0, meridian_core::instrument::READ_NOISE_E).expect("valid sigma");
    (0..k)
        .map(|i| {
            let lambda = expected_charge(i, centroid, flux, background);
            let photons = if lambda > 0.0 {
                Poisson::new(lambda).expect("positive mean").sample(rng)
            } else {
                0.0
            };
            adu_from_charge(photons + read.sample(rng))
        })
        .collect()
}

/// A seeded generator.
pub fn rng(seed: u64) -> Pcg64 {
    rand::SeedableRng::seed_from_u64(seed)
}

/// True centroid near the window middle, as the on-board detection places it.
pub fn draw_centroid(rng: &mut Pcg64, k: usize) -> f64 {
    k as f64 / 2.0 + rng.random_range(-1.0..1.0)
}

use meridian_core::geom::RAD_PER_ARCSEC;
use meridian_core::instrument::{
    SAMPLE_PERIOD_NS, SPIN_RATE_ARCSEC_PER_S, ac_pixel_for_zeta, flux_from_mag, fov_azimuth_rad,
    row_zeta_rad, samples_for_mag, srs_from_angles, strip_eta_rad,
};
use meridian_core::records::{Attitude, Window};
use meridian_core::{Quat, Vec3};

/// Uniform nominal spin about SRS +z: `q(t) = q_ref ⊗ R_z(ω (t − t_ref))`.
#[derive(Debug, Clone, Copy)]
pub struct Scan {
    pub q_ref: Quat,
    pub t_ref_ns: u64,
}

impl Scan {
    pub fn rate_rad_per_ns() -> f64 {
        SPIN_RATE_ARCSEC_PER_S * RAD_PER_ARCSEC * 1e-9
    }

    pub fn at(&self, t_ns: u64) -> Quat {
        let dt = t_ns as f64 - self.t_ref_ns as f64;
        self.q_ref * Quat::from_axis_angle(Vec3::new(0.0, 0.0, 1.0), Self::rate_rad_per_ns() * dt)
    }

    /// Attitude records every `step_ns` over [from, to].
    pub fn attitude(&self, from_ns: u64, to_ns: u64, step_ns: u64) -> Vec<Attitude> {
        (from_ns..=to_ns)
            .step_by(step_ns as usize)
            .map(|t| Attitude {
                obt_ns: t,
                q: self.at(t).to_array(),
                seq: 0,
                packet_obt_ns: t,
                packet_hash: 0,
            })
            .collect()
    }

    /// A scan that puts SRS direction `a` onto ICRS direction `u` at `t_ref`, with
    /// a roll about `u` so the frame is not special.
    pub fn through(a: Vec3, u: Vec3, t_ref_ns: u64, roll: f64) -> Scan {
        let axis = a.cross(u);
        let q_min = Quat::new(axis.x, axis.y, axis.z, 1.0 + a.dot(u)).normalized();
        Scan {
            q_ref: Quat::from_axis_angle(u, roll) * q_min,
            t_ref_ns,
        }
    }
}

/// A star's truth and the windows of its transit.
#[derive(Debug, Clone)]
pub struct SimTransit {
    pub direction: Vec3,
    pub g: f64,
    pub transit_id: u64,
    pub windows: Vec<Window>,
    /// The star's SRS elevation (true, not pixel-quantised).
    pub zeta: f64,
}

/// Time at which a star at SRS azimuth `phi0` at `t0` reaches azimuth `phi`
/// (stars move towards decreasing azimuth).
fn crossing_ns(t0_ns: u64, phi0: f64, phi: f64) -> u64 {
    let dt = (phi0 - phi) / Scan::rate_rad_per_ns();
    (t0_ns as f64 + dt).round() as u64
}

/// The transit of a star that crosses AF1 of `fov` at `t_af1_ns` at SRS elevation
/// `zeta` in `row`: its direction by the geometry in reverse, and its nine windows
/// drawn from the ICD §5 noise model.
#[allow(clippy::too_many_arguments)]
pub fn sim_transit(
    rng: &mut Pcg64,
    scan: &Scan,
    transit_id: u64,
    fov: u8,
    row: u8,
    zeta: f64,
    t_af1_ns: u64,
    g: f64,
) -> SimTransit {
    let phi_af1 = fov_azimuth_rad(fov).unwrap() + strip_eta_rad(0).unwrap();
    let direction = scan.at(t_af1_ns).rotate(srs_from_angles(phi_af1, zeta));
    let k = samples_for_mag(g) as usize;
    let ac = ac_pixel_for_zeta(row, zeta).expect("star on the row");
    let windows = (0..9u8)
        .map(|strip| {
            let phi = fov_azimuth_rad(fov).unwrap() + strip_eta_rad(strip).unwrap();
            let t_cross = crossing_ns(t_af1_ns, phi_af1, phi);
            // Refine: the exact time the star's azimuth equals phi under the scan.
            let c_true = draw_centroid(rng, k);
            let obt_ns = t_cross - (c_true * SAMPLE_PERIOD_NS as f64).round() as u64;
            let c_exact = (t_cross - obt_ns) as f64 / SAMPLE_PERIOD_NS as f64;
            Window {
                transit_id,
                strip,
                row,
                fov,
                ac,
                obt_ns,
                onboard_mag: (g * 1000.0) as u16,
                samples: draw_window(rng, k, c_exact, flux_from_mag(g), BACKGROUND_E),
                seq: 0,
                packet_obt_ns: obt_ns,
                packet_hash: 0,
            }
        })
        .collect();
    SimTransit {
        direction,
        g,
        transit_id,
        windows,
        zeta,
    }
}

/// A random elevation inside `row` well within its pixel range.
pub fn draw_zeta(rng: &mut Pcg64, row: u8) -> f64 {
    let px = meridian_core::instrument::AC_PIXEL_MAS * meridian_core::geom::RAD_PER_MAS;
    row_zeta_rad(row).unwrap() + rng.random_range(-900.0..900.0) * px
}

/// Writes an ordered folder as `meridian-order` does (ICD-independent internal
/// contract of `meridian_order::manifest`): records grouped into `chunk_ns`
/// chunks per stream, each at the version `version_of(stream, start)`.
pub fn write_ordered(
    dir: &std::path::Path,
    chunk_ns: u64,
    windows: &[Window],
    attitude: &[Attitude],
    version_of: impl Fn(meridian_order::Stream, u64) -> u64,
) -> meridian_order::Manifest {
    use meridian_order::{Manifest, Stream};
    use std::collections::BTreeMap;
    fn group<R: Clone>(rs: &[R], chunk_ns: u64, t: impl Fn(&R) -> u64) -> BTreeMap<u64, Vec<R>> {
        let mut m: BTreeMap<u64, Vec<R>> = BTreeMap::new();
        for r in rs {
            m.entry(t(r) / chunk_ns * chunk_ns)
                .or_default()
                .push(r.clone());
        }
        for v in m.values_mut() {
            v.sort_by_key(|r| t(r));
        }
        m
    }
    let mut chunks = Vec::new();
    let mut add = |stream: Stream, start: u64, path: std::path::PathBuf, n: usize| {
        let bytes = std::fs::read(dir.join(&path)).unwrap();
        // FNV-1a: the tests only need a checksum that changes with the bytes.
        let sum = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        // As JSON with the contract's core fields, so fields meridian-order adds
        // later (with serde defaults) do not break these fixtures.
        chunks.push(serde_json::json!({
            "stream": stream,
            "start_obt_ns": start,
            "end_obt_ns": start + chunk_ns,
            "version": version_of(stream, start),
            "path": path,
            "records": n as u64,
            "checksum": format!("{sum:016x}"),
            "status": "complete",
            "run": 1,
        }));
    };
    for (stream, name) in [(Stream::Window, "window"), (Stream::Attitude, "attitude")] {
        std::fs::create_dir_all(dir.join("chunks").join(name)).unwrap();
        let _ = stream;
    }
    for (start, ws) in group(windows, chunk_ns, |w| w.obt_ns) {
        let v = version_of(Stream::Window, start);
        let path = std::path::PathBuf::from(format!("chunks/window/{start:020}.v{v}.mprod"));
        meridian_core::product::write_all(dir.join(&path), &ws).unwrap();
        add(Stream::Window, start, path, ws.len());
    }
    for (start, atts) in group(attitude, chunk_ns, |a| a.obt_ns) {
        let v = version_of(Stream::Attitude, start);
        let path = std::path::PathBuf::from(format!("chunks/attitude/{start:020}.v{v}.mprod"));
        meridian_core::product::write_all(dir.join(&path), &atts).unwrap();
        add(Stream::Attitude, start, path, atts.len());
    }
    let manifest = serde_json::json!({
        "format": meridian_order::manifest::MANIFEST_FORMAT,
        "chunk_ns": chunk_ns,
        "run": 1,
        "chunks": chunks,
    });
    std::fs::write(
        dir.join(meridian_order::manifest::MANIFEST_FILE),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    Manifest::load(dir).unwrap()
}

/// A synthetic stretch of sky: `n` transits of random stars (G 12–20) at random
/// times in [t0, t0 + span) through one uniform scan, and the 1 Hz attitude that
/// covers them.
pub fn sim_stretch(
    seed: u64,
    n: usize,
    t0_ns: u64,
    span_ns: u64,
) -> (Vec<SimTransit>, Vec<Attitude>, Scan) {
    let mut rng = rng(seed);
    let scan = Scan {
        q_ref: Quat::from_axis_angle(Vec3::new(-0.4, 0.1, 0.9), 0.8),
        t_ref_ns: 0,
    };
    let transits = (0..n)
        .map(|i| {
            let fov = rng.random_range(0..2u8);
            let row = rng.random_range(1..=7u8);
            let zeta = draw_zeta(&mut rng, row);
            let t = t0_ns + rng.random_range(0..span_ns);
            let g = rng.random_range(12.0..20.0);
            sim_transit(&mut rng, &scan, 1_000_000 + i as u64, fov, row, zeta, t, g)
        })
        .collect();
    let attitude = scan.attitude(
        t0_ns.saturating_sub(5_000_000_000),
        t0_ns + span_ns + 60_000_000_000,
        1_000_000_000,
    );
    (transits, attitude, scan)
}
