//! Time ordering of decoded telemetry: merges any sequence of deliveries into
//! time-ordered, versioned chunk files per stream with a manifest that says which
//! chunks are complete, provisional or final.

pub mod manifest;

pub use manifest::{ChunkEntry, ChunkStatus, Manifest, Stream};
