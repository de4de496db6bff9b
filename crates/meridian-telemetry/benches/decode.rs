//! Decoding throughput on a realistic delivery, with ratios taken in one run:
//! raw packet parsing (reader only; reader + records) per core, and decoding a
//! `.tm.zst` delivery against plain zstd decompression of the same file.
//!
//! `cargo bench -p meridian-telemetry --bench decode`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meridian_core::records::Window;
use meridian_telemetry::MissionDb;
use meridian_telemetry::appdata::{encode_attitude, encode_hk, encode_windows};
use meridian_telemetry::decode::Discard;
use meridian_telemetry::input::{DecodeOptions, decode_raw, decode_zstd};
use meridian_telemetry::packet::{SecondaryHeader, encode_idle, encode_packet};
use meridian_telemetry::reader::PacketReader;
use std::hint::black_box;
use std::path::Path;

const DB: &str = r#"
[[structure]]
sid = 1
name = "THERMAL"
[[structure.param]]
name = "FPA_TEMP_1"
type = "u16"
calibration = { polynomial = [100.0, 0.01] }
[[structure.param]]
name = "HTR_MODE"
type = "u8"
calibration = { states = { 0 = "OFF", 1 = "NOMINAL", 2 = "ECO" } }
[[structure.param]]
name = "BUS_V"
type = "f32"
"#;

/// Simple deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// About `target` octets of a science-dominated delivery as the spacecraft sends
/// it: window packets of 16 transits' windows (12 samples, star profile over
/// bias and noise), attitude every second, housekeeping, a little idle fill,
/// and rare faults (garbage runs, bit flips).
fn delivery(target: usize, db: &MissionDb) -> Vec<u8> {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let mut out = Vec::with_capacity(target + 70_000);
    let (mut t, mut seq, mut transit) = (500_000_000_000_000u64, 0u16, 1u64);
    while out.len() < target {
        let windows: Vec<Window> = (0..16 * 9)
            .map(|i| {
                let strip = (i % 9) as u8;
                let peak = 200 + (rng.next() % 3000) as i64;
                Window {
                    transit_id: transit + (i / 9) as u64,
                    strip,
                    row: 1 + (rng.next() % 7) as u8,
                    fov: (rng.next() % 2) as u8,
                    ac: (rng.next() % 1966) as u16,
                    obt_ns: t + i as u64 * 4_000_000,
                    onboard_mag: 12_000 + (rng.next() % 8000) as u16,
                    samples: (0..12i64)
                        .map(|s| {
                            let d = (s - 6) as f64;
                            let bump = peak as f64 * (-d * d / 2.0).exp();
                            (1000.0 + bump + (rng.next() % 7) as f64) as u16
                        })
                        .collect(),
                    seq: 0,
                    packet_obt_ns: 0,
                    packet_hash: 0,
                }
            })
            .collect();
        transit += 16;
        let mut data = Vec::new();
        encode_windows(&mut data, &windows);
        let sec = SecondaryHeader::new(200, 1, seq, t);
        encode_packet(&mut out, 0x101, seq, &sec, &data).unwrap();
        seq = seq.wrapping_add(1);
        if seq % 8 == 0 {
            let samples: Vec<(u64, [f64; 4])> = (0..8)
                .map(|i| (t + i * 1_000_000_000, [0.1, 0.2, 0.3, 0.927_361_8]))
                .collect();
            data.clear();
            encode_attitude(&mut data, &samples);
            let sec = SecondaryHeader::new(200, 2, seq, t);
            encode_packet(&mut out, 0x102, seq, &sec, &data).unwrap();
            data.clear();
            let raw = [6000.0 + (rng.next() % 50) as f64, 1.0, 28.1];
            encode_hk(&mut data, &db.structures[0], &raw);
            let sec = SecondaryHeader::new(3, 25, seq, t);
            encode_packet(&mut out, 0x201, seq, &sec, &data).unwrap();
            encode_idle(&mut out, seq, 64);
        }
        if seq % 997 == 0 {
            out.extend((0..100).map(|_| rng.next() as u8));
        }
        if seq % 1499 == 0 {
            let i = out.len() - 50;
            out[i] ^= 4;
        }
        t += 8_000_000_000;
    }
    out
}

fn benches(c: &mut Criterion) {
    let db = MissionDb::parse(DB, Path::new("bench.toml")).unwrap();
    let raw = delivery(64 << 20, &db);
    let zst = zstd::encode_all(&raw[..], 3).unwrap();
    eprintln!(
        "delivery: {} MB raw, {} MB zstd-3 (ratio {:.2})",
        raw.len() / 1_000_000,
        zst.len() / 1_000_000,
        raw.len() as f64 / zst.len() as f64
    );
    let sequential = DecodeOptions {
        segment_len: usize::MAX,
        ..DecodeOptions::default()
    };

    let mut g = c.benchmark_group("raw");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("reader_only_1core", |b| {
        b.iter(|| black_box(PacketReader::new(black_box(&raw)).count()))
    });
    g.bench_function("records_1core", |b| {
        b.iter(|| decode_raw(black_box(&raw), &db, "b.tm", sequential, &mut Discard).unwrap())
    });
    g.bench_function("records_all_cores", |b| {
        b.iter(|| {
            decode_raw(
                black_box(&raw),
                &db,
                "b.tm",
                DecodeOptions::default(),
                &mut Discard,
            )
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("zst");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("zstd_decompress_only", |b| {
        b.iter(|| zstd::stream::copy_decode(black_box(&zst[..]), std::io::sink()).unwrap())
    });
    g.bench_function("decode_to_records", |b| {
        b.iter(|| decode_zstd(black_box(&zst), &db, "b.tm.zst", sequential, &mut Discard).unwrap())
    });
    g.finish();
}

criterion_group!(decode, benches);
criterion_main!(decode);
