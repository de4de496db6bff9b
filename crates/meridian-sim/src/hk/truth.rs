//! The health events (and deliberate non-events) an ICD §6 checker must report
//! for the injected anomalies, derived from the samples generated in each
//! anomaly's slot.
//!
//! Each derivation applies the ICD §6 rule of its check to the slot's samples
//! (persistence, inclusive limits, contexts evaluated with the value at the same
//! sample time, episode ends) and also verifies that the anomaly came out as
//! designed, so a change to the generator that would make the truth ambiguous
//! (a tie for `worst`, an excursion one sample too long) fails loudly instead.

use super::{Anomaly, AnomalyKind, HkError};
use meridian_core::records::{Severity, Value};
use meridian_core::time::NS_PER_S;
use meridian_telemetry::mission_db::{ContextValue, Limits, MissionDb, Param, Structure};
use serde::{Deserialize, Serialize};

/// One health event a correct checker reports (ICD §6, §9 field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthEvent {
    pub param: String,
    pub check: String,
    pub severity: Severity,
    pub start_obt_ns: u64,
    pub end_obt_ns: Option<u64>,
    pub worst: Value,
    pub samples: u64,
    /// The injected anomaly that causes it.
    pub anomaly: String,
}

/// An injected condition that must NOT produce an event, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NonEvent {
    pub anomaly: String,
    pub param: String,
    /// The check that must stay quiet.
    pub check: String,
    pub start_obt_ns: u64,
    pub end_obt_ns: u64,
    pub samples: u64,
    pub reason: String,
}

/// Everything the housekeeping truth holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HkTruth {
    pub events: Vec<TruthEvent>,
    pub non_events: Vec<NonEvent>,
}

/// Derives the truth of every anomaly; `end_of_data_ns` closes open silences.
pub fn derive(
    db: &MissionDb,
    anomalies: &[Anomaly],
    end_of_data_ns: u64,
) -> Result<HkTruth, HkError> {
    let mut truth = HkTruth::default();
    for a in anomalies {
        let structure = db.structure(a.sid).expect("anomaly structure exists");
        let d = Derivation {
            a,
            structure,
            param: &structure.params[a.pos],
        };
        match a.kind {
            AnomalyKind::LimitShort
            | AnomalyKind::LimitPersistent
            | AnomalyKind::LimitLong
            | AnomalyKind::LimitLongShort
            | AnomalyKind::LimitAlarm => d.limit(&mut truth)?,
            AnomalyKind::Frozen | AnomalyKind::FrozenEdge => d.frozen(&mut truth)?,
            AnomalyKind::DeltaSpike | AnomalyKind::DeltaStep => d.delta(&mut truth)?,
            AnomalyKind::Stale => d.stale(&mut truth)?,
            AnomalyKind::StaleEnd => d.stale_end(&mut truth, end_of_data_ns)?,
            AnomalyKind::Context => d.context(&mut truth)?,
            AnomalyKind::StateAlarm | AnomalyKind::StateShort => d.state(&mut truth)?,
        }
    }
    truth.events.sort_by(|x, y| {
        (x.start_obt_ns, &x.param, &x.check).cmp(&(y.start_obt_ns, &y.param, &y.check))
    });
    truth
        .non_events
        .sort_by(|x, y| (x.start_obt_ns, &x.param).cmp(&(y.start_obt_ns, &y.param)));
    Ok(truth)
}

/// Warning and alarm limits in force for `param` in one report `row` of its
/// structure: the first matching context (evaluated with the value in the same
/// report, i.e. at the sample time) or the defaults.
pub fn limits_in_force(
    structure: &Structure,
    row: &[f64],
    param: &Param,
) -> (Option<Limits>, Option<Limits>) {
    for c in &param.contexts {
        let Some(ci) = structure.params.iter().position(|p| p.name == c.param) else {
            continue;
        };
        let value = structure.params[ci].calibration.apply(row[ci]);
        if c.equals.matches(&value) {
            return (c.warning.or(param.warning), c.alarm.or(param.alarm));
        }
    }
    (param.warning, param.alarm)
}

/// Runs `[from, to)` of consecutive indices where `flag` holds.
fn runs(flags: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < flags.len() {
        if flags[i] {
            let from = i;
            while i < flags.len() && flags[i] {
                i += 1;
            }
            out.push((from, i));
        } else {
            i += 1;
        }
    }
    out
}

struct Derivation<'a> {
    a: &'a Anomaly,
    structure: &'a Structure,
    param: &'a Param,
}

impl Derivation<'_> {
    fn fail(&self, detail: String) -> HkError {
        HkError::Inconsistent {
            anomaly: self.a.kind.name(),
            detail,
        }
    }

    fn times(&self) -> Vec<u64> {
        self.a.recorded.iter().map(|(t, _)| *t).collect()
    }

    fn raws(&self) -> Vec<f64> {
        self.a.recorded.iter().map(|(_, r)| r[self.a.pos]).collect()
    }

    fn eng(&self, raw: f64) -> f64 {
        self.param
            .calibration
            .apply(raw)
            .as_number()
            .expect("numeric parameter")
    }

    /// The single run of flagged samples, checked against the design length.
    fn one_run(&self, flags: &[bool], expected: Option<u64>) -> Result<(usize, usize), HkError> {
        let r = runs(flags);
        let [(from, to)] = r[..] else {
            return Err(self.fail(format!("expected one run of samples, found {r:?}")));
        };
        if expected.is_some_and(|n| n != (to - from) as u64) {
            return Err(self.fail(format!(
                "run of {} samples, designed {expected:?}",
                to - from
            )));
        }
        Ok((from, to))
    }

    /// The end of an episode whose last violating sample is `to - 1`: the first of
    /// `persistence` good samples, which the slot must contain.
    fn episode_end(&self, flags: &[bool], to: usize) -> Result<u64, HkError> {
        let p = self.param.persistence as usize;
        if to + p > flags.len() || flags[to..to + p].iter().any(|&f| f) {
            return Err(self.fail("fewer than `persistence` good samples close the episode".into()));
        }
        Ok(self.a.recorded[to].0)
    }

    fn non_event(
        &self,
        truth: &mut HkTruth,
        check: &str,
        span: (u64, u64),
        samples: u64,
        reason: String,
    ) {
        truth.non_events.push(NonEvent {
            anomaly: self.a.kind.name().into(),
            param: self.param.name.clone(),
            check: check.into(),
            start_obt_ns: span.0,
            end_obt_ns: span.1,
            samples,
            reason,
        });
    }

    /// An event of this anomaly: `(param, check, severity)`, span, worst, samples.
    fn event(
        &self,
        truth: &mut HkTruth,
        what: (&str, &str, Severity),
        span: (u64, Option<u64>),
        worst: Value,
        samples: u64,
    ) {
        truth.events.push(TruthEvent {
            param: what.0.into(),
            check: what.1.into(),
            severity: what.2,
            start_obt_ns: span.0,
            end_obt_ns: span.1,
            worst,
            samples,
            anomaly: self.a.kind.name().into(),
        });
    }

    fn limit(&self, truth: &mut HkTruth) -> Result<(), HkError> {
        let rows = &self.a.recorded;
        let engs: Vec<f64> = self.raws().into_iter().map(|r| self.eng(r)).collect();
        let limits: Vec<_> = rows
            .iter()
            .map(|(_, row)| limits_in_force(self.structure, row, self.param))
            .collect();
        let outside: Vec<bool> = engs
            .iter()
            .zip(&limits)
            .map(|(&e, (w, _))| w.is_some_and(|w| !w.contains(e)))
            .collect();
        let p = self.param.persistence as u64;
        let designed = match self.a.kind {
            AnomalyKind::LimitAlarm => None,
            _ => Some(self.a.n),
        };
        let (from, to) = self.one_run(&outside, designed)?;
        let n = (to - from) as u64;
        let span = (rows[from].0, rows[to - 1].0);
        if n < p {
            self.non_event(
                truth,
                "limit",
                span,
                n,
                format!("{n} samples outside the warning limits, persistence is {p}"),
            );
            return Ok(());
        }
        let end = self.episode_end(&outside, to)?;
        let excess = |i: usize| limits[i].0.map_or(0.0, |w| w.excess(engs[i]));
        let worst_i = self.unique_max(from..to, excess)?;
        let alarm = (from..to).any(|i| limits[i].1.is_some_and(|a| !a.contains(engs[i])));
        let severity = if alarm {
            Severity::Alarm
        } else {
            Severity::Warning
        };
        self.event(
            truth,
            (&self.param.name, "limit", severity),
            (span.0, Some(end)),
            Value::Number(engs[worst_i]),
            n,
        );
        Ok(())
    }

    /// The index in `range` maximising `key`, which must not tie.
    fn unique_max(
        &self,
        range: std::ops::Range<usize>,
        key: impl Fn(usize) -> f64,
    ) -> Result<usize, HkError> {
        let mut best: Vec<usize> = Vec::new();
        for i in range {
            match best.first().map(|&b| key(i).total_cmp(&key(b))) {
                None | Some(std::cmp::Ordering::Greater) => best = vec![i],
                Some(std::cmp::Ordering::Equal) => best.push(i),
                Some(std::cmp::Ordering::Less) => {}
            }
        }
        match best[..] {
            [i] => Ok(i),
            _ => Err(self.fail(format!("`worst` ties between samples {best:?}"))),
        }
    }

    fn frozen(&self, truth: &mut HkTruth) -> Result<(), HkError> {
        let raws = self.raws();
        let same: Vec<bool> = (0..raws.len())
            .map(|i| {
                (i > 0 && raws[i] == raws[i - 1]) || (i + 1 < raws.len() && raws[i] == raws[i + 1])
            })
            .collect();
        let (from, to) = self.one_run(&same, Some(self.a.n))?;
        if to >= raws.len() {
            return Err(self.fail("the stuck run does not end inside its slot".into()));
        }
        let times = self.times();
        let span_s = (times[to - 1] - times[from]) as f64 / 1e9;
        let frozen_s = self.param.frozen_s.expect("frozen check configured");
        let n = (to - from) as u64;
        if span_s > frozen_s {
            let worst = self.param.calibration.apply(raws[from]);
            self.event(
                truth,
                (&self.param.name, "frozen", Severity::Warning),
                (times[from], Some(times[to])),
                worst,
                n,
            );
        } else {
            self.non_event(
                truth,
                "frozen",
                (times[from], times[to - 1]),
                n,
                format!("identical for {span_s} s, not more than frozen_s = {frozen_s} s"),
            );
        }
        Ok(())
    }

    fn delta(&self, truth: &mut HkTruth) -> Result<(), HkError> {
        let engs: Vec<f64> = self.raws().into_iter().map(|r| self.eng(r)).collect();
        let times = self.times();
        let delta = self.param.delta.expect("delta check configured");
        let changes: Vec<f64> = engs.windows(2).map(|w| w[1] - w[0]).collect();
        let big: Vec<bool> = changes.iter().map(|c| c.abs() > delta).collect();
        let episodes = runs(&big);
        let designed: &[usize] = match self.a.kind {
            AnomalyKind::DeltaSpike => &[3],
            _ => &[1, 1],
        };
        let lens: Vec<usize> = episodes.iter().map(|(f, t)| t - f).collect();
        if lens != designed {
            return Err(self.fail(format!(
                "delta episodes of {lens:?} changes, designed {designed:?}"
            )));
        }
        for (from, to) in episodes {
            let worst = self.unique_max(from..to, |i| changes[i].abs())?;
            self.event(
                truth,
                (&self.param.name, "delta", Severity::Warning),
                (times[from], Some(times[to])),
                Value::Number(changes[worst]),
                (to - from) as u64,
            );
        }
        Ok(())
    }

    fn stale(&self, truth: &mut HkTruth) -> Result<(), HkError> {
        let times = self.times();
        let gaps: Vec<(u64, u64)> = times
            .windows(2)
            .map(|w| (w[0], w[1]))
            .filter(|(a, b)| b - a > 60 * NS_PER_S)
            .collect();
        let [(before, after)] = gaps[..] else {
            return Err(self.fail(format!("expected one silence, found {gaps:?}")));
        };
        let silence_s = (after - before) as f64 / 1e9;
        for p in &self.structure.params {
            match p.stale_s {
                Some(stale_s) if silence_s > stale_s => self.event(
                    truth,
                    (&p.name, "stale", Severity::Warning),
                    (before, Some(after)),
                    Value::Number(silence_s),
                    0,
                ),
                Some(_) => {
                    return Err(self.fail(format!(
                        "silence of {silence_s} s is not stale for {}",
                        p.name
                    )));
                }
                None => {}
            }
        }
        Ok(())
    }

    fn stale_end(&self, truth: &mut HkTruth, end_of_data_ns: u64) -> Result<(), HkError> {
        let Some(&last) = self.times().last() else {
            return Err(self.fail("no report before the final silence".into()));
        };
        let silence_s = end_of_data_ns.saturating_sub(last) as f64 / 1e9;
        for p in &self.structure.params {
            let Some(stale_s) = p.stale_s else { continue };
            if silence_s > stale_s {
                self.event(
                    truth,
                    (&p.name, "stale", Severity::Warning),
                    (last, None),
                    Value::Number(silence_s),
                    0,
                );
            } else {
                truth.non_events.push(NonEvent {
                    anomaly: self.a.kind.name().into(),
                    param: p.name.clone(),
                    check: "stale".into(),
                    start_obt_ns: last,
                    end_obt_ns: end_of_data_ns,
                    samples: 0,
                    reason: format!(
                        "silent for {silence_s} s until the end of the data, not more than stale_s"
                    ),
                });
            }
        }
        Ok(())
    }

    fn context(&self, truth: &mut HkTruth) -> Result<(), HkError> {
        let mut beyond_default = Vec::new();
        for (t, row) in &self.a.recorded {
            let eng = self.eng(row[self.a.pos]);
            let (warning, _) = limits_in_force(self.structure, row, self.param);
            if warning.is_some_and(|w| !w.contains(eng)) {
                return Err(self.fail(format!("{eng} at {t} is outside the limits in force")));
            }
            if self.param.warning.is_some_and(|w| !w.contains(eng)) {
                beyond_default.push(*t);
            }
        }
        let (Some(&first), Some(&last)) = (beyond_default.first(), beyond_default.last()) else {
            return Err(self.fail("never left the default limits".into()));
        };
        let context = self
            .param
            .contexts
            .first()
            .map_or(String::new(), |c| match &c.equals {
                ContextValue::State(s) => format!("{} = {s}", c.param),
                ContextValue::Number(x) => format!("{} = {x}", c.param),
            });
        self.non_event(
            truth,
            "limit",
            (first, last),
            beyond_default.len() as u64,
            format!("outside the default warning limits but within those of the context {context}"),
        );
        Ok(())
    }

    fn state(&self, truth: &mut HkTruth) -> Result<(), HkError> {
        let names: Vec<Value> = self
            .raws()
            .into_iter()
            .map(|r| self.param.calibration.apply(r))
            .collect();
        let expected = self.param.expected.as_deref().unwrap_or_default();
        let bad: Vec<bool> = names
            .iter()
            .map(|v| !matches!(v, Value::State(s) if expected.contains(s)))
            .collect();
        let (from, to) = self.one_run(&bad, Some(self.a.n))?;
        let times = self.times();
        let n = (to - from) as u64;
        let p = self.param.persistence as u64;
        if n < p {
            self.non_event(
                truth,
                "state",
                (times[from], times[to - 1]),
                n,
                format!("{n} samples in an unexpected state, persistence is {p}"),
            );
            return Ok(());
        }
        let end = self.episode_end(&bad, to)?;
        self.event(
            truth,
            (&self.param.name, "state", Severity::Alarm),
            (times[from], Some(end)),
            names[from].clone(),
            n,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_are_maximal() {
        assert_eq!(runs(&[true, true, false, true]), vec![(0, 2), (3, 4)]);
        assert_eq!(runs(&[false, false]), vec![]);
    }
}
