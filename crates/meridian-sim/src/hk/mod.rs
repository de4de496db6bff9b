//! Housekeeping simulation: the mission database, periodic APID 0x201 reports
//! (service 3/25) of parameters that drift, follow a daily cycle and carry noise,
//! and injected anomalies with the exact health events an ICD §6 checker reports.
//!
//! # Exactness of the truth
//!
//! The health stage is tested for precision and recall 1.0 against
//! [`HkTruth::events`], so the simulator guarantees:
//!
//! * natural values stay in a band well inside the warning limits (clamped), and
//!   change between samples (even across the longest loss the downlink is
//!   allowed, [`db::NUDGE_DEPTH`]` − 1` reports of one structure) far less than
//!   any `delta`;
//! * a parameter with `frozen_s` never repeats one of its last
//!   [`db::NUDGE_DEPTH`] raw values except inside an injected stuck-sensor run,
//!   so no natural run of identical received values exists;
//! * structures report every 8–16 s and `stale_s` is at least 60 s, so lost
//!   reports never make a silence;
//! * every anomaly lives in its own time slot (with margins of at least
//!   `persistence + 2` samples) and the downlink never loses a housekeeping
//!   report inside a slot ([`HkSim::protected`]), so the samples a checker sees
//!   there are exactly the ones generated.
//!
//! The events are then derived from the generated samples of each slot with the
//! ICD §6 rules (see [`truth`]), and the derivation checks that each anomaly came
//! out as designed (e.g. a persistence-edge excursion really has `persistence − 1`
//! samples), failing loudly otherwise.

pub mod db;
pub mod truth;

use crate::{GeneratedPacket, PacketContent};
use db::{MISSION_DB_TOML, Model, NUDGE_DEPTH, PERIOD_S};
use meridian_core::time::NS_PER_S;
use meridian_telemetry::appdata::{encode_hk, service};
use meridian_telemetry::mission_db::{Calibration, MissionDb, MissionDbError, Param, ParamType};
use meridian_telemetry::packet::{SecondaryHeader, apid, encode_packet};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
pub use truth::{HkTruth, NonEvent, TruthEvent};

/// Housekeeping options of a simulated day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HkConfig {
    /// Inject the anomaly set (needs a day of at least about 80 minutes).
    pub anomalies: bool,
}

impl Default for HkConfig {
    fn default() -> Self {
        Self { anomalies: true }
    }
}

/// Why housekeeping cannot be simulated.
#[derive(Debug, thiserror::Error)]
pub enum HkError {
    #[error("built-in mission database: {0}")]
    Db(#[from] MissionDbError),
    #[error(
        "a {duration_s} s day is too short for the housekeeping anomalies (they need {needed_s} s); \
         lengthen the day or set hk.anomalies = false"
    )]
    TooShort { duration_s: f64, needed_s: u64 },
    /// An anomaly did not come out as designed: a simulator bug.
    #[error("housekeeping anomaly {anomaly}: {detail}")]
    Inconsistent {
        anomaly: &'static str,
        detail: String,
    },
}

/// What replaces the natural value of one parameter in one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Override {
    /// This engineering value.
    Eng(f64),
    /// The natural value plus this (engineering units).
    Offset(f64),
    /// This raw value.
    Raw(f64),
    /// The previous raw value (stuck sensor).
    Hold,
}

/// The kinds of injected anomaly (one each per day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// FPA_TEMP_1 beyond its warning limit for `persistence − 1` samples: no event.
    LimitShort,
    /// FPA_TEMP_1 beyond its warning limit for exactly `persistence` samples.
    LimitPersistent,
    /// VIDEO_OFFSET_AF below its warning limit for 12 samples.
    LimitLong,
    /// VIDEO_OFFSET_AF below its warning limit for `persistence − 1` samples: no event.
    LimitLongShort,
    /// BATTERY_TEMP ramps through the warning band into the alarm band.
    LimitAlarm,
    /// FPA_TEMP_2 stuck for longer than `frozen_s`.
    Frozen,
    /// FPA_TEMP_2 stuck for exactly `frozen_s` (not more): no event.
    FrozenEdge,
    /// MIRROR_TEMP spikes and recovers in two steps: one delta episode of 3 changes.
    DeltaSpike,
    /// BUS_VOLTAGE steps down and back up later: two delta episodes.
    DeltaStep,
    /// The POWER structure stops reporting for about 5 minutes.
    Stale,
    /// The heater goes to ECO and FPA_TEMP_1 cools below its default limits but
    /// within the ECO context limits: no event.
    Context,
    /// PAYLOAD_MODE in an unexpected state for 4 samples.
    StateAlarm,
    /// PAYLOAD_MODE in an unexpected state for 1 sample (persistence 2): no event.
    StateShort,
    /// STAR_TRACKER stops reporting until the end of the data.
    StaleEnd,
}

impl AnomalyKind {
    const ALL_BUT_END: [AnomalyKind; 13] = [
        Self::LimitShort,
        Self::LimitPersistent,
        Self::LimitLong,
        Self::LimitLongShort,
        Self::LimitAlarm,
        Self::Frozen,
        Self::FrozenEdge,
        Self::DeltaSpike,
        Self::DeltaStep,
        Self::Stale,
        Self::Context,
        Self::StateAlarm,
        Self::StateShort,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::LimitShort => "limit_short",
            Self::LimitPersistent => "limit_persistent",
            Self::LimitLong => "limit_long",
            Self::LimitLongShort => "limit_long_short",
            Self::LimitAlarm => "limit_alarm",
            Self::Frozen => "frozen",
            Self::FrozenEdge => "frozen_edge",
            Self::DeltaSpike => "delta_spike",
            Self::DeltaStep => "delta_step",
            Self::Stale => "stale",
            Self::Context => "context",
            Self::StateAlarm => "state_alarm",
            Self::StateShort => "state_short",
            Self::StaleEnd => "stale_end",
        }
    }

    /// The structure it happens in and the parameter it is about.
    fn target(self) -> (u16, &'static str) {
        match self {
            Self::LimitShort | Self::LimitPersistent | Self::Context => (1, "FPA_TEMP_1"),
            Self::Frozen | Self::FrozenEdge => (1, "FPA_TEMP_2"),
            Self::DeltaSpike => (1, "MIRROR_TEMP"),
            Self::DeltaStep => (2, "BUS_VOLTAGE"),
            Self::Stale => (2, "BUS_VOLTAGE"),
            Self::LimitAlarm => (2, "BATTERY_TEMP"),
            Self::LimitLong | Self::LimitLongShort => (3, "VIDEO_OFFSET_AF"),
            Self::StateAlarm | Self::StateShort => (4, "PAYLOAD_MODE"),
            Self::StaleEnd => (5, "STR_TEMP"),
        }
    }
}

/// One injected anomaly: where it is and the samples generated in its slot.
#[derive(Debug, Clone)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub sid: u16,
    /// Position of the target parameter in its structure.
    pub pos: usize,
    /// First sample index (of the structure) that the anomaly changes.
    pub first_index: u64,
    /// Number of samples it changes (or silences).
    pub n: u64,
    /// The slot `[start, end)`, OBT ns: the anomaly plus margins, protected from
    /// downlink losses and recorded for the truth.
    pub slot: (u64, u64),
    /// Samples of the structure generated in the slot: time and raw values.
    pub recorded: Vec<(u64, Vec<f64>)>,
}

/// Per-structure generation state.
#[derive(Debug, Clone)]
struct StructState {
    sid: u16,
    period_ns: u64,
    first_ns: u64,
    next_index: u64,
    rng: Pcg64,
    /// Last raw values of each parameter, newest last (at most NUDGE_DEPTH).
    history: Vec<Vec<f64>>,
    counters: Vec<f64>,
    /// Sample index ranges `[from, to)` in which the structure does not report.
    silences: Vec<(u64, u64)>,
}

impl StructState {
    /// Sampling time of sample `index` (saturating: far indices are after the end).
    fn time(&self, index: u64) -> u64 {
        self.first_ns
            .saturating_add(index.saturating_mul(self.period_ns))
    }
}

/// Simulated housekeeping of one day: an iterator of packets in time order.
pub struct HkSim {
    db: MissionDb,
    end_ns: u64,
    structs: Vec<StructState>,
    overrides: HashMap<(u16, u64), Vec<(usize, Override)>>,
    anomalies: Vec<Anomaly>,
    seq: u16,
    msg_counter: u16,
}

impl HkSim {
    /// Plans the day's housekeeping from `seed` (anomalies included if configured).
    pub fn new(
        seed: u64,
        start_obt_ns: u64,
        duration_s: f64,
        cfg: &HkConfig,
    ) -> Result<Self, HkError> {
        let db = mission_db()?;
        let end_ns = start_obt_ns + (duration_s.max(0.0) * 1e9) as u64;
        // Reports fall on whole seconds, which CUC represents exactly.
        let t0 = start_obt_ns.div_ceil(NS_PER_S) * NS_PER_S;
        let structs = db
            .structures
            .iter()
            .map(|s| StructState {
                sid: s.sid,
                period_ns: PERIOD_S[(s.sid - 1) as usize] * NS_PER_S,
                first_ns: t0 + s.sid as u64 * NS_PER_S,
                next_index: 0,
                rng: Pcg64::seed_from_u64(seed ^ 0x4B48_0000_0000_0000 ^ (s.sid as u64) << 32),
                history: vec![Vec::new(); s.params.len()],
                counters: vec![1000.0; s.params.len()],
                silences: Vec::new(),
            })
            .collect();
        let mut sim = HkSim {
            db,
            end_ns,
            structs,
            overrides: HashMap::new(),
            anomalies: Vec::new(),
            seq: 0,
            msg_counter: 0,
        };
        if cfg.anomalies {
            let mut rng = Pcg64::seed_from_u64(seed ^ 0xA40_0A11);
            sim.plan_anomalies(&mut rng, start_obt_ns, duration_s)?;
        }
        Ok(sim)
    }

    /// The mission database the reports follow (parsed from [`db::MISSION_DB_TOML`]).
    pub fn db(&self) -> &MissionDb {
        &self.db
    }

    /// The anomalies of the day, with the samples generated in their slots so far.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    /// Time ranges `[start, end)` (OBT ns) in which the downlink must not lose a
    /// housekeeping report, so the expected events stay exact.
    pub fn protected(&self) -> Vec<(u64, u64)> {
        self.anomalies.iter().map(|a| a.slot).collect()
    }

    /// The expected health events and non-events, once every packet has been
    /// generated. `end_of_data_ns` is the latest packet time of any housekeeping
    /// report that reached the ground intact (ICD §6 "end of the data").
    pub fn truth(&self, end_of_data_ns: u64) -> Result<HkTruth, HkError> {
        truth::derive(&self.db, &self.anomalies, end_of_data_ns)
    }

    fn structure_index(&self, sid: u16) -> usize {
        self.structs
            .iter()
            .position(|s| s.sid == sid)
            .expect("anomaly structures exist")
    }

    fn plan_anomalies(
        &mut self,
        rng: &mut Pcg64,
        start_ns: u64,
        duration_s: f64,
    ) -> Result<(), HkError> {
        let mut kinds = AnomalyKind::ALL_BUT_END.to_vec();
        for i in (1..kinds.len()).rev() {
            kinds.swap(i, rng.random_range(0..=i));
        }
        let shape: Vec<(AnomalyKind, u64, u64)> = kinds
            .iter()
            .map(|&k| {
                let (n, margin) = self.extent(k);
                (k, n, margin)
            })
            .collect();
        let slot_len = |sid: u16, n: u64, margin: u64| {
            2 * margin + (n + 1) * PERIOD_S[(sid - 1) as usize] * NS_PER_S
        };
        let lens: Vec<u64> = shape
            .iter()
            .map(|&(k, n, m)| slot_len(k.target().0, n, m))
            .collect();
        let end_silence = ((duration_s * 0.05) as u64).max(600) * NS_PER_S;
        let head = 300 * NS_PER_S;
        let tail = end_silence + 180 * NS_PER_S;
        let needed = head + lens.iter().sum::<u64>() + tail;
        let duration_ns = (duration_s.max(0.0) * 1e9) as u64;
        if needed > duration_ns {
            return Err(HkError::TooShort {
                duration_s,
                needed_s: needed.div_ceil(NS_PER_S),
            });
        }
        // Spread the spare time randomly between the slots (whole seconds).
        let slack_s = (duration_ns - needed) / NS_PER_S;
        let weights: Vec<f64> = (0..=lens.len()).map(|_| rng.random::<f64>()).collect();
        let total: f64 = weights.iter().sum();
        let mut cursor = start_ns + head;
        for (i, &(kind, n, margin)) in shape.iter().enumerate() {
            cursor += (slack_s as f64 * weights[i] / total) as u64 * NS_PER_S;
            self.place(rng, kind, n, margin, (cursor, cursor + lens[i]));
            cursor += lens[i];
        }
        // The star tracker falls silent for the last part of the day.
        let silence_start = self.end_ns - end_silence;
        self.place(
            rng,
            AnomalyKind::StaleEnd,
            u64::MAX,
            120 * NS_PER_S,
            (
                silence_start - 120 * NS_PER_S,
                silence_start + 60 * NS_PER_S,
            ),
        );
        Ok(())
    }

    /// Samples an anomaly changes and its margin (ns) on each side.
    fn extent(&self, kind: AnomalyKind) -> (u64, u64) {
        let (sid, name) = kind.target();
        let p = self.db.param(name).expect("target in database").persistence as u64;
        let period = PERIOD_S[(sid - 1) as usize];
        let n = match kind {
            AnomalyKind::LimitShort => p - 1,
            AnomalyKind::LimitPersistent => p,
            AnomalyKind::LimitLong => 12,
            AnomalyKind::LimitLongShort => p - 1,
            AnomalyKind::LimitAlarm => 9,
            AnomalyKind::Frozen => 40,
            AnomalyKind::FrozenEdge => {
                let frozen_s = self.db.param(name).and_then(|p| p.frozen_s).unwrap_or(0.0);
                frozen_s as u64 / period + 1
            }
            AnomalyKind::DeltaSpike => 2,
            AnomalyKind::DeltaStep => 10,
            AnomalyKind::Stale => 300u64.div_ceil(period),
            AnomalyKind::Context => 40,
            AnomalyKind::StateAlarm => 4,
            AnomalyKind::StateShort => 1,
            AnomalyKind::StaleEnd => u64::MAX,
        };
        let margin_s = 60.max((p + 2) * period);
        (n, margin_s * NS_PER_S)
    }

    /// Sets up the overrides (or silence) of one anomaly in `slot`.
    fn place(&mut self, rng: &mut Pcg64, kind: AnomalyKind, n: u64, margin: u64, slot: (u64, u64)) {
        let (sid, name) = kind.target();
        let si = self.structure_index(sid);
        let st = &self.structs[si];
        let j0 = (slot.0 + margin)
            .saturating_sub(st.first_ns)
            .div_ceil(st.period_ns);
        let structure = self.db.structure(sid).expect("structure exists");
        let pos_of = |name: &str| {
            structure
                .params
                .iter()
                .position(|p| p.name == name)
                .expect("parameter in structure")
        };
        let pos = pos_of(name);
        let mut set = |j: u64, pos: usize, ov: Override| {
            self.overrides.entry((sid, j)).or_default().push((pos, ov));
        };
        let jitter = |rng: &mut Pcg64, a: f64| rng.random_range(0.0..a);
        match kind {
            AnomalyKind::LimitShort => {
                set(j0, pos, Override::Eng(170.6 + jitter(rng, 0.2)));
                set(j0 + 1, pos, Override::Eng(171.3 + jitter(rng, 0.2)));
            }
            AnomalyKind::LimitPersistent => {
                set(j0, pos, Override::Eng(170.6 + jitter(rng, 0.2)));
                set(j0 + 1, pos, Override::Eng(172.0 + jitter(rng, 0.5)));
                set(j0 + 2, pos, Override::Eng(171.0 + jitter(rng, 0.2)));
            }
            AnomalyKind::LimitLong => {
                // A dip with a unique deepest sample (981 ADU, warning only).
                let profile = [988, 987, 986, 985, 984, 981, 983, 984, 985, 986, 987, 988];
                for (k, &v) in profile.iter().enumerate() {
                    let v = if v == 981 {
                        981.0
                    } else {
                        v as f64 - jitter(rng, 1.0).round()
                    };
                    set(j0 + k as u64, pos, Override::Eng(v));
                }
            }
            AnomalyKind::LimitLongShort => {
                for (k, v) in [987.0, 985.0, 986.0, 988.0].into_iter().enumerate() {
                    set(j0 + k as u64, pos, Override::Eng(v));
                }
            }
            AnomalyKind::LimitAlarm => {
                let peak = 41.0 + jitter(rng, 1.0);
                let profile = [24.0, 30.0, 36.0, 38.5, peak, 38.0, 36.5, 31.0, 25.0];
                for (k, &v) in profile.iter().enumerate() {
                    let v = if v == peak {
                        v
                    } else {
                        v + jitter(rng, 0.4) - 0.2
                    };
                    set(j0 + k as u64, pos, Override::Eng(v));
                }
            }
            AnomalyKind::Frozen | AnomalyKind::FrozenEdge => {
                // The run starts with the natural value at j0 and repeats it.
                for j in j0 + 1..j0 + n {
                    set(j, pos, Override::Hold);
                }
            }
            AnomalyKind::DeltaSpike => {
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                let jump = sign * (1.4 + jitter(rng, 0.3));
                set(j0, pos, Override::Offset(jump));
                set(j0 + 1, pos, Override::Offset(jump / 2.0));
            }
            AnomalyKind::DeltaStep => {
                let step = -(0.5 + jitter(rng, 0.2));
                for j in j0..j0 + n {
                    set(j, pos, Override::Offset(step));
                }
            }
            AnomalyKind::Context => {
                let depth = 11.5 + jitter(rng, 0.5);
                let mode = pos_of("HTR_MODE");
                let current = pos_of("HTR_CURRENT");
                for k in 0..n {
                    // Trapezoid: cool over the first quarter, hold, warm back over
                    // the last quarter (pre-heat before leaving ECO).
                    let u = k as f64 / (n - 1) as f64;
                    let shape = (4.0 * u).min(1.0).min(4.0 * (1.0 - u));
                    set(j0 + k, mode, Override::Raw(2.0));
                    set(j0 + k, pos, Override::Offset(-depth * shape));
                    set(j0 + k, current, Override::Offset(-0.8));
                }
            }
            AnomalyKind::StateAlarm => {
                for j in j0..j0 + n {
                    set(j, pos, Override::Raw(1.0));
                }
            }
            AnomalyKind::StateShort => set(j0, pos, Override::Raw(0.0)),
            AnomalyKind::Stale | AnomalyKind::StaleEnd => {
                let to = j0.saturating_add(n);
                self.structs[si].silences.push((j0, to));
            }
        }
        self.anomalies.push(Anomaly {
            kind,
            sid,
            pos,
            first_index: j0,
            n,
            slot,
            recorded: Vec::new(),
        });
    }

    /// The structure that reports next, skipping silenced samples; None at the end.
    fn next_structure(&mut self) -> Option<usize> {
        for st in &mut self.structs {
            while let Some(&(_, to)) = st
                .silences
                .iter()
                .find(|(from, to)| (*from..*to).contains(&st.next_index))
            {
                st.next_index = to;
            }
        }
        self.structs
            .iter()
            .enumerate()
            .filter(|(_, st)| st.time(st.next_index) < self.end_ns)
            .min_by_key(|(_, st)| (st.time(st.next_index), st.sid))
            .map(|(i, _)| i)
    }

    /// Generates the next report.
    fn report(&mut self, si: usize) -> GeneratedPacket {
        let sid = self.structs[si].sid;
        let j = self.structs[si].next_index;
        let t = self.structs[si].time(j);
        let structure = self.db.structure(sid).expect("structure exists").clone();
        let overrides = self.overrides.get(&(sid, j)).cloned().unwrap_or_default();
        let st = &mut self.structs[si];
        let mut raw = Vec::with_capacity(structure.params.len());
        for (pos, param) in structure.params.iter().enumerate() {
            let natural = natural_eng(param, st, pos, t);
            let ov = overrides.iter().find(|(p, _)| *p == pos).map(|(_, o)| *o);
            let history = &st.history[pos];
            let value = match (ov, natural) {
                (Some(Override::Hold), _) => *history.last().expect("a run holds a value"),
                (Some(Override::Raw(r)), _) => r,
                (Some(Override::Eng(e)), _) => eng_to_raw(param, e),
                (Some(Override::Offset(d)), Natural::Eng(e)) => eng_to_raw(param, e + d),
                (None, Natural::Eng(e)) => eng_to_raw(param, e),
                (_, Natural::Raw(r)) => r,
            };
            let value = if param.frozen_s.is_some() && ov != Some(Override::Hold) {
                nudge(param.ptype, value, history)
            } else {
                value
            };
            let history = &mut st.history[pos];
            if history.len() == NUDGE_DEPTH {
                history.remove(0);
            }
            history.push(value);
            raw.push(value);
        }
        st.next_index += 1;
        for a in &mut self.anomalies {
            if a.sid == sid && (a.slot.0..a.slot.1).contains(&t) {
                a.recorded.push((t, raw.clone()));
            }
        }
        let mut app = Vec::with_capacity(64);
        encode_hk(&mut app, &structure, &raw);
        let (svc, sub) = service::HOUSEKEEPING;
        let sec = SecondaryHeader::new(svc, sub, self.msg_counter, t);
        let mut bytes = Vec::with_capacity(app.len() + 22);
        encode_packet(&mut bytes, apid::HOUSEKEEPING, self.seq, &sec, &app)
            .expect("housekeeping reports are small");
        let packet = GeneratedPacket {
            apid: apid::HOUSEKEEPING,
            seq: self.seq,
            obt_ns: t,
            bytes,
            content: PacketContent::Housekeeping { sid, raw },
        };
        self.seq = (self.seq + 1) % meridian_telemetry::packet::SEQ_MODULUS;
        self.msg_counter = self.msg_counter.wrapping_add(1);
        packet
    }
}

impl Iterator for HkSim {
    type Item = GeneratedPacket;

    fn next(&mut self) -> Option<GeneratedPacket> {
        let si = self.next_structure()?;
        Some(self.report(si))
    }
}

/// Parses the built-in mission database.
pub fn mission_db() -> Result<MissionDb, MissionDbError> {
    MissionDb::parse(MISSION_DB_TOML, Path::new("mission_db.toml"))
}

enum Natural {
    Eng(f64),
    Raw(f64),
}

/// The natural value of a parameter at `t`; always draws from the structure's
/// random stream so the stream does not depend on the anomalies.
fn natural_eng(param: &Param, st: &mut StructState, pos: usize, t_ns: u64) -> Natural {
    let u: f64 = st.rng.random_range(-1.0..1.0);
    let day_phase = (t_ns % (86_400 * NS_PER_S)) as f64 / (86_400.0 * 1e9);
    match db::model(&param.name) {
        Model::Analog {
            base,
            daily_amp,
            noise,
            band,
        } => {
            let phase = pos as f64 * 0.7 + st.sid as f64;
            let v =
                base + daily_amp * (std::f64::consts::TAU * day_phase + phase).sin() + noise * u;
            Natural::Eng(v.clamp(band.0, band.1))
        }
        Model::State(raw) => Natural::Raw(raw),
        Model::Counter { rate_per_s } => {
            let mean = rate_per_s * (st.period_ns / NS_PER_S) as f64;
            // Increments of 0 or 1 (mean ≪ 1): a rare-event counter.
            if (u + 1.0) / 2.0 < mean {
                st.counters[pos] += 1.0;
            }
            Natural::Raw(st.counters[pos])
        }
        Model::Integer { lo, hi } => {
            let span = (hi - lo + 1) as f64;
            Natural::Raw(lo as f64 + ((u + 1.0) / 2.0 * span).floor().min(span - 1.0))
        }
    }
}

/// The raw value whose calibration is nearest `eng`, within the wire type.
pub fn eng_to_raw(param: &Param, eng: f64) -> f64 {
    let raw = match &param.calibration {
        Calibration::Polynomial(a) if a.len() == 2 => (eng - a[0]) / a[1],
        _ => eng,
    };
    let (lo, hi) = match param.ptype {
        ParamType::U8 => (0.0, 255.0),
        ParamType::U16 => (0.0, 65535.0),
        ParamType::U32 => (0.0, u32::MAX as f64),
        ParamType::I16 => (i16::MIN as f64, i16::MAX as f64),
        ParamType::I32 => (i32::MIN as f64, i32::MAX as f64),
        ParamType::F32 => return raw as f32 as f64,
    };
    raw.round().clamp(lo, hi)
}

/// Moves an integer raw value up by 1 LSB until it differs from `history`.
fn nudge(ptype: ParamType, mut value: f64, history: &[f64]) -> f64 {
    let lsb = if ptype == ParamType::F32 {
        (value.abs() as f32 * f32::EPSILON).max(f32::MIN_POSITIVE) as f64
    } else {
        1.0
    };
    while history.contains(&value) {
        value = if ptype == ParamType::F32 {
            (value + lsb) as f32 as f64
        } else {
            value + lsb
        };
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_database_parameter_has_a_model_and_a_period() {
        let db = mission_db().unwrap();
        assert_eq!(db.structures.len(), PERIOD_S.len());
        for p in db.params() {
            let natural_state_is_defined = match db::model(&p.name) {
                Model::State(raw) => {
                    p.calibration.is_states()
                        && {
                            let v = p.calibration.apply(raw);
                            matches!(v, meridian_core::records::Value::State(ref s) if !s.starts_with("UNDEFINED"))
                        }
                }
                _ => !p.calibration.is_states(),
            };
            assert!(natural_state_is_defined, "{}", p.name);
        }
    }

    #[test]
    fn nudge_avoids_recent_values() {
        assert_eq!(nudge(ParamType::U16, 5.0, &[5.0, 6.0, 9.0]), 7.0);
        assert_eq!(nudge(ParamType::U16, 4.0, &[5.0, 6.0]), 4.0);
    }

    #[test]
    fn too_short_days_are_refused_with_anomalies_only() {
        let e = HkSim::new(1, 0, 600.0, &HkConfig::default()).err().unwrap();
        assert!(e.to_string().contains("too short"), "{e}");
        let sim = HkSim::new(1, 0, 600.0, &HkConfig { anomalies: false }).unwrap();
        assert!(sim.count() > 100);
    }
}
