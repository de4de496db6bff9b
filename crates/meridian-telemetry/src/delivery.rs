//! Decoding deliveries into product folders: `OUT/deliveries/<id>/` with the five
//! telemetry products and a `report.json` written last, plus the run summary.
//!
//! A delivery is identified by the xxh3-128 of its file's bytes as received, so
//! the same content under any name is decoded once: a folder with `report.json`
//! is complete and is skipped; a folder without it is redone. Records of a
//! delivery decoded under several names in one run carry the first name in
//! sorted order; the report lists them all.

use crate::decode::{DecodeSink, DecodeStats};
use crate::input::{Compression, DecodeError, DecodeOptions, decode_delivery, detect_compression};
use crate::mission_db::MissionDb;
use meridian_core::product::{ProductError, ProductWriter, write_file_atomic};
use meridian_core::records::{Attitude, Hk, Quarantine, UnknownPacket, Window};
use meridian_core::stage::Progress;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// File name of the per-delivery report; its presence marks a complete folder.
pub const REPORT_FILE: &str = "report.json";
/// File names of the five products of a delivery folder.
pub const PRODUCT_FILES: [&str; 5] = [
    "window.mprod",
    "attitude.mprod",
    "hk.mprod",
    "unknown_packet.mprod",
    "quarantine.mprod",
];

/// The delivery ID: xxh3-128 of the bytes as received, 32 lowercase hex digits.
pub fn delivery_id(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Folder of a delivery under the output folder.
pub fn delivery_dir(out: &Path, id: &str) -> PathBuf {
    out.join("deliveries").join(id)
}

/// The five product writers of one delivery folder, fed as a [`DecodeSink`].
pub struct ProductFiles {
    window: ProductWriter<Window>,
    attitude: ProductWriter<Attitude>,
    hk: ProductWriter<Hk>,
    unknown_packet: ProductWriter<UnknownPacket>,
    quarantine: ProductWriter<Quarantine>,
}

impl ProductFiles {
    /// Starts all five products in `dir` (under temporary names until finished).
    pub fn create(dir: &Path) -> Result<Self, ProductError> {
        Ok(Self {
            window: ProductWriter::create(dir.join(PRODUCT_FILES[0]))?,
            attitude: ProductWriter::create(dir.join(PRODUCT_FILES[1]))?,
            hk: ProductWriter::create(dir.join(PRODUCT_FILES[2]))?,
            unknown_packet: ProductWriter::create(dir.join(PRODUCT_FILES[3]))?,
            quarantine: ProductWriter::create(dir.join(PRODUCT_FILES[4]))?,
        })
    }

    /// Finishes all five products (each atomically).
    pub fn finish(self) -> Result<(), ProductError> {
        self.window.finish()?;
        self.attitude.finish()?;
        self.hk.finish()?;
        self.unknown_packet.finish()?;
        self.quarantine.finish()?;
        Ok(())
    }
}

impl DecodeSink for ProductFiles {
    type Error = ProductError;
    fn window(&mut self, record: Window) -> Result<(), ProductError> {
        self.window.push(&record)
    }
    fn attitude(&mut self, record: Attitude) -> Result<(), ProductError> {
        self.attitude.push(&record)
    }
    fn hk(&mut self, record: Hk) -> Result<(), ProductError> {
        self.hk.push(&record)
    }
    fn unknown_packet(&mut self, record: UnknownPacket) -> Result<(), ProductError> {
        self.unknown_packet.push(&record)
    }
    fn quarantine(&mut self, record: Quarantine) -> Result<(), ProductError> {
        self.quarantine.push(&record)
    }
}

/// The accounting check of ICD §2 as written in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    pub packet_bytes: u64,
    pub idle_bytes: u64,
    pub quarantined_bytes: u64,
    pub decompressed_len: u64,
    /// packet + idle + quarantined octets = decompressed length (always true in a
    /// written report: a delivery that does not balance fails instead).
    pub balanced: bool,
}

/// `report.json` of a delivery folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReport {
    pub id: String,
    /// The delivery's original file names (several if the same bytes came twice).
    pub files: Vec<String>,
    /// File size as received.
    pub size: u64,
    pub compression: Compression,
    #[serde(flatten)]
    pub stats: DecodeStats,
    pub accounting: Accounting,
    pub duration_s: f64,
    /// Decompressed megabytes (10^6 octets) per second.
    pub throughput_mb_s: f64,
}

/// What happened to one distinct delivery in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Decoded {
        id: String,
        paths: Vec<PathBuf>,
        packets: u64,
        quarantined_bytes: u64,
    },
    /// A complete folder for this content already existed: nothing added.
    AlreadyDecoded { id: String, paths: Vec<PathBuf> },
    Failed {
        id: Option<String>,
        paths: Vec<PathBuf>,
        error: String,
    },
}

/// `decode-summary.json`: every delivery of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub decoded: u64,
    pub already_decoded: u64,
    pub failed: u64,
    pub input_bytes: u64,
    pub duration_s: f64,
    pub deliveries: Vec<DeliveryOutcome>,
}

impl RunSummary {
    pub fn any_failed(&self) -> bool {
        self.failed > 0
    }
}

/// An error that stops the whole run (the output folder cannot be used).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FatalError {
    pub path: PathBuf,
    pub message: String,
}

/// A delivery file and its ID.
type IdentifiedInput = (String, Input);

/// A delivery file, mapped.
struct Input {
    path: PathBuf,
    map: Option<memmap2::Mmap>,
}

impl Input {
    fn open(path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let map = if meta.len() == 0 {
            None
        } else {
            // SAFETY: deliveries are read-only inputs; the pipeline never writes
            // them, and a file truncated by someone else while mapped is outside
            // what any reader can guard against.
            Some(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))?)
        };
        Ok(Self {
            path: path.to_owned(),
            map,
        })
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Decodes every delivery in `paths` into `out` (deliveries in parallel) and
/// writes `out/decode-summary.json`. `progress` advances by a delivery's input
/// octets as it finishes. Only an unusable output folder is an `Err`; a delivery that
/// fails is named in the summary and the others still decode.
pub fn decode_deliveries(
    paths: &[PathBuf],
    db: &MissionDb,
    out: &Path,
    options: DecodeOptions,
    progress: &dyn Progress,
) -> Result<RunSummary, FatalError> {
    let started = Instant::now();
    let deliveries = out.join("deliveries");
    std::fs::create_dir_all(&deliveries).map_err(|e| FatalError {
        path: deliveries.clone(),
        message: format!("cannot create the output folder: {e}"),
    })?;
    let opened: Vec<(PathBuf, Result<IdentifiedInput, String>)> = paths
        .par_iter()
        .map(|p| {
            (
                p.clone(),
                Input::open(p).map(|i| (delivery_id(i.bytes()), i)),
            )
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut groups: BTreeMap<String, Vec<Input>> = BTreeMap::new();
    let mut input_bytes = 0;
    for (path, r) in opened {
        match r {
            Ok((id, input)) => {
                input_bytes += input.bytes().len() as u64;
                groups.entry(id).or_default().push(input);
            }
            Err(error) => {
                tracing::error!("{}: {error}", path.display());
                outcomes.push(DeliveryOutcome::Failed {
                    id: None,
                    paths: vec![path.clone()],
                    error: format!("{}: {error}", path.display()),
                });
            }
        }
    }
    let decoded: Vec<DeliveryOutcome> = groups
        .into_par_iter()
        .map(|(id, mut inputs)| {
            let received: u64 = inputs.iter().map(|i| i.bytes().len() as u64).sum();
            inputs.sort_by_key(|i| (file_name(&i.path), i.path.clone()));
            // The same path given twice is one delivery file.
            inputs.dedup_by(|a, b| a.path == b.path);
            let outcome = decode_group(&id, &inputs, db, out, options);
            progress.advance(received);
            outcome
        })
        .collect();
    outcomes.extend(decoded);
    let count = |f: fn(&DeliveryOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count() as u64;
    let summary = RunSummary {
        decoded: count(|o| matches!(o, DeliveryOutcome::Decoded { .. })),
        already_decoded: count(|o| matches!(o, DeliveryOutcome::AlreadyDecoded { .. })),
        failed: count(|o| matches!(o, DeliveryOutcome::Failed { .. })),
        input_bytes,
        duration_s: started.elapsed().as_secs_f64(),
        deliveries: outcomes,
    };
    write_summary(out, &summary)?;
    Ok(summary)
}

fn write_summary(out: &Path, summary: &RunSummary) -> Result<(), FatalError> {
    let path = out.join("decode-summary.json");
    let mut bytes = serde_json::to_vec_pretty(summary).expect("summary serialises");
    bytes.push(b'\n');
    write_file_atomic(&path, &bytes).map_err(|e| FatalError {
        path,
        message: e.to_string(),
    })
}

/// Decodes one distinct delivery content (possibly received under several names).
fn decode_group(
    id: &str,
    inputs: &[Input],
    db: &MissionDb,
    out: &Path,
    options: DecodeOptions,
) -> DeliveryOutcome {
    let paths: Vec<PathBuf> = inputs.iter().map(|i| i.path.clone()).collect();
    let dir = delivery_dir(out, id);
    if dir.join(REPORT_FILE).is_file() {
        tracing::info!("{}: already decoded as {id}", paths[0].display());
        return DeliveryOutcome::AlreadyDecoded {
            id: id.to_owned(),
            paths,
        };
    }
    match decode_into_folder(id, inputs, db, &dir, options) {
        Ok(report) => {
            tracing::info!(
                "{}: {} packets, {} octets quarantined, {:.0} MB/s",
                paths[0].display(),
                report.stats.packets,
                report.stats.quarantined_bytes,
                report.throughput_mb_s
            );
            DeliveryOutcome::Decoded {
                id: id.to_owned(),
                paths,
                packets: report.stats.packets,
                quarantined_bytes: report.stats.quarantined_bytes,
            }
        }
        Err(error) => {
            // Leave no empty folder behind (one with earlier files stays incomplete:
            // it has no report).
            let _ = std::fs::remove_dir(&dir);
            let error = format!("{}: {error}", paths[0].display());
            tracing::error!("{error}");
            DeliveryOutcome::Failed {
                id: Some(id.to_owned()),
                paths,
                error,
            }
        }
    }
}

/// Why one delivery could not be decoded (the caller adds the file name).
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("cannot write {dir}: {source}")]
    Folder {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("not telemetry: no valid packet in {len} octets{hint}")]
    NotTelemetry { len: u64, hint: String },
}

fn decode_into_folder(
    id: &str,
    inputs: &[Input],
    db: &MissionDb,
    dir: &Path,
    options: DecodeOptions,
) -> Result<DeliveryReport, DeliveryError> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(|source| DeliveryError::Folder {
        dir: dir.to_owned(),
        source,
    })?;
    let bytes = inputs[0].bytes();
    let name = file_name(&inputs[0].path);
    let mut products = ProductFiles::create(dir)?;
    let stats = decode_delivery(bytes, db, &name, options, &mut products)?;
    if stats.packets + stats.idle_packets + stats.malformed_packets == 0 {
        return Err(DeliveryError::NotTelemetry {
            len: stats.decompressed_len,
            hint: format_hint(bytes),
        });
    }
    products.finish()?;
    let duration_s = started.elapsed().as_secs_f64();
    let report = DeliveryReport {
        id: id.to_owned(),
        files: inputs.iter().map(|i| file_name(&i.path)).collect(),
        size: bytes.len() as u64,
        compression: detect_compression(bytes),
        accounting: Accounting {
            packet_bytes: stats.packet_bytes,
            idle_bytes: stats.idle_bytes,
            quarantined_bytes: stats.quarantined_bytes,
            decompressed_len: stats.decompressed_len,
            balanced: stats.check_accounting().is_ok(),
        },
        throughput_mb_s: stats.decompressed_len as f64 / 1e6 / duration_s.max(1e-9),
        stats,
        duration_s,
    };
    let mut json = serde_json::to_vec_pretty(&report).expect("report serialises");
    json.push(b'\n');
    write_file_atomic(dir.join(REPORT_FILE), &json)?;
    Ok(report)
}

/// A hint naming common non-telemetry formats by their magic numbers.
fn format_hint(bytes: &[u8]) -> String {
    let kind = match bytes {
        [] => return " (the file is empty)".into(),
        [0xFF, 0xD8, 0xFF, ..] => "a JPEG image",
        [0x89, b'P', b'N', b'G', ..] => "a PNG image",
        [0x1F, 0x8B, ..] => "gzip data",
        [b'P', b'K', 3, 4, ..] => "a ZIP archive",
        [b'%', b'P', b'D', b'F', ..] => "a PDF document",
        [b'B', b'Z', b'h', ..] => "bzip2 data",
        [0xFD, b'7', b'z', b'X', b'Z', 0, ..] => "xz data",
        _ => return String::new(),
    };
    format!(" (it looks like {kind})")
}
