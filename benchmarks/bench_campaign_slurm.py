"""The same campaign on 1 and on 2 Slurm worker jobs: wall time and speed-up.

Runs `benchmarks/campaign_slurm.yaml` through `insilico.run_campaign(cluster="slurm")` (mutual TLS,
one worker per job, ``--cores`` CPUs per job, bound by Slurm's task/affinity on the single-node
cluster of scripts/start_slurm.sh) once per job count, each in a fresh subprocess with the JAX
persistent compilation cache off so that every run compiles in its workers alike. Checks that the
campaign summaries and every scenario store are identical across job counts.

Usage: .venv/bin/python benchmarks/bench_campaign_slurm.py [--jobs 1 2] [--cores 1]
Writes benchmarks/results/campaign_slurm.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from insilico.campaigns import run_campaign
from insilico.cluster import ClusterOptions
spec, out, jobs, cores, tls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
summary = run_campaign(spec, out, cluster=ClusterOptions(
    kind="slurm", jobs=jobs, cores=cores, memory="4GB", walltime="00:30:00", tls_dir=tls,
    dashboard_address=None))
wall = time.perf_counter() - t0
import zarr
root = zarr.open_group(out, mode="r")
units = {}
for s in sorted(set(summary["scenario"])):
    t = json.loads(zarr.open_group(f"{out}/{s}", mode="r").attrs["timings"])
    units[s] = t
print(json.dumps({"jobs": jobs, "cores": cores, "wall_s": wall, "campaign_s": root.attrs["wall_seconds"],
                  "failed": int((summary["status"] != "ok").sum()), "scenarios": units,
                  "summary": json.loads(summary.to_json(orient="records"))}))
"""


def _same(a: Path, b: Path) -> float:
    """Largest absolute difference between the data variables of two campaign hierarchies."""
    import numpy as np

    from insilico.store import open_results
    worst = 0.0
    for s in sorted(p.name for p in a.iterdir() if p.is_dir() and not p.name.startswith(".")):
        x, y = open_results(a / s).drop_vars("_done").load(), open_results(b / s).drop_vars("_done").load()
        for k in x.data_vars:
            u, v = np.asarray(x[k].values), np.asarray(y[k].values)
            if u.dtype.kind == "f":
                if not np.array_equal(u, v, equal_nan=True):
                    worst = max(worst, float(np.nanmax(np.abs(u - v))))
            elif not np.array_equal(u, v):
                worst = float("inf")
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cores", type=int, default=1, help="CPUs per worker job")
    ap.add_argument("--campaign", default=str(HERE / "campaign_slurm.yaml"))
    ap.add_argument("--json", default=str(HERE / "results" / "campaign_slurm.json"))
    args = ap.parse_args()
    rows, outs = [], {}
    env = {**os.environ, "INSILICO_JAX_CACHE": "off"}
    with tempfile.TemporaryDirectory() as tmp:
        load_before = os.getloadavg()
        for jobs in args.jobs:
            out = Path(tmp) / f"jobs{jobs}.zarr"
            p = subprocess.run([sys.executable, "-c", CHILD, args.campaign, str(out), str(jobs), str(args.cores),
                                str(Path(tmp) / "tls")], capture_output=True, text=True, env=env)
            if p.returncode != 0:
                print(p.stderr[-3000:])
                return 1
            row = json.loads(p.stdout.strip().splitlines()[-1])
            rows.append(row)
            outs[jobs] = out
            unit_s = sum(t["unit_seconds_total"] for t in row["scenarios"].values())
            n_units = sum(t["units_run"] for t in row["scenarios"].values())
            print(f"{jobs} job(s) x {args.cores} core(s): wall {row['wall_s']:6.1f} s "
                  f"({n_units} units, {unit_s:6.1f} s of unit time), failed scenarios {row['failed']}", flush=True)
        load_after = os.getloadavg()
        first = args.jobs[0]
        diffs = {j: _same(outs[first], outs[j]) for j in args.jobs[1:]}
    # the first scenario also pays for starting the jobs and compiling in every worker
    for r in rows:
        walls = [t["wall_seconds"] for t in r["scenarios"].values()]
        r["first_scenario_s"], r["later_scenarios_s"] = walls[0], sum(walls[1:])
    for r in rows[1:]:
        r["speedup_vs_first"] = rows[0]["wall_s"] / r["wall_s"]
        r["speedup_later_scenarios"] = rows[0]["later_scenarios_s"] / r["later_scenarios_s"]
        print(f"speed-up {r['jobs']} vs {first} job(s): {r['speedup_vs_first']:.2f}x overall, "
              f"{r['speedup_later_scenarios']:.2f}x after the first scenario (start-up and compilation) "
              f"(max |difference| in results: {diffs[r['jobs']]:g})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "campaign": Path(args.campaign).name, "cores_per_job": args.cores, "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "load_before": load_before,
        "load_after": load_after, "max_abs_difference": diffs, "rows": rows}, indent=1))
    return 0 if all(d == 0 for d in diffs.values()) and not any(r["failed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
