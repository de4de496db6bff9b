//! Iteration counts of the fit over a faint mix, and a loop for profiling:
//! `cargo run --release --example iters -- [repeats]`.
#[path = "../tests/common/mod.rs"]
mod common;
use meridian_core::instrument::{flux_from_mag, samples_for_mag};
use rand::Rng;
fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = common::rng(1);
    let ws: Vec<Vec<u16>> = (0..20000)
        .map(|_| {
            let g = rng.random_range(13.0..20.7);
            let k = samples_for_mag(g) as usize;
            let c = common::draw_centroid(&mut rng, k);
            common::draw_window(&mut rng, k, c, flux_from_mag(g), common::BACKGROUND_E)
        })
        .collect();
    let mut hist = [0usize; 64];
    let cpu0 = thread_cpu_ns();
    let t = std::time::Instant::now();
    for _ in 0..repeats {
        for w in &ws {
            let f = meridian_locate::fit_window(w);
            hist[(f.iterations as usize).min(63)] += 1;
        }
    }
    let n = (repeats * ws.len()) as f64;
    let ns = t.elapsed().as_nanos() as f64 / n;
    let cpu = thread_cpu_ns().map(|c1| (c1 - cpu0.unwrap_or(0)) as f64 / n);
    println!(
        "{ns:.0} ns/window wall, {cpu:.0?} ns/window on-CPU; iterations: {:?}",
        hist.iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .collect::<Vec<_>>()
    );
}

/// Time this thread has spent on a CPU (ns), from /proc (Linux), so the figure
/// holds on a machine shared with other work.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
