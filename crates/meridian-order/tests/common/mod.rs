//! Helpers shared by the integration tests: run the stage and capture what a
//! consumer sees, independent of run bookkeeping.
#![allow(dead_code)]

use meridian_order::synth::{Packet, write_delivery};
use meridian_order::{Manifest, NoProgress, Options, RunSummary, order};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything a consumer reads, minus run bookkeeping (versions, runs, names).
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub manifest: Manifest,
    /// Chunk bytes by (stream, start), plus gaps, conflict and late files by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

pub fn snapshot(out: &Path) -> Snapshot {
    let manifest = Manifest::load(out).expect("manifest");
    let mut files = BTreeMap::new();
    for c in &manifest.chunks {
        let bytes = std::fs::read(out.join(&c.path)).expect("chunk listed in manifest");
        let sum = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        assert_eq!(sum, c.checksum, "checksum of {}", c.path.display());
        files.insert(
            format!("{}/{:020}", c.stream.as_str(), c.start_obt_ns),
            bytes,
        );
    }
    for name in ["gaps.mprod", "conflicts.json"] {
        files.insert(name.into(), std::fs::read(out.join(name)).expect(name));
    }
    for dir in ["conflicts", "late"] {
        if let Ok(entries) = std::fs::read_dir(out.join(dir)) {
            for e in entries {
                let p = e.unwrap().path();
                let name = format!("{dir}/{}", p.file_name().unwrap().to_string_lossy());
                files.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    Snapshot {
        manifest: manifest.content_view(),
        files,
    }
}

/// A scratch folder, in memory when the machine has /dev/shm: every product is
/// fsynced, which on a busy disk would dominate the test time.
pub fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("temporary folder")
}

pub fn run_with(input: &Path, out: &Path, mem: u64) -> RunSummary {
    let mut opts = Options::new(input, out);
    opts.chunk_ns = 20_000_000_000;
    opts.mem_bytes = mem;
    order(&opts, &NoProgress).expect("run succeeds")
}

pub fn run(input: &Path, out: &Path) -> RunSummary {
    run_with(input, out, 1 << 30)
}

/// Writes deliveries with ids `first_id + i` into `decoded`.
pub fn write_deliveries(decoded: &Path, deliveries: &[(u128, Vec<Packet>)]) {
    for (id, packets) in deliveries {
        write_delivery(decoded, *id, packets).unwrap();
    }
}
