//! End-to-end throughput of the stage (read chunks, fit, locate, group transits,
//! write products) over a synthetic ordered folder of 100k windows, all threads.
//!
//! `cargo bench -p meridian-locate --bench locate`. The binary on a larger folder:
//! see `examples/make_ordered.rs`.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TRANSITS: usize = 11_112;

fn bench(c: &mut Criterion) {
    let input = tempfile::tempdir().expect("temp dir");
    let chunk = 60 * 1_000_000_000u64;
    let (sim, attitude, _) = common::sim_stretch(3, TRANSITS, 1000 * chunk, 600 * 1_000_000_000);
    let windows: Vec<_> = sim.iter().flat_map(|t| t.windows.clone()).collect();
    common::write_ordered(input.path(), chunk, &windows, &attitude, |_, _| 1);
    let mut group = c.benchmark_group("locate");
    group.throughput(Throughput::Elements(windows.len() as u64));
    group.sample_size(10);
    group.bench_function("fresh_run", |b| {
        b.iter(|| {
            let out = tempfile::tempdir().expect("temp dir");
            let summary = meridian_locate::plan(input.path(), out.path())
                .expect("plan")
                .execute(&meridian_core::stage::NoProgress)
                .expect("run");
            assert_eq!(summary.windows, windows.len() as u64);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
