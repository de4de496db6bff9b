//! The bounded science pass equals the whole-day computation on a simulated day
//! laid out as `meridian-locate` and `meridian-xmatch` write it, whatever the
//! batch size, thread count or input order, and holds only a few bins and match
//! records at once when the inputs are in time order.

use meridian_core::product::{read_all, write_all};
use meridian_core::records::{Match, Observation, Transit};
use meridian_health::bounded::{
    BoundedOptions, BoundedStats, science_from_files, whole_day_from_files,
};
use meridian_health::run::{self, HealthConfig, RunOptions};
use meridian_health::science::{ScienceConfig, ScienceHealth, science_health};
use meridian_health::synth::{
    DEMO_START_NS, Disturbance, LocatedFiles, Rng, renumber_by_time, science_day,
    write_demo_inputs, write_located,
};
use std::path::{Path, PathBuf};

const S: u64 = 1_000_000_000;
const T0: u64 = DEMO_START_NS;
const HOURS: f64 = 3.0;

/// A simulated day's records, transit ids renumbered in time order (as the
/// spacecraft's ids rise with time).
struct Day {
    obs: Vec<Observation>,
    transits: Vec<Transit>,
    matches: Vec<Match>,
}

fn day(seed: u64) -> Day {
    let hit = Disturbance {
        obt_ns: T0 + 5000 * S,
        rate_mas_s: 3.0,
        settle_s: 60.0,
    };
    let (mut obs, mut transits, mut matches) = science_day(T0, HOURS, 0.2, seed, &[hit]);
    renumber_by_time(&mut obs, &mut transits, &mut matches, 1_000);
    Day {
        obs,
        transits,
        matches,
    }
}

/// Input files as the stages write them (see [`write_located`]).
type Files = LocatedFiles;

fn write_files(root: &Path, d: &Day) -> Files {
    write_located(root, &d.obs, &d.transits, &d.matches).unwrap()
}

fn bounded(f: &Files, batch: usize) -> (ScienceHealth, BoundedStats) {
    science_from_files(
        &f.observations,
        &f.transits,
        &f.matches,
        &ScienceConfig::default(),
        BoundedOptions {
            files_per_batch: batch,
        },
    )
    .unwrap()
}

fn whole(f: &Files) -> ScienceHealth {
    whole_day_from_files(
        &f.observations,
        &f.transits,
        &f.matches,
        &ScienceConfig::default(),
    )
    .unwrap()
    .0
}

/// Bins per field of view of the day.
fn day_bins() -> usize {
    (HOURS * 3600.0 / 600.0) as usize
}

#[test]
fn bounded_pass_equals_the_whole_day_for_any_batch_size() {
    let d = day(5);
    let dir = tempfile::tempdir().unwrap();
    let f = write_files(dir.path(), &d);
    let reference = science_health(&d.obs, &d.transits, &d.matches, &ScienceConfig::default());
    assert!(
        !reference.events.is_empty(),
        "the disturbance gives events to compare"
    );
    assert!(reference.bins.len() >= 2 * day_bins());
    assert_eq!(whole(&f), reference);
    for batch in [1, 2, 3, 7, 40, 100_000] {
        let (h, stats) = bounded(&f, batch);
        assert_eq!(h, reference, "batch of {batch} files");
        assert_eq!(stats.fallback, None);
        assert_eq!(stats.transits, d.transits.len() as u64);
        assert_eq!(stats.without_match, 0);
    }
}

#[test]
fn a_small_batch_holds_a_few_bins_and_match_records_not_the_day() {
    let d = day(6);
    let dir = tempfile::tempdir().unwrap();
    let f = write_files(dir.path(), &d);
    let (_, small) = bounded(&f, 2);
    // Two fields of view, each at most the bin being filled and the next (a
    // transit's windows reach 39 s past it) plus the one held by the slack.
    assert!(small.peak_open_bins <= 6, "{small:?}");
    // Ids rise with time: the buffer holds about one batch's transits.
    let per_chunk = d.transits.len() / (HOURS * 60.0) as usize;
    assert!(small.peak_buffered_matches <= 2 * per_chunk, "{small:?}");
    let (h, all) = bounded(&f, 100_000);
    assert_eq!(all.peak_open_bins, h.bins.len());
    assert!(h.bins.len() >= 2 * day_bins());
    assert_eq!(all.peak_buffered_matches, d.matches.len());
}

#[test]
fn result_does_not_depend_on_the_thread_count() {
    let d = day(7);
    let dir = tempfile::tempdir().unwrap();
    let f = write_files(dir.path(), &d);
    let with_threads = |n: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
            .install(|| bounded(&f, BoundedOptions::default().files_per_batch).0)
    };
    let one = with_threads(1);
    assert_eq!(one, whole(&f));
    assert_eq!(with_threads(3), one);
    assert_eq!(with_threads(8), one);
}

/// Rewrites a product file's records in a new order.
fn shuffle_file<R: meridian_core::Record + Clone>(path: &Path, seed: u64) {
    let mut records: Vec<R> = read_all(path).unwrap();
    let mut rng = Rng::new(seed);
    for i in (1..records.len()).rev() {
        records.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    write_all(path, &records).unwrap();
}

#[test]
fn a_file_named_later_than_its_records_falls_back_to_the_same_result() {
    let d = day(8);
    let dir = tempfile::tempdir().unwrap();
    let mut f = write_files(dir.path(), &d);
    let reference = whole(&f);
    // The first chunk's transits under the last chunk's name (+1 min).
    let first = f.transits.remove(0);
    let late = first.with_file_name(format!("{:020}.mprod", T0 + (HOURS * 3600.0) as u64 * S));
    std::fs::rename(&first, &late).unwrap();
    f.transits.push(late.clone());
    let (h, stats) = bounded(&f, 3);
    assert_eq!(h, reference);
    let reason = stats.fallback.expect("the misnamed file is noticed");
    assert!(reason.contains(&late.display().to_string()), "{reason}");
}

#[test]
fn an_unsorted_match_file_falls_back_to_the_same_result() {
    let d = day(9);
    let dir = tempfile::tempdir().unwrap();
    let f = write_files(dir.path(), &d);
    let reference = whole(&f);
    shuffle_file::<Match>(&f.matches[0], 1);
    let (h, stats) = bounded(&f, 3);
    assert_eq!(h, reference);
    let reason = stats.fallback.expect("the unsorted file is noticed");
    assert!(reason.contains("not sorted by transit_id"), "{reason}");
}

#[test]
fn a_transit_id_repeated_far_apart_falls_back_to_the_same_result() {
    let d = day(10);
    let dir = tempfile::tempdir().unwrap();
    let f = write_files(dir.path(), &d);
    // A copy of an early matched transit at the end of the day: the whole-day
    // method joins both copies with the one match record.
    let last = f.transits.last().unwrap();
    let mut records: Vec<Transit> = read_all(last).unwrap();
    let early = d
        .transits
        .iter()
        .filter(|t| {
            d.matches
                .iter()
                .any(|m| m.transit_id == t.transit_id && m.source_id.is_some())
        })
        .min_by_key(|t| t.t_obs_ns)
        .unwrap();
    let mut copy = early.clone();
    copy.t_obs_ns = records[0].t_obs_ns;
    records.push(copy);
    write_all(last, &records).unwrap();
    let reference = whole(&f);
    let (h, stats) = bounded(&f, 2);
    assert_eq!(h, reference);
    let reason = stats.fallback.expect("the repeated id is noticed");
    assert!(reason.contains(&early.transit_id.to_string()), "{reason}");
    // Within one batch both copies find the record: no fallback needed.
    let (h, stats) = bounded(&f, 100_000);
    assert_eq!((h, stats.fallback), (reference, None));
}

#[test]
fn unhelpful_but_valid_inputs_stay_bounded_path_and_exact() {
    let mut d = day(11);
    // Ids unrelated to time, records shuffled within their files, some
    // positioned transits without a match record, and names that are no time.
    let mut rng = Rng::new(3);
    let scramble = |id: u64| id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 8;
    d.transits
        .iter_mut()
        .for_each(|t| t.transit_id = scramble(t.transit_id));
    d.obs
        .iter_mut()
        .for_each(|o| o.transit_id = scramble(o.transit_id));
    d.matches
        .iter_mut()
        .for_each(|m| m.transit_id = scramble(m.transit_id));
    d.matches.retain(|_| rng.uniform() > 0.05);
    // … and match records whose transit is not among the inputs.
    d.transits.retain(|_| rng.uniform() > 0.05);
    d.matches.sort_by_key(|m| m.transit_id);
    let dir = tempfile::tempdir().unwrap();
    let f = write_files(dir.path(), &d);
    for p in &f.transits {
        shuffle_file::<Transit>(p, 4);
    }
    let reference = science_health(&d.obs, &d.transits, &d.matches, &ScienceConfig::default());
    let (h, stats) = bounded(&f, 3);
    assert_eq!(h, reference);
    assert_eq!(stats.fallback, None);
    assert!(stats.without_match > 0);
    // Files named by no time are read first and hold every bin open: still exact.
    let renamed = Files {
        observations: f.observations.iter().map(|p| rename(p, "obs")).collect(),
        transits: f.transits.iter().map(|p| rename(p, "transits")).collect(),
        matches: f.matches.clone(),
    };
    let (h, stats) = bounded(&renamed, 3);
    assert_eq!(h, reference);
    assert_eq!(stats.fallback, None);
    assert_eq!(stats.peak_open_bins, reference.bins.len());
}

fn rename(p: &Path, prefix: &str) -> PathBuf {
    let to = p.with_file_name(format!(
        "{prefix}-{}",
        p.file_name().unwrap().to_string_lossy()
    ));
    std::fs::rename(p, &to).unwrap();
    to
}

#[test]
fn a_corrupted_file_in_the_middle_is_an_error_naming_it() {
    let d = day(12);
    let dir = tempfile::tempdir().unwrap();
    let f = write_files(dir.path(), &d);
    for victim in [
        &f.observations[f.observations.len() / 2],
        &f.transits[f.transits.len() / 2],
    ] {
        let good = std::fs::read(victim).unwrap();
        let mut bytes = good.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(victim, bytes).unwrap();
        let e = science_from_files(
            &f.observations,
            &f.transits,
            &f.matches,
            &ScienceConfig::default(),
            BoundedOptions { files_per_batch: 2 },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(&victim.display().to_string()), "{e}");
        std::fs::write(victim, good).unwrap();
    }
}

/// Every file a health run writes is the same for a batch of one file and for
/// the whole day in one batch.
#[test]
fn whole_runs_write_the_same_bytes_whatever_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_demo_inputs(dir.path(), HOURS, 0.0).unwrap();
    let f = write_files(dir.path(), &day(13));
    let run_into = |name: &str, batch: usize| {
        let out = dir.path().join(name);
        let opts = RunOptions {
            db: paths.db.clone(),
            inputs: vec![
                paths.ordered.clone(),
                f.observations[0]
                    .parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .to_owned(),
                f.matches[0].parent().unwrap().to_owned(),
            ],
            out: out.clone(),
            config: HealthConfig::default(),
            state: None,
        };
        let outcome = run::run_with(
            &opts,
            BoundedOptions {
                files_per_batch: batch,
            },
        )
        .unwrap();
        assert_eq!(outcome.science.fallback, None);
        assert!(!outcome.report.science.is_empty());
        out
    };
    let (small, large) = (run_into("small", 1), run_into("large", 100_000));
    for file in [
        run::EVENTS_FILE,
        run::REPORT_JSON,
        run::REPORT_HTML,
        run::METRICS_FILE,
        run::STATE_FILE,
    ] {
        let (a, b) = (
            std::fs::read(small.join(file)).unwrap(),
            std::fs::read(large.join(file)).unwrap(),
        );
        assert!(a == b, "{file} differs");
    }
}
