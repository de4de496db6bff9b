//! Image parameters of one window: the maximum-likelihood centroid, flux and
//! background of the ICD §5 window model, with uncertainties from the Fisher
//! information, and the Cramér–Rao bound the fit is judged against.
//!
//! # Likelihood
//!
//! A sample's charge above bias is `d = 4 (v − 1000)` e⁻. Under ICD §5 it is
//! `Poisson(λ) + Normal(0, 12²)` plus the ADU rounding (uniform, variance
//! 4²/12 e⁻²). The fit uses the *shifted Poisson* model: `d + s ~ Poisson(λ + s)`
//! with `s = 12² + 4²/12`, which has the exact mean and variance of the real
//! model and a log-likelihood `Σ (d+s) ln(λ+s) − (λ+s)`. Its score equations,
//! `Σ ∂λ/∂θ · (d − λ)/(λ + s) = 0`, are unbiased whatever the true noise shape,
//! and they are solved by Fisher scoring (Gauss–Newton with weights `1/(λ+s)` from
//! the model, not the data), which reaches the optimum in a few steps from a
//! start at the centre of mass of the five samples around the peak (see
//! [`STEP_TOLERANCE`] for when it stops). The reported uncertainties are the square roots of the
//! diagonal of the inverse Fisher matrix `Σ ∂λ ∂λᵀ / (λ + s)` at the solution.
//!
//! [`cramer_rao_bound`] uses the stricter Fisher information of the Gaussian
//! approximation with signal-dependent variance, `Σ ∂λ ∂λᵀ (1/V + 1/(2V²))`,
//! `V = λ + s`; it is never larger than the shifted-Poisson one (by < 0.4 % here),
//! so "within 1.2× of the bound" is tested against the tighter of the two.
//!
//! # Special cases (no window is ever dropped)
//!
//! - Saturated samples (65535 ADU) are left out, and so are unsaturated samples
//!   the fitted model puts within 5σ of saturation (keeping only those that
//!   happened to fall below the threshold would bias the fit); flag `saturated`.
//! - The background is fitted with centroid and flux when the window has at least
//!   5 usable samples and the three-parameter fit converges. Otherwise it is fixed
//!   to the median of the outer samples (two at each end), its noise propagated
//!   into the centroid and flux errors; flag `background_fixed`.
//! - A solution whose centroid lies outside the window, whose flux is not
//!   positive, or that does not converge in 30 steps is `fit_failed`; the record
//!   then carries a centre-of-mass centroid with the error of a uniform
//!   distribution over the window (k/√12) and the summed flux.
//! - A centroid within 2σ_LSF (1.6 samples) of either end of the window, where
//!   more than 2 % of the image falls outside, is flagged `truncated`.

use crate::lsf::NormalTable;
use meridian_core::instrument::{
    BIAS_ADU, GAIN_E_PER_ADU, LSF_SIGMA, READ_NOISE_E, SATURATION_ADU, lsf_fraction,
};
use meridian_core::{Flag, Flags};

/// Most samples a window may have (ICD §4.1).
pub const MAX_SAMPLES: usize = 32;
/// Variance of the ADU rounding, e⁻².
pub const QUANTISATION_VAR_E2: f64 = GAIN_E_PER_ADU * GAIN_E_PER_ADU / 12.0;
/// Variance every sample has besides photon noise: read noise and rounding, e⁻².
pub const NOISE_FLOOR_VAR_E2: f64 = READ_NOISE_E * READ_NOISE_E + QUANTISATION_VAR_E2;
/// Charge above which a sample reads 65535 ADU (saturated), e⁻.
pub const SATURATION_CHARGE_E: f64 = (SATURATION_ADU as f64 - 0.5 - BIAS_ADU) * GAIN_E_PER_ADU;
/// A centroid closer than this to a window end (samples) is `truncated`.
pub const TRUNCATION_MARGIN: f64 = 2.0 * LSF_SIGMA;

const MAX_ITERATIONS: u32 = 30;
/// Converged when the last step is below 0.01 σ (Δᵀ J Δ < 1e-4): Fisher scoring
/// contracts the error by a large factor per step here, so what remains after
/// that step is ~1e-3 σ (a test checks < 0.01 σ against full convergence).
///
/// A step is also the last when it is below 0.1 σ ([`CONTRACTED_STEP_MAX`]) and
/// the contraction of the last two full steps, s1/s0 in Δᵀ J Δ, predicts that
/// less than s1²/s0 < 3·10⁻³ × 1e-4 (a step of about 0.0006 σ) remains: the linear rate is
/// settled there, and faint stars, whose rate is slowest, stop a step earlier.
/// On the 1 % benchmark day this takes the mean number of steps from 2.92 to
/// 2.34 (with the peak start), and the largest distance from the fully
/// converged fit over its 9.2 M windows is 0.0064 σ (0.0051 σ before), see
/// `examples/convergence.rs`.
pub const STEP_TOLERANCE: f64 = 1e-4;
/// See [`STEP_TOLERANCE`].
const REMAINDER_FRACTION: f64 = 0.003;
/// See [`STEP_TOLERANCE`] (Δᵀ J Δ below 100 × 1e-4 is a step below 0.1 σ).
pub const CONTRACTED_STEP_MAX: f64 = 100.0;
/// Largest centroid move per step, samples (a trust region for bad starts).
const MAX_CENTROID_STEP: f64 = 1.0;
/// Samples the model puts this many σ below saturation are left out too.
const SATURATION_GUARD_SIGMA: f64 = 5.0;
/// A background more than this many read-noise σ below zero means no valid fit.
const MIN_BACKGROUND_SIGMA: f64 = 5.0;
/// Fewest usable samples for fitting the background with centroid and flux.
const MIN_SAMPLES_FREE_BACKGROUND: usize = 5;

/// Image parameters of one window (ICD §5): centroid in samples from the window
/// start, flux in e⁻ per CCD transit, background in e⁻ per sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageParams {
    pub centroid: f64,
    pub centroid_err: f64,
    pub flux: f64,
    pub flux_err: f64,
    pub background: f64,
    pub background_err: f64,
    pub flags: Flags,
    /// Fisher-scoring steps taken (all attempts together).
    pub iterations: u32,
}

impl ImageParams {
    /// True unless the fit failed (the centroid and flux are then rough).
    pub fn is_valid(&self) -> bool {
        !self.flags.contains(Flag::FitFailed)
    }
}

/// A window's samples as charges, with the samples the fit may use.
struct Prepared {
    k: usize,
    charge: [f64; MAX_SAMPLES],
    usable: [bool; MAX_SAMPLES],
    saturated: bool,
}

impl Prepared {
    fn new(samples: &[u16]) -> Self {
        let mut p = Prepared {
            k: samples.len(),
            charge: [0.0; MAX_SAMPLES],
            usable: [false; MAX_SAMPLES],
            saturated: false,
        };
        for (i, &v) in samples.iter().enumerate() {
            p.charge[i] = (v as f64 - BIAS_ADU) * GAIN_E_PER_ADU;
            p.usable[i] = v != SATURATION_ADU;
            p.saturated |= v == SATURATION_ADU;
        }
        p
    }

    fn n_usable(&self) -> usize {
        self.usable[..self.k].iter().filter(|u| **u).count()
    }

    /// The robust background and how many samples it comes from: the median of
    /// the usable samples among the two at each end for k ≥ 8, one at each end
    /// for 5 ≤ k < 8 (so the star's core stays out), and the smallest usable
    /// sample of a shorter window (biased by the star's wings, but the best such a
    /// window offers).
    fn robust_background(&self) -> Option<(f64, usize)> {
        let k = self.k;
        let per_end = match k {
            8.. => 2,
            5..=7 => 1,
            _ => 0,
        };
        let mut values = [0.0; 4];
        let mut n = 0;
        for i in (0..per_end).chain(k - per_end..k) {
            if self.usable[i] {
                values[n] = self.charge[i];
                n += 1;
            }
        }
        if n == 0 {
            let min = (0..k)
                .filter(|&i| self.usable[i])
                .map(|i| self.charge[i])
                .min_by(f64::total_cmp)?;
            return Some((min, 1));
        }
        let values = &mut values[..n];
        // At most four values: an insertion sort, not the general sort's set-up.
        for i in 1..n {
            let mut j = i;
            while j > 0 && values[j - 1].total_cmp(&values[j]).is_gt() {
                values.swap(j - 1, j);
                j -= 1;
            }
        }
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            0.5 * (values[n / 2 - 1] + values[n / 2])
        };
        Some((median, n))
    }
}

/// Current estimate (centroid, flux, background).
#[derive(Debug, Clone, Copy)]
struct Params {
    c: f64,
    f: f64,
    b: f64,
}

/// A converged solution and its inverse Fisher matrix (order c, F, B).
struct Solution {
    params: Params,
    cov: [[f64; 3]; 3],
    /// Σ w ∂λ/∂θ over (c, F) per unit background: for propagating a fixed B.
    background_gradient: [f64; 2],
}

/// Fits the ICD §5 window model to one window's sample values (ADU).
pub fn fit_window(samples: &[u16]) -> ImageParams {
    fit_window_to(samples, STEP_TOLERANCE)
}

/// [`fit_window`] with a chosen convergence tolerance on Δᵀ J Δ (a tiny one,
/// e.g. 1e-16, gives the fully converged fit that `fit_window` is checked against).
pub fn fit_window_to(samples: &[u16], tolerance: f64) -> ImageParams {
    if samples.is_empty() || samples.len() > MAX_SAMPLES {
        return failed_fallback(samples);
    }
    let mut win = Prepared::new(samples);
    let Some((b_robust, n_outer)) = win.robust_background() else {
        return failed_fallback(samples);
    };
    let mut edges = EdgeCache::new(win.k);
    let start = start_params(&win, b_robust, &mut edges);
    let mut iterations = 0;
    let mut flags = Flags::EMPTY;
    if win.saturated {
        flags.insert(Flag::Saturated);
    }

    let mut solution = None;
    if win.n_usable() >= MIN_SAMPLES_FREE_BACKGROUND {
        solution = solve_with_saturation_guard(
            &mut win,
            start,
            true,
            &mut edges,
            tolerance,
            &mut iterations,
        );
    }
    let mut background_err = None;
    if solution.is_none() && win.n_usable() >= 3 {
        let fixed = Params {
            b: b_robust,
            ..start
        };
        solution = solve_with_saturation_guard(
            &mut win,
            fixed,
            false,
            &mut edges,
            tolerance,
            &mut iterations,
        );
        if let Some(s) = solution.as_mut() {
            flags.insert(Flag::BackgroundFixed);
            let var_b = robust_background_variance(b_robust, n_outer);
            propagate_fixed_background(s, var_b);
            background_err = Some(var_b.sqrt());
        }
    }
    let Some(s) = solution else {
        let mut out = failed_fallback(samples);
        out.iterations = iterations;
        return out;
    };
    let p = s.params;
    if p.c < TRUNCATION_MARGIN || p.c > win.k as f64 - TRUNCATION_MARGIN {
        flags.insert(Flag::Truncated);
    }
    ImageParams {
        centroid: p.c,
        centroid_err: s.cov[0][0].sqrt(),
        flux: p.f,
        flux_err: s.cov[1][1].sqrt(),
        background: p.b,
        background_err: background_err.unwrap_or_else(|| s.cov[2][2].sqrt()),
        flags,
        iterations,
    }
}

/// Variance of the median of `n` samples of variance `b + s`: (π/2)·V/n, the
/// large-sample value, conservative for the few samples used here.
fn robust_background_variance(b: f64, n: usize) -> f64 {
    std::f64::consts::FRAC_PI_2 * (b.max(0.0) + NOISE_FLOOR_VAR_E2) / n.max(1) as f64
}

/// Adds the noise of a fixed background to the (c, F) covariance:
/// `dθ/dB = −J⁻¹ h` with `h = Σ w ∂λ/∂θ`.
fn propagate_fixed_background(s: &mut Solution, var_b: f64) {
    let h = s.background_gradient;
    let dtheta = [
        -(s.cov[0][0] * h[0] + s.cov[0][1] * h[1]),
        -(s.cov[1][0] * h[0] + s.cov[1][1] * h[1]),
    ];
    for (i, di) in dtheta.iter().enumerate() {
        for (j, dj) in dtheta.iter().enumerate() {
            s.cov[i][j] += di * dj * var_b;
        }
    }
    s.cov[2][2] = var_b;
}

/// Centre-of-mass centroid (or the middle of the saturated run) and the flux
/// that best fits the data there by weighted least squares.
fn start_params(win: &Prepared, b0: f64, edges: &mut EdgeCache) -> Params {
    let k = win.k;
    let c = if win.saturated {
        let (sum, n) = (0..k)
            .filter(|&i| !win.usable[i])
            .fold((0.0, 0.0), |(s, n), i| (s + i as f64 + 0.5, n + 1.0));
        sum / n
    } else {
        peak_centre_of_mass(win, b0).unwrap_or(k as f64 / 2.0)
    };
    let (mut num, mut den) = (0.0, 0.0);
    let edges = edges.at(c);
    for i in (0..k).filter(|&i| win.usable[i]) {
        let p = edges[i + 1].0 - edges[i].0;
        let w = 1.0 / (win.charge[i].max(0.0) + NOISE_FLOOR_VAR_E2);
        num += w * p * (win.charge[i] - b0);
        den += w * p * p;
    }
    let f = if den > 0.0 && num > 0.0 {
        num / den
    } else {
        // No visible star: start small; the fit will fail or find it.
        NOISE_FLOOR_VAR_E2.sqrt()
    };
    Params { c, f, b: b0 }
}

/// Centre of mass of the samples within [`PEAK_HALF_WIDTH`] of the highest
/// usable one: the samples further out hold < 0.2 % of the image but add their
/// noise, which makes the whole window's centre of mass a poor start for
/// faint stars.
fn peak_centre_of_mass(win: &Prepared, b0: f64) -> Option<f64> {
    let k = win.k;
    let peak = (0..k)
        .filter(|&i| win.usable[i])
        .max_by(|&a, &b| win.charge[a].total_cmp(&win.charge[b]).then(b.cmp(&a)))?;
    let (mut m0, mut m1) = (0.0, 0.0);
    let lo = peak.saturating_sub(PEAK_HALF_WIDTH);
    let hi = (peak + PEAK_HALF_WIDTH + 1).min(k);
    for i in (lo..hi).filter(|&i| win.usable[i]) {
        let w = (win.charge[i] - b0).max(0.0);
        m0 += w;
        m1 += w * (i as f64 + 0.5);
    }
    (m0 > 0.0).then(|| m1 / m0)
}

/// Samples each side of the peak that the starting centroid uses.
const PEAK_HALF_WIDTH: usize = 2;

fn centre_of_mass(win: &Prepared, b0: f64) -> Option<f64> {
    let (mut m0, mut m1) = (0.0, 0.0);
    for i in (0..win.k).filter(|&i| win.usable[i]) {
        let w = (win.charge[i] - b0).max(0.0);
        m0 += w;
        m1 += w * (i as f64 + 0.5);
    }
    (m0 > 0.0).then(|| m1 / m0)
}

/// Centre-of-mass centroid of a window above its robust background (samples), the
/// simple estimator the benchmark compares the fit with. None when nothing rises
/// above the background.
pub fn centre_of_mass_centroid(samples: &[u16]) -> Option<f64> {
    if samples.is_empty() || samples.len() > MAX_SAMPLES {
        return None;
    }
    let win = Prepared::new(samples);
    let (b0, _) = win.robust_background()?;
    centre_of_mass(&win, b0)
}

/// Edge values of a window: `(Φ, φ)` at sample edges.
type Edges = [(f64, f64); MAX_SAMPLES + 1];

/// `(Φ, φ)` at every sample edge j = 0..=k of one window, `x = (j − c)/σ`,
/// for the last centroid asked: the fit asks again at the same centroid (the
/// start's flux, then the first step; the saturation guard, then its refit),
/// and the values depend on nothing else.
struct EdgeCache {
    table: NormalTable,
    k: usize,
    centroid_bits: Option<u64>,
    values: Edges,
}

impl EdgeCache {
    fn new(k: usize) -> Self {
        EdgeCache {
            table: NormalTable::new(),
            k: k.min(MAX_SAMPLES),
            centroid_bits: None,
            values: [(0.0, 0.0); MAX_SAMPLES + 1],
        }
    }

    #[inline]
    fn at(&mut self, c: f64) -> &Edges {
        if self.centroid_bits != Some(c.to_bits()) {
            self.table
                .edges(-c / LSF_SIGMA, &mut self.values[..=self.k]);
            self.centroid_bits = Some(c.to_bits());
        }
        &self.values
    }
}

/// Fits, then (for saturated windows) leaves out samples the model puts near
/// saturation and refits until that set stops changing.
fn solve_with_saturation_guard(
    win: &mut Prepared,
    start: Params,
    fit_background: bool,
    edges: &mut EdgeCache,
    tolerance: f64,
    iterations: &mut u32,
) -> Option<Solution> {
    let mut solution = solve(win, start, fit_background, edges, tolerance, iterations)?;
    if !win.saturated {
        return Some(solution);
    }
    for _ in 0..3 {
        let p = solution.params;
        let values = edges.at(p.c);
        let mut changed = false;
        for i in 0..win.k {
            let lambda = p.b + p.f * (values[i + 1].0 - values[i].0);
            let sigma = (lambda.max(0.0) + NOISE_FLOOR_VAR_E2).sqrt();
            if win.usable[i] && lambda > SATURATION_CHARGE_E - SATURATION_GUARD_SIGMA * sigma {
                win.usable[i] = false;
                changed = true;
            }
        }
        let needed = if fit_background { 5 } else { 3 };
        if !changed || win.n_usable() < needed {
            return if changed { None } else { Some(solution) };
        }
        solution = solve(win, p, fit_background, edges, tolerance, iterations)?;
    }
    Some(solution)
}

/// Fisher scoring from `start`; None unless it converges to a valid solution.
fn solve(
    win: &Prepared,
    start: Params,
    fit_background: bool,
    edges: &mut EdgeCache,
    tolerance: f64,
    iterations: &mut u32,
) -> Option<Solution> {
    if fit_background {
        solve_n::<3>(win, start, edges, tolerance, iterations)
    } else {
        solve_n::<2>(win, start, edges, tolerance, iterations)
    }
}

/// Fisher scoring for the first `N` of (c, F, B), the rest held fixed.
fn solve_n<const N: usize>(
    win: &Prepared,
    start: Params,
    edges: &mut EdgeCache,
    tolerance: f64,
    iterations: &mut u32,
) -> Option<Solution> {
    let mut p = start;
    let mut previous_size: Option<f64> = None;
    for _ in 0..MAX_ITERATIONS {
        *iterations += 1;
        let (j, u, h) = normal_equations::<N>(win, p, edges);
        let chol = Cholesky::<N>::new(&j)?;
        let step = chol.solve(&u);
        let mut scale: f64 = 1.0;
        if step[0].abs() > MAX_CENTROID_STEP {
            scale = MAX_CENTROID_STEP / step[0].abs();
        }
        if p.f + scale * step[1] <= 0.0 {
            scale = scale.min(0.5 * p.f / -step[1]);
        }
        if N == 3 && p.b + scale * step[N - 1] + NOISE_FLOOR_VAR_E2 <= 0.0 {
            scale = scale.min(0.5 * (p.b + NOISE_FLOOR_VAR_E2) / -step[N - 1]);
        }
        p.c += scale * step[0];
        p.f += scale * step[1];
        if N == 3 {
            p.b += scale * step[N - 1];
        }
        let size: f64 = step.iter().zip(&u).map(|(s, u)| s * u).sum();
        if !size.is_finite() || !p.c.is_finite() || !p.f.is_finite() {
            return None;
        }
        // Fisher scoring converges about linearly here: two full steps of sizes
        // s0 then s1 leave ~s1²/s0 (the ratio times the last step) to go.
        // Steps cut by the trust region say nothing about the rate.
        let contracted = size < tolerance * CONTRACTED_STEP_MAX
            && previous_size.is_some_and(|s0| size * size < s0 * tolerance * REMAINDER_FRACTION);
        previous_size = (scale == 1.0).then_some(size);
        if scale == 1.0 && (size < tolerance || contracted) {
            let inv = chol.inverse();
            let mut cov = [[0.0; 3]; 3];
            for (row, inv_row) in cov.iter_mut().zip(&inv) {
                row[..N].copy_from_slice(inv_row);
            }
            let finite = (0..N).all(|i| cov[i][i].is_finite() && cov[i][i] > 0.0);
            // A centroid no better known than "somewhere in the window", or a
            // background far below zero (impossible for real charge), is no fit.
            let valid = (0.0..=win.k as f64).contains(&p.c)
                && p.f > 0.0
                && cov[0][0].sqrt() < win.k as f64 / 12f64.sqrt()
                && p.b > -MIN_BACKGROUND_SIGMA * NOISE_FLOOR_VAR_E2.sqrt();
            return (valid && finite).then_some(Solution {
                params: p,
                cov,
                background_gradient: [h[0], h[1]],
            });
        }
    }
    None
}

/// Fisher matrix J, score u and Σ w ∂λ/∂θ for the first `N` of (c, F, B).
///
/// With g = ∂λ/∂θ = (F ∂p/∂c, p, 1) and w = 1/(λ + s) per usable sample:
/// `J = Σ w g gᵀ`, `u = Σ w (d − λ) g`, `h = Σ w g` (only a fixed background
/// needs h, to propagate its noise). The sums are kept in scalars, the terms
/// with the constant ∂λ/∂B = 1 without multiplying by it (exactly equal).
#[inline]
fn normal_equations<const N: usize>(
    win: &Prepared,
    p: Params,
    edges: &mut EdgeCache,
) -> ([[f64; N]; N], [f64; N], [f64; N]) {
    let edges = edges.at(p.c);
    let inv_sigma = 1.0 / LSF_SIGMA;
    let (mut j00, mut j10, mut j11, mut j20, mut j21, mut j22) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut u0, mut u1, mut u2) = (0.0, 0.0, 0.0);
    let (mut h0, mut h1) = (0.0, 0.0);
    let k = win.k.min(MAX_SAMPLES);
    for (i, (edge, next)) in edges[..k].iter().zip(&edges[1..=k]).enumerate() {
        if !win.usable[i] {
            continue;
        }
        let prob = next.0 - edge.0;
        let dprob_dc = (edge.1 - next.1) * inv_sigma;
        let lambda = p.b + p.f * prob;
        let w = 1.0 / (lambda.max(0.0) + NOISE_FLOOR_VAR_E2);
        let (g0, g1) = (p.f * dprob_dc, prob);
        let wr = w * (win.charge[i] - lambda);
        let (wg0, wg1) = (w * g0, w * g1);
        u0 += wr * g0;
        u1 += wr * g1;
        j00 += wg0 * g0;
        j10 += wg1 * g0;
        j11 += wg1 * g1;
        if N == 3 {
            u2 += wr;
            j20 += wg0;
            j21 += wg1;
            j22 += w;
        } else {
            h0 += wg0;
            h1 += wg1;
        }
    }
    let full_j = [[j00, j10, j20], [j10, j11, j21], [j20, j21, j22]];
    let mut j = [[0.0; N]; N];
    for (row, full) in j.iter_mut().zip(&full_j) {
        row.copy_from_slice(&full[..N]);
    }
    let mut u = [0.0; N];
    u.copy_from_slice(&[u0, u1, u2][..N]);
    let mut h = [0.0; N];
    h[..2].copy_from_slice(&[h0, h1]);
    (j, u, h)
}

/// Cholesky factor of a small symmetric positive definite matrix.
struct Cholesky<const N: usize> {
    l: [[f64; N]; N],
}

#[allow(clippy::needless_range_loop)] // matrix indices read clearer
impl<const N: usize> Cholesky<N> {
    fn new(a: &[[f64; N]; N]) -> Option<Self> {
        let mut l = [[0.0; N]; N];
        for i in 0..N {
            for j in 0..=i {
                let mut sum = a[i][j];
                for k in 0..j {
                    sum -= l[i][k] * l[j][k];
                }
                if i == j {
                    // Relative threshold: a pivot this small means a degenerate fit.
                    if sum.is_nan() || sum <= a[i][i] * 1e-12 {
                        return None;
                    }
                    l[i][i] = sum.sqrt();
                } else {
                    l[i][j] = sum / l[j][j];
                }
            }
        }
        Some(Self { l })
    }

    fn solve(&self, b: &[f64; N]) -> [f64; N] {
        let l = &self.l;
        let mut y = [0.0; N];
        for i in 0..N {
            let mut s = b[i];
            for k in 0..i {
                s -= l[i][k] * y[k];
            }
            y[i] = s / l[i][i];
        }
        let mut x = [0.0; N];
        for i in (0..N).rev() {
            let mut s = y[i];
            for k in i + 1..N {
                s -= l[k][i] * x[k];
            }
            x[i] = s / l[i][i];
        }
        x
    }

    fn inverse(&self) -> [[f64; N]; N] {
        let mut inv = [[0.0; N]; N];
        for col in 0..N {
            let mut e = [0.0; N];
            e[col] = 1.0;
            let x = self.solve(&e);
            for row in 0..N {
                inv[row][col] = x[row];
            }
        }
        inv
    }
}

/// The result for a window no fit could be made of: centre-of-mass centroid
/// (middle of the window if nothing rises above the background), summed flux,
/// and errors that claim no more than the window itself tells.
fn failed_fallback(samples: &[u16]) -> ImageParams {
    let k = samples.len();
    let charge = |v: u16| (v as f64 - BIAS_ADU) * GAIN_E_PER_ADU;
    let mut sorted: Vec<f64> = samples.iter().map(|&v| charge(v)).collect();
    sorted.sort_unstable_by(f64::total_cmp);
    let background = sorted.first().copied().unwrap_or(0.0);
    let (mut m0, mut m1, mut var) = (0.0, 0.0, 0.0);
    for (i, &v) in samples.iter().enumerate() {
        let w = (charge(v) - background).max(0.0);
        m0 += w;
        m1 += w * (i as f64 + 0.5);
        var += charge(v).max(0.0) + NOISE_FLOOR_VAR_E2;
    }
    let centroid = if m0 > 0.0 { m1 / m0 } else { k as f64 / 2.0 };
    let mut flags = Flags::EMPTY.with(Flag::FitFailed);
    if samples.contains(&SATURATION_ADU) {
        flags.insert(Flag::Saturated);
    }
    if centroid < TRUNCATION_MARGIN || centroid > k as f64 - TRUNCATION_MARGIN {
        flags.insert(Flag::Truncated);
    }
    ImageParams {
        centroid,
        centroid_err: (k.max(1) as f64) / 12f64.sqrt(),
        flux: m0,
        flux_err: var.sqrt(),
        background,
        background_err: NOISE_FLOOR_VAR_E2.sqrt(),
        flags,
        iterations: 0,
    }
}

/// Cramér–Rao bound (σ of centroid, flux, background) for a window of `k`
/// samples of a star at `centroid` with `flux` over `background`, counting only
/// the samples for which `usable(i)` holds; exact Φ, Fisher information
/// `Σ ∂λ ∂λᵀ (1/V + 1/(2V²))` with `V = λ + 12² + 4²/12`. None if singular.
pub fn cramer_rao_bound(
    k: usize,
    centroid: f64,
    flux: f64,
    background: f64,
    usable: impl Fn(usize) -> bool,
) -> Option<[f64; 3]> {
    let pdf = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let mut j = [[0.0; 3]; 3];
    for i in (0..k.min(MAX_SAMPLES)).filter(|&i| usable(i)) {
        let prob = lsf_fraction(i, centroid);
        let lo = (i as f64 - centroid) / LSF_SIGMA;
        let hi = (i as f64 + 1.0 - centroid) / LSF_SIGMA;
        let dprob_dc = (pdf(lo) - pdf(hi)) / LSF_SIGMA;
        let lambda = background + flux * prob;
        let v = lambda.max(0.0) + NOISE_FLOOR_VAR_E2;
        let w = 1.0 / v + 1.0 / (2.0 * v * v);
        let g = [flux * dprob_dc, prob, 1.0];
        for a in 0..3 {
            for b in 0..3 {
                j[a][b] += w * g[a] * g[b];
            }
        }
    }
    let cov = Cholesky::<3>::new(&j)?.inverse();
    Some([cov[0][0].sqrt(), cov[1][1].sqrt(), cov[2][2].sqrt()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::instrument::{adu_from_charge, expected_charge, flux_from_mag};
    use proptest::prelude::*;

    /// Noise-free window (only the ADU rounding).
    fn ideal(k: usize, c: f64, f: f64, b: f64) -> Vec<u16> {
        (0..k)
            .map(|i| adu_from_charge(expected_charge(i, c, f, b)))
            .collect()
    }

    #[test]
    fn noise_free_window_is_recovered() {
        let fit = fit_window(&ideal(12, 6.3, 20_000.0, 20.0));
        assert!(fit.is_valid() && fit.flags.is_empty(), "{fit:?}");
        assert!((fit.centroid - 6.3).abs() < 1e-3, "{fit:?}");
        assert!((fit.flux / 20_000.0 - 1.0).abs() < 1e-3, "{fit:?}");
        assert!((fit.background - 20.0).abs() < 1.0, "{fit:?}");
        assert!(fit.centroid_err > 0.0 && fit.flux_err > 0.0);
    }

    #[test]
    fn stopping_early_costs_under_a_hundredth_of_sigma() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal, Poisson};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let read = Normal::new(0.0, READ_NOISE_E).unwrap();
        let mut worst: f64 = 0.0;
        for n in 0..3000 {
            let g = 8.0 + (n % 130) as f64 * 0.1;
            let k = meridian_core::instrument::samples_for_mag(g) as usize;
            let c = k as f64 / 2.0 + (n % 17) as f64 / 17.0 - 0.5;
            let samples: Vec<u16> = (0..k)
                .map(|i| {
                    let lambda = expected_charge(i, c, flux_from_mag(g), 20.0);
                    let photons: f64 = Poisson::new(lambda).unwrap().sample(&mut rng);
                    adu_from_charge(photons + read.sample(&mut rng))
                })
                .collect();
            let fast = fit_window(&samples);
            let full = fit_window_to(&samples, 1e-16);
            assert_eq!(fast.is_valid(), full.is_valid());
            if full.is_valid() {
                worst = worst
                    .max((fast.centroid - full.centroid).abs() / full.centroid_err)
                    .max((fast.flux - full.flux).abs() / full.flux_err);
            }
        }
        assert!(worst < 0.01, "worst difference {worst} σ");
    }

    #[test]
    fn saturated_samples_are_left_out_and_flagged() {
        let samples = ideal(18, 9.2, flux_from_mag(9.0), 20.0);
        assert!(samples.contains(&SATURATION_ADU));
        let fit = fit_window(&samples);
        assert!(
            fit.is_valid() && fit.flags.contains(Flag::Saturated),
            "{fit:?}"
        );
        assert!((fit.centroid - 9.2).abs() < 1e-3, "{fit:?}");
        assert!(
            (fit.flux / flux_from_mag(9.0) - 1.0).abs() < 1e-3,
            "{fit:?}"
        );
    }

    #[test]
    fn centroid_at_the_edge_is_truncated() {
        let fit = fit_window(&ideal(12, 1.0, 50_000.0, 20.0));
        assert!(
            fit.is_valid() && fit.flags.contains(Flag::Truncated),
            "{fit:?}"
        );
        assert!((fit.centroid - 1.0).abs() < 1e-2, "{fit:?}");
        let fit = fit_window(&ideal(12, 11.2, 50_000.0, 20.0));
        assert!(fit.flags.contains(Flag::Truncated), "{fit:?}");
        let fit = fit_window(&ideal(12, 6.0, 50_000.0, 20.0));
        assert!(!fit.flags.contains(Flag::Truncated), "{fit:?}");
    }

    #[test]
    fn short_windows_fix_the_background() {
        let fit = fit_window(&ideal(4, 2.0, 50_000.0, 0.0));
        assert!(fit.flags.contains(Flag::BackgroundFixed), "{fit:?}");
        assert!(fit.is_valid(), "{fit:?}");
        assert!((fit.centroid - 2.0).abs() < 0.01, "{fit:?}");
    }

    #[test]
    fn one_sample_window_fails_but_is_kept() {
        let fit = fit_window(&[5000]);
        assert!(fit.flags.contains(Flag::FitFailed));
        assert_eq!(fit.centroid, 0.5);
        assert!(fit.centroid_err > 0.0 && fit.flux_err.is_finite());
    }

    #[test]
    fn all_zero_and_empty_windows_fail_cleanly() {
        for samples in [
            vec![0u16; 12],
            vec![],
            vec![1000; 12],
            vec![65535; 12],
            vec![7; 40],
        ] {
            let fit = fit_window(&samples);
            assert!(fit.flags.contains(Flag::FitFailed), "{samples:?}: {fit:?}");
            assert!(fit.centroid.is_finite() && fit.centroid_err.is_finite());
            assert!(fit.flux.is_finite() && fit.flux_err.is_finite());
        }
        assert!(fit_window(&[65535; 12]).flags.contains(Flag::Saturated));
    }

    #[test]
    fn bound_shrinks_with_flux() {
        let all = |_| true;
        let faint = cramer_rao_bound(12, 6.0, 1e3, 20.0, all).unwrap();
        let bright = cramer_rao_bound(12, 6.0, 1e5, 20.0, all).unwrap();
        assert!(bright[0] < faint[0] / 5.0);
        assert!(cramer_rao_bound(12, 6.0, 1e3, 20.0, |_| false).is_none());
    }

    #[test]
    fn the_start_ignores_charge_far_from_the_peak() {
        // A faint star at 6.3 and a cosmic-ray-like hit at sample 0: the whole
        // window's centre of mass moves by samples, the peak's does not.
        let mut samples = ideal(12, 6.3, 3000.0, 20.0);
        samples[0] += 250;
        let win = Prepared::new(&samples);
        let (b0, _) = win.robust_background().unwrap();
        let peak = peak_centre_of_mass(&win, b0).unwrap();
        let whole = centre_of_mass(&win, b0).unwrap();
        assert!((peak - 6.3).abs() < 0.05, "{peak}");
        assert!((whole - 6.3).abs() > 1.0, "{whole}");
        // Saturated samples are no peak; a window with nothing above the
        // background has no start of its own.
        let win = Prepared::new(&[1000; 12]);
        assert_eq!(peak_centre_of_mass(&win, 0.0), None);
    }

    #[test]
    fn centre_of_mass_of_a_symmetric_image() {
        let c = centre_of_mass_centroid(&ideal(12, 6.0, 1e5, 20.0)).unwrap();
        assert!((c - 6.0).abs() < 1e-3);
        assert_eq!(centre_of_mass_centroid(&[1000; 12]), None);
    }

    proptest! {
        #[test]
        fn any_samples_give_finite_parameters(samples in proptest::collection::vec(any::<u16>(), 0..40)) {
            let fit = fit_window(&samples);
            prop_assert!(fit.centroid.is_finite() && fit.centroid_err.is_finite() && fit.centroid_err > 0.0);
            prop_assert!(fit.flux.is_finite() && fit.flux_err.is_finite());
            prop_assert!(fit.background.is_finite() && fit.background_err.is_finite());
            if fit.is_valid() {
                prop_assert!((0.0..=samples.len() as f64).contains(&fit.centroid));
            }
        }
    }
}
