#!/usr/bin/env python3
"""Index build and cross-match rates of meridian-xmatch beside astropy's
search_around_sky on the same synthetic sky, in one run, as ratios.

Not run in CI. Needs cargo, and numpy, scipy and astropy from pip, e.g.
`python3 -m venv v && v/bin/pip install astropy numpy scipy`, then run this
script with v/bin/python:

    python3 crates/meridian-xmatch/bench/compare_astropy.py \
        --sources 10000000 --transits 1000000 --dir /tmp/xmbench

Each phase runs in its own process, so every peak memory (VmHWM) is that
phase's own. What is compared:
- build: ours parses the CSV, sorts by HEALPix cell and writes the mapped
  index; astropy builds its KD-tree from in-memory arrays (no parsing, no
  file), timed as first search_around_sky minus second.
- match: ours propagates proper motions to each transit's epoch, applies the
  ICD §8 rules (best, ties, ambiguous) and links unmatched transits into
  new-source groups; astropy returns all pairs within 1″ of the catalogue
  positions as given (second call, KD-tree cached).
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
EXAMPLE = os.path.join(REPO, "target", "release", "examples", "xmatch_bench")


def vm_hwm_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def astropy_phase(directory):
    """Runs in a child process; prints one JSON object."""
    import numpy as np
    from astropy import units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    cat = SkyCoord(
        np.fromfile(os.path.join(directory, "cat_ra.f64"), dtype="<f8") * u.deg,
        np.fromfile(os.path.join(directory, "cat_dec.f64"), dtype="<f8") * u.deg,
    )
    tr = SkyCoord(
        np.fromfile(os.path.join(directory, "tr_ra.f64"), dtype="<f8") * u.deg,
        np.fromfile(os.path.join(directory, "tr_dec.f64"), dtype="<f8") * u.deg,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    search_around_sky(tr, cat, 1 * u.arcsec)
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    idx_tr, idx_cat, _, _ = search_around_sky(tr, cat, 1 * u.arcsec)
    second, second_cpu = time.perf_counter() - t0, time.process_time() - c0
    matched = len(np.unique(idx_tr))
    print(json.dumps({
        "phase": "astropy",
        "sources": len(cat),
        "transits": len(tr),
        "tree_seconds": first - second,
        "match_seconds": second,
        "tree_cpu_seconds": first_cpu - second_cpu,
        "match_cpu_seconds": second_cpu,
        "pairs": int(len(idx_tr)),
        "matched": int(matched),
        "vm_hwm_mib": vm_hwm_mib(),
    }))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=10_000_000)
    ap.add_argument("--transits", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/xmbench")
    ap.add_argument("--reuse", action="store_true", help="keep generated data if present")
    ap.add_argument("--astropy-phase", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.astropy_phase:
        astropy_phase(args.dir)
        return
    subprocess.run(["cargo", "build", "--release", "-p", "meridian-xmatch", "--example", "xmatch_bench"],
                   check=True, cwd=REPO)
    if not (args.reuse and os.path.exists(os.path.join(args.dir, "catalogue.csv"))):
        run_json([EXAMPLE, "gen", args.dir, str(args.sources), str(args.transits)])
    build = run_json([EXAMPLE, "build", args.dir])
    match = run_json([EXAMPLE, "match", args.dir])
    astro = run_json([sys.executable, __file__, "--astropy-phase", "--dir", args.dir])
    ours_build = build["sources_per_s"]
    astro_build = astro["sources"] / astro["tree_seconds"]
    ours_match = match["transits_per_s"]
    astro_match = astro["transits"] / astro["match_seconds"]
    print(json.dumps({"meridian_build": build, "meridian_match": match, "astropy": astro}, indent=2))
    print()
    print(f"{'':24}{'meridian':>14}{'astropy':>14}{'ratio':>8}")
    print(f"{'build, sources/s':24}{ours_build:14.3e}{astro_build:14.3e}{ours_build / astro_build:8.2f}")
    print(f"{'match, transits/s':24}{ours_match:14.3e}{astro_match:14.3e}{ours_match / astro_match:8.2f}")
    ob, ab = build["sources_per_cpu_s"], astro["sources"] / astro["tree_cpu_seconds"]
    om, am = match["transits_per_cpu_s"], astro["transits"] / astro["match_cpu_seconds"]
    print(f"{'build, sources/CPU-s':24}{ob:14.3e}{ab:14.3e}{ob / ab:8.2f}")
    print(f"{'match, transits/CPU-s':24}{om:14.3e}{am:14.3e}{om / am:8.2f}")
    print(f"{'build peak MiB':24}{build['vm_hwm_mib']:14.0f}{'':>14}")
    print(f"{'match peak MiB':24}{match['vm_hwm_mib']:14.0f}{astro['vm_hwm_mib']:14.0f}")
    print(f"{'matched transits':24}{match['matched']:14d}{astro['matched']:14d}")
    print(f"true star recovered: {match['true_star_recovered']:.6f}; threads: {match['threads']}; "
          f"load average now: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
