//! New-source candidates (ICD §8): unmatched transits within the match radius of
//! each other are linked; each connected group is named by its smallest
//! `transit_id`.
//!
//! Pairs are found on a grid of cubes in 3-space whose side is at least the
//! chord of the radius: two unit vectors within the radius of each other lie in
//! the same or adjacent cubes, so each transit tests the transits of the 27
//! cubes around its own (in 9 runs of consecutive keys), with no sky projection
//! and no special case at the poles or the RA wrap.

use crate::matcher::TransitPos;
use meridian_core::Vec3;
use rayon::prelude::*;

/// Bits per axis of a cube key.
const AXIS_BITS: u32 = 21;
/// Largest axis index.
const AXIS_MAX: u64 = (1 << AXIS_BITS) - 1;
/// Smallest cube side: keeps every axis index below 2^AXIS_BITS.
const MIN_SIDE: f64 = 2.0 / 2_000_000.0;

/// The name (smallest `transit_id` of its connected group) of each transit of
/// `unmatched`, in input order. Linking is symmetric and transitive, so the
/// result does not depend on input order.
pub fn link_new_sources(unmatched: &[TransitPos], radius_rad: f64) -> Vec<u64> {
    let n = unmatched.len();
    if n == 0 {
        return Vec::new();
    }
    let grid = Grid::new(radius_rad);
    let mut by_key: Vec<(u64, u32)> = unmatched
        .par_iter()
        .enumerate()
        .map(|(i, t)| (grid.key(grid.cube(t.pos)), i as u32))
        .collect();
    by_key.par_sort_unstable();
    // Each transit finds its partners of larger index: every link once.
    let edges: Vec<(u32, u32)> = by_key
        .par_iter()
        .with_min_len(256)
        .flat_map_iter(|&(_, i)| {
            let t = &unmatched[i as usize];
            let cube = grid.cube(t.pos);
            // All 27 cubes' keys lie between the first run's start and the
            // last run's end: two searches of the whole list, then the nine
            // runs are searched in that (short) stretch.
            let (first, last) = grid.key_span(cube);
            let a = by_key.partition_point(|e| e.0 < first);
            let b = a + by_key[a..].partition_point(|e| e.0 <= last);
            let near = &by_key[a..b];
            let mut out = Vec::new();
            for (lo, hi) in grid.neighbour_runs(cube) {
                let start = near.partition_point(|e| e.0 < lo);
                for &(_, j) in near[start..].iter().take_while(|e| e.0 <= hi) {
                    if j > i && t.pos.angle_to(unmatched[j as usize].pos) <= radius_rad {
                        out.push((i, j));
                    }
                }
            }
            out
        })
        .collect();
    let mut parent: Vec<u32> = (0..n as u32).collect();
    for (a, b) in edges {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb) as usize] = ra.min(rb);
        }
    }
    let mut name = vec![u64::MAX; n];
    for (i, t) in unmatched.iter().enumerate() {
        let r = find(&mut parent, i as u32) as usize;
        name[r] = name[r].min(t.transit_id);
    }
    (0..n)
        .map(|i| name[find(&mut parent, i as u32) as usize])
        .collect()
}

/// Cubes of side `side` over [-1, 1]³.
struct Grid {
    inv_side: f64,
}

impl Grid {
    fn new(radius_rad: f64) -> Self {
        // The chord of the radius, widened far beyond rounding so that a pair
        // within the radius can never land two cubes apart.
        let chord = if radius_rad >= std::f64::consts::PI {
            2.0
        } else {
            2.0 * (radius_rad / 2.0).sin()
        };
        let side = (chord * (1.0 + 1e-6) + 1e-12).max(MIN_SIDE);
        Grid {
            inv_side: 1.0 / side,
        }
    }

    fn cube(&self, v: Vec3) -> [u64; 3] {
        [v.x, v.y, v.z].map(|c| (((c + 1.0) * self.inv_side).floor().max(0.0) as u64).min(AXIS_MAX))
    }

    fn key(&self, [x, y, z]: [u64; 3]) -> u64 {
        (x << (2 * AXIS_BITS)) | (y << AXIS_BITS) | z
    }

    /// Smallest and largest key of the 27 cubes around `c`.
    fn key_span(&self, [x, y, z]: [u64; 3]) -> (u64, u64) {
        let lo = |v: u64| v.saturating_sub(1);
        let hi = |v: u64| (v + 1).min(AXIS_MAX);
        (
            self.key([lo(x), lo(y), lo(z)]),
            self.key([hi(x), hi(y), hi(z)]),
        )
    }

    /// Key ranges (inclusive) of the 27 cubes around `c`: for each of the 9
    /// (x, y) columns, its three z cubes are consecutive keys.
    fn neighbour_runs(&self, [x, y, z]: [u64; 3]) -> impl Iterator<Item = (u64, u64)> + '_ {
        let span = |v: u64| v.saturating_sub(1)..=(v + 1).min(AXIS_MAX);
        span(x).flat_map(move |nx| {
            span(y).map(move |ny| {
                (
                    self.key([nx, ny, z.saturating_sub(1)]),
                    self.key([nx, ny, (z + 1).min(AXIS_MAX)]),
                )
            })
        })
    }
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let up = parent[parent[x as usize] as usize];
        parent[x as usize] = up;
        x = up;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::geom::RAD_PER_ARCSEC;

    /// Connected components by repeated relabelling over every pair.
    fn reference(ts: &[TransitPos], radius: f64) -> Vec<u64> {
        let mut name: Vec<u64> = ts.iter().map(|t| t.transit_id).collect();
        loop {
            let mut changed = false;
            for i in 0..ts.len() {
                for j in 0..ts.len() {
                    if ts[i].pos.angle_to(ts[j].pos) <= radius && name[j] < name[i] {
                        name[i] = name[j];
                        changed = true;
                    }
                }
            }
            if !changed {
                return name;
            }
        }
    }

    #[test]
    fn grid_links_exactly_like_all_pairs() {
        let mut state = 99u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for radius_arcsec in [1e-4, 0.3, 1.0, 40.0, 3600.0] {
            let radius = radius_arcsec * RAD_PER_ARCSEC;
            // Clusters around a few centres (poles, RA wrap, random), spread
            // over about six times the radius so that some pairs link and some not.
            let centres = [
                (0.0, 90.0),
                (180.0, -90.0),
                (359.9999, 0.0),
                (0.0, 0.0),
                (123.0, 45.0),
            ];
            let mut ts = Vec::new();
            for (k, &(ra, dec)) in centres.iter().enumerate() {
                let c = Vec3::from_radec_deg(ra, dec);
                let e1 = c.cross(Vec3::new(0.3, 0.5, 0.8)).normalized();
                let e2 = c.cross(e1);
                for m in 0..40 {
                    let (a, b) = (uniform() - 0.5, uniform() - 0.5);
                    let v = (c + e1 * (12.0 * radius * a) + e2 * (12.0 * radius * b)).normalized();
                    ts.push(TransitPos {
                        transit_id: 1000 - (k * 40 + m) as u64,
                        pos: v,
                        epoch: 2020.0,
                    });
                }
            }
            let got = link_new_sources(&ts, radius);
            assert_eq!(got, reference(&ts, radius), "radius {radius_arcsec}″");
            let groups: std::collections::BTreeSet<u64> = got.iter().copied().collect();
            assert!(groups.len() > centres.len(), "some transits stay apart");
            assert!(groups.len() < ts.len(), "some transits link");
        }
    }
}
