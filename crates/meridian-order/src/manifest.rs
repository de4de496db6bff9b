//! The ordered folder's manifest: the contract between `meridian-order` and every
//! stage that reads its chunks (locate, health, daily).
//!
//! ```text
//! ORDERED_DIR/
//!   manifest.json                      this file's `Manifest`, written atomically last
//!   chunks/<stream>/<start_obt_ns:020>.v<version>.mprod
//!   gaps.mprod                         `gap` records of every APID, time order
//! ```
//!
//! A reader takes `manifest.json` as the truth: only the chunk files it lists are
//! current (older versions may linger until cleaned up and must be ignored).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the manifest file in an ordered folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Manifest format version.
pub const MANIFEST_FORMAT: u32 = 1;

/// A time-ordered stream of records, one per telemetry APID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// `window` records, APID 0x101, ordered by `obt_ns`.
    Window,
    /// `attitude` records, APID 0x102, ordered by `obt_ns`.
    Attitude,
    /// `hk` records, APID 0x201, ordered by `obt_ns`.
    Hk,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Window, Stream::Attitude, Stream::Hk];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Window => "window",
            Stream::Attitude => "attitude",
            Stream::Hk => "hk",
        }
    }

    /// The APID whose packets feed this stream (ICD §4).
    pub fn apid(self) -> u16 {
        match self {
            Stream::Window => 0x101,
            Stream::Attitude => 0x102,
            Stream::Hk => 0x201,
        }
    }
}

/// How settled a chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkStatus {
    /// No known gap of its stream's APID touches the chunk's interval.
    Complete,
    /// A gap touches it: later deliveries may still add records.
    Provisional,
    /// Closed by `--close-before`: later data is reported, never merged.
    Final,
}

/// One current chunk file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub stream: Stream,
    /// Inclusive start of the chunk's OBT interval (a multiple of `chunk_ns`).
    pub start_obt_ns: u64,
    /// Exclusive end of the interval.
    pub end_obt_ns: u64,
    /// Increases by one each time the chunk's content changes.
    pub version: u64,
    /// Path relative to the ordered folder.
    pub path: PathBuf,
    pub records: u64,
    /// xxh3-64 of the chunk file's bytes, lowercase hex.
    pub checksum: String,
    pub status: ChunkStatus,
    /// The run (1-based) that wrote this version.
    pub run: u64,
    /// Added: the run (1-based) in which `status` last changed (a chunk can turn
    /// complete or final without its content changing).
    #[serde(default)]
    pub status_run: u64,
}

/// The whole ordered folder's state as of its latest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Chunk length in nanoseconds (default 60 s), aligned to the mission epoch.
    pub chunk_ns: u64,
    /// Number of runs that have completed on this folder.
    pub run: u64,
    /// Every current chunk, sorted by (stream, start_obt_ns).
    pub chunks: Vec<ChunkEntry>,
    /// Added: chunks whose interval ends at or before this OBT are `final`
    /// (the largest `--close-before` ever given to this folder).
    #[serde(default)]
    pub close_before_obt_ns: Option<u64>,
    /// Added: number of `gap` records in `gaps.mprod`.
    #[serde(default)]
    pub gaps: u64,
    /// Added: number of packet keys delivered with different bytes (see `conflicts.json`).
    #[serde(default)]
    pub conflicts: u64,
    /// Added: packets received and missing per APID per OBT hour.
    #[serde(default)]
    pub completeness: Vec<HourCompleteness>,
}

/// Sequence-count completeness of one APID over one OBT hour (aligned to the epoch).
///
/// Missing packets of a gap are spread evenly over the gap's time span
/// (`after_obt_ns`, `before_obt_ns`) to assign them to hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourCompleteness {
    pub apid: u16,
    /// Start of the hour, OBT ns (a multiple of 3600 s).
    pub hour_start_obt_ns: u64,
    /// Distinct packets received with a packet time in the hour.
    pub received: u64,
    /// Packets missing according to the sequence counts.
    pub missing: u64,
    /// `received / (received + missing)`.
    pub completeness: f64,
}

impl Manifest {
    /// Loads `ORDERED_DIR/manifest.json`.
    pub fn load(ordered_dir: &Path) -> Result<Manifest, ManifestError> {
        let path = ordered_dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| ManifestError::Invalid {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(ManifestError::Invalid {
                path,
                detail: format!(
                    "manifest format {} (this build reads {MANIFEST_FORMAT})",
                    manifest.format
                ),
            });
        }
        Ok(manifest)
    }

    /// Current chunks of one stream in time order.
    pub fn chunks_of(&self, stream: Stream) -> impl Iterator<Item = &ChunkEntry> {
        self.chunks.iter().filter(move |c| c.stream == stream)
    }

    /// Chunks written by runs after `run` (what changed since then).
    pub fn changed_since(&self, run: u64) -> impl Iterator<Item = &ChunkEntry> {
        self.chunks.iter().filter(move |c| c.run > run)
    }

    /// Chunks whose content or status changed in runs after `run`.
    pub fn changed_or_restatused_since(&self, run: u64) -> impl Iterator<Item = &ChunkEntry> {
        self.chunks
            .iter()
            .filter(move |c| c.run > run || c.status_run > run)
    }

    /// The manifest without its run bookkeeping (`run`, `version`, `path`,
    /// `status_run`): a pure function of the set of deliveries consumed, the chunk
    /// length and the close-before time, whatever the order or grouping of runs.
    pub fn content_view(&self) -> Manifest {
        let mut m = self.clone();
        m.run = 0;
        for c in &mut m.chunks {
            c.version = 0;
            c.run = 0;
            c.status_run = 0;
            c.path = PathBuf::new();
        }
        m
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid manifest: {detail}")]
    Invalid { path: PathBuf, detail: String },
}
