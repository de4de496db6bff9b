//! One run of the ordering stage: consume new deliveries, rewrite the chunks they
//! touch as new versions, recompute gaps and statuses, commit the manifest.

use crate::error::OrderError;
use crate::gaps::{self, AmbiguousGap};
use crate::manifest::{ChunkEntry, ChunkStatus, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, Stream};
use crate::read::{self, Message, PacketBatch, PacketSpan};
use crate::record::StreamRecord;
use crate::sort::{ExternalSorter, Partition};
use crate::state::{self, DeliveryId, PacketKey, State, Variant, delivery_name};
use meridian_core::ProductReader;
use meridian_core::product::write_file_atomic;
use meridian_core::records::{Attitude, Gap, Hk, Window};
pub use meridian_core::stage::{NoProgress, Progress};
use meridian_core::time::NS_PER_S;
use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, ParallelIterator};
use serde::Serialize;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::Instant;
use xxhash_rust::xxh3::Xxh3;

/// Default chunk length: 60 s.
pub const DEFAULT_CHUNK_NS: u64 = 60 * NS_PER_S;
/// Default memory budget: 1 GiB.
pub const DEFAULT_MEM_BYTES: u64 = 1 << 30;
/// Below this budget the fixed costs of a run (zstd contexts, buffers, allocator
/// slack) dominate, so the process's peak memory exceeds the budget.
pub const MIN_USEFUL_MEM_BYTES: u64 = 64 << 20;
/// Name of the gap product in the ordered folder.
pub const GAPS_FILE: &str = "gaps.mprod";
/// Name of the conflict report in the ordered folder.
pub const CONFLICTS_FILE: &str = "conflicts.json";

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The decoded folder (`DECODED_DIR`, holding `deliveries/`).
    pub input: PathBuf,
    /// The ordered folder; created if missing.
    pub output: PathBuf,
    /// Chunk length in ns; must match the folder's once it has a manifest.
    pub chunk_ns: u64,
    /// Memory budget for buffered records and the packet index.
    pub mem_bytes: u64,
    /// Close (make `final`) every chunk whose interval ends at or before this OBT.
    pub close_before_obt_ns: Option<u64>,
}

impl Options {
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
            chunk_ns: DEFAULT_CHUNK_NS,
            mem_bytes: DEFAULT_MEM_BYTES,
            close_before_obt_ns: None,
        }
    }
}

/// A delivery that could not be read: named, skipped (not consumed, so a later
/// run tries it again) and reported.
#[derive(Debug, Clone, Serialize)]
pub struct FailedDelivery {
    pub delivery: String,
    pub error: String,
}

/// Machine-readable account of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// The folder's run number after this run.
    pub run: u64,
    /// True when nothing new was consumed (and the close time is unchanged): no
    /// manifest was written and the run number stays.
    pub noop: bool,
    /// Complete delivery folders found (with `report.json`).
    pub deliveries_found: u64,
    /// Of those, not consumed by an earlier run.
    pub deliveries_new: u64,
    /// Of those, consumed by this run.
    pub deliveries_consumed: u64,
    /// Folders without `report.json` yet (still being written): left for later.
    pub deliveries_incomplete: u64,
    /// Entries of `deliveries/` that are not delivery folders.
    pub ignored: Vec<String>,
    pub failed: Vec<FailedDelivery>,
    /// Octets of product files read from new deliveries.
    pub input_bytes: u64,
    pub records_read: u64,
    /// Packets seen for the first time.
    pub packets_new: u64,
    /// Packets already held with the same bytes (retransmissions): dropped.
    pub packets_duplicate: u64,
    /// Packets whose key was held with different bytes: set aside as conflicts.
    pub packets_conflicting: u64,
    /// Packets whose records fall in final chunks: set aside in `late/`.
    pub packets_late: u64,
    pub records_merged: u64,
    pub records_late: u64,
    /// Records moved out of chunks into `conflicts/` by this run.
    pub records_conflicting: u64,
    pub chunks_written: u64,
    pub chunks_total: u64,
    pub gaps: u64,
    pub ambiguous_gaps: Vec<AmbiguousGap>,
    pub conflicts: u64,
    /// Sorted runs spilled to disk (0 when everything fitted the budget).
    pub spill_runs: u64,
    pub mem_budget_bytes: u64,
    /// Peak resident memory of the process (Linux `VmHWM`), when known.
    pub peak_rss_bytes: Option<u64>,
    pub elapsed_s: f64,
}

/// One stream's work in progress.
struct StreamWork<R: StreamRecord> {
    sorter: ExternalSorter<R>,
    /// Chunk indices (`obt_ns / chunk_ns`) to rewrite.
    touched: BTreeSet<u64>,
    late: Vec<R>,
}

impl<R: StreamRecord> StreamWork<R> {
    fn new(tmp: &Path, chunk_ns: u64) -> Self {
        Self {
            sorter: ExternalSorter::new(tmp, chunk_ns),
            touched: BTreeSet::new(),
            late: Vec::new(),
        }
    }
}

/// Run-wide context shared by the streams.
struct Ctx {
    out: PathBuf,
    chunk_ns: u64,
    budget: usize,
    /// Close time in force before this run: data for chunks ending by then is late.
    closed_before: Option<u64>,
    state: State,
    conflicted: HashSet<PacketKey>,
    run: u64,
    summary: RunSummary,
}

impl Ctx {
    fn chunk_of(&self, obt_ns: u64) -> u64 {
        obt_ns / self.chunk_ns
    }
}

/// Whether a chunk is final under the close time in force. Final chunks are a
/// prefix of time, so records spanning `[lo, hi]` hit one iff `lo`'s chunk is.
fn is_final_chunk(closed_before: Option<u64>, chunk_ns: u64, chunk: u64) -> bool {
    closed_before.is_some_and(|c| chunk.saturating_add(1).saturating_mul(chunk_ns) <= c)
}

/// Runs the ordering stage once.
pub fn order(opts: &Options, progress: &dyn Progress) -> Result<RunSummary, OrderError> {
    let started = Instant::now();
    let cpu_at_start = meridian_core::resources::cpu_seconds();
    if opts.chunk_ns == 0 {
        return Err(OrderError::Config("chunk length must be positive".into()));
    }
    if opts.mem_bytes < MIN_USEFUL_MEM_BYTES {
        tracing::warn!(
            "a memory budget of {} MiB is below {} MiB: results are the same, but the \
             process's peak memory will exceed it",
            opts.mem_bytes >> 20,
            MIN_USEFUL_MEM_BYTES >> 20
        );
    }
    let out = &opts.output;
    std::fs::create_dir_all(out).map_err(|e| OrderError::io(out, e))?;
    let _lock = lock(out)?;
    let prev = load_manifest(out)?;
    if let Some(m) = &prev
        && m.chunk_ns != opts.chunk_ns
    {
        return Err(OrderError::Config(format!(
            "{}: the folder uses chunks of {} ns, not {} ns",
            out.display(),
            m.chunk_ns,
            opts.chunk_ns
        )));
    }
    let state = match &prev {
        Some(m) => State::load(out, m.run)?,
        None => State::default(),
    };
    let tmp = out.join("tmp");
    remove_dir_if_exists(&tmp)?;
    let listing = list_deliveries(&opts.input)?;
    let closed_before = prev.as_ref().and_then(|m| m.close_before_obt_ns);
    let close_after = closed_before.max(opts.close_before_obt_ns);
    let new: Vec<(DeliveryId, PathBuf)> = listing
        .complete
        .iter()
        .filter(|(id, _)| !state.consumed.contains(id))
        .cloned()
        .collect();
    let mut summary = RunSummary {
        deliveries_found: listing.complete.len() as u64,
        deliveries_new: new.len() as u64,
        deliveries_incomplete: listing.incomplete,
        ignored: listing.ignored,
        mem_budget_bytes: opts.mem_bytes,
        ..RunSummary::default()
    };
    if let Some(m) = &prev
        && new.is_empty()
        && close_after == closed_before
    {
        summary.run = m.run;
        summary.noop = true;
        summary.chunks_total = m.chunks.len() as u64;
        summary.gaps = m.gaps;
        summary.conflicts = m.conflicts;
        cleanup(out, m)?;
        return Ok(finish_summary(summary, started));
    }
    std::fs::create_dir_all(&tmp).map_err(|e| OrderError::io(&tmp, e))?;
    let conflicted = state
        .packets
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, _)| *k)
        .collect();
    let mut ctx = Ctx {
        out: out.clone(),
        chunk_ns: opts.chunk_ns,
        budget: usize::try_from(opts.mem_bytes).unwrap_or(usize::MAX),
        closed_before,
        state,
        conflicted,
        run: prev.as_ref().map_or(0, |m| m.run) + 1,
        summary,
    };
    let mut w = StreamWork::<Window>::new(&tmp, opts.chunk_ns);
    let mut a = StreamWork::<Attitude>::new(&tmp, opts.chunk_ns);
    let mut h = StreamWork::<Hk>::new(&tmp, opts.chunk_ns);
    progress.phase("deliveries", new.len() as u64);
    // Reader threads decode the deliveries' files while this one indexes
    // their packets.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let readers = reader_threads();
        let (tx, rx) = std::sync::mpsc::sync_channel(2 * readers + 2);
        for _ in 0..readers {
            let (tx, new, next) = (tx.clone(), &new, &next);
            scope.spawn(move || read::reader(new, next, tx));
        }
        drop(tx);
        let indexing_cpu = meridian_core::resources::thread_cpu_seconds();
        let consumed = consume(&mut ctx, &rx, &mut w, &mut a, &mut h, progress);
        // The indexing thread is the serial part of reading: say how much.
        tracing::debug!(
            "deliveries read and indexed after {:.3} s, process CPU {:.3} s, of which \
             the indexing thread {:.3} s",
            started.elapsed().as_secs_f64(),
            cpu_since(cpu_at_start),
            meridian_core::resources::thread_cpu_seconds().unwrap_or(0.0)
                - indexing_cpu.unwrap_or(0.0)
        );
        consumed
    })?;
    if let Some(m) = &prev
        && ctx.summary.deliveries_consumed == 0
        && close_after == closed_before
    {
        // Only unreadable deliveries: nothing to commit, the run number stays.
        let mut summary = ctx.summary;
        summary.run = m.run;
        summary.noop = true;
        summary.chunks_total = m.chunks.len() as u64;
        summary.gaps = m.gaps;
        summary.conflicts = m.conflicts;
        cleanup(out, m)?;
        return Ok(finish_summary(summary, started));
    }
    let prev_chunks: BTreeMap<(Stream, u64), ChunkEntry> = prev
        .iter()
        .flat_map(|m| m.chunks.iter())
        .map(|c| ((c.stream, c.start_obt_ns), c.clone()))
        .collect();
    let total = (w.touched.len() + a.touched.len() + h.touched.len()) as u64;
    progress.phase("chunks", total);
    // The three streams' partitions are merged and written side by side, on a
    // pool with more threads than cores: much of a chunk's time is the wait
    // for its fsync, during which another thread can use the core.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(output_threads())
        .build()
        .map_err(|e| internal(&format!("cannot start the output threads: {e}")))?;
    let (wo, (ao, ho)) = pool.install(|| {
        let ctx = &ctx;
        let prev = &prev_chunks;
        rayon::join(
            || write_stream(ctx, w, prev, progress),
            || {
                rayon::join(
                    || write_stream(ctx, a, prev, progress),
                    || write_stream(ctx, h, prev, progress),
                )
            },
        )
    });
    tracing::debug!(
        "chunks written after {:.3} s, process CPU {:.3} s",
        started.elapsed().as_secs_f64(),
        cpu_since(cpu_at_start)
    );
    let mut written = Vec::new();
    for out in [wo?, ao?, ho?] {
        ctx.summary.spill_runs += out.spill_runs;
        ctx.summary.records_merged += out.records_merged;
        ctx.summary.chunks_written += out.written.len() as u64;
        ctx.summary.records_conflicting += out.records_conflicting;
        written.extend(out.written);
    }
    let manifest = commit(&mut ctx, prev_chunks, written, close_after)?;
    cleanup(out, &manifest)?;
    let mut summary = ctx.summary;
    summary.run = manifest.run;
    summary.chunks_total = manifest.chunks.len() as u64;
    Ok(finish_summary(summary, started))
}

/// Process CPU seconds since `start` (0 where the platform cannot tell).
fn cpu_since(start: Option<f64>) -> f64 {
    meridian_core::resources::cpu_seconds().unwrap_or(0.0) - start.unwrap_or(0.0)
}

fn finish_summary(mut s: RunSummary, started: Instant) -> RunSummary {
    s.elapsed_s = started.elapsed().as_secs_f64();
    s.peak_rss_bytes = meridian_core::resources::peak_rss_bytes();
    s
}

/// Holds the folder's lock for the run: two runs on one folder would race.
fn lock(out: &Path) -> Result<File, OrderError> {
    let path = out.join(".lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| OrderError::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(OrderError::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(OrderError::io(&path, e)),
    }
}

fn load_manifest(out: &Path) -> Result<Option<Manifest>, OrderError> {
    if out.join(MANIFEST_FILE).exists() {
        Ok(Some(Manifest::load(out)?))
    } else {
        Ok(None)
    }
}

fn remove_dir_if_exists(dir: &Path) -> Result<(), OrderError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OrderError::io(dir, e)),
    }
}

/// The delivery folders of a decoded folder.
struct Listing {
    /// Complete deliveries (with `report.json`), sorted by id.
    complete: Vec<(DeliveryId, PathBuf)>,
    incomplete: u64,
    ignored: Vec<String>,
}

fn list_deliveries(input: &Path) -> Result<Listing, OrderError> {
    let dir = input.join("deliveries");
    let mut listing = Listing {
        complete: Vec::new(),
        incomplete: 0,
        ignored: Vec::new(),
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| OrderError::io(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| OrderError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        match state::parse_delivery_id(&name) {
            Some(id) if path.is_dir() => {
                if path.join("report.json").is_file() {
                    listing.complete.push((id, path));
                } else {
                    tracing::debug!("{}: no report.json yet, left for later", path.display());
                    listing.incomplete += 1;
                }
            }
            // Temporary folders of a decoder writing atomically are expected.
            _ if name.starts_with('.') => {}
            _ => {
                tracing::warn!("{}: not a delivery folder, ignored", path.display());
                listing.ignored.push(name);
            }
        }
    }
    listing.complete.sort();
    listing.ignored.sort();
    Ok(listing)
}

/// Reader threads: one per compute thread, as decoding is most of a
/// delivery's cost and the packet index keeps up with several of them.
fn reader_threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// The indexing side: takes the readers' batches as they come.
fn consume(
    ctx: &mut Ctx,
    rx: &Receiver<Message>,
    w: &mut StreamWork<Window>,
    a: &mut StreamWork<Attitude>,
    h: &mut StreamWork<Hk>,
    progress: &dyn Progress,
) -> Result<(), OrderError> {
    while let Ok(message) = rx.recv() {
        match message {
            Message::Failed(id, e) => {
                tracing::error!("skipping delivery {}: {e}", delivery_name(id));
                ctx.summary.failed.push(FailedDelivery {
                    delivery: delivery_name(id),
                    error: e.to_string(),
                });
                progress.advance(1);
            }
            Message::Opened(bytes) => ctx.summary.input_bytes += bytes,
            // Before feeding one stream, the other two give their memory back
            // if the budget is spent, so the stream being fed is not forced
            // into tiny spills by buffers it cannot spill.
            Message::Window(batch) => {
                let others =
                    spill_if_over(ctx, &mut a.sorter, &mut h.sorter, w.sorter.mem_bytes())?;
                ingest(ctx, w, batch, others)?;
            }
            Message::Attitude(batch) => {
                let others =
                    spill_if_over(ctx, &mut w.sorter, &mut h.sorter, a.sorter.mem_bytes())?;
                ingest(ctx, a, batch, others)?;
            }
            Message::Hk(batch) => {
                let others =
                    spill_if_over(ctx, &mut w.sorter, &mut a.sorter, h.sorter.mem_bytes())?;
                ingest(ctx, h, batch, others)?;
            }
            Message::Done(id) => {
                ctx.state.consumed.insert(id);
                ctx.summary.deliveries_consumed += 1;
                progress.advance(1);
            }
            Message::Error(e) => return Err(e.into()),
        }
    }
    // Readers finish in any order; the summary lists failures by name.
    ctx.summary
        .failed
        .sort_by(|x, y| x.delivery.cmp(&y.delivery));
    Ok(())
}

fn internal(what: &str) -> OrderError {
    OrderError::Config(format!("internal error: {what}"))
}

/// Feeds one batch of a delivery's records of one stream, packet by packet.
///
/// A record that fails to decode after its file passed the checksum means the
/// producer wrote garbage: the reader sends the error and the run stops
/// without committing (nothing is half merged), naming the file.
fn ingest<R: StreamRecord>(
    ctx: &mut Ctx,
    work: &mut StreamWork<R>,
    batch: PacketBatch<R>,
    others_bytes: usize,
) -> Result<(), OrderError> {
    ctx.summary.records_read += batch.records_read;
    let mut held = batch.held.into_iter();
    let mut start = 0;
    for span in &batch.packets {
        let mut records = held.by_ref().take(span.end - start);
        start = span.end;
        accept_packet(ctx, work, batch.delivery, span, &mut records, &batch.arena);
        // A packet that is dropped leaves its records unread.
        records.for_each(drop);
        enforce_budget(ctx, work, others_bytes)?;
    }
    Ok(())
}

/// The part of the budget buffered records may use. The packet index is charged
/// first, but records always keep at least a quarter of the budget: spilling a
/// handful of records at a time would only multiply files.
fn records_budget(ctx: &Ctx) -> usize {
    ctx.budget
        .saturating_sub(ctx.state.mem_size())
        .max(ctx.budget / 4)
}

/// Spills two sorters if, with `own` bytes of the third, records exceed their
/// budget; returns what the two still hold.
fn spill_if_over<A: StreamRecord, B: StreamRecord>(
    ctx: &Ctx,
    a: &mut ExternalSorter<A>,
    b: &mut ExternalSorter<B>,
    own: usize,
) -> Result<usize, OrderError> {
    if own + a.mem_bytes() + b.mem_bytes() > records_budget(ctx) {
        a.spill()?;
        b.spill()?;
    }
    Ok(a.mem_bytes() + b.mem_bytes())
}

fn enforce_budget<R: StreamRecord>(
    ctx: &Ctx,
    work: &mut StreamWork<R>,
    others_bytes: usize,
) -> Result<(), OrderError> {
    if work.sorter.mem_bytes() + others_bytes > records_budget(ctx) {
        work.sorter.spill()?;
    }
    Ok(())
}

/// Decides what happens to one packet occurrence: new, duplicate, conflicting
/// or late.
fn accept_packet<R: StreamRecord>(
    ctx: &mut Ctx,
    work: &mut StreamWork<R>,
    delivery: DeliveryId,
    span: &PacketSpan,
    records: &mut dyn ExactSizeIterator<Item = R::Held>,
    arena: &[u16],
) {
    ctx.summary.packets_duplicate += span.repeats;
    let p = span.packet;
    let key = PacketKey {
        apid: R::STREAM.apid(),
        packet_obt_ns: p.packet_obt_ns,
        seq: p.seq,
    };
    let (lo, hi) = (span.lo, span.hi);
    let variant = Variant {
        hash: p.packet_hash,
        first_delivery: delivery,
        records: records.len() as u32,
        min_obt_ns: lo,
        max_obt_ns: hi,
    };
    let (chunk_ns, closed_before) = (ctx.chunk_ns, ctx.closed_before);
    let is_final = |lo: u64| is_final_chunk(closed_before, chunk_ns, lo / chunk_ns);
    let late = match ctx.state.packets.entry(key) {
        Entry::Occupied(mut slot) => {
            let vs = slot.get_mut();
            if let Some(v) = vs.iter_mut().find(|v| v.hash == p.packet_hash) {
                ctx.summary.packets_duplicate += 1;
                v.first_delivery = v.first_delivery.min(delivery);
                return;
            }
            let earlier_lo = vs.iter().map(|v| v.min_obt_ns).min().unwrap_or(u64::MAX);
            let late = is_final(lo.min(earlier_lo));
            if !late {
                ctx.summary.packets_conflicting += 1;
                if ctx.conflicted.insert(key) {
                    // The variant already merged must leave its chunks.
                    for v in vs.iter() {
                        let (a, b) = (v.min_obt_ns / ctx.chunk_ns, v.max_obt_ns / ctx.chunk_ns);
                        work.touched.extend(a..=b);
                    }
                }
                let at = vs.partition_point(|v| v.hash < variant.hash);
                vs.insert(at, variant);
            }
            late
        }
        Entry::Vacant(slot) => {
            let late = is_final(lo);
            if !late {
                ctx.summary.packets_new += 1;
                slot.insert(vec![variant]);
            }
            late
        }
    };
    if late {
        ctx.summary.packets_late += 1;
        ctx.summary.records_late += records.len() as u64;
        work.late.extend(records.map(|h| R::unhold(&h, arena)));
        return;
    }
    let mut last_chunk = None;
    for r in records {
        let c = ctx.chunk_of(R::held_obt_ns(&r));
        if last_chunk != Some(c) {
            work.touched.insert(c);
            last_chunk = Some(c);
        }
        work.sorter.push_held(r, arena);
    }
}

/// A chunk version written by this run.
struct Written {
    entry: ChunkEntry,
}

fn chunk_rel_path(stream: Stream, start: u64, version: u64) -> PathBuf {
    PathBuf::from("chunks")
        .join(stream.as_str())
        .join(format!("{start:020}.v{version}.mprod"))
}

fn packet_key<R: StreamRecord>(r: &R) -> PacketKey {
    let p = r.packet();
    PacketKey {
        apid: R::STREAM.apid(),
        packet_obt_ns: p.packet_obt_ns,
        seq: p.seq,
    }
}

/// What writing one stream's chunks did.
#[derive(Default)]
struct StreamOut {
    /// The chunk versions written, in chunk order.
    written: Vec<Written>,
    records_merged: u64,
    records_conflicting: u64,
    /// Sorted runs written to disk, merge passes included.
    spill_runs: u64,
}

/// Rewrites every touched chunk of one stream as a new version: the current
/// version's records and the new ones merged in order, minus records of
/// conflicting packets (moved to `conflicts/`). Late records go to `late/`.
/// The sorter's partitions (ranges of chunks) are merged and written in
/// parallel; their results are put together in chunk order.
fn write_stream<R: StreamRecord>(
    ctx: &Ctx,
    work: StreamWork<R>,
    prev: &BTreeMap<(Stream, u64), ChunkEntry>,
    progress: &dyn Progress,
) -> Result<StreamOut, OrderError> {
    let dir = ctx.out.join("chunks").join(R::STREAM.as_str());
    std::fs::create_dir_all(&dir).map_err(|e| OrderError::io(&dir, e))?;
    let mut out = StreamOut {
        spill_runs: work.sorter.spill_count(),
        ..StreamOut::default()
    };
    let started = Instant::now();
    let sorted = work.sorter.finish()?;
    tracing::debug!(
        "{}: sorted in memory in {:.3} s, {} partitions",
        R::STREAM.as_str(),
        started.elapsed().as_secs_f64(),
        sorted.parts.len()
    );
    let mut chunks_of_part: Vec<Vec<u64>> = vec![Vec::new(); sorted.parts.len()];
    for &chunk in &work.touched {
        chunks_of_part[sorted.bounds.part_of(chunk)].push(chunk);
    }
    let parts: Vec<PartOut<R>> = sorted
        .parts
        .into_par_iter()
        .zip(chunks_of_part)
        .map(|(part, chunks)| write_part(ctx, part, &chunks, prev, progress))
        .collect::<Result<_, _>>()?;
    let mut diverted: Vec<R> = Vec::new();
    for part in parts {
        out.written.extend(part.written);
        out.records_merged += part.records_merged;
        out.spill_runs += part.merge_runs;
        diverted.extend(part.diverted);
    }
    out.records_conflicting = diverted.len() as u64;
    merge_aside(&ctx.out.join("conflicts"), diverted)?;
    merge_aside(&ctx.out.join("late"), work.late)?;
    tracing::debug!(
        "{}: {} chunks written in {:.3} s",
        R::STREAM.as_str(),
        out.written.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// What merging one partition did.
struct PartOut<R> {
    written: Vec<Written>,
    records_merged: u64,
    merge_runs: u64,
    /// Records of conflicting packets, for `conflicts/`.
    diverted: Vec<R>,
}

/// Merges one partition's new records into its touched chunks (`chunks`, in
/// order) and writes each chunk that changed.
fn write_part<R: StreamRecord>(
    ctx: &Ctx,
    part: Partition<R>,
    chunks: &[u64],
    prev: &BTreeMap<(Stream, u64), ChunkEntry>,
    progress: &dyn Progress,
) -> Result<PartOut<R>, OrderError> {
    let stream = R::STREAM;
    let (mut incoming, merge_runs) = part.merge()?;
    let mut out = PartOut {
        written: Vec::new(),
        records_merged: 0,
        merge_runs,
        diverted: Vec::new(),
    };
    // Most runs have no conflict at all: skip hashing every record's key then.
    let conflicted = |r: &R| !ctx.conflicted.is_empty() && ctx.conflicted.contains(&packet_key(r));
    // One chunk's kept records at a time; the vector is reused so it does not
    // grow again from empty for every chunk.
    let mut kept = Vec::new();
    for &chunk in chunks {
        kept.clear();
        let start = chunk * ctx.chunk_ns;
        let old = prev.get(&(stream, start));
        let version = old.map_or(1, |c| c.version + 1);
        let mut existing = match old {
            Some(c) => Some(ProductReader::<R>::open(ctx.out.join(&c.path))?),
            None => None,
        };
        let mut old_head = next_of(&mut existing)?;
        let (mut added, mut removed, mut merged) = (0u64, 0u64, 0u64);
        loop {
            let from_new = incoming
                .peek()
                .filter(|r| r.obt_ns() / ctx.chunk_ns == chunk);
            let take_new = match (from_new, &old_head) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(n), Some(o)) => n.cmp_total(o).is_lt(),
            };
            let r = if take_new {
                added += 1;
                incoming.next().expect("peeked")?
            } else {
                let r = old_head.take().expect("present");
                old_head = next_of(&mut existing)?;
                r
            };
            if conflicted(&r) {
                removed += 1;
                out.diverted.push(r);
            } else {
                merged += u64::from(take_new);
                kept.push(r);
            }
        }
        progress.advance(1);
        if added == 0 && removed == 0 {
            continue;
        }
        // A chunk exists once any accepted record fell in it, even if every
        // such record later turned out to belong to a conflict: that keeps
        // the set of chunks independent of the order variants arrived in.
        out.records_merged += merged;
        let rel = chunk_rel_path(stream, start, version);
        let (records, checksum) = write_chunk(&ctx.out.join(&rel), &kept)?;
        out.written.push(Written {
            entry: ChunkEntry {
                stream,
                start_obt_ns: start,
                end_obt_ns: start.saturating_add(ctx.chunk_ns),
                version,
                path: rel,
                records,
                checksum,
                status: ChunkStatus::Provisional,
                run: ctx.run,
                status_run: ctx.run,
            },
        });
    }
    if let Some(r) = incoming.next() {
        let r = r?;
        return Err(OrderError::Config(format!(
            "internal error: {} record at {} ns outside the touched chunks",
            stream.as_str(),
            r.obt_ns()
        )));
    }
    Ok(out)
}

/// Threads of the output pool: twice the compute threads, and at least eight,
/// as a chunk spends much of its time waiting for its fsync, and the disk
/// serves several of those at once.
fn output_threads() -> usize {
    (2 * rayon::current_num_threads()).max(8)
}

/// Writes one chunk file atomically; returns its record count and checksum.
fn write_chunk<R: StreamRecord>(path: &Path, records: &[R]) -> Result<(u64, String), OrderError> {
    let product = meridian_core::product::write_all(path, records)?;
    Ok((product.header.record_count, file_checksum(path)?))
}

/// xxh3-64 of a file's bytes, in hex. Streamed through one small buffer: a
/// buffer the size of the file would be fresh memory (page faults) per chunk.
fn file_checksum(path: &Path) -> Result<String, OrderError> {
    use std::io::Read;
    let io = |e| OrderError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(format!("{:016x}", hasher.digest()))
}

fn next_of<R: StreamRecord>(
    reader: &mut Option<ProductReader<R>>,
) -> Result<Option<R>, OrderError> {
    match reader.as_mut().and_then(|r| r.next()) {
        Some(r) => Ok(Some(r?)),
        None => Ok(None),
    }
}

/// Adds records to a set-aside product (`conflicts/<stream>.mprod` or
/// `late/<stream>.mprod`), kept sorted and free of repeats.
fn merge_aside<R: StreamRecord>(dir: &Path, mut records: Vec<R>) -> Result<(), OrderError> {
    if records.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| OrderError::io(dir, e))?;
    let path = dir.join(format!("{}.mprod", R::STREAM.as_str()));
    if path.exists() {
        records.extend(meridian_core::product::read_all::<R>(&path)?);
    }
    records.sort_unstable_by(|a, b| a.cmp_total(b));
    records.dedup_by(|a, b| a.cmp_total(b).is_eq());
    meridian_core::product::write_all(&path, &records)?;
    Ok(())
}

/// A conflict: one packet key delivered with different bytes.
#[derive(Debug, Clone, Serialize)]
struct ConflictReport {
    apid: u16,
    seq: u16,
    packet_obt_ns: u64,
    variants: Vec<ConflictVariant>,
}

#[derive(Debug, Clone, Serialize)]
struct ConflictVariant {
    packet_hash: String,
    /// The smallest id of the deliveries that carried this variant.
    delivery: String,
    records: u32,
}

/// Writes gaps, conflicts, the state and finally the manifest (the commit point).
fn commit(
    ctx: &mut Ctx,
    mut chunks: BTreeMap<(Stream, u64), ChunkEntry>,
    written: Vec<Written>,
    close_after: Option<u64>,
) -> Result<Manifest, OrderError> {
    let out = ctx.out.clone();
    let mut all_gaps: Vec<Gap> = Vec::new();
    let mut spans: BTreeMap<u16, Vec<(u64, u64)>> = BTreeMap::new();
    let mut hours = Vec::new();
    for stream in Stream::ALL {
        let c = gaps::continuity(&ctx.state.packets, stream.apid());
        for g in &c.ambiguous {
            tracing::warn!(
                "APID {:#x}: gap after {} ns may hide {} more whole sequence-count wraps",
                g.apid,
                g.after_obt_ns,
                g.max_extra_wraps
            );
        }
        all_gaps.extend(c.gaps);
        ctx.summary.ambiguous_gaps.extend(c.ambiguous);
        spans.entry(stream.apid()).or_default().extend(c.open_spans);
        hours.extend(c.hours);
    }
    let mut conflicts = Vec::new();
    for (k, vs) in ctx.state.packets.iter().filter(|(_, v)| v.len() > 1) {
        let s = spans.entry(k.apid).or_default();
        s.extend(vs.iter().map(|v| (v.min_obt_ns, v.max_obt_ns)));
        conflicts.push(ConflictReport {
            apid: k.apid,
            seq: k.seq,
            packet_obt_ns: k.packet_obt_ns,
            variants: vs
                .iter()
                .map(|v| ConflictVariant {
                    packet_hash: format!("{:016x}", v.hash),
                    delivery: delivery_name(v.first_delivery),
                    records: v.records,
                })
                .collect(),
        });
    }
    all_gaps.sort_by_key(|g| (g.after_obt_ns, g.apid, g.first_missing_seq));
    meridian_core::product::write_all(out.join(GAPS_FILE), &all_gaps)?;
    let mut json = serde_json::to_vec_pretty(&conflicts).expect("plain data serialises");
    json.push(b'\n');
    write_file_atomic(out.join(CONFLICTS_FILE), &json)?;
    let spans: BTreeMap<u16, Vec<(u64, u64)>> = spans
        .into_iter()
        .map(|(apid, s)| (apid, gaps::merge_spans(s)))
        .collect();
    let old_status: BTreeMap<(Stream, u64), (ChunkStatus, u64)> = chunks
        .iter()
        .map(|(k, c)| (*k, (c.status, c.status_run)))
        .collect();
    for w in written {
        chunks.insert((w.entry.stream, w.entry.start_obt_ns), w.entry);
    }
    for (k, c) in chunks.iter_mut() {
        c.status = if close_after.is_some_and(|t| c.end_obt_ns <= t) {
            ChunkStatus::Final
        } else if spans
            .get(&c.stream.apid())
            .is_some_and(|s| gaps::touches(s, c.start_obt_ns, c.end_obt_ns))
        {
            ChunkStatus::Provisional
        } else {
            ChunkStatus::Complete
        };
        c.status_run = match old_status.get(k) {
            Some(&(s, run)) if s == c.status => run,
            _ => ctx.run,
        };
    }
    let state_file = state::state_path(&out, ctx.run);
    let state_dir = state_file.parent().expect("state folder");
    std::fs::create_dir_all(state_dir).map_err(|e| OrderError::io(state_dir, e))?;
    write_file_atomic(&state_file, &ctx.state.encode())?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        chunk_ns: ctx.chunk_ns,
        run: ctx.run,
        chunks: chunks.into_values().collect(),
        close_before_obt_ns: close_after,
        gaps: all_gaps.len() as u64,
        conflicts: conflicts.len() as u64,
        completeness: hours,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("plain data serialises");
    json.push(b'\n');
    write_file_atomic(out.join(MANIFEST_FILE), &json)?;
    ctx.summary.gaps = manifest.gaps;
    ctx.summary.conflicts = manifest.conflicts;
    Ok(manifest)
}

/// Removes what the committed manifest no longer needs: scratch files, state of
/// other runs, and chunk files other than each chunk's current and previous
/// version (the previous one stays for readers of the previous manifest). A
/// function of the manifest alone, so a rerun after a crash converges.
fn cleanup(out: &Path, manifest: &Manifest) -> Result<(), OrderError> {
    remove_dir_if_exists(&out.join("tmp"))?;
    let mut keep: HashSet<PathBuf> = HashSet::new();
    for c in &manifest.chunks {
        keep.insert(out.join(&c.path));
        if c.version > 1 {
            keep.insert(out.join(chunk_rel_path(c.stream, c.start_obt_ns, c.version - 1)));
        }
    }
    keep.insert(state::state_path(out, manifest.run));
    let mut dirs: Vec<PathBuf> = Stream::ALL
        .iter()
        .map(|s| out.join("chunks").join(s.as_str()))
        .collect();
    dirs.push(out.join("state"));
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.map_err(|e| OrderError::io(&dir, e))?.path();
            if !keep.contains(&path) {
                std::fs::remove_file(&path).map_err(|e| OrderError::io(&path, e))?;
            }
        }
    }
    for dir in [out.to_owned(), out.join("conflicts"), out.join("late")] {
        remove_temp_files(&dir)?;
    }
    Ok(())
}

/// Removes temporary files left by an interrupted atomic write (`.<name>.<pid>-<n>.tmp`).
fn remove_temp_files(dir: &Path) -> Result<(), OrderError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry.map_err(|e| OrderError::io(dir, e))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") && path.is_file() {
            std::fs::remove_file(&path).map_err(|e| OrderError::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed checksum is the one-shot xxh3-64 of the file, also across
    /// buffer refills, so manifests keep their meaning.
    #[test]
    fn file_checksum_is_xxh3_of_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 64 << 10, (200 << 10) + 7] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &bytes).unwrap();
            let want = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
            assert_eq!(file_checksum(&path).unwrap(), want, "{len} octets");
        }
        let missing = dir.path().join("missing");
        let err = file_checksum(&missing).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
