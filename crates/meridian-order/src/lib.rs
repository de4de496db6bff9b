//! Time ordering of decoded telemetry: merges any sequence of deliveries into
//! time-ordered, versioned chunk files per stream with a manifest that says which
//! chunks are complete, provisional or final.
//!
//! # The ordered folder
//!
//! ```text
//! ORDERED_DIR/
//!   manifest.json                 the truth for readers (see [`manifest`]); written last
//!   chunks/<stream>/<start_obt_ns:020>.v<version>.mprod
//!   gaps.mprod                    `gap` records of every APID, by (after_obt_ns, apid, seq)
//!   conflicts.json                packet keys delivered with different bytes
//!   conflicts/<stream>.mprod      the records of every variant of those packets
//!   late/<stream>.mprod           records that arrived for final chunks (not merged)
//!   state/<run:010>.state         consumed deliveries and the packet index (private)
//! ```
//!
//! # Semantics
//!
//! * **Chunks.** Records of `window.mprod`, `attitude.mprod` and `hk.mprod` of every
//!   complete delivery (one with `report.json`) go to the chunk
//!   `[k·chunk_ns, (k+1)·chunk_ns)` holding their `obt_ns` (default 60 s, aligned to
//!   the mission epoch). Inside a chunk records are sorted by
//!   [`StreamRecord::cmp_total`]: `obt_ns`, then every other field in declaration
//!   order (floats by IEEE total order, `hk` by `sid` then `param`), then the carrying
//!   packet's `seq`, `packet_obt_ns`, `packet_hash`. The order is total, so chunk
//!   bytes do not depend on input order, thread count or memory budget.
//! * **Duplicates and conflicts.** A packet is keyed by (APID, `seq`,
//!   `packet_obt_ns`); its records are the consecutive records carrying the same
//!   packet reference. The same key with the same `packet_hash` is a retransmission
//!   and is kept once. The same key with another hash is a conflict: *every*
//!   variant's records leave the chunks for `conflicts/<stream>.mprod`, and
//!   `conflicts.json` lists the variants (hash, record count, smallest delivery id
//!   that carried it). A conflicting packet still counts as received for gaps; the
//!   chunks its variants span stay provisional. A chunk exists once any accepted
//!   record fell in it, so it may hold no records when all of them were conflicts. A packet repeated back to back
//!   inside one delivery is reduced to one copy (see [`record::primitive_root`]).
//! * **Gaps and completeness.** See [`gaps`]: per APID in packet-time order,
//!   `(b − a − 1) mod 16384` missing between consecutive counts `a`, `b`; completeness
//!   per APID per OBT hour is in the manifest.
//! * **Status.** `final` when the chunk ends at or before the folder's close time
//!   (`--close-before`, the largest ever given); else `provisional` when a gap's span
//!   (the two packets bounding it, their records included), a conflict, or either
//!   end of the APID's data touches the interval (packets before the first or after
//!   the last received one may still come); else `complete`.
//! * **Late data.** A new packet whose records (or whose key's earlier variants)
//!   fall in a final chunk is not merged: its records go to `late/<stream>.mprod`
//!   and it is counted in the run summary. The close time applies from the run
//!   *after* the one that sets it: data consumed in the same run is still merged.
//! * **Versions and determinism.** Chunk content, `gaps.mprod`, `conflicts.json`,
//!   `conflicts/` and the manifest's [`Manifest::content_view`] are pure functions of
//!   the *set* of deliveries consumed, the chunk length and the close time (given at
//!   the last run), whatever the order and grouping of runs. Version numbers, file
//!   names and the `run` fields are bookkeeping of the folder's history: a chunk's
//!   `version` grows by one each time its content changes, `run` says which run
//!   wrote it and `status_run` which run last changed its status, so a consumer can
//!   ask what changed since a run ([`Manifest::changed_since`]). A run that finds
//!   nothing new (no new delivery, same close time) commits nothing.
//! * **Memory.** `--mem` bounds the data the run holds: new records are buffered
//!   up to `--mem` less the packet index (about 144 octets per packet, held in
//!   memory), but at least a quarter of `--mem`; beyond it sorted runs are spilled
//!   to `tmp/` and merged back ([`sort`]). Buffered windows are held compactly
//!   (fixed-size records, samples in one shared arena: [`record::HeldWindow`]),
//!   so a 1 % Gaia-scale day fits a 1 GiB budget without spilling. The
//!   sorter's partitions (ranges of chunks) are sorted, merged and written in
//!   parallel by twice as many threads as rayon's pool has, at least eight
//!   (fsync waits overlap), each holding one chunk's records and, when the run
//!   spilled, at most [`sort::FAN_IN`] open runs plus the chunk's current
//!   version (about 0.5 MiB of buffers each, and up to 32 MiB of a large run's
//!   mapping until the reader gives it back) and, in a merge pass, a writer's
//!   buffers (about 1.3 MiB), all outside the budget. Spill runs are scratch:
//!   written without fsync ([`meridian_core::ProductWriter::finish_scratch`]),
//!   since `tmp/` is cleared at every start. Reader threads (one per rayon
//!   thread) each hold a delivery's open files and one batch of records, and
//!   their channel queues up to two batches per reader more. Conflicting and
//!   late records are held in memory (they are rare). On top
//!   come fixed costs of some MiB (zstd contexts and buffers of the open product
//!   files, allocator slack), so budgets below [`run::MIN_USEFUL_MEM_BYTES`] still
//!   give the same result but cannot bound the process's peak; the run logs a
//!   warning for them.
//! * **Crash safety.** Every file is written under a temporary name and renamed;
//!   a run writes new chunk versions under new names, then gaps and conflicts, then
//!   its state, then the manifest (the commit point). A run killed before the
//!   manifest leaves the previous manifest and its files intact; the next run
//!   redoes the work from the previous state and overwrites the orphans, so it
//!   ends identical to an uninterrupted run. Cleanup keeps each chunk's current and
//!   previous version, for readers of the previous manifest.
//! * **Bad input.** A delivery whose product files are missing, truncated or fail
//!   their checksum is named, skipped (not consumed, so a later run retries it) and
//!   reported; the run still commits the others and the binary exits 1. A record that
//!   fails to decode inside a file that passed its checksum stops the run without
//!   committing. Unknown-packet and quarantine products are not ordered.

pub mod error;
pub mod gaps;
pub mod manifest;
mod read;
pub mod record;
pub mod run;
pub mod sort;
pub mod state;
pub mod synth;

pub use error::OrderError;
pub use manifest::{ChunkEntry, ChunkStatus, HourCompleteness, Manifest, Stream};
pub use record::StreamRecord;
pub use run::{
    DEFAULT_CHUNK_NS, DEFAULT_MEM_BYTES, FailedDelivery, NoProgress, Options, Progress, RunSummary,
    order,
};
