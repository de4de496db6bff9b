//! Benchmark of index build and match on a synthetic sky, one phase per process
//! so each phase's peak memory (VmHWM) is its own. Driven by
//! `bench/compare_astropy.py`, which runs astropy on the same data; usable alone:
//!
//! ```text
//! cargo run --release -p meridian-xmatch --example xmatch_bench -- gen DIR 10000000 1000000
//! cargo run --release -p meridian-xmatch --example xmatch_bench -- build DIR
//! cargo run --release -p meridian-xmatch --example xmatch_bench -- match DIR
//! cargo run --release -p meridian-xmatch --example xmatch_bench -- run DIR
//! ```
//! `split DIR N` rewrites the transits as N files in `DIR/located-split`, as
//! the locate stage delivers them (one per chunk), for memory measurements
//! not dominated by one huge mapped input file; `replicate DIR K` then
//! writes K copies of those files (ids offset by k·2^40, same positions) in
//! `DIR/located-xK`: a day K times larger without holding it in memory.
//! `run` times the whole product-to-product path of `meridian-xmatch` (read
//! and match, finish, write) stage by stage; `repeat DIR N` only the match, N
//! times (a subject for profilers; `XM_DUMP=FILE` keeps the records).
//! Each phase prints one JSON object on stdout.

use meridian_core::Vec3;
use meridian_core::geom::RAD_PER_MAS;
use meridian_core::product;
use meridian_core::records::{Flags, Transit};
use meridian_core::resources;
use meridian_core::time::julian_epoch_tt;
use meridian_xmatch::propagate::propagate;
use meridian_xmatch::{BuildOptions, Index, Matcher, build_index_from_path};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const NS_PER_YEAR: f64 = 365.25 * 86400.0 * 1e9;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.get(1).expect("usage: gen|build|match DIR ..."));
    let json = match args[0].as_str() {
        "gen" => generate(&dir, args[2].parse().unwrap(), args[3].parse().unwrap()),
        "build" => build(&dir),
        "match" => run_match(&dir),
        "repeat" => repeat_match(&dir, args.get(2).map_or(3, |n| n.parse().unwrap())),
        "run" => whole_run(&dir),
        "split" => split(&dir, args[2].parse().unwrap()),
        "replicate" => replicate(&dir, args[2].parse().unwrap()),
        other => panic!("unknown phase {other}"),
    };
    println!("{json}");
}

fn vm_hwm_mib() -> f64 {
    resources::peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / (1u64 << 20) as f64)
}

/// CPU seconds (user + system) of this process so far: with other work on the
/// machine, rates per CPU second are steadier than wall-clock rates.
fn cpu_seconds() -> f64 {
    resources::cpu_seconds().unwrap_or(f64::NAN)
}

/// CPU seconds of the calling (main) thread: the sequential part of a phase,
/// which bounds its wall time on an otherwise idle machine.
fn main_thread_cpu_seconds() -> f64 {
    resources::thread_cpu_seconds().unwrap_or(f64::NAN)
}

fn write_f64s(path: &Path, values: &[f64]) {
    let mut w = BufWriter::new(std::fs::File::create(path).unwrap());
    for v in values {
        w.write_all(&v.to_le_bytes()).unwrap();
    }
    w.flush().unwrap();
}

/// Uniform sky; proper motions of a few mas/yr, one source in 2000 a fast mover;
/// 90% of transits see a catalogue star (at its propagated position, 30 mas
/// noise), 10% fall anywhere.
fn generate(dir: &Path, n_sources: usize, n_transits: usize) -> String {
    std::fs::create_dir_all(dir.join("located")).unwrap();
    let mut rng = Pcg64::seed_from_u64(2026);
    let mut csv = BufWriter::with_capacity(
        1 << 22,
        std::fs::File::create(dir.join("catalogue.csv")).unwrap(),
    );
    writeln!(csv, "source_id,ra,dec,pmra,pmdec,ref_epoch,phot_g_mean_mag").unwrap();
    let mut stars = Vec::with_capacity(n_sources);
    let (mut ras, mut decs) = (Vec::with_capacity(n_sources), Vec::with_capacity(n_sources));
    for k in 0..n_sources {
        let ra = rng.random::<f64>() * 360.0;
        let dec = (rng.random::<f64>() * 2.0 - 1.0).asin().to_degrees();
        let scale = if rng.random_range(0..2000) == 0 {
            5000.0
        } else {
            10.0
        };
        let pmra = ((rng.random::<f64>() * 2.0 - 1.0) * scale) as f32 as f64;
        let pmdec = ((rng.random::<f64>() * 2.0 - 1.0) * scale) as f32 as f64;
        let mag = 8.0 + rng.random::<f64>() * 13.0;
        let id = 1000 + 7 * k as i64;
        writeln!(
            csv,
            "{id},{ra:.10},{dec:.10},{pmra},{pmdec},2016.0,{mag:.3}"
        )
        .unwrap();
        // Keep the CSV's rounded position as the truth.
        let ra: f64 = format!("{ra:.10}").parse().unwrap();
        let dec: f64 = format!("{dec:.10}").parse().unwrap();
        stars.push((id, Vec3::from_radec_deg(ra, dec), pmra, pmdec));
        ras.push(ra);
        decs.push(dec);
    }
    csv.flush().unwrap();
    write_f64s(&dir.join("cat_ra.f64"), &ras);
    write_f64s(&dir.join("cat_dec.f64"), &decs);
    let mut transits = Vec::with_capacity(n_transits);
    let mut truth = Vec::with_capacity(n_transits);
    let (mut tra, mut tdec) = (Vec::new(), Vec::new());
    let day0 = 16.0 * NS_PER_YEAR;
    for k in 0..n_transits {
        let t_obs_ns = (day0 + rng.random::<f64>() * 86400e9) as u64;
        let (pos, true_id) = if rng.random_range(0..10) == 0 {
            let ra = rng.random::<f64>() * 360.0;
            let dec = (rng.random::<f64>() * 2.0 - 1.0).asin().to_degrees();
            (Vec3::from_radec_deg(ra, dec), None)
        } else {
            let (id, r, pmra, pmdec) = stars[rng.random_range(0..stars.len())];
            let u = propagate(r, pmra, pmdec, julian_epoch_tt(t_obs_ns) - 2016.0);
            let noise = Vec3::new(
                rng.random::<f64>() - 0.5,
                rng.random::<f64>() - 0.5,
                rng.random::<f64>() - 0.5,
            );
            let noise = (noise - u * noise.dot(u)).normalized() * (30.0 * RAD_PER_MAS);
            ((u + noise).normalized(), Some(id))
        };
        let (ra, dec) = pos.to_radec_deg();
        tra.push(ra);
        tdec.push(dec);
        truth.push(true_id);
        transits.push(Transit {
            transit_id: 5_000_000_000 + 3 * k as u64,
            fov: (k % 2) as u8,
            row: 1 + (k % 7) as u8,
            t_obs_ns,
            ra: Some(ra),
            dec: Some(dec),
            n_windows: 9,
            mag: None,
            flags: Flags::EMPTY,
            sigma_al_mas: None,
            sigma_ac_mas: None,
            scan_pa_deg: None,
        });
    }
    product::write_all(dir.join("located/transits.mprod"), &transits).unwrap();
    write_f64s(&dir.join("tr_ra.f64"), &tra);
    write_f64s(&dir.join("tr_dec.f64"), &tdec);
    let truth: Vec<String> = truth
        .iter()
        .map(|t| t.map_or("-".into(), |id| id.to_string()))
        .collect();
    std::fs::write(dir.join("truth.txt"), truth.join("\n")).unwrap();
    format!("{{\"phase\":\"gen\",\"sources\":{n_sources},\"transits\":{n_transits}}}")
}

fn build(dir: &Path) -> String {
    let (cpu0, main0) = (cpu_seconds(), main_thread_cpu_seconds());
    let start = Instant::now();
    let report = build_index_from_path(
        &dir.join("catalogue.csv"),
        &dir.join("catalogue.idx"),
        &BuildOptions {
            // XM_PER_CELL overrides the depth choice, for tuning experiments.
            sources_per_cell: std::env::var("XM_PER_CELL")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(64.0),
            ..Default::default()
        },
        &meridian_core::stage::NoProgress,
    )
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let main_cpu = main_thread_cpu_seconds() - main0;
    format!(
        "{{\"phase\":\"build\",\"sources\":{},\"seconds\":{secs:.3},\"cpu_seconds\":{cpu:.3},\"main_thread_cpu_seconds\":{main_cpu:.3},\"sources_per_cpu_s\":{:.0},\"sources_per_s\":{:.0},\"vm_hwm_mib\":{:.1},\"depth\":{},\"fast_sources\":{}}}",
        report.sources,
        report.sources as f64 / cpu,
        report.sources as f64 / secs,
        vm_hwm_mib(),
        report.info.tiers[0].depth,
        report.info.tiers[1].sources
    )
}

/// The whole run path, as `meridian-xmatch --index --in --out` does it
/// (streaming, into `DIR/run-out`; `XM_BATCH` sets the batch size), with the
/// index opening and the run timed apart.
fn whole_run(dir: &Path) -> String {
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let index = Index::open(dir.join("catalogue.idx")).unwrap();
    let files = meridian_xmatch::run::transit_products(&dir.join("located")).unwrap();
    let mut opts = meridian_xmatch::RunOptions::default();
    if let Some(batch) = std::env::var("XM_BATCH").ok().and_then(|v| v.parse().ok()) {
        opts.batch_size = batch;
    }
    let opened = start.elapsed().as_secs_f64();
    let summary = meridian_xmatch::run::run_whole(
        &index,
        &files,
        &opts,
        &dir.join("run-out"),
        &meridian_core::stage::NoProgress,
    )
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let records = summary.transits_matched + summary.transits_unmatched;
    format!(
        "{{\"phase\":\"run\",\"transits\":{records},\"batch\":{},\"open_seconds\":{opened:.3},\"seconds\":{secs:.3},\"cpu_seconds\":{cpu:.3},\"transits_per_s\":{:.0},\"vm_hwm_mib\":{:.1}}}",
        opts.batch_size,
        records as f64 / secs,
        vm_hwm_mib()
    )
}

/// The transits of `DIR/located` as `parts` files of consecutive records in
/// `DIR/located-split`, streamed (never all in memory).
fn split(dir: &Path, parts: u64) -> String {
    let source = dir.join("located/transits.mprod");
    let total = product::read_header(&source).unwrap().record_count;
    let out = dir.join("located-split");
    std::fs::create_dir_all(&out).unwrap();
    let per_part = total.div_ceil(parts.max(1)).max(1);
    let mut writer: Option<product::ProductWriter<Transit>> = None;
    for (i, transit) in product::ProductReader::<Transit>::open(&source)
        .unwrap()
        .enumerate()
    {
        if (i as u64).is_multiple_of(per_part) {
            if let Some(w) = writer.take() {
                w.finish().unwrap();
            }
            let name = format!("part-{:05}.mprod", i as u64 / per_part);
            writer = Some(product::ProductWriter::create(out.join(name)).unwrap());
        }
        writer.as_mut().unwrap().push(&transit.unwrap()).unwrap();
    }
    if let Some(w) = writer {
        w.finish().unwrap();
    }
    format!("{{\"phase\":\"split\",\"transits\":{total},\"parts\":{parts}}}")
}

/// K copies of `DIR/located-split`, streamed, in `DIR/located-xK`.
fn replicate(dir: &Path, copies: u64) -> String {
    let out = dir.join(format!("located-x{copies}"));
    std::fs::create_dir_all(&out).unwrap();
    let files = product::find_products(dir.join("located-split")).unwrap();
    for k in 0..copies {
        for (i, file) in files.iter().enumerate() {
            let name = format!("part-{k:03}-{i:05}.mprod");
            let mut writer = product::ProductWriter::create(out.join(name)).unwrap();
            for transit in product::ProductReader::<Transit>::open(file).unwrap() {
                let mut transit = transit.unwrap();
                transit.transit_id += k << 40;
                writer.push(&transit).unwrap();
            }
            writer.finish().unwrap();
        }
    }
    format!(
        "{{\"phase\":\"replicate\",\"copies\":{copies},\"files\":{}}}",
        files.len()
    )
}

/// Only the timed match, `n` times: a clean subject for a profiler
/// (`perf record`, `valgrind --tool=callgrind`).
fn repeat_match(dir: &Path, n: usize) -> String {
    let index = Index::open(dir.join("catalogue.idx")).unwrap();
    let transits: Vec<Transit> = product::read_all(dir.join("located/transits.mprod")).unwrap();
    let matcher = Matcher::new(&index, 1.0).unwrap();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(matcher.match_transits(&transits).unwrap());
    }
    let secs = start.elapsed().as_secs_f64() / n as f64;
    let cpu = (cpu_seconds() - cpu0) / n as f64;
    // XM_DUMP=FILE keeps the records as JSON lines (exact floats), to check
    // that a change leaves them identical.
    if let Ok(path) = std::env::var("XM_DUMP") {
        let mut w = BufWriter::new(std::fs::File::create(path).unwrap());
        for m in matcher.match_transits(&transits).unwrap() {
            serde_json::to_writer(&mut w, &m).unwrap();
            w.write_all(b"\n").unwrap();
        }
        w.flush().unwrap();
    }
    format!(
        "{{\"phase\":\"repeat\",\"passes\":{n},\"seconds\":{secs:.3},\"cpu_seconds\":{cpu:.3},\"transits_per_s\":{:.0}}}",
        transits.len() as f64 / secs
    )
}

fn run_match(dir: &Path) -> String {
    let index = Index::open(dir.join("catalogue.idx")).unwrap();
    let start = Instant::now();
    let transits: Vec<Transit> = product::read_all(dir.join("located/transits.mprod")).unwrap();
    let read_secs = start.elapsed().as_secs_f64();
    let matcher = Matcher::new(&index, 1.0).unwrap();
    // One warm-up pass maps the index pages in; the timed pass is the steady state
    // a daily run sees once its part of the index is cached.
    let cold = Instant::now();
    let _ = matcher.match_transits(&transits).unwrap();
    let cold_secs = cold.elapsed().as_secs_f64();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let records = matcher.match_transits(&transits).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let hwm = vm_hwm_mib();
    // Breakdown: the parallel candidate search alone, and new-source linking.
    let positions: Vec<meridian_xmatch::TransitPos> = transits
        .iter()
        .filter_map(meridian_xmatch::TransitPos::from_transit)
        .collect();
    let t = Instant::now();
    let cands = matcher.candidates(&positions);
    let cand_secs = t.elapsed().as_secs_f64();
    let unmatched: Vec<meridian_xmatch::TransitPos> = positions
        .iter()
        .enumerate()
        .filter(|(i, _)| cands.get(*i).is_empty())
        .map(|(_, p)| *p)
        .collect();
    let t = Instant::now();
    let _ = meridian_xmatch::newsource::link_new_sources(&unmatched, matcher.radius_rad());
    let link_secs = t.elapsed().as_secs_f64();
    let truth_text = std::fs::read_to_string(dir.join("truth.txt")).unwrap();
    let truth: Vec<Option<i64>> = truth_text.lines().map(|l| l.parse().ok()).collect();
    let mut by_id: Vec<(u64, Option<i64>)> = transits
        .iter()
        .zip(&truth)
        .map(|(t, s)| (t.transit_id, *s))
        .collect();
    by_id.sort_unstable();
    let with_truth = truth.iter().filter(|t| t.is_some()).count();
    let correct = records
        .iter()
        .zip(&by_id)
        .filter(|(m, (_, s))| s.is_some() && m.source_id == *s)
        .count();
    let matched = records.iter().filter(|m| m.source_id.is_some()).count();
    format!(
        "{{\"phase\":\"match\",\"transits\":{},\"read_seconds\":{read_secs:.3},\"cold_seconds\":{cold_secs:.3},\"seconds\":{secs:.3},\"cpu_seconds\":{cpu:.3},\"transits_per_cpu_s\":{:.0},\"transits_per_s\":{:.0},\"matched\":{matched},\"true_star_recovered\":{:.6},\"threads\":{},\"vm_hwm_mib\":{hwm:.1},\"candidates_seconds\":{cand_secs:.3},\"unmatched\":{},\"link_seconds\":{link_secs:.3}}}",
        transits.len(),
        transits.len() as f64 / cpu,
        transits.len() as f64 / secs,
        correct as f64 / with_truth as f64,
        rayon::current_num_threads(),
        unmatched.len()
    )
}
