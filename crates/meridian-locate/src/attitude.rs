//! The attitude at any instant: slerp between the bracketing samples of a
//! time-ordered attitude series, only where samples lie within 2 s on both sides
//! (ICD §4.2).

use meridian_core::Quat;
use meridian_core::records::Attitude;
use meridian_core::time::NS_PER_S;

/// An instant has attitude only with a sample within this much before and after.
pub const ATTITUDE_REACH_NS: u64 = 2 * NS_PER_S;

/// Attitude samples sorted by time, unit quaternions, one per instant.
#[derive(Debug, Clone, Default)]
pub struct AttitudeSeries {
    times: Vec<u64>,
    quats: Vec<Quat>,
    /// What slerp needs of each pair of successive samples, computed once.
    arcs: Vec<Arc>,
    rejected: usize,
}

/// The arc between two successive attitude samples as `Quat::slerp` takes it:
/// the end sign-flipped onto the shorter arc, and its angle θ and sin θ (None
/// where slerp falls back to linear interpolation).
#[derive(Debug, Clone, Copy)]
struct Arc {
    end: Quat,
    angle: Option<(f64, f64)>,
}

impl Arc {
    fn new(a: Quat, b: Quat) -> Self {
        // The steps of `Quat::slerp` that do not depend on the fraction.
        let mut end = b;
        let mut d = a.dot(b);
        if d < 0.0 {
            end = Quat::new(-b.x, -b.y, -b.z, -b.w);
            d = -d;
        }
        let angle = (d <= 1.0 - 1e-12).then(|| {
            let theta = d.min(1.0).acos();
            (theta, theta.sin())
        });
        Arc { end, angle }
    }

    /// `a.slerp(b, f)` for the pair this arc was made from, bit for bit.
    fn slerp(&self, a: Quat, f: f64) -> Quat {
        let b = self.end;
        let (wa, wb) = match self.angle {
            None => (1.0 - f, f),
            Some((theta, s)) => (((1.0 - f) * theta).sin() / s, (f * theta).sin() / s),
        };
        Quat::new(
            wa * a.x + wb * b.x,
            wa * a.y + wb * b.y,
            wa * a.z + wb * b.z,
            wa * a.w + wb * b.w,
        )
        .normalized()
    }
}

impl AttitudeSeries {
    /// Builds the series from samples in any order. Samples at an instant that
    /// already has one keep the first; quaternions that are not finite or are far
    /// from unit length (|‖q‖ − 1| > 1e-3) are rejected and counted, the rest
    /// renormalised.
    pub fn new(samples: impl IntoIterator<Item = (u64, Quat)>) -> Self {
        let mut all: Vec<(u64, Quat)> = samples.into_iter().collect();
        // Stable: the first of several samples at one instant stays first.
        all.sort_by_key(|(t, _)| *t);
        let mut series = AttitudeSeries::default();
        for (t, q) in all {
            let norm = q.norm();
            if !norm.is_finite() || (norm - 1.0).abs() > 1e-3 {
                series.rejected += 1;
                continue;
            }
            if series.times.last() == Some(&t) {
                continue;
            }
            series.times.push(t);
            series.quats.push(q.normalized());
        }
        series.arcs = series
            .quats
            .windows(2)
            .map(|pair| Arc::new(pair[0], pair[1]))
            .collect();
        series
    }

    /// From ICD §9 `attitude` records.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Attitude>) -> Self {
        Self::new(
            records
                .into_iter()
                .map(|a| (a.obt_ns, Quat::from_array(a.q))),
        )
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Samples left out as invalid.
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// The attitude at `t_ns`, or None without a sample in [t − 2 s, t] and one in
    /// [t, t + 2 s].
    pub fn at(&self, t_ns: u64) -> Option<Quat> {
        let after = self.times.partition_point(|&x| x <= t_ns);
        let before = after.checked_sub(1)?;
        let t0 = self.times[before];
        if t0 == t_ns {
            return Some(self.quats[before]);
        }
        let t1 = *self.times.get(after)?;
        if t_ns - t0 > ATTITUDE_REACH_NS || t1 - t_ns > ATTITUDE_REACH_NS {
            return None;
        }
        let f = (t_ns - t0) as f64 / (t1 - t0) as f64;
        Some(self.arcs[before].slerp(self.quats[before], f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::Vec3;
    use proptest::prelude::*;

    /// Uniform rotation about a tilted axis at 60″/s from an arbitrary start.
    fn truth(t_ns: u64) -> Quat {
        let rate = 60.0 * meridian_core::geom::RAD_PER_ARCSEC / 1e9;
        let q0 = Quat::from_axis_angle(Vec3::new(0.3, -0.5, 0.8), 1.1);
        q0 * Quat::from_axis_angle(Vec3::new(0.0, 0.0, 1.0), rate * t_ns as f64)
    }

    fn sampled(times: impl IntoIterator<Item = u64>) -> AttitudeSeries {
        AttitudeSeries::new(times.into_iter().map(|t| (t, truth(t))))
    }

    proptest! {
        #[test]
        fn slerp_is_exact_for_uniform_rotation(t in 1_000_000_000u64..9_000_000_000) {
            let s = sampled((0..=10).map(|i| i * NS_PER_S));
            let q = s.at(t).expect("bracketed");
            // 1e-12 rad is 0.2 µas.
            prop_assert!(q.angle_to(truth(t)) < 1e-12);
        }
    }

    proptest! {
        #[test]
        fn interpolation_is_quat_slerp_bit_for_bit(
            qs in proptest::collection::vec((-1.0f64..1.0, -1.0f64..1.0, -1.0f64..1.0, -1.0f64..1.0), 2..6),
            f in 0.0f64..1.0,
            near in any::<bool>(),
        ) {
            // Random unit quaternions, some pairs nearly equal (slerp's linear
            // fallback) and of either sign.
            let mut samples: Vec<(u64, Quat)> = Vec::new();
            for (i, &(x, y, z, w)) in qs.iter().enumerate() {
                let q = Quat::new(x, y, z, w + 2.0).normalized();
                let q = match samples.last() {
                    Some(&(_, prev)) if near => Quat::new(-prev.x, -prev.y, -prev.z, -prev.w + 1e-13 * x).normalized(),
                    _ => q,
                };
                samples.push((i as u64 * NS_PER_S, q));
            }
            let series = AttitudeSeries::new(samples.clone());
            for pair in samples.windows(2) {
                let (t0, a) = pair[0];
                let (t1, b) = pair[1];
                let t = t0 + ((t1 - t0) as f64 * f) as u64;
                let got = series.at(t).expect("bracketed").to_array().map(f64::to_bits);
                let (qa, qb) = (a.normalized(), b.normalized());
                let want = if t == t0 {
                    qa
                } else {
                    qa.slerp(qb, (t - t0) as f64 / (t1 - t0) as f64)
                };
                prop_assert_eq!(got, want.to_array().map(f64::to_bits));
            }
        }
    }

    #[test]
    fn reach_is_two_seconds_each_side() {
        let s = sampled([10 * NS_PER_S, 12 * NS_PER_S, 20 * NS_PER_S]);
        assert!(s.at(11 * NS_PER_S).is_some());
        // Exactly on a sample needs nothing else.
        assert!(s.at(20 * NS_PER_S).is_some());
        assert!(s.at(10 * NS_PER_S).is_some());
        // Inside a 8 s gap: the nearer side is within 2 s but the far side is not.
        assert!(s.at(13 * NS_PER_S).is_none());
        assert!(s.at(19 * NS_PER_S).is_none());
        // Before the first and after the last sample.
        assert!(s.at(10 * NS_PER_S - 1).is_none());
        assert!(s.at(20 * NS_PER_S + 1).is_none());
        // Bracket of exactly 2 s on both sides is allowed (inclusive).
        let s = sampled([0, 4 * NS_PER_S]);
        assert!(s.at(2 * NS_PER_S).is_some());
        assert!(s.at(2 * NS_PER_S - 1).is_none());
        assert!(AttitudeSeries::default().at(0).is_none());
    }

    #[test]
    fn order_duplicates_and_bad_quaternions() {
        let t = [3u64, 1, 2].map(|s| s * NS_PER_S);
        let mut samples: Vec<(u64, Quat)> = t.iter().map(|&t| (t, truth(t))).collect();
        samples.push((2 * NS_PER_S, Quat::new(0.0, 0.0, 0.0, 1.0))); // later duplicate
        samples.push((4 * NS_PER_S, Quat::new(f64::NAN, 0.0, 0.0, 1.0)));
        samples.push((5 * NS_PER_S, Quat::new(0.0, 0.0, 0.0, 3.0)));
        let s = AttitudeSeries::new(samples);
        assert_eq!(s.len(), 3);
        assert_eq!(s.rejected(), 2);
        let q = s.at(2 * NS_PER_S).unwrap();
        assert!(q.angle_to(truth(2 * NS_PER_S)) < 1e-15);
    }

    #[test]
    fn sign_flipped_neighbours_take_the_short_arc() {
        let (a, b) = (truth(0), truth(NS_PER_S));
        let flipped = Quat::new(-b.x, -b.y, -b.z, -b.w);
        let s = AttitudeSeries::new([(0, a), (NS_PER_S, flipped)]);
        let q = s.at(NS_PER_S / 2).unwrap();
        assert!(q.angle_to(truth(NS_PER_S / 2)) < 1e-12);
    }
}
