//! Catalogue index and cross-match of transits (ICD §7, §8): a memory-mapped
//! HEALPix index of the catalogue and a parallel, deterministic matcher.
//!
//! ```no_run
//! use meridian_core::stage::NoProgress;
//! use meridian_xmatch::{BuildOptions, Index, Matcher, build_index_from_path};
//! # fn transits() -> Vec<meridian_core::records::Transit> { vec![] }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = BuildOptions { ref_epoch: Some(2016.0), ..Default::default() };
//! build_index_from_path("gaia.csv".as_ref(), "gaia.idx".as_ref(), &opts, &NoProgress)?;
//! let index = Index::open("gaia.idx")?;
//! let matches = Matcher::new(&index, 1.0)?.match_transits(&transits())?;
//! # Ok(()) }
//! ```
//!
//! - [`catalogue`]: streaming ICD §7 CSV reader (columns by name, line-numbered
//!   errors).
//! - [`index`]: the on-disk index (layout in its module docs), built by an
//!   external sort with bounded memory, opened by `mmap`.
//! - [`propagate`]: the ICD §7 proper-motion propagation.
//! - [`matcher`]: ICD §8 per transit, grouped by cell, on rayon.
//! - [`newsource`]: linking unmatched transits into new-source groups.
//! - [`run`]: whole runs over product folders, `--region` partials and their
//!   merge (design in its module docs), in memory.
//! - [`stream`]: the same runs written straight into their output folder with
//!   memory bounded by the batch size: each batch's sorted records spilled to
//!   a hidden scratch folder and merged into the products (byte-identical to
//!   [`run`]'s), exact separation quantiles with bounded memory; what the
//!   `meridian-xmatch` binary uses.
//!
//! Semantics chosen where the ICD is silent (also in the modules):
//! - "within the radius" is inclusive (separation ≤ radius), for candidates and
//!   for linking unmatched transits;
//! - a transit whose ra/dec is null or not finite has no position: no record;
//! - a `transit_id` seen twice among positioned transits is an error;
//! - duplicate `source_id`s in the catalogue are kept as separate sources (the
//!   tie rule then lists the id twice); rows are never dropped silently;
//! - proper motions are stored as f32 (under 1 µas/yr of rounding);
//! - `ra_cat`/`dec_cat` of a match are the best source's propagated position.

pub mod catalogue;
pub mod index;
pub mod matcher;
pub mod newsource;
pub mod propagate;
pub mod run;
mod separations;
mod spill;
pub mod stream;

pub use catalogue::{CatalogueReader, CatalogueSource, CsvError};
pub use index::{
    BuildOptions, BuildReport, Index, IndexError, IndexInfo, build_index, build_index_from_path,
};
pub use matcher::{
    BatchOutcome, Candidate, CandidateLists, MatchError, Matcher, TransitPos, finish_matches,
};
pub use run::{PartialRun, Region, RunError, RunOptions, XmatchSummary};
pub use stream::{PartialCounts, merge_to_dir, run_region, run_whole};
