//! Transits and their CCD windows (ICD §5): when a star crosses each AF strip of
//! a field of view under the true attitude, which row and across-scan pixel it
//! falls on, and the noisy samples of its window.

use super::WindowTruth;
use super::noise;
use super::scan::{Anchored, Instant, SPIN_RATE_RAD_S, ScanLaw, wrap_pi};
use super::sky::Star;
use meridian_core::Vec3;
use meridian_core::geom::RAD_PER_ARCSEC;
use meridian_core::instrument::{
    self, N_STRIPS, ROW_PITCH_ARCSEC, SAMPLE_PERIOD_NS, ac_pixel_for_zeta, fov_azimuth_rad,
    strip_eta_rad,
};
use meridian_core::records::Window;
use meridian_core::time::julian_epoch_tt;
use rand::Rng;
use rand_distr::Normal;

// The platform C library's erfc: several times faster than the pure-Rust `libm`
// one behind `instrument::normal_cdf`, which dominated the simulator's profile.
// Both are accurate to ~1 ulp; the science tests compare with `normal_cdf`.
unsafe extern "C" {
    safe fn erfc(x: f64) -> f64;
}

/// Standard normal CDF Φ(x) through the C library's erfc.
pub fn fast_normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Largest k of ICD §4.1.
const MAX_WINDOW_SAMPLES: usize = 32;

/// Largest |ζ| (radians) at which a star can still fall on a CCD: the outer
/// edge of row 1 or 7.
pub fn max_zeta_rad() -> f64 {
    let half_ccd = (instrument::AC_MAX as f64 + 1.0) / 2.0 * instrument::AC_PIXEL_MAS;
    (3.0 * ROW_PITCH_ARCSEC + half_ccd / 1000.0) * RAD_PER_ARCSEC
}

/// Sine of the largest elevation a candidate star may have at a block's anchor:
/// the focal plane's edge plus 100″ for the drift of the scan circle.
fn candidate_sin_zeta() -> f64 {
    static SIN: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *SIN.get_or_init(|| (max_zeta_rad() + 100.0 * RAD_PER_ARCSEC).sin())
}

/// Noise and detection parameters of window generation.
#[derive(Debug, Clone, Copy)]
pub struct WindowModel {
    pub background_min_e: f64,
    pub background_max_e: f64,
    pub onboard_mag_sigma: f64,
}

/// One transit with its windows, before its transit_id is known.
#[derive(Debug, Clone)]
pub struct Transit {
    /// Time the star crosses the centre (η = 0) of its field of view.
    pub t_ref_ns: u64,
    pub source_id: i64,
    pub fov: u8,
    pub windows: Vec<Window>,
    pub truth: Vec<WindowTruth>,
}

impl Transit {
    /// OBT of the transit's earliest window.
    pub fn first_obt_ns(&self) -> u64 {
        self.windows
            .iter()
            .map(|w| w.obt_ns)
            .min()
            .unwrap_or(self.t_ref_ns)
    }
}

/// The crossings of the two field centres (index = fov) by `star` within
/// `window_s` seconds of `t0` (±5 s) under the true attitude, each with its
/// elevation. Solved from anchor `t0` in a way that depends only on
/// (star, t0) — so two blocks sharing a boundary decide alike. `anchored` is
/// `law.anchored(t0)`, computed once per anchor.
pub fn crossings_from_anchor(
    law: &ScanLaw,
    anchored: &Anchored,
    star: &Star,
    window_s: (f64, f64),
) -> [Option<(Instant, f64)>; 2] {
    let t0 = anchored.anchor_ns();
    let u = star.direction_at(julian_epoch_tt(t0));
    let Some(az) = anchored.frame.azimuth_if_within(u, candidate_sin_zeta()) else {
        return [None, None];
    };
    [0u8, 1].map(|fov| {
        let phi = fov_azimuth_rad(fov).expect("fov 0 or 1");
        let tau = wrap_pi(az - phi) / SPIN_RATE_RAD_S;
        (window_s.0 - 5.0..=window_s.1 + 5.0)
            .contains(&tau)
            .then(|| {
                let guess = Instant::at(t0).plus(tau);
                law.solve_crossing_in(anchored, u, phi, guess, SPIN_RATE_RAD_S)
            })
    })
}

/// The CCD row whose centre is nearest to elevation `zeta` (radians).
fn nearest_row(zeta: f64) -> u8 {
    let r = (zeta / (ROW_PITCH_ARCSEC * RAD_PER_ARCSEC)).round() + 4.0;
    r.clamp(1.0, 7.0) as u8
}

/// A star's crossing of a field centre (η = 0) under the true attitude.
#[derive(Debug, Clone, Copy)]
pub struct Crossing {
    pub fov: u8,
    pub t_ref: Instant,
    /// Elevation then, radians.
    pub zeta: f64,
}

/// Simulates the windows of one transit whose field-centre crossing is `t_ref`.
/// Windows whose sample 0 falls outside `[keep.0, keep.1)` are left out.
pub fn simulate_transit(
    law: &ScanLaw,
    star: &Star,
    crossing: Crossing,
    model: &WindowModel,
    rng: &mut impl Rng,
    keep: (u64, u64),
) -> Transit {
    let Crossing {
        fov,
        t_ref,
        zeta: zeta_ref,
    } = crossing;
    let row = nearest_row(zeta_ref);
    let phi = fov_azimuth_rad(fov).expect("fov 0 or 1");
    let k = instrument::samples_for_mag(star.g);
    let flux = instrument::flux_from_mag(star.g);
    let background = model.background_min_e
        + (model.background_max_e - model.background_min_e) * rng.random::<f64>();
    let onboard_g =
        star.g + model.onboard_mag_sigma * rng.sample::<f64, _>(rand_distr::StandardNormal);
    let onboard_mag = (onboard_g * 1000.0).round().clamp(0.0, u16::MAX as f64) as u16;
    let read_noise = Normal::new(0.0, instrument::READ_NOISE_E).expect("positive sigma");
    let t = SAMPLE_PERIOD_NS as f64;
    let mut out = Transit {
        t_ref_ns: t_ref.round_ns(),
        source_id: star.source_id,
        fov,
        windows: Vec::with_capacity(N_STRIPS as usize),
        truth: Vec::with_capacity(N_STRIPS as usize),
    };
    // Every strip's guess shares t_ref's anchor: its attitude terms once.
    let anchored = law.anchored(t_ref.anchor_ns);
    let rate = law.azimuth_rate_in(
        &anchored,
        star.direction_at(julian_epoch_tt(t_ref.round_ns())),
        t_ref,
    );
    let mut cdf = [0.0f64; MAX_WINDOW_SAMPLES + 1];
    for strip in 0..N_STRIPS {
        let eta = strip_eta_rad(strip).expect("strip < 9");
        let guess = t_ref.plus(-eta / rate);
        let u = star.direction_at(julian_epoch_tt(guess.round_ns()));
        let (t_cross, zeta) = law.solve_crossing_in(&anchored, u, phi + eta, guess, rate);
        // Each strip draws from its own stream, so a window's randomness does not
        // depend on whether its neighbours exist or are kept.
        let mut rng = rand_pcg::Pcg64Mcg::new(rng.random::<u128>() | 1);
        let rng = &mut rng;
        let jitter: f64 = rng.random::<f64>() - 0.5;
        let Some(ac) = ac_pixel_for_zeta(row, zeta) else {
            continue;
        };
        // On-board detection puts the image near the window centre.
        let c_nominal = k as f64 / 2.0 + jitter;
        let obt_ns = t_cross.plus(-c_nominal * t * 1e-9).round_ns();
        if obt_ns < keep.0 || obt_ns >= keep.1 {
            continue;
        }
        let centroid = t_cross.ns_after(obt_ns) / t;
        // Φ at each sample boundary once: λ_i = B + F (Φ_{i+1} − Φ_i), the
        // formula of `instrument::expected_charge` from a table (see `noise`).
        let cdf = &mut cdf[..k as usize + 1];
        noise::lsf_edges(centroid, cdf);
        let samples = cdf
            .windows(2)
            .map(|edge| {
                let lambda = background + flux * (edge[1] - edge[0]);
                let photons = noise::poisson(lambda, rng);
                // `read_noise.sample(rng)`, draw for draw.
                let read = read_noise.mean() + read_noise.std_dev() * noise::standard_normal(rng);
                noise::adu_from_charge(photons + read)
            })
            .collect();
        let (ra_deg, dec_deg) = u.to_radec_deg();
        out.truth.push(WindowTruth {
            transit_id: 0,
            strip,
            row,
            fov,
            ac,
            obt_ns,
            source_id: star.source_id,
            centroid,
            flux,
            background,
            t_obs_ns: instrument::observation_time_ns(obt_ns, centroid),
            ra_deg,
            dec_deg,
            g: star.g,
        });
        out.windows.push(Window {
            transit_id: 0,
            strip,
            row,
            fov,
            ac,
            obt_ns,
            onboard_mag,
            samples,
            seq: 0,
            packet_obt_ns: 0,
            packet_hash: 0,
        });
    }
    out
}

/// SRS unit vector of the centre of field `fov` (η = 0, ζ = 0).
pub fn fov_centre_srs(fov: u8) -> Vec3 {
    instrument::srs_from_angles(fov_azimuth_rad(fov).expect("fov 0 or 1"), 0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_normal_cdf_agrees_with_the_instrument_model() {
        for i in -4000..=4000 {
            let x = i as f64 / 400.0;
            let (a, b) = (
                super::fast_normal_cdf(x),
                meridian_core::instrument::normal_cdf(x),
            );
            assert!(
                (a - b).abs() <= 4.0 * f64::EPSILON * b.max(1e-300),
                "{x}: {a} {b}"
            );
        }
    }
}
