//! Criterion benchmark of the science simulation: a 0.001-scale hour (about
//! 2 600 transits, 1.3 MB of packets), throughput in bytes of packets.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meridian_sim::science::{NoTruth, ScienceConfig, ScienceSim};
use std::hint::black_box;

fn scaled_hour(c: &mut Criterion) {
    let cfg = ScienceConfig {
        scale: Some(0.001),
        ..Default::default()
    };
    let sim = ScienceSim::new(7, 520_000_000_000_000_000, 3600.0, &cfg).expect("config");
    let mut bytes = 0u64;
    sim.generate(&mut |p| bytes += p.bytes.len() as u64, &mut NoTruth)
        .expect("generate");
    let mut group = c.benchmark_group("science");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("generate_0.001_scale_hour", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let stats = sim
                .generate(&mut |p| n += black_box(p.bytes.len()), &mut NoTruth)
                .expect("generate");
            black_box((n, stats))
        })
    });
    group.finish();
}

criterion_group!(benches, scaled_hour);
criterion_main!(benches);
