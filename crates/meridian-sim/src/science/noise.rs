//! Fast exact pieces of the window noise model (ICD §5): a tabulated line spread
//! function and the ADU quantisation without a libm `round` call.
//!
//! They replace, in the simulator's hot loop, `erfc` (13 per window) and
//! `f64::round` (a libm call on baseline x86-64). Each is checked by a test
//! against the slow reference. (Poisson draws stay with `rand_distr`: its
//! Ahrens–Dieter sampler is cheap to build per λ and was faster here than a
//! PTRS sampler tried.)

use std::sync::OnceLock;

/// Beyond ±X_MAX, Φ is 0 or 1 to better than 1e-18.
const X_MAX: f64 = 9.0;
/// Nodes per unit of x: with cubic Hermite interpolation on exact Φ and φ the
/// absolute error of Φ is below 1e-11 (a test checks 2e-11), i.e. below
/// 1e-3 e⁻ of λ even for a 5·10⁷ e⁻ star.
const PER_UNIT: f64 = 128.0;
const STEP: f64 = 1.0 / PER_UNIT;
const N_NODES: usize = (2.0 * X_MAX * PER_UNIT) as usize + 2;

/// Table nodes between successive sample edges: (1/σ_LSF) × 128 = 160, so all
/// the edges of a window share one fractional position and Hermite basis.
const EDGE_STRIDE: usize = 160;

/// Φ and φ·STEP of the standard normal at each node.
fn nodes() -> &'static [[f64; 2]] {
    static NODES: OnceLock<Vec<[f64; 2]>> = OnceLock::new();
    NODES.get_or_init(|| {
        (0..N_NODES)
            .map(|j| {
                let x = -X_MAX + j as f64 * STEP;
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                [super::windows::fast_normal_cdf(x), pdf * STEP]
            })
            .collect()
    })
}

/// `Φ((j − centroid)/σ_LSF)` for each `j < out.len()`: the LSF's cumulative at a
/// window's sample boundaries, so `λ_i = B + F (out[i+1] − out[i])`.
pub fn lsf_edges(centroid: f64, out: &mut [f64]) {
    debug_assert_eq!(
        EDGE_STRIDE as f64,
        PER_UNIT / meridian_core::instrument::LSF_SIGMA
    );
    let nodes = nodes();
    let u0 = (-centroid / meridian_core::instrument::LSF_SIGMA + X_MAX) * PER_UNIT;
    if !u0.is_finite() {
        out.fill(if u0 > 0.0 { 1.0 } else { 0.0 });
        return;
    }
    // Floor by truncation (`f64::floor` is a libm call on baseline x86-64).
    let u0 = u0.clamp(-1e9, 1e9);
    let mut base = u0 as i64;
    if base as f64 > u0 {
        base -= 1;
    }
    let t = u0 - base as f64;
    let (t2, t3) = (t * t, t * t * t);
    let h00 = 2.0 * t3 - 3.0 * t2 + 1.0;
    let h10 = t3 - 2.0 * t2 + t;
    let h01 = -2.0 * t3 + 3.0 * t2;
    let h11 = t3 - t2;
    let last = (N_NODES - 1) as i64;
    for (j, e) in out.iter_mut().enumerate() {
        let idx = base + (j * EDGE_STRIDE) as i64;
        *e = if idx < 0 {
            0.0
        } else if idx >= last {
            1.0
        } else {
            let a = nodes[idx as usize];
            let b = nodes[idx as usize + 1];
            h00 * a[0] + h10 * a[1] + h01 * b[0] + h11 * b[1]
        };
    }
}

/// `instrument::adu_from_charge` bit for bit: `round(1000 + charge/4)`
/// (half away from zero) clamped to 0..=65535, NaN to 0.
#[inline]
pub fn adu_from_charge(charge_e: f64) -> u16 {
    let x =
        meridian_core::instrument::BIAS_ADU + charge_e / meridian_core::instrument::GAIN_E_PER_ADU;
    if x.is_nan() {
        return 0;
    }
    // Clamping before rounding changes nothing: the bounds are integers.
    let x = x.clamp(-1.0, 65536.0);
    let whole = x as i64; // truncation toward zero, exact here
    let frac = x - whole as f64; // exact for |x| < 2^52
    let rounded = if frac >= 0.5 {
        whole + 1
    } else if frac <= -0.5 {
        whole - 1
    } else {
        whole
    };
    rounded.clamp(0, u16::MAX as i64) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::instrument;

    #[test]
    fn lsf_edges_match_erfc_to_2e_11() {
        let mut worst: f64 = 0.0;
        let mut out = [0.0; 33];
        let mut c = -3.0;
        while c < 40.0 {
            lsf_edges(c, &mut out);
            for (j, &e) in out.iter().enumerate() {
                let exact = instrument::normal_cdf((j as f64 - c) / instrument::LSF_SIGMA);
                worst = worst.max((e - exact).abs());
            }
            c += 0.001_37;
        }
        assert!(worst < 2e-11, "worst error {worst:e}");
        lsf_edges(f64::NAN, &mut out);
        assert!(out.iter().all(|&e| e == 0.0));
        lsf_edges(-1e300, &mut out);
        assert!(out.iter().all(|&e| e == 1.0));
    }

    #[test]
    fn adu_matches_the_instrument_rounding_bit_for_bit() {
        let mut xs = vec![
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
            0.0,
            -0.0,
            1e300,
            -1e300,
        ];
        for i in -20_000i64..300_000 {
            // Exact halves and their neighbours in ADU, then charges around them.
            let adu = i as f64 * 0.5 - 1200.0;
            for d in [-1e-9, 0.0, 1e-9] {
                xs.push((adu + d - 1000.0) * 4.0);
            }
            xs.push((adu - 1000.0) * 4.0 + 0.49999999999999994);
        }
        for x in xs {
            assert_eq!(adu_from_charge(x), instrument::adu_from_charge(x), "{x}");
        }
    }
}
