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
