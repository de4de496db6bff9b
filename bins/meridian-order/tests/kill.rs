//! Killing `meridian-order` at random points and running it again gives the same
//! folder as an uninterrupted run; the binary's exit codes and summary.

use meridian_order::synth::{DayConfig, SplitMix, generate_day, write_day};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-order");

fn command(input: &Path, out: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["--chunk-s", "20", "--mem", "256KiB", "--quiet", "--in"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn run_to_end(input: &Path, out: &Path) {
    let status = command(input, out).status().unwrap();
    assert!(status.success(), "{status}");
}

/// Every file of the ordered folder (the lock file aside), by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if rel != ".lock" {
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

/// Two decoded folders: the first half of a day's deliveries, then all of them.
fn inputs(seed: u64) -> (tempfile::TempDir, tempfile::TempDir) {
    let day = generate_day(&DayConfig {
        seed,
        duration_s: 1200,
        window_rate: 8.0,
        deliveries: 10,
        contiguous: seed.is_multiple_of(2),
        ..DayConfig::default()
    });
    let (half, all) = (tempdir(), tempdir());
    let mut day = day;
    // Conflicting variants of a few packets, in both halves.
    let some: Vec<_> = [3, 400, 2000]
        .iter()
        .filter_map(|&i| day.deliveries.iter().flatten().nth(i))
        .map(|p| p.conflicting_variant())
        .collect();
    day.deliveries[1].extend(some[..1].iter().cloned());
    day.deliveries[7].extend(some[1..].iter().cloned());
    let mut first = day.clone();
    first.deliveries.truncate(5);
    write_day(half.path(), &first, seed).unwrap();
    write_day(all.path(), &day, seed).unwrap();
    (half, all)
}

#[test]
fn killed_runs_rerun_to_the_same_folder() {
    for seed in 1..=4u64 {
        let t = Instant::now();
        let (half, all) = inputs(seed);
        eprintln!("seed {seed}: inputs in {:?}", t.elapsed());
        // Reference: two uninterrupted runs.
        let reference = tempdir();
        run_to_end(half.path(), reference.path());
        let t0 = Instant::now();
        run_to_end(all.path(), reference.path());
        let full = t0.elapsed();
        let expect = tree(reference.path());
        assert!(
            expect.contains_key("conflicts/window.mprod"),
            "conflicts are exercised"
        );

        let mut rng = SplitMix::new(seed * 7919);
        let mut interrupted = 0;
        let victim = tempdir();
        // Kill each run at random points until it has been interrupted `wanted`
        // times; a kill that comes too late halves the next delay's range.
        for (input, wanted) in [(half.path(), 2), (all.path(), 3)] {
            let mut range = full.as_micros() as u64 + 1;
            let mut hit = 0;
            while hit < wanted {
                let delay = Duration::from_micros(rng.below(range));
                let mut child = command(input, victim.path()).spawn().unwrap();
                std::thread::sleep(delay);
                if child.try_wait().unwrap().is_none() {
                    hit += 1;
                } else {
                    range = range / 2 + 1;
                }
                let _ = child.kill();
                child.wait().unwrap();
            }
            interrupted += hit;
            run_to_end(input, victim.path());
        }
        eprintln!("seed {seed}: full run {full:?}, {interrupted} runs killed");
        let got = tree(victim.path());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expect.keys().collect::<Vec<_>>(),
            "seed {seed}"
        );
        assert!(got == expect, "seed {seed}: file contents differ");
    }
}

#[test]
fn exit_codes_and_summary() {
    let (half, _all) = inputs(9);
    let out = tempdir();
    let summary_path = out.path().join("summary.json");
    let o = Command::new(BIN)
        .args(["--chunk-s", "20", "--quiet", "--in"])
        .arg(half.path())
        .arg("--out")
        .arg(out.path().join("ordered"))
        .arg("--summary")
        .arg(&summary_path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(printed["run"], 1);
    assert_eq!(printed["deliveries_consumed"], 5);
    assert_eq!(saved["run"], 1);

    // A corrupted delivery: named, skipped, exit 1.
    let deliveries = half.path().join("deliveries");
    let mut names: Vec<_> = std::fs::read_dir(&deliveries)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let extra = deliveries.join("ffffffffffffffffffffffffffffffff");
    std::fs::create_dir_all(&extra).unwrap();
    for f in ["window.mprod", "attitude.mprod", "hk.mprod", "report.json"] {
        std::fs::copy(deliveries.join(&names[0]).join(f), extra.join(f)).unwrap();
    }
    std::fs::write(extra.join("attitude.mprod"), b"MERIDPRD garbage").unwrap();
    let o = Command::new(BIN)
        .args(["--chunk-s", "20", "--in"])
        .arg(half.path())
        .arg("--out")
        .arg(out.path().join("ordered"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("ffffffffffffffffffffffffffffffff/attitude.mprod"),
        "{stderr}"
    );

    // A changed chunk length is refused (exit 2); --changed-since lists chunks.
    let o = Command::new(BIN)
        .args(["--chunk-s", "60", "--in"])
        .arg(half.path())
        .arg("--out")
        .arg(out.path().join("ordered"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(BIN)
        .args(["--changed-since", "0", "--out"])
        .arg(out.path().join("ordered"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let changed: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!changed.is_empty());
}
