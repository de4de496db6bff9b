//! Writes a synthetic ordered folder (as meridian-order would) for timing
//! `meridian-locate` end to end:
//!
//! ```text
//! cargo run --release -p meridian-locate --example make_ordered -- DIR N_TRANSITS [SPAN_S]
//! time target/release/meridian-locate --in DIR --out OUT
//! ```
//!
//! Transits of random stars (G 12–20, nine windows each) at random times through
//! one uniform scan, with 1 Hz attitude, in 60 s chunks.

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(n)) = (
        args.first(),
        args.get(1).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: make_ordered DIR N_TRANSITS [SPAN_S]");
        std::process::exit(2);
    };
    let span_s: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3600);
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).expect("create DIR");
    let chunk = 60 * 1_000_000_000u64;
    let (sim, attitude, _) = common::sim_stretch(1, n, 1000 * chunk, span_s * 1_000_000_000);
    let windows: Vec<_> = sim.iter().flat_map(|t| t.windows.clone()).collect();
    let m = common::write_ordered(dir, chunk, &windows, &attitude, |_, _| 1);
    println!(
        "{} windows of {} transits in {} chunks written to {}",
        windows.len(),
        sim.len(),
        m.chunks.len(),
        dir.display()
    );
}
