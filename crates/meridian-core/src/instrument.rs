//! The instrument model of ICD §5: field-of-view and CCD field angles, the window
//! (line spread function, gain, bias, noise) and the photometric zero point.
//!
//! Shared by the simulator (which draws noise around [`expected_charge`]) and the
//! image-parameter fit (which maximises the likelihood of the same model), so both
//! sides of every end-to-end test use one definition.

use crate::geom::{RAD_PER_ARCSEC, RAD_PER_MAS, Vec3};

/// Basic angle between the two fields of view, degrees.
pub const BASIC_ANGLE_DEG: f64 = 106.5;
/// Along-scan angle between adjacent AF strips, arcsec.
pub const STRIP_PITCH_ARCSEC: f64 = 291.0;
/// Across-scan angle between adjacent CCD rows, arcsec.
pub const ROW_PITCH_ARCSEC: f64 = 360.0;
/// Across-scan pixel scale, mas.
pub const AC_PIXEL_MAS: f64 = 176.8;
/// Across-scan pixel of the CCD row's centre.
pub const AC_CENTRE_PIXEL: f64 = 982.5;
/// Largest across-scan pixel of a window centre.
pub const AC_MAX: u16 = 1965;
/// TDI sample period, ns.
pub const SAMPLE_PERIOD_NS: u64 = 982_800;
/// Gaussian line spread function width, samples.
pub const LSF_SIGMA: f64 = 0.8;
/// Gain, e⁻ per ADU.
pub const GAIN_E_PER_ADU: f64 = 4.0;
/// Bias, ADU.
pub const BIAS_ADU: f64 = 1000.0;
/// Read-out noise, e⁻ per sample.
pub const READ_NOISE_E: f64 = 12.0;
/// Photometric zero point: G of a star giving 1 e⁻ per CCD transit.
pub const ZERO_POINT_G: f64 = 27.3;
/// A sample of this value is saturated.
pub const SATURATION_ADU: u16 = 65535;
/// Nominal spin rate, arcsec per second (about +z of the SRS).
pub const SPIN_RATE_ARCSEC_PER_S: f64 = 60.0;
/// Number of AF strips (AF1..AF9 = 0..8).
pub const N_STRIPS: u8 = 9;
/// CCD rows are numbered 1..=7.
pub const ROWS: std::ops::RangeInclusive<u8> = 1..=7;

/// SRS azimuth of a field of view (0 preceding, 1 following), radians.
pub fn fov_azimuth_rad(fov: u8) -> Option<f64> {
    let half = (BASIC_ANGLE_DEG / 2.0).to_radians();
    match fov {
        0 => Some(half),
        1 => Some(-half),
        _ => None,
    }
}

/// Along-scan field angle η of strip s: `(4 − s) × 291″`, radians.
pub fn strip_eta_rad(strip: u8) -> Option<f64> {
    (strip < N_STRIPS).then_some((4.0 - strip as f64) * STRIP_PITCH_ARCSEC * RAD_PER_ARCSEC)
}

/// Across-scan angle ζ of row r's centre: `(r − 4) × 360″`, radians.
pub fn row_zeta_rad(row: u8) -> Option<f64> {
    ROWS.contains(&row)
        .then_some((row as f64 - 4.0) * ROW_PITCH_ARCSEC * RAD_PER_ARCSEC)
}

/// Across-scan angle of a window centre: `ζ_r + (ac − 982.5) × 176.8 mas`, radians.
pub fn window_zeta_rad(row: u8, ac: u16) -> Option<f64> {
    if ac > AC_MAX {
        return None;
    }
    Some(row_zeta_rad(row)? + (ac as f64 - AC_CENTRE_PIXEL) * AC_PIXEL_MAS * RAD_PER_MAS)
}

/// The across-scan pixel whose window centre is nearest to elevation `zeta`
/// (radians) in `row`, if the star falls on that row's CCD.
pub fn ac_pixel_for_zeta(row: u8, zeta: f64) -> Option<u16> {
    let offset = (zeta - row_zeta_rad(row)?) / (AC_PIXEL_MAS * RAD_PER_MAS);
    let ac = (offset + AC_CENTRE_PIXEL).round();
    (0.0..=AC_MAX as f64).contains(&ac).then_some(ac as u16)
}

/// Unit vector in the SRS of the centre of a window: azimuth `φ_fov + η_strip`,
/// elevation `ζ` (ICD §5 "Direction"). None for out-of-range indices.
pub fn srs_direction(fov: u8, strip: u8, row: u8, ac: u16) -> Option<Vec3> {
    let phi = fov_azimuth_rad(fov)? + strip_eta_rad(strip)?;
    let zeta = window_zeta_rad(row, ac)?;
    Some(srs_from_angles(phi, zeta))
}

/// Unit vector from SRS azimuth and elevation, radians.
pub fn srs_from_angles(phi: f64, zeta: f64) -> Vec3 {
    let (sz, cz) = zeta.sin_cos();
    let (sp, cp) = phi.sin_cos();
    Vec3::new(cz * cp, cz * sp, sz)
}

/// Flux in e⁻ per CCD transit of a star of magnitude G: `10^(−0.4 (G − 27.3))`.
pub fn flux_from_mag(g: f64) -> f64 {
    10f64.powf(-0.4 * (g - ZERO_POINT_G))
}

/// Magnitude G of a flux in e⁻ (inverse of [`flux_from_mag`]); None unless positive.
pub fn mag_from_flux(flux: f64) -> Option<f64> {
    (flux > 0.0).then(|| ZERO_POINT_G - 2.5 * flux.log10())
}

/// Standard normal cumulative distribution Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Fraction of a star's flux that falls in sample i when its image centre is at
/// c (samples): `Φ((i + 1 − c)/σ) − Φ((i − c)/σ)`.
pub fn lsf_fraction(i: usize, c: f64) -> f64 {
    let i = i as f64;
    normal_cdf((i + 1.0 - c) / LSF_SIGMA) - normal_cdf((i - c) / LSF_SIGMA)
}

/// Expected charge λ_i (e⁻) of sample i: `B + F · lsf_fraction(i, c)`.
pub fn expected_charge(i: usize, centroid: f64, flux: f64, background: f64) -> f64 {
    background + flux * lsf_fraction(i, centroid)
}

/// Recorded value of a sample holding `charge_e` electrons after read-out noise:
/// `round(1000 + charge / 4.0)` clamped to 0..65535 (ICD §5).
pub fn adu_from_charge(charge_e: f64) -> u16 {
    let adu = (BIAS_ADU + charge_e / GAIN_E_PER_ADU).round();
    if adu.is_nan() {
        0
    } else {
        adu.clamp(0.0, SATURATION_ADU as f64) as u16
    }
}

/// Electrons above bias of a recorded sample value (no noise removed).
pub fn charge_from_adu(adu: u16) -> f64 {
    (adu as f64 - BIAS_ADU) * GAIN_E_PER_ADU
}

/// Observation time of a window: `t_obs = obt_ns + c × T`, rounded to the ns.
/// Negative or non-finite centroids clamp to the window start.
pub fn observation_time_ns(obt_ns: u64, centroid: f64) -> u64 {
    let offset = (centroid * SAMPLE_PERIOD_NS as f64).round();
    if offset.is_finite() && offset > 0.0 {
        obt_ns.saturating_add(offset as u64)
    } else {
        obt_ns
    }
}

/// Number of along-scan samples the on-board software gives a star (ICD §4.1):
/// 18 for stars brighter than G = 13, 12 otherwise.
pub fn samples_for_mag(g: f64) -> u8 {
    if g < 13.0 { 18 } else { 12 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_angles_follow_icd() {
        assert_eq!(strip_eta_rad(4), Some(0.0));
        assert!((strip_eta_rad(0).unwrap() - 4.0 * 291.0 * RAD_PER_ARCSEC).abs() < 1e-18);
        assert!((strip_eta_rad(8).unwrap() + 4.0 * 291.0 * RAD_PER_ARCSEC).abs() < 1e-18);
        assert_eq!(strip_eta_rad(9), None);
        assert_eq!(row_zeta_rad(4), Some(0.0));
        assert_eq!(row_zeta_rad(0), None);
        assert_eq!(row_zeta_rad(8), None);
        let z = window_zeta_rad(4, 1965).unwrap();
        assert!((z - 982.5 * 176.8 * RAD_PER_MAS).abs() < 1e-18);
        assert_eq!(window_zeta_rad(4, 1966), None);
        assert!((fov_azimuth_rad(0).unwrap() - 53.25f64.to_radians()).abs() < 1e-15);
        assert!((fov_azimuth_rad(1).unwrap() + 53.25f64.to_radians()).abs() < 1e-15);
    }

    #[test]
    fn ac_pixel_inverts_window_zeta() {
        for row in ROWS {
            for ac in [0u16, 1, 982, 983, 1965] {
                let z = window_zeta_rad(row, ac).unwrap();
                assert_eq!(ac_pixel_for_zeta(row, z), Some(ac));
            }
        }
        assert_eq!(ac_pixel_for_zeta(4, 1000.0 * 176.8 * RAD_PER_MAS), None);
    }

    #[test]
    fn lsf_sums_to_one_over_a_wide_window() {
        let total: f64 = (0..40).map(|i| lsf_fraction(i, 20.3)).sum();
        assert!((total - 1.0).abs() < 1e-12);
        // Symmetric about the centre of a sample.
        assert!((lsf_fraction(5, 5.5) - 0.4680).abs() < 1e-3);
    }

    #[test]
    fn zero_point_and_quantisation() {
        assert!((flux_from_mag(27.3) - 1.0).abs() < 1e-12);
        assert!((mag_from_flux(flux_from_mag(15.0)).unwrap() - 15.0).abs() < 1e-12);
        assert_eq!(mag_from_flux(0.0), None);
        assert_eq!(adu_from_charge(0.0), 1000);
        assert_eq!(adu_from_charge(-1e9), 0);
        assert_eq!(adu_from_charge(1e12), 65535);
        assert_eq!(adu_from_charge(f64::NAN), 0);
        assert_eq!(adu_from_charge(6.0), 1002); // 1001.5 rounds away from zero
        assert_eq!(observation_time_ns(100, 2.0), 100 + 2 * SAMPLE_PERIOD_NS);
        assert_eq!(observation_time_ns(100, f64::NAN), 100);
    }
}
