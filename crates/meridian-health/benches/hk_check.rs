//! Housekeeping samples checked per second (target ≥ 10 M per core): the demo
//! database's five parameters (limits with a context, states, delta, stale,
//! frozen) over a synthetic day, fed in 60 s chunks as from ordered chunks.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meridian_health::HkChecker;
use meridian_health::synth::{DEMO_START_NS, demo_db, hk_day};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let db = demo_db();
    let records = hk_day(&db, DEMO_START_NS, 8.0, 3);
    let chunks: Vec<&[_]> = records
        .chunk_by(|a, b| a.obt_ns / 60_000_000_000 == b.obt_ns / 60_000_000_000)
        .collect();
    let mut g = c.benchmark_group("hk_check");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("feed_and_finish", |b| {
        b.iter(|| {
            let mut checker = HkChecker::new(&db, None);
            for chunk in &chunks {
                checker.feed(black_box(chunk));
            }
            black_box(checker.finish())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
