"""Scenario P3: a 1,000,000-subject, 2-arm linear-PK trial end to end on this machine
(cohort -> simulation -> endpoints -> Zarr -> analysis), with the time at 10k/100k/1M.

Each size runs in a fresh subprocess (so peak RSS is per run) through the public API with the
default LocalCluster. Usage: .venv/bin/python benchmarks/bench_trial.py [--sizes 10000 100000 1000000]
Targets: 1M subjects <= 60 s wall and <= 4 GB peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import insilico
t_import = time.perf_counter() - t0
n, out = int(sys.argv[1]), sys.argv[2]
t1 = time.perf_counter()
ds = insilico.run(sys.argv[3], out, overrides=[f"n={n}", *sys.argv[4:]], overwrite=True)
wall = time.perf_counter() - t1
ok = int((ds["status"] == 0).sum()); simulated = int((ds["status"] >= 0).sum())
print(json.dumps({"n": n, "wall_s": wall, "import_s": t_import, "simulated": simulated, "ok": ok,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "timings": json.loads(ds.attrs["timings"]),
                  "jax_backend": __import__("jax").default_backend(),
                  "device_peak_mb": ((__import__("jax").devices()[0].memory_stats() or {})
                                     .get("peak_bytes_in_use", 0) / 2**20)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra spec override, e.g. execution.chunk_size=200000 (repeatable)")
    ap.add_argument("--json", default=str(HERE / "results" / "trial_p3.json"), help="results file")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            out = Path(tmp) / f"p3_{n}.zarr"
            p = subprocess.run([sys.executable, "-c", CHILD, str(n), str(out), str(HERE / "p3_trial.yaml"),
                                *args.overrides],
                               capture_output=True, text=True, env={**os.environ})
            if p.returncode != 0:
                print(p.stderr[-3000:])
                return 1
            row = json.loads(p.stdout.strip().splitlines()[-1])
            size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
            row["store_mb"] = size_mb
            rows.append(row)
            print(f"N = {n:>9,d}: wall {row['wall_s']:6.1f} s, {n / row['wall_s']:>9,.0f} subjects/s, "
                  f"peak RSS {row['peak_rss_mb']:7.0f} MB, store {size_mb:6.1f} MB, "
                  f"ok {row['ok']:,}/{row['simulated']:,}", flush=True)
    big = [r for r in rows if r["n"] >= 1_000_000]
    verdict = 0
    for r in big:
        t_ok, m_ok = r["wall_s"] <= 60, r["peak_rss_mb"] <= 4096
        print(f"target 1M <= 60 s: {'PASS' if t_ok else 'FAIL'} ({r['wall_s']:.1f} s); "
              f"<= 4 GB RSS: {'PASS' if m_ok else 'FAIL'} ({r['peak_rss_mb']:.0f} MB)")
        verdict |= not (t_ok and m_ok)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    doc = {"cpu_count": os.cpu_count(), "rows": rows}
    if args.overrides:
        doc["overrides"] = args.overrides
    Path(args.json).write_text(json.dumps(doc, indent=1))
    return verdict


if __name__ == "__main__":
    sys.exit(main())
