//! Throughput of the ordering stage against a plain sequential read and write of
//! the same records, and its peak memory against the budget.
//!
//! `cargo bench -p meridian-order --bench order`. Criterion reports the medians of
//! `order/*` and `baseline/read_write` (records/s and, with the printed input
//! size, MB/s); the ratio is baseline time / order time. Peak memory is measured
//! in child processes of this benchmark (one `order` run each), from `VmHWM`.
//! `MERIDIAN_BENCH_DIR=/dev/shm` runs it in memory, without the disk's fsync
//! latency.
//!
//! `sorter/*` times the hot path alone on the day's windows: buffering them in
//! the external sorter (held form, chunk buckets), then sorting and merging
//! every partition, all in memory (`in_memory`) or with a spill every 64 Ki
//! windows (`spilled`, sorted runs written and merged back).

use criterion::{BenchmarkId, Criterion, Throughput};
use meridian_core::Record;
use meridian_core::product::{ProductReader, ProductWriter};
use meridian_core::records::{Attitude, Hk, Window};
use meridian_order::sort::ExternalSorter;
use meridian_order::synth::{DayConfig, Payload, generate_day, write_day};
use meridian_order::{NoProgress, Options, order};
use std::hint::black_box;
use std::path::{Path, PathBuf};

const CHILD_ENV: &str = "MERIDIAN_ORDER_BENCH_CHILD";

fn day_config() -> DayConfig {
    DayConfig {
        seed: 2024,
        duration_s: 3600,
        window_rate: 20.0,
        loss: 0.01,
        retransmit: 0.05,
        deliveries: 24,
        ..DayConfig::default()
    }
}

/// Writes the benchmark's decoded folder; returns (records, product bytes).
fn prepare(decoded: &Path) -> (u64, u64) {
    let day = generate_day(&day_config());
    write_day(decoded, &day, 1).unwrap();
    let mut records = 0;
    let mut bytes = 0;
    for d in std::fs::read_dir(decoded.join("deliveries")).unwrap() {
        let d = d.unwrap().path();
        for f in ["window.mprod", "attitude.mprod", "hk.mprod"] {
            let p = d.join(f);
            bytes += std::fs::metadata(&p).unwrap().len();
            records += meridian_core::product::read_header(&p)
                .unwrap()
                .record_count;
        }
    }
    (records, bytes)
}

fn copy_kind<R: Record>(from: &Path, to: &Path) {
    let mut w = ProductWriter::<R>::create(to).unwrap();
    for r in ProductReader::<R>::open(from).unwrap() {
        w.push(&r.unwrap()).unwrap();
    }
    w.finish().unwrap();
}

/// The baseline: read every record of every delivery and write it back out, in
/// input order, through the same product format.
fn read_write(decoded: &Path, out: &Path) {
    for d in std::fs::read_dir(decoded.join("deliveries")).unwrap() {
        let d = d.unwrap().path();
        let o = out.join(d.file_name().unwrap());
        std::fs::create_dir_all(&o).unwrap();
        copy_kind::<Window>(&d.join("window.mprod"), &o.join("window.mprod"));
        copy_kind::<Attitude>(&d.join("attitude.mprod"), &o.join("attitude.mprod"));
        copy_kind::<Hk>(&d.join("hk.mprod"), &o.join("hk.mprod"));
    }
}

fn run_order(decoded: &Path, out: &Path, mem: u64) -> meridian_order::RunSummary {
    let _ = std::fs::remove_dir_all(out);
    let mut opts = Options::new(decoded, out);
    opts.mem_bytes = mem;
    order(&opts, &NoProgress).unwrap()
}

/// In a child: one run, then its peak RSS and spill count on stdout.
fn child(decoded: &str, out: &str, mem: u64) {
    let s = run_order(Path::new(decoded), Path::new(out), mem);
    println!("{} {}", s.peak_rss_bytes.unwrap_or(0), s.spill_runs);
}

fn peak_in_child(decoded: &Path, out: &Path, mem: u64) -> (u64, u64) {
    let o = std::process::Command::new(std::env::current_exe().unwrap())
        .env(
            CHILD_ENV,
            format!("{}\n{}\n{mem}", decoded.display(), out.display()),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Every window of the benchmark day, in delivery order.
fn day_windows() -> Vec<Window> {
    let day = generate_day(&day_config());
    let mut out = Vec::new();
    for packet in day.deliveries.iter().flatten() {
        if let Payload::Window(v) = &packet.payload {
            out.extend(v.iter().cloned());
        }
    }
    out
}

/// Buffers `windows` (spilling every `spill_every`), then merges every
/// partition; returns the records seen, in order.
fn sort_windows(dir: &Path, windows: &[Window], spill_every: usize) -> u64 {
    let mut sorter = ExternalSorter::<Window>::new(dir, 60_000_000_000);
    for (i, w) in windows.iter().enumerate() {
        sorter.push(w.clone());
        if (i + 1) % spill_every == 0 {
            sorter.spill().unwrap();
        }
    }
    let mut n = 0;
    let mut last = 0;
    for part in sorter.finish().unwrap().parts {
        for r in part.merge().unwrap().0 {
            let t = r.unwrap().obt_ns;
            assert!(t >= last, "sorted");
            last = t;
            n += 1;
        }
    }
    n
}

fn main() {
    if let Ok(args) = std::env::var(CHILD_ENV) {
        let parts: Vec<&str> = args.lines().collect();
        child(parts[0], parts[1], parts[2].parse().unwrap());
        return;
    }
    // MERIDIAN_BENCH_DIR picks the file system (e.g. /dev/shm to leave out fsync
    // latency of a shared disk); the default is the system's temporary folder.
    let scratch = match std::env::var_os("MERIDIAN_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let decoded: PathBuf = scratch.path().join("decoded");
    let (records, bytes) = prepare(&decoded);
    println!(
        "input: {records} records, {:.1} MB of product files in {} deliveries",
        bytes as f64 / 1e6,
        day_config().deliveries
    );
    let out = scratch.path().join("ordered");
    let copy = scratch.path().join("copy");

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("ordering");
    g.throughput(Throughput::Elements(records));
    g.bench_function("baseline/read_write", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&copy);
            read_write(black_box(&decoded), &copy)
        })
    });
    for (name, mem) in [("1GiB", 1u64 << 30), ("16MiB", 16 << 20)] {
        g.bench_with_input(BenchmarkId::new("order", name), &mem, |b, &mem| {
            b.iter(|| run_order(black_box(&decoded), &out, mem))
        });
    }
    g.finish();

    let windows = day_windows();
    let runs = scratch.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let mut g = c.benchmark_group("sorter");
    g.throughput(Throughput::Elements(windows.len() as u64));
    for (name, every) in [("in_memory", usize::MAX), ("spilled", 64 << 10)] {
        g.bench_function(name, |b| {
            b.iter(|| sort_windows(&runs, black_box(&windows), every))
        });
    }
    g.finish();
    c.final_summary();

    for mem in [1u64 << 30, 64 << 20, 16 << 20] {
        let (peak, spills) = peak_in_child(&decoded, &out, mem);
        println!(
            "peak memory with --mem {} MiB: {:.1} MiB ({} sorted runs spilled)",
            mem >> 20,
            peak as f64 / (1 << 20) as f64,
            spills
        );
    }
}
