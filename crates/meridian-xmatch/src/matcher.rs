//! The cross-match of transits against an [`Index`] (ICD §8), in parallel.
//!
//! Transits are grouped by HEALPix cell (up to three levels coarser than the
//! index's cells, chosen from the batch's density) so that each group reads a
//! compact part of the mapped index once. A counting sort puts the transits
//! in group order, and one parallel pass over them (rayon) sets up each group
//! when its first transit comes and searches transit by transit; the
//! results are gathered back into `transit_id` order, so records are built in
//! place and in parallel.
//!
//! For each group and tier the search cone is the smallest cone around the
//! group's transits widened by the match radius plus the tier's proper-motion
//! margin `max |µ| × max |Δt|`. It is covered (cdshealpix) with cells up to
//! three levels coarser than the tier's, each a run of the tier's cell table;
//! of those, the cells whose bounding sphere (stored in the index) meets the
//! cone are kept, sorted along the group's widest coordinate axis. A transit
//! tests only the spheres within reach on that axis, scans the sources of
//! the cells it can reach (one axis first, then the chord distance at the
//! reference epoch: both only ever reject sources the exact test rejects),
//! and decides with the exactly propagated position (ICD §7) and
//! [`Vec3::angle_to`]. Every transit's result depends only on that transit
//! and the index (candidates are sorted by a total order), so the output is
//! the same for any number of threads, any input order and any grouping.
//!
//! A candidate lies *within* the radius when its separation is ≤ the radius.

use crate::index::{Index, N_TIERS, Tier};
use crate::propagate::propagate;
use cdshealpix::nested;
use meridian_core::Vec3;
use meridian_core::geom::{MAS_PER_RAD, RAD_PER_ARCSEC, RAD_PER_MAS};
use meridian_core::records::{Match, Transit};
use meridian_core::time::julian_epoch_tt;
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
        let (ra, dec) = Self::position_of(t)?;
        Some(Self::at(t, ra, dec))
    }

    /// A transit's ra and dec (degrees) when it has a position: both given,
    /// finite, and |dec| ≤ 90°.
    pub(crate) fn position_of(t: &Transit) -> Option<(f64, f64)> {
        match (t.ra, t.dec) {
            (Some(ra), Some(dec)) if ra.is_finite() && dec.is_finite() && dec.abs() <= 90.0 => {
                Some((ra, dec))
            }
            _ => None,
        }
    }

    fn at(t: &Transit, ra: f64, dec: f64) -> Self {
        TransitPos {
            transit_id: t.transit_id,
            pos: Vec3::from_radec_deg(ra, dec),
            epoch: julian_epoch_tt(t.t_obs_ns),
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
    let (dx, dy, dz) = (a[0] - b.x, a[1] - b.y, a[2] - b.z);
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
    /// The coordinate axis along which the cell is widest (the centre's
    /// smallest component): most sources fail the prefilter on it alone.
    axis: usize,
    /// Squared (sphere radius + the group's prefilter chord): by the triangle
    /// inequality on chords, no source of the cell passes the prefilter for a
    /// transit farther than this from the centre.
    reach2: f64,
    start: usize,
    end: usize,
}

/// The part of one tier a group of transits can reach, and the group-wide
/// prefilter: `src_lim` is the squared chord of the radius plus the largest
/// proper-motion margin of the group's transits, so it admits every source
/// that any of them could match (each is then decided exactly).
struct TierReach<'a> {
    tier: Tier<'a>,
    src_lim: f64,
    /// The axis along which the group's cells spread most (its centre's
    /// smallest component); `cells` are sorted by their centre on it.
    axis: usize,
    /// The largest `sqrt(reach2)` of the cells: a transit farther than this
    /// from a cell's centre along `axis` cannot reach it.
    max_reach: f64,
    cells: Vec<ReachCell>,
}

/// A transit to search, with the HEALPix cell of the group it is searched in.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    pos: TransitPos,
    cell: u64,
}

impl Prepared {
    /// From a transit's own ra/dec (degrees), given by
    /// [`TransitPos::position_of`]: the cell needs no trigonometry back from
    /// the unit vector.
    fn at(t: &Transit, (ra, dec): (f64, f64), depth: u8) -> Self {
        let lon = ra.to_radians().rem_euclid(std::f64::consts::TAU);
        Prepared {
            pos: TransitPos::at(t, ra, dec),
            cell: nested::hash(depth, lon, dec.to_radians()),
        }
    }

    fn from_pos(pos: &TransitPos, depth: u8) -> Self {
        let (lon, lat) = pos.pos.to_radec_rad();
        Prepared {
            pos: *pos,
            cell: nested::hash(depth, lon, lat),
        }
    }
}

/// What the search found for one transit, ready to become a `match` record.
#[derive(Debug, Clone, Default)]
struct Found {
    n_candidates: u32,
    sep_rad: f64,
    source_id: i64,
    ra_cat: f64,
    dec_cat: f64,
    ambiguous: Vec<i64>,
}

impl Found {
    fn of(cands: &[Candidate]) -> Self {
        match cands.split_first() {
            None => Found::default(),
            Some((best, others)) => {
                let (ra_cat, dec_cat) = best.pos.to_radec_deg();
                Found {
                    n_candidates: cands.len() as u32,
                    sep_rad: best.sep_rad,
                    source_id: best.source_id,
                    ra_cat,
                    dec_cat,
                    ambiguous: others.iter().map(|c| c.source_id).collect(),
                }
            }
        }
    }

    /// The record of a matched transit (None when it has no candidate).
    fn record(&self, t: &TransitPos) -> Option<Match> {
        (self.n_candidates > 0).then(|| Match {
            transit_id: t.transit_id,
            source_id: Some(self.source_id),
            sep_mas: Some(self.sep_rad * MAS_PER_RAD),
            n_candidates: self.n_candidates,
            ambiguous: self.ambiguous.clone(),
            new_source: None,
            ra_cat: Some(self.ra_cat),
            dec_cat: Some(self.dec_cat),
        })
    }
}

/// The record of an unmatched transit (its new-source name filled in later).
fn unmatched_record(t: &TransitPos) -> Match {
    Match {
        transit_id: t.transit_id,
        source_id: None,
        sep_mas: None,
        n_candidates: 0,
        ambiguous: Vec::new(),
        new_source: None,
        ra_cat: None,
        dec_cat: None,
    }
}

/// Transits in group order: `order[k]` is the transit searched `k`-th, `rank`
/// its inverse, and group `g` spans `order[bounds[g]..bounds[g + 1]]`. Within
/// a group, transits keep their input order.
struct GroupOrder {
    order: Vec<u32>,
    rank: Vec<u32>,
    bounds: Vec<u32>,
}

impl GroupOrder {
    fn new(items: &[Prepared], depth: u8) -> Self {
        let n_cells = nested::n_hash(depth);
        if n_cells <= 2 * items.len() as u64 + 4096 {
            Self::by_counting(items, n_cells as usize)
        } else {
            Self::by_sorting(items)
        }
    }

    /// A counting sort by cell (stable), O(n + cells), with no random reads.
    fn by_counting(items: &[Prepared], n_cells: usize) -> Self {
        // The two sequential passes read a compact copy of the cells (made in
        // parallel) rather than striding through the items.
        let cells: Vec<usize> = items.par_iter().map(|p| p.cell as usize).collect();
        let mut next = vec![0u32; n_cells + 1];
        for &c in &cells {
            next[c + 1] += 1;
        }
        let mut bounds = Vec::new();
        for c in 1..next.len() {
            if next[c] > 0 {
                bounds.push(next[c - 1]);
            }
            next[c] += next[c - 1];
        }
        bounds.push(items.len() as u32);
        let mut order = vec![0u32; items.len()];
        let mut rank = vec![0u32; items.len()];
        for (i, &c) in cells.iter().enumerate() {
            let slot = &mut next[c];
            order[*slot as usize] = i as u32;
            rank[i] = *slot;
            *slot += 1;
        }
        GroupOrder {
            order,
            rank,
            bounds,
        }
    }

    /// For cells too many to count (few transits on a deep index).
    fn by_sorting(items: &[Prepared]) -> Self {
        let mut keyed: Vec<(u64, u32)> = items
            .par_iter()
            .enumerate()
            .map(|(i, p)| (p.cell, i as u32))
            .collect();
        keyed.par_sort_unstable();
        let mut rank = vec![0u32; items.len()];
        let mut bounds = Vec::new();
        for (k, &(cell, i)) in keyed.iter().enumerate() {
            rank[i as usize] = k as u32;
            if k == 0 || keyed[k - 1].0 != cell {
                bounds.push(k as u32);
            }
        }
        bounds.push(items.len() as u32);
        GroupOrder {
            order: keyed.into_iter().map(|(_, i)| i).collect(),
            rank,
            bounds,
        }
    }

    /// The range in `order` of the group holding position `k`.
    fn group_of(&self, k: usize) -> std::ops::Range<usize> {
        let g = self.bounds.partition_point(|&b| b as usize <= k) - 1;
        self.bounds[g] as usize..self.bounds[g + 1] as usize
    }
}

/// A worker's state while walking transits in group order: the reach of the
/// group it is in (rebuilt when the group changes) and a candidate buffer.
#[derive(Default)]
struct GroupCursor<'a> {
    group: std::ops::Range<usize>,
    reach: Vec<TierReach<'a>>,
    scratch: Vec<Candidate>,
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
        let (items, depth, distinct) = self.prepare(transits);
        // Sorted by prepare: a duplicate is a neighbour with the same id.
        if !distinct
            && let Some(w) = items
                .par_windows(2)
                .find_first(|w| w[0].pos.transit_id == w[1].pos.transit_id)
        {
            return Err(MatchError::DuplicateTransit(w[0].pos.transit_id));
        }
        let (found, rank) = self.search(&items, depth, Found::of);
        // Records in transit_id order straight away, with a flag for the
        // unmatched (in the same pass, so `found` is read once); the unmatched
        // get their new-source names below.
        let (mut records, is_unmatched): (Vec<Match>, Vec<bool>) = items
            .par_iter()
            .zip(&rank)
            .map(|(p, &k)| match found[k as usize].record(&p.pos) {
                Some(m) => (m, false),
                None => (unmatched_record(&p.pos), true),
            })
            .unzip();
        drop(found);
        let unmatched: Vec<u32> = is_unmatched
            .par_iter()
            .enumerate()
            .filter(|(_, u)| **u)
            .map(|(i, _)| i as u32)
            .collect();
        let positions: Vec<TransitPos> = unmatched
            .par_iter()
            .map(|&i| items[i as usize].pos)
            .collect();
        let names = crate::newsource::link_new_sources(&positions, self.radius);
        for (&i, name) in unmatched.iter().zip(names) {
            records[i as usize].new_source = Some(name);
        }
        Ok(records)
    }

    /// Matches one batch: records for matched transits, the unmatched kept aside
    /// for [`finish_matches`]. Transits without a position are left out.
    pub fn match_batch(&self, transits: &[Transit]) -> BatchOutcome {
        let (items, depth, _) = self.prepare(transits);
        let (found, rank) = self.search(&items, depth, Found::of);
        let result = |i: usize| &found[rank[i] as usize];
        let (matched, unmatched) = rayon::join(
            || {
                items
                    .par_iter()
                    .enumerate()
                    .filter_map(|(i, p)| result(i).record(&p.pos))
                    .collect()
            },
            || {
                items
                    .par_iter()
                    .enumerate()
                    .filter(|(i, _)| result(*i).n_candidates == 0)
                    .map(|(_, p)| p.pos)
                    .collect()
            },
        );
        BatchOutcome { matched, unmatched }
    }

    /// The transits with a position, sorted by `transit_id` (so records come
    /// out in order), each with its group cell; the depth of those cells; and
    /// whether their ids are all distinct (known when they came in strictly
    /// increasing order, as products usually hold them).
    fn prepare(&self, transits: &[Transit]) -> (Vec<Prepared>, u8, bool) {
        let depth = self.group_depth(transits.len());
        let all_positioned = transits
            .par_iter()
            .all(|t| TransitPos::position_of(t).is_some());
        let mut items: Vec<Prepared> = if all_positioned {
            // The usual case: an indexed collect writes each item in place, in
            // parallel, where a filtered one is concatenated on one thread.
            transits
                .par_iter()
                .map(|t| Prepared::at(t, TransitPos::position_of(t).unwrap_or_default(), depth))
                .collect()
        } else {
            transits
                .par_iter()
                .filter_map(|t| Some(Prepared::at(t, TransitPos::position_of(t)?, depth)))
                .collect()
        };
        let increasing = items
            .par_windows(2)
            .all(|w| w[0].pos.transit_id < w[1].pos.transit_id);
        if !increasing {
            items.par_sort_unstable_by_key(|p| p.pos.transit_id);
        }
        (items, depth, increasing)
    }

    /// Candidates of every transit, in input order, each list nearest first with
    /// ties to the smaller `source_id` (ICD §8).
    pub fn candidates(&self, transits: &[TransitPos]) -> CandidateLists {
        let depth = self.group_depth(transits.len());
        let items: Vec<Prepared> = transits
            .par_iter()
            .map(|t| Prepared::from_pos(t, depth))
            .collect();
        let (found, rank) = self.search(&items, depth, <[Candidate]>::to_vec);
        let mut lists = CandidateLists::default();
        for &k in &rank {
            let list = &found[k as usize];
            lists
                .spans
                .push((lists.items.len() as u32, list.len() as u32));
            lists.items.extend_from_slice(list);
        }
        lists
    }

    /// Runs the search over `items` in group order on rayon's pool and returns
    /// `make`'s result for each transit's sorted candidates, in group order,
    /// with the rank of each item in it. `depth` is the depth of the items'
    /// cells.
    fn search<S, F>(&self, items: &[Prepared], depth: u8, make: F) -> (Vec<S>, Vec<u32>)
    where
        S: Send,
        F: Fn(&[Candidate]) -> S + Sync,
    {
        let groups = GroupOrder::new(items, depth);
        // The transits copied into group order once (in parallel), so that the
        // group set-up and the search read them in sequence.
        let sorted: Vec<TransitPos> = groups
            .order
            .par_iter()
            .map(|&i| items[i as usize].pos)
            .collect();
        let found = (0..items.len())
            .into_par_iter()
            .with_min_len(256)
            .map_init(GroupCursor::default, |cur, k| {
                if !cur.group.contains(&k) {
                    cur.group = groups.group_of(k);
                    self.reach_group(&sorted[cur.group.clone()], &mut cur.reach);
                }
                let t = &sorted[k];
                cur.scratch.clear();
                self.match_one(t, &cur.reach, &mut cur.scratch);
                sort_candidates(&mut cur.scratch);
                make(&cur.scratch)
            })
            .collect();
        (found, groups.rank)
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

    /// Fills `reach` with what the group `members` can reach in each tier.
    fn reach_group(&self, members: &[TransitPos], reach: &mut Vec<TierReach<'a>>) {
        // The group's cone is the smallest sphere around its transits' mean that
        // holds them all (exact and tight; a lone transit gives radius 0).
        let mut sum = Vec3::default();
        for t in members {
            sum = sum + t.pos;
        }
        let centre = sum.normalized();
        // The farthest member by chord, turned into an angle once (exact to
        // rounding, which the cone's `widen` covers).
        let spread_chord2 = members
            .iter()
            .map(|t| dist2([centre.x, centre.y, centre.z], t.pos))
            .fold(0.0, f64::max);
        let spread = 2.0 * (spread_chord2.sqrt() / 2.0).min(1.0).asin();
        let (lon, lat) = centre.to_radec_rad();
        reach.clear();
        for tier in (0..N_TIERS).map(|t| self.index.tier(t)) {
            if tier.is_empty() {
                continue;
            }
            let margin = members
                .iter()
                .map(|t| pm_margin(&tier, t.epoch))
                .fold(0.0, f64::max);
            let src_lim = chord2(widen(self.radius + margin));
            let cone = widen(spread + self.radius + margin);
            let axis = widest_axis([centre.x, centre.y, centre.z]);
            let mut cells = reach_of(&tier, centre, (lon, lat), cone, src_lim.sqrt());
            cells.sort_unstable_by(|a, b| a.centre[axis].total_cmp(&b.centre[axis]));
            let max_reach = cells.iter().map(|c| c.reach2).fold(0.0, f64::max).sqrt();
            reach.push(TierReach {
                tier,
                src_lim,
                axis,
                max_reach: widen(max_reach),
                cells,
            });
        }
    }

    /// Appends the candidates of `t` to `found`, unsorted.
    fn match_one(&self, t: &TransitPos, reach: &[TierReach], found: &mut Vec<Candidate>) {
        let tv = [t.pos.x, t.pos.y, t.pos.z];
        for r in reach {
            let (tier, src_lim) = (&r.tier, r.src_lim);
            // Only cells whose centre lies within `max_reach` of t along the
            // axis can pass the sphere test (|Δ on one axis| ≤ distance).
            let v = tv[r.axis];
            let lo = r
                .cells
                .partition_point(|c| c.centre[r.axis] < v - r.max_reach);
            let hi = lo + r.cells[lo..].partition_point(|c| c.centre[r.axis] <= v + r.max_reach);
            for cell in &r.cells[lo..hi] {
                if dist2(cell.centre, t.pos) > cell.reach2 {
                    continue;
                }
                match cell.axis {
                    0 => self.scan_cell::<0>(t, tier, src_lim, cell, found),
                    1 => self.scan_cell::<1>(t, tier, src_lim, cell, found),
                    _ => self.scan_cell::<2>(t, tier, src_lim, cell, found),
                }
            }
        }
    }

    /// Appends the candidates of `t` among the sources of `cell`. Coordinate
    /// `A` (the cell's widest axis, a constant so the loop stays tight) is
    /// tested first: a source farther on one axis is farther in all three
    /// (dist2 ≥ d², also in floating point, as a sum of non-negative terms
    /// only grows by rounding), so this skips exactly sources that the full
    /// test would reject.
    #[inline]
    fn scan_cell<const A: usize>(
        &self,
        t: &TransitPos,
        tier: &Tier,
        src_lim: f64,
        cell: &ReachCell,
        found: &mut Vec<Candidate>,
    ) {
        let v = [t.pos.x, t.pos.y, t.pos.z][A];
        let positions = &tier.positions()[cell.start..cell.end];
        let near = |p: &[f64; 3]| {
            let d = p[A] - v;
            d * d <= src_lim
        };
        // Four sources per step with one branch: almost every step has none
        // near, and the per-source loop overhead was most of the scan.
        let (fours, rest) = positions.as_chunks::<4>();
        let mut base = cell.start;
        for four in fours {
            if near(&four[0]) | near(&four[1]) | near(&four[2]) | near(&four[3]) {
                for (k, p) in four.iter().enumerate() {
                    if near(p) && dist2(*p, t.pos) <= src_lim {
                        self.decide(t, tier, base + k, p, found);
                    }
                }
            }
            base += 4;
        }
        for (k, p) in rest.iter().enumerate() {
            if near(p) && dist2(*p, t.pos) <= src_lim {
                self.decide(t, tier, base + k, p, found);
            }
        }
    }

    /// Decides source `i` (at `p`, past the prefilter) exactly for `t`: its
    /// position propagated to the transit's epoch (ICD §7) within the radius.
    fn decide(
        &self,
        t: &TransitPos,
        tier: &Tier,
        i: usize,
        p: &[f64; 3],
        found: &mut Vec<Candidate>,
    ) {
        let (source_id, pmra, pmdec, ref_epoch) = tier.motion(i);
        let r = Vec3::new(p[0], p[1], p[2]);
        let u = propagate(r, pmra, pmdec, t.epoch - ref_epoch);
        let sep = t.pos.angle_to(u);
        if sep <= self.radius {
            found.push(Candidate {
                sep_rad: sep,
                source_id,
                pos: u,
            });
        }
    }
}

/// Nearest first, ties to the smaller `source_id` (ICD §8); rows sharing a
/// `source_id` at the same separation are ordered by position, so that the
/// order never depends on the order in which cells were searched.
pub fn sort_candidates(c: &mut [Candidate]) {
    // Most transits have one candidate or none: skip the sort's set-up.
    if c.len() < 2 {
        return;
    }
    c.sort_unstable_by(|a, b| {
        a.sep_rad
            .total_cmp(&b.sep_rad)
            .then(a.source_id.cmp(&b.source_id))
            .then(a.pos.x.total_cmp(&b.pos.x))
            .then(a.pos.y.total_cmp(&b.pos.y))
            .then(a.pos.z.total_cmp(&b.pos.z))
    });
}

/// Levels above a tier's depth at which a group's cone is covered: a
/// coverage of a few large cells costs far less than one of tens of small
/// ones, and each large cell is a contiguous run of the tier's cell table.
const COVER_LEVELS: u8 = 3;

/// Non-empty cells of a tier that sources within the cone `(centre, cone)`
/// (`lon_lat`: the centre's longitude and latitude, radians) can lie in, for a prefilter of chord `chord`. The cone is covered with
/// cells `COVER_LEVELS` above the tier's depth; the tier's cells inside them
/// are kept when their sphere meets the cone's (chord) sphere.
fn reach_of(
    tier: &Tier,
    centre: Vec3,
    lon_lat: (f64, f64),
    cone: f64,
    chord: f64,
) -> Vec<ReachCell> {
    let table = tier.cell_table();
    let cone_chord = chord2(cone).sqrt();
    let keep = |i: usize| {
        let c = &table[i];
        let reach = c.radius + cone_chord;
        (dist2(c.centre, centre) <= reach * reach).then(|| {
            let range = tier.range_of(i);
            ReachCell {
                centre: c.centre,
                axis: widest_axis(c.centre),
                reach2: (c.radius + chord) * (c.radius + chord),
                start: range.start,
                end: range.end,
            }
        })
    };
    if cone >= PI / 2.0 {
        // Hemisphere-sized cones: every cell's sphere is tested.
        return (0..table.len()).filter_map(keep).collect();
    }
    let depth = tier.depth.saturating_sub(COVER_LEVELS);
    let shift = 2 * u32::from(tier.depth - depth);
    // cdshealpix decides overlap with its own centre-to-vertex bound, which
    // can be 8% short (see `cell_radius`): widen the cone by 10% of a cell.
    let cover = cone + 0.1 * cell_radius(depth);
    let (lon, lat) = lon_lat;
    let mut found = Vec::new();
    // Covered cells come in increasing order: each run of the table is
    // looked up from where the previous one ended, by galloping.
    let mut at = 0;
    let mut prev = 0;
    for big in nested::cone_coverage_approx(depth, lon, lat, cover).flat_iter() {
        if big < prev {
            at = 0;
        }
        prev = big;
        let start = gallop(table, at, big << shift);
        at = gallop(table, start, (big + 1) << shift);
        found.extend((start..at).filter_map(keep));
    }
    found
}

/// The coordinate axis along which a small patch of sphere around `v` is
/// widest: that of `v`'s smallest component.
fn widest_axis(v: [f64; 3]) -> usize {
    let abs = v.map(f64::abs);
    if abs[0] <= abs[1] && abs[0] <= abs[2] {
        0
    } else if abs[1] <= abs[2] {
        1
    } else {
        2
    }
}

/// The first index at or after `from` whose cell is ≥ `cell` (the table is
/// sorted by cell and every index before `from` is below `cell`).
fn gallop(table: &[crate::index::CellEntry], from: usize, cell: u64) -> usize {
    let (mut at, mut hi, mut step) = (from, from, 1);
    while hi < table.len() && table[hi].cell < cell {
        at = hi + 1;
        hi += step;
        step *= 2;
    }
    at + table[at..hi.min(table.len())].partition_point(|e| e.cell < cell)
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
        .par_iter()
        .zip(names)
        .map(|(t, name)| Match {
            new_source: Some(name),
            ..unmatched_record(t)
        })
        .collect();
    // One batch's records are already in order; several batches' are not.
    for v in [&mut matched, &mut new] {
        if !v.is_sorted_by_key(|m| m.transit_id) {
            v.par_sort_unstable_by_key(|m| m.transit_id);
        }
    }
    // Merged in place from the back: `matched` grows by the new records'
    // count (a reallocation that need not copy) and every record moves at
    // most once, where a merge into a fresh vector would fault in and copy
    // all of them. Equal ids keep the matched record first.
    let (n_matched, n_new) = (matched.len(), new.len());
    let placeholder = TransitPos {
        transit_id: 0,
        pos: Vec3::default(),
        epoch: 0.0,
    };
    matched.resize_with(n_matched + n_new, || unmatched_record(&placeholder));
    let (mut free_end, mut unplaced) = (n_matched + n_new, n_matched);
    while let Some(m) = new.pop() {
        while unplaced > 0 && matched[unplaced - 1].transit_id > m.transit_id {
            unplaced -= 1;
            free_end -= 1;
            matched.swap(unplaced, free_end);
        }
        free_end -= 1;
        matched[free_end] = m;
    }
    if let Some(w) = matched
        .par_windows(2)
        .find_first(|w| w[0].transit_id == w[1].transit_id)
    {
        return Err(MatchError::DuplicateTransit(w[0].transit_id));
    }
    Ok(matched)
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
    fn counting_and_sorting_give_the_same_group_order() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        for (n, depth) in [(0usize, 1u8), (1, 0), (50, 1), (1000, 2), (300, 3)] {
            let items: Vec<Prepared> = (0..n)
                .map(|i| Prepared {
                    pos: TransitPos {
                        transit_id: i as u64,
                        pos: Vec3::new(0.0, 0.0, 1.0),
                        epoch: 2016.0,
                    },
                    cell: next() % nested::n_hash(depth),
                })
                .collect();
            let a = GroupOrder::by_counting(&items, nested::n_hash(depth) as usize);
            let b = GroupOrder::by_sorting(&items);
            assert_eq!(a.order, b.order, "n {n} depth {depth}");
            assert_eq!(a.rank, b.rank);
            assert_eq!(a.bounds, b.bounds);
            for (k, &i) in a.order.iter().enumerate() {
                assert_eq!(a.rank[i as usize] as usize, k);
                let g = a.group_of(k);
                assert!(g.contains(&k));
                let cell = items[i as usize].cell;
                assert!(a.order[g].iter().all(|&j| items[j as usize].cell == cell));
                if k > 0 {
                    assert!(items[a.order[k - 1] as usize].cell <= cell, "cells ascend");
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
