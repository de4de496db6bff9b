//! Window fit throughput against a centre-of-mass centroid over the same windows.
//!
//! `cargo bench -p meridian-locate --bench fit`; the ratio of the medians of
//! `fit` and `centre_of_mass` in one group is the fit's cost in units of the
//! simplest centroid.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meridian_core::instrument::{flux_from_mag, samples_for_mag};
use meridian_locate::fit::{centre_of_mass_centroid, fit_window};
use rand::Rng;
use std::hint::black_box;

const N: usize = 20_000;

fn windows(g_lo: f64, g_hi: f64, seed: u64) -> Vec<Vec<u16>> {
    let mut rng = common::rng(seed);
    (0..N)
        .map(|_| {
            let g = rng.random_range(g_lo..g_hi);
            let k = samples_for_mag(g) as usize;
            let c = common::draw_centroid(&mut rng, k);
            common::draw_window(&mut rng, k, c, flux_from_mag(g), common::BACKGROUND_E)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    // Most windows are faint (the star counts rise steeply with G: the 1 %
    // benchmark day is closest to the g18-20.7 set); the bright set is the
    // 18-sample, often saturated, case.
    for (name, lo, hi) in [
        ("g13-20", 13.0, 20.7),
        ("g18-20.7", 18.0, 20.7),
        ("g8-13", 8.0, 13.0),
    ] {
        let ws = windows(lo, hi, 42);
        let mut group = c.benchmark_group(format!("window/{name}"));
        group.throughput(Throughput::Elements(N as u64));
        group.bench_function("fit", |b| {
            b.iter(|| {
                for w in &ws {
                    black_box(fit_window(black_box(w)));
                }
            })
        });
        group.bench_function("centre_of_mass", |b| {
            b.iter(|| {
                for w in &ws {
                    black_box(centre_of_mass_centroid(black_box(w)));
                }
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
