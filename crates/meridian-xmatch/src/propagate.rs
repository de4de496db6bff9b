//! Proper-motion propagation of catalogue positions (ICD §7): rigorous for zero
//! parallax and zero radial velocity.

use meridian_core::Vec3;
use meridian_core::geom::RAD_PER_MAS;

/// Position at `ref_epoch + dt_yr` of a source whose unit vector at `ref_epoch` is
/// `r`, with proper motion `pmra` (µα*, mas/yr) and `pmdec` (mas/yr):
/// `u = (r + µ Δt) / |r + µ Δt|`, `µ = p µα* + q µδ`, with
/// `p = (−sin α, cos α, 0)` and `q = (−sin δ cos α, −sin δ sin α, cos δ)`.
///
/// The trigonometric values are taken from `r` itself (`cos δ = |(x, y)|`,
/// `cos α = x / cos δ`, ...), which equals the ICD formula to rounding and keeps
/// the index free of a second copy of the position. At an exact pole (where
/// `r` has no x–y part and α is undefined) α = 0 is used.
#[inline]
pub fn propagate(r: Vec3, pmra: f64, pmdec: f64, dt_yr: f64) -> Vec3 {
    if pmra == 0.0 && pmdec == 0.0 {
        return r;
    }
    let cos_dec = r.x.hypot(r.y);
    let (cos_ra, sin_ra) = if cos_dec > 0.0 {
        (r.x / cos_dec, r.y / cos_dec)
    } else {
        (1.0, 0.0)
    };
    let sin_dec = r.z;
    let a = pmra * RAD_PER_MAS * dt_yr;
    let d = pmdec * RAD_PER_MAS * dt_yr;
    let moved = Vec3::new(
        r.x - sin_ra * a - sin_dec * cos_ra * d,
        r.y + cos_ra * a - sin_dec * sin_ra * d,
        r.z + cos_dec * d,
    );
    moved.normalized()
}

/// Total proper motion |µ| in mas/yr; the angle a source moves in Δt years is
/// `atan(|µ| Δt) ≤ |µ| Δt`, which bounds the search margin.
#[inline]
pub fn total_pm(pmra: f64, pmdec: f64) -> f64 {
    pmra.hypot(pmdec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::geom::MAS_PER_RAD;

    /// The ICD §7 formula written out with sin/cos of α and δ.
    fn icd(ra_deg: f64, dec_deg: f64, pmra: f64, pmdec: f64, dt: f64) -> Vec3 {
        let (sa, ca) = ra_deg.to_radians().sin_cos();
        let (sd, cd) = dec_deg.to_radians().sin_cos();
        let r = Vec3::new(cd * ca, cd * sa, sd);
        let p = Vec3::new(-sa, ca, 0.0);
        let q = Vec3::new(-sd * ca, -sd * sa, cd);
        let mu = p * (pmra * RAD_PER_MAS) + q * (pmdec * RAD_PER_MAS);
        (r + mu * dt).normalized()
    }

    #[test]
    fn matches_icd_formula_everywhere_including_poles() {
        for &(ra, dec) in &[
            (0.0, 0.0),
            (359.9, 45.0),
            (123.4, -89.999999),
            (10.0, 90.0),
            (200.0, -90.0),
        ] {
            for &(pa, pd) in &[(10_000.0, -5000.0), (0.0, 1.0), (-3.0, 0.0)] {
                let r = Vec3::from_radec_deg(ra, dec);
                let ours = propagate(r, pa, pd, 12.5);
                let theirs = icd(ra, dec, pa, pd, 12.5);
                assert!(ours.angle_to(theirs) * MAS_PER_RAD < 1e-6, "{ra} {dec}");
            }
        }
    }

    #[test]
    fn moves_by_atan_of_pm_times_dt_in_the_right_direction() {
        let r = Vec3::from_radec_deg(30.0, 0.0);
        // 1000 mas/yr north for 10 yr: dec grows by atan(10″) ≈ 10″.
        let u = propagate(r, 0.0, 1000.0, 10.0);
        let (ra, dec) = u.to_radec_deg();
        assert!((ra - 30.0).abs() < 1e-12);
        let expected = (10_000.0 / MAS_PER_RAD).atan() * MAS_PER_RAD;
        assert!((dec * 3.6e6 - expected).abs() < 1e-6);
        // Eastward motion increases ra, backwards in time decreases it.
        let (ra_e, _) = propagate(r, 1000.0, 0.0, 1.0).to_radec_deg();
        let (ra_w, _) = propagate(r, 1000.0, 0.0, -1.0).to_radec_deg();
        assert!(ra_e > 30.0 && ra_w < 30.0);
    }
}
