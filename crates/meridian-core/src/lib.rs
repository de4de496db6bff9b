//! Shared vocabulary of the Meridian pipeline: on-board time, sky geometry, the
//! product records other centres read (ICD §9) and the product file format.
//!
//! Every stage crate depends on this one and on nothing else of Meridian's, so a
//! centre can link a single stage and still speak the same types.

pub mod geom;
pub mod instrument;
pub mod product;
pub mod records;
pub mod resources;
pub mod stage;
pub mod time;

pub use geom::{Quat, Vec3};
pub use product::{ProductError, ProductReader, ProductWriter};
pub use records::{Flag, Flags, Record, RecordKind};
pub use stage::RecordSink;
