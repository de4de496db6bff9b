//! Housekeeping checks of ICD §6: limit, state, delta, stale and frozen, evaluated
//! per parameter in time order and carried across chunks and runs.
//!
//! # How samples are taken in
//!
//! [`HkChecker::feed`] takes `hk` records in time order, in slices of any size.
//! Samples with the same `obt_ns` form a *group*: every sample of a group first
//! updates the context values (a context is evaluated with the value of its
//! parameter *at or before* the sample time, so a context parameter sampled in the
//! same packet counts), then every sample is checked. The newest group is held
//! back until a later time arrives, so a split at any point, even inside a group,
//! gives the same events. A sample older than the group being collected cannot be
//! checked in order any more: it is counted as *late* and skipped. A record whose
//! parameter is not in the mission database is counted as *unknown* and skipped.
//!
//! # Decisions where ICD §6 is silent
//!
//! * **Engineering value**: the record's numeric `eng` is used; a record whose
//!   `eng` is a state name on a numeric parameter is recalibrated from `raw`. State
//!   parameters are checked on `raw`, mapped through the database's states.
//! * **Limits in force**: the first context whose parameter currently has the
//!   context's value supplies the limits; a context that sets only warning (or only
//!   alarm) limits keeps the parameter's default for the other kind. A parameter
//!   with alarm but no warning limits opens limit events on its alarm limits.
//!   Before a context parameter has reported, no context matches.
//! * **NaN** (raw or engineering): never within limits, so it violates and raises
//!   the alarm; it is the *worst* value only if no finite violation exists. A
//!   change to or from NaN is not a change (IEEE comparisons are false), so it
//!   ends a delta episode. NaN is never identical to anything, NaN included: it
//!   ends a frozen run and starts none.
//! * **Out-of-range raw values** are checked like any other: a raw value of a state
//!   parameter with no state name is the state `UNDEFINED(raw)`, never expected.
//! * **A parameter that never reports**: the checked span starts at the first
//!   housekeeping sample of any parameter ever fed (persisted across runs). A
//!   parameter with `stale_s` that is silent from there for longer than `stale_s`
//!   gets an ordinary `stale` event starting at the span start (its message says it
//!   has never reported); its first sample, if one ever comes, closes it.
//! * **Open delta episode**: an episode whose last pair of samples was a change
//!   may still grow, so it is reported open (`end_obt_ns` null) at the end of the
//!   data, like limit, state and frozen episodes.
//! * **Across runs**: [`HkChecker::finish`] checks the held last group and reports
//!   open events, but returns the state from *before* that group, so the next run
//!   may still add samples of the same time. Events closed while feeding are
//!   *settled*; those closed in the held group or still open are *provisional*
//!   and reported again by the next run (closed or still open, same
//!   `start_obt_ns`): `(param, check, start_obt_ns)` identifies an episode and the
//!   later report wins. Runs over ordered chunks never split a time group; a split
//!   inside one can only change a provisional event, never a settled one.
//! * **Duplicate times**: a parameter is expected to have at most one sample per
//!   time (ordered chunks keep one packet per structure and time); duplicates are
//!   checked in the order given.

use crate::exact;
use meridian_core::records::{HealthEvent, Hk, Severity, Value};
use meridian_telemetry::mission_db::{Calibration, ContextValue, Limits, MissionDb, Param};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Version of [`CheckerState`]'s JSON form.
pub const STATE_FORMAT: u32 = 1;

/// Names of the housekeeping checks (the `check` field of their events).
pub mod check {
    pub const LIMIT: &str = "limit";
    pub const STATE: &str = "state";
    pub const DELTA: &str = "delta";
    pub const STALE: &str = "stale";
    pub const FROZEN: &str = "frozen";
}

/// Everything the checker must remember between runs, by parameter name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckerState {
    pub format: u32,
    /// Time of the first sample ever fed: the start of the checked span.
    pub first_obt_ns: Option<u64>,
    /// Latest packet time of any housekeeping record fed: the end of the data.
    pub end_of_data_ns: Option<u64>,
    /// Time of the newest group already checked.
    pub last_checked_ns: Option<u64>,
    /// The newest group, not yet checked (see the module docs).
    pub pending: Vec<PendingSample>,
    pub params: BTreeMap<String, ParamState>,
    /// Samples checked over all runs.
    pub samples_checked: u64,
}

impl Default for CheckerState {
    fn default() -> Self {
        Self {
            format: STATE_FORMAT,
            first_obt_ns: None,
            end_of_data_ns: None,
            last_checked_ns: None,
            pending: Vec::new(),
            params: BTreeMap::new(),
            samples_checked: 0,
        }
    }
}

/// A sample of the newest group, held until its group is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSample {
    pub param: String,
    pub obt_ns: u64,
    #[serde(with = "exact")]
    pub raw: f64,
    #[serde(with = "exact")]
    pub eng: f64,
}

/// Per-parameter memory of every check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamState {
    /// Value for contexts (engineering value; raw value of a state parameter).
    pub context_value: Option<Sample>,
    /// The previous checked sample (delta, stale).
    pub last: Option<Sample>,
    pub limit: Episode,
    pub state: Episode,
    pub delta: Option<DeltaEpisode>,
    pub frozen: Option<FrozenRun>,
}

/// One sample as the checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub obt_ns: u64,
    #[serde(with = "exact")]
    pub raw: f64,
    #[serde(with = "exact")]
    pub eng: f64,
}

/// A run of violations (limit or state), before and after it opens an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The persistence was reached: this is an event.
    pub open: bool,
    /// Consecutive violations so far (meaningful before opening).
    pub bad_run: u32,
    /// Consecutive good samples since the last violation (meaningful when open).
    pub good_run: u32,
    pub start_ns: u64,
    pub good_start_ns: u64,
    /// Violating samples of the episode.
    pub samples: u64,
    pub alarm: bool,
    /// Worst value (limit: engineering value; state: raw value of the first).
    #[serde(with = "exact")]
    pub worst: f64,
    #[serde(with = "exact")]
    pub worst_excess: f64,
}

/// Consecutive changes larger than `delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaEpisode {
    pub start_ns: u64,
    pub end_ns: u64,
    #[serde(with = "exact")]
    pub worst: f64,
    pub changes: u64,
}

/// A run of identical raw values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenRun {
    pub start_ns: u64,
    #[serde(with = "exact")]
    pub raw: f64,
    #[serde(with = "exact")]
    pub eng: f64,
    pub samples: u64,
    /// Longer than `frozen_s`: an event.
    pub open: bool,
}

/// What a checker run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct HkOutcome {
    /// Events that closed while data was fed: final, no later run changes them.
    pub settled: Vec<HealthEvent>,
    /// Events that closed in the held last time group, or are still open at the
    /// end of the data: the next run reports them again (same `param`, `check`,
    /// `start_obt_ns`), closed or still open.
    pub provisional: Vec<HealthEvent>,
    /// The state to resume from in the next run.
    pub state: CheckerState,
    pub stats: HkStats,
}

impl HkOutcome {
    /// All events of the run, sorted by (start, param, check).
    pub fn events(&self) -> Vec<HealthEvent> {
        let mut all: Vec<HealthEvent> = self
            .settled
            .iter()
            .chain(&self.provisional)
            .cloned()
            .collect();
        sort_events(&mut all);
        all
    }
}

/// Counters of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HkStats {
    /// Samples checked in this run.
    pub samples_checked: u64,
    /// Samples older than data already checked (skipped).
    pub late: u64,
    /// Records naming a parameter that the mission database does not have.
    pub unknown: u64,
    /// Parameters of the restored state that the database no longer has.
    pub dropped_params: Vec<String>,
}

/// Limits in force in one regime (default or one context).
#[derive(Debug, Clone, Copy)]
struct Band {
    /// Limits whose violation counts (warning, else alarm).
    trigger: Option<Limits>,
    alarm: Option<Limits>,
}

/// When a context applies: its parameter's current value.
#[derive(Debug, Clone)]
enum Condition {
    /// Engineering value equal to this.
    Number(f64),
    /// Raw value among these (the raw values named by the context's state).
    Raws(Vec<f64>),
}

impl Condition {
    fn holds(&self, value: f64) -> bool {
        match self {
            Condition::Number(n) => value == *n,
            Condition::Raws(raws) => raws.contains(&value),
        }
    }
}

/// A parameter's checks, compiled from the database for speed.
struct Rule<'db> {
    param: &'db Param,
    default_band: Band,
    contexts: Vec<(usize, Condition, Band)>,
    limit_check: bool,
    /// Raw values of expected states (state check), if any.
    expected: Option<Vec<f64>>,
    is_states: bool,
    delta: Option<f64>,
    stale_ns: Option<u64>,
    frozen_ns: Option<u64>,
}

/// `x > seconds` for integer ns `x` ⟺ `x > floor(seconds · 1e9)`.
fn threshold_ns(seconds: f64) -> u64 {
    (seconds * 1e9).floor() as u64
}

impl<'db> Rule<'db> {
    fn compile(db: &'db MissionDb, param: &'db Param, index: &HashMap<&str, usize>) -> Self {
        let band = |warning: Option<Limits>, alarm: Option<Limits>| Band {
            trigger: warning.or(alarm),
            alarm,
        };
        let default_band = band(param.warning, param.alarm);
        let contexts: Vec<_> = param
            .contexts
            .iter()
            .filter_map(|c| {
                let target = *index.get(c.param.as_str())?;
                let condition = match (&c.equals, &db.param(&c.param)?.calibration) {
                    (ContextValue::State(name), Calibration::States(states)) => Condition::Raws(
                        states
                            .iter()
                            .filter(|(_, n)| *n == name)
                            .map(|(&k, _)| k as f64)
                            .collect(),
                    ),
                    (ContextValue::Number(n), _) => Condition::Number(*n),
                    (ContextValue::State(_), _) => return None,
                };
                let b = band(c.warning.or(param.warning), c.alarm.or(param.alarm));
                Some((target, condition, b))
            })
            .collect();
        let limit_check =
            default_band.trigger.is_some() || contexts.iter().any(|(_, _, b)| b.trigger.is_some());
        let expected = match (&param.calibration, &param.expected) {
            (Calibration::States(states), Some(expected)) => Some(
                states
                    .iter()
                    .filter(|(_, n)| expected.contains(n))
                    .map(|(&k, _)| k as f64)
                    .collect(),
            ),
            _ => None,
        };
        Rule {
            param,
            default_band,
            contexts,
            limit_check,
            expected,
            is_states: param.calibration.is_states(),
            delta: param.delta,
            stale_ns: param.stale_s.map(threshold_ns),
            frozen_ns: param.frozen_s.map(threshold_ns),
        }
    }

    /// Engineering value as a display value (state names for state parameters).
    fn display(&self, raw: f64, eng: f64) -> Value {
        if self.is_states {
            self.param.calibration.apply(raw)
        } else {
            Value::Number(eng)
        }
    }

    fn unit(&self) -> &str {
        self.param.unit.as_deref().unwrap_or("")
    }
}

/// One sample in the group buffer: parameter index and values.
#[derive(Debug, Clone, Copy)]
struct Item {
    param: usize,
    sample: Sample,
}

/// The ICD §6 housekeeping checker. See the module docs.
pub struct HkChecker<'db> {
    rules: Vec<Rule<'db>>,
    names: Vec<&'db str>,
    index: HashMap<&'db str, usize>,
    /// Learned successor of each parameter in the input order (lookup shortcut).
    successor: Vec<usize>,
    previous: usize,
    params: Vec<ParamState>,
    first_obt_ns: Option<u64>,
    end_of_data_ns: Option<u64>,
    last_checked_ns: Option<u64>,
    pending: Vec<Item>,
    events: Vec<HealthEvent>,
    total_checked: u64,
    stats: HkStats,
}

impl<'db> HkChecker<'db> {
    /// A checker for `db`, resuming from `state` (None: a first run).
    pub fn new(db: &'db MissionDb, state: Option<CheckerState>) -> Self {
        let names: Vec<&str> = db.params().map(|p| p.name.as_str()).collect();
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let rules = db.params().map(|p| Rule::compile(db, p, &index)).collect();
        let n = names.len();
        let mut checker = HkChecker {
            rules,
            successor: (0..n).map(|i| (i + 1) % n.max(1)).collect(),
            previous: n.saturating_sub(1),
            params: vec![ParamState::default(); n],
            names,
            index,
            first_obt_ns: None,
            end_of_data_ns: None,
            last_checked_ns: None,
            pending: Vec::new(),
            events: Vec::new(),
            total_checked: 0,
            stats: HkStats::default(),
        };
        if let Some(state) = state {
            checker.restore(state);
        }
        checker
    }

    fn restore(&mut self, state: CheckerState) {
        self.first_obt_ns = state.first_obt_ns;
        self.end_of_data_ns = state.end_of_data_ns;
        self.last_checked_ns = state.last_checked_ns;
        self.total_checked = state.samples_checked;
        for (name, ps) in state.params {
            match self.index.get(name.as_str()) {
                Some(&i) => self.params[i] = ps,
                None => self.stats.dropped_params.push(name),
            }
        }
        for p in state.pending {
            if let Some(&param) = self.index.get(p.param.as_str()) {
                self.pending.push(Item {
                    param,
                    sample: Sample {
                        obt_ns: p.obt_ns,
                        raw: p.raw,
                        eng: p.eng,
                    },
                });
            }
        }
    }

    /// The state to persist: resuming from it and feeding the rest of the data
    /// gives the same events as one uninterrupted run.
    pub fn state(&self) -> CheckerState {
        CheckerState {
            format: STATE_FORMAT,
            first_obt_ns: self.first_obt_ns,
            end_of_data_ns: self.end_of_data_ns,
            last_checked_ns: self.last_checked_ns,
            pending: self
                .pending
                .iter()
                .map(|it| PendingSample {
                    param: self.names[it.param].to_owned(),
                    obt_ns: it.sample.obt_ns,
                    raw: it.sample.raw,
                    eng: it.sample.eng,
                })
                .collect(),
            params: self
                .names
                .iter()
                .zip(&self.params)
                .filter(|(_, ps)| **ps != ParamState::default())
                .map(|(n, ps)| ((*n).to_owned(), ps.clone()))
                .collect(),
            samples_checked: self.total_checked + self.stats.samples_checked,
        }
    }

    /// End of the data so far: the latest packet time of any record fed.
    pub fn end_of_data_ns(&self) -> Option<u64> {
        self.end_of_data_ns
    }

    fn lookup(&mut self, name: &str) -> Option<usize> {
        let guess = *self.successor.get(self.previous)?;
        let found = if self.names[guess] == name {
            guess
        } else {
            let i = *self.index.get(name)?;
            self.successor[self.previous] = i;
            i
        };
        self.previous = found;
        Some(found)
    }

    /// Feeds records in time order (see the module docs for late and unknown ones).
    pub fn feed(&mut self, records: &[Hk]) {
        for hk in records {
            let packet_ns = hk.packet_obt_ns.max(hk.obt_ns);
            self.end_of_data_ns = Some(self.end_of_data_ns.map_or(packet_ns, |e| e.max(packet_ns)));
            let Some(param) = self.lookup(&hk.param) else {
                self.stats.unknown += 1;
                continue;
            };
            let t = hk.obt_ns;
            let group_ns = self.pending.first().map(|it| it.sample.obt_ns);
            let late = match group_ns {
                Some(g) => t < g,
                None => self.last_checked_ns.is_some_and(|c| t <= c),
            };
            if late {
                self.stats.late += 1;
                continue;
            }
            if group_ns.is_some_and(|g| t > g) {
                self.check_pending();
            }
            self.first_obt_ns.get_or_insert(t);
            let rule = &self.rules[param];
            let eng = match (&hk.eng, rule.is_states) {
                (_, true) => hk.raw,
                (Value::Number(x), false) => *x,
                (Value::State(_), false) => rule
                    .param
                    .calibration
                    .apply(hk.raw)
                    .as_number()
                    .unwrap_or(f64::NAN),
            };
            self.pending.push(Item {
                param,
                sample: Sample {
                    obt_ns: t,
                    raw: hk.raw,
                    eng,
                },
            });
        }
    }

    /// Checks the held group: contexts first, then every sample.
    fn check_pending(&mut self) {
        let group = std::mem::take(&mut self.pending);
        for it in &group {
            self.params[it.param].context_value = Some(it.sample);
        }
        for it in &group {
            self.check_sample(it.param, it.sample);
        }
        self.stats.samples_checked += group.len() as u64;
        if let Some(first) = group.first() {
            self.last_checked_ns = Some(first.sample.obt_ns);
        }
        self.pending = group;
        self.pending.clear();
    }

    fn check_sample(&mut self, i: usize, s: Sample) {
        let rule = &self.rules[i];
        if rule.limit_check {
            let band = self.band_at(i);
            self.check_limit(i, s, band);
        }
        if self.rules[i].expected.is_some() {
            self.check_state(i, s);
        }
        self.check_stale(i, s);
        self.check_delta(i, s);
        self.check_frozen(i, s);
        self.params[i].last = Some(s);
    }

    /// Limits in force for parameter `i` now (first matching context wins).
    fn band_at(&self, i: usize) -> Band {
        let rule = &self.rules[i];
        rule.contexts
            .iter()
            .find(|(target, condition, _)| {
                self.params[*target].context_value.is_some_and(|v| {
                    condition.holds(if self.rules[*target].is_states {
                        v.raw
                    } else {
                        v.eng
                    })
                })
            })
            .map_or(rule.default_band, |(_, _, b)| *b)
    }

    fn check_limit(&mut self, i: usize, s: Sample, band: Band) {
        let Some(trigger) = band.trigger else {
            return self.step_episode(i, true, s, false, false, 0.0);
        };
        let v = s.eng;
        let violating = !trigger.contains(v);
        // Without warning limits the trigger is the alarm band itself.
        let alarm = violating && band.alarm.is_some_and(|a| !a.contains(v));
        let excess = if v.is_nan() {
            f64::NEG_INFINITY
        } else {
            trigger.excess(v)
        };
        self.step_episode(i, true, s, violating, alarm, excess);
    }

    fn check_state(&mut self, i: usize, s: Sample) {
        let expected = self.rules[i]
            .expected
            .as_ref()
            .expect("state check configured");
        let violating = !expected.contains(&s.raw);
        self.step_episode(i, false, s, violating, true, 0.0);
    }

    /// Advances the limit (`limit == true`) or state episode of parameter `i`.
    fn step_episode(
        &mut self,
        i: usize,
        limit: bool,
        s: Sample,
        violating: bool,
        alarm: bool,
        excess: f64,
    ) {
        let persistence = self.rules[i].param.persistence;
        let ps = &mut self.params[i];
        let ep = if limit { &mut ps.limit } else { &mut ps.state };
        if violating {
            if !ep.open && ep.bad_run == 0 {
                *ep = Episode {
                    start_ns: s.obt_ns,
                    worst: if limit { s.eng } else { s.raw },
                    worst_excess: excess,
                    ..Episode::default()
                };
            } else if excess > ep.worst_excess {
                ep.worst = s.eng;
                ep.worst_excess = excess;
            }
            ep.bad_run = ep.bad_run.saturating_add(1);
            ep.samples += 1;
            ep.good_run = 0;
            ep.alarm |= alarm;
            if ep.bad_run >= persistence {
                ep.open = true;
            }
        } else if ep.open {
            if ep.good_run == 0 {
                ep.good_start_ns = s.obt_ns;
            }
            ep.good_run += 1;
            if ep.good_run >= persistence {
                let done = std::mem::take(ep);
                let event = self.episode_event(i, limit, &done, Some(done.good_start_ns));
                self.events.push(event);
            }
        } else {
            ep.bad_run = 0;
        }
    }

    fn check_stale(&mut self, i: usize, s: Sample) {
        let Some(threshold) = self.rules[i].stale_ns else {
            return;
        };
        let since = self.params[i].last.map(|l| l.obt_ns).or(self.first_obt_ns);
        if let Some(since) = since
            && s.obt_ns.saturating_sub(since) > threshold
        {
            let never = self.params[i].last.is_none();
            let event = self.stale_event(i, since, Some(s.obt_ns), s.obt_ns - since, never);
            self.events.push(event);
        }
    }

    fn check_delta(&mut self, i: usize, s: Sample) {
        let (Some(delta), Some(prev)) = (self.rules[i].delta, self.params[i].last) else {
            return;
        };
        let change = s.eng - prev.eng;
        let ps = &mut self.params[i];
        if change.abs() > delta {
            match &mut ps.delta {
                Some(ep) => {
                    ep.end_ns = s.obt_ns;
                    ep.changes += 1;
                    if change.abs() > ep.worst.abs() {
                        ep.worst = change;
                    }
                }
                None => {
                    ps.delta = Some(DeltaEpisode {
                        start_ns: prev.obt_ns,
                        end_ns: s.obt_ns,
                        worst: change,
                        changes: 1,
                    })
                }
            }
        } else if let Some(ep) = ps.delta.take() {
            let event = self.delta_event(i, &ep, Some(ep.end_ns));
            self.events.push(event);
        }
    }

    fn check_frozen(&mut self, i: usize, s: Sample) {
        let Some(threshold) = self.rules[i].frozen_ns else {
            return;
        };
        let ps = &mut self.params[i];
        match &mut ps.frozen {
            Some(run) if run.raw == s.raw => {
                run.samples += 1;
                if s.obt_ns - run.start_ns > threshold {
                    run.open = true;
                }
            }
            _ => {
                let ended = ps.frozen.take();
                if !s.raw.is_nan() {
                    ps.frozen = Some(FrozenRun {
                        start_ns: s.obt_ns,
                        raw: s.raw,
                        eng: s.eng,
                        samples: 1,
                        open: false,
                    });
                }
                if let Some(run) = ended.filter(|r| r.open) {
                    let event = self.frozen_event(i, &run, Some(s.obt_ns));
                    self.events.push(event);
                }
            }
        }
    }

    /// Ends the run at the end of the data (the latest packet time fed, over all
    /// runs): checks the held group, reports open events, and returns the state
    /// to resume from (taken *before* the held group was checked, so the next run
    /// may still add to that group).
    pub fn finish(self) -> HkOutcome {
        let end = self.end_of_data_ns;
        self.finish_at(end)
    }

    /// [`HkChecker::finish`] with an explicit end of the data (for stale events).
    pub fn finish_at(mut self, end_of_data_ns: Option<u64>) -> HkOutcome {
        let state = self.state();
        let mut settled = std::mem::take(&mut self.events);
        self.check_pending();
        for i in 0..self.params.len() {
            self.report_open(i, end_of_data_ns);
        }
        let mut provisional = std::mem::take(&mut self.events);
        sort_events(&mut settled);
        sort_events(&mut provisional);
        HkOutcome {
            settled,
            provisional,
            state,
            stats: self.stats,
        }
    }

    fn report_open(&mut self, i: usize, end_of_data_ns: Option<u64>) {
        let ps = self.params[i].clone();
        if ps.limit.open {
            let e = self.episode_event(i, true, &ps.limit, None);
            self.events.push(e);
        }
        if ps.state.open {
            let e = self.episode_event(i, false, &ps.state, None);
            self.events.push(e);
        }
        if let Some(ep) = &ps.delta {
            let e = self.delta_event(i, ep, None);
            self.events.push(e);
        }
        if let Some(run) = ps.frozen.as_ref().filter(|r| r.open) {
            let e = self.frozen_event(i, run, None);
            self.events.push(e);
        }
        let since = ps.last.map(|l| l.obt_ns).or(self.first_obt_ns);
        if let (Some(threshold), Some(since), Some(end)) =
            (self.rules[i].stale_ns, since, end_of_data_ns)
            && end.saturating_sub(since) > threshold
        {
            let e = self.stale_event(i, since, None, end - since, ps.last.is_none());
            self.events.push(e);
        }
    }

    fn episode_event(&self, i: usize, limit: bool, ep: &Episode, end: Option<u64>) -> HealthEvent {
        let rule = &self.rules[i];
        let name = &rule.param.name;
        let open = if end.is_none() { " (still open)" } else { "" };
        if limit {
            let severity = if ep.alarm {
                Severity::Alarm
            } else {
                Severity::Warning
            };
            let unit = rule.unit();
            let beyond = if ep.worst_excess.is_finite() {
                format!(
                    ", {} {unit} beyond the limit in force",
                    fmt_num(ep.worst_excess)
                )
            } else {
                String::new()
            };
            HealthEvent {
                param: name.clone(),
                check: check::LIMIT.into(),
                severity,
                start_obt_ns: ep.start_ns,
                end_obt_ns: end,
                worst: Value::Number(ep.worst),
                samples: ep.samples,
                message: format!(
                    "{name} outside its warning limits for {} samples{}{open}: worst {} {unit}{beyond}",
                    ep.samples,
                    if ep.alarm {
                        ", beyond the alarm limits"
                    } else {
                        ""
                    },
                    fmt_num(ep.worst),
                ),
            }
        } else {
            let state = rule.param.calibration.apply(ep.worst);
            let state_name = match &state {
                Value::State(s) => s.clone(),
                Value::Number(x) => fmt_num(*x),
            };
            HealthEvent {
                param: name.clone(),
                check: check::STATE.into(),
                severity: Severity::Alarm,
                start_obt_ns: ep.start_ns,
                end_obt_ns: end,
                worst: state,
                samples: ep.samples,
                message: format!(
                    "{name} in an unexpected state for {} samples{open}: first {state_name}",
                    ep.samples
                ),
            }
        }
    }

    fn delta_event(&self, i: usize, ep: &DeltaEpisode, end: Option<u64>) -> HealthEvent {
        let rule = &self.rules[i];
        let name = &rule.param.name;
        HealthEvent {
            param: name.clone(),
            check: check::DELTA.into(),
            severity: Severity::Warning,
            start_obt_ns: ep.start_ns,
            end_obt_ns: end,
            worst: Value::Number(ep.worst),
            samples: ep.changes,
            message: format!(
                "{name} jumped by more than {} {unit} between samples ({} changes{}): largest {} {unit}",
                fmt_num(rule.delta.unwrap_or(f64::NAN)),
                ep.changes,
                if end.is_none() { ", still open" } else { "" },
                fmt_num(ep.worst),
                unit = rule.unit(),
            ),
        }
    }

    fn stale_event(
        &self,
        i: usize,
        since: u64,
        end: Option<u64>,
        silence_ns: u64,
        never: bool,
    ) -> HealthEvent {
        let rule = &self.rules[i];
        let name = &rule.param.name;
        let seconds = silence_ns as f64 / 1e9;
        HealthEvent {
            param: name.clone(),
            check: check::STALE.into(),
            severity: Severity::Warning,
            start_obt_ns: since,
            end_obt_ns: end,
            worst: Value::Number(seconds),
            samples: 0,
            message: format!(
                "{name} {} for {} s (stale after {} s){}",
                if never {
                    "never reported since the start of the checked span"
                } else {
                    "silent"
                },
                fmt_num(seconds),
                fmt_num(rule.param.stale_s.unwrap_or(f64::NAN)),
                if end.is_none() {
                    ", still silent at the end of the data"
                } else {
                    ""
                },
            ),
        }
    }

    fn frozen_event(&self, i: usize, run: &FrozenRun, end: Option<u64>) -> HealthEvent {
        let rule = &self.rules[i];
        let name = &rule.param.name;
        let value = rule.display(run.raw, run.eng);
        let shown = match &value {
            Value::Number(x) => format!("{} {}", fmt_num(*x), rule.unit()),
            Value::State(s) => s.clone(),
        };
        HealthEvent {
            param: name.clone(),
            check: check::FROZEN.into(),
            severity: Severity::Warning,
            start_obt_ns: run.start_ns,
            end_obt_ns: end,
            worst: value,
            samples: run.samples,
            message: format!(
                "{name} frozen at {} for {} samples (limit {} s){}",
                shown.trim_end(),
                run.samples,
                fmt_num(rule.param.frozen_s.unwrap_or(f64::NAN)),
                if end.is_none() { ", still frozen" } else { "" },
            ),
        }
    }
}

/// Short human form of a number for messages.
pub fn fmt_num(x: f64) -> String {
    if x.is_finite() && x == x.round() && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.is_finite() && x.abs() >= 1e-3 && x.abs() < 1e6 {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{x:e}")
    }
}

/// The deterministic order of events in products and reports.
pub fn sort_events(events: &mut [HealthEvent]) {
    events.sort_by(|a, b| {
        (
            a.start_obt_ns,
            &a.param,
            &a.check,
            a.end_obt_ns.unwrap_or(u64::MAX),
        )
            .cmp(&(
                b.start_obt_ns,
                &b.param,
                &b.check,
                b.end_obt_ns.unwrap_or(u64::MAX),
            ))
    });
}
