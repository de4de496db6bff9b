//! The on-disk catalogue index: sources ordered by HEALPix cell (nested scheme) in
//! one memory-mappable file, built from the ICD §7 CSV by an external sort.
//!
//! # Tiers
//! Sources are split by total proper motion |µ|: tier 0 holds |µ| ≤ the build's
//! `fast_pm_limit` (default 1000 mas/yr, all but a few thousand stars of a real
//! sky), tier 1 the fast movers. Each tier records its own maximum |µ| and
//! epoch range, so the proper-motion margin of the search (ICD §7 propagation)
//! stays a few arcseconds for almost every source and only the short tier-1
//! list is searched with Barnard's-star-sized margins. Each tier has its own
//! HEALPix depth chosen from its density: the shallowest depth whose mean cell
//! holds at most `sources_per_cell` (default 64, so 16–64 per cell; measured
//! faster to match than 4–16 or 64–256 on a 10M-source sky) in tier 0, and at
//! most 1/16 of that in the fast tier: every transit searches it with a
//! margin of arcminutes, so each source of every cell within that margin is
//! tested, and sparse cells keep that list short (on the 10M-source bench
//! sky, 1.3 instead of 37 fast sources tested per transit).
//!
//! # File layout (all integers and floats little-endian)
//! ```text
//! 0    8  magic "MERIDIDX"
//! 8    4  format version (2)
//! 12   4  number of tiers (2)
//! 16   8  file length in octets
//! 24   8  reserved, zero
//! 32   8  xxh3-64 of the 576-octet header with these 8 octets zeroed
//! 40  24  reserved, zero
//! 64  256 tier 0 descriptor, then 320: tier 1 descriptor
//!
//! tier descriptor:
//! 0    1  HEALPix depth (nested), then 7 octets zero
//! 8    8  number of sources n
//! 16   8  number of non-empty cells m
//! 24   8  f64 |µ| limit of the tier, mas/yr (+inf for the last tier)
//! 32   8  f64 largest |µ| in the tier, mas/yr
//! 40   8  f64 smallest ref_epoch (Julian year; 0 when n = 0)
//! 48   8  f64 largest ref_epoch
//! 56   8  reserved
//! 64  168 seven sections, each (offset u64, length u64, xxh3-64 u64):
//!         cells  m × 48 octets, cells increasing: cell u64, first source
//!                u64, then a sphere holding the cell's sources: centre
//!                (x, y, z) f64 and radius f64 (chord length)
//!         pos    n × 3 f64: unit vector (x, y, z) at ref_epoch
//!         id     n × i64 source_id
//!         epoch  n × f64 ref_epoch
//!         pmra   n × f32 µα* (mas/yr)
//!         pmdec  n × f32 µδ (mas/yr)
//!         mag    n × f32 phot_g_mean_mag (NaN when absent)
//! ```
//! Version 2 added the cell spheres (version 1 cells were 16 octets).
//! A cell's sphere is centred on the HEALPix centre of the cell; its radius is
//! the largest chord distance from that centre to the cell's stored positions,
//! widened by a relative 1e-9 and an absolute 1e-12 so that rounding can only
//! make it larger. The matcher skips a cell whose sphere a transit cannot
//! reach, so the spheres are computed once at build instead of per match.
//! Sections start on 64-octet boundaries. Within a tier, sources are ordered by
//! their depth-29 HEALPix cell then `source_id` (then their other fields), so
//! the file is the same byte for byte whatever the CSV's row order.
//! Proper motions are stored as f32 (relative precision 6e-8: under 1 µas/yr
//! even for the fastest star); positions and epochs keep full f64 precision.
//!
//! # Checks
//! Opening checks the magic, version, header checksum, file length and the
//! bounds of every section, and walks the cell tables (O(cells)) so that no
//! lookup can go out of range. The section checksums cover gigabytes on a real
//! catalogue, so they are verified on demand ([`Index::verify`],
//! `meridian-index info --verify`) rather than at every open.

use crate::catalogue::{CatalogueReader, CatalogueSource, CsvError};
use crate::propagate::total_pm;
use memmap2::Mmap;
use meridian_core::Vec3;
use meridian_core::stage::Progress;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

#[cfg(target_endian = "big")]
compile_error!("the catalogue index is read in place as little-endian arrays");

/// Magic number at the start of an index file.
pub const INDEX_MAGIC: [u8; 8] = *b"MERIDIDX";
/// Current index format version.
pub const INDEX_VERSION: u32 = 2;
/// Number of proper-motion tiers.
pub const N_TIERS: usize = 2;
const HEADER_LEN: usize = 64 + 256 * N_TIERS;
const N_SECTIONS: usize = 7;
const ALIGN: u64 = 64;
/// HEALPix depth used for the sort key (cells at any shallower depth are prefixes).
const SORT_DEPTH: u8 = 29;
/// Deepest depth chosen for a tier.
pub const MAX_INDEX_DEPTH: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Cells = 0,
    Pos = 1,
    Id = 2,
    Epoch = 3,
    Pmra = 4,
    Pmdec = 5,
    Mag = 6,
}

impl Section {
    const ALL: [Section; N_SECTIONS] = [
        Section::Cells,
        Section::Pos,
        Section::Id,
        Section::Epoch,
        Section::Pmra,
        Section::Pmdec,
        Section::Mag,
    ];
    fn name(self) -> &'static str {
        ["cells", "pos", "id", "epoch", "pmra", "pmdec", "mag"][self as usize]
    }
    /// Octets per source (per cell for `Cells`).
    fn item_len(self) -> u64 {
        [48, 24, 8, 8, 4, 4, 4][self as usize]
    }
}

/// What can go wrong building or opening an index. Every variant names its file.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Csv { path: PathBuf, source: CsvError },
    #[error("{path}: not a Meridian catalogue index (bad magic)")]
    NotAnIndex { path: PathBuf },
    #[error(
        "{path}: index format version {found} is not supported (this build reads {INDEX_VERSION})"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{path}: corrupted index: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path}: invalid build option: {detail}")]
    Options { path: PathBuf, detail: String },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> IndexError {
    IndexError::Corrupt {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// How to build an index.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--ref-epoch`: the epoch of rows whose catalogue has no `ref_epoch` value.
    pub ref_epoch: Option<f64>,
    /// Skip malformed rows (counted and reported) instead of failing on the first.
    pub skip_bad: bool,
    /// Memory for in-memory sort runs, octets; larger catalogues spill sorted
    /// runs to temporary files beside the output and merge them.
    pub memory_budget: usize,
    /// Proper motion (mas/yr) above which a source goes to the fast-mover tier.
    pub fast_pm_limit: f64,
    /// Largest mean number of sources per HEALPix cell when choosing a depth.
    pub sources_per_cell: f64,
    /// Folder for sort runs (default: the output's folder).
    pub temp_dir: Option<PathBuf>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            ref_epoch: None,
            skip_bad: false,
            memory_budget: 1 << 30,
            fast_pm_limit: 1000.0,
            sources_per_cell: 64.0,
            temp_dir: None,
        }
    }
}

/// What a build did.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub sources: u64,
    /// Malformed rows skipped under `skip_bad`.
    pub skipped_rows: u64,
    /// The first few skipped rows' errors (line numbers included).
    pub skipped_examples: Vec<String>,
    /// Sorted runs written to disk (0 when the catalogue fitted the budget).
    pub spilled_runs: usize,
    pub info: IndexInfo,
}

/// Summary of an index, as `meridian-index info` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndexInfo {
    pub version: u32,
    pub file_len: u64,
    pub sources: u64,
    pub tiers: Vec<TierInfo>,
}

/// Summary of one tier.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TierInfo {
    pub depth: u8,
    pub sources: u64,
    pub cells: u64,
    /// |µ| limit of the tier (null: none).
    pub pm_limit_mas_yr: Option<f64>,
    pub max_pm_mas_yr: f64,
    pub min_ref_epoch: f64,
    pub max_ref_epoch: f64,
}

// ---------------------------------------------------------------- building

/// One source in the build's sort: 64 octets when spilled.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    tier: u8,
    hash: u64,
    id: i64,
    pos: [f64; 3],
    pmra: f32,
    pmdec: f32,
    epoch: f64,
    mag: f32,
}

const ENTRY_LEN: usize = 64;
type EntryKey = (u8, u64, i64, [u64; 3], u32, u32, u64, u32);

impl Entry {
    fn new(s: &CatalogueSource, fast_pm_limit: f64) -> Self {
        let v = Vec3::from_radec_deg(s.ra, s.dec);
        let (lon, lat) = (
            s.ra.to_radians().rem_euclid(std::f64::consts::TAU),
            s.dec.to_radians(),
        );
        let pmra = s.pmra as f32;
        let pmdec = s.pmdec as f32;
        let tier = u8::from(total_pm(pmra as f64, pmdec as f64) > fast_pm_limit);
        Entry {
            tier,
            hash: cdshealpix::nested::hash(SORT_DEPTH, lon, lat),
            id: s.source_id,
            pos: [v.x, v.y, v.z],
            pmra,
            pmdec,
            epoch: s.ref_epoch,
            mag: s.mag.map_or(f32::NAN, |m| m as f32),
        }
    }

    /// The sort order: cheap leading fields first, the whole key on ties.
    fn order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
        (a.tier, a.hash, a.id)
            .cmp(&(b.tier, b.hash, b.id))
            .then_with(|| a.key().cmp(&b.key()))
    }

    /// Total order (on bits, so it is total even for NaN magnitudes).
    fn key(&self) -> EntryKey {
        (
            self.tier,
            self.hash,
            self.id,
            self.pos.map(f64::to_bits),
            self.pmra.to_bits(),
            self.pmdec.to_bits(),
            self.epoch.to_bits(),
            self.mag.to_bits(),
        )
    }

    fn encode(&self, out: &mut [u8; ENTRY_LEN]) {
        out[0] = self.tier;
        out[1..8].fill(0);
        out[8..16].copy_from_slice(&self.hash.to_le_bytes());
        out[16..24].copy_from_slice(&self.id.to_le_bytes());
        for (k, c) in self.pos.iter().enumerate() {
            out[24 + 8 * k..32 + 8 * k].copy_from_slice(&c.to_le_bytes());
        }
        out[48..52].copy_from_slice(&self.pmra.to_le_bytes());
        out[52..56].copy_from_slice(&self.pmdec.to_le_bytes());
        out[56..64].copy_from_slice(&self.epoch.to_le_bytes());
        // The magnitude rides in the padding of the tier octet's word.
        out[4..8].copy_from_slice(&self.mag.to_le_bytes());
    }

    fn decode(b: &[u8; ENTRY_LEN]) -> Self {
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8"));
        let f32_at = |o: usize| f32::from_le_bytes(b[o..o + 4].try_into().expect("4"));
        Entry {
            tier: b[0],
            hash: u64_at(8),
            id: u64_at(16) as i64,
            pos: [
                f64::from_bits(u64_at(24)),
                f64::from_bits(u64_at(32)),
                f64::from_bits(u64_at(40)),
            ],
            pmra: f32_at(48),
            pmdec: f32_at(52),
            epoch: f64::from_bits(u64_at(56)),
            mag: f32_at(4),
        }
    }
}

/// Per-tier statistics gathered while reading the catalogue.
#[derive(Debug, Clone, Copy)]
struct TierStats {
    n: u64,
    max_pm: f64,
    min_epoch: f64,
    max_epoch: f64,
}

impl Default for TierStats {
    fn default() -> Self {
        Self {
            n: 0,
            max_pm: 0.0,
            min_epoch: f64::INFINITY,
            max_epoch: f64::NEG_INFINITY,
        }
    }
}

impl TierStats {
    fn merge_all(a: [Self; N_TIERS], b: [Self; N_TIERS]) -> [Self; N_TIERS] {
        std::array::from_fn(|t| TierStats {
            n: a[t].n + b[t].n,
            max_pm: a[t].max_pm.max(b[t].max_pm),
            min_epoch: a[t].min_epoch.min(b[t].min_epoch),
            max_epoch: a[t].max_epoch.max(b[t].max_epoch),
        })
    }

    fn add(&mut self, e: &Entry) {
        self.n += 1;
        self.max_pm = self.max_pm.max(total_pm(e.pmra as f64, e.pmdec as f64));
        self.min_epoch = self.min_epoch.min(e.epoch);
        self.max_epoch = self.max_epoch.max(e.epoch);
    }
}

/// Temporary files of a build, removed when the build ends (even by error).
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn temp_name(dir: &Path, target: &Path, what: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    dir.join(format!(".{name}.{what}.{}.tmp", std::process::id()))
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// Builds an index at `output` from the catalogue CSV at `csv`; `progress`
/// advances by the CSV octets read.
pub fn build_index_from_path(
    csv: &Path,
    output: &Path,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildReport, IndexError> {
    let file = File::open(csv).map_err(io_err(csv))?;
    let counting = CountingRead {
        inner: file,
        read: 0,
        reported: 0,
        progress,
    };
    build_index(
        BufReader::with_capacity(1 << 20, counting),
        csv,
        output,
        opts,
    )
}

/// Reports bytes read to a progress callback, about every megabyte.
struct CountingRead<'a, R> {
    inner: R,
    read: u64,
    reported: u64,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for CountingRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read - self.reported >= 1 << 20 || n == 0 {
            self.progress.advance(self.read - self.reported);
            self.reported = self.read;
        }
        Ok(n)
    }
}

/// Builds an index at `output` from catalogue CSV text; `name` names the input
/// in errors. The file appears atomically when complete.
pub fn build_index(
    input: impl BufRead,
    name: &Path,
    output: &Path,
    opts: &BuildOptions,
) -> Result<BuildReport, IndexError> {
    let bad_option = |detail: String| IndexError::Options {
        path: output.to_owned(),
        detail,
    };
    if opts.sources_per_cell.is_nan() || opts.sources_per_cell < 1.0 {
        return Err(bad_option(format!(
            "sources per cell {} < 1",
            opts.sources_per_cell
        )));
    }
    if opts.fast_pm_limit.is_nan() || opts.fast_pm_limit < 0.0 {
        return Err(bad_option(format!(
            "fast pm limit {} < 0",
            opts.fast_pm_limit
        )));
    }
    let csv_err = |source| IndexError::Csv {
        path: name.to_owned(),
        source,
    };
    let reader = CatalogueReader::new(input, opts.ref_epoch).map_err(csv_err)?;
    let dir = opts.temp_dir.clone().unwrap_or_else(|| parent_dir(output));
    let mut temps = TempFiles(Vec::new());
    let chunk_cap = (opts.memory_budget / ENTRY_LEN).max(1024);
    let mut chunk: Vec<Entry> = Vec::with_capacity(chunk_cap.min(1 << 20));
    let mut runs: Vec<PathBuf> = Vec::new();
    let mut stats = [TierStats::default(); N_TIERS];
    let (mut skipped, mut examples) = (0u64, Vec::new());
    let mut reader = reader;
    let mut block = crate::catalogue::LineBlock::default();
    let limit = opts.fast_pm_limit;
    let parser = reader.parser();
    loop {
        reader.read_block(1 << 16, &mut block).map_err(csv_err)?;
        if block.is_empty() {
            break;
        }
        // Parse in parallel, then take results in line order so the first
        // error reported is the first in the file.
        let parsed: Vec<Result<Entry, CsvError>> = (0..block.len())
            .into_par_iter()
            .with_min_len(1024)
            .map(|i| {
                let (line, text) = block.line(i);
                parser
                    .parse_line(text)
                    .map(|s| Entry::new(&s, limit))
                    .map_err(|message| CsvError::Row { line, message })
            })
            .collect();
        // Statistics in parallel too (min, max and sums: order does not matter).
        let block_stats = parsed
            .par_iter()
            .filter_map(|r| r.as_ref().ok())
            .fold(
                || [TierStats::default(); N_TIERS],
                |mut s, e| {
                    s[e.tier as usize].add(e);
                    s
                },
            )
            .reduce(|| [TierStats::default(); N_TIERS], TierStats::merge_all);
        stats = TierStats::merge_all(stats, block_stats);
        for row in parsed {
            let entry = match row {
                Ok(e) => e,
                Err(e) if opts.skip_bad => {
                    skipped += 1;
                    if examples.len() < 10 {
                        examples.push(e.to_string());
                    }
                    continue;
                }
                Err(e) => return Err(csv_err(e)),
            };
            chunk.push(entry);
            if chunk.len() >= chunk_cap {
                let path = temp_name(&dir, output, &format!("run{}", runs.len()));
                temps.0.push(path.clone());
                spill_run(&mut chunk, &path)?;
                runs.push(path);
            }
        }
    }
    let mut spilled_runs = 0;
    let out_tmp = temp_name(&parent_dir(output), output, "build");
    temps.0.push(out_tmp.clone());
    let depths: [u8; N_TIERS] = std::array::from_fn(|t| {
        let per_cell = if t == 0 {
            opts.sources_per_cell
        } else {
            opts.sources_per_cell / FAST_TIER_SPARSER
        };
        depth_for(stats[t].n, per_cell)
    });
    if runs.is_empty() {
        chunk.par_sort_unstable_by(Entry::order);
        write_index(
            &out_tmp,
            &stats,
            &depths,
            opts.fast_pm_limit,
            SortedEntries::InMemory(&chunk),
        )?;
    } else {
        if !chunk.is_empty() {
            let path = temp_name(&dir, output, &format!("run{}", runs.len()));
            temps.0.push(path.clone());
            spill_run(&mut chunk, &path)?;
            runs.push(path);
        }
        drop(chunk);
        spilled_runs = runs.len();
        let merged = MergeRuns::open(&runs)?.peekable();
        write_index(
            &out_tmp,
            &stats,
            &depths,
            opts.fast_pm_limit,
            SortedEntries::Merged(merged, Vec::with_capacity(WRITE_BATCH)),
        )?;
    }
    persist(&out_tmp, output)?;
    temps.0.retain(|p| p != &out_tmp);
    let index = Index::open(output)?;
    Ok(BuildReport {
        sources: stats.iter().map(|s| s.n).sum(),
        skipped_rows: skipped,
        skipped_examples: examples,
        spilled_runs,
        info: index.info(),
    })
}

/// How much sparser than tier 0's the cells of the fast tiers are (see the
/// module docs).
const FAST_TIER_SPARSER: f64 = 16.0;

/// Depth whose mean cell holds at most `per_cell` of `n` sources.
pub fn depth_for(n: u64, per_cell: f64) -> u8 {
    (0..MAX_INDEX_DEPTH)
        .find(|&d| n as f64 / (12.0 * 4f64.powi(d as i32)) <= per_cell)
        .unwrap_or(MAX_INDEX_DEPTH)
}

fn spill_run(chunk: &mut Vec<Entry>, path: &Path) -> Result<(), IndexError> {
    chunk.par_sort_unstable_by(Entry::order);
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut buf = [0u8; ENTRY_LEN];
    for e in chunk.iter() {
        e.encode(&mut buf);
        w.write_all(&buf).map_err(io_err(path))?;
    }
    w.flush().map_err(io_err(path))?;
    chunk.clear();
    Ok(())
}

/// K-way merge of sorted runs.
struct MergeRuns {
    readers: Vec<(PathBuf, BufReader<File>)>,
    heap: BinaryHeap<std::cmp::Reverse<(EntryKey, usize)>>,
    heads: Vec<Option<Entry>>,
}

impl MergeRuns {
    fn open(paths: &[PathBuf]) -> Result<Self, IndexError> {
        let mut m = MergeRuns {
            readers: Vec::new(),
            heap: BinaryHeap::new(),
            heads: Vec::new(),
        };
        for (i, p) in paths.iter().enumerate() {
            let f = File::open(p).map_err(io_err(p))?;
            m.readers
                .push((p.clone(), BufReader::with_capacity(1 << 20, f)));
            m.heads.push(None);
            m.advance(i)?;
        }
        Ok(m)
    }

    fn advance(&mut self, run: usize) -> Result<(), IndexError> {
        let (path, reader) = &mut self.readers[run];
        let mut buf = [0u8; ENTRY_LEN];
        match reader.read_exact(&mut buf) {
            Ok(()) => {
                let e = Entry::decode(&buf);
                self.heap.push(std::cmp::Reverse((e.key(), run)));
                self.heads[run] = Some(e);
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => self.heads[run] = None,
            Err(e) => return Err(io_err(path)(e)),
        }
        Ok(())
    }
}

impl Iterator for MergeRuns {
    type Item = Result<Entry, IndexError>;
    fn next(&mut self) -> Option<Self::Item> {
        let std::cmp::Reverse((_, run)) = self.heap.pop()?;
        let entry = self.heads[run].take().expect("heap entries have heads");
        Some(self.advance(run).map(|()| entry))
    }
}

/// A section being streamed to its place in the output file.
struct SectionWriter {
    offset: u64,
    w: BufWriter<File>,
    hasher: Xxh3,
    len: u64,
}

impl SectionWriter {
    fn open(path: &Path, offset: u64) -> Result<Self, IndexError> {
        let mut f = File::options()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
        Ok(Self {
            offset,
            w: BufWriter::with_capacity(1 << 18, f),
            hasher: Xxh3::new(),
            len: 0,
        })
    }
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        self.w.write_all(bytes)
    }
    fn finish(mut self) -> io::Result<[u64; 3]> {
        self.w.flush()?;
        Ok([self.offset, self.len, self.hasher.digest()])
    }
}

fn align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// Writes the sorted entries (tier 0 first) into a complete index file at `path`.
fn write_index(
    path: &Path,
    stats: &[TierStats; N_TIERS],
    depths: &[u8; N_TIERS],
    fast_pm_limit: f64,
    mut entries: SortedEntries,
) -> Result<(), IndexError> {
    let io = io_err(path);
    File::create(path).map_err(&io)?;
    // Column sections of every tier first: their sizes are known now.
    let mut offset = align(HEADER_LEN as u64);
    let mut column_offsets = [[0u64; N_SECTIONS]; N_TIERS];
    for (t, s) in stats.iter().enumerate() {
        for sec in &Section::ALL[1..] {
            column_offsets[t][*sec as usize] = offset;
            offset = align(offset + sec.item_len() * s.n);
        }
    }
    // Cell tables follow, streamed tier by tier.
    let mut cell_offset = offset;
    let mut sections = [[[0u64; 3]; N_SECTIONS]; N_TIERS];
    let mut cell_counts = [0u64; N_TIERS];
    for t in 0..N_TIERS {
        let mut cols: Vec<SectionWriter> = Section::ALL[1..]
            .iter()
            .map(|s| SectionWriter::open(path, column_offsets[t][*s as usize]))
            .collect::<Result<_, _>>()?;
        let mut cells = SectionWriter::open(path, cell_offset)?;
        let mut table = CellTable {
            depth: depths[t],
            shift: 2 * (SORT_DEPTH - depths[t]) as u32,
            written: 0,
            open: None,
        };
        loop {
            let batch = entries.next_batch(t)?;
            if batch.is_empty() {
                break;
            }
            write_batch(batch, &mut cols, &mut cells, &mut table).map_err(&io)?;
        }
        if let Some(done) = table.open.take() {
            cells.put(&done.finished().encode()).map_err(&io)?;
        }
        let written = table.written;
        if written != stats[t].n {
            return Err(corrupt(
                path,
                format!("tier {t}: wrote {written} of {} sources", stats[t].n),
            ));
        }
        cell_counts[t] = cells.len / Section::Cells.item_len();
        let cell_sec = cells.finish().map_err(&io)?;
        cell_offset = align(cell_sec[0] + cell_sec[1]);
        sections[t][Section::Cells as usize] = cell_sec;
        for (sec, w) in Section::ALL[1..].iter().zip(cols) {
            sections[t][*sec as usize] = w.finish().map_err(&io)?;
        }
    }
    let file_len = cell_offset;
    let header = encode_header(
        file_len,
        stats,
        depths,
        &cell_counts,
        &sections,
        fast_pm_limit,
    );
    let mut f = File::options().write(true).open(path).map_err(&io)?;
    f.set_len(file_len).map_err(&io)?;
    f.write_all(&header).map_err(&io)?;
    f.sync_all().map_err(&io)?;
    Ok(())
}

/// One entry of a tier's cell table (see the layout in the module docs).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellEntry {
    /// HEALPix cell (nested) at the tier's depth.
    pub cell: u64,
    /// Index of the cell's first source in the tier.
    pub first: u64,
    /// Centre of a sphere (in 3-space) holding the cell's sources.
    pub centre: [f64; 3],
    /// Radius of that sphere (chord length); while building, the largest
    /// squared distance seen so far.
    pub radius: f64,
}

const _: () = assert!(std::mem::size_of::<CellEntry>() == 48);

impl CellEntry {
    fn open(depth: u8, cell: u64, first: u64) -> Self {
        let (lon, lat) = cdshealpix::nested::center(depth, cell);
        let c = Vec3::from_radec_rad(lon, lat);
        CellEntry {
            cell,
            first,
            centre: [c.x, c.y, c.z],
            radius: 0.0,
        }
    }

    fn include(&mut self, p: [f64; 3]) {
        let d: [f64; 3] = std::array::from_fn(|k| p[k] - self.centre[k]);
        self.radius = self.radius.max(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    }

    /// Turns the largest squared distance into the stored radius; rounding of
    /// the squares and the root is far below the slack.
    fn finished(mut self) -> Self {
        self.radius = self.radius.sqrt() * (1.0 + 1e-9) + 1e-12;
        self
    }

    fn encode(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0..8].copy_from_slice(&self.cell.to_le_bytes());
        b[8..16].copy_from_slice(&self.first.to_le_bytes());
        for (k, v) in self.centre.iter().chain([&self.radius]).enumerate() {
            b[16 + 8 * k..24 + 8 * k].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// All sources in index order (tier, then cell), handed out in batches.
enum SortedEntries<'a> {
    /// Sorted in memory: batches are slices of it.
    InMemory(&'a [Entry]),
    /// Merged from sorted runs on disk, through a batch buffer.
    Merged(std::iter::Peekable<MergeRuns>, Vec<Entry>),
}

impl SortedEntries<'_> {
    /// The next up to `WRITE_BATCH` sources of tier `t` (empty once the tier
    /// is done).
    fn next_batch(&mut self, t: usize) -> Result<&[Entry], IndexError> {
        match self {
            SortedEntries::InMemory(rest) => {
                let in_tier = rest.partition_point(|e| (e.tier as usize) <= t);
                let (batch, tail) = rest.split_at(in_tier.min(WRITE_BATCH));
                *rest = tail;
                Ok(batch)
            }
            SortedEntries::Merged(merge, buf) => {
                buf.clear();
                while buf.len() < WRITE_BATCH {
                    match merge.peek() {
                        None => break,
                        Some(Ok(e)) if e.tier as usize != t => break,
                        _ => buf.extend(merge.next().transpose()?),
                    }
                }
                Ok(buf)
            }
        }
    }
}

/// Sources encoded per step of the write: each step encodes, hashes and writes
/// its column sections and the cell table in parallel (16 MiB of entries).
const WRITE_BATCH: usize = 1 << 18;

/// The cell table of a tier being written: the cell still open (its sphere
/// grows until the next cell starts) and the sources written so far.
struct CellTable {
    depth: u8,
    shift: u32,
    written: u64,
    open: Option<CellEntry>,
}

impl CellTable {
    /// Adds a batch of sources (sorted, after the previous batch) and writes
    /// every cell that the batch closes.
    fn extend(&mut self, batch: &[Entry], out: &mut SectionWriter) -> io::Result<()> {
        for e in batch {
            let cell = e.hash >> self.shift;
            if self.open.is_none_or(|c| c.cell != cell) {
                if let Some(done) = self.open.take() {
                    out.put(&done.finished().encode())?;
                }
                self.open = Some(CellEntry::open(self.depth, cell, self.written));
            }
            if let Some(c) = self.open.as_mut() {
                c.include(e.pos);
            }
            self.written += 1;
        }
        Ok(())
    }
}

/// Writes one batch of a tier: the six column sections and the cell table on
/// rayon's pool, each to its own file handle (the byte stream of each section
/// is the same as writing source by source).
fn write_batch(
    batch: &[Entry],
    cols: &mut [SectionWriter],
    cells: &mut SectionWriter,
    table: &mut CellTable,
) -> io::Result<()> {
    let (cells_done, cols_done) = rayon::join(
        || table.extend(batch, cells),
        || {
            cols.par_iter_mut()
                .zip(&Section::ALL[1..])
                .try_for_each(|(w, sec)| w.put(&encode_column(batch, *sec)))
        },
    );
    cells_done.and(cols_done)
}

/// Encoder of each column section (`Section::ALL[1..]`), little-endian.
const COLUMN_ENCODERS: [fn(&Entry, &mut Vec<u8>); N_SECTIONS - 1] = [
    |e, out| {
        e.pos
            .iter()
            .for_each(|c| out.extend_from_slice(&c.to_le_bytes()))
    },
    |e, out| out.extend_from_slice(&e.id.to_le_bytes()),
    |e, out| out.extend_from_slice(&e.epoch.to_le_bytes()),
    |e, out| out.extend_from_slice(&e.pmra.to_le_bytes()),
    |e, out| out.extend_from_slice(&e.pmdec.to_le_bytes()),
    |e, out| out.extend_from_slice(&e.mag.to_le_bytes()),
];

/// One column section of a batch.
fn encode_column(batch: &[Entry], sec: Section) -> Vec<u8> {
    let encode = COLUMN_ENCODERS[sec as usize - 1];
    let mut out = Vec::with_capacity(batch.len() * sec.item_len() as usize);
    for e in batch {
        encode(e, &mut out);
    }
    out
}

fn encode_header(
    file_len: u64,
    stats: &[TierStats; N_TIERS],
    depths: &[u8; N_TIERS],
    cell_counts: &[u64; N_TIERS],
    sections: &[[[u64; 3]; N_SECTIONS]; N_TIERS],
    fast_pm_limit: f64,
) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&INDEX_MAGIC);
    h[8..12].copy_from_slice(&INDEX_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(N_TIERS as u32).to_le_bytes());
    h[16..24].copy_from_slice(&file_len.to_le_bytes());
    for t in 0..N_TIERS {
        let d = &mut h[64 + 256 * t..64 + 256 * (t + 1)];
        let s = stats[t];
        let limit = if t + 1 == N_TIERS {
            f64::INFINITY
        } else {
            fast_pm_limit
        };
        d[0] = depths[t];
        d[8..16].copy_from_slice(&s.n.to_le_bytes());
        d[16..24].copy_from_slice(&cell_counts[t].to_le_bytes());
        d[24..32].copy_from_slice(&limit.to_le_bytes());
        d[32..40].copy_from_slice(&s.max_pm.to_le_bytes());
        let (lo, hi) = if s.n == 0 {
            (0.0, 0.0)
        } else {
            (s.min_epoch, s.max_epoch)
        };
        d[40..48].copy_from_slice(&lo.to_le_bytes());
        d[48..56].copy_from_slice(&hi.to_le_bytes());
        for (k, sec) in sections[t].iter().enumerate() {
            for (j, v) in sec.iter().enumerate() {
                let o = 64 + 24 * k + 8 * j;
                d[o..o + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    let check = xxh3_64(&h);
    h[32..40].copy_from_slice(&check.to_le_bytes());
    h
}

/// Renames the finished temporary file into place and syncs the folder.
fn persist(tmp: &Path, target: &Path) -> Result<(), IndexError> {
    std::fs::rename(tmp, target).map_err(io_err(target))?;
    let dir = parent_dir(target);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir))
}

// ---------------------------------------------------------------- reading

#[derive(Debug, Clone, Copy)]
struct TierDesc {
    depth: u8,
    n: u64,
    n_cells: u64,
    pm_limit: f64,
    max_pm: f64,
    min_epoch: f64,
    max_epoch: f64,
    sections: [[u64; 3]; N_SECTIONS],
}

/// A memory-mapped catalogue index.
pub struct Index {
    path: PathBuf,
    map: Mmap,
    tiers: [TierDesc; N_TIERS],
    file_len: u64,
}

/// One proper-motion tier of an index, borrowed from the mapping.
#[derive(Clone, Copy)]
pub struct Tier<'a> {
    pub depth: u8,
    /// Largest |µ| in the tier, mas/yr.
    pub max_pm: f64,
    pub min_epoch: f64,
    pub max_epoch: f64,
    cells: &'a [CellEntry],
    pos: &'a [[f64; 3]],
    id: &'a [i64],
    epoch: &'a [f64],
    pmra: &'a [f32],
    pmdec: &'a [f32],
    mag: &'a [f32],
}

/// A source as stored in the index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexedSource {
    pub source_id: i64,
    /// Unit vector at `ref_epoch`.
    pub pos: Vec3,
    pub pmra: f64,
    pub pmdec: f64,
    pub ref_epoch: f64,
    pub mag: Option<f64>,
}

impl<'a> Tier<'a> {
    pub fn len(&self) -> usize {
        self.id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    /// Number of non-empty cells.
    pub fn n_cells(&self) -> usize {
        self.cells.len()
    }

    /// Sources of HEALPix cell `cell` (at this tier's depth), as an index range.
    #[inline]
    pub fn cell_range(&self, cell: u64) -> std::ops::Range<usize> {
        self.cell_index(cell).map_or(0..0, |i| self.range_of(i))
    }

    /// Position of HEALPix cell `cell` in the cell table, if it is not empty.
    #[inline]
    pub fn cell_index(&self, cell: u64) -> Option<usize> {
        let i = self.cells.partition_point(|c| c.cell < cell);
        self.cells.get(i).filter(|c| c.cell == cell).map(|_| i)
    }

    /// The cell table: non-empty cells in increasing order with their spheres.
    #[inline]
    pub fn cell_table(&self) -> &'a [CellEntry] {
        self.cells
    }

    /// Source range of the `i`-th non-empty cell.
    #[inline]
    pub fn range_of(&self, i: usize) -> std::ops::Range<usize> {
        let start = self.cells[i].first as usize;
        let end = self
            .cells
            .get(i + 1)
            .map_or(self.id.len(), |c| c.first as usize);
        start..end
    }

    /// Every non-empty cell and its source range.
    pub fn cells(&self) -> impl Iterator<Item = (u64, std::ops::Range<usize>)> + '_ {
        (0..self.cells.len()).map(|i| (self.cells[i].cell, self.range_of(i)))
    }

    /// Unit vectors at ref_epoch of all sources (hot data of the search).
    #[inline]
    pub fn positions(&self) -> &'a [[f64; 3]] {
        self.pos
    }

    /// What the match needs of source `i` besides its position: its
    /// `source_id`, proper motion (µα*, µδ in mas/yr) and reference epoch
    /// (fewer memory reads than [`Tier::source`]).
    #[inline]
    pub fn motion(&self, i: usize) -> (i64, f64, f64, f64) {
        (
            self.id[i],
            self.pmra[i] as f64,
            self.pmdec[i] as f64,
            self.epoch[i],
        )
    }

    #[inline]
    pub fn source(&self, i: usize) -> IndexedSource {
        let [x, y, z] = self.pos[i];
        let mag = self.mag[i];
        IndexedSource {
            source_id: self.id[i],
            pos: Vec3::new(x, y, z),
            pmra: self.pmra[i] as f64,
            pmdec: self.pmdec[i] as f64,
            ref_epoch: self.epoch[i],
            mag: (!mag.is_nan()).then_some(mag as f64),
        }
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("info", &self.info())
            .finish()
    }
}

impl Index {
    /// Maps an index and checks its header and structure (not the section
    /// checksums: see [`Index::verify`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Index, IndexError> {
        let path = path.as_ref().to_owned();
        let file = File::open(&path).map_err(io_err(&path))?;
        // SAFETY: index files are written under a temporary name and renamed into
        // place, never modified afterwards; the mapping is read-only.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(&path))?;
        let file_len = map.len() as u64;
        let tiers = parse_header(&path, &map)?;
        let index = Index {
            path,
            map,
            tiers,
            file_len,
        };
        for t in 0..N_TIERS {
            index.check_cells(t)?;
        }
        Ok(index)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn section<T>(&self, t: usize, sec: Section) -> &[T] {
        let [off, len, _] = self.tiers[t].sections[sec as usize];
        let bytes = &self.map[off as usize..(off + len) as usize];
        // SAFETY: parse_header checked that the section lies in the file, starts
        // on a 64-octet boundary of the page-aligned mapping and has a length that
        // is a whole number of items; T is only ever f32, f64, i64, arrays of
        // f64 or the repr(C) CellEntry of u64s and f64s (48 octets, no padding),
        // for which every bit pattern is a valid value.
        let (head, body, tail) = unsafe { bytes.align_to::<T>() };
        assert!(
            head.is_empty() && tail.is_empty(),
            "section alignment checked at open"
        );
        body
    }

    /// Tier `t` (0: slow, 1: fast movers).
    pub fn tier(&self, t: usize) -> Tier<'_> {
        let d = &self.tiers[t];
        Tier {
            depth: d.depth,
            max_pm: d.max_pm,
            min_epoch: d.min_epoch,
            max_epoch: d.max_epoch,
            cells: self.section(t, Section::Cells),
            pos: self.section(t, Section::Pos),
            id: self.section(t, Section::Id),
            epoch: self.section(t, Section::Epoch),
            pmra: self.section(t, Section::Pmra),
            pmdec: self.section(t, Section::Pmdec),
            mag: self.section(t, Section::Mag),
        }
    }

    /// Number of sources in all tiers.
    pub fn len(&self) -> u64 {
        self.tiers.iter().map(|t| t.n).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_cells(&self, t: usize) -> Result<(), IndexError> {
        let tier = self.tier(t);
        let n_hash = cdshealpix::nested::n_hash(tier.depth);
        let mut prev: Option<&CellEntry> = None;
        for c in tier.cells {
            let ok = c.cell < n_hash
                && c.first < tier.len() as u64
                && prev.is_none_or(|p| p.cell < c.cell && p.first < c.first)
                && c.centre.iter().all(|v| v.is_finite())
                && c.radius >= 0.0
                && c.radius.is_finite();
            if !ok || (prev.is_none() && c.first != 0) {
                return Err(corrupt(
                    &self.path,
                    format!("tier {t}: bad cell table entry {c:?}"),
                ));
            }
            prev = Some(c);
        }
        if tier.cells.is_empty() != tier.is_empty() {
            return Err(corrupt(
                &self.path,
                format!("tier {t}: cell table does not cover the sources"),
            ));
        }
        Ok(())
    }

    /// Recomputes every section checksum and checks that the alignment padding
    /// between sections is zero; an error names the first bad section.
    pub fn verify(&self) -> Result<(), IndexError> {
        let mut spans: Vec<(u64, u64)> = self
            .tiers
            .iter()
            .flat_map(|t| t.sections.iter().map(|s| (s[0], s[0] + s[1])))
            .collect();
        spans.push((0, HEADER_LEN as u64));
        spans.sort_unstable();
        let mut end = 0;
        for (start, stop) in spans.into_iter().chain([(self.file_len, self.file_len)]) {
            if start > end
                && self.map[end as usize..start as usize]
                    .iter()
                    .any(|&b| b != 0)
            {
                return Err(corrupt(
                    &self.path,
                    format!("non-zero padding at octets {end}..{start}"),
                ));
            }
            end = end.max(stop);
        }
        let jobs: Vec<(usize, Section)> = (0..N_TIERS)
            .flat_map(|t| Section::ALL.iter().map(move |s| (t, *s)))
            .collect();
        jobs.par_iter().try_for_each(|&(t, sec)| {
            let [off, len, sum] = self.tiers[t].sections[sec as usize];
            if xxh3_64(&self.map[off as usize..(off + len) as usize]) == sum {
                Ok(())
            } else {
                Err(corrupt(
                    &self.path,
                    format!("tier {t} section {} checksum mismatch", sec.name()),
                ))
            }
        })
    }

    pub fn info(&self) -> IndexInfo {
        IndexInfo {
            version: INDEX_VERSION,
            file_len: self.file_len,
            sources: self.len(),
            tiers: self
                .tiers
                .iter()
                .map(|d| TierInfo {
                    depth: d.depth,
                    sources: d.n,
                    cells: d.n_cells,
                    pm_limit_mas_yr: d.pm_limit.is_finite().then_some(d.pm_limit),
                    max_pm_mas_yr: d.max_pm,
                    min_ref_epoch: d.min_epoch,
                    max_ref_epoch: d.max_epoch,
                })
                .collect(),
        }
    }
}

fn parse_header(path: &Path, map: &[u8]) -> Result<[TierDesc; N_TIERS], IndexError> {
    if map.len() < 8 || map[0..8] != INDEX_MAGIC {
        return Err(IndexError::NotAnIndex {
            path: path.to_owned(),
        });
    }
    if map.len() < HEADER_LEN {
        return Err(corrupt(
            path,
            format!("{} octets, shorter than the header", map.len()),
        ));
    }
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8"));
    let version = u32::from_le_bytes(map[8..12].try_into().expect("4"));
    if version != INDEX_VERSION {
        return Err(IndexError::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
        });
    }
    let mut header = map[..HEADER_LEN].to_vec();
    header[32..40].fill(0);
    if xxh3_64(&header) != u64_at(map, 32) {
        return Err(corrupt(path, "header checksum mismatch"));
    }
    let n_tiers = u32::from_le_bytes(map[12..16].try_into().expect("4"));
    if n_tiers as usize != N_TIERS {
        return Err(corrupt(
            path,
            format!("{n_tiers} tiers, expected {N_TIERS}"),
        ));
    }
    let file_len = u64_at(map, 16);
    if file_len != map.len() as u64 {
        return Err(corrupt(
            path,
            format!(
                "file has {} octets, header says {file_len} (truncated?)",
                map.len()
            ),
        ));
    }
    let mut tiers = [TierDesc {
        depth: 0,
        n: 0,
        n_cells: 0,
        pm_limit: 0.0,
        max_pm: 0.0,
        min_epoch: 0.0,
        max_epoch: 0.0,
        sections: [[0; 3]; N_SECTIONS],
    }; N_TIERS];
    for (t, desc) in tiers.iter_mut().enumerate() {
        let d = &map[64 + 256 * t..64 + 256 * (t + 1)];
        let f64_at = |o| f64::from_bits(u64_at(d, o));
        *desc = TierDesc {
            depth: d[0],
            n: u64_at(d, 8),
            n_cells: u64_at(d, 16),
            pm_limit: f64_at(24),
            max_pm: f64_at(32),
            min_epoch: f64_at(40),
            max_epoch: f64_at(48),
            sections: std::array::from_fn(|k| {
                std::array::from_fn(|j| u64_at(d, 64 + 24 * k + 8 * j))
            }),
        };
        if desc.depth > MAX_INDEX_DEPTH {
            return Err(corrupt(
                path,
                format!("tier {t}: depth {} too deep", desc.depth),
            ));
        }
        let sane = [desc.max_pm, desc.min_epoch, desc.max_epoch]
            .iter()
            .all(|v| v.is_finite())
            && desc.max_pm >= 0.0
            && desc.min_epoch <= desc.max_epoch;
        if !sane {
            return Err(corrupt(
                path,
                format!("tier {t}: bad proper-motion or epoch range"),
            ));
        }
        for sec in Section::ALL {
            let [off, len, _] = desc.sections[sec as usize];
            let items = if sec == Section::Cells {
                desc.n_cells
            } else {
                desc.n
            };
            let expected = items.checked_mul(sec.item_len());
            let in_file = off.checked_add(len).is_some_and(|end| end <= file_len);
            if expected != Some(len) || !in_file || off % ALIGN != 0 || off < HEADER_LEN as u64 {
                return Err(corrupt(
                    path,
                    format!("tier {t}: section {} out of place", sec.name()),
                ));
            }
        }
    }
    Ok(tiers)
}
