//! Fast exact pieces of the window noise model (ICD §5): a tabulated line spread
//! function, a Poisson sampler, and the ADU quantisation.
//!
//! They replace, in the simulator's hot loop, `erfc` (13 per window),
//! `rand_distr::Poisson` (built anew per sample, with two software `floor`
//! calls per draw) and `f64::round` (libm calls on baseline x86-64). Each is
//! checked by a test against the reference it replaces: the Poisson sampler
//! draw for draw, the others bit for bit or to 2e-11.

use rand::Rng;
use rand_distr::{Distribution, Exp1};
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

/// One standard normal deviate, identical draw for draw (same values, same
/// random numbers consumed) to `rng.sample(rand_distr::StandardNormal)`:
/// rand_distr 0.5's ziggurat (ZIGNOR) with its own tables, its fast path
/// (about 99 % of draws) inlined into the window loop, which makes two of
/// these per sample.
#[inline(always)]
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    use super::ziggurat_tables::ZIG_NORM_X;
    loop {
        let bits = rng.next_u64();
        let i = bits as usize & 0xff;
        // 52 random bits as a double in [2, 4), less 3: [−1, 1).
        let u = f64::from_bits((1024u64 << 52) | (bits >> 12)) - 3.0;
        let x = u * ZIG_NORM_X[i];
        if x.abs() < ZIG_NORM_X[i + 1] {
            return x;
        }
        if let Some(x) = normal_slow_path(rng, i, u, x) {
            return x;
        }
    }
}

/// The ziggurat's base strip (i = 0: the tail) and wedge tests; `None` means
/// draw again.
#[cold]
#[inline(never)]
fn normal_slow_path<R: Rng + ?Sized>(rng: &mut R, i: usize, u: f64, x: f64) -> Option<f64> {
    use super::ziggurat_tables::{ZIG_NORM_F, ZIG_NORM_R};
    use rand::distr::Open01;
    if i == 0 {
        // The tail, by Marsaglia's method, as rand_distr's `zero_case`.
        let (mut x, mut y) = (1.0f64, 0.0f64);
        while -2.0 * y < x * x {
            let x_: f64 = rng.sample(Open01);
            let y_: f64 = rng.sample(Open01);
            x = x_.ln() / ZIG_NORM_R;
            y = y_.ln();
        }
        return Some(if u < 0.0 {
            x - ZIG_NORM_R
        } else {
            ZIG_NORM_R - x
        });
    }
    let pdf = (-x * x / 2.0).exp();
    (ZIG_NORM_F[i + 1] + (ZIG_NORM_F[i] - ZIG_NORM_F[i + 1]) * rng.random::<f64>() < pdf)
        .then_some(x)
}

/// `y.floor()` by truncation (`f64::floor` is a software routine on baseline
/// x86-64); exact for |y| < 2^63, which the callers guarantee.
#[inline]
fn floor(y: f64) -> f64 {
    let t = y as i64 as f64;
    if t > y { t - 1.0 } else { t }
}

/// One draw from Poisson(λ), identical draw for draw (same values, same
/// random numbers consumed) to `rand_distr::Poisson::new(λ)?.sample(rng)`, and
/// 0 where that constructor fails (λ ≤ 0, NaN, infinite or beyond 1.844e19).
///
/// For λ ≥ 12 this is rand_distr 0.5's Ahrens–Dieter (1982) method PD,
/// restated so that the set-up the common path needs is all a draw pays for
/// (the constants of step F only when it is reached) and `floor` is inlined.
/// Below 12 it is rand_distr itself (Knuth's method).
#[inline(always)]
pub fn poisson(lambda: f64, rng: &mut impl Rng) -> f64 {
    if !(12.0..=rand_distr::Poisson::<f64>::MAX_LAMBDA).contains(&lambda) {
        return rand_distr::Poisson::new(lambda)
            .map(|p| p.sample(rng))
            .unwrap_or(0.0);
    }
    let s = lambda.sqrt();
    let l = floor(lambda - 1.1484);
    // Step N: a normal deviate, accepted at once far enough up.
    let g = lambda + s * standard_normal(rng);
    if g >= 0.0 {
        let k1 = floor(g);
        // Step I.
        if k1 >= l {
            return k1;
        }
        // Step S.
        let u: f64 = rng.random();
        let d = 6.0 * lambda.powi(2);
        if d * u >= (lambda - k1).powi(3) {
            return k1;
        }
        let pd = StepF::new(lambda, s);
        let (px, py, fx, fy) = pd.f(k1);
        if fy * (1.0 - u) <= py * (px - fx).exp() {
            return k1;
        }
    }
    let pd = StepF::new(lambda, s);
    let c = 0.1069 / lambda;
    loop {
        // Step E: double-exponential proposals.
        let e: f64 = Exp1.sample(rng);
        let u: f64 = rng.random::<f64>() * 2.0 - 1.0;
        let t = 1.8 + e * u.signum();
        if t > -0.6744 {
            let k2 = floor(lambda + s * t);
            let (px, py, fx, fy) = pd.f(k2);
            // Step H.
            if c * u.abs() <= py * (px + e).exp() - fy * (fx + e).exp() {
                return k2;
            }
        }
    }
}

/// The constants and function F of method PD (rand_distr 0.5's `RejectionMethod`).
struct StepF {
    lambda: f64,
    s: f64,
    c0: f64,
    c1: f64,
    c2: f64,
    c3: f64,
    omega: f64,
}

impl StepF {
    fn new(lambda: f64, s: f64) -> Self {
        let b1 = (1.0 / 24.0) / lambda;
        let b2 = 0.3 * b1 * b1;
        let c3 = (1.0 / 7.0) * b1 * b2;
        let c2 = b2 - 15.0 * c3;
        let c1 = b1 - 6.0 * b2 + 45.0 * c3;
        let c0 = 1.0 - b1 + 3.0 * b2 - 15.0 * c3;
        Self {
            lambda,
            s,
            c0,
            c1,
            c2,
            c3,
            omega: 1.0 / (2.0 * std::f64::consts::PI).sqrt() / lambda.sqrt(),
        }
    }

    fn f(&self, k: f64) -> (f64, f64, f64, f64) {
        const FACT: [f64; 10] = [
            1.0, 1.0, 2.0, 6.0, 24.0, 120.0, 720.0, 5040.0, 40320.0, 362880.0,
        ];
        const A: [f64; 10] = [
            -0.5000000002,
            0.3333333343,
            -0.2499998565,
            0.1999997049,
            -0.1666848753,
            0.1428833286,
            -0.1241963125,
            0.1101687109,
            -0.1142650302,
            0.1055093006,
        ];
        let lambda = self.lambda;
        let (px, py) = if k < 10.0 {
            (-lambda, lambda.powf(k) / FACT[k as usize])
        } else {
            let delta = (12.0 * k).recip();
            let delta = delta - 4.8 * delta.powi(3);
            let v = (lambda - k) / k;
            let px = if v.abs() <= 0.25 {
                k * v.powi(2) * A.iter().rev().fold(0.0, |acc, &a| acc * v + a) - delta
            } else {
                k * (1.0 + v).ln() - (lambda - k) - delta
            };
            (px, 1.0 / (2.0 * std::f64::consts::PI).sqrt() / k.sqrt())
        };
        let x = (k - lambda + 0.5) / self.s;
        let fx = -0.5 * x * x;
        let fy = self.omega * (((self.c3 * x * x + self.c2) * x * x + self.c1) * x * x + self.c0);
        (px, py, fx, fy)
    }
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

    #[test]
    fn poisson_matches_rand_distr_draw_for_draw() {
        use rand::SeedableRng;
        let mut pick = rand_pcg::Pcg64Mcg::seed_from_u64(99);
        let mut lambdas = vec![0.0, -1.0, f64::NAN, f64::INFINITY, 1e20, 0.3, 11.999, 12.0];
        for _ in 0..20_000 {
            // Log-uniform over the simulator's range, 1 to 1e9 e-.
            lambdas.push(10f64.powf(9.0 * pick.random::<f64>()));
        }
        for (i, &lambda) in lambdas.iter().enumerate() {
            let mut a = rand_pcg::Pcg64Mcg::seed_from_u64(i as u64);
            let mut b = a.clone();
            for _ in 0..20 {
                let reference = rand_distr::Poisson::new(lambda)
                    .map(|p| p.sample(&mut a))
                    .unwrap_or(0.0);
                assert_eq!(
                    poisson(lambda, &mut b).to_bits(),
                    reference.to_bits(),
                    "λ={lambda}"
                );
            }
            // Same random numbers consumed.
            assert_eq!(a.random::<u64>(), b.random::<u64>(), "λ={lambda}");
        }
    }

    #[test]
    fn standard_normal_matches_rand_distr_draw_for_draw() {
        use rand::{RngCore, SeedableRng};
        let mut a = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        let mut b = a.clone();
        let (mut tail, mut wedge) = (0, 0);
        for _ in 0..2_000_000 {
            let reference: f64 = a.sample(rand_distr::StandardNormal);
            let mut probe = b.clone();
            let bits = probe.next_u64();
            let ours = standard_normal(&mut b);
            assert_eq!(ours.to_bits(), reference.to_bits());
            // Count the slow paths, so the test knows it covered them.
            let i = bits as usize & 0xff;
            let u = f64::from_bits((1024u64 << 52) | (bits >> 12)) - 3.0;
            if (u * super::super::ziggurat_tables::ZIG_NORM_X[i]).abs()
                >= super::super::ziggurat_tables::ZIG_NORM_X[i + 1]
            {
                if i == 0 { tail += 1 } else { wedge += 1 }
            }
        }
        assert_eq!(
            a.random::<u64>(),
            b.random::<u64>(),
            "same numbers consumed"
        );
        assert!(tail > 20 && wedge > 1000, "tail {tail}, wedge {wedge}");
    }

    #[test]
    fn fast_floor_matches_floor() {
        for y in [
            -2.5,
            -1.0,
            -0.5,
            -1e-300,
            0.0,
            0.3,
            1.0,
            1.5,
            4503599627370497.0,
            1e18,
        ] {
            assert_eq!(floor(y), y.floor(), "{y}");
        }
    }
}
