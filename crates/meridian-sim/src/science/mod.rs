//! The science half of the simulator: a star catalogue, the scanning law, and the
//! transit windows (APID 0x101) and attitude (APID 0x102) packets of a day, with
//! their truth.
//!
//! # How a day is made
//!
//! Time is cut into fixed 60 s blocks on an absolute OBT grid. Each block is
//! simulated independently (as a rayon task) from `(seed, block)`: the
//! sky cells the two fields of view sweep during the block are generated (or
//! looked up in a catalogue file), each star that crosses a field centre during
//! the block becomes a transit with up to nine windows, and the attitude samples
//! of the block are drawn. Blocks are then packed and emitted in order, so the
//! output is byte-identical whatever the thread count; memory stays bounded by
//! a few blocks.
//!
//! # Conventions (where the ICD leaves a choice)
//!
//! * A transit belongs to the block holding its field-centre crossing (η = 0);
//!   near a block boundary both neighbours decide with the same computation
//!   (anchored at the boundary), so no transit is lost or doubled.
//! * Window placement: the true centroid c is `k/2 + U(−½, ½)` samples, then
//!   `obt_ns` is rounded to the ns and c recomputed exactly, so
//!   `t_obs = obt_ns + c·T` is when the star's TRUE SRS azimuth is `φ_fov + η`.
//! * The transit's row is the one nearest to its elevation at the field-centre
//!   crossing; a strip where the star is then between CCDs (or off the focal
//!   plane) gives no window, so a star drifting across a gap mid-transit keeps
//!   only the windows of that row.
//! * Background: uniform per transit in `background_e`; on-board magnitude
//!   `round(1000·(G + N(0, onboard_mag_sigma)))`.
//! * Only windows with `obt_ns` in `[start, start + duration)` are kept; attitude
//!   is sampled at each whole second of that interval.
//! * Telemetered attitude = on-board attitude (see [`scan`] for disturbances)
//!   rotated by a random small rotation with `attitude_noise_mas` per axis.
//! * Packets: window packets hold whole transits, at most `max_window_app_data`
//!   octets of application data; attitude packets hold the samples of one 10 s
//!   slot of the absolute grid. Packet time is `cuc_round` of the first record's
//!   time; sequence counts start from seed-derived values, message type counters
//!   from 0.
//! * `transit_id = block_index × 2^20 + rank of the transit in its block`, with
//!   `block_index = floor(t_ref / 60 s)`: unique across days of one mission.
//! * Scale 1 means a Gaia-scale sky of [`FULL_SCALE_STARS`] stars, which gives
//!   about 70 million transits a day.
//!
//! # Performance
//!
//! `cargo bench -p meridian-sim --bench science` (criterion, a 0.001-scale hour)
//! and `cargo bench -p meridian-sim --bench science_volume -- SCALE HOURS`
//! (MB/s of packets and peak RSS of a larger run); a whole day with
//! `cargo xtask sim-bench --scale 0.01 --hours 2 --parts`. Peak RSS ~30–40 MiB
//! at scale 0.1 and ~230 MiB at scale 1 for the science alone (up to
//! 2·threads+1 blocks of 60 s in flight).
//!
//! Where the time goes (callgrind, scale 0.01, 0.5 h, one thread): about
//! 7 200 instructions per window, of which the samples take 37 % (per
//! sample a Poisson and a read-noise normal draw: [`noise::poisson`], the
//! Ahrens–Dieter method of rand_distr without its per-draw set-up, and
//! [`noise::standard_normal`], rand_distr's ziggurat with its fast path
//! inlined; the LSF from a table, [`noise::lsf_edges`]), the crossing solves
//! 16 % (attitude terms once per anchor, [`scan::Anchored`], so each
//! evaluation is a few quaternion products and one `atan2`), the search for
//! candidate stars 14 %, the truth's ra/dec 5 %, allocation 8 %. All of these
//! keep the draws and arithmetic of the model, so the output is unchanged by
//! them; a cheaper day needs cheaper sampling (for example drawing the
//! per-transit background Poisson from a table, which would change every
//! sample), not more of this kind of tuning.

mod fixed;
pub mod noise;
pub mod packets;
pub mod scan;
pub mod sky;
pub mod windows;
mod ziggurat_tables;

use crate::GeneratedPacket;
use meridian_core::geom::RAD_PER_MAS;
use meridian_core::time::{NS_PER_S, julian_epoch_tt};
use packets::{AttitudePacket, BlockOutput, Emitter, PackedTransit};
use rand::Rng;
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use scan::{Instant, ScanLaw};
use serde::{Deserialize, Serialize};
use sky::{FileSky, ProceduralSky, Star};
use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use windows::WindowModel;

/// Stars on a Gaia-scale sky (scale 1): about 70 M transits per day, given that a
/// day's scans cover 4.7 % of the sky with the 7 × 0.676° wide focal plane.
pub const FULL_SCALE_STARS: f64 = 1.48e9;
/// Length of a simulation block, s (a multiple of the 10 s attitude slot).
pub const BLOCK_S: u64 = 60;
/// Attitude samples per attitude packet (one per second of a 10 s slot).
pub const ATTITUDE_SLOT_S: u64 = 10;

const BLOCK_NS: u64 = BLOCK_S * NS_PER_S;
/// Transits may have windows up to this long before/after their field-centre crossing.
const TRANSIT_REACH_NS: u64 = 20 * NS_PER_S;
/// Lag after a block's end before its transits can no longer be preceded.
const REORDER_LAG_NS: u64 = 25 * NS_PER_S;

/// Why the science simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScienceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: line {line}: {message}")]
    Catalogue {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid science configuration: {0}")]
    Config(String),
    #[error("packet encoding failed: {0}")]
    Encode(#[from] meridian_telemetry::packet::EncodeError),
}

/// A micro-meteoroid hit: the true spin rate changes by `delta_rate_mas_per_s`
/// at `obt_ns`; the telemetered attitude keeps the old rate for `settle_s`
/// seconds, then converges back over another `settle_s` (see [`scan`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Disturbance {
    pub obt_ns: u64,
    pub delta_rate_mas_per_s: f64,
    pub settle_s: f64,
}

/// What to simulate. `Default` is the sample day's science.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScienceConfig {
    /// Stars on the procedural sky (ignored with `scale` or `catalogue`).
    pub n_stars: u64,
    /// Fraction of a Gaia-scale day: the sky gets `scale × FULL_SCALE_STARS` stars.
    pub scale: Option<f64>,
    /// Read this ICD §7 catalogue instead of generating stars.
    pub catalogue: Option<PathBuf>,
    /// Reference epoch for a catalogue without a `ref_epoch` column.
    pub catalogue_ref_epoch: Option<f64>,
    /// Telemetered attitude noise, mas (1σ per axis).
    pub attitude_noise_mas: f64,
    /// Attitude disturbances; `None` puts one at a seed-chosen time in the middle
    /// of the day (3 mas/s, settling 60 s), `Some(vec![])` none.
    pub disturbances: Option<Vec<Disturbance>>,
    /// Range of the per-transit background, e⁻ per sample.
    pub background_e: [f64; 2],
    /// On-board magnitude error, mag (1σ).
    pub onboard_mag_sigma: f64,
    /// Largest application data of a window packet, octets.
    pub max_window_app_data: usize,
}

impl Default for ScienceConfig {
    fn default() -> Self {
        Self {
            n_stars: 200_000,
            scale: None,
            catalogue: None,
            catalogue_ref_epoch: None,
            attitude_noise_mas: 0.5,
            disturbances: None,
            background_e: [20.0, 60.0],
            onboard_mag_sigma: 0.05,
            max_window_app_data: 4096,
        }
    }
}

/// Truth of one window: where and when its star really was (a product record
/// kind of its own, so `truth/windows.mprod` dumps like any product).
pub use meridian_core::records::WindowTruth;

/// Truth of one attitude sample: the attitude that placed the images and the
/// one telemetered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttitudeTruth {
    pub obt_ns: u64,
    pub q_true: [f64; 4],
    pub q_telemetered: [f64; 4],
}

/// Receives the truth of a science simulation, in packet order.
pub trait ScienceTruthSink {
    fn window(&mut self, t: &WindowTruth);
    fn disturbance(&mut self, d: &Disturbance);
    /// Attitude truth; ignored unless wanted.
    fn attitude(&mut self, _t: &AttitudeTruth) {}
}

/// Collects all truth in memory (for tests and small days).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TruthCollector {
    pub windows: Vec<WindowTruth>,
    pub disturbances: Vec<Disturbance>,
    pub attitude: Vec<AttitudeTruth>,
}

impl ScienceTruthSink for TruthCollector {
    fn window(&mut self, t: &WindowTruth) {
        self.windows.push(t.clone());
    }
    fn disturbance(&mut self, d: &Disturbance) {
        self.disturbances.push(*d);
    }
    fn attitude(&mut self, t: &AttitudeTruth) {
        self.attitude.push(t.clone());
    }
}

/// Discards all truth.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTruth;

impl ScienceTruthSink for NoTruth {
    fn window(&mut self, _t: &WindowTruth) {}
    fn disturbance(&mut self, _d: &Disturbance) {}
}

/// Counts of a science simulation.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScienceStats {
    pub window_packets: u64,
    pub attitude_packets: u64,
    pub transits: u64,
    pub windows: u64,
    pub attitude_samples: u64,
    /// Octets of all packets.
    pub bytes: u64,
    /// Stars examined (a measure of the work spent finding transits).
    pub candidate_stars: u64,
}

/// Independent random streams (the second key of [`rng_for`]).
pub(crate) mod stream {
    pub const STARS: u64 = 1;
    pub const TRANSIT: u64 = 2;
    pub const ATTITUDE: u64 = 3;
    pub const SETUP: u64 = 4;
}

/// A generator seeded from (seed, stream, a, b) only.
pub(crate) fn rng_for(seed: u64, stream: u64, a: u64, b: u64) -> Pcg64Mcg {
    let mut key = [0u8; 32];
    for (i, v) in [seed, stream, a, b].iter().enumerate() {
        key[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
    let lo = xxhash_rust::xxh3::xxh3_64_with_seed(&key, 0x6d65_7269);
    let hi = xxhash_rust::xxh3::xxh3_64_with_seed(&key, 0x6469_616e);
    Pcg64Mcg::new(((hi as u128) << 64) | lo as u128 | 1)
}

/// The field-centre crossings a block owns: `[lo_s, hi_s)` seconds after its
/// grid point `anchor`.
struct BlockSpan {
    anchor: u64,
    lo_s: f64,
    hi_s: f64,
    /// Whether the next block owns the crossings from `hi_s` on.
    shared_upper: bool,
}

enum Sky {
    Procedural(ProceduralSky),
    File(FileSky),
}

impl Sky {
    fn grid(&self) -> &sky::CellGrid {
        match self {
            Sky::Procedural(s) => s.grid(),
            Sky::File(s) => s.grid(),
        }
    }
    fn stars_in(&self, cell: u32, out: &mut Vec<Star>) {
        match self {
            Sky::Procedural(s) => s.stars_in(cell, out),
            Sky::File(s) => s.stars_in(cell, out),
        }
    }
}

/// A configured science simulation of one interval of OBT.
pub struct ScienceSim {
    seed: u64,
    start_ns: u64,
    end_ns: u64,
    sky: Sky,
    law: ScanLaw,
    disturbances: Vec<Disturbance>,
    model: WindowModel,
    noise_rad: f64,
    max_app_data: usize,
    /// How far a star may have moved from its catalogue cell, degrees.
    pm_margin_deg: f64,
}

impl ScienceSim {
    /// Sets up the sky, scanning law and disturbances of `[start, start + duration)`.
    pub fn new(
        seed: u64,
        start_obt_ns: u64,
        duration_s: f64,
        cfg: &ScienceConfig,
    ) -> Result<Self, ScienceError> {
        validate(duration_s, cfg)?;
        let end_ns = start_obt_ns
            .checked_add((duration_s * 1e9).round() as u64)
            .ok_or_else(|| ScienceError::Config("start + duration overflows OBT".into()))?;
        let mid_epoch = julian_epoch_tt(start_obt_ns / 2 + end_ns / 2);
        let years = duration_s / (365.25 * 86_400.0);
        let (sky, pm_margin_mas) = match &cfg.catalogue {
            Some(path) => {
                let stars = sky::read_catalogue(path, cfg.catalogue_ref_epoch)?;
                let s = FileSky::new(stars);
                let margin = s.max_pm() * (s.max_epoch_span(mid_epoch) + years);
                (Sky::File(s), margin)
            }
            None => {
                let n = match cfg.scale {
                    Some(scale) => (scale * FULL_SCALE_STARS).round() as u64,
                    None => cfg.n_stars,
                };
                let margin = sky::MAX_PROCEDURAL_PM_MAS_YR
                    * ((mid_epoch - sky::PROCEDURAL_REF_EPOCH).abs() + years);
                (Sky::Procedural(ProceduralSky::new(seed, n)), margin)
            }
        };
        let mut setup = rng_for(seed, stream::SETUP, 0, 0);
        let spin0 = std::f64::consts::TAU * setup.random::<f64>();
        let precession0 = std::f64::consts::TAU * setup.random::<f64>();
        let disturbances = match &cfg.disturbances {
            Some(d) => d.clone(),
            None => {
                let at = 0.3 + 0.4 * setup.random::<f64>();
                let offset_ms = (duration_s * at * 1e3).round() as u64;
                let sign = if setup.random::<bool>() { 1.0 } else { -1.0 };
                vec![Disturbance {
                    obt_ns: start_obt_ns + offset_ms * 1_000_000,
                    delta_rate_mas_per_s: 3.0 * sign,
                    settle_s: 60.0,
                }]
            }
        };
        Ok(Self {
            seed,
            start_ns: start_obt_ns,
            end_ns,
            sky,
            law: ScanLaw::new(spin0, precession0, disturbances.clone()),
            disturbances,
            model: WindowModel {
                background_min_e: cfg.background_e[0],
                background_max_e: cfg.background_e[1],
                onboard_mag_sigma: cfg.onboard_mag_sigma,
            },
            noise_rad: cfg.attitude_noise_mas * RAD_PER_MAS,
            max_app_data: cfg.max_window_app_data,
            pm_margin_deg: pm_margin_mas / 3_600_000.0,
        })
    }

    /// The scanning law (true and on-board attitude) of this simulation.
    pub fn scan_law(&self) -> &ScanLaw {
        &self.law
    }

    /// The disturbances injected into this day.
    pub fn disturbances(&self) -> &[Disturbance] {
        &self.disturbances
    }

    /// Writes the catalogue as ICD §7 CSV, streaming (procedural stars cell by
    /// cell; a file catalogue in its original order).
    pub fn write_catalogue(&self, w: impl Write) -> io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 16, w);
        writeln!(w, "{}", sky::CSV_HEADER)?;
        match &self.sky {
            Sky::Procedural(s) => {
                // Cells are generated and formatted in parallel, a bounded
                // run of them at a time, and written in cell order.
                const CELLS_PER_TASK: u32 = 64;
                const TASKS_PER_ROUND: u32 = 64;
                let n = s.grid().n_cells();
                let per_round = CELLS_PER_TASK * TASKS_PER_ROUND;
                for round in (0..n).step_by(per_round as usize) {
                    let chunks: Vec<Vec<u8>> = (round..n.min(round + per_round))
                        .step_by(CELLS_PER_TASK as usize)
                        .collect::<Vec<u32>>()
                        .into_par_iter()
                        .map(|first| {
                            let mut text = Vec::new();
                            for cell in first..n.min(first + CELLS_PER_TASK) {
                                s.push_rows(cell, &mut text);
                            }
                            text
                        })
                        .collect();
                    for text in &chunks {
                        w.write_all(text)?;
                    }
                }
            }
            Sky::File(s) => {
                let mut line = Vec::with_capacity(128);
                for star in s.in_file_order() {
                    line.clear();
                    sky::push_star(&mut line, star);
                    w.write_all(&line)?;
                }
            }
        }
        w.flush()
    }

    /// All science packets (APID 0x101 windows and 0x102 attitude) in
    /// packet-time order, streamed in bounded memory, plus the truth (in packet
    /// order; disturbances first). Runs on the current rayon pool.
    pub fn generate(
        &self,
        packets: &mut dyn FnMut(GeneratedPacket),
        truth: &mut dyn ScienceTruthSink,
    ) -> Result<ScienceStats, ScienceError> {
        for d in &self.disturbances {
            truth.disturbance(d);
        }
        let seq_start = {
            let mut r = rng_for(self.seed, stream::SETUP, 1, 0);
            [r.random::<u16>(), r.random::<u16>()]
        };
        let mut emitter = Emitter::new(packets, truth, self.max_app_data, seq_start);
        let first = (self.start_ns.saturating_sub(TRANSIT_REACH_NS)) / BLOCK_NS;
        let last = (self.end_ns + TRANSIT_REACH_NS - 1) / BLOCK_NS;
        let horizon = |k: u64| {
            if k == last {
                u64::MAX
            } else {
                self.transit_span(k).1.saturating_sub(REORDER_LAG_NS)
            }
        };
        // Blocks are rayon tasks, at most `in_flight` ahead of the one being
        // emitted (bounded memory); this thread emits them in block order as
        // they complete, so workers never wait for a batch's slowest block.
        let in_flight = 2 * rayon::current_num_threads().max(1) as u64 + 1;
        let (tx, rx) = mpsc::channel::<(u64, BlockOutput)>();
        rayon::in_place_scope(|scope| -> Result<(), ScienceError> {
            let mut ready = BTreeMap::new();
            let (mut spawned, mut next) = (first, first);
            while next <= last {
                while spawned <= last && spawned - next < in_flight {
                    let (tx, k) = (tx.clone(), spawned);
                    scope.spawn(move |_| {
                        // The receiver outlives the scope; a send cannot fail.
                        let _ = tx.send((k, self.simulate_block(k)));
                    });
                    spawned += 1;
                }
                let (k, out) = receive(&rx);
                ready.insert(k, out);
                while let Some(out) = ready.remove(&next) {
                    // On error the scope still waits for the spawned blocks.
                    emitter.push_block(out, horizon(next))?;
                    next += 1;
                }
            }
            Ok(())
        })?;
        emitter.finish()
    }

    /// The field-centre crossing times block k owns: its grid interval cut to
    /// `[start − reach, end + reach)`.
    fn transit_span(&self, k: u64) -> (u64, u64) {
        let lo = self.start_ns.saturating_sub(TRANSIT_REACH_NS);
        let hi = self.end_ns + TRANSIT_REACH_NS;
        ((k * BLOCK_NS).max(lo), ((k + 1) * BLOCK_NS).min(hi))
    }

    fn simulate_block(&self, k: u64) -> BlockOutput {
        let mut out = BlockOutput {
            attitude: self.attitude_block(k),
            ..Default::default()
        };
        let (lo, hi) = self.transit_span(k);
        if hi <= lo {
            return out;
        }
        // Solves are anchored at the grid point whatever the clipping, so a
        // transit comes out the same in any run that owns it.
        let span = BlockSpan {
            anchor: k * BLOCK_NS,
            lo_s: (lo - k * BLOCK_NS) as f64 * 1e-9,
            hi_s: (hi - k * BLOCK_NS) as f64 * 1e-9,
            shared_upper: hi == (k + 1) * BLOCK_NS,
        };
        let anchored = self.law.anchored(span.anchor);
        let mut transits = Vec::new();
        let mut stars = Vec::new();
        for cell in self.candidate_cells(lo, (hi - lo) as f64 * 1e-9) {
            stars.clear();
            self.sky.stars_in(cell, &mut stars);
            out.candidates += stars.len() as u64;
            for star in &stars {
                let crossings = windows::crossings_from_anchor(
                    &self.law,
                    &anchored,
                    star,
                    (span.lo_s, span.hi_s),
                );
                for (fov, crossing) in (0u8..).zip(crossings) {
                    if let Some(t) =
                        crossing.and_then(|c| self.owned_transit(star, fov, c, &span, k))
                    {
                        transits.push(t);
                    }
                }
            }
        }
        transits.sort_by_key(|t| (t.t_ref_ns, t.source_id, t.fov));
        out.transits = transits
            .into_iter()
            .enumerate()
            .map(|(rank, t)| pack_transit(t, (k << 20) | rank as u64))
            .collect();
        out
    }

    /// The transit of `star` in `fov` if its field-centre crossing falls in
    /// this block.
    fn owned_transit(
        &self,
        star: &Star,
        fov: u8,
        (t_ref, zeta): (Instant, f64),
        span: &BlockSpan,
        k: u64,
    ) -> Option<windows::Transit> {
        let after = t_ref.seconds_after(span.anchor);
        if after < span.lo_s {
            // At a shared lower boundary the previous block owns it, deciding
            // with this same anchored solve.
            return None;
        }
        if span.shared_upper && (after - span.hi_s).abs() < 1e-3 {
            // Near the upper boundary decide as the next block does: from its anchor.
            let next = span.anchor + BLOCK_NS;
            let next_anchored = self.law.anchored(next);
            let again =
                windows::crossings_from_anchor(&self.law, &next_anchored, star, (-1.0, 1.0));
            match again[fov as usize] {
                Some((t, _)) if t.seconds_after(next) < 0.0 => {}
                _ => return None,
            }
        } else if after >= span.hi_s {
            return None;
        }
        // A star just off the focal plane's edge may still drift onto a CCD for
        // a few strips: the per-strip pixel check decides.
        let mut rng = rng_for(
            self.seed,
            stream::TRANSIT,
            star.source_id as u64,
            (k << 1) | fov as u64,
        );
        let crossing = windows::Crossing { fov, t_ref, zeta };
        let t = windows::simulate_transit(
            &self.law,
            star,
            crossing,
            &self.model,
            &mut rng,
            (self.start_ns, self.end_ns),
        );
        (!t.windows.is_empty()).then_some(t)
    }

    /// Sky cells that may hold a star crossing a field centre in
    /// `[t0, t0 + len_s)`: caps along the path of both field centres.
    fn candidate_cells(&self, t0: u64, len_s: f64) -> Vec<u32> {
        const STEP_S: f64 = 10.0;
        let half_step_deg = STEP_S * scan::SPIN_RATE_RAD_S.to_degrees() / 2.0;
        let radius =
            windows::max_zeta_rad().to_degrees() + half_step_deg + 0.05 + self.pm_margin_deg;
        let n_steps = (len_s / STEP_S).ceil() as usize;
        let mut cells = Vec::new();
        for i in 0..=n_steps {
            let t = Instant::at(t0).plus((i as f64 * STEP_S).min(len_s));
            let q = self.law.true_attitude(t);
            for fov in 0..2 {
                let centre = q.rotate(windows::fov_centre_srs(fov));
                self.sky.grid().cells_near(centre, radius, &mut cells);
            }
        }
        cells.sort_unstable();
        cells.dedup();
        cells
    }

    /// The attitude packets of block k: one per 10 s slot, a sample each whole
    /// second inside `[start, end)`.
    fn attitude_block(&self, k: u64) -> Vec<AttitudePacket> {
        let first_s = (k * BLOCK_S).max(self.start_ns.div_ceil(NS_PER_S));
        let end_s = ((k + 1) * BLOCK_S).min(self.end_ns.div_ceil(NS_PER_S));
        let mut packets: Vec<AttitudePacket> = Vec::new();
        for s in first_s..end_s {
            let t_ns = s * NS_PER_S;
            let q_true = self.law.true_attitude(Instant::at(t_ns));
            let q_tm = self.telemetered(t_ns);
            let sample = (t_ns, q_tm.to_array());
            let truth = AttitudeTruth {
                obt_ns: t_ns,
                q_true: q_true.to_array(),
                q_telemetered: q_tm.to_array(),
            };
            match packets.last_mut() {
                Some(p) if p.obt_ns / (ATTITUDE_SLOT_S * NS_PER_S) == s / ATTITUDE_SLOT_S => {
                    append_attitude(p, sample, truth)
                }
                _ => {
                    let mut p = AttitudePacket {
                        obt_ns: t_ns,
                        app_data: vec![0, 0],
                        samples: Vec::new(),
                        truth: Vec::new(),
                    };
                    append_attitude(&mut p, sample, truth);
                    packets.push(p);
                }
            }
        }
        packets
    }

    /// On-board attitude with sensor noise: a small random body-frame rotation.
    fn telemetered(&self, t_ns: u64) -> meridian_core::Quat {
        let q = self.law.onboard_attitude(Instant::at(t_ns));
        let mut rng = rng_for(self.seed, stream::ATTITUDE, t_ns, 0);
        let mut axis = [0.0; 3];
        for a in &mut axis {
            *a = self.noise_rad * rng.sample::<f64, _>(rand_distr::StandardNormal);
        }
        let dq =
            meridian_core::Quat::new(axis[0] / 2.0, axis[1] / 2.0, axis[2] / 2.0, 1.0).normalized();
        let r = (q * dq).normalized();
        // Canonical sign (w ≥ 0): both signs are the same rotation.
        if r.w < 0.0 {
            meridian_core::Quat::new(-r.x, -r.y, -r.z, -r.w)
        } else {
            r
        }
    }
}

/// The next finished block. On a rayon worker (inside `install`) it keeps
/// running pending tasks while waiting, so even a one-thread pool progresses.
fn receive<T>(rx: &mpsc::Receiver<T>) -> T {
    loop {
        if let Ok(v) = rx.try_recv() {
            return v;
        }
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => {}
            Some(rayon::Yield::Idle) => {
                if let Ok(v) = rx.recv_timeout(std::time::Duration::from_millis(1)) {
                    return v;
                }
            }
            None => return rx.recv().expect("a sender lives in the caller"),
        }
    }
}

fn append_attitude(p: &mut AttitudePacket, sample: (u64, [f64; 4]), truth: AttitudeTruth) {
    let mut one = Vec::with_capacity(42);
    meridian_telemetry::appdata::encode_attitude(&mut one, &[sample]);
    p.app_data.extend_from_slice(&one[2..]);
    p.samples.push(sample);
    p.app_data[..2].copy_from_slice(&(p.samples.len() as u16).to_be_bytes());
    p.truth.push(truth);
}

fn pack_transit(mut t: windows::Transit, transit_id: u64) -> PackedTransit {
    for w in &mut t.windows {
        w.transit_id = transit_id;
    }
    for w in &mut t.truth {
        w.transit_id = transit_id;
    }
    let mut records = Vec::with_capacity(t.windows.len() * 60);
    meridian_telemetry::appdata::encode_windows(&mut records, &t.windows);
    records.drain(..2);
    PackedTransit {
        first_obt_ns: t.first_obt_ns(),
        transit_id,
        n_windows: t.windows.len() as u16,
        records,
        windows: t.windows,
        truth: t.truth,
    }
}

fn validate(duration_s: f64, cfg: &ScienceConfig) -> Result<(), ScienceError> {
    let bad = |m: &str| Err(ScienceError::Config(m.to_string()));
    if !(duration_s.is_finite() && duration_s > 0.0 && duration_s < 1e8) {
        return bad("duration must be positive and finite");
    }
    if let Some(s) = cfg.scale
        && !(s.is_finite() && s > 0.0 && s <= 10.0)
    {
        return bad("scale must be in (0, 10]");
    }
    if !(cfg.attitude_noise_mas.is_finite() && cfg.attitude_noise_mas >= 0.0) {
        return bad("attitude_noise_mas must be finite and non-negative");
    }
    let [b0, b1] = cfg.background_e;
    if !(b0.is_finite() && b1.is_finite() && b0 > 0.0 && b0 <= b1) {
        return bad("background_e must be [min, max] with 0 < min <= max");
    }
    if !(cfg.onboard_mag_sigma.is_finite() && cfg.onboard_mag_sigma >= 0.0) {
        return bad("onboard_mag_sigma must be finite and non-negative");
    }
    if !(600..=60_000).contains(&cfg.max_window_app_data) {
        return bad(
            "max_window_app_data must be in 600..=60000 (a 9-window transit of 32 samples needs 578)",
        );
    }
    for d in cfg.disturbances.iter().flatten() {
        // Beyond 10″/s the transit-ordering lag (25 s) would no longer hold.
        if !(d.delta_rate_mas_per_s.abs() <= 10_000.0
            && d.settle_s.is_finite()
            && d.settle_s >= 0.0)
        {
            return bad(
                "disturbance rates must be within ±10000 mas/s and settle times finite and >= 0",
            );
        }
    }
    Ok(())
}
