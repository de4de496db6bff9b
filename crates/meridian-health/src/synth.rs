//! Realistic synthetic inputs with known anomalies, for tests, benchmarks and the
//! demonstration report: a small mission database, a housekeeping day, located and
//! matched transits with an attitude disturbance, and per-hour completeness.
//! Everything is a pure function of its arguments (a fixed-seed SplitMix64).

use meridian_core::geom::{RAD_PER_MAS, Vec3};
use meridian_core::records::{Flag, Flags, Hk, Match, Observation, Transit};
use meridian_order::HourCompleteness;
use meridian_telemetry::MissionDb;
use std::path::Path;

const S: u64 = 1_000_000_000;

/// A mission database exercising every check.
pub const DEMO_DB: &str = r#"
[[structure]]
sid = 1
name = "THERMAL"

[[structure.param]]
name = "FPA_TEMP_1"
type = "u16"
unit = "K"
calibration = { polynomial = [100.0, 0.01] }
warning = [160.0, 170.0]
alarm   = [155.0, 175.0]
persistence = 3
delta = 2.0

[[structure.param.context]]
when = { param = "HTR_MODE", equals = "ECO" }
warning = [150.0, 170.0]
alarm   = [145.0, 175.0]

[[structure.param]]
name = "HTR_MODE"
type = "u8"
calibration = { states = { 0 = "OFF", 1 = "NOMINAL", 2 = "ECO" } }
expected = ["NOMINAL", "ECO"]

[[structure.param]]
name = "HTR_CURRENT"
type = "u16"
unit = "A"
calibration = { polynomial = [0.0, 0.001] }
warning = { high = 1.5 }
alarm = { high = 2.0 }
persistence = 5

[[structure]]
sid = 2
name = "PLATFORM"

[[structure.param]]
name = "BUS_V"
type = "f32"
unit = "V"
warning = [27.0, 29.0]
alarm = [26.0, 30.0]
delta = 0.5

[[structure.param]]
name = "GYRO_RATE"
type = "i16"
unit = "mas/s"
calibration = { polynomial = [0.0, 0.1] }
stale_s = 30.0
frozen_s = 120.0
"#;

/// The demo database, parsed.
pub fn demo_db() -> MissionDb {
    MissionDb::parse(DEMO_DB, Path::new("demo_mission_db.toml")).expect("demo database is valid")
}

/// SplitMix64 with a Gaussian: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// A housekeeping day of the demo database from `start_ns` for `hours`:
/// THERMAL at 1 Hz, PLATFORM every 10 s, with these anomalies (hours from start):
/// a heater stuck on at 2.0 h (current alarm, then the FPA warms through its
/// warning and alarm limits until 2.5 h), the heater OFF for 60 s at 3.0 h, a bus
/// voltage jump at 4.0 h, the gyro silent for 120 s at 5.0 h and frozen for 10
/// minutes at 6.0 h (only where `hours` reaches them). Sorted by (time, sid, name).
/// See [`DEMO_HK_EVENTS`] for the events a correct checker reports.
pub fn hk_day(db: &MissionDb, start_ns: u64, hours: f64, seed: u64) -> Vec<Hk> {
    let mut rng = Rng::new(seed);
    let n = (hours * 3600.0) as u64;
    let mut out = Vec::with_capacity(n as usize * 4);
    let mut push = |t: u64, sid: u16, name: &str, raw: f64, seq: u16| {
        let p = db.param(name).expect("demo parameter");
        out.push(Hk {
            obt_ns: start_ns + t * S,
            sid,
            param: name.to_owned(),
            raw,
            eng: p.calibration.apply(raw),
            seq,
            packet_obt_ns: start_ns + t * S,
            packet_hash: t,
        });
    };
    for t in 0..n {
        let h = t as f64 / 3600.0;
        let stuck = (2.0..2.5).contains(&h);
        let warm = if stuck {
            (h - 2.0) * 3600.0 * 0.006
        } else {
            0.0
        };
        // Noise-free while the heater is stuck, so the warming crosses each limit once.
        let noise = if stuck { 0.0 } else { 0.05 * rng.normal() };
        let temp = 165.0 + 0.8 * (t as f64 / 900.0).sin() + noise + warm;
        let mode = if (3.0..3.0 + 60.0 / 3600.0).contains(&h) {
            0.0
        } else {
            1.0
        };
        let current = if stuck {
            2.2
        } else {
            0.9 + 0.02 * rng.normal()
        };
        let seq = (t % 16384) as u16;
        // Packet order in a chunk: by sid, then name.
        push(t, 1, "FPA_TEMP_1", ((temp - 100.0) * 100.0).round(), seq);
        push(t, 1, "HTR_CURRENT", (current * 1000.0).round(), seq);
        push(t, 1, "HTR_MODE", mode, seq);
        if t % 10 == 0 {
            let jump = (4.0..4.0 + 30.0 / 3600.0).contains(&h);
            let volts = 28.0 + 0.05 * rng.normal() + if jump { 0.8 } else { 0.0 };
            push(t, 2, "BUS_V", (volts as f32) as f64, seq);
            let silent = (5.0..5.0 + 120.0 / 3600.0).contains(&h);
            let frozen = (6.0..6.0 + 600.0 / 3600.0).contains(&h);
            let rate = if frozen {
                9999.0
            } else {
                (30.0 * rng.normal()).round()
            };
            if !silent {
                push(t, 2, "GYRO_RATE", rate, seq);
            }
        }
    }
    out.sort_by(|a, b| (a.obt_ns, a.sid, &a.param).cmp(&(b.obt_ns, b.sid, &b.param)));
    out
}

/// An attitude disturbance as the simulator models it: the along-scan error of
/// the telemetered attitude grows at `rate_mas_s` for `settle_s`, then returns to
/// zero over another `settle_s`.
#[derive(Debug, Clone, Copy)]
pub struct Disturbance {
    pub obt_ns: u64,
    pub rate_mas_s: f64,
    pub settle_s: f64,
}

impl Disturbance {
    /// Along-scan error at `t`, mas.
    pub fn al_error_mas(&self, t: u64) -> f64 {
        if t < self.obt_ns {
            return 0.0;
        }
        let dt = (t - self.obt_ns) as f64 / 1e9;
        if dt <= self.settle_s {
            self.rate_mas_s * dt
        } else if dt <= 2.0 * self.settle_s {
            self.rate_mas_s * (2.0 * self.settle_s - dt)
        } else {
            0.0
        }
    }
}

/// Located and matched products of `hours` from `start_ns`: `rate_hz` transits per
/// second per field of view, 98 % matched, along-scan noise by magnitude,
/// across-scan error uniform within a pixel, nine windows each (a few flagged),
/// plus the given disturbances.
pub fn science_day(
    start_ns: u64,
    hours: f64,
    rate_hz: f64,
    seed: u64,
    disturbances: &[Disturbance],
) -> (Vec<Observation>, Vec<Transit>, Vec<Match>) {
    let mut rng = Rng::new(seed);
    let (mut obs, mut transits, mut matches) = (Vec::new(), Vec::new(), Vec::new());
    let n = (hours * 3600.0 * rate_hz * 2.0) as u64;
    let span_ns = (hours * 3600.0 * 1e9) as u64;
    for id in 0..n {
        let fov = (id % 2) as u8;
        let t = start_ns + (rng.uniform() * span_ns as f64) as u64;
        let ra_c = rng.uniform() * 360.0;
        let dec_c = (2.0 * rng.uniform() - 1.0).asin().to_degrees();
        let pa = rng.uniform() * 360.0;
        let mag = 12.0 + 8.0 * rng.uniform();
        let sigma_al = 0.2 * 10f64.powf(0.2 * (mag - 12.0));
        let al =
            sigma_al * rng.normal() + disturbances.iter().map(|d| d.al_error_mas(t)).sum::<f64>();
        let ac = (rng.uniform() - 0.5) * 176.8;
        let (ra, dec) = offset(ra_c, dec_c, pa, al, ac);
        let matched = rng.uniform() < 0.98;
        transits.push(Transit {
            transit_id: id,
            fov,
            row: 1 + (id % 7) as u8,
            t_obs_ns: t,
            ra: Some(ra),
            dec: Some(dec),
            n_windows: 9,
            mag: Some(mag),
            flags: Flags::EMPTY,
            sigma_al_mas: Some(sigma_al),
            sigma_ac_mas: Some(51.0),
            scan_pa_deg: Some(pa),
        });
        matches.push(Match {
            transit_id: id,
            source_id: matched.then_some(id as i64 + 1),
            sep_mas: matched.then(|| al.hypot(ac)),
            n_candidates: matched as u32,
            ambiguous: vec![],
            new_source: (!matched).then_some(id),
            ra_cat: matched.then_some(ra_c),
            dec_cat: matched.then_some(dec_c),
        });
        for strip in 0..9u8 {
            let mut flags = Flags::EMPTY;
            if rng.uniform() < 0.004 {
                flags.insert(Flag::FitFailed);
            }
            if mag < 13.0 {
                flags.insert(Flag::Saturated);
            }
            obs.push(Observation {
                transit_id: id,
                strip,
                row: 1 + (id % 7) as u8,
                fov,
                t_obs_ns: t + strip as u64 * 4_850_000_000,
                centroid: 6.0,
                centroid_err: 0.01,
                flux: 10f64.powf(-0.4 * (mag - 27.3)),
                flux_err: 100.0,
                background: 20.0 + 40.0 * rng.uniform(),
                ra: Some(ra),
                dec: Some(dec),
                flags,
                ac: 982,
            });
        }
    }
    (obs, transits, matches)
}

/// The position `al`, `ac` mas away from (`ra`, `dec`) along position angle `pa`
/// and `pa + 90°` (the inverse of [`crate::science::residual_al_ac_mas`]).
pub fn offset(ra: f64, dec: f64, pa_deg: f64, al_mas: f64, ac_mas: f64) -> (f64, f64) {
    let (a, d) = (ra.to_radians(), dec.to_radians());
    let east = Vec3::new(-a.sin(), a.cos(), 0.0);
    let north = Vec3::new(-d.sin() * a.cos(), -d.sin() * a.sin(), d.cos());
    let (s, c) = pa_deg.to_radians().sin_cos();
    let xi = (al_mas * s + ac_mas * c) * RAD_PER_MAS;
    let eta = (al_mas * c - ac_mas * s) * RAD_PER_MAS;
    let u = Vec3::from_radec_deg(ra, dec);
    let moved = Vec3::new(
        u.x + xi * east.x + eta * north.x,
        u.y + xi * east.y + eta * north.y,
        u.z + xi * east.z + eta * north.z,
    );
    moved.normalized().to_radec_deg()
}

/// Per-hour completeness of the three APIDs, with `missing` packets of APID 0x101
/// in hour `bad_hour`.
pub fn completeness_day(
    start_ns: u64,
    hours: u64,
    bad_hour: u64,
    missing: u64,
) -> Vec<HourCompleteness> {
    let hour_ns = 3600 * S;
    let first = start_ns / hour_ns;
    let mut out = Vec::new();
    for k in first..first + hours {
        for (apid, per_hour) in [(0x101u16, 5000u64), (0x102, 360), (0x201, 3960)] {
            let m = if apid == 0x101 && k - first == bad_hour {
                missing
            } else {
                0
            };
            let received = per_hour - m;
            out.push(HourCompleteness {
                apid,
                hour_start_obt_ns: k * hour_ns,
                received,
                missing: m,
                completeness: received as f64 / per_hour as f64,
            });
        }
    }
    out
}

/// The housekeeping events of [`hk_day`] over 7 hours, as (param, check, severity,
/// start s, end s) from the start; `None` start/end bounds mean "checked loosely"
/// (the FPA crosses its limit at a time set by its sine, 500 to 1000 s into the
/// heater failure).
pub const DEMO_HK_EVENTS: [(&str, &str, &str, u64, u64); 8] = [
    ("HTR_CURRENT", "limit", "alarm", 7200, 9000),
    ("FPA_TEMP_1", "limit", "alarm", 0, 9000),
    ("FPA_TEMP_1", "delta", "warning", 8999, 9000),
    ("HTR_MODE", "state", "alarm", 10800, 10860),
    ("BUS_V", "delta", "warning", 14390, 14400),
    ("BUS_V", "delta", "warning", 14420, 14430),
    ("GYRO_RATE", "stale", "warning", 17990, 18120),
    ("GYRO_RATE", "frozen", "warning", 21600, 22200),
];

/// Where [`write_demo_inputs`] put things.
#[derive(Debug, Clone)]
pub struct DemoPaths {
    pub db: std::path::PathBuf,
    pub ordered: std::path::PathBuf,
    pub located: std::path::PathBuf,
}

/// A start time aligned to hours (so to science bins): 2026-07-01T00:00:00 TAI.
pub const DEMO_START_NS: u64 = 520_560_000 * S;

/// Writes a demo day under `root`: the mission database, an ordered folder (hk
/// chunks of 10 minutes with a manifest and completeness counts: 4 % of APID
/// 0x101 missing in hour 1) and a folder of observation, transit and match
/// products with a 3 mas/s attitude disturbance 3.4 h in.
pub fn write_demo_inputs(
    root: &Path,
    hours: f64,
    transit_rate_hz: f64,
) -> Result<DemoPaths, meridian_core::ProductError> {
    use meridian_core::product::{write_all, write_file_atomic};
    use meridian_order::{ChunkEntry, ChunkStatus, Manifest, Stream};
    let io = |p: &Path, e: std::io::Error| meridian_core::ProductError::Io {
        path: p.to_owned(),
        source: e,
    };
    let paths = DemoPaths {
        db: root.join("mission_db.toml"),
        ordered: root.join("ordered"),
        located: root.join("located"),
    };
    let chunk_dir = paths.ordered.join("chunks/hk");
    std::fs::create_dir_all(&chunk_dir).map_err(|e| io(&chunk_dir, e))?;
    std::fs::create_dir_all(&paths.located).map_err(|e| io(&paths.located, e))?;
    write_file_atomic(&paths.db, DEMO_DB.as_bytes())?;
    let db = demo_db();
    let hk = hk_day(&db, DEMO_START_NS, hours, 7);
    let chunk_ns = 600 * S;
    let mut chunks = Vec::new();
    for part in hk.chunk_by(|a, b| a.obt_ns / chunk_ns == b.obt_ns / chunk_ns) {
        let start = part[0].obt_ns / chunk_ns * chunk_ns;
        let rel = std::path::PathBuf::from(format!("chunks/hk/{start:020}.v1.mprod"));
        let path = paths.ordered.join(&rel);
        write_all(&path, part)?;
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        chunks.push(ChunkEntry {
            stream: Stream::Hk,
            start_obt_ns: start,
            end_obt_ns: start + chunk_ns,
            version: 1,
            path: rel,
            records: part.len() as u64,
            checksum: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)),
            status: ChunkStatus::Complete,
            run: 1,
            status_run: 1,
        });
    }
    let manifest = Manifest {
        format: meridian_order::manifest::MANIFEST_FORMAT,
        chunk_ns,
        run: 1,
        chunks,
        close_before_obt_ns: None,
        gaps: 1,
        conflicts: 0,
        completeness: completeness_day(DEMO_START_NS, hours.ceil() as u64, 1, 200),
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    json.push(b'\n');
    write_file_atomic(
        paths.ordered.join(meridian_order::manifest::MANIFEST_FILE),
        &json,
    )?;
    let hit = Disturbance {
        obt_ns: DEMO_START_NS + 12_240 * S,
        rate_mas_s: 3.0,
        settle_s: 60.0,
    };
    let (obs, transits, matches) = science_day(DEMO_START_NS, hours, transit_rate_hz, 11, &[hit]);
    write_all(paths.located.join("observation.mprod"), &obs)?;
    write_all(paths.located.join("transit.mprod"), &transits)?;
    write_all(paths.located.join("match.mprod"), &matches)?;
    Ok(paths)
}

/// Renumbers the transits of [`science_day`] by time (ids from `first` in
/// order of `t_obs_ns`, as a spacecraft's ids rise with time) in all three lists,
/// and sorts the match records by the new ids.
pub fn renumber_by_time(
    obs: &mut [Observation],
    transits: &mut [Transit],
    matches: &mut [Match],
    first: u64,
) {
    let mut order: Vec<(u64, u64)> = transits
        .iter()
        .map(|t| (t.t_obs_ns, t.transit_id))
        .collect();
    order.sort_unstable();
    let new_id: std::collections::HashMap<u64, u64> = order
        .iter()
        .enumerate()
        .map(|(rank, &(_, old))| (old, first + rank as u64))
        .collect();
    let renumber = |id: &mut u64| *id = new_id.get(id).copied().unwrap_or(*id);
    transits
        .iter_mut()
        .for_each(|t| renumber(&mut t.transit_id));
    obs.iter_mut().for_each(|o| renumber(&mut o.transit_id));
    matches.iter_mut().for_each(|m| renumber(&mut m.transit_id));
    matches.sort_by_key(|m| m.transit_id);
}

/// Product files laid out as `meridian-locate` and `meridian-xmatch` write them.
#[derive(Debug, Clone)]
pub struct LocatedFiles {
    pub observations: Vec<std::path::PathBuf>,
    pub transits: Vec<std::path::PathBuf>,
    pub matches: Vec<std::path::PathBuf>,
}

/// Window chunks of [`LocatedFiles`], ns.
pub const LOCATED_CHUNK_NS: u64 = 60 * S;

/// Writes `root/located/{observation,transit}/<start:020>.mprod` per 60 s chunk
/// (observations by their time, transits by their own time, which in
/// [`science_day`] is their earliest window's) and `root/matched/match.mprod`
/// (records in the given order).
pub fn write_located(
    root: &Path,
    obs: &[Observation],
    transits: &[Transit],
    matches: &[Match],
) -> Result<LocatedFiles, meridian_core::ProductError> {
    let matched = root.join("matched");
    std::fs::create_dir_all(&matched).map_err(|e| meridian_core::ProductError::Io {
        path: matched.clone(),
        source: e,
    })?;
    let m = matched.join("match.mprod");
    meridian_core::product::write_all(&m, matches)?;
    let located = root.join("located");
    Ok(LocatedFiles {
        observations: write_chunked(&located.join("observation"), obs, |o| o.t_obs_ns)?,
        transits: write_chunked(&located.join("transit"), transits, |t| t.t_obs_ns)?,
        matches: vec![m],
    })
}

fn write_chunked<R: meridian_core::Record>(
    dir: &Path,
    records: &[R],
    time: impl Fn(&R) -> u64,
) -> Result<Vec<std::path::PathBuf>, meridian_core::ProductError> {
    std::fs::create_dir_all(dir).map_err(|e| meridian_core::ProductError::Io {
        path: dir.to_owned(),
        source: e,
    })?;
    let mut by_chunk: std::collections::BTreeMap<u64, Vec<&R>> = Default::default();
    for r in records {
        by_chunk
            .entry(time(r) / LOCATED_CHUNK_NS * LOCATED_CHUNK_NS)
            .or_default()
            .push(r);
    }
    by_chunk
        .into_iter()
        .map(|(start, rs)| {
            let path = dir.join(format!("{start:020}.mprod"));
            meridian_core::product::write_all(&path, rs)?;
            Ok(path)
        })
        .collect()
}
