//! New-source candidates (ICD §8): unmatched transits within the match radius of
//! each other are linked; each connected group is named by its smallest
//! `transit_id`.

use crate::matcher::TransitPos;
use cdshealpix::nested;
use rayon::prelude::*;

/// The name (smallest `transit_id` of its connected group) of each transit of
/// `unmatched`, in input order. Linking is symmetric and transitive, so the
/// result does not depend on input order.
pub fn link_new_sources(unmatched: &[TransitPos], radius_rad: f64) -> Vec<u64> {
    let n = unmatched.len();
    if n == 0 {
        return Vec::new();
    }
    let depth = link_depth(radius_rad);
    let cell_of = |t: &TransitPos| {
        let (lon, lat) = t.pos.to_radec_rad();
        nested::hash(depth, lon, lat)
    };
    let mut by_cell: Vec<(u64, u32)> = unmatched
        .par_iter()
        .enumerate()
        .map(|(i, t)| (cell_of(t), i as u32))
        .collect();
    by_cell.par_sort_unstable();
    // Widened as in the matcher: cdshealpix's coverage can be short by 8% of a cell.
    let cone = radius_rad * (1.0 + 1e-9) + 1e-12 + 0.1 * crate::matcher::cell_radius(depth);
    // Each transit finds its partners of larger index: every link once.
    let edges: Vec<(u32, u32)> = (0..n)
        .into_par_iter()
        .with_min_len(64)
        .flat_map_iter(|i| {
            let t = &unmatched[i];
            let (lon, lat) = t.pos.to_radec_rad();
            let cells = nested::cone_coverage_approx(depth, lon, lat, cone);
            let mut out = Vec::new();
            for cell in cells.flat_iter() {
                let start = by_cell.partition_point(|e| e.0 < cell);
                for &(c, j) in &by_cell[start..] {
                    if c != cell {
                        break;
                    }
                    if j as usize > i && t.pos.angle_to(unmatched[j as usize].pos) <= radius_rad {
                        out.push((i as u32, j));
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

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let up = parent[parent[x as usize] as usize];
        parent[x as usize] = up;
        x = up;
    }
    x
}

/// Deepest depth whose cells are still about four times the radius across, so a
/// cone of the radius touches only a few cells.
fn link_depth(radius_rad: f64) -> u8 {
    // Mean cell size at depth d is about 1.0233 / 2^d radians.
    (0..=29u8)
        .rev()
        .find(|&d| 1.0233 / f64::from(1u32 << d.min(31)) >= 4.0 * radius_rad)
        .unwrap_or(0)
}
