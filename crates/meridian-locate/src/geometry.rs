//! From image parameters to the sky: the `observation` record of a window and the
//! `transit` record of a transit's windows (ICD §5 "Direction", §9).
//!
//! Transit uncertainties: along scan, each window's centroid error (samples)
//! becomes an angle through the nominal scan rate (1 sample = 58.968 mas); the
//! transit is the unweighted mean of n window directions, so
//! `sigma_al_mas = √(Σ σ_i²) / n`. Across scan the position is the window centre,
//! known to a 176.8-mas pixel: a uniform error of σ = 176.8/√12 = 51.04 mas that
//! all windows of a transit share (they sit on the same pixel column), so
//! averaging does not reduce it and `sigma_ac_mas` is that value.

use crate::attitude::AttitudeSeries;
use crate::fit::ImageParams;
use meridian_core::instrument::{
    AC_MAX, AC_PIXEL_MAS, N_STRIPS, ROWS, SAMPLE_PERIOD_NS, SPIN_RATE_ARCSEC_PER_S,
    fov_azimuth_rad, mag_from_flux, observation_time_ns, strip_eta_rad, window_zeta_rad,
};
use meridian_core::records::{Observation, Transit, Window};
use meridian_core::{Flag, Flags, Vec3};
use std::borrow::Borrow;
use std::sync::OnceLock;

/// Along-scan angle the sky moves in one sample period at the nominal scan rate.
pub const MAS_PER_SAMPLE: f64 = SAMPLE_PERIOD_NS as f64 * 1e-9 * SPIN_RATE_ARCSEC_PER_S * 1000.0;

/// Across-scan position error of a window centre: a uniform pixel, mas.
pub fn across_scan_sigma_mas() -> f64 {
    AC_PIXEL_MAS / 12f64.sqrt()
}

/// A window's observation record together with its ICRS direction (present
/// exactly when the observation has a position).
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub observation: Observation,
    pub direction: Option<Vec3>,
    /// ICRS unit vector along which the star image moves (decreasing SRS
    /// azimuth), present with `direction`.
    pub scan_direction: Option<Vec3>,
    /// `obt_ns` of the window (sample 0), to order a transit's windows.
    pub window_obt_ns: u64,
}

/// `(sin, cos)` of the SRS azimuth of every (fov, strip) and of the elevation
/// of every (row, ac) window centre.
struct SrsAngles {
    azimuth: [[(f64, f64); N_STRIPS as usize]; 2],
    elevation: Vec<[(f64, f64); AC_MAX as usize + 1]>,
}

fn srs_angles() -> &'static SrsAngles {
    static ANGLES: OnceLock<SrsAngles> = OnceLock::new();
    ANGLES.get_or_init(|| {
        let mut azimuth = [[(0.0, 0.0); N_STRIPS as usize]; 2];
        for (fov, row) in azimuth.iter_mut().enumerate() {
            for (strip, e) in row.iter_mut().enumerate() {
                let phi = fov_azimuth_rad(fov as u8).expect("fov 0 or 1")
                    + strip_eta_rad(strip as u8).expect("strip in range");
                *e = phi.sin_cos();
            }
        }
        let elevation = ROWS
            .map(|row| {
                std::array::from_fn(|ac| {
                    let zeta = window_zeta_rad(row, ac as u16).expect("row and ac in range");
                    zeta.sin_cos()
                })
            })
            .collect();
        SrsAngles { azimuth, elevation }
    })
}

/// The SRS unit vector of a window centre, equal bit for bit to
/// `meridian_core::instrument::srs_direction` (None for indices outside ICD
/// §4.1), from tabulated sines and cosines: a window's direction then costs no
/// trigonometry.
pub fn window_direction_srs(fov: u8, strip: u8, row: u8, ac: u16) -> Option<Vec3> {
    let angles = srs_angles();
    let (sp, cp) = *angles.azimuth.get(fov as usize)?.get(strip as usize)?;
    let row_index = (row as usize).checked_sub(*ROWS.start() as usize)?;
    let (sz, cz) = *angles.elevation.get(row_index)?.get(ac as usize)?;
    Some(Vec3::new(cz * cp, cz * sp, sz))
}

/// The observation of one window: its image parameters, time and direction.
///
/// ra/dec are null when the fit failed, when there is no attitude at `t_obs`
/// (flag `no_attitude`), or when the window's strip, row, fov or ac lie outside
/// ICD §4.1 (flag `no_position`: the direction cannot be formed).
pub fn locate_window(window: &Window, fit: &ImageParams, attitude: &AttitudeSeries) -> Located {
    let t_obs_ns = observation_time_ns(window.obt_ns, fit.centroid);
    let mut flags = fit.flags;
    let srs = window_direction_srs(window.fov, window.strip, window.row, window.ac);
    if srs.is_none() {
        flags.insert(Flag::NoPosition);
    }
    let q = attitude.at(t_obs_ns);
    if q.is_none() {
        flags.insert(Flag::NoAttitude);
    }
    let (direction, scan_direction) = match (srs, q) {
        (Some(u), Some(q)) if fit.is_valid() => {
            // −∂u/∂φ normalised: the along-scan motion of a fixed star.
            let motion = Vec3::new(u.y, -u.x, 0.0).normalized();
            (Some(q.rotate(u)), Some(q.rotate(motion)))
        }
        _ => (None, None),
    };
    let radec = direction.map(|d| d.to_radec_deg());
    Located {
        observation: Observation {
            transit_id: window.transit_id,
            strip: window.strip,
            row: window.row,
            fov: window.fov,
            t_obs_ns,
            centroid: fit.centroid,
            centroid_err: fit.centroid_err,
            flux: fit.flux,
            flux_err: fit.flux_err,
            background: fit.background,
            ra: radec.map(|r| r.0),
            dec: radec.map(|r| r.1),
            flags,
            ac: window.ac,
        },
        direction,
        scan_direction,
        window_obt_ns: window.obt_ns,
    }
}

/// The transit record of all windows of one transit (any order, at least one).
///
/// Position: normalised mean of the directions of windows with a position; time:
/// mean of their `t_obs` (of all windows' when none has a position); `mag`: from
/// the mean flux of windows with a valid fit; `n_windows`: windows received.
/// Flags: `no_position` when no window has a position, `saturated` when any
/// window is saturated.
pub fn transit_record<L: Borrow<Located>>(windows: &[L]) -> Transit {
    // Sums run over the windows in the order given, so the result depends on
    // that order only through floating-point rounding (callers fix the order).
    let all = || windows.iter().map(Borrow::borrow);
    let first = all()
        .min_by_key(|w| (w.window_obt_ns, w.observation.strip))
        .expect("a transit has at least one window");
    let with_position = || all().filter(|w| w.direction.is_some());
    let n_with_position = with_position().count();
    let t_obs_ns = if n_with_position == 0 {
        mean_time(all().map(|w| w.observation.t_obs_ns))
    } else {
        mean_time(with_position().map(|w| w.observation.t_obs_ns))
    };

    let mut flags = Flags::EMPTY;
    if all().any(|w| w.observation.flags.contains(Flag::Saturated)) {
        flags.insert(Flag::Saturated);
    }
    let (mut ra, mut dec, mut sigma_al, mut sigma_ac, mut scan_pa) = (None, None, None, None, None);
    if n_with_position == 0 {
        flags.insert(Flag::NoPosition);
    } else {
        let sum = with_position().fold(Vec3::default(), |acc, w| {
            acc + w.direction.expect("filtered")
        });
        let position = sum.normalized();
        let (r, d) = position.to_radec_deg();
        let motion = with_position()
            .filter_map(|w| w.scan_direction)
            .fold(Vec3::default(), |acc, m| acc + m);
        scan_pa = position_angle_deg(position, motion);
        ra = Some(r);
        dec = Some(d);
        let n = n_with_position as f64;
        let var: f64 = with_position()
            .map(|w| (w.observation.centroid_err * MAS_PER_SAMPLE).powi(2))
            .sum();
        sigma_al = Some(var.sqrt() / n);
        sigma_ac = Some(across_scan_sigma_mas());
    }

    let valid_fluxes = || {
        all()
            .filter(|w| !w.observation.flags.contains(Flag::FitFailed))
            .map(|w| w.observation.flux)
    };
    let n_valid = valid_fluxes().count();
    let mag = (n_valid > 0)
        .then(|| mag_from_flux(valid_fluxes().sum::<f64>() / n_valid as f64))
        .flatten();

    Transit {
        transit_id: first.observation.transit_id,
        fov: first.observation.fov,
        row: first.observation.row,
        t_obs_ns,
        ra,
        dec,
        n_windows: windows.len() as u32,
        mag,
        flags,
        sigma_al_mas: sigma_al,
        sigma_ac_mas: sigma_ac,
        scan_pa_deg: scan_pa,
    }
}

/// Position angle (degrees east of north, [0, 360)) of the tangent direction
/// `along` at `position`; None if `along` has no tangent component. Uses the
/// pole-safe local frame from (ra, dec), so it is defined even at the poles.
pub fn position_angle_deg(position: Vec3, along: Vec3) -> Option<f64> {
    let (ra, dec) = position.to_radec_rad();
    let east = Vec3::new(-ra.sin(), ra.cos(), 0.0);
    let north = Vec3::new(-dec.sin() * ra.cos(), -dec.sin() * ra.sin(), dec.cos());
    let (e, n) = (along.dot(east), along.dot(north));
    if e == 0.0 && n == 0.0 {
        return None;
    }
    let mut pa = e.atan2(n).to_degrees();
    if pa < 0.0 {
        pa += 360.0;
    }
    if pa >= 360.0 {
        pa = 0.0;
    }
    Some(pa)
}

/// Mean of integer times, rounded to the nearest ns, without overflow.
fn mean_time(times: impl Iterator<Item = u64>) -> u64 {
    let (sum, n) = times.fold((0u128, 0u128), |(s, n), t| (s + t as u128, n + 1));
    (sum + n / 2).checked_div(n).unwrap_or(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_angles_are_east_of_north() {
        let p = Vec3::new(1.0, 0.0, 0.0);
        assert!((position_angle_deg(p, Vec3::new(0.0, 0.0, 1.0)).unwrap() - 0.0).abs() < 1e-12);
        assert!((position_angle_deg(p, Vec3::new(0.0, 1.0, 0.0)).unwrap() - 90.0).abs() < 1e-12);
        assert!((position_angle_deg(p, Vec3::new(0.0, 0.0, -1.0)).unwrap() - 180.0).abs() < 1e-12);
        assert!((position_angle_deg(p, Vec3::new(0.0, -1.0, 0.0)).unwrap() - 270.0).abs() < 1e-12);
        // Radial directions have no position angle.
        assert_eq!(position_angle_deg(p, p), None);
        // At the pole the (ra = 0) frame still gives an answer in range.
        let pa = position_angle_deg(Vec3::new(0.0, 0.0, 1.0), Vec3::new(1.0, 0.0, 0.0)).unwrap();
        assert!((0.0..360.0).contains(&pa));
    }

    #[test]
    fn tabulated_srs_directions_equal_the_instrument_model() {
        use meridian_core::instrument::srs_direction;
        let acs = (0..=AC_MAX + 2)
            .step_by(7)
            .chain([AC_MAX, AC_MAX + 1, u16::MAX]);
        for ac in acs {
            for fov in 0..=2 {
                for strip in 0..=N_STRIPS {
                    for row in 0..=8 {
                        let bits = |v: Option<Vec3>| v.map(|v| [v.x, v.y, v.z].map(f64::to_bits));
                        let fast = bits(window_direction_srs(fov, strip, row, ac));
                        let model = bits(srs_direction(fov, strip, row, ac));
                        assert_eq!(fast, model, "fov {fov} strip {strip} row {row} ac {ac}");
                    }
                }
            }
        }
    }

    #[test]
    fn scale_constants_follow_the_icd() {
        // 982.8 µs at 60″/s.
        assert!((MAS_PER_SAMPLE - 58.968).abs() < 1e-9);
        assert!((across_scan_sigma_mas() - 51.037).abs() < 1e-3);
    }

    #[test]
    fn mean_time_rounds_without_overflow() {
        assert_eq!(mean_time([u64::MAX, u64::MAX].into_iter()), u64::MAX);
        assert_eq!(mean_time([1, 2].into_iter()), 2);
        assert_eq!(mean_time(std::iter::empty()), 0);
    }
}
