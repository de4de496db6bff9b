//! A whole simulated day: science, housekeeping and the faulty downlink run
//! together, streaming, and a day folder is written with its truth.
//!
//! # The day folder
//!
//! ```text
//! DAY/
//!   deliveries/<name>.tm | <name>.tm.zst   the telemetry as received (ICD §2)
//!   catalogue.csv                          the star catalogue (ICD §7; unless write_catalogue is false)
//!   mission_db.toml                        the mission database (ICD §6)
//!   truth/config.json                      the DayConfig used
//!   truth/windows.jsonl                    one line per window: its star and true centroid, flux, direction
//!   truth/disturbances.jsonl               injected attitude disturbances
//!   truth/health_events.jsonl              the health events a correct ICD §6 checker reports
//!   truth/non_events.jsonl                 injected conditions that must NOT be reported
//!   truth/expected/window.mprod            ┐ product files of every packet that reached the
//!   truth/expected/attitude.mprod          │ ground intact at least once, in (APID, packet
//!   truth/expected/hk.mprod                ┘ time, seq) order; hk calibrated with the database
//!   truth/gaps.jsonl                       ICD §9 gap records a correct orderer reports
//!   truth/deliveries.jsonl                 per delivery: faults with their stream offsets
//!   truth/summary.json                     counts
//! ```
//!
//! Conventions where the ICD leaves a choice:
//!
//! * **Gaps** are the runs of packets of one APID never delivered intact that lie
//!   *between* two delivered packets (losses before the first or after the last
//!   delivered packet of an APID cannot be seen in the sequence count).
//!   `after_obt_ns`/`before_obt_ns` are the packet times of those two packets.
//!   Event reports (APID 0x3FF) are never lost.
//! * **Expected products** carry `seq`, `packet_obt_ns` and `packet_hash`
//!   (xxh3-64 of the packet bytes) like a decoder's output. Per APID, packets are
//!   generated in (packet time, seq) order, which is the order of the files.
//! * The **end of the data** (for open stale events) is the latest packet time of
//!   any housekeeping report delivered intact.
//!
//! Everything is a pure function of the [`DayConfig`]: files are byte-identical
//! for the same configuration whatever the thread count. Memory stays bounded
//! by a few passes of telemetry (see [`crate::downlink`]), not by the day.

use crate::downlink::{DeliveryTruth, Downlink, DownlinkConfig, DownlinkError, DownlinkStats};
use crate::hk::{HkConfig, HkError, HkSim, db::MISSION_DB_TOML};
use crate::science::{
    Disturbance, ScienceConfig, ScienceError, ScienceSim, ScienceStats, ScienceTruthSink,
    WindowTruth,
};
use crate::{GeneratedPacket, PacketContent};
use meridian_core::ProductWriter;
use meridian_core::product::write_file_atomic;
use meridian_core::records::{Attitude, Gap, Hk, Window};
use meridian_telemetry::MissionDb;
use meridian_telemetry::packet::apid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Everything that defines a simulated day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DayConfig {
    pub seed: u64,
    /// First instant of the day, OBT ns.
    pub start_obt_ns: u64,
    pub duration_s: f64,
    pub science: ScienceConfig,
    pub hk: HkConfig,
    pub downlink: DownlinkConfig,
    /// Write `catalogue.csv` (a mission's catalogue does not change between
    /// days, so multi-day runs and benchmarks may skip it).
    pub write_catalogue: bool,
}

/// OBT of 2026-03-01T00:00:00 TAI: the default start of a day.
pub const DEFAULT_START_OBT_NS: u64 = 509_932_800 * 1_000_000_000;

impl Default for DayConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start_obt_ns: DEFAULT_START_OBT_NS,
            duration_s: 7200.0,
            science: ScienceConfig::default(),
            hk: HkConfig::default(),
            downlink: DownlinkConfig::default(),
            write_catalogue: true,
        }
    }
}

impl DayConfig {
    /// The committed sample day (`fixtures/sample-day`): 1.75 h from a
    /// 200 000-star sky, with fault rates raised so that every kind of downlink
    /// fault appears several times in a short day.
    pub fn sample_day() -> Self {
        Self {
            seed: 20_260_301,
            duration_s: 6300.0,
            downlink: DownlinkConfig {
                pass_interval_s: 1200.0,
                drop_rate: 0.003,
                corrupt_rate: 0.004,
                duplicate_rate: 0.02,
                garbage_rate: 0.004,
                idle_rate: 0.004,
                truncate_fraction: 0.6,
                events_per_pass: 2,
                ..DownlinkConfig::default()
            },
            ..Self::default()
        }
    }
}

/// Why a day could not be simulated.
#[derive(Debug, thiserror::Error)]
pub enum DayError {
    #[error(transparent)]
    Science(#[from] ScienceError),
    #[error(transparent)]
    Hk(#[from] HkError),
    #[error(transparent)]
    Downlink(#[from] DownlinkError),
    #[error(transparent)]
    Product(#[from] meridian_core::ProductError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    OutDir(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DayError + '_ {
    move |source| DayError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Packets of one APID: generated, delivered intact at least once, lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApidCounts {
    pub generated: u64,
    pub delivered: u64,
    pub lost: u64,
}

/// What a simulated day holds (also `truth/summary.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayStats {
    pub seed: u64,
    pub start_obt_ns: u64,
    pub duration_s: f64,
    pub deliveries: u64,
    /// Octets of all delivery files as written.
    pub delivery_file_bytes: u64,
    /// Octets of all delivery streams after decompression.
    pub delivery_stream_bytes: u64,
    /// Per APID (hex, e.g. "0x101").
    pub packets: BTreeMap<String, ApidCounts>,
    pub transits: u64,
    pub windows: u64,
    pub attitude_samples: u64,
    pub expected_windows: u64,
    pub expected_attitude: u64,
    pub expected_hk: u64,
    pub gaps: u64,
    pub health_events: u64,
    pub non_events: u64,
    pub end_of_hk_data_ns: Option<u64>,
    pub downlink: DownlinkStats,
}

/// A file written under a temporary name and renamed into place by `finish`.
struct AtomicFile {
    tmp: PathBuf,
    path: PathBuf,
    w: BufWriter<File>,
}

impl AtomicFile {
    fn create(path: PathBuf) -> Result<Self, DayError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let f = File::create(&tmp).map_err(io_err(&tmp))?;
        Ok(Self {
            tmp,
            path,
            w: BufWriter::with_capacity(1 << 16, f),
        })
    }

    fn json_line(&mut self, value: &impl Serialize) -> Result<(), DayError> {
        serde_json::to_writer(&mut self.w, value).map_err(|e| DayError::Io {
            path: self.tmp.clone(),
            source: e.into(),
        })?;
        self.w.write_all(b"\n").map_err(io_err(&self.tmp))
    }

    fn finish(mut self) -> Result<(), DayError> {
        self.w.flush().map_err(io_err(&self.tmp))?;
        self.w.get_ref().sync_all().map_err(io_err(&self.tmp))?;
        std::fs::rename(&self.tmp, &self.path).map_err(io_err(&self.path))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Harmless after a successful rename (the temporary name is gone).
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Writes the science truth as JSON Lines while the science runs.
struct ScienceTruthFiles {
    windows: AtomicFile,
    disturbances: AtomicFile,
    error: Option<DayError>,
}

impl ScienceTruthSink for ScienceTruthFiles {
    fn window(&mut self, t: &WindowTruth) {
        if self.error.is_none()
            && let Err(e) = self.windows.json_line(t)
        {
            self.error = Some(e);
        }
    }
    fn disturbance(&mut self, d: &Disturbance) {
        if self.error.is_none()
            && let Err(e) = self.disturbances.json_line(d)
        {
            self.error = Some(e);
        }
    }
}

/// Per-APID bookkeeping of delivered and lost packets.
#[derive(Default)]
struct GapTracker {
    last_delivered: Option<(u16, u64)>,
    missing: Option<(u16, u64)>,
    gaps: Vec<Gap>,
}

impl GapTracker {
    fn record(&mut self, apid: u16, seq: u16, obt_ns: u64, delivered: bool) {
        if delivered {
            if let (Some((_, after)), Some((first, n))) = (self.last_delivered, self.missing.take())
            {
                self.gaps.push(Gap {
                    apid,
                    first_missing_seq: first,
                    n_missing: n,
                    after_obt_ns: after,
                    before_obt_ns: obt_ns,
                });
            }
            self.last_delivered = Some((seq, obt_ns));
        } else if self.last_delivered.is_some() {
            let m = self.missing.get_or_insert((seq, 0));
            m.1 += 1;
        }
    }
}

/// The expected decoder output of every packet delivered intact at least once.
struct Expected {
    windows: ProductWriter<Window>,
    attitude: ProductWriter<Attitude>,
    hk: ProductWriter<Hk>,
    db: MissionDb,
}

impl Expected {
    fn push(&mut self, p: &GeneratedPacket) -> Result<(), DayError> {
        let hash = xxhash_rust::xxh3::xxh3_64(&p.bytes);
        match &p.content {
            PacketContent::Windows(ws) => {
                for w in ws {
                    self.windows.push(&Window {
                        seq: p.seq,
                        packet_obt_ns: p.obt_ns,
                        packet_hash: hash,
                        ..w.clone()
                    })?;
                }
            }
            PacketContent::Attitude(samples) => {
                for &(obt_ns, q) in samples {
                    self.attitude.push(&Attitude {
                        obt_ns,
                        q,
                        seq: p.seq,
                        packet_obt_ns: p.obt_ns,
                        packet_hash: hash,
                    })?;
                }
            }
            PacketContent::Housekeeping { sid, raw } => {
                let s = self
                    .db
                    .structure(*sid)
                    .expect("simulated structures are in the database");
                for (param, &raw) in s.params.iter().zip(raw) {
                    self.hk.push(&Hk {
                        obt_ns: p.obt_ns,
                        sid: *sid,
                        param: param.name.clone(),
                        raw,
                        eng: param.calibration.apply(raw),
                        seq: p.seq,
                        packet_obt_ns: p.obt_ns,
                        packet_hash: hash,
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// Routes each generated packet through the downlink and into the truth.
struct Assembly {
    downlink: Downlink,
    protected: Vec<(u64, u64)>,
    expected: Expected,
    gaps: BTreeMap<u16, GapTracker>,
    stats: DayStats,
    end_of_hk: Option<u64>,
}

impl Assembly {
    fn process(&mut self, p: &GeneratedPacket) -> Result<(), DayError> {
        let sid = match &p.content {
            PacketContent::Housekeeping { sid, .. } => Some(*sid),
            _ => None,
        };
        let protected = p.apid == apid::HOUSEKEEPING
            && self
                .protected
                .iter()
                .any(|&(a, b)| (a..b).contains(&p.obt_ns));
        let fate = self.downlink.push(p, protected, sid)?;
        let delivered = fate.intact_copies > 0;
        let counts = self
            .stats
            .packets
            .entry(format!("{:#x}", p.apid))
            .or_default();
        counts.generated += 1;
        if delivered {
            counts.delivered += 1;
            self.expected.push(p)?;
            if p.apid == apid::HOUSEKEEPING {
                self.end_of_hk = Some(self.end_of_hk.map_or(p.obt_ns, |t| t.max(p.obt_ns)));
            }
        } else {
            counts.lost += 1;
        }
        self.gaps
            .entry(p.apid)
            .or_default()
            .record(p.apid, p.seq, p.obt_ns, delivered);
        Ok(())
    }
}

/// Prepares `out`: creates it, or clears the day a previous run left there.
/// Refuses a non-empty folder that is not a simulated day.
fn prepare_out_dir(out: &Path) -> Result<(), DayError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(io_err(out))?;
        let empty = entries.next().is_none();
        if !empty
            && !out.join("truth").join("config.json").exists()
            && !out.join("deliveries").exists()
        {
            return Err(DayError::OutDir(format!(
                "{} is not empty and holds no simulated day; choose an empty or new folder",
                out.display()
            )));
        }
        for sub in ["deliveries", "truth"] {
            let p = out.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        }
        for file in ["catalogue.csv", "mission_db.toml"] {
            let p = out.join(file);
            if p.exists() {
                std::fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
    }
    for sub in ["deliveries", "truth/expected"] {
        let p = out.join(sub);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    Ok(())
}

/// Writes only the catalogue of `cfg` to `path` (ICD §7 CSV), streaming and
/// atomically; returns its size in octets.
pub fn write_catalogue_file(cfg: &DayConfig, path: &Path) -> Result<u64, DayError> {
    let science = ScienceSim::new(cfg.seed, cfg.start_obt_ns, cfg.duration_s, &cfg.science)?;
    let mut file = AtomicFile::create(path.to_owned())?;
    science
        .write_catalogue(&mut file.w)
        .map_err(io_err(&file.tmp))?;
    file.w.flush().map_err(io_err(&file.tmp))?;
    let size = file
        .w
        .get_ref()
        .metadata()
        .map_err(io_err(&file.tmp))?
        .len();
    file.finish()?;
    Ok(size)
}

/// Simulates a day into `out` (see the module docs for the layout).
pub fn simulate_day(cfg: &DayConfig, out: &Path) -> Result<DayStats, DayError> {
    simulate_day_with_progress(cfg, out, &mut |_| {})
}

/// [`simulate_day`], reporting the OBT reached (ns) as packets are processed.
pub fn simulate_day_with_progress(
    cfg: &DayConfig,
    out: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<DayStats, DayError> {
    let science = ScienceSim::new(cfg.seed, cfg.start_obt_ns, cfg.duration_s, &cfg.science)?;
    let mut hk = HkSim::new(cfg.seed, cfg.start_obt_ns, cfg.duration_s, &cfg.hk)?;
    prepare_out_dir(out)?;
    let truth_dir = out.join("truth");
    let expected_dir = truth_dir.join("expected");

    let mut config_json = serde_json::to_vec_pretty(cfg).expect("configuration serialises");
    config_json.push(b'\n');
    write_file_atomic(truth_dir.join("config.json"), &config_json)?;
    write_file_atomic(out.join("mission_db.toml"), MISSION_DB_TOML.as_bytes())?;
    let catalogue = match cfg.write_catalogue {
        true => Some(AtomicFile::create(out.join("catalogue.csv"))?),
        false => None,
    };

    let mut asm = Assembly {
        downlink: Downlink::new(
            cfg.seed,
            cfg.start_obt_ns,
            &cfg.downlink,
            out.join("deliveries"),
        )?,
        protected: hk.protected(),
        expected: Expected {
            windows: ProductWriter::with_level(expected_dir.join("window.mprod"), 1)?,
            attitude: ProductWriter::with_level(expected_dir.join("attitude.mprod"), 1)?,
            hk: ProductWriter::with_level(expected_dir.join("hk.mprod"), 1)?,
            db: hk.db().clone(),
        },
        gaps: BTreeMap::new(),
        stats: DayStats {
            seed: cfg.seed,
            start_obt_ns: cfg.start_obt_ns,
            duration_s: cfg.duration_s,
            ..DayStats::default()
        },
        end_of_hk: None,
    };
    let mut truth_files = ScienceTruthFiles {
        windows: AtomicFile::create(truth_dir.join("windows.jsonl"))?,
        disturbances: AtomicFile::create(truth_dir.join("disturbances.jsonl"))?,
        error: None,
    };

    // Science runs on its own thread (and rayon pool); this thread merges its
    // packets with housekeeping in time order and drives the downlink.
    let (science_stats, truth_files) = std::thread::scope(|scope| -> Result<_, DayError> {
        let (tx, rx) = mpsc::sync_channel::<Vec<GeneratedPacket>>(16);
        let science = &science;
        // The catalogue (CPU-bound float formatting) is written alongside.
        let catalogue_writer = scope.spawn(move || -> Result<(), DayError> {
            let Some(mut catalogue) = catalogue else {
                return Ok(());
            };
            science
                .write_catalogue(&mut catalogue.w)
                .map_err(io_err(&catalogue.tmp))?;
            catalogue.finish()
        });
        let producer = scope.spawn(move || {
            let mut batch = Vec::with_capacity(64);
            let mut open = true;
            let mut emit = |p: GeneratedPacket| {
                batch.push(p);
                if batch.len() == 64 && open {
                    open = tx
                        .send(std::mem::replace(&mut batch, Vec::with_capacity(64)))
                        .is_ok();
                }
            };
            let stats = science.generate(&mut emit, &mut truth_files);
            if open && !batch.is_empty() {
                let _ = tx.send(batch);
            }
            (stats, truth_files)
        });
        let mut hk_next = hk.next();
        let mut result = Ok(());
        for batch in rx.iter() {
            for p in &batch {
                while let Some(h) = hk_next.take_if(|h| h.obt_ns <= p.obt_ns) {
                    result = result.and_then(|_| asm.process(&h));
                    hk_next = hk.next();
                }
                result = result.and_then(|_| asm.process(p));
            }
            if result.is_err() {
                break;
            }
            if let Some(p) = batch.last() {
                progress(p.obt_ns);
            }
        }
        drop(rx);
        result?;
        while let Some(h) = hk_next {
            asm.process(&h)?;
            hk_next = hk.next();
        }
        let (stats, files) = producer.join().expect("science thread does not panic");
        catalogue_writer
            .join()
            .expect("catalogue thread does not panic")?;
        Ok((stats?, files))
    })?;
    if let Some(e) = truth_files.error {
        return Err(e);
    }
    truth_files.windows.finish()?;
    truth_files.disturbances.finish()?;
    finish(out, asm, hk, science_stats)
}

fn finish(
    out: &Path,
    asm: Assembly,
    hk: HkSim,
    science: ScienceStats,
) -> Result<DayStats, DayError> {
    let truth_dir = out.join("truth");
    let Assembly {
        downlink,
        expected,
        gaps,
        mut stats,
        end_of_hk,
        ..
    } = asm;
    let (deliveries, downlink_stats) = downlink.finish()?;
    stats.expected_windows = expected.windows.count();
    stats.expected_attitude = expected.attitude.count();
    stats.expected_hk = expected.hk.count();
    expected.windows.finish()?;
    expected.attitude.finish()?;
    expected.hk.finish()?;

    let mut f = AtomicFile::create(truth_dir.join("deliveries.jsonl"))?;
    for d in &deliveries {
        f.json_line(d)?;
    }
    f.finish()?;
    stats.deliveries = deliveries.len() as u64;
    stats.delivery_file_bytes = deliveries.iter().map(|d: &DeliveryTruth| d.size).sum();
    stats.delivery_stream_bytes = deliveries.iter().map(|d| d.stream_len).sum();

    let mut f = AtomicFile::create(truth_dir.join("gaps.jsonl"))?;
    for tracker in gaps.values() {
        for g in &tracker.gaps {
            f.json_line(g)?;
            stats.gaps += 1;
        }
    }
    f.finish()?;

    let truth = hk.truth(end_of_hk.unwrap_or(0))?;
    let mut f = AtomicFile::create(truth_dir.join("health_events.jsonl"))?;
    for e in &truth.events {
        f.json_line(e)?;
    }
    f.finish()?;
    let mut f = AtomicFile::create(truth_dir.join("non_events.jsonl"))?;
    for e in &truth.non_events {
        f.json_line(e)?;
    }
    f.finish()?;
    stats.health_events = truth.events.len() as u64;
    stats.non_events = truth.non_events.len() as u64;
    stats.end_of_hk_data_ns = end_of_hk;
    stats.transits = science.transits;
    stats.windows = science.windows;
    stats.attitude_samples = science.attitude_samples;
    stats.downlink = downlink_stats;
    let mut json = serde_json::to_vec_pretty(&stats).expect("stats serialise");
    json.push(b'\n');
    write_file_atomic(truth_dir.join("summary.json"), &json)?;
    Ok(stats)
}
