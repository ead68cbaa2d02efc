"""Estimation benchmark: insilico FOCE-I vs R nlme, insilico NUTS vs Stan (rstan), same data, one run.

    .venv/bin/python benchmarks/bench_fit.py            # ~10 min on the 2-core dev VM (Stan compiles ~1-2 min)
    .venv/bin/python benchmarks/bench_fit.py --skip-stan

Problems (simulated, fixed seeds; the data sets are written to benchmarks/results/):
* ``oral1``: 100 subjects, 1-cmt oral 100 mg, 8 samples, log-normal CL, V, KA, 10 % proportional error;
* ``iv2``: 100 subjects, 2-cmt IV infusion 500 mg over 1 h, CL ~ (WT/70)^0.75 (exponent fixed), log-normal
  CL and V1, 10 % proportional error;
* ``nuts``: 30 subjects of ``oral1`` with BSV on CL and V, 4 chains x 500 warm-up + 500 draws, the same
  model and priors in both samplers (centred: Stan samples eta, insilico log TV + eta, the same posterior),
  ESS/s = min bulk ESS of the population quantities / wall time of
  warm-up + sampling (Stan: without its C++ compilation; insilico: the first run, compilation included,
  and a second run in the same process).
insilico's FOCE-I time is reported cold (first fit in a fresh process: tracing and XLA compilation
included, the persistent compilation cache cleared) and warm (the same fit again in that process), wall and
process CPU time (the machine may be shared: compare ratios within one run). nlme's time is the elapsed time
of the ``nlme()`` call. Peers are installed from Debian (r-cran-nlme, r-cran-rstan) when
missing (root needed). Results: ``benchmarks/results/fit.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

ORAL1 = """
model: {name: 1cmt_oral}
parameters: {CL: {typical: 2.0}, V: {typical: 20.0}, KA: {typical: 1.0}}
bsv: {parameters: [CL, V, KA], variance: [0.2, 0.2, 0.2]}
residual_error: {type: proportional, proportional: 0.2}
"""
IV2 = """
model: {name: 2cmt_iv}
parameters:
  CL: {typical: 4.0, effects: [{covariate: WT, type: power, ref: 70, theta: 0.75}]}
  V1: {typical: 20.0}
  Q: {typical: 5.0}
  V2: {typical: 40.0}
bsv: {parameters: [CL, V1], variance: [0.2, 0.2]}
residual_error: {type: proportional, proportional: 0.2}
estimate: {fix: [CL.WT]}
"""
NUTS_MODEL = """
model: {name: 1cmt_oral}
parameters: {CL: {typical: 2.5}, V: {typical: 25.0}, KA: {typical: 1.0}}
bsv: {parameters: [CL, V], variance: [0.1, 0.1]}
residual_error: {type: proportional, proportional: 0.15}
"""


def ensure_peers(stan: bool) -> None:
    libs = "library(nlme)" + ("; library(rstan)" if stan else "")
    if not (shutil.which("Rscript") and subprocess.run(["Rscript", "-e", libs], capture_output=True).returncode == 0):
        pkgs = ["r-cran-nlme"] + (["r-cran-rstan", "r-cran-bh", "r-cran-rcppeigen", "libboost-dev"] if stan else [])
        print(f"installing {' '.join(pkgs)} (Debian) ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], check=True, capture_output=True)
    if stan:   # Debian's r-cran-bh uses the system Boost headers; rstan looks for them inside BH
        bh = subprocess.run(["Rscript", "-e", 'cat(system.file(package="BH"))'], capture_output=True,
                            text=True).stdout.strip()
        if bh and not Path(bh, "include").exists() and Path("/usr/include/boost").is_dir():
            Path(bh, "include").symlink_to("/usr/include")


def simulate_oral(n: int, seed: int, bsv_ka: bool = True) -> pd.DataFrame:
    from insilico.dosing import Dose, Regimen
    from insilico.engine import simulate
    rng = np.random.default_rng(seed)
    times = np.array([0.5, 1, 2, 4, 6, 8, 12, 24.0])
    eta = rng.normal(size=(n, 3)) * np.sqrt([0.09, 0.04, 0.16 if bsv_ka else 0.0])
    p = {"CL": 3.0 * np.exp(eta[:, 0]), "V": 30.0 * np.exp(eta[:, 1]), "KA": 1.2 * np.exp(eta[:, 2])}
    f = simulate("1cmt_oral", p, Regimen((Dose(amt=100.0),)), times)["conc"].values
    y = f * (1 + 0.1 * rng.normal(size=f.shape))
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=100.0, RATE=0.0, EVID=1, DV=".", WT=70.0, CMT=1))
        rows += [dict(ID=i + 1, TIME=t, AMT=0.0, RATE=0.0, EVID=0, DV=v, WT=70.0, CMT=2) for t, v in zip(times, y[i])]
    return pd.DataFrame(rows)


def simulate_iv2(n: int, seed: int) -> pd.DataFrame:
    from insilico.dosing import Dose, Regimen
    from insilico.engine import simulate
    rng = np.random.default_rng(seed)
    times = np.array([0.5, 1, 1.5, 2, 4, 8, 12, 24, 36, 48.0])
    eta = rng.normal(size=(n, 2)) * np.sqrt([0.09, 0.04])
    wt = rng.uniform(50, 100, n)
    p = {"CL": 5.0 * (wt / 70) ** 0.75 * np.exp(eta[:, 0]), "V1": 25.0 * np.exp(eta[:, 1]),
         "Q": 8.0 * np.ones(n), "V2": 60.0 * np.ones(n)}
    f = simulate("2cmt_iv", p, Regimen((Dose(amt=500.0, rate=500.0),)), times)["conc"].values
    y = f * (1 + 0.1 * rng.normal(size=f.shape))
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=500.0, RATE=500.0, EVID=1, DV=".", WT=wt[i], CMT=1))
        rows += [dict(ID=i + 1, TIME=t, AMT=0.0, RATE=0.0, EVID=0, DV=v, WT=wt[i], CMT=1) for t, v in zip(times, y[i])]
    return pd.DataFrame(rows)


def insilico_fit(model: str, data: Path, method: str, repeat: bool) -> dict:
    """Fit in a fresh process (compilation cache of its own, empty) and, with ``repeat``, again warm."""
    code = f"""
import json, sys, time
from insilico.estimation import fit, NUTS, LOG_2PI
m = {method!r}
def one():
    t, c = time.perf_counter(), time.process_time()
    opt = NUTS(chains=4, warmup=500, samples=500, seed=1) if m == "nuts" else m
    r = fit({model!r}, {str(data)!r}, opt, npde_samples=0)
    one.cpu = time.process_time() - c
    return time.perf_counter() - t, r
cold, r = one()
out = {{"cold_seconds": cold, "cold_cpu_seconds": one.cpu,
       "estimates": dict(zip(r.names, map(float, r.estimates))), "converged": r.converged,
       "m2ll": (r.ofv + r.n_observations * LOG_2PI) if m != "nuts" else None}}
if m == "nuts":
    ds = r.to_dataset()
    out.update(ess=dict(zip(r.names, map(float, ds.ess_bulk.values))),
               rhat=dict(zip(r.names, map(float, ds.rhat.values))), divergences=int(ds.attrs["divergences"]))
if {repeat!r}:
    warm, r2 = one()
    out["warm_seconds"], out["warm_cpu_seconds"] = warm, one.cpu
    if m == "nuts":
        out["ess_warm"] = dict(zip(r2.names, map(float, r2.to_dataset().ess_bulk.values)))
print(json.dumps(out))
"""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "INSILICO_JAX_CACHE": cache}
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def peer(what: str, data: Path, model: str, *extra) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    t = time.perf_counter()
    res = subprocess.run(["Rscript", str(ROOT / "benchmarks" / "fit_peers.R"), what, str(data), model, str(out),
                          *map(str, extra)], capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    doc = json.loads(out.read_text())
    doc["process_seconds"] = time.perf_counter() - t
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-stan", action="store_true")
    ap.add_argument("--only", choices=("oral1", "iv2", "nuts"), nargs="*", default=None,
                    help="run only these problems (default: all)")
    ap.add_argument("--json", default=str(RESULTS / "fit.json"))
    a = ap.parse_args(argv)
    ensure_peers(not a.skip_stan)
    RESULTS.mkdir(exist_ok=True)
    data = {"oral1": simulate_oral(100, 11), "iv2": simulate_iv2(100, 12), "nuts": simulate_oral(30, 13, bsv_ka=False)}
    paths = {}
    for k, df in data.items():
        paths[k] = RESULTS / f"fit_{k}.csv"
        df.to_csv(paths[k], index=False)
    report = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    only = set(a.only or ("oral1", "iv2", "nuts"))
    for k, model in (("oral1", ORAL1), ("iv2", IV2)):
        if k not in only:
            continue
        ins = insilico_fit(model, paths[k], "focei", repeat=True)
        nl = peer("nlme", paths[k], k)
        report[k] = {"insilico": ins, "nlme": nl,
                     "ratio_warm": nl["seconds"] / ins["warm_seconds"],
                     "ratio_cold": nl["seconds"] / ins["cold_seconds"],
                     "m2ll_difference": ins["m2ll"] - nl["m2ll"]}
        print(f"{k}: FOCE-I cold {ins['cold_seconds']:.1f} s, warm {ins['warm_seconds']:.2f} s "
              f"(CPU {ins['warm_cpu_seconds']:.2f} s) | nlme "
              f"{nl['seconds']:.2f} s | nlme/insilico warm {nl['seconds'] / ins['warm_seconds']:.2f}x | "
              f"-2LL insilico {ins['m2ll']:.2f}, nlme {nl['m2ll']:.2f}", flush=True)
    if not a.skip_stan and "nuts" in only:
        ins = insilico_fit(NUTS_MODEL, paths["nuts"], "nuts", repeat=True)
        st = peer("stan", paths["nuts"], "oral1", 4, 500, 500)
        names_ins = {"CL": "CL", "V": "V", "KA": "KA", "SIGMA(1,1)": "sigma_sd"}
        ess_ins = min(ins["ess"][n] for n in names_ins)
        ess_ins_warm = min(ins["ess_warm"][n] for n in names_ins)
        ess_st = min(st["ess"][n] for n in names_ins.values())
        report["nuts"] = {"insilico": ins, "stan": st,
                          "ess_per_s": {"insilico_cold": ess_ins / ins["cold_seconds"],
                                        "insilico_warm": ess_ins_warm / ins["warm_seconds"],
                                        "insilico_warm_per_cpu_second": ess_ins_warm / ins["warm_cpu_seconds"],
                                        "stan": ess_st / st["seconds"]}}
        r = report["nuts"]["ess_per_s"]
        print(f"nuts: min bulk ESS/s insilico cold {r['insilico_cold']:.1f}, warm {r['insilico_warm']:.1f} | Stan "
              f"{r['stan']:.1f} (compile {st['compile_seconds']:.0f} s not counted) | ratio warm "
              f"{r['insilico_warm'] / r['stan']:.2f}x", flush=True)
    report["load_after"] = os.getloadavg()
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
