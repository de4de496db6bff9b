//! Science health per field of view per time bin, from the located and matched
//! products: match rate, along-scan and across-scan residuals against the matched
//! catalogue positions, transit counts, background and flagged windows.
//!
//! * A transit belongs to the bin `floor(t_obs_ns / bin_ns)` (bins aligned to the
//!   mission epoch) of its field of view; an observation likewise by its `t_obs_ns`.
//! * **Residual** of a matched transit: the offset of the transit position from the
//!   catalogue position `ra_cat/dec_cat` in the tangent plane at the catalogue
//!   position, projected onto the along-scan direction (position angle
//!   `scan_pa_deg`, east of north) and onto the across-scan direction (position
//!   angle `scan_pa_deg + 90°`), in mas.
//! * **Match rate**: matched transits / transits with a position (those with a
//!   `match` record or a position); transits without a position are not counted.
//! * **Outliers**: matched transits whose |along-scan residual| exceeds
//!   `outlier_sigma × sigma_al_mas` and `outlier_floor_mas`. An attitude
//!   disturbance (a micro-meteoroid hit changes the spin rate; the telemetered
//!   attitude catches up only after a while) moves every transit of the affected
//!   minutes along scan by up to hundreds of mas, far more than their σ, while
//!   hardly moving a 10-minute median: the outlier fraction is what catches it.
//! * **Flagged windows**: observations flagged `fit_failed`, `no_attitude` or
//!   `truncated` (saturation is normal for bright stars and is not counted).
//!
//! Checks (`check` names) and default thresholds, per field of view (`param` =
//! `fov0`, `fov1`). A bin is judged on its along-scan median and outliers with at
//! least 5 matched transits (`min_matched`), on its across-scan median with 5
//! (`min_matched_ac`), on its match rate with 20 positioned transits
//! (`min_positioned`) and on flagged windows with 50 windows (`min_windows`):
//!
//! | check | metric | warning | alarm |
//! |---|---|---|---|
//! | `match_rate` | matched / positioned | < 0.8 | < 0.5 |
//! | `residual_al` | \|median along-scan residual\| | > 10 mas | > 50 mas |
//! | `residual_ac` | \|median across-scan residual\| | > 100 mas | > 200 mas |
//! | `residual_al_outliers` | outlier fraction | > 0.03 | > 0.15 |
//! | `flagged_windows` | flagged / windows | > 0.05 | > 0.25 |
//!
//! Consecutive failing bins of one check and field of view form one event from the
//! start of the first bin to the end of the last; `samples` is the number of bins,
//! `worst` the worst bin's metric, `severity` the worst bin's.

use crate::hk::fmt_num;
use meridian_core::geom::{MAS_PER_RAD, Vec3};
use meridian_core::records::{Flag, HealthEvent, Match, Observation, Severity, Transit, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One threshold pair; `low` means values *below* the thresholds are bad.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub warning: f64,
    pub alarm: f64,
    #[serde(default)]
    pub low: bool,
}

impl Threshold {
    pub const fn above(warning: f64, alarm: f64) -> Self {
        Self {
            warning,
            alarm,
            low: false,
        }
    }
    pub const fn below(warning: f64, alarm: f64) -> Self {
        Self {
            warning,
            alarm,
            low: true,
        }
    }

    /// Severity of a metric value (None: fine or not a number).
    pub fn judge(&self, x: f64) -> Option<Severity> {
        let beyond = |t: f64| if self.low { x < t } else { x > t };
        if x.is_nan() {
            None
        } else if beyond(self.alarm) {
            Some(Severity::Alarm)
        } else if beyond(self.warning) {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// True when `a` is worse than `b`.
    fn worse(&self, a: f64, b: f64) -> bool {
        if self.low { a < b } else { a > b }
    }
}

/// Configuration of the science checks (see the module table for defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScienceConfig {
    /// Bin length, seconds.
    pub bin_s: u64,
    /// Matched transits a bin needs before its along-scan median and outliers
    /// are judged (few: a sparse sky still shows an attitude disturbance) …
    pub min_matched: u64,
    /// … before its across-scan median is judged (a transit's across-scan error
    /// is uniform within a 176.8 mas pixel, so medians of a few transits wander up
    /// to ±88 mas: the default threshold lies beyond that) …
    pub min_matched_ac: u64,
    /// … and positioned transits before its match rate is judged.
    pub min_positioned: u64,
    pub match_rate: Threshold,
    pub residual_al_mas: Threshold,
    pub residual_ac_mas: Threshold,
    pub al_outlier_fraction: Threshold,
    /// An along-scan residual is an outlier beyond this many σ_AL …
    pub outlier_sigma: f64,
    /// … and beyond this many mas.
    pub outlier_floor_mas: f64,
    pub flagged_fraction: Threshold,
    /// Windows a bin needs before its flagged fraction is judged.
    pub min_windows: u64,
}

impl Default for ScienceConfig {
    fn default() -> Self {
        Self {
            bin_s: 600,
            min_matched: 5,
            min_matched_ac: 5,
            min_positioned: 20,
            match_rate: Threshold::below(0.8, 0.5),
            residual_al_mas: Threshold::above(10.0, 50.0),
            residual_ac_mas: Threshold::above(100.0, 200.0),
            al_outlier_fraction: Threshold::above(0.03, 0.15),
            outlier_sigma: 5.0,
            outlier_floor_mas: 10.0,
            flagged_fraction: Threshold::above(0.05, 0.25),
            min_windows: 50,
        }
    }
}

/// Names of the science checks.
pub mod check {
    pub const MATCH_RATE: &str = "match_rate";
    pub const RESIDUAL_AL: &str = "residual_al";
    pub const RESIDUAL_AC: &str = "residual_ac";
    pub const AL_OUTLIERS: &str = "residual_al_outliers";
    pub const FLAGGED_WINDOWS: &str = "flagged_windows";
}

/// Science metrics of one field of view in one bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScienceBin {
    pub fov: u8,
    pub start_obt_ns: u64,
    pub end_obt_ns: u64,
    pub transits: u64,
    /// Transits with a sky position.
    pub positioned: u64,
    pub matched: u64,
    pub match_rate: Option<f64>,
    pub median_al_mas: Option<f64>,
    pub median_ac_mas: Option<f64>,
    pub al_outliers: u64,
    pub al_outlier_fraction: Option<f64>,
    pub windows: u64,
    pub flagged_windows: u64,
    pub flagged_fraction: Option<f64>,
    /// Median background, e⁻ per sample.
    pub median_background: Option<f64>,
}

/// Everything science health found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScienceHealth {
    pub bins: Vec<ScienceBin>,
    #[serde(skip)]
    pub events: Vec<HealthEvent>,
}

/// Along-scan and across-scan offsets (mas) of `(ra, dec)` from `(ra_cat, dec_cat)`
/// for a scan at position angle `pa_deg`.
pub fn residual_al_ac_mas(ra: f64, dec: f64, ra_cat: f64, dec_cat: f64, pa_deg: f64) -> (f64, f64) {
    let (a, d) = (ra_cat.to_radians(), dec_cat.to_radians());
    let east = Vec3::new(-a.sin(), a.cos(), 0.0);
    let north = Vec3::new(-d.sin() * a.cos(), -d.sin() * a.sin(), d.cos());
    let u = Vec3::from_radec_deg(ra, dec);
    let c = Vec3::from_radec_deg(ra_cat, dec_cat);
    // Gnomonic projection at the catalogue position.
    let w = u.dot(c);
    let xi = u.dot(east) / w;
    let eta = u.dot(north) / w;
    let (s, co) = pa_deg.to_radians().sin_cos();
    let al = xi * s + eta * co;
    let ac = xi * co - eta * s;
    (al * MAS_PER_RAD, ac * MAS_PER_RAD)
}

/// Median (mean of the middle two for an even count); None when empty.
pub fn median_of(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    // Selection, not a sort: linear in the bin's size, same values.
    let n = v.len();
    let (below, &mut upper, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    Some(if n % 2 == 1 {
        upper
    } else {
        let lower = below.iter().copied().max_by(f64::total_cmp).expect("n ≥ 2");
        (lower + upper) / 2.0
    })
}

#[derive(Default)]
struct Acc {
    transits: u64,
    positioned: u64,
    matched: u64,
    al: Vec<f64>,
    ac: Vec<f64>,
    outliers: u64,
    windows: u64,
    flagged: u64,
    /// f32 halves the memory of the one per-window list kept.
    background: Vec<f32>,
}

fn flagged(o: &Observation) -> bool {
    [Flag::FitFailed, Flag::NoAttitude, Flag::Truncated]
        .iter()
        .any(|f| o.flags.contains(*f))
}

/// Computes science health. Input order does not matter.
pub fn science_health(
    observations: &[Observation],
    transits: &[Transit],
    matches: &[Match],
    cfg: &ScienceConfig,
) -> ScienceHealth {
    let mut acc = ScienceAccumulator::new(cfg);
    acc.add_transits(transits, matches);
    for o in observations {
        acc.add_observation(o);
    }
    acc.finish()
}

/// Science health built up piece by piece, so observations (nine per transit)
/// can be streamed from their files rather than held. Order does not matter.
pub struct ScienceAccumulator<'c> {
    cfg: &'c ScienceConfig,
    bin_ns: u64,
    acc: BTreeMap<(u8, u64), Acc>,
}

impl<'c> ScienceAccumulator<'c> {
    pub fn new(cfg: &'c ScienceConfig) -> Self {
        ScienceAccumulator {
            cfg,
            bin_ns: cfg.bin_s.clamp(1, u64::MAX / 1_000_000_000) * 1_000_000_000,
            acc: BTreeMap::new(),
        }
    }

    /// Adds transits with their match records (joined on `transit_id`; of
    /// several match records of one transit the last counts).
    pub fn add_transits(&mut self, transits: &[Transit], matches: &[Match]) {
        let by_id: HashMap<u64, &Match> = matches.iter().map(|m| (m.transit_id, m)).collect();
        for t in transits {
            let matched = match (t.ra, t.dec) {
                (Some(_), Some(_)) => by_id.get(&t.transit_id).and_then(|m| catalogue_position(m)),
                _ => None,
            };
            self.add_transit(t, matched);
        }
    }

    /// Adds one transit; `matched` is the catalogue position of its match
    /// ([`catalogue_position`] of its match record), None when it has no match
    /// record or is unmatched.
    pub fn add_transit(&mut self, t: &Transit, matched: Option<(f64, f64)>) {
        let cfg = self.cfg;
        let a = self
            .acc
            .entry((t.fov, t.t_obs_ns / self.bin_ns))
            .or_default();
        a.transits += 1;
        let (Some(ra), Some(dec)) = (t.ra, t.dec) else {
            return;
        };
        a.positioned += 1;
        let Some((ra_c, dec_c)) = matched else {
            return;
        };
        a.matched += 1;
        let Some(pa) = t.scan_pa_deg else {
            return;
        };
        let (al, ac) = residual_al_ac_mas(ra, dec, ra_c, dec_c, pa);
        let limit = cfg
            .outlier_floor_mas
            .max(t.sigma_al_mas.unwrap_or(0.0) * cfg.outlier_sigma);
        if al.abs() > limit {
            a.outliers += 1;
        }
        a.al.push(al);
        a.ac.push(ac);
    }

    pub fn add_observation(&mut self, o: &Observation) {
        let a = self
            .acc
            .entry((o.fov, o.t_obs_ns / self.bin_ns))
            .or_default();
        a.windows += 1;
        a.flagged += flagged(o) as u64;
        if o.background.is_finite() {
            a.background.push(o.background as f32);
        }
    }

    /// Adds everything `other` accumulated (with the same configuration), so
    /// inputs can be accumulated in parallel; the result does not depend on how
    /// they were split, because every per-bin statistic is a sum or a median.
    pub fn merge(&mut self, other: ScienceAccumulator<'_>) {
        for (key, b) in other.acc {
            let a = self.acc.entry(key).or_default();
            a.transits += b.transits;
            a.positioned += b.positioned;
            a.matched += b.matched;
            a.al.extend(b.al);
            a.ac.extend(b.ac);
            a.outliers += b.outliers;
            a.windows += b.windows;
            a.flagged += b.flagged;
            a.background.extend(b.background);
        }
    }

    /// Bins accumulated so far (each field of view and time bin counts once).
    pub fn open_bins(&self) -> usize {
        self.acc.len()
    }

    /// `(fov, start_obt_ns)` of every bin accumulated so far.
    pub fn bin_keys(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        self.acc.keys().map(|&(fov, k)| (fov, k * self.bin_ns))
    }

    /// Takes out the bins that end at or before `end_ns`, finished (medians
    /// taken, their values freed): for a caller that knows no later input can
    /// fall into them.
    pub fn finish_bins_ending_by(&mut self, end_ns: u64) -> Vec<ScienceBin> {
        let bin_ns = self.bin_ns;
        let ended: Vec<(u8, u64)> = self
            .acc
            .keys()
            .filter(|(_, k)| (k + 1).saturating_mul(bin_ns) <= end_ns)
            .copied()
            .collect();
        ended
            .into_iter()
            .map(|key| {
                let a = self.acc.remove(&key).expect("key just listed");
                a.into_bin(key, bin_ns)
            })
            .collect()
    }

    /// The bins and their events.
    pub fn finish(self) -> ScienceHealth {
        self.finish_with(Vec::new())
    }

    /// The bins and their events, with `finished` (bins taken out earlier by
    /// [`Self::finish_bins_ending_by`]) among them, in (fov, time) order.
    pub fn finish_with(self, mut finished: Vec<ScienceBin>) -> ScienceHealth {
        let (cfg, bin_ns) = (self.cfg, self.bin_ns);
        finished.extend(self.acc.into_iter().map(|(key, a)| a.into_bin(key, bin_ns)));
        finished.sort_by_key(|b| (b.fov, b.start_obt_ns));
        let events = science_events(&finished, cfg);
        ScienceHealth {
            bins: finished,
            events,
        }
    }
}

impl Acc {
    fn into_bin(mut self, (fov, k): (u8, u64), bin_ns: u64) -> ScienceBin {
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let mut background: Vec<f64> = self.background.iter().map(|&b| b as f64).collect();
        // Freed before the background copy is searched: a bin's peak is one list.
        self.background = Vec::new();
        ScienceBin {
            fov,
            start_obt_ns: k * bin_ns,
            end_obt_ns: (k + 1).saturating_mul(bin_ns),
            transits: self.transits,
            positioned: self.positioned,
            matched: self.matched,
            match_rate: ratio(self.matched, self.positioned),
            median_al_mas: median_of(&mut self.al),
            median_ac_mas: median_of(&mut self.ac),
            al_outliers: self.outliers,
            al_outlier_fraction: ratio(self.outliers, self.al.len() as u64),
            windows: self.windows,
            flagged_windows: self.flagged,
            flagged_fraction: ratio(self.flagged, self.windows),
            median_background: median_of(&mut background),
        }
    }
}

/// The catalogue position a match record gives its transit: Some only for a
/// matched transit whose record carries the propagated position.
pub fn catalogue_position(m: &Match) -> Option<(f64, f64)> {
    match (m.source_id, m.ra_cat, m.dec_cat) {
        (Some(_), Some(ra), Some(dec)) => Some((ra, dec)),
        _ => None,
    }
}

type Metric = fn(&ScienceBin, &ScienceConfig) -> Option<f64>;

fn judged_residuals(b: &ScienceBin, cfg: &ScienceConfig) -> bool {
    b.matched >= cfg.min_matched
}

/// The checks: name, threshold, metric (None: bin not judged), unit for messages.
fn checks(cfg: &ScienceConfig) -> [(&'static str, Threshold, Metric, &'static str); 5] {
    [
        (
            check::MATCH_RATE,
            cfg.match_rate,
            |b, c| b.match_rate.filter(|_| b.positioned >= c.min_positioned),
            "",
        ),
        (
            check::RESIDUAL_AL,
            cfg.residual_al_mas,
            |b, c| b.median_al_mas.filter(|_| judged_residuals(b, c)),
            " mas",
        ),
        (
            check::RESIDUAL_AC,
            cfg.residual_ac_mas,
            |b, c| b.median_ac_mas.filter(|_| b.matched >= c.min_matched_ac),
            " mas",
        ),
        (
            check::AL_OUTLIERS,
            cfg.al_outlier_fraction,
            |b, c| b.al_outlier_fraction.filter(|_| judged_residuals(b, c)),
            "",
        ),
        (
            check::FLAGGED_WINDOWS,
            cfg.flagged_fraction,
            |b, c| b.flagged_fraction.filter(|_| b.windows >= c.min_windows),
            "",
        ),
    ]
}

/// Events from the bins: consecutive failing bins of one check and fov merge.
fn science_events(bins: &[ScienceBin], cfg: &ScienceConfig) -> Vec<HealthEvent> {
    let mut events = Vec::new();
    for fov in [0u8, 1] {
        let fov_bins: Vec<&ScienceBin> = bins.iter().filter(|b| b.fov == fov).collect();
        for (name, threshold, metric, unit) in checks(cfg) {
            // Residual medians are judged on their magnitude, but reported signed.
            let magnitude = name == check::RESIDUAL_AL || name == check::RESIDUAL_AC;
            let failing = fov_bins.iter().filter_map(|b| {
                let x = metric(b, cfg)?;
                let judged = if magnitude { x.abs() } else { x };
                threshold.judge(judged).map(|sev| (*b, x, judged, sev))
            });
            let mut open: Option<Run> = None;
            for (b, x, judged, sev) in failing {
                match &mut open {
                    Some(r) if r.end_ns == b.start_obt_ns => r.add(b, x, judged, sev, threshold),
                    _ => {
                        if let Some(r) = open.take() {
                            events.push(r.event(fov, name, unit));
                        }
                        open = Some(Run::new(b, x, judged, sev));
                    }
                }
            }
            if let Some(r) = open {
                events.push(r.event(fov, name, unit));
            }
        }
    }
    crate::hk::sort_events(&mut events);
    events
}

/// What a check measures, for messages and plots.
pub fn describe(check: &str) -> &'static str {
    match check {
        check::MATCH_RATE => "match rate",
        check::RESIDUAL_AL => "median along-scan residual",
        check::RESIDUAL_AC => "median across-scan residual",
        check::AL_OUTLIERS => "fraction of along-scan outliers",
        check::FLAGGED_WINDOWS => "fraction of flagged windows",
        _ => "metric",
    }
}

/// Consecutive failing bins being merged into one event.
struct Run {
    start_ns: u64,
    end_ns: u64,
    bins: u64,
    worst: f64,
    worst_judged: f64,
    severity: Severity,
}

impl Run {
    fn new(b: &ScienceBin, x: f64, judged: f64, severity: Severity) -> Self {
        Run {
            start_ns: b.start_obt_ns,
            end_ns: b.end_obt_ns,
            bins: 1,
            worst: x,
            worst_judged: judged,
            severity,
        }
    }

    fn add(&mut self, b: &ScienceBin, x: f64, judged: f64, sev: Severity, t: Threshold) {
        self.end_ns = b.end_obt_ns;
        self.bins += 1;
        self.severity = self.severity.max(sev);
        if t.worse(judged, self.worst_judged) {
            self.worst = x;
            self.worst_judged = judged;
        }
    }

    fn event(&self, fov: u8, check: &str, unit: &str) -> HealthEvent {
        HealthEvent {
            param: format!("fov{fov}"),
            check: check.into(),
            severity: self.severity,
            start_obt_ns: self.start_ns,
            end_obt_ns: Some(self.end_ns),
            worst: Value::Number(self.worst),
            samples: self.bins,
            message: format!(
                "field of view {fov}: {} beyond its {} threshold in {} bin(s), worst {}{unit}",
                describe(check),
                if self.severity == Severity::Alarm {
                    "alarm"
                } else {
                    "warning"
                },
                self.bins,
                fmt_num(self.worst)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The selection-based median equals the textbook one on a sorted copy.
        #[test]
        fn median_of_matches_sorting(mut v in proptest::collection::vec(-1e6f64..1e6, 0..60)) {
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            let expected = (n > 0).then(|| {
                if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
            });
            prop_assert_eq!(super::median_of(&mut v), expected);
        }
    }
}
