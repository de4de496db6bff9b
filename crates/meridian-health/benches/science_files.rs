//! Science health from product files: the bounded pass (default batch, and one
//! file per batch) against the whole-day method, on a synthetic 2 h located and
//! matched layout (60 s chunks, ~58 k transits, ~520 k observations).
//!
//! `cargo bench -p meridian-health --bench science_files`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meridian_health::bounded::{BoundedOptions, science_from_files, whole_day_from_files};
use meridian_health::science::ScienceConfig;
use meridian_health::synth::{DEMO_START_NS, renumber_by_time, science_day, write_located};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (mut obs, mut transits, mut matches) = science_day(DEMO_START_NS, 2.0, 4.0, 1, &[]);
    renumber_by_time(&mut obs, &mut transits, &mut matches, 0);
    let files = write_located(dir.path(), &obs, &transits, &matches).unwrap();
    let windows = obs.len() as u64;
    drop((obs, transits, matches));
    let cfg = ScienceConfig::default();
    let mut g = c.benchmark_group("science_files");
    g.throughput(Throughput::Elements(windows));
    g.sample_size(10);
    g.bench_function("whole_day", |b| {
        b.iter(|| {
            black_box(
                whole_day_from_files(&files.observations, &files.transits, &files.matches, &cfg)
                    .unwrap(),
            )
        })
    });
    for (name, opts) in [
        ("bounded_default", BoundedOptions::default()),
        ("bounded_batch_1", BoundedOptions { files_per_batch: 1 }),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let (h, stats) = science_from_files(
                    &files.observations,
                    &files.transits,
                    &files.matches,
                    &cfg,
                    opts,
                )
                .unwrap();
                assert_eq!(stats.fallback, None);
                black_box(h)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
