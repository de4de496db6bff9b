//! Sky geometry: unit vectors, right ascension and declination, angular separation
//! that stays exact for tiny angles, and unit quaternions (Hamilton convention,
//! scalar last as in ICD §4.2) with rotation and slerp.

use std::ops::{Add, Mul, Neg, Sub};

/// Milliarcseconds per radian.
pub const MAS_PER_RAD: f64 = 180.0 / std::f64::consts::PI * 3_600_000.0;
/// Radians per arcsecond.
pub const RAD_PER_ARCSEC: f64 = std::f64::consts::PI / (180.0 * 3600.0);
/// Radians per milliarcsecond.
pub const RAD_PER_MAS: f64 = RAD_PER_ARCSEC / 1000.0;

/// A vector in 3-space; used mostly as a unit direction on the sky.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Vec3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl Vec3 {
    pub const fn new(x: f64, y: f64, z: f64) -> Self {
        Self { x, y, z }
    }

    /// Unit vector from right ascension and declination in degrees.
    pub fn from_radec_deg(ra_deg: f64, dec_deg: f64) -> Self {
        Self::from_radec_rad(ra_deg.to_radians(), dec_deg.to_radians())
    }

    /// Unit vector from right ascension and declination in radians.
    pub fn from_radec_rad(ra: f64, dec: f64) -> Self {
        let (sd, cd) = dec.sin_cos();
        let (sa, ca) = ra.sin_cos();
        Self::new(cd * ca, cd * sa, sd)
    }

    /// Right ascension in [0°, 360°) and declination in [−90°, 90°] of this
    /// direction (need not be normalised). Declination uses atan2 rather than asin
    /// so it stays accurate near the poles.
    pub fn to_radec_deg(self) -> (f64, f64) {
        let (ra, dec) = self.to_radec_rad();
        (ra.to_degrees(), dec.to_degrees())
    }

    /// Right ascension in [0, 2π) and declination in radians.
    pub fn to_radec_rad(self) -> (f64, f64) {
        let rho = self.x.hypot(self.y);
        let mut ra = self.y.atan2(self.x);
        if ra < 0.0 {
            ra += std::f64::consts::TAU;
        }
        // 2π itself can appear by rounding of a tiny negative angle.
        if ra >= std::f64::consts::TAU {
            ra = 0.0;
        }
        (ra, self.z.atan2(rho))
    }

    pub fn dot(self, o: Self) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    pub fn cross(self, o: Self) -> Self {
        Self::new(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }

    pub fn norm(self) -> f64 {
        self.dot(self).sqrt()
    }

    /// This vector scaled to unit length (a zero vector stays zero).
    pub fn normalized(self) -> Self {
        let n = self.norm();
        if n == 0.0 { self } else { self * (1.0 / n) }
    }

    /// Angle between two directions in radians, `atan2(|a×b|, a·b)`: exact for
    /// tiny angles where `acos` of the dot product loses everything.
    pub fn angle_to(self, o: Self) -> f64 {
        self.cross(o).norm().atan2(self.dot(o))
    }
}

impl Add for Vec3 {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::new(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl Sub for Vec3 {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self::new(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Mul<f64> for Vec3 {
    type Output = Self;
    fn mul(self, s: f64) -> Self {
        Self::new(self.x * s, self.y * s, self.z * s)
    }
}

impl Neg for Vec3 {
    type Output = Self;
    fn neg(self) -> Self {
        Self::new(-self.x, -self.y, -self.z)
    }
}

/// Angular separation in radians between two (ra, dec) positions in degrees.
pub fn separation_deg(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    Vec3::from_radec_deg(ra1, dec1).angle_to(Vec3::from_radec_deg(ra2, dec2))
}

/// A quaternion `x i + y j + z k + w`, scalar last (ICD §4.2). Attitude quaternions
/// are unit quaternions that rotate SRS vectors into ICRS: `u' = q ⊗ u ⊗ q*`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quat {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub w: f64,
}

impl Quat {
    pub const IDENTITY: Quat = Quat::new(0.0, 0.0, 0.0, 1.0);

    pub const fn new(x: f64, y: f64, z: f64, w: f64) -> Self {
        Self { x, y, z, w }
    }

    /// Rotation by `angle` radians about `axis` (right-handed; need not be unit).
    pub fn from_axis_angle(axis: Vec3, angle: f64) -> Self {
        let a = axis.normalized();
        let (s, c) = (angle / 2.0).sin_cos();
        Self::new(a.x * s, a.y * s, a.z * s, c)
    }

    /// As an array `[x, y, z, w]`, the order of ICD §9 `attitude.q`.
    pub fn to_array(self) -> [f64; 4] {
        [self.x, self.y, self.z, self.w]
    }

    pub fn from_array(a: [f64; 4]) -> Self {
        Self::new(a[0], a[1], a[2], a[3])
    }

    fn vector(self) -> Vec3 {
        Vec3::new(self.x, self.y, self.z)
    }

    pub fn conj(self) -> Self {
        Self::new(-self.x, -self.y, -self.z, self.w)
    }

    pub fn dot(self, o: Self) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z + self.w * o.w
    }

    pub fn norm(self) -> f64 {
        self.dot(self).sqrt()
    }

    pub fn normalized(self) -> Self {
        let n = self.norm();
        Self::new(self.x / n, self.y / n, self.z / n, self.w / n)
    }

    /// Rotates `v` by this unit quaternion: `q ⊗ (v, 0) ⊗ q*`, computed with the
    /// equivalent `v + 2w(u×v) + 2u×(u×v)` (u the vector part), which is cheaper.
    pub fn rotate(self, v: Vec3) -> Vec3 {
        let u = self.vector();
        let t = u.cross(v) * 2.0;
        v + t * self.w + u.cross(t)
    }

    /// Spherical linear interpolation from `self` (f = 0) to `other` (f = 1) along
    /// the shorter arc. Falls back to normalised linear interpolation when the two
    /// are so close that slerp's sine ratio is ill-conditioned.
    pub fn slerp(self, other: Self, f: f64) -> Self {
        let mut b = other;
        let mut d = self.dot(other);
        if d < 0.0 {
            b = Self::new(-b.x, -b.y, -b.z, -b.w);
            d = -d;
        }
        let (wa, wb) = if d > 1.0 - 1e-12 {
            (1.0 - f, f)
        } else {
            let theta = d.min(1.0).acos();
            let s = theta.sin();
            (((1.0 - f) * theta).sin() / s, (f * theta).sin() / s)
        };
        Self::new(
            wa * self.x + wb * b.x,
            wa * self.y + wb * b.y,
            wa * self.z + wb * b.z,
            wa * self.w + wb * b.w,
        )
        .normalized()
    }

    /// Rotation angle in radians between two attitudes (0..π).
    pub fn angle_to(self, other: Self) -> f64 {
        // 2·atan2(|vector part of a*⊗b|, |scalar part|) is exact for tiny angles.
        let r = self.conj() * other;
        2.0 * r.vector().norm().atan2(r.w.abs())
    }
}

impl Mul for Quat {
    type Output = Self;
    /// Hamilton product `self ⊗ o`.
    fn mul(self, o: Self) -> Self {
        Self::new(
            self.w * o.x + self.x * o.w + self.y * o.z - self.z * o.y,
            self.w * o.y - self.x * o.z + self.y * o.w + self.z * o.x,
            self.w * o.z + self.x * o.y - self.y * o.x + self.z * o.w,
            self.w * o.w - self.x * o.x - self.y * o.y - self.z * o.z,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::f64::consts::PI;

    fn close(a: Vec3, b: Vec3, tol: f64) -> bool {
        (a - b).norm() < tol
    }

    #[test]
    fn icd_rotation_convention_turns_x_towards_y() {
        let theta: f64 = 0.3;
        let q = Quat::new(0.0, 0.0, (theta / 2.0).sin(), (theta / 2.0).cos());
        let v = q.rotate(Vec3::new(1.0, 0.0, 0.0));
        assert!(close(v, Vec3::new(theta.cos(), theta.sin(), 0.0), 1e-15));
        // Same as the explicit Hamilton sandwich q ⊗ (v,0) ⊗ q*.
        let p = q * Quat::new(1.0, 0.0, 0.0, 0.0) * q.conj();
        assert!(close(v, Vec3::new(p.x, p.y, p.z), 1e-15));
    }

    #[test]
    fn radec_round_trip_and_wrap() {
        let (ra, dec) = Vec3::from_radec_deg(359.999_999, -12.5).to_radec_deg();
        assert!((ra - 359.999_999).abs() < 1e-9 && (dec + 12.5).abs() < 1e-12);
        let (ra, _) = Vec3::new(1.0, -1e-300, 0.0).to_radec_deg();
        assert!((0.0..360.0).contains(&ra));
        let (_, dec) = Vec3::new(0.0, 0.0, 1.0).to_radec_deg();
        assert_eq!(dec, 90.0);
    }

    #[test]
    fn tiny_separations_are_exact() {
        let a = Vec3::from_radec_deg(10.0, 20.0);
        let b = Vec3::from_radec_deg(10.0, 20.0 + 1e-6 / 3600.0); // 1 µas
        let sep_uas = a.angle_to(b) * MAS_PER_RAD * 1000.0;
        assert!((sep_uas - 1.0).abs() < 1e-4, "{sep_uas}");
    }

    fn unit_vec() -> impl Strategy<Value = Vec3> {
        (0.0..360.0f64, -90.0..=90.0f64).prop_map(|(r, d)| Vec3::from_radec_deg(r, d))
    }

    fn unit_quat() -> impl Strategy<Value = Quat> {
        (-1.0..1.0f64, -1.0..1.0f64, -1.0..1.0f64, -1.0..1.0f64)
            .prop_filter("non-zero", |(x, y, z, w)| {
                x * x + y * y + z * z + w * w > 1e-3
            })
            .prop_map(|(x, y, z, w)| Quat::new(x, y, z, w).normalized())
    }

    proptest! {
        #[test]
        fn rotation_preserves_length_and_angles(q in unit_quat(), a in unit_vec(), b in unit_vec()) {
            let (ra, rb) = (q.rotate(a), q.rotate(b));
            prop_assert!((ra.norm() - 1.0).abs() < 1e-14);
            prop_assert!((ra.angle_to(rb) - a.angle_to(b)).abs() < 1e-13);
        }

        #[test]
        fn conjugate_undoes_rotation(q in unit_quat(), a in unit_vec()) {
            prop_assert!(close(q.conj().rotate(q.rotate(a)), a, 1e-14));
        }

        #[test]
        fn product_composes_rotations(p in unit_quat(), q in unit_quat(), a in unit_vec()) {
            prop_assert!(close((p * q).rotate(a), p.rotate(q.rotate(a)), 1e-13));
        }

        #[test]
        fn separation_is_symmetric_and_bounded(a in unit_vec(), b in unit_vec()) {
            let s = a.angle_to(b);
            prop_assert!((0.0..=PI).contains(&s));
            prop_assert_eq!(s, b.angle_to(a));
            prop_assert!((a.angle_to(-a) - PI).abs() < 1e-12);
        }

        #[test]
        fn separation_obeys_triangle_inequality(a in unit_vec(), b in unit_vec(), c in unit_vec()) {
            prop_assert!(a.angle_to(c) <= a.angle_to(b) + b.angle_to(c) + 1e-12);
        }

        #[test]
        fn slerp_hits_endpoints_and_moves_uniformly(
            axis in unit_vec(), angle in 1e-9..3.0f64, f in 0.0..=1.0f64, q0 in unit_quat()
        ) {
            let q1 = Quat::from_axis_angle(axis, angle) * q0;
            prop_assert!(q0.slerp(q1, 0.0).angle_to(q0) < 1e-12);
            prop_assert!(q0.slerp(q1, 1.0).angle_to(q1) < 1e-12);
            // Uniform rotation: the interpolant is exactly rotation by f·angle.
            let expect = Quat::from_axis_angle(axis, f * angle) * q0;
            prop_assert!(q0.slerp(q1, f).angle_to(expect) < 1e-12);
        }

        #[test]
        fn radec_round_trip(ra in 0.0..360.0f64, dec in -89.9999..89.9999f64) {
            let (r, d) = Vec3::from_radec_deg(ra, dec).to_radec_deg();
            let back = Vec3::from_radec_deg(r, d);
            prop_assert!(back.angle_to(Vec3::from_radec_deg(ra, dec)) < 1e-14);
        }
    }
}
