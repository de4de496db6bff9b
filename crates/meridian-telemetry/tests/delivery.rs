//! Delivery folders: the output contract (five products, report.json last),
//! identification by content, bad inputs failing alone with named errors, and
//! products byte-identical whatever the thread count.

mod common;

use common::{Rng, db, faulty_stream, packets};
use meridian_core::product::read_all;
use meridian_core::records::{Quarantine, Window};
use meridian_telemetry::decode::Decoded;
use meridian_telemetry::delivery::{
    DeliveryOutcome, DeliveryReport, PRODUCT_FILES, REPORT_FILE, decode_deliveries, delivery_dir,
    delivery_id,
};
use meridian_telemetry::input::{DecodeOptions, decode_delivery};
use std::path::{Path, PathBuf};

fn faulty_bytes(seed: u64) -> Vec<u8> {
    faulty_stream(seed, &packets(seed, 200), 10).bytes
}

fn run(paths: &[PathBuf], out: &Path) -> meridian_telemetry::delivery::RunSummary {
    decode_deliveries(
        paths,
        &db(),
        out,
        DecodeOptions::default(),
        &meridian_core::stage::NoProgress,
    )
    .unwrap()
}

fn failure<'a>(summary: &'a meridian_telemetry::delivery::RunSummary, path: &Path) -> &'a str {
    summary
        .deliveries
        .iter()
        .find_map(|d| match d {
            DeliveryOutcome::Failed { paths, error, .. } if paths[0] == path => Some(&error[..]),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{} did not fail", path.display()))
}

#[test]
fn deliveries_decode_into_complete_folders_and_bad_ones_fail_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let raw = faulty_bytes(1);
    let other = faulty_bytes(2);
    let w = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let a = w("a.tm", &raw);
    let b = w("b.bin", &raw); // same content, another name
    let z = w("c.tm.zst", &zstd::encode_all(&other[..], 3).unwrap());
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpeg.extend(Rng(5).bytes(5000));
    let j = w("photo.tm", &jpeg);
    let zfull = zstd::encode_all(&other[..], 3).unwrap();
    let broken = w("broken.tm.zst", &zfull[..zfull.len() / 2]);
    let empty = w("empty.tm", &[]);
    let missing = dir.join("missing.tm");
    let out = dir.join("out");
    let inputs = vec![
        a.clone(),
        b.clone(),
        z.clone(),
        j.clone(),
        broken.clone(),
        empty.clone(),
        missing.clone(),
    ];
    let summary = run(&inputs, &out);
    assert_eq!(
        (summary.decoded, summary.already_decoded, summary.failed),
        (2, 0, 4)
    );
    assert!(failure(&summary, &j).contains("photo.tm: not telemetry"));
    assert!(failure(&summary, &j).contains("JPEG"));
    assert!(failure(&summary, &broken).contains("broken.tm.zst: zstd stream breaks after"));
    assert!(failure(&summary, &empty).contains("empty.tm: not telemetry"));
    assert!(failure(&summary, &missing).contains("missing.tm"));

    // The raw delivery's folder holds exactly what an in-memory decode gives.
    let id = delivery_id(&raw);
    let folder = delivery_dir(&out, &id);
    for f in PRODUCT_FILES.iter().chain([&REPORT_FILE]) {
        assert!(folder.join(f).is_file(), "{f} missing");
    }
    let report: DeliveryReport =
        serde_json::from_slice(&std::fs::read(folder.join(REPORT_FILE)).unwrap()).unwrap();
    assert_eq!(report.files, vec!["a.tm", "b.bin"]);
    assert!(report.accounting.balanced);
    assert_eq!(report.size, raw.len() as u64);
    let mut want = Decoded::default();
    let stats = decode_delivery(&raw, &db(), "a.tm", DecodeOptions::default(), &mut want).unwrap();
    assert_eq!(report.stats, stats);
    assert!(stats.crc_failures + stats.garbage_spans > 0);
    assert_eq!(
        read_all::<Window>(folder.join("window.mprod")).unwrap(),
        want.windows
    );
    let q = read_all::<Quarantine>(folder.join("quarantine.mprod")).unwrap();
    assert_eq!(q, want.quarantine);
    assert!(q.iter().all(|q| q.delivery == "a.tm"));

    // Failed deliveries leave no folder that looks complete.
    for bad in [&jpeg[..], &zfull[..zfull.len() / 2], &[][..]] {
        assert!(
            !delivery_dir(&out, &delivery_id(bad))
                .join(REPORT_FILE)
                .exists()
        );
    }
    let summary_file = std::fs::read_to_string(out.join("decode-summary.json")).unwrap();
    assert!(summary_file.contains("\"failed\": 4"));

    // A re-run adds nothing and leaves the products untouched.
    let before = std::fs::read(folder.join("window.mprod")).unwrap();
    let again = run(&inputs, &out);
    assert_eq!(
        (again.decoded, again.already_decoded, again.failed),
        (0, 2, 4)
    );
    assert_eq!(std::fs::read(folder.join("window.mprod")).unwrap(), before);
}

#[test]
fn a_folder_without_report_is_redone() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = faulty_bytes(3);
    let p = tmp.path().join("d.tm");
    std::fs::write(&p, &raw).unwrap();
    let out = tmp.path().join("out");
    run(std::slice::from_ref(&p), &out);
    let folder = delivery_dir(&out, &delivery_id(&raw));
    let window = std::fs::read(folder.join("window.mprod")).unwrap();
    // A crash before the report: products half there.
    std::fs::remove_file(folder.join(REPORT_FILE)).unwrap();
    std::fs::remove_file(folder.join("hk.mprod")).unwrap();
    let summary = run(&[p], &out);
    assert_eq!(summary.decoded, 1);
    assert!(folder.join("hk.mprod").is_file() && folder.join(REPORT_FILE).is_file());
    assert_eq!(std::fs::read(folder.join("window.mprod")).unwrap(), window);
}

#[test]
fn unusable_output_folder_is_a_fatal_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = decode_deliveries(
        &[],
        &db(),
        &file.join("out"),
        DecodeOptions::default(),
        &meridian_core::stage::NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("plain-file"), "{err}");
}

#[test]
fn products_are_byte_identical_whatever_the_thread_count_and_input_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for seed in 0..4 {
        let p = tmp.path().join(format!("d{seed}.tm"));
        std::fs::write(&p, faulty_bytes(10 + seed)).unwrap();
        paths.push(p);
    }
    let small = DecodeOptions {
        segment_len: 2000,
        block_len: 777,
    };
    let decode_with = |threads: usize, paths: &[PathBuf], out: &Path| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            decode_deliveries(paths, &db(), out, small, &meridian_core::stage::NoProgress).unwrap()
        });
    };
    let (one, four) = (tmp.path().join("one"), tmp.path().join("four"));
    decode_with(1, &paths, &one);
    let mut reversed = paths.clone();
    reversed.reverse();
    decode_with(4, &reversed, &four);
    for p in &paths {
        let id = delivery_id(&std::fs::read(p).unwrap());
        for f in PRODUCT_FILES {
            let a = std::fs::read(delivery_dir(&one, &id).join(f)).unwrap();
            let b = std::fs::read(delivery_dir(&four, &id).join(f)).unwrap();
            assert_eq!(a, b, "{f} of {}", p.display());
        }
    }
}
