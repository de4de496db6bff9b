//! How close the fit's early stop comes to the fully converged fit over the
//! windows of an ordered folder (e.g. the benchmark day), and its iterations:
//!
//! ```text
//! cargo run --release -p meridian-locate --example convergence -- ORDERED_DIR [EVERY_NTH_CHUNK]
//! ```

use meridian_core::product::read_all;
use meridian_core::records::Window;
use meridian_locate::fit::{fit_window, fit_window_to};
use meridian_order::{Manifest, Stream};
use rayon::prelude::*;
use std::path::Path;

/// Worst |fast − full| in units of the full fit's σ (centroid, flux), windows,
/// windows valid in one fit only, and the iteration histogram.
type Tally = (f64, f64, u64, u64, [u64; 8]);

fn tally(windows: &[Window]) -> Tally {
    let mut t: Tally = (0.0, 0.0, 0, 0, [0; 8]);
    for w in windows {
        let fast = fit_window(&w.samples);
        let full = fit_window_to(&w.samples, 1e-16);
        t.2 += 1;
        t.4[(fast.iterations as usize).min(7)] += 1;
        if fast.is_valid() != full.is_valid() {
            t.3 += 1;
        } else if full.is_valid() {
            t.0 =
                t.0.max((fast.centroid - full.centroid).abs() / full.centroid_err);
            t.1 = t.1.max((fast.flux - full.flux).abs() / full.flux_err);
        }
    }
    t
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: convergence ORDERED_DIR [EVERY_NTH_CHUNK]");
        std::process::exit(2);
    };
    let every: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let dir = Path::new(dir);
    let manifest = Manifest::load(dir).expect("manifest");
    let chunks: Vec<_> = manifest.chunks_of(Stream::Window).step_by(every).collect();
    let t = chunks
        .par_iter()
        .map(|c| tally(&read_all::<Window>(dir.join(&c.path)).expect("window chunk")))
        .reduce(
            || (0.0, 0.0, 0, 0, [0; 8]),
            |a, b| {
                let mut h = a.4;
                h.iter_mut().zip(b.4).for_each(|(x, y)| *x += y);
                (a.0.max(b.0), a.1.max(b.1), a.2 + b.2, a.3 + b.3, h)
            },
        );
    let mean =
        t.4.iter()
            .enumerate()
            .map(|(i, n)| i as u64 * n)
            .sum::<u64>() as f64
            / t.2 as f64;
    println!(
        "{} windows: worst |fit − converged| {:.4} σ (centroid), {:.4} σ (flux); {} valid in one only; \
         iterations mean {mean:.3}, histogram {:?}",
        t.2, t.0, t.1, t.3, t.4
    );
}
