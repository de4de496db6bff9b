//! The scanning law: a mean Sun on the ecliptic, the spin axis 45° from it
//! precessing every 63 days, the spin at 60″/s, and attitude disturbances (true
//! attitude versus the on-board estimate that is telemetered).
//!
//! Model (active rotations of SRS vectors into ICRS, ICD §4.2 convention):
//!
//! `q(t) = Rx(ε) ⊗ Rz(λ☉) ⊗ Ry(90°) ⊗ Rz(ν) ⊗ Rx(ξ) ⊗ Rz(Ω)`
//!
//! read right to left: spin the SRS by the spin phase Ω about its z axis, tilt z by
//! ξ = 45° away from an intermediate "Sun" axis, precess by ν about that axis, turn
//! the Sun axis onto the ecliptic direction of the mean Sun λ☉, and rotate the
//! ecliptic frame into ICRS by the obliquity ε. So the spin axis always stays 45°
//! from the Sun and the scan circles sweep the sky as the Sun and precession move.
//!
//! * Mean Sun: `λ☉ = 280.460° + 0.9856474° d`, d = days of TT since J2000
//!   (`d = 3652.5 + (t + 32.184)/86400`, t the OBT in s); no equation of centre.
//!   ε = 23.439291° (J2000).
//! * Precession phase `ν = ν₀ + 2π t / 63 d`, spin phase `Ω = Ω₀ + 2π t / 21600 s`
//!   (60″/s), with ν₀, Ω₀ drawn from the seed. Phases are computed from integer
//!   nanoseconds modulo their periods so they stay exact over a mission.
//! * A disturbance (micro-meteoroid hit) at `t_h` changes the TRUE spin rate by
//!   `δω` for the rest of the day: Ω_true gains `δω (t − t_h)`. The ON-BOARD
//!   estimate (what is telemetered) keeps the pre-hit rate for `settle_s` seconds
//!   (its error grows to `−δω·settle_s`), then converges back to the true
//!   attitude linearly over another `settle_s` seconds. Along-scan residuals of
//!   transits in those 2·settle_s seconds therefore reach `|δω|·settle_s`.

use super::Disturbance;
use meridian_core::geom::{RAD_PER_MAS, Vec3};
use meridian_core::instrument::SPIN_RATE_ARCSEC_PER_S;
use meridian_core::time::NS_PER_S;
use meridian_core::{Quat, geom::RAD_PER_ARCSEC};
use std::f64::consts::{FRAC_PI_2, TAU};

/// Solar aspect angle ξ: spin axis to Sun, degrees.
pub const SUN_ASPECT_DEG: f64 = 45.0;
/// Precession period of the spin axis about the Sun, days.
pub const PRECESSION_PERIOD_DAYS: u64 = 63;
/// Spin period (360° at 60″/s), ns.
pub const SPIN_PERIOD_NS: u64 = 21_600 * NS_PER_S;
/// Obliquity of the ecliptic (J2000), degrees.
pub const OBLIQUITY_DEG: f64 = 23.439_291;
/// Nominal spin rate, rad/s.
pub const SPIN_RATE_RAD_S: f64 = SPIN_RATE_ARCSEC_PER_S * RAD_PER_ARCSEC;

const PRECESSION_PERIOD_NS: u64 = PRECESSION_PERIOD_DAYS * 86_400 * NS_PER_S;
const PRECESSION_RATE_RAD_S: f64 = TAU / (PRECESSION_PERIOD_DAYS as f64 * 86_400.0);
const SUN_RATE_DEG_PER_DAY: f64 = 0.985_647_4;
const SUN_RATE_RAD_S: f64 = SUN_RATE_DEG_PER_DAY / 86_400.0 * (std::f64::consts::PI / 180.0);

/// The parts of the true attitude that depend only on an anchor time, so the
/// many attitude evaluations of solves around one anchor (a block's star
/// search, a transit's strips) skip its trigonometry and modular phases.
#[derive(Debug, Clone, Copy)]
pub struct Anchored {
    anchor_ns: u64,
    /// `Rx(ε) ⊗ Rz(λ☉)` at the anchor.
    sun_rot: Quat,
    /// `Ry(90°) ⊗ Rz(ν)` at the anchor.
    precession_rot: Quat,
    /// Nominal spin phase at the anchor.
    spin: f64,
    /// The frame at the anchor itself.
    pub frame: Frame,
}

impl Anchored {
    pub fn anchor_ns(&self) -> u64 {
        self.anchor_ns
    }
}

/// The three angles of the scanning law at one instant, radians.
#[derive(Debug, Clone, Copy)]
struct Angles {
    sun: f64,
    precession: f64,
    spin: f64,
}

/// The scanning law of one simulated day, with its disturbances.
#[derive(Debug, Clone)]
pub struct ScanLaw {
    spin0: f64,
    precession0: f64,
    disturbances: Vec<Disturbance>,
    /// `Rx(ε)`, constant.
    ecliptic_to_icrs: Quat,
    /// `Rx(ξ)`, constant.
    aspect: Quat,
    /// `Ry(90°)`, constant.
    quarter_y: Quat,
}

/// The true attitude at one instant, split for fast repeated use:
/// `q = slow ⊗ Rz(spin)`.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    slow_conj: Quat,
    spin: f64,
}

impl Frame {
    /// SRS azimuth (in (−π, π]) and elevation of ICRS direction `u`, radians.
    pub fn srs_angles(&self, u: Vec3) -> (f64, f64) {
        let v = self.slow_conj.rotate(u);
        let az = v.y.atan2(v.x) - self.spin;
        let el = v.z.atan2(v.x.hypot(v.y));
        (wrap_pi(az), el)
    }

    /// SRS azimuth of `u` if the sine of its elevation is within `max_sin_el`:
    /// a cheap first cut that skips the elevation's arctangent.
    pub fn azimuth_if_within(&self, u: Vec3, max_sin_el: f64) -> Option<f64> {
        let v = self.slow_conj.rotate(u);
        (v.z.abs() <= max_sin_el).then(|| wrap_pi(v.y.atan2(v.x) - self.spin))
    }
}

/// A time as an integer anchor plus a small offset in seconds: keeps nanosecond
/// exactness of the anchor while letting solvers move continuously.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Instant {
    pub anchor_ns: u64,
    pub offset_s: f64,
}

impl Instant {
    pub fn at(anchor_ns: u64) -> Self {
        Self {
            anchor_ns,
            offset_s: 0.0,
        }
    }

    pub fn plus(self, seconds: f64) -> Self {
        Self {
            anchor_ns: self.anchor_ns,
            offset_s: self.offset_s + seconds,
        }
    }

    /// Nanoseconds (f64) of this instant after `origin_ns`; exact to ~1e-6 ns for
    /// offsets of minutes.
    pub fn ns_after(self, origin_ns: u64) -> f64 {
        signed_ns(self.anchor_ns, origin_ns) + self.offset_s * 1e9
    }

    /// Seconds after `origin_ns`.
    pub fn seconds_after(self, origin_ns: u64) -> f64 {
        self.ns_after(origin_ns) * 1e-9
    }

    /// Rounded to the nearest nanosecond (saturating at 0).
    pub fn round_ns(self) -> u64 {
        let off = (self.offset_s * 1e9).round();
        if off >= 0.0 {
            self.anchor_ns.saturating_add(off as u64)
        } else {
            self.anchor_ns.saturating_sub((-off) as u64)
        }
    }
}

/// `a − b` in ns as f64, exact for differences below 2^53 ns.
pub fn signed_ns(a: u64, b: u64) -> f64 {
    if a >= b {
        (a - b) as f64
    } else {
        -((b - a) as f64)
    }
}

/// Phase in [0, 2π) of a periodic angle at integer time, exact modulo the period.
fn phase(t_ns: u64, period_ns: u64) -> f64 {
    (t_ns % period_ns) as f64 / period_ns as f64 * TAU
}

/// `rot_z(a)` for the small angles the Sun and precession move through in a
/// block: sin and cos of a/2 from their Taylor series, whose first omitted
/// terms (< 3e-33, 3e-29 for |a/2| ≤ 1e-3) are far below an ulp; larger
/// angles go to `rot_z`.
fn rot_z_small(a: f64) -> Quat {
    let h = a / 2.0;
    if h.abs() > 1e-3 {
        return rot_z(a);
    }
    let h2 = h * h;
    let sin = h * (1.0 - h2 / 6.0 * (1.0 - h2 / 20.0 * (1.0 - h2 / 42.0)));
    let cos = 1.0 - h2 / 2.0 * (1.0 - h2 / 12.0 * (1.0 - h2 / 30.0));
    Quat::new(0.0, 0.0, sin, cos)
}

fn rot_x(a: f64) -> Quat {
    Quat::from_axis_angle(Vec3::new(1.0, 0.0, 0.0), a)
}
fn rot_y(a: f64) -> Quat {
    Quat::from_axis_angle(Vec3::new(0.0, 1.0, 0.0), a)
}
fn rot_z(a: f64) -> Quat {
    Quat::from_axis_angle(Vec3::new(0.0, 0.0, 1.0), a)
}

impl ScanLaw {
    /// A scanning law with initial spin and precession phases (radians at OBT 0).
    pub fn new(spin0: f64, precession0: f64, disturbances: Vec<Disturbance>) -> Self {
        Self {
            spin0,
            precession0,
            disturbances,
            ecliptic_to_icrs: rot_x(OBLIQUITY_DEG.to_radians()),
            aspect: rot_x(SUN_ASPECT_DEG.to_radians()),
            quarter_y: rot_y(FRAC_PI_2),
        }
    }

    fn nominal_angles(&self, t: Instant) -> Angles {
        let a = t.anchor_ns;
        // Mean Sun from days of TT since J2000; the anchor as f64 loses < 100 ns,
        // i.e. < 1e-11 rad of solar longitude.
        let days = 3652.5 + (a as f64 * 1e-9 + 32.184) / 86_400.0;
        let sun = (280.460 + SUN_RATE_DEG_PER_DAY * days)
            .rem_euclid(360.0)
            .to_radians();
        Angles {
            sun: sun + SUN_RATE_RAD_S * t.offset_s,
            precession: self.precession0
                + phase(a, PRECESSION_PERIOD_NS)
                + PRECESSION_RATE_RAD_S * t.offset_s,
            spin: self.spin0 + phase(a, SPIN_PERIOD_NS) + SPIN_RATE_RAD_S * t.offset_s,
        }
    }

    /// Extra spin phase of the true attitude from disturbances, radians.
    fn true_spin_offset(&self, t: Instant) -> f64 {
        self.disturbances
            .iter()
            .map(|d| {
                let since = t.seconds_after(d.obt_ns);
                if since > 0.0 {
                    d.delta_rate_mas_per_s * RAD_PER_MAS * since
                } else {
                    0.0
                }
            })
            .sum()
    }

    /// On-board minus true spin phase, radians (see the module docs).
    pub fn onboard_spin_error(&self, t: Instant) -> f64 {
        self.disturbances
            .iter()
            .map(|d| {
                let since = t.seconds_after(d.obt_ns);
                let rate = d.delta_rate_mas_per_s * RAD_PER_MAS;
                let settle = d.settle_s.max(0.0);
                if since <= 0.0 || since >= 2.0 * settle {
                    0.0
                } else if since <= settle {
                    -rate * since
                } else {
                    -rate * (2.0 * settle - since)
                }
            })
            .sum()
    }

    fn compose(&self, a: Angles) -> Quat {
        self.slow_part(a) * rot_z(a.spin)
    }

    fn slow_part(&self, a: Angles) -> Quat {
        self.ecliptic_to_icrs * rot_z(a.sun) * self.quarter_y * rot_z(a.precession) * self.aspect
    }

    /// The attitude that places star images (includes disturbances).
    pub fn true_attitude(&self, t: Instant) -> Quat {
        let mut a = self.nominal_angles(t);
        a.spin += self.true_spin_offset(t);
        self.compose(a)
    }

    /// The attitude the spacecraft believes and telemeters (before sensor noise).
    pub fn onboard_attitude(&self, t: Instant) -> Quat {
        let mut a = self.nominal_angles(t);
        a.spin += self.true_spin_offset(t) + self.onboard_spin_error(t);
        self.compose(a)
    }

    /// The true attitude at `t`, split as [`Frame`].
    pub fn frame(&self, t: Instant) -> Frame {
        self.frame_in(&self.anchored(t.anchor_ns), t)
    }

    /// The parts of the true attitude fixed by an anchor (see [`Anchored`]).
    pub fn anchored(&self, anchor_ns: u64) -> Anchored {
        let a = self.nominal_angles(Instant::at(anchor_ns));
        let sun_rot = self.ecliptic_to_icrs * rot_z(a.sun);
        let precession_rot = self.quarter_y * rot_z(a.precession);
        let slow = sun_rot * precession_rot * self.aspect;
        Anchored {
            anchor_ns,
            sun_rot,
            precession_rot,
            spin: a.spin,
            frame: Frame {
                slow_conj: slow.conj(),
                spin: a.spin + self.true_spin_offset(Instant::at(anchor_ns)),
            },
        }
    }

    /// [`ScanLaw::frame`] at `t` from the terms of `t`'s anchor: the Sun and
    /// precession move by small angles from there, turned into rotations
    /// without libm calls (see `rot_z_small`).
    pub fn frame_in(&self, anchored: &Anchored, t: Instant) -> Frame {
        if t.anchor_ns != anchored.anchor_ns {
            return self.frame_in(&self.anchored(t.anchor_ns), t);
        }
        if t.offset_s == 0.0 {
            return anchored.frame;
        }
        let slow = anchored.sun_rot
            * rot_z_small(SUN_RATE_RAD_S * t.offset_s)
            * anchored.precession_rot
            * rot_z_small(PRECESSION_RATE_RAD_S * t.offset_s)
            * self.aspect;
        Frame {
            slow_conj: slow.conj(),
            spin: anchored.spin + SPIN_RATE_RAD_S * t.offset_s + self.true_spin_offset(t),
        }
    }

    /// SRS azimuth and elevation (radians) of ICRS direction `u` at `t`, under the
    /// true attitude.
    pub fn srs_angles(&self, u: Vec3, t: Instant) -> (f64, f64) {
        self.frame(t).srs_angles(u)
    }

    /// The instant near `guess` at which `u` reaches SRS azimuth `target` under
    /// the true attitude, and its elevation then. Newton iterations on
    /// `φ(t) − target` with the slope `−rate` (rad/s; the nominal spin rate, or a
    /// better local estimate from [`ScanLaw::azimuth_rate`]); with a slope off by
    /// a relative ε each step gains a factor ε. Deterministic for given inputs.
    pub fn solve_crossing_with_rate(
        &self,
        u: Vec3,
        target: f64,
        guess: Instant,
        rate: f64,
    ) -> (Instant, f64) {
        self.solve_crossing_in(&self.anchored(guess.anchor_ns), u, target, guess, rate)
    }

    /// [`ScanLaw::solve_crossing_with_rate`] reusing the terms of `guess`'s
    /// anchor (computed once for the many solves around one anchor).
    pub fn solve_crossing_in(
        &self,
        anchored: &Anchored,
        u: Vec3,
        target: f64,
        guess: Instant,
        rate: f64,
    ) -> (Instant, f64) {
        let mut t = guess;
        let mut v = Vec3::default();
        for _ in 0..12 {
            let frame = self.frame_in(anchored, t);
            v = frame.slow_conj.rotate(u);
            let az = v.y.atan2(v.x) - frame.spin;
            let step = wrap_pi(az - target) / rate;
            t = t.plus(step);
            // After a step of 1e-7 s the error left is that times the relative
            // error of `rate` (< 1e-2): < 1e-9 s, 0.06 µas of spin.
            if step.abs() < 1e-7 {
                break;
            }
        }
        // Elevation at the last evaluation (it moves < 1e-12 rad in the last step).
        (t, v.z.clamp(-1.0, 1.0).asin())
    }

    /// [`ScanLaw::solve_crossing_with_rate`] with the nominal spin rate.
    pub fn solve_crossing(&self, u: Vec3, target: f64, guess: Instant) -> (Instant, f64) {
        self.solve_crossing_with_rate(u, target, guess, SPIN_RATE_RAD_S)
    }

    /// The rate (rad/s, positive) at which the SRS azimuth of `u` decreases
    /// around `t`: the spin plus the small share of precession and Sun motion.
    pub fn azimuth_rate(&self, u: Vec3, t: Instant) -> f64 {
        self.azimuth_rate_in(&self.anchored(t.anchor_ns), u, t)
    }

    /// [`ScanLaw::azimuth_rate`] reusing the terms of `t`'s anchor.
    pub fn azimuth_rate_in(&self, anchored: &Anchored, u: Vec3, t: Instant) -> f64 {
        let (a0, _) = self.frame_in(anchored, t).srs_angles(u);
        let (a1, _) = self.frame_in(anchored, t.plus(1.0)).srs_angles(u);
        let r = -wrap_pi(a1 - a0);
        if r > 0.5 * SPIN_RATE_RAD_S {
            r
        } else {
            SPIN_RATE_RAD_S
        }
    }
}

/// Angle wrapped into (−π, π].
pub fn wrap_pi(a: f64) -> f64 {
    // `a.rem_euclid(TAU)` bit for bit, without its software fmod for the
    // common |a| < 2·TAU (the subtraction is then exact, by Sterbenz's lemma).
    let r = if a.abs() < TAU {
        a
    } else if a.abs() < 2.0 * TAU {
        // fmod's zero keeps the dividend's sign.
        let r = a - TAU.copysign(a);
        if r == 0.0 { 0.0f64.copysign(a) } else { r }
    } else {
        a % TAU
    };
    let w = if r < 0.0 { r + TAU } else { r };
    if w > std::f64::consts::PI { w - TAU } else { w }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::geom::MAS_PER_RAD;

    fn law() -> ScanLaw {
        ScanLaw::new(0.3, 1.1, Vec::new())
    }

    fn sun_direction(t_ns: u64) -> Vec3 {
        let days = 3652.5 + (t_ns as f64 * 1e-9 + 32.184) / 86_400.0;
        let lon = (280.460 + SUN_RATE_DEG_PER_DAY * days).to_radians();
        let ecl = Vec3::new(lon.cos(), lon.sin(), 0.0);
        rot_x(OBLIQUITY_DEG.to_radians()).rotate(ecl)
    }

    #[test]
    fn spin_axis_stays_45_degrees_from_the_sun() {
        let law = law();
        for day in [0u64, 1, 17, 63, 400, 6000] {
            let t = day * 86_400 * NS_PER_S + 12_345;
            let z = law
                .true_attitude(Instant::at(t))
                .rotate(Vec3::new(0.0, 0.0, 1.0));
            let angle = z.angle_to(sun_direction(t)).to_degrees();
            assert!((angle - 45.0).abs() < 1e-9, "day {day}: {angle}");
        }
    }

    #[test]
    fn stars_drift_to_decreasing_azimuth_at_60_arcsec_per_second() {
        let law = law();
        let t0 = Instant::at(200_000_000 * NS_PER_S);
        let x = law.true_attitude(t0).rotate(Vec3::new(1.0, 0.0, 0.0));
        let (az0, _) = law.srs_angles(x, t0);
        let (az1, _) = law.srs_angles(x, t0.plus(1.0));
        let rate_arcsec = (az1 - az0) * MAS_PER_RAD / 1000.0;
        // Precession and the Sun add well under 1″/s.
        assert!((rate_arcsec + 60.0).abs() < 0.5, "{rate_arcsec}");
    }

    #[test]
    fn anchor_and_offset_describe_the_same_attitude() {
        let law = law();
        let a = 300_000_000 * NS_PER_S + 777;
        let q1 = law.true_attitude(Instant::at(a).plus(42.5));
        let q2 = law.true_attitude(Instant::at(a + 42_500_000_000));
        assert!(q1.angle_to(q2) * MAS_PER_RAD < 1e-4);
    }

    #[test]
    fn anchored_frames_match_the_direct_attitude() {
        let law = ScanLaw::new(
            0.3,
            1.1,
            vec![Disturbance {
                obt_ns: 300_000_010 * NS_PER_S,
                delta_rate_mas_per_s: 3.0,
                settle_s: 60.0,
            }],
        );
        let anchor = 300_000_000 * NS_PER_S + 777;
        let anchored = law.anchored(anchor);
        let u = Vec3::new(0.2, -0.7, 0.4).normalized();
        // Offsets inside and beyond the Taylor range of `rot_z_small`.
        for i in -40..=40 {
            let t = Instant::at(anchor).plus(i as f64 * 37.3);
            let fast = law.frame_in(&anchored, t);
            let q = law.true_attitude(t);
            // The frame's attitude, slow ⊗ Rz(spin), against the direct one.
            let q_frame = fast.slow_conj.conj() * rot_z(fast.spin);
            assert!(q_frame.angle_to(q) * MAS_PER_RAD < 1e-6, "offset {i}");
            let (az, el) = fast.srs_angles(u);
            let v = q.conj().rotate(u);
            assert!(wrap_pi(az - v.y.atan2(v.x)).abs() < 1e-14, "offset {i}");
            assert!((el - v.z.asin()).abs() < 1e-14, "offset {i}");
        }
    }

    #[test]
    fn wrap_pi_matches_rem_euclid_bit_for_bit() {
        let mut xs = vec![0.0, -0.0, TAU, -TAU, 2.0 * TAU, -2.0 * TAU, f64::NAN, 1e300];
        for i in -5000..5000 {
            let x = i as f64 * 0.00731;
            xs.extend([x, x.next_up(), x.next_down()]);
        }
        for x in xs {
            let reference = {
                let w = x.rem_euclid(TAU);
                if w > std::f64::consts::PI { w - TAU } else { w }
            };
            assert_eq!(wrap_pi(x).to_bits(), reference.to_bits(), "{x}");
        }
    }

    #[test]
    fn crossing_solver_hits_the_target_azimuth() {
        let law = law();
        let t0 = Instant::at(250_000_000 * NS_PER_S);
        let u = law
            .true_attitude(t0)
            .rotate(meridian_core::instrument::srs_from_angles(0.2, 0.001));
        let (t, el) = law.solve_crossing(u, 0.1, t0);
        let (az, _) = law.srs_angles(u, t);
        assert!((az - 0.1).abs() * MAS_PER_RAD < 1e-3);
        // The spin axis moves ~0.2″/s, so the elevation drifts over 344 s.
        assert!((el - 0.001).abs() < 5e-4, "{el}");
        assert!((t.offset_s - 0.1 / SPIN_RATE_RAD_S).abs() < 1.0);
    }

    #[test]
    fn disturbance_shows_only_in_the_true_attitude_while_settling() {
        let hit = 100_000 * NS_PER_S;
        let d = Disturbance {
            obt_ns: hit,
            delta_rate_mas_per_s: 4.0,
            settle_s: 30.0,
        };
        let law = ScanLaw::new(0.0, 0.0, vec![d]);
        let at = |s: f64| Instant::at(hit).plus(s);
        let sep = |s: f64| {
            law.true_attitude(at(s))
                .angle_to(law.onboard_attitude(at(s)))
                * MAS_PER_RAD
        };
        assert!(sep(-1.0) < 1e-6);
        assert!((sep(30.0) - 120.0).abs() < 1e-3, "{}", sep(30.0));
        assert!((sep(45.0) - 60.0).abs() < 1e-3);
        assert!(sep(60.5) < 1e-6);
        // The true attitude itself now runs 4 mas/s faster than the nominal law.
        let nominal = ScanLaw::new(0.0, 0.0, Vec::new());
        let lead = law
            .true_attitude(at(100.0))
            .angle_to(nominal.true_attitude(at(100.0)));
        assert!((lead * MAS_PER_RAD - 400.0).abs() < 1e-3);
    }
}
