//! Catalogue index and cross-match of transits (ICD §7, §8): a memory-mapped
//! HEALPix index of the catalogue and a parallel, deterministic matcher.

pub mod catalogue;
pub mod index;
pub mod propagate;

pub use catalogue::{CatalogueReader, CatalogueSource, CsvError};
pub use index::{
    BuildOptions, BuildReport, Index, IndexError, IndexInfo, build_index, build_index_from_path,
};
pub mod matcher;
pub mod newsource;

pub use matcher::{BatchOutcome, Candidate, MatchError, Matcher, TransitPos, finish_matches};
pub mod run;

pub use run::{PartialRun, Region, RunError, RunOptions, XmatchSummary};
