//! Whole runs written straight into their output folder with memory bounded
//! by the batch size, not by the day: the streaming counterparts of
//! [`crate::run::match_files`] + [`crate::run::finish_run`] +
//! [`crate::run::write_final`] (and of `write_partial`, and of the merge of
//! partials), giving byte-identical products.
//!
//! # Design
//! Each batch's `match` records (sorted by `transit_id`) become a sorted run.
//! The latest batch's run stays in memory; when the next batch is matched, the
//! run before it is handed to a spill thread that writes it as small segment
//! product files under `OUT/.xmatch-spill/` (zstd level −7; the crate's
//! `spill` module), overlapping the matching. A day that fits one batch never
//! touches the disk. Once every batch is matched, the unmatched transits are
//! linked into new-source groups (in memory: see below), and `match.mprod` is
//! written by one streaming k-way merge of the runs and the new-source
//! records, which also checks that no `transit_id` appears twice and counts
//! the summary in the same pass; encoding and compressing the product runs on
//! a writer thread beside the merge. Region partials spill and merge their
//! matched records and their unmatched transits the same way, and
//! [`merge_to_dir`] merges the partials' (sorted) files as runs.
//!
//! The separation quantiles are exact and need bounded memory (the crate's
//! `separations` module): a histogram of every value, the values of spilled
//! batches in a raw scratch file, and one or two passes over them to select
//! the wanted ranks.
//!
//! # Memory
//! Peak ≈ the matching of one batch (its transits, one more batch read ahead,
//! the matcher's working set: about 0.7 KiB per transit of the batch,
//! measured) plus three batches of `match` records (the one being spilled,
//! the one waiting to be handed to the spill thread, and the latest), plus, during the merge, a reader per run (its buffers
//! and at most one mapped segment: ≈ 2 MiB, measured) for at most 64 runs:
//! a day of more batches first merges groups of consecutive runs into one
//! (only the excess is rewritten: 70 runs cost 7 runs' records more), plus
//! the index mapping and up to 32 MiB of each input file's mapping while it
//! is read (the product reader gives read pages back), plus the unmatched transits: linking
//! needs all of them at once (ICD §8 groups may span the whole day), at 40
//! octets each while matching (more while a vector grows), about 90 while
//! linking and 16 during the merge. That last term is the only one that grows
//! with the day: with the benchmark sky's 10 % unmatched, ≈ 0.3–0.6 GiB at
//! 70 M transits. Before, every `match` record (≈ 120 octets) was held until
//! the end: ≈ 8 GiB at 70 M.

//! # Crash safety
//! Every product is written under a temporary name and renamed (product
//! module). The completion marker (`xmatch-summary.json`, or
//! `xmatch-region.json` for a partial) is removed when a run starts and
//! written last, so a killed run never leaves a set of files that looks
//! complete. Scratch files of a killed run (the spill folder, temporary
//! names of the final files) are removed by the next run in the same folder;
//! the spill folder is also removed when a run ends, successfully or not.

use crate::index::Index;
use crate::matcher::{MatchError, Matcher, TransitPos};
use crate::newsource::link_new_sources;
use crate::run::{
    MATCH_FILE, PARTIAL_INFO_FILE, PARTIAL_MATCHED_FILE, PARTIAL_UNMATCHED_FILE, PartialInfo,
    ReadCounts, Region, RunError, RunOptions, SUMMARY_FILE, XmatchSummary,
};
use crate::separations::Separations;
use crate::spill::{
    Keyed, MAX_OPEN_RUNS, Merge, RunSource, SpillDir, file_run, limit_runs, memory_run,
};
use meridian_core::product::{ProductReader, ProductWriter};
use meridian_core::records::{Match, Record, Transit};
use meridian_core::stage::Progress;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a region run wrote (its `xmatch-region.json`, and record counts).
#[derive(Debug, Clone, PartialEq)]
pub struct PartialCounts {
    pub info: PartialInfo,
    pub matched: u64,
    pub unmatched: u64,
}

/// Matches every transit of `files` (the whole sky: `opts.region` must be
/// None) and writes `match.mprod` and `xmatch-summary.json` into `out`
/// (created if needed), as `finish_run` + `write_final` would, with memory
/// bounded by `opts.batch_size` (module docs).
pub fn run_whole(
    index: &Index,
    files: &[PathBuf],
    opts: &RunOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<XmatchSummary, RunError> {
    if let Some(region) = &opts.region {
        return Err(RunError::Region {
            spec: region.to_string(),
            detail: "a region run writes a partial result (run_region), not the final one".into(),
        });
    }
    // Arguments are checked before the folder is touched: a bad radius must
    // not mark a finished earlier run incomplete.
    let matcher = Matcher::new(index, opts.radius_arcsec)?;
    prepare_out(out, &[MATCH_FILE, SUMMARY_FILE])?;
    let mut spill = SpillDir::new(out)?;
    let mut seps = Separations::default();
    // Kept per batch, concatenated once at the end: no doubling slack.
    let mut unmatched = Vec::new();
    let batches = match_and_spill(
        files,
        opts,
        progress,
        &mut spill,
        Some(&mut seps),
        |batch| {
            let outcome = matcher.match_batch(&batch);
            drop(batch);
            let mut batch_unmatched = outcome.unmatched;
            batch_unmatched.shrink_to_fit();
            unmatched.push(batch_unmatched);
            BatchRecords {
                matched: outcome.matched,
                unmatched: Vec::new(),
            }
        },
    );
    let (runs, _, counts) = batches?;
    let info = PartialInfo {
        radius_arcsec: opts.radius_arcsec,
        region: None,
        transits_read: counts.read,
        transits_without_position: counts.without_position,
    };
    write_final_streaming(out, &[info], &mut spill, runs, concat(unmatched), seps)
}

/// Matches the transits of `files` in `opts.region` and writes the partial
/// result (`matched.mprod`, `unmatched.mprod`, `xmatch-region.json`) into
/// `out`, as `write_partial` would, with memory bounded by the batch size.
pub fn run_region(
    index: &Index,
    files: &[PathBuf],
    opts: &RunOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<PartialCounts, RunError> {
    let Some(region) = &opts.region else {
        return Err(RunError::Region {
            spec: String::new(),
            detail: "a partial result needs a region (run_whole writes the final one)".into(),
        });
    };
    let matcher = Matcher::new(index, opts.radius_arcsec)?;
    prepare_out(
        out,
        &[
            PARTIAL_MATCHED_FILE,
            PARTIAL_UNMATCHED_FILE,
            PARTIAL_INFO_FILE,
        ],
    )?;
    let mut spill = SpillDir::new(out)?;
    let (matched, unmatched, counts) =
        match_and_spill(files, opts, progress, &mut spill, None, |batch| {
            let outcome = matcher.match_batch(&batch);
            let mut ids: Vec<u64> = outcome.unmatched.iter().map(|t| t.transit_id).collect();
            ids.sort_unstable();
            let mut unmatched: Vec<Transit> = batch
                .into_iter()
                .filter(|t| ids.binary_search(&t.transit_id).is_ok())
                .collect();
            // Stable, as write_partial sorts: equal ids keep their order.
            unmatched.sort_by_key(|t| t.transit_id);
            BatchRecords {
                matched: outcome.matched,
                unmatched,
            }
        })?;
    let info = PartialInfo {
        radius_arcsec: opts.radius_arcsec,
        region: Some(Region::to_string(region)),
        transits_read: counts.read,
        transits_without_position: counts.without_position,
    };
    let matched = limit_runs(matched, &mut spill, MAX_OPEN_RUNS)?;
    let matched = write_merged(&out.join(PARTIAL_MATCHED_FILE), matched)?;
    let unmatched = limit_runs(unmatched, &mut spill, MAX_OPEN_RUNS)?;
    let unmatched = write_merged(&out.join(PARTIAL_UNMATCHED_FILE), unmatched)?;
    crate::run::write_json(&out.join(PARTIAL_INFO_FILE), &info)?;
    Ok(PartialCounts {
        info,
        matched,
        unmatched,
    })
}

/// Merges partial results (folders written by [`run_region`] or
/// `write_partial`) into `match.mprod` and `xmatch-summary.json` in `out`,
/// as `read_partial` + `finish_run` + `write_final` would, streaming the
/// partials' matched records (each file must be sorted by `transit_id`, as
/// partials are written; one that is not is an error naming it).
pub fn merge_to_dir(parts: &[PathBuf], out: &Path) -> Result<XmatchSummary, RunError> {
    let infos = parts
        .iter()
        .map(|p| crate::run::read_partial_info(p))
        .collect::<Result<Vec<_>, _>>()?;
    crate::run::common_radius(&infos)?;
    prepare_out(out, &[MATCH_FILE, SUMMARY_FILE])?;
    // A first pass over the matched records for their separations.
    let mut spill = SpillDir::new(out)?;
    let mut seps = Separations::default();
    for part in parts {
        let mut failed = None;
        let records = ProductReader::<Match>::open(part.join(PARTIAL_MATCHED_FILE))?;
        let values = records.map_while(|r| r.map_err(|e| failed = Some(e)).ok());
        seps.add_spilled(&mut spill, values.filter_map(|m| m.sep_mas))?;
        if let Some(e) = failed {
            return Err(e.into());
        }
    }
    let mut unmatched = Vec::new();
    for part in parts {
        for transit in ProductReader::<Transit>::open(part.join(PARTIAL_UNMATCHED_FILE))? {
            unmatched.extend(TransitPos::from_transit(&transit?));
        }
    }
    let runs = parts
        .iter()
        .map(|p| file_run(vec![p.join(PARTIAL_MATCHED_FILE)], false))
        .collect();
    write_final_streaming(out, &infos, &mut spill, runs, unmatched, seps)
}

/// One vector of exactly the parts' length, each part freed once copied.
fn concat<T>(parts: Vec<Vec<T>>) -> Vec<T> {
    let mut all = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for part in parts {
        all.extend(part);
    }
    all
}

/// Creates `out` and clears what an earlier, killed run may have left: the
/// temporary files of `finals`, and the completion marker (the last of
/// `finals`), so that nothing looks complete until this run has finished.
fn prepare_out(out: &Path, finals: &[&str]) -> Result<(), RunError> {
    let io = |source| RunError::Io {
        path: out.to_owned(),
        source,
    };
    std::fs::create_dir_all(out).map_err(io)?;
    for entry in std::fs::read_dir(out).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let name = name.to_string_lossy();
        let stale_temp = finals
            .iter()
            .any(|f| name.starts_with(&format!(".{f}.")) && name.ends_with(".tmp"));
        if stale_temp {
            remove_if_present(&out.join(&*name))?;
        }
    }
    match finals.last() {
        Some(marker) => remove_if_present(&out.join(marker)),
        None => Ok(()),
    }
}

fn remove_if_present(path: &Path) -> Result<(), RunError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RunError::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// One matched batch's records, each list sorted by `transit_id`.
struct BatchRecords {
    matched: Vec<Match>,
    unmatched: Vec<Transit>,
}

/// The sorted runs of a run's batches: spilled ones, then the last in memory.
type Runs<R> = Vec<RunSource<'static, R>>;

/// Reads `files` in batches (a reader thread one batch ahead), turns each
/// batch into records with `per_batch`, and spills every batch's records but
/// the last (on a thread of its own, overlapping the next batch's matching).
fn match_and_spill(
    files: &[PathBuf],
    opts: &RunOptions,
    progress: &dyn Progress,
    spill: &mut SpillDir,
    mut seps: Option<&mut Separations>,
    mut per_batch: impl FnMut(Vec<Transit>) -> BatchRecords,
) -> Result<(Runs<Match>, Runs<Transit>, ReadCounts), RunError> {
    let mut latest: Option<BatchRecords> = None;
    let (spilled, read) = std::thread::scope(|scope| {
        let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel(0);
        let reader = scope.spawn(move || crate::run::read_batches(files, opts, progress, batch_tx));
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<BatchRecords>(0);
        let spill_seps = seps.as_deref_mut();
        let writer = scope.spawn(move || {
            let mut runs = Vec::new();
            let mut spill_seps = spill_seps;
            for job in job_rx {
                if let Some(seps) = spill_seps.as_deref_mut() {
                    seps.add_spilled(spill, job.matched.iter().filter_map(|m| m.sep_mas))?;
                }
                let matched = spill.write_run(&job.matched)?;
                drop(job.matched);
                runs.push((matched, spill.write_run(&job.unmatched)?));
            }
            Ok::<_, RunError>(runs)
        });
        for batch in batch_rx {
            let records = per_batch(batch);
            // A send fails only when the spill thread has stopped on an error.
            if let Some(full) = latest.replace(records)
                && job_tx.send(full).is_err()
            {
                break;
            }
        }
        drop(job_tx);
        (join(writer), join(reader))
    });
    let read = read?;
    let spilled = spilled?;
    tracing::debug!(spilled_batches = spilled.len(), "every batch matched");
    let mut matched: Runs<Match> = Vec::new();
    let mut unmatched: Runs<Transit> = Vec::new();
    for (m, u) in spilled {
        matched.push(file_run(m, true));
        unmatched.push(file_run(u, true));
    }
    if let Some(last) = latest {
        if let Some(seps) = seps {
            seps.add_kept(last.matched.iter().filter_map(|m| m.sep_mas));
        }
        matched.push(memory_run(last.matched));
        unmatched.push(memory_run(last.unmatched));
    }
    Ok((matched, unmatched, read))
}

/// A scoped thread's result; its panic is the caller's.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Writes the merge of `runs` to a product at `path`; returns its count.
fn write_merged<R: Record + Keyed>(path: &Path, runs: Runs<R>) -> Result<u64, RunError> {
    write_streamed(path, |sink| {
        for record in Merge::new(runs)? {
            sink.push(record?)?;
        }
        Ok(())
    })
    .map(|((), count)| count)
}

/// Records handed to the writer thread at a time.
const WRITE_CHUNK: usize = 4096;

/// What the producing side sends the writer thread.
enum ToWriter<R> {
    Records(Vec<R>),
    /// Everything was sent: finish the product (put it in place).
    Finish,
}

/// The producing side of [`write_streamed`].
struct ChunkSink<R> {
    chunk: Vec<R>,
    tx: std::sync::mpsc::SyncSender<ToWriter<R>>,
    path: PathBuf,
}

impl<R> ChunkSink<R> {
    fn push(&mut self, record: R) -> Result<(), RunError> {
        self.chunk.push(record);
        if self.chunk.len() >= WRITE_CHUNK {
            let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(WRITE_CHUNK));
            self.send(ToWriter::Records(chunk))?;
        }
        Ok(())
    }

    /// Fails only when the writer thread has stopped (on an error of its own,
    /// which is the one reported).
    fn send(&self, message: ToWriter<R>) -> Result<(), RunError> {
        self.tx.send(message).map_err(|_| RunError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("the product writer stopped"),
        })
    }
}

/// Writes the records `produce` pushes to a product at `path`, encoding and
/// compressing on a thread of its own so that the producer (a merge, which
/// decodes) runs alongside. The product is put in place only if `produce`
/// succeeds; returns its result and the record count.
fn write_streamed<R: Record, T>(
    path: &Path,
    produce: impl FnOnce(&mut ChunkSink<R>) -> Result<T, RunError>,
) -> Result<(T, u64), RunError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<ToWriter<R>>(4);
        let writer = scope.spawn(move || {
            let mut writer = ProductWriter::<R>::create(path)?;
            for message in rx {
                match message {
                    ToWriter::Records(chunk) => {
                        for record in &chunk {
                            writer.push(record)?;
                        }
                    }
                    ToWriter::Finish => return Ok(Some(writer.finish()?.header.record_count)),
                }
            }
            // The producer failed: the writer is dropped, its temporary removed.
            Ok::<_, RunError>(None)
        });
        let mut sink = ChunkSink {
            chunk: Vec::with_capacity(WRITE_CHUNK),
            tx,
            path: path.to_owned(),
        };
        let produced = produce(&mut sink).and_then(|value| {
            let last = std::mem::take(&mut sink.chunk);
            sink.send(ToWriter::Records(last))?;
            sink.send(ToWriter::Finish)?;
            Ok(value)
        });
        drop(sink);
        let written = join(writer);
        match (produced, written) {
            (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
            (Ok(value), Ok(Some(count))) => Ok((value, count)),
            (Ok(_), Ok(None)) => unreachable!("Finish was sent"),
        }
    })
}

/// Links the unmatched transits, merges the runs with the new-source records
/// into `match.mprod` (checking that no `transit_id` repeats) and writes the
/// summary, computed in the same pass.
fn write_final_streaming(
    out: &Path,
    infos: &[PartialInfo],
    spill: &mut SpillDir,
    runs: Runs<Match>,
    unmatched: Vec<TransitPos>,
    mut seps: Separations,
) -> Result<XmatchSummary, RunError> {
    let radius_arcsec = infos
        .first()
        .map_or(crate::matcher::DEFAULT_RADIUS_ARCSEC, |i| i.radius_arcsec);
    let radius_rad = radius_arcsec * meridian_core::geom::RAD_PER_ARCSEC;
    let started = std::time::Instant::now();
    let names = link_new_sources(&unmatched, radius_rad);
    let mut new: Vec<(u64, u64)> = unmatched.iter().map(|t| t.transit_id).zip(names).collect();
    drop(unmatched);
    new.par_sort_unstable();
    let group_sizes = group_sizes(new.iter().map(|&(_, name)| name).collect());
    // After linking, whose memory is the largest of the finish: not on top of it.
    let mut runs = limit_runs(runs, spill, MAX_OPEN_RUNS)?;
    runs.push(Box::new(new.into_iter().map(|(id, name)| {
        Ok(Match {
            transit_id: id,
            source_id: None,
            sep_mas: None,
            n_candidates: 0,
            ambiguous: Vec::new(),
            new_source: Some(name),
            ra_cat: None,
            dec_cat: None,
        })
    })));
    let quantiles = (seps.quantile(0.5)?, seps.quantile(0.9)?);
    drop(seps);
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        runs = runs.len(),
        "new sources linked, separation quantiles found; merging"
    );
    let started = std::time::Instant::now();
    let (pass, _) = write_streamed(&out.join(MATCH_FILE), |sink| {
        let mut pass = SummaryPass::new();
        let mut last_id = None;
        for record in Merge::new(runs)? {
            let record = record?;
            // Merged order puts the smallest repeated id first, as finish_run reports.
            if last_id == Some(record.transit_id) {
                return Err(MatchError::DuplicateTransit(record.transit_id).into());
            }
            last_id = Some(record.transit_id);
            pass.add(&record);
            sink.push(record)?;
        }
        Ok(pass)
    })?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "match product written"
    );
    let mut regions: Vec<String> = infos.iter().filter_map(|i| i.region.clone()).collect();
    regions.sort();
    let read = infos.iter().map(|i| i.transits_read).sum();
    let no_pos = infos.iter().map(|i| i.transits_without_position).sum();
    let summary = pass.finish(
        radius_arcsec,
        regions,
        (read, no_pos),
        quantiles,
        group_sizes,
    );
    crate::run::write_json(&out.join(SUMMARY_FILE), &summary)?;
    Ok(summary)
}

/// Number of new-source groups by size, from every unmatched transit's name.
fn group_sizes(mut names: Vec<u64>) -> (u64, BTreeMap<u64, u64>) {
    names.par_sort_unstable();
    let mut sizes = BTreeMap::new();
    let mut groups = 0;
    for group in names.chunk_by(|a, b| a == b) {
        groups += 1;
        *sizes.entry(group.len() as u64).or_insert(0) += 1;
    }
    (groups, sizes)
}

/// Candidate-count histogram below this size is a plain array (the merge
/// pass counts every record, one thread).
const DENSE_CANDIDATES: usize = 64;

/// The summary's counts, accumulated record by record in merged order.
struct SummaryPass {
    dense: [u64; DENSE_CANDIDATES],
    sparse: BTreeMap<u32, u64>,
    records: u64,
    matched: u64,
    ambiguous: u64,
}

impl SummaryPass {
    fn new() -> Self {
        Self {
            dense: [0; DENSE_CANDIDATES],
            sparse: BTreeMap::new(),
            records: 0,
            matched: 0,
            ambiguous: 0,
        }
    }

    fn add(&mut self, m: &Match) {
        let n = m.n_candidates;
        match self.dense.get_mut(n as usize) {
            Some(count) => *count += 1,
            None => *self.sparse.entry(n).or_insert(0) += 1,
        }
        self.records += 1;
        self.ambiguous += u64::from(n > 1);
        self.matched += u64::from(m.sep_mas.is_some());
    }

    fn finish(
        self,
        radius_arcsec: f64,
        regions: Vec<String>,
        (read, no_pos): (u64, u64),
        (sep_mas_median, sep_mas_p90): (Option<f64>, Option<f64>),
        (new_source_groups, new_source_group_sizes): (u64, BTreeMap<u64, u64>),
    ) -> XmatchSummary {
        let mut hist = self.sparse;
        for (n, &count) in self.dense.iter().enumerate() {
            if count > 0 {
                hist.insert(n as u32, count);
            }
        }
        XmatchSummary {
            radius_arcsec,
            regions,
            transits_read: read,
            transits_without_position: no_pos,
            transits_matched: self.matched,
            transits_unmatched: self.records - self.matched,
            match_rate: (self.records > 0).then(|| self.matched as f64 / self.records as f64),
            candidates_histogram: hist,
            ambiguous_transits: self.ambiguous,
            sep_mas_median,
            sep_mas_p90,
            new_source_groups,
            new_source_group_sizes,
        }
    }
}
