//! Product files: round trips, and every truncation or corruption is a clear error.

use meridian_core::product::{self, ProductError, ProductReader, ProductWriter};
use meridian_core::records::*;
use proptest::prelude::*;
use std::path::Path;

fn hk(i: u64) -> Hk {
    Hk {
        obt_ns: i * 1_000_000_000,
        sid: 1,
        param: format!("P{}", i % 7),
        raw: i as f64,
        eng: if i.is_multiple_of(2) {
            Value::Number(i as f64 * 0.5)
        } else {
            Value::State("ECO".into())
        },
        seq: (i % 16384) as u16,
        packet_obt_ns: i,
        packet_hash: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    }
}

fn observation(i: u64) -> Observation {
    Observation {
        transit_id: i,
        strip: (i % 9) as u8,
        row: 1 + (i % 7) as u8,
        fov: (i % 2) as u8,
        t_obs_ns: i.wrapping_mul(17),
        centroid: 5.5 + i as f64 * 1e-3,
        centroid_err: 0.01,
        flux: 1e4,
        flux_err: 100.0,
        background: 20.0,
        ra: if i.is_multiple_of(3) {
            None
        } else {
            Some(359.99)
        },
        dec: Some(-89.5),
        flags: if i.is_multiple_of(5) {
            Flags::EMPTY.with(Flag::Saturated)
        } else {
            Flags::EMPTY
        },
        ac: 1000,
    }
}

#[test]
fn round_trip_keeps_every_record_and_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hk.mprod");
    let records: Vec<Hk> = (0..10_000).map(hk).collect();
    let written = product::write_all(&path, &records).unwrap();
    assert_eq!(written.header.record_count, 10_000);
    assert_eq!(written.header.kind, RecordKind::Hk);
    assert_eq!(product::read_all::<Hk>(&path).unwrap(), records);
    // Nothing but the product is left in the folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn empty_product_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none");
    product::write_all::<Gap>(&path, &[]).unwrap();
    assert!(product::read_all::<Gap>(&path).unwrap().is_empty());
}

#[test]
fn reading_the_wrong_kind_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obs");
    product::write_all(&path, &[observation(1)]).unwrap();
    let err = product::read_all::<Hk>(&path).unwrap_err();
    assert!(matches!(err, ProductError::KindMismatch { .. }), "{err}");
    assert!(err.to_string().contains("obs") && err.to_string().contains("observation"));
}

#[test]
fn unfinished_writer_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial");
    {
        let mut w = ProductWriter::<Hk>::create(&path).unwrap();
        w.push(&hk(1)).unwrap();
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn not_a_product_and_missing_file_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = dir.path().join("photo.jpg");
    std::fs::write(
        &jpeg,
        [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'],
    )
    .unwrap();
    let err = product::read_all::<Hk>(&jpeg).unwrap_err();
    assert!(matches!(err, ProductError::NotAProduct { .. }));
    assert!(err.to_string().contains("photo.jpg"));
    let err = product::read_all::<Hk>(dir.path().join("absent")).unwrap_err();
    assert!(err.to_string().contains("absent"));
}

#[test]
fn find_products_skips_hidden_temporaries_and_non_products() {
    let dir = tempfile::tempdir().unwrap();
    product::write_all(dir.path().join("b.mprod"), &[hk(1)]).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    product::write_all(dir.path().join("sub/a.mprod"), &[hk(2)]).unwrap();
    // What a crash between header write and rename leaves: a valid file, hidden.
    product::write_all(dir.path().join(".b.mprod.1-0.tmp"), &[hk(3)]).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let found = product::find_products(dir.path()).unwrap();
    let names: Vec<_> = found
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        vec![std::path::PathBuf::from("b.mprod"), "sub/a.mprod".into()]
    );
}

#[test]
fn json_dump_has_kind_and_icd_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obs");
    product::write_all(&path, &[observation(3)]).unwrap();
    let mut out = Vec::new();
    assert_eq!(product::dump_jsonl(&path, &mut out).unwrap(), 1);
    let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(line["kind"], "observation");
    for field in [
        "transit_id",
        "strip",
        "row",
        "fov",
        "t_obs_ns",
        "centroid",
        "centroid_err",
        "flux",
        "flux_err",
        "background",
        "ra",
        "dec",
        "flags",
    ] {
        assert!(line.get(field).is_some(), "missing {field}");
    }
    assert!(line["ra"].is_null());
}

#[test]
fn a_scratch_finish_writes_the_same_file_as_a_durable_one() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Observation> = (0..500).map(observation).collect();
    let mut paths = Vec::new();
    for (name, scratch) in [("durable.mprod", false), ("scratch.mprod", true)] {
        let path = dir.path().join(name);
        let mut w = ProductWriter::<Observation>::create(&path).unwrap();
        for r in &records {
            w.push(r).unwrap();
        }
        let written = match scratch {
            true => w.finish_scratch(),
            false => w.finish(),
        }
        .unwrap();
        assert_eq!(written.header.record_count, 500);
        paths.push(path);
    }
    assert_eq!(
        std::fs::read(&paths[0]).unwrap(),
        std::fs::read(&paths[1]).unwrap()
    );
    let back: Vec<Observation> = product::read_all(&paths[1]).unwrap();
    assert_eq!(back.len(), records.len());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temporary file is left behind"
    );
}

#[test]
fn simulator_window_truth_dumps_with_its_own_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windows.mprod");
    let truth = meridian_core::records::WindowTruth {
        transit_id: 7,
        strip: 2,
        row: 4,
        fov: 1,
        ac: 900,
        obt_ns: 123_456_789,
        source_id: -5,
        centroid: 6.25,
        flux: 1.5e4,
        background: 80.0,
        t_obs_ns: 123_999_999,
        ra_deg: 359.5,
        dec_deg: -89.25,
        g: 14.5,
    };
    product::write_all(&path, std::slice::from_ref(&truth)).unwrap();
    let back: Vec<meridian_core::records::WindowTruth> = product::read_all(&path).unwrap();
    assert_eq!(back, vec![truth]);
    let mut out = Vec::new();
    assert_eq!(product::dump_jsonl(&path, &mut out).unwrap(), 1);
    let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(line["kind"], "window_truth");
    assert_eq!(line["source_id"], -5);
    assert_eq!(line["dec_deg"], -89.25);
}

fn write_sample(path: &Path, n: u64) -> Vec<u8> {
    let records: Vec<Observation> = (0..n).map(observation).collect();
    product::write_all(path, &records).unwrap();
    std::fs::read(path).unwrap()
}

fn read_back(path: &Path) -> Result<Vec<Observation>, ProductError> {
    ProductReader::<Observation>::open(path)?.collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_records_round_trip(ids in proptest::collection::vec(any::<u64>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let records: Vec<Observation> = ids.iter().map(|&i| observation(i)).collect();
        product::write_all(&path, &records).unwrap();
        prop_assert_eq!(read_back(&path).unwrap(), records);
    }

    #[test]
    fn truncation_is_detected(n in 1u64..200, cut_frac in 0.0..1.0f64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let bytes = write_sample(&path, n);
        let cut = ((bytes.len() as f64) * cut_frac) as usize;
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = read_back(&path).unwrap_err();
        prop_assert!(err.to_string().contains(path.to_str().unwrap()), "{}", err);
    }

    #[test]
    fn any_flipped_byte_is_detected(n in 1u64..200, pos_frac in 0.0..1.0f64, bit in 0u8..8) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let mut bytes = write_sample(&path, n);
        let pos = ((bytes.len() as f64) * pos_frac) as usize % bytes.len();
        // Reserved octets 12..16 and 44..48 carry no information.
        prop_assume!(!(12..16).contains(&pos) && !(44..48).contains(&pos));
        bytes[pos] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(read_back(&path).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), magic in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let mut content = bytes;
        if magic { content.splice(0..0, *b"MERIDPRD"); }
        std::fs::write(&path, &content).unwrap();
        let _ = read_back(&path);
    }
}
