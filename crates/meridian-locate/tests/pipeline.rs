//! The stage over an ordered folder: every window observed once, every transit
//! located once by the chunk of its earliest window, incremental re-runs that give
//! exactly what a fresh run gives, removal of vanished chunks, failures that lose
//! nothing else, and byte-identical output whatever the thread count.

mod common;

use common::{sim_stretch, write_ordered};
use meridian_core::geom::MAS_PER_RAD;
use meridian_core::product::{find_products, read_all, read_header};
use meridian_core::records::{Observation, RecordKind, Transit, Window};
use meridian_core::time::NS_PER_S;
use meridian_core::{Flag, Vec3};
use meridian_locate::pipeline::{STATE_FILE, output_paths};
use meridian_locate::{LocateSummary, plan};
use meridian_order::Stream;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

const CHUNK: u64 = 60 * NS_PER_S;
/// Mission time of the stretch: chunk-aligned, away from zero.
const T0: u64 = 1_000 * CHUNK;

fn run(input: &Path, out: &Path) -> LocateSummary {
    let progress = meridian_core::stage::CountingProgress::default();
    let summary = plan(input, out).unwrap().execute(&progress).unwrap();
    // One phase of the chunks to process, one step per chunk computed.
    let processed = summary.chunks_processed + summary.chunks_failed.len() as u64;
    assert_eq!(progress.phases(), vec![("chunks".to_owned(), processed)]);
    assert_eq!(progress.steps(), processed);
    summary
}

/// Every product file under `dir` with its bytes, by path relative to `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    find_products(dir)
        .unwrap()
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn all_of<R: meridian_core::Record>(dir: &Path, kind: RecordKind) -> Vec<R> {
    find_products(dir)
        .unwrap()
        .into_iter()
        .filter(|p| read_header(p).unwrap().kind == kind)
        .flat_map(|p| read_all::<R>(&p).unwrap())
        .collect()
}

fn windows_of(transits: &[common::SimTransit]) -> Vec<Window> {
    transits.iter().flat_map(|t| t.windows.clone()).collect()
}

#[test]
fn a_stretch_of_sky_is_located_once_per_window_and_transit() {
    let (sim, attitude, _) = sim_stretch(11, 120, T0, 3 * CHUNK);
    let windows = windows_of(&sim);
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_ordered(input.path(), CHUNK, &windows, &attitude, |_, _| 1);
    let summary = run(input.path(), out.path());
    assert!(summary.chunks_failed.is_empty());
    assert_eq!(summary.windows, windows.len() as u64);
    assert_eq!(summary.transits, sim.len() as u64);
    assert_eq!(summary.chunks_processed, summary.window_chunks);

    let obs: Vec<Observation> = all_of(out.path(), RecordKind::Observation);
    assert_eq!(obs.len(), windows.len());
    let transits: Vec<Transit> = all_of(out.path(), RecordKind::Transit);
    let by_id: HashMap<u64, &Transit> = transits.iter().map(|t| (t.transit_id, t)).collect();
    assert_eq!(by_id.len(), sim.len(), "each transit exactly once");
    let mut straddling = 0;
    for st in &sim {
        let t = by_id[&st.transit_id];
        assert_eq!(t.n_windows, 9);
        let est = Vec3::from_radec_deg(t.ra.unwrap(), t.dec.unwrap());
        // AC pixel quantisation dominates: < 0.5 px plus the along-scan error.
        let sep = est.angle_to(st.direction) * MAS_PER_RAD;
        assert!(sep < 95.0, "transit {} off by {sep} mas", st.transit_id);
        // Owned by the chunk of its earliest window.
        let first = st.windows.iter().map(|w| w.obt_ns).min().unwrap();
        let last = st.windows.iter().map(|w| w.obt_ns).max().unwrap();
        straddling += (first / CHUNK != last / CHUNK) as usize;
        let (_, path) = output_paths(out.path(), first / CHUNK * CHUNK);
        let owned: Vec<Transit> = read_all(&path).unwrap();
        assert!(owned.iter().any(|o| o.transit_id == st.transit_id));
    }
    assert!(
        straddling > 20,
        "the test must exercise chunk boundaries ({straddling})"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!(
        state["outputs"].as_object().unwrap().len() as u64,
        summary.window_chunks
    );
}

#[test]
fn rerun_redoes_only_what_changed_and_matches_a_fresh_run() {
    let (sim, attitude, _) = sim_stretch(12, 80, T0, 4 * CHUNK);
    let windows = windows_of(&sim);
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_ordered(input.path(), CHUNK, &windows, &attitude, |_, _| 1);
    let first = run(input.path(), out.path());
    let before = snapshot(out.path());

    // Nothing changed: nothing redone, nothing rewritten.
    let again = run(input.path(), out.path());
    assert_eq!(again.chunks_processed, 0);
    assert_eq!(again.chunks_up_to_date, first.window_chunks);
    assert_eq!(snapshot(out.path()), before);

    // A later delivery changes the third window chunk: it loses a window of a
    // transit that began in the second chunk.
    let changed_start = T0 + 2 * CHUNK;
    let victim = windows
        .iter()
        .filter(|w| w.obt_ns / CHUNK * CHUNK == changed_start)
        .find(|w| w.strip > 0 && w.strip < 8)
        .unwrap()
        .clone();
    let fewer: Vec<Window> = windows.iter().filter(|w| **w != victim).cloned().collect();
    write_ordered(input.path(), CHUNK, &fewer, &attitude, |s, start| {
        1 + (s == Stream::Window && start == changed_start) as u64
    });
    let rerun = run(input.path(), out.path());
    // The changed chunk and the neighbours within a transit span of it.
    assert_eq!(rerun.chunks_processed, 3, "{rerun:?}");

    let fresh = tempfile::tempdir().unwrap();
    run(input.path(), fresh.path());
    assert_eq!(snapshot(out.path()), snapshot(fresh.path()));
    let transits: Vec<Transit> = all_of(out.path(), RecordKind::Transit);
    let t = transits
        .iter()
        .find(|t| t.transit_id == victim.transit_id)
        .unwrap();
    assert_eq!(t.n_windows, 8);
}

#[test]
fn vanished_chunks_lose_their_outputs_and_strays_are_removed() {
    let (sim, attitude, _) = sim_stretch(13, 40, T0, 3 * CHUNK);
    let windows = windows_of(&sim);
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_ordered(input.path(), CHUNK, &windows, &attitude, |_, _| 1);
    run(input.path(), out.path());
    // A crash left a finished temporary file that looks like a product.
    let stray = out
        .path()
        .join("transit")
        .join(".00000000000000000000.mprod.1-1.tmp");
    std::fs::copy(output_paths(out.path(), T0).1, &stray).unwrap();

    let kept: Vec<Window> = windows
        .iter()
        .filter(|w| w.obt_ns < T0 + 2 * CHUNK)
        .cloned()
        .collect();
    write_ordered(input.path(), CHUNK, &kept, &attitude, |_, _| 1);
    let s = run(input.path(), out.path());
    assert!(s.chunks_removed >= 1, "{s:?}");
    assert!(!stray.exists());
    let (o, t) = output_paths(out.path(), T0 + 3 * CHUNK);
    assert!(!o.exists() && !t.exists());
    let fresh = tempfile::tempdir().unwrap();
    run(input.path(), fresh.path());
    assert_eq!(snapshot(out.path()), snapshot(fresh.path()));
}

#[test]
fn output_is_identical_whatever_the_thread_count() {
    let (sim, attitude, _) = sim_stretch(14, 60, T0, 2 * CHUNK);
    let input = tempfile::tempdir().unwrap();
    write_ordered(input.path(), CHUNK, &windows_of(&sim), &attitude, |_, _| 1);
    let snaps: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|threads| {
            let out = tempfile::tempdir().unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run(input.path(), out.path()));
            snapshot(out.path())
        })
        .collect();
    assert!(!snaps[0].is_empty());
    assert_eq!(snaps[0], snaps[1]);
    assert_eq!(snaps[0], snaps[2]);
}

#[test]
fn a_corrupt_chunk_fails_alone_and_names_itself() {
    let (sim, attitude, _) = sim_stretch(15, 60, T0, 4 * CHUNK);
    let windows = windows_of(&sim);
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let manifest = write_ordered(input.path(), CHUNK, &windows, &attitude, |_, _| 1);
    run(input.path(), out.path());
    // Corrupt the last window chunk in place (same manifest entry).
    let last = manifest.chunks_of(Stream::Window).last().unwrap().clone();
    let path = input.path().join(&last.path);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    // Force a re-run of everything by dropping the state.
    std::fs::remove_file(out.path().join(STATE_FILE)).unwrap();
    let s = run(input.path(), out.path());
    // The corrupt chunk and the one before it (which reads it for its transits).
    assert_eq!(s.chunks_failed.len(), 2, "{s:?}");
    assert!(
        s.chunks_failed
            .iter()
            .all(|f| f.error.contains(&last.path.to_string_lossy().into_owned()))
    );
    for f in &s.chunks_failed {
        let (o, t) = output_paths(out.path(), f.start_obt_ns);
        assert!(!o.exists() && !t.exists());
    }
    assert_eq!(s.chunks_processed, s.window_chunks - 2);
}

#[test]
fn windows_beyond_the_attitude_are_flagged_not_dropped() {
    let (sim, attitude, _) = sim_stretch(16, 30, T0, 2 * CHUNK);
    let windows = windows_of(&sim);
    let cut = T0 + CHUNK;
    let early: Vec<_> = attitude.into_iter().filter(|a| a.obt_ns < cut).collect();
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_ordered(input.path(), CHUNK, &windows, &early, |_, _| 1);
    let s = run(input.path(), out.path());
    assert_eq!(s.windows, windows.len() as u64);
    assert!(s.no_attitude > 0 && s.transits_no_position > 0, "{s:?}");
    let obs: Vec<Observation> = all_of(out.path(), RecordKind::Observation);
    let last_sample = early.iter().map(|a| a.obt_ns).max().unwrap();
    for o in &obs {
        // Beyond the last sample there is no bracket on the right.
        let late = o.t_obs_ns > last_sample;
        assert_eq!(o.flags.contains(Flag::NoAttitude), late, "{o:?}");
        assert_eq!(o.ra.is_none(), late);
    }
}

#[test]
fn a_missing_manifest_is_a_clear_error() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = plan(input.path(), out.path()).err().unwrap().to_string();
    assert!(err.contains("manifest.json"), "{err}");
}

#[test]
fn batches_of_chunks_change_nothing() {
    // 40 chunks: a fresh run works in several batches; an incremental run after
    // a change in the middle works on three chunks alone. Both must agree.
    let (sim, attitude, _) = sim_stretch(17, 160, T0, 40 * CHUNK);
    let windows = windows_of(&sim);
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_ordered(input.path(), CHUNK, &windows, &attitude, |_, _| 1);
    // Batches of 7 chunks: every batch boundary has transits across it.
    let first = plan(input.path(), out.path())
        .unwrap()
        .with_batch_chunks(7)
        .execute(&meridian_core::stage::NoProgress)
        .unwrap();
    assert!(first.window_chunks > 32, "{first:?}");
    assert_eq!(first.transits, sim.len() as u64);
    let one_batch = tempfile::tempdir().unwrap();
    run(input.path(), one_batch.path());
    assert_eq!(snapshot(out.path()), snapshot(one_batch.path()));

    let changed_start = T0 + 20 * CHUNK;
    let fewer: Vec<Window> = windows
        .iter()
        .filter(|w| w.obt_ns / CHUNK * CHUNK != changed_start || w.strip != 4)
        .cloned()
        .collect();
    assert!(fewer.len() < windows.len());
    write_ordered(input.path(), CHUNK, &fewer, &attitude, |s, start| {
        1 + (s == Stream::Window && start == changed_start) as u64
    });
    let rerun = run(input.path(), out.path());
    assert_eq!(rerun.chunks_processed, 3, "{rerun:?}");
    let fresh = tempfile::tempdir().unwrap();
    run(input.path(), fresh.path());
    assert_eq!(snapshot(out.path()), snapshot(fresh.path()));
}

#[test]
fn batches_change_nothing_whatever_the_chunk_length() {
    // A chunk located by one batch as a later chunk may reach beyond the
    // attitude that batch read unless chunks are 60 s long: batches of one
    // chunk must still give exactly what one batch gives.
    for chunk_s in [40, 120] {
        let chunk = chunk_s * NS_PER_S;
        let (sim, attitude, _) = sim_stretch(23, 120, T0, 20 * CHUNK);
        let input = tempfile::tempdir().unwrap();
        write_ordered(input.path(), chunk, &windows_of(&sim), &attitude, |_, _| 1);
        let batched = tempfile::tempdir().unwrap();
        plan(input.path(), batched.path())
            .unwrap()
            .with_batch_chunks(1)
            .execute(&meridian_core::stage::NoProgress)
            .unwrap();
        let one_batch = tempfile::tempdir().unwrap();
        run(input.path(), one_batch.path());
        assert_eq!(
            snapshot(batched.path()),
            snapshot(one_batch.path()),
            "{chunk_s} s chunks"
        );
    }
}

#[test]
fn the_algorithm_name_carries_the_observation_level() {
    use meridian_locate::pipeline::{ALGORITHM, OBSERVATION_ZSTD_LEVEL};
    assert!(
        ALGORITHM.ends_with(&format!(" obs-zstd{OBSERVATION_ZSTD_LEVEL}")),
        "{ALGORITHM}"
    );
}

#[test]
fn lost_outputs_are_remade_and_a_second_run_is_locked_out() {
    let (sim, attitude, _) = sim_stretch(18, 40, T0, 3 * CHUNK);
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_ordered(input.path(), CHUNK, &windows_of(&sim), &attitude, |_, _| 1);
    run(input.path(), out.path());
    let before = snapshot(out.path());
    // An output lost (deleted by hand, or a disk restored from backup).
    std::fs::remove_file(output_paths(out.path(), T0 + CHUNK).1).unwrap();
    let s = run(input.path(), out.path());
    assert_eq!(s.chunks_processed, 1, "{s:?}");
    assert_eq!(snapshot(out.path()), before);

    let held = plan(input.path(), out.path()).unwrap();
    let err = plan(input.path(), out.path()).err().unwrap();
    assert!(
        err.to_string().contains("another meridian-locate run"),
        "{err}"
    );
    drop(held);
    assert!(plan(input.path(), out.path()).is_ok());
}

#[test]
fn a_corrupt_chunk_at_a_batch_boundary_fails_the_same_in_any_batches() {
    // Batches of two chunks: the corrupt third chunk is the later chunk of the
    // first batch and the own chunk of the second, so the second batch must meet
    // the failure again rather than take anything over from the first.
    let (sim, attitude, _) = sim_stretch(21, 90, T0, 6 * CHUNK);
    let windows = windows_of(&sim);
    let input = tempfile::tempdir().unwrap();
    let manifest = write_ordered(input.path(), CHUNK, &windows, &attitude, |_, _| 1);
    let corrupt = manifest.chunks_of(Stream::Window).nth(2).unwrap().clone();
    let path = input.path().join(&corrupt.path);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let batched = tempfile::tempdir().unwrap();
    let s = plan(input.path(), batched.path())
        .unwrap()
        .with_batch_chunks(2)
        .execute(&meridian_core::stage::NoProgress)
        .unwrap();
    // The corrupt chunk and its neighbours, which read it for their transits.
    let failed: Vec<u64> = s.chunks_failed.iter().map(|f| f.start_obt_ns).collect();
    let expected: Vec<u64> = manifest
        .chunks_of(Stream::Window)
        .skip(1)
        .take(3)
        .map(|c| c.start_obt_ns)
        .collect();
    assert_eq!(failed, expected, "{s:?}");
    let one_batch = tempfile::tempdir().unwrap();
    let s1 = run(input.path(), one_batch.path());
    assert_eq!(s1.chunks_failed, s.chunks_failed);
    assert_eq!(s1.chunks_processed, s.chunks_processed);
    assert_eq!(snapshot(batched.path()), snapshot(one_batch.path()));
}
