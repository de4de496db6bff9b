//! The cross-match of transits against an [`Index`] (ICD §8), in parallel.
//!
//! Transits are grouped by HEALPix cell (up to three levels coarser than the
//! index's cells, chosen from the batch's density) so that each group reads a
//! compact part of the mapped index once; the groups run on rayon's pool. For
//! each group and tier the search cone is the smallest cone around the group's
//! transits widened by the match radius plus the tier's proper-motion margin
//! `max |µ| × max |Δt|`; the index cells it covers (cdshealpix cone coverage)
//! come with a bounding sphere of their sources, stored in the index. Each transit then scans only the
//! cells whose sphere it can reach, prefilters sources by chord distance at
//! their reference epoch, and decides with the exactly propagated position
//! (ICD §7) and [`Vec3::angle_to`]. Every transit's result depends only
//! on that transit and the index, so the output is the same for any number of
//! threads or any input order.
//!
//! A candidate lies *within* the radius when its separation is ≤ the radius.

use crate::index::{Index, N_TIERS, Tier};
use crate::propagate::propagate;
use cdshealpix::nested;
use meridian_core::Vec3;
use meridian_core::geom::{MAS_PER_RAD, RAD_PER_ARCSEC, RAD_PER_MAS};
use meridian_core::records::{Match, Transit};
use meridian_core::time::julian_epoch_tt;
use rayon::iter::Either;
use rayon::prelude::*;
use std::f64::consts::PI;

/// Default match radius (ICD §8).
pub const DEFAULT_RADIUS_ARCSEC: f64 = 1.0;
/// Largest accepted match radius: wider cones are not a cross-match any more.
pub const MAX_RADIUS_ARCSEC: f64 = 3600.0;

/// What can go wrong matching.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatchError {
    #[error("match radius {0}″ must be positive and at most {MAX_RADIUS_ARCSEC}″")]
    BadRadius(f64),
    #[error("transit_id {0} appears more than once among the transits to match")]
    DuplicateTransit(u64),
}

/// A transit reduced to what the match needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransitPos {
    pub transit_id: u64,
    /// Unit vector of the transit's position.
    pub pos: Vec3,
    /// Julian epoch (TT) of the transit, for propagation.
    pub epoch: f64,
}

impl TransitPos {
    /// The transit's position and epoch, or None when it has no (finite)
    /// position: such a transit takes no part in the match (ICD §5).
    pub fn from_transit(t: &Transit) -> Option<Self> {
        match (t.ra, t.dec) {
            (Some(ra), Some(dec)) if ra.is_finite() && dec.is_finite() && dec.abs() <= 90.0 => {
                Some(TransitPos {
                    transit_id: t.transit_id,
                    pos: Vec3::from_radec_deg(ra, dec),
                    epoch: julian_epoch_tt(t.t_obs_ns),
                })
            }
            _ => None,
        }
    }
}

/// One candidate of a transit: separation (radians), source and the source's
/// position propagated to the transit's epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub sep_rad: f64,
    pub source_id: i64,
    pub pos: Vec3,
}

/// Candidate lists of many transits in one allocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CandidateLists {
    /// (start, length) in `items` of each transit's list.
    spans: Vec<(u32, u32)>,
    items: Vec<Candidate>,
}

impl CandidateLists {
    /// Candidates of the `i`-th transit, nearest first.
    pub fn get(&self, i: usize) -> &[Candidate] {
        let (start, len) = self.spans[i];
        &self.items[start as usize..(start + len) as usize]
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Candidates of one group: (transit index, start, length) into `items`.
struct GroupCandidates {
    spans: Vec<(u32, u32, u32)>,
    items: Vec<Candidate>,
}

/// The matched part of a batch, and the unmatched transits still to be linked
/// into new-source groups (which needs every unmatched transit of the run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// Match records of transits with at least one candidate.
    pub matched: Vec<Match>,
    /// Transits with a position and no candidate.
    pub unmatched: Vec<TransitPos>,
}

/// Matches transits against a mapped index.
pub struct Matcher<'a> {
    index: &'a Index,
    radius: f64,
}

/// Angle widened by a relative and absolute slack, so that rounding in the
/// prefilters can only let more through, never less.
fn widen(angle: f64) -> f64 {
    angle * (1.0 + 1e-9) + 1e-12
}

/// Squared chord length of an angle (4 for anything ≥ π).
fn chord2(angle: f64) -> f64 {
    if angle >= PI {
        4.0
    } else {
        let c = 2.0 * (angle / 2.0).sin();
        c * c
    }
}

#[inline]
fn dist2(a: [f64; 3], b: Vec3) -> f64 {
    let b = [b.x, b.y, b.z];
    dist2_arr(a, b)
}

#[inline]
fn dist2_arr(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dx * dx + dy * dy + dz * dz
}

/// Proper-motion margin (radians) of a tier for a transit at `epoch`.
fn pm_margin(tier: &Tier, epoch: f64) -> f64 {
    let dt = (epoch - tier.min_epoch)
        .abs()
        .max((epoch - tier.max_epoch).abs());
    tier.max_pm * RAD_PER_MAS * dt
}

/// Bound on the distance from the centre of any cell at `depth` to any point of
/// that cell. The largest such distance over the sky is 0.841 rad at depth 0 and
/// tends to 1.069 / 2^depth from below (measured on sampled cell borders, see
/// the test); cdshealpix's position-dependent bound is up to 8% short near the
/// polar-cap transition, so a global bound with 10% to spare is used instead.
pub(crate) fn cell_radius(depth: u8) -> f64 {
    widen(1.10 * 1.07 / f64::from(1u32 << depth.min(30)))
}

/// A non-empty cell within reach of a group, with a sphere (in 3-space, chord
/// lengths) holding all its sources, stored in the index (built from the data,
/// it needs no trigonometry and is tighter than the cell's geometric bound).
struct ReachCell {
    centre: [f64; 3],
    radius: f64,
    range: std::ops::Range<usize>,
}

impl ReachCell {
    fn new(tier: &Tier, i: usize) -> Self {
        let c = &tier.cell_table()[i];
        ReachCell {
            centre: c.centre,
            radius: c.radius,
            range: tier.range_of(i),
        }
    }
}

/// The part of one tier a group of transits can reach.
struct TierReach {
    cells: Vec<ReachCell>,
}

impl<'a> Matcher<'a> {
    /// A matcher with the given radius in arcseconds.
    pub fn new(index: &'a Index, radius_arcsec: f64) -> Result<Self, MatchError> {
        if !(radius_arcsec > 0.0 && radius_arcsec <= MAX_RADIUS_ARCSEC) {
            return Err(MatchError::BadRadius(radius_arcsec));
        }
        Ok(Self {
            index,
            radius: radius_arcsec * RAD_PER_ARCSEC,
        })
    }

    /// Match radius in radians.
    pub fn radius_rad(&self) -> f64 {
        self.radius
    }

    /// ICD §8 in full for one self-contained set of transits: one record per
    /// transit with a position, sorted by `transit_id`, unmatched transits linked
    /// into new-source groups among themselves.
    pub fn match_transits(&self, transits: &[Transit]) -> Result<Vec<Match>, MatchError> {
        let outcome = self.match_batch(transits);
        finish_matches(outcome.matched, &outcome.unmatched, self.radius)
    }

    /// Matches one batch: records for matched transits, the unmatched kept aside
    /// for [`finish_matches`]. Transits without a position are left out.
    pub fn match_batch(&self, transits: &[Transit]) -> BatchOutcome {
        let mut positions: Vec<TransitPos> = transits
            .par_iter()
            .filter_map(TransitPos::from_transit)
            .collect();
        // In transit_id order, the records come out sorted for the final merge.
        positions.par_sort_unstable_by_key(|t| t.transit_id);
        let candidates = self.candidates(&positions);
        // Straight into the two lists (in order), without a list of results.
        let (matched, unmatched) = positions
            .par_iter()
            .enumerate()
            .map(|(i, t)| (t, candidates.get(i)))
            .partition_map(|(t, cands)| match cands.split_first() {
                None => Either::Right(*t),
                Some((best, others)) => {
                    let (ra_cat, dec_cat) = best.pos.to_radec_deg();
                    Either::Left(Match {
                        transit_id: t.transit_id,
                        source_id: Some(best.source_id),
                        sep_mas: Some(best.sep_rad * MAS_PER_RAD),
                        n_candidates: cands.len() as u32,
                        ambiguous: others.iter().map(|c| c.source_id).collect(),
                        new_source: None,
                        ra_cat: Some(ra_cat),
                        dec_cat: Some(dec_cat),
                    })
                }
            });
        BatchOutcome { matched, unmatched }
    }

    /// Candidates of every transit, in input order, each list nearest first with
    /// ties to the smaller `source_id` (ICD §8).
    pub fn candidates(&self, transits: &[TransitPos]) -> CandidateLists {
        let group_depth = self.group_depth(transits.len());
        let cells: Vec<u64> = transits
            .par_iter()
            .map(|t| {
                let (lon, lat) = t.pos.to_radec_rad();
                nested::hash(group_depth, lon, lat)
            })
            .collect();
        let mut order: Vec<u32> = (0..transits.len() as u32).collect();
        order.par_sort_unstable_by_key(|&i| (cells[i as usize], i));
        let groups: Vec<&[u32]> = order
            .chunk_by(|a, b| cells[*a as usize] == cells[*b as usize])
            .collect();
        let per_group: Vec<GroupCandidates> = groups
            .par_iter()
            .with_min_len(16)
            .map(|g| self.match_group(g, transits))
            .collect();
        // One flat list; each transit's slice found through `spans`.
        let mut lists = CandidateLists {
            spans: vec![(0, 0); transits.len()],
            items: Vec::with_capacity(per_group.iter().map(|g| g.items.len()).sum()),
        };
        for g in per_group {
            let base = lists.items.len() as u32;
            for (i, start, len) in g.spans {
                lists.spans[i as usize] = (base + start, len);
            }
            lists.items.extend(g.items);
        }
        lists
    }

    /// Depth of the cells transits are grouped by: coarse enough that a group
    /// holds ~32 transits on average (its setup, a cone coverage and the cells'
    /// bounding spheres, is then shared), at most three levels above tier 0 so
    /// that each transit tests at most a few tens of cells' spheres. (Measured:
    /// three levels was fastest for a uniform sky of 1M sources, 100k transits;
    /// with the spheres stored in the index, 2 or 8 transits per group were
    /// still slower than 32 on 2M sources, 200k transits, and 128 no faster.)
    fn group_depth(&self, n_transits: usize) -> u8 {
        let finest = self.index.tier(0).depth;
        let coarsest = finest.saturating_sub(3);
        (coarsest..=finest)
            .rev()
            .find(|&g| n_transits as f64 / (12.0 * 4f64.powi(g as i32)) >= 32.0)
            .unwrap_or(coarsest)
    }

    fn match_group(&self, members: &[u32], transits: &[TransitPos]) -> GroupCandidates {
        // The group's cone is the smallest sphere around its transits' mean that
        // holds them all (exact and tight; a lone transit gives radius 0).
        let mut sum = Vec3::default();
        for &i in members {
            sum = sum + transits[i as usize].pos;
        }
        let centre = sum.normalized();
        let spread = members
            .iter()
            .map(|&i| centre.angle_to(transits[i as usize].pos))
            .fold(0.0, f64::max);
        let (lon, lat) = centre.to_radec_rad();
        let reach: Vec<(Tier, TierReach)> = (0..N_TIERS)
            .map(|t| self.index.tier(t))
            .filter(|tier| !tier.is_empty())
            .map(|tier| {
                let margin = members
                    .iter()
                    .map(|&i| pm_margin(&tier, transits[i as usize].epoch))
                    .fold(0.0, f64::max);
                let cone = widen(spread + self.radius + margin);
                (tier, reach_of(&tier, lon, lat, cone))
            })
            .collect();
        let mut out = GroupCandidates {
            spans: Vec::with_capacity(members.len()),
            items: Vec::new(),
        };
        for &i in members {
            let start = out.items.len();
            self.match_one(&transits[i as usize], &reach, &mut out.items);
            sort_candidates(&mut out.items[start..]);
            let len = out.items.len() - start;
            out.spans.push((i, start as u32, len as u32));
        }
        out
    }

    /// Appends the candidates of `t` to `found`, unsorted.
    fn match_one(&self, t: &TransitPos, reach: &[(Tier, TierReach)], found: &mut Vec<Candidate>) {
        for (tier, r) in reach {
            let search = widen(self.radius + pm_margin(tier, t.epoch));
            let src_lim = chord2(search);
            let chord = src_lim.sqrt();
            let positions = tier.positions();
            for cell in &r.cells {
                // Triangle inequality on chords: no source of the cell is within
                // `chord` of t when t is beyond the cell's sphere plus `chord`.
                let reach = cell.radius + chord;
                if dist2(cell.centre, t.pos) > reach * reach {
                    continue;
                }
                let start = cell.range.start;
                for (k, p) in positions[cell.range.clone()].iter().enumerate() {
                    if dist2(*p, t.pos) <= src_lim {
                        let s = tier.source(start + k);
                        let u = propagate(s.pos, s.pmra, s.pmdec, t.epoch - s.ref_epoch);
                        let sep = t.pos.angle_to(u);
                        if sep <= self.radius {
                            found.push(Candidate {
                                sep_rad: sep,
                                source_id: s.source_id,
                                pos: u,
                            });
                        }
                    }
                }
            }
        }
    }
}

/// Nearest first, ties to the smaller `source_id` (ICD §8).
pub fn sort_candidates(c: &mut [Candidate]) {
    c.sort_unstable_by(|a, b| {
        a.sep_rad
            .total_cmp(&b.sep_rad)
            .then(a.source_id.cmp(&b.source_id))
    });
}

/// Non-empty cells of a tier overlapping the cone `(lon, lat, cone)`.
fn reach_of(tier: &Tier, lon: f64, lat: f64, cone: f64) -> TierReach {
    let cells: Vec<ReachCell> = if cone >= PI / 2.0 {
        // Hemisphere-sized cones: every cell, filtered per transit anyway.
        (0..tier.n_cells())
            .map(|i| ReachCell::new(tier, i))
            .collect()
    } else {
        // cdshealpix decides overlap with its own centre-to-vertex bound, which
        // can be 8% short (see `cell_radius`): widen the cone by 10% of a cell.
        let cone = cone + 0.1 * cell_radius(tier.depth);
        nested::cone_coverage_approx(tier.depth, lon, lat, cone)
            .flat_iter()
            .filter_map(|cell| tier.cell_index(cell))
            .map(|i| ReachCell::new(tier, i))
            .collect()
    };
    TierReach { cells }
}

/// Completes ICD §8 for a whole run: links the unmatched transits into
/// new-source groups and returns every record sorted by `transit_id`.
/// A `transit_id` seen twice is an error.
pub fn finish_matches(
    mut matched: Vec<Match>,
    unmatched: &[TransitPos],
    radius_rad: f64,
) -> Result<Vec<Match>, MatchError> {
    let names = crate::newsource::link_new_sources(unmatched, radius_rad);
    let mut new: Vec<Match> = unmatched
        .iter()
        .zip(names)
        .map(|(t, name)| Match {
            transit_id: t.transit_id,
            source_id: None,
            sep_mas: None,
            n_candidates: 0,
            ambiguous: Vec::new(),
            new_source: Some(name),
            ra_cat: None,
            dec_cat: None,
        })
        .collect();
    // One batch's records are already in order; several batches' are not.
    for v in [&mut matched, &mut new] {
        if !v.is_sorted_by_key(|m| m.transit_id) {
            v.par_sort_unstable_by_key(|m| m.transit_id);
        }
    }
    let mut all = Vec::with_capacity(matched.len() + new.len());
    let (mut a, mut b) = (matched.into_iter().peekable(), new.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.transit_id <= y.transit_id,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        all.extend(next);
    }
    if let Some(w) = all.windows(2).find(|w| w[0].transit_id == w[1].transit_id) {
        return Err(MatchError::DuplicateTransit(w[0].transit_id));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdshealpix::compass_point::Cardinal;

    #[test]
    fn cell_radius_bounds_every_cell_border() {
        for depth in 0..=5u8 {
            for h in 0..nested::n_hash(depth) {
                let (lon, lat) = nested::center(depth, h);
                let c = Vec3::from_radec_rad(lon, lat);
                let border = nested::path_along_cell_edge(depth, h, &Cardinal::S, false, 16);
                for &(blon, blat) in border.iter() {
                    let d = c.angle_to(Vec3::from_radec_rad(blon, blat));
                    assert!(d * 1.05 < cell_radius(depth), "depth {depth} cell {h}: {d}");
                }
            }
        }
    }

    #[test]
    fn chord_prefilter_is_monotonic_and_saturates() {
        assert_eq!(chord2(PI), 4.0);
        assert_eq!(chord2(10.0), 4.0);
        let a = 1e-6;
        let v = Vec3::from_radec_rad(0.0, 0.0);
        let w = Vec3::from_radec_rad(a, 0.0);
        assert!(dist2([w.x, w.y, w.z], v) <= chord2(widen(a)));
        assert!(chord2(1e-6) < chord2(2e-6));
    }
}
