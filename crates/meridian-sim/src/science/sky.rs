//! The simulated sky: a grid of sky cells, stars generated procedurally per cell
//! (or read from an ICD §7 catalogue), proper-motion propagation (ICD §7) and the
//! catalogue CSV.
//!
//! Procedural model: the expected star count of a cell is proportional to its
//! area times `1 + 14·exp(−|b|/8°)` (b the galactic latitude of its centre), and
//! counts are allocated to cells by cumulative rounding so the sky holds exactly
//! `n_stars`. Inside a cell, stars are uniform on the sphere. G follows
//! `dN/dG ∝ 10^(0.35 G)` on [6, 20.7]; proper motions are Gaussian with σ = 4 mas/yr
//! per component, except one star in 20 000 with a total of 0.5–5″/yr in a random
//! direction; ref_epoch is 2016.0. A cell's stars are a pure function of
//! (seed, cell), so only the cells near the current scan need exist, and
//! `source_id = cell × 2^32 + index in cell`.

use super::ScienceError;
use meridian_core::Vec3;
use meridian_core::geom::RAD_PER_MAS;
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use std::io::{self, BufRead, Write};
use std::path::Path;

/// Height of a declination band of cells, degrees.
pub const CELL_DEG: f64 = 0.25;
/// Reference epoch of procedural stars (Julian year).
pub const PROCEDURAL_REF_EPOCH: f64 = 2016.0;
/// Brightest and faintest G of procedural stars.
pub const G_RANGE: (f64, f64) = (6.0, 20.7);
/// Largest total proper motion of a procedural star, mas/yr.
pub const MAX_PROCEDURAL_PM_MAS_YR: f64 = 5000.0;
/// G assumed for a catalogue star without `phot_g_mean_mag`.
pub const DEFAULT_G: f64 = 15.0;

const G_SLOPE: f64 = 0.35;
const PM_SIGMA_MAS_YR: f64 = 4.0;
const HIGH_PM_FRACTION: f64 = 5e-5;
const PLANE_CONTRAST: f64 = 14.0;
const PLANE_SCALE_DEG: f64 = 8.0;

/// One catalogue star with its unit vector and proper-motion vector precomputed.
#[derive(Debug, Clone, PartialEq)]
pub struct Star {
    pub source_id: i64,
    pub ra_deg: f64,
    pub dec_deg: f64,
    pub pmra: f64,
    pub pmdec: f64,
    pub ref_epoch: f64,
    pub g: f64,
    r: Vec3,
    /// `p µα* + q µδ`, rad/yr.
    mu: Vec3,
}

impl Star {
    pub fn new(
        source_id: i64,
        ra_deg: f64,
        dec_deg: f64,
        pmra: f64,
        pmdec: f64,
        ref_epoch: f64,
        g: f64,
    ) -> Self {
        let (sa, ca) = ra_deg.to_radians().sin_cos();
        let (sd, cd) = dec_deg.to_radians().sin_cos();
        let r = Vec3::new(cd * ca, cd * sa, sd);
        let p = Vec3::new(-sa, ca, 0.0);
        let q = Vec3::new(-sd * ca, -sd * sa, cd);
        let mu = p * (pmra * RAD_PER_MAS) + q * (pmdec * RAD_PER_MAS);
        Self {
            source_id,
            ra_deg,
            dec_deg,
            pmra,
            pmdec,
            ref_epoch,
            g,
            r,
            mu,
        }
    }

    /// Direction at Julian epoch `epoch` (ICD §7): `(r + µΔt)/|r + µΔt|`.
    pub fn direction_at(&self, epoch: f64) -> Vec3 {
        (self.r + self.mu * (epoch - self.ref_epoch)).normalized()
    }

    /// Total proper motion, mas/yr.
    pub fn total_pm(&self) -> f64 {
        self.pmra.hypot(self.pmdec)
    }
}

/// An equal-height grid of declination bands, each cut into cells of about
/// `CELL_DEG` in right ascension. Cells are numbered band by band from the
/// south pole, in increasing right ascension.
#[derive(Debug, Clone)]
pub struct CellGrid {
    /// Number of cells in each band.
    band_cells: Vec<u32>,
    /// Index of the first cell of each band (and the total at the end).
    band_start: Vec<u32>,
}

impl Default for CellGrid {
    fn default() -> Self {
        Self::new()
    }
}

impl CellGrid {
    pub fn new() -> Self {
        let n_bands = (180.0 / CELL_DEG).round() as usize;
        let mut band_cells = Vec::with_capacity(n_bands);
        let mut band_start = Vec::with_capacity(n_bands + 1);
        let mut total = 0u32;
        for b in 0..n_bands {
            let mid = -90.0 + (b as f64 + 0.5) * CELL_DEG;
            let n = ((360.0 * mid.to_radians().cos() / CELL_DEG).round() as u32).max(1);
            band_start.push(total);
            band_cells.push(n);
            total += n;
        }
        band_start.push(total);
        Self {
            band_cells,
            band_start,
        }
    }

    pub fn n_cells(&self) -> u32 {
        *self.band_start.last().expect("bands")
    }

    fn n_bands(&self) -> usize {
        self.band_cells.len()
    }

    /// (band, ra index) of a cell.
    fn locate(&self, cell: u32) -> (usize, u32) {
        let band = self.band_start.partition_point(|&s| s <= cell) - 1;
        (band, cell - self.band_start[band])
    }

    /// The cell holding (ra, dec) in degrees.
    pub fn cell_of(&self, ra_deg: f64, dec_deg: f64) -> u32 {
        let band =
            (((dec_deg + 90.0) / CELL_DEG).floor().max(0.0) as usize).min(self.n_bands() - 1);
        let n = self.band_cells[band];
        let i = ((ra_deg.rem_euclid(360.0) / 360.0 * n as f64).floor() as u32).min(n - 1);
        self.band_start[band] + i
    }

    /// Bounds (ra0, ra1, dec0, dec1) of a cell, degrees.
    pub fn bounds(&self, cell: u32) -> (f64, f64, f64, f64) {
        let (band, i) = self.locate(cell);
        let n = self.band_cells[band] as f64;
        let dec0 = -90.0 + band as f64 * CELL_DEG;
        (
            i as f64 * 360.0 / n,
            (i + 1) as f64 * 360.0 / n,
            dec0,
            dec0 + CELL_DEG,
        )
    }

    /// Expected-count weights (area × density at the centre) of the cells of
    /// one band.
    ///
    /// The same arithmetic as `bounds`, `Vec3::from_radec_deg` and `area_deg2`
    /// per cell (bit for bit, a test checks), with what is constant along a
    /// band computed once: this is most of a short run's set-up.
    fn band_weights(&self, band: usize) -> Vec<f64> {
        let n = self.band_cells[band] as f64;
        let dec0 = -90.0 + band as f64 * CELL_DEG;
        let dec1 = dec0 + CELL_DEG;
        let (sd, cd) = (0.5 * (dec0 + dec1)).to_radians().sin_cos();
        let band_sin = dec1.to_radians().sin() - dec0.to_radians().sin();
        (0..self.band_cells[band])
            .map(|i| {
                let (ra0, ra1) = (i as f64 * 360.0 / n, (i + 1) as f64 * 360.0 / n);
                let (sa, ca) = (0.5 * (ra0 + ra1)).to_radians().sin_cos();
                let centre = Vec3::new(cd * ca, cd * sa, sd);
                let area = (ra1 - ra0) * band_sin * (180.0 / std::f64::consts::PI);
                area * density_weight(galactic_latitude_deg(centre))
            })
            .collect()
    }

    /// Solid angle of a cell, square degrees (the reference for `band_weights`).
    #[cfg(test)]
    fn area_deg2(&self, cell: u32) -> f64 {
        let (ra0, ra1, dec0, dec1) = self.bounds(cell);
        (ra1 - ra0)
            * (dec1.to_radians().sin() - dec0.to_radians().sin())
            * (180.0 / std::f64::consts::PI)
    }

    /// Appends every cell that may hold a point within `radius_deg` of `centre`
    /// (conservative: uses the widest right-ascension extent of the cap).
    pub fn cells_near(&self, centre: Vec3, radius_deg: f64, out: &mut Vec<u32>) {
        let (ra, dec) = centre.to_radec_deg();
        let lo = dec - radius_deg;
        let hi = dec + radius_deg;
        let b0 = (((lo + 90.0) / CELL_DEG).floor().max(0.0) as usize).min(self.n_bands() - 1);
        let b1 = (((hi + 90.0) / CELL_DEG).floor().max(0.0) as usize).min(self.n_bands() - 1);
        let pole_inside = hi >= 90.0 || lo <= -90.0;
        let half_width = if pole_inside {
            180.0
        } else {
            let s = radius_deg.to_radians().sin() / dec.to_radians().cos();
            if s >= 1.0 {
                180.0
            } else {
                s.asin().to_degrees()
            }
        };
        for band in b0..=b1 {
            let n = self.band_cells[band];
            let start = self.band_start[band];
            if half_width >= 180.0 || n == 1 {
                out.extend(start..start + n);
                continue;
            }
            let width = 360.0 / n as f64;
            let first = ((ra - half_width) / width).floor() as i64;
            let last = ((ra + half_width) / width).floor() as i64;
            if last - first + 1 >= n as i64 {
                out.extend(start..start + n);
                continue;
            }
            for k in first..=last {
                out.push(start + k.rem_euclid(n as i64) as u32);
            }
        }
    }
}

/// Relative star density at galactic latitude b (degrees).
fn density_weight(b_deg: f64) -> f64 {
    1.0 + PLANE_CONTRAST * (-b_deg.abs() / PLANE_SCALE_DEG).exp()
}

/// Galactic latitude (degrees) of an ICRS direction (north galactic pole at
/// ra 192.85948°, dec 27.12825°).
fn galactic_latitude_deg(u: Vec3) -> f64 {
    static POLE: std::sync::OnceLock<Vec3> = std::sync::OnceLock::new();
    let pole = *POLE.get_or_init(|| Vec3::from_radec_deg(192.859_48, 27.128_25));
    u.dot(pole).clamp(-1.0, 1.0).asin().to_degrees()
}

/// Stars generated cell by cell from the seed, `n_stars` in all.
#[derive(Debug, Clone)]
pub struct ProceduralSky {
    seed: u64,
    grid: CellGrid,
    /// Cumulative expected fraction of stars before each cell (and 1 at the end).
    cumulative: Vec<f64>,
    n_stars: u64,
}

impl ProceduralSky {
    pub fn new(seed: u64, n_stars: u64) -> Self {
        let grid = CellGrid::new();
        let n = grid.n_cells();
        // Cell weights band by band (in parallel: this is most of the setup
        // time of a short run), then the running sum in cell order.
        let weights: Vec<Vec<f64>> = (0..grid.n_bands())
            .into_par_iter()
            .map(|band| grid.band_weights(band))
            .collect();
        let mut cumulative = Vec::with_capacity(n as usize + 1);
        let mut acc = 0.0;
        for w in weights.iter().flatten() {
            cumulative.push(acc);
            acc += w;
        }
        cumulative.push(acc);
        cumulative.iter_mut().for_each(|c| *c /= acc);
        Self {
            seed,
            grid,
            cumulative,
            n_stars,
        }
    }

    pub fn grid(&self) -> &CellGrid {
        &self.grid
    }

    pub fn n_stars(&self) -> u64 {
        self.n_stars
    }

    /// Number of stars in a cell: cumulative rounding, so the counts sum to n.
    fn count(&self, cell: u32) -> u64 {
        let n = self.n_stars as f64;
        let at = |c: usize| (self.cumulative[c] * n).floor() as u64;
        at(cell as usize + 1).saturating_sub(at(cell as usize))
    }

    /// Appends the stars of `cell`.
    pub fn stars_in(&self, cell: u32, out: &mut Vec<Star>) {
        self.for_each_star_in(cell, |row| {
            out.push(Star::new(
                row.source_id,
                row.ra_deg,
                row.dec_deg,
                row.pmra,
                row.pmdec,
                row.ref_epoch,
                row.g,
            ))
        });
    }

    /// Appends the catalogue rows of `cell` (as [`push_star`] of its stars,
    /// without the unit vectors the CSV does not need).
    pub fn push_rows(&self, cell: u32, out: &mut Vec<u8>) {
        out.reserve(self.count(cell) as usize * 96);
        self.for_each_star_in(cell, |row| push_row(out, &row));
    }

    /// Calls `f` with each star of `cell`, in order.
    fn for_each_star_in(&self, cell: u32, mut f: impl FnMut(Row)) {
        let count = self.count(cell);
        if count == 0 {
            return;
        }
        let (ra0, ra1, dec0, dec1) = self.grid.bounds(cell);
        let (s0, s1) = (dec0.to_radians().sin(), dec1.to_radians().sin());
        let mut rng = super::rng_for(self.seed, super::stream::STARS, cell as u64, 0);
        let (g0, g1) = (
            10f64.powf(G_SLOPE * G_RANGE.0),
            10f64.powf(G_SLOPE * G_RANGE.1),
        );
        for j in 0..count {
            let ra = ra0 + (ra1 - ra0) * rng.random::<f64>();
            let dec = (s0 + (s1 - s0) * rng.random::<f64>())
                .clamp(-1.0, 1.0)
                .asin()
                .to_degrees();
            let g = ((g0 + (g1 - g0) * rng.random::<f64>()).log10() / G_SLOPE)
                .clamp(G_RANGE.0, G_RANGE.1);
            let (pmra, pmdec) = if rng.random::<f64>() < HIGH_PM_FRACTION {
                let total = 500.0 + (MAX_PROCEDURAL_PM_MAS_YR - 500.0) * rng.random::<f64>();
                let (s, c) = (std::f64::consts::TAU * rng.random::<f64>()).sin_cos();
                (total * s, total * c)
            } else {
                let a: f64 = rng.sample(StandardNormal);
                let b: f64 = rng.sample(StandardNormal);
                (a * PM_SIGMA_MAS_YR, b * PM_SIGMA_MAS_YR)
            };
            // Round to what the CSV carries so the written catalogue is the truth.
            f(Row {
                source_id: ((cell as i64) << 32) | j as i64,
                ra_deg: round_to(ra, 1e12),
                dec_deg: round_to(dec, 1e12),
                pmra: round_to(pmra, 1e6),
                pmdec: round_to(pmdec, 1e6),
                ref_epoch: PROCEDURAL_REF_EPOCH,
                g: round_to(g, 1e6),
            });
        }
    }
}

fn round_to(x: f64, scale: f64) -> f64 {
    (x * scale).round() / scale
}

/// Stars read from an ICD §7 catalogue, grouped by cell.
#[derive(Debug, Clone)]
pub struct FileSky {
    grid: CellGrid,
    /// Stars sorted by cell (file order within a cell).
    stars: Vec<Star>,
    /// Start of each cell's stars in `stars` (and the total at the end).
    cell_start: Vec<u32>,
    /// Stars in file order, as indices into `stars`.
    file_order: Vec<u32>,
}

impl FileSky {
    pub fn new(stars: Vec<Star>) -> Self {
        let grid = CellGrid::new();
        let n = grid.n_cells() as usize;
        let cells: Vec<u32> = stars
            .iter()
            .map(|s| grid.cell_of(s.ra_deg, s.dec_deg))
            .collect();
        let mut order: Vec<u32> = (0..stars.len() as u32).collect();
        order.sort_by_key(|&i| (cells[i as usize], i));
        let mut cell_start = vec![0u32; n + 1];
        for &c in &cells {
            cell_start[c as usize + 1] += 1;
        }
        for c in 0..n {
            cell_start[c + 1] += cell_start[c];
        }
        let mut file_order = vec![0u32; stars.len()];
        for (pos, &i) in order.iter().enumerate() {
            file_order[i as usize] = pos as u32;
        }
        let stars = order.iter().map(|&i| stars[i as usize].clone()).collect();
        Self {
            grid,
            stars,
            cell_start,
            file_order,
        }
    }

    pub fn grid(&self) -> &CellGrid {
        &self.grid
    }

    pub fn stars_in(&self, cell: u32, out: &mut Vec<Star>) {
        let a = self.cell_start[cell as usize] as usize;
        let b = self.cell_start[cell as usize + 1] as usize;
        out.extend_from_slice(&self.stars[a..b]);
    }

    /// Stars in the order of the file they came from.
    pub fn in_file_order(&self) -> impl Iterator<Item = &Star> {
        self.file_order.iter().map(|&i| &self.stars[i as usize])
    }

    pub fn len(&self) -> usize {
        self.stars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stars.is_empty()
    }

    /// Largest total proper motion, mas/yr.
    pub fn max_pm(&self) -> f64 {
        self.stars.iter().map(Star::total_pm).fold(0.0, f64::max)
    }

    /// Largest |ref_epoch − epoch| over the catalogue, years.
    pub fn max_epoch_span(&self, epoch: f64) -> f64 {
        self.stars
            .iter()
            .map(|s| (s.ref_epoch - epoch).abs())
            .fold(0.0, f64::max)
    }
}

/// CSV header of the written catalogue (ICD §7 column names).
pub const CSV_HEADER: &str = "source_id,ra,dec,pmra,pmdec,ref_epoch,phot_g_mean_mag";

/// Writes one catalogue row: ra/dec with 12 decimals of degree (3.6 µas), so
/// the CSV round-trips far below 0.1 mas.
pub fn write_star(w: &mut impl Write, s: &Star) -> io::Result<()> {
    let mut line = Vec::with_capacity(128);
    push_star(&mut line, s);
    w.write_all(&line)
}

/// The catalogue columns of one star.
#[derive(Debug, Clone, Copy)]
struct Row {
    source_id: i64,
    ra_deg: f64,
    dec_deg: f64,
    pmra: f64,
    pmdec: f64,
    ref_epoch: f64,
    g: f64,
}

/// Appends one catalogue row, byte for byte
/// `"{},{:.12},{:.12},{:.6},{:.6},{:.1},{:.6}\n"` (see the `fixed` module).
pub fn push_star(out: &mut Vec<u8>, s: &Star) {
    push_row(
        out,
        &Row {
            source_id: s.source_id,
            ra_deg: s.ra_deg,
            dec_deg: s.dec_deg,
            pmra: s.pmra,
            pmdec: s.pmdec,
            ref_epoch: s.ref_epoch,
            g: s.g,
        },
    );
}

fn push_row(out: &mut Vec<u8>, s: &Row) {
    use super::fixed::{push_fixed, push_i64};
    push_i64(out, s.source_id);
    for (x, decimals) in [
        (s.ra_deg, 12),
        (s.dec_deg, 12),
        (s.pmra, 6),
        (s.pmdec, 6),
        (s.ref_epoch, 1),
        (s.g, 6),
    ] {
        out.push(b',');
        push_fixed(out, x, decimals);
    }
    out.push(b'\n');
}

/// Splits one CSV line into fields, honouring double quotes ("" inside quotes
/// is a literal quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// Reads an ICD §7 catalogue. `default_ref_epoch` is used where the file has no
/// `ref_epoch` column (or an empty cell); without either, the star is an error.
/// Missing `phot_g_mean_mag` means G = [`DEFAULT_G`].
pub fn read_catalogue(
    path: &Path,
    default_ref_epoch: Option<f64>,
) -> Result<Vec<Star>, ScienceError> {
    let err = |line: usize, message: String| ScienceError::Catalogue {
        path: path.to_path_buf(),
        line,
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| ScienceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = io::BufReader::new(file).lines();
    let header = match lines.next() {
        Some(h) => h.map_err(|e| err(1, e.to_string()))?,
        None => return Err(err(1, "empty file: no header row".into())),
    };
    let names: Vec<String> = split_csv(header.trim_start_matches('\u{feff}'))
        .into_iter()
        .map(|s| s.trim().to_string())
        .collect();
    let col = |name: &str| names.iter().position(|n| n == name);
    let need = |name: &str| col(name).ok_or_else(|| err(1, format!("no `{name}` column")));
    let (c_id, c_ra, c_dec) = (need("source_id")?, need("ra")?, need("dec")?);
    let (c_pmra, c_pmdec, c_epoch, c_g) = (
        col("pmra"),
        col("pmdec"),
        col("ref_epoch"),
        col("phot_g_mean_mag"),
    );
    let mut stars = Vec::new();
    for (i, line) in lines.enumerate() {
        let lineno = i + 2;
        let line = line.map_err(|e| err(lineno, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_csv(line.trim_end_matches('\r'));
        let get = |c: Option<usize>| {
            c.and_then(|c| fields.get(c))
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
        };
        let number = |c: Option<usize>, name: &str| -> Result<Option<f64>, ScienceError> {
            match get(c) {
                None => Ok(None),
                Some(s) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(Some)
                    .ok_or_else(|| err(lineno, format!("`{name}` = {s:?} is not a finite number"))),
            }
        };
        let source_id = get(Some(c_id))
            .ok_or_else(|| err(lineno, "empty `source_id`".into()))?
            .parse::<i64>()
            .map_err(|e| err(lineno, format!("`source_id`: {e}")))?;
        let ra = number(Some(c_ra), "ra")?.ok_or_else(|| err(lineno, "empty `ra`".into()))?;
        let dec = number(Some(c_dec), "dec")?.ok_or_else(|| err(lineno, "empty `dec`".into()))?;
        if !(-90.0..=90.0).contains(&dec) {
            return Err(err(lineno, format!("`dec` = {dec} is outside [-90, 90]")));
        }
        let ref_epoch = number(c_epoch, "ref_epoch")?
            .or(default_ref_epoch)
            .ok_or_else(|| {
                err(
                    lineno,
                    "no ref_epoch (no column value and no default given)".into(),
                )
            })?;
        stars.push(Star::new(
            source_id,
            ra.rem_euclid(360.0),
            dec,
            number(c_pmra, "pmra")?.unwrap_or(0.0),
            number(c_pmdec, "pmdec")?.unwrap_or(0.0),
            ref_epoch,
            number(c_g, "phot_g_mean_mag")?.unwrap_or(DEFAULT_G),
        ));
    }
    Ok(stars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::geom::MAS_PER_RAD;

    #[test]
    fn grid_cells_cover_the_sphere_once() {
        let g = CellGrid::new();
        let total: f64 = (0..g.n_cells()).map(|c| g.area_deg2(c)).sum();
        assert!((total - 41_252.96).abs() < 0.1, "{total}");
        for (ra, dec) in [(0.0, -90.0), (359.9999, 89.9999), (123.4, 5.6), (0.0, 0.0)] {
            let c = g.cell_of(ra, dec);
            let (r0, r1, d0, d1) = g.bounds(c);
            assert!((r0..r1).contains(&ra) && d0 <= dec && dec <= d1);
        }
    }

    #[test]
    fn band_weights_match_the_per_cell_formulas_bit_for_bit() {
        let g = CellGrid::new();
        for band in [0, 1, 100, 359, 360, 500, g.n_bands() - 1] {
            let first = g.band_start[band];
            let reference: Vec<u64> = (first..first + g.band_cells[band])
                .map(|cell| {
                    let (ra0, ra1, dec0, dec1) = g.bounds(cell);
                    let centre = Vec3::from_radec_deg(0.5 * (ra0 + ra1), 0.5 * (dec0 + dec1));
                    (g.area_deg2(cell) * density_weight(galactic_latitude_deg(centre))).to_bits()
                })
                .collect();
            let fast: Vec<u64> = g.band_weights(band).iter().map(|w| w.to_bits()).collect();
            assert_eq!(fast, reference, "band {band}");
        }
    }

    #[test]
    fn cells_near_finds_every_cell_within_the_radius() {
        let g = CellGrid::new();
        let mut rng = super::super::rng_for(1, 99, 0, 0);
        for _ in 0..300 {
            let centre = Vec3::from_radec_deg(
                360.0 * rng.random::<f64>(),
                180.0 * rng.random::<f64>() - 90.0,
            );
            let radius = 0.5;
            let mut cells = Vec::new();
            g.cells_near(centre, radius, &mut cells);
            for _ in 0..50 {
                // A random point within the radius must be in a listed cell.
                let axis = centre.cross(Vec3::new(0.3, 0.5, 0.8)).normalized();
                let q = meridian_core::Quat::from_axis_angle(
                    axis,
                    radius.to_radians() * rng.random::<f64>(),
                );
                let spin = meridian_core::Quat::from_axis_angle(
                    centre,
                    std::f64::consts::TAU * rng.random::<f64>(),
                );
                let p = spin.rotate(q.rotate(centre));
                let (ra, dec) = p.to_radec_deg();
                assert!(cells.contains(&g.cell_of(ra, dec)));
            }
        }
    }

    #[test]
    fn procedural_sky_has_exactly_n_stars_denser_in_the_plane() {
        let sky = ProceduralSky::new(7, 50_000);
        let mut stars = Vec::new();
        for c in 0..sky.grid().n_cells() {
            sky.stars_in(c, &mut stars);
        }
        assert_eq!(stars.len(), 50_000);
        let plane = stars
            .iter()
            .filter(|s| galactic_latitude_deg(s.direction_at(2016.0)).abs() < 10.0)
            .count();
        // |b| < 10° is 17% of the sky but holds most of the weight.
        assert!(plane as f64 > 0.4 * 50_000.0, "{plane}");
        let faint = stars.iter().filter(|s| s.g > 19.0).count();
        let bright = stars.iter().filter(|s| s.g < 13.0).count();
        assert!(faint > 100 * bright.max(1));
        assert!(stars.iter().all(|s| (6.0..=20.7).contains(&s.g)));
        let mut ids: Vec<i64> = stars.iter().map(|s| s.source_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), stars.len());
        // The same cell gives the same stars again.
        let mut again = Vec::new();
        sky.stars_in(g_cell(&sky, &stars[0]), &mut again);
        assert!(again.contains(&stars[0]));
    }

    fn g_cell(sky: &ProceduralSky, s: &Star) -> u32 {
        let _ = sky;
        (s.source_id >> 32) as u32
    }

    #[test]
    fn propagation_follows_icd_formula() {
        let s = Star::new(1, 10.0, 20.0, 1000.0, -2000.0, 2016.0, 12.0);
        let u = s.direction_at(2026.0);
        let (ra, dec) = u.to_radec_deg();
        let dra = (ra - 10.0) * 3_600_000.0 * 20f64.to_radians().cos();
        let ddec = (dec - 20.0) * 3_600_000.0;
        assert!(
            (dra - 10_000.0).abs() < 1.0 && (ddec + 20_000.0).abs() < 1.0,
            "{dra} {ddec}"
        );
        assert!(
            s.direction_at(2016.0)
                .angle_to(Vec3::from_radec_deg(10.0, 20.0))
                * MAS_PER_RAD
                < 1e-6
        );
    }

    #[test]
    fn star_rows_equal_core_fmt_byte_for_byte() {
        let sky = ProceduralSky::new(7, 2_000_000);
        let mut stars = vec![
            Star::new(5, 359.123456789012, -45.5, 1.5, -2.25, 2016.0, 19.5),
            Star::new(-3, 0.1, -0.0, -0.0, 1e-9, 2015.55, 7.0),
        ];
        for cell in (0..sky.grid().n_cells()).step_by(997) {
            let first = stars.len();
            sky.stars_in(cell, &mut stars);
            // The catalogue writer's direct rows are the stars' rows.
            let (mut direct, mut via_stars) = (Vec::new(), Vec::new());
            sky.push_rows(cell, &mut direct);
            stars[first..]
                .iter()
                .for_each(|s| push_star(&mut via_stars, s));
            assert_eq!(direct, via_stars, "cell {cell}");
        }
        assert!(stars.len() > 1000);
        for s in &stars {
            let mut ours = Vec::new();
            write_star(&mut ours, s).unwrap();
            let reference = format!(
                "{},{:.12},{:.12},{:.6},{:.6},{:.1},{:.6}\n",
                s.source_id, s.ra_deg, s.dec_deg, s.pmra, s.pmdec, s.ref_epoch, s.g
            );
            assert_eq!(String::from_utf8(ours).unwrap(), reference);
        }
    }

    #[test]
    fn catalogue_round_trips_and_reports_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cat.csv");
        let stars = [
            Star::new(5, 359.123456789012, -45.5, 1.5, -2.25, 2016.0, 19.5),
            Star::new(-3, 0.1, 89.9, 0.0, 0.0, 2015.5, 7.0),
        ];
        let mut buf = Vec::new();
        writeln!(buf, "{CSV_HEADER}").unwrap();
        stars.iter().for_each(|s| write_star(&mut buf, s).unwrap());
        std::fs::write(&path, &buf).unwrap();
        let back = read_catalogue(&path, None).unwrap();
        for (a, b) in stars.iter().zip(&back) {
            assert_eq!(a.source_id, b.source_id);
            assert!(a.direction_at(2016.0).angle_to(b.direction_at(2016.0)) * MAS_PER_RAD < 0.01);
            assert_eq!(
                (a.pmra, a.pmdec, a.ref_epoch, a.g),
                (b.pmra, b.pmdec, b.ref_epoch, b.g)
            );
        }
        std::fs::write(&path, "\"source_id\",ra,dec,pmra\n1,2,3,\n2,x,3,\n").unwrap();
        let e = read_catalogue(&path, Some(2016.0)).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("`ra`"), "{e}");
        std::fs::write(&path, "source_id,ra,dec\n1,2,3\n").unwrap();
        assert!(
            read_catalogue(&path, None)
                .unwrap_err()
                .to_string()
                .contains("ref_epoch")
        );
        let ok = read_catalogue(&path, Some(2000.0)).unwrap();
        assert_eq!(
            (ok[0].ref_epoch, ok[0].g, ok[0].pmra),
            (2000.0, DEFAULT_G, 0.0)
        );
    }
}
