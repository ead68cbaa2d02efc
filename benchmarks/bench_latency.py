"""Interactive latency: what a modeller waits for at the CLI and in Jupyter.

Measures, each in fresh processes so caches are controlled:

* ``insilico --help`` wall time (target <= 0.5 s) and whether ``import insilico`` imports JAX;
* the 400-subject, 4-arm dose-ranging trial (``trials/dose_ranging.yaml``) through
  ``insilico.run``: cold (empty persistent compilation cache, target <= 15 s), warm (a new
  process with the persistent cache filled by the cold run, target <= 3 s), and a second run in
  the same process with another dose (a Jupyter iteration); the process wall time (imports,
  cluster start) is reported beside the ``run`` call, and the CPU time of the warm ``run`` (all
  threads; steadier than wall time on a machine shared with other work);
* a 100-subject ``simulate`` of a built-in model with the JIT warm (second call, new
  parameter values; target <= 50 ms), exact (``2cmt_oral``) and ODE (``2cmt_oral_mm``) paths.

Usage: ``.venv/bin/python benchmarks/bench_latency.py [--repeat 3] [--only trial] [--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CLI = str(Path(PY).with_name("insilico"))

TRIAL = r"""
import json, sys, time, tempfile
t0, c0 = time.perf_counter(), time.process_time()
import insilico
import insilico.trials   # the libraries a run needs (JAX, NumPyro, Diffrax, xarray, Dask)
t_import = time.perf_counter() - t0
out = tempfile.mkdtemp()
t1, c1 = time.perf_counter(), time.process_time()
insilico.run(sys.argv[1], out + "/a.zarr", overwrite=True)
t_run, c_run = time.perf_counter() - t1, time.process_time() - c1
c_process = time.process_time() - c0   # imports and the first run, all threads
t2 = time.perf_counter()
insilico.run(sys.argv[1], out + "/b.zarr", overrides=["arms.3.regimen.0.amt=150"], overwrite=True)
t_again = time.perf_counter() - t2
from insilico import exported   # kept programs are reused only while this digest is unchanged
print(json.dumps({"import_s": t_import, "run_s": t_run, "run_cpu_s": c_run, "second_run_s": t_again,
                  "process_s": time.perf_counter() - t0,
                  "process_cpu_s": c_process, "source": exported.source_digest()}))
"""

SIMULATE = r"""
import json, sys, time
import numpy as np
from insilico.dosing import Regimen
from insilico.engine import simulate
model = sys.argv[1]
rng = np.random.default_rng(0)
reg = Regimen.repeated(100, 12, 14)
t = np.arange(0, 169.0)
def params():
    p = {"CL": 5 * np.exp(0.3 * rng.standard_normal(100)), "V1": 40 * np.exp(0.2 * rng.standard_normal(100)),
         "Q": 10.0, "V2": 100.0, "KA": 1.2 * np.exp(0.4 * rng.standard_normal(100))}
    if model.endswith("_mm"):
        p = {k: v for k, v in p.items() if k != "CL"} | {"VMAX": 50.0, "KM": 2.0}
    return p
t0 = time.perf_counter(); simulate(model, params(), reg, t); first = time.perf_counter() - t0
times = []
for _ in range(20):
    p = params()
    t0 = time.perf_counter()
    ds = simulate(model, p, reg, t)
    float(ds["conc"][0, -1])
    times.append(time.perf_counter() - t0)
print(json.dumps({"first_s": first, "warm_median_s": sorted(times)[len(times) // 2], "warm_min_s": min(times)}))
"""


def _child(code: str, *args: str, env: dict | None = None) -> tuple[dict, float]:
    t0 = time.perf_counter()
    res = subprocess.run([PY, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, **(env or {})}, check=False)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1]), wall


def bench_help(repeat: int) -> dict:
    times = []
    for _ in range(max(repeat, 5)):
        t0 = time.perf_counter()
        subprocess.run([CLI, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    imported = subprocess.run([PY, "-c", "import sys, insilico; print('jax' in sys.modules)"],
                              capture_output=True, text=True, check=True).stdout.strip()
    return {"help_median_s": statistics.median(times), "help_min_s": min(times),
            "import_insilico_imports_jax": imported == "True"}


def bench_trial(repeat: int) -> dict:
    spec = str(ROOT / "trials/dose_ranging.yaml")
    out = {"cold": [], "warm": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as cache:
            env = {"INSILICO_JAX_CACHE": cache}
            r, wall = _child(TRIAL, spec, env=env)
            out["cold"].append({**r, "wall_s": wall})
            r, wall = _child(TRIAL, spec, env=env)
            out["warm"].append({**r, "wall_s": wall})
            if r["source"] != out["cold"][-1]["source"]:
                print("warning: the insilico source changed between the cold and the warm run; the warm run "
                      "traced its kernels anew", file=sys.stderr)
    return out


def bench_simulate() -> dict:
    return {m: _child(SIMULATE, m)[0] for m in ("2cmt_oral", "2cmt_oral_mm")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", choices=("help", "simulate", "trial"), action="append", default=None,
                    help="measure only these parts (repeatable; default: all)")
    a = ap.parse_args()
    only = set(a.only or ("help", "simulate", "trial"))
    res = {"help": bench_help(a.repeat) if "help" in only else None,
           "simulate": bench_simulate() if "simulate" in only else None,
           "trial": bench_trial(a.repeat) if "trial" in only else None}
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    h, s, t = res["help"], res["simulate"], res["trial"]
    lines = []
    if h:
        lines += [("insilico --help", f"{h['help_median_s']:.2f} s", "<= 0.5 s"),
                  ("import insilico imports JAX", str(h["import_insilico_imports_jax"]), "False")]
    if s:
        lines += [("simulate 100 subj, exact, warm", f"{1e3 * s['2cmt_oral']['warm_median_s']:.1f} ms", "<= 50 ms"),
                  ("simulate 100 subj, ODE, warm", f"{1e3 * s['2cmt_oral_mm']['warm_median_s']:.1f} ms", ""),
                  ("simulate first call (exact / ODE)",
                   f"{s['2cmt_oral']['first_s']:.2f} s / {s['2cmt_oral_mm']['first_s']:.2f} s", "")]
    if t:
        lines += [
            ("dose-ranging run(), cold cache", f"{med(t['cold'], 'run_s'):.2f} s", "<= 15 s"),
            ("dose-ranging run(), warm cache, new process", f"{med(t['warm'], 'run_s'):.2f} s", "<= 3 s"),
            ("  CPU time of that run (all threads)", f"{med(t['warm'], 'run_cpu_s'):.2f} s", ""),
            ("dose-ranging run(), same process, new dose", f"{med(t['warm'], 'second_run_s'):.2f} s", ""),
            ("  process wall incl. imports (cold / warm)",
             f"{med(t['cold'], 'wall_s'):.2f} s / {med(t['warm'], 'wall_s'):.2f} s", ""),
            ("  import of the numerical libraries (warm)", f"{med(t['warm'], 'import_s'):.2f} s", ""),
            ("  process CPU, imports + first run (warm)", f"{med(t['warm'], 'process_cpu_s'):.2f} s", ""),
        ]
    w = max(len(x[0]) for x in lines)
    print(f"{'measure':<{w}}  {'median':>16}  target")
    for name, val, target in lines:
        print(f"{name:<{w}}  {val:>16}  {target}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
