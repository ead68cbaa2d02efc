"""Patient digital twins: fleet update throughput against a per-patient SciPy loop, single-update
latency, and the calibration of the neutropenia early warning.

1. Fleet (``--n`` patients, default 10,000): 1-cmt IV bolus prior (CL with a WT power effect, V;
   BSV on CL and V; combined residual error), 500 mg q12h x4, 1-6 levels per patient at random
   times in 0.5-48 h, simulated from known truth. insilico computes every MAP + Laplace
   posterior in one vmapped, jitted batch (`insilico.twins.laplace_posteriors`: the data checks
   and padding included, store I/O excluded; timed warm, after one compile). The reference is
   what mapbayr / posologyr do per patient: ``scipy.optimize.minimize`` (BFGS) of the same
   objective ``-2 log p(y, eta)`` with the model solved by ``scipy.integrate.solve_ivp`` (LSODA,
   rtol 1e-10, atol 1e-12) between doses, on the first ``--scipy`` patients (per-patient time
   extrapolated to the fleet). Printed: both wall times, patients/s, the ratio, and the maximum
   |MAP eta difference| over the SciPy subset.
2. Single-update latency: ``twins.update`` of one patient with store I/O (one dose + one level
   added per update), warm (compiled kernel, the twin's versions cached in the process): median
   over ``--updates`` updates after the first (target <= 50 ms).
3. Early warning (``--calibration`` patients, default 400): `examples/twins/neutropenia.yaml`,
   each patient's twin updated with the first cycle's ANC counts (baseline, days 7, 10, 14),
   P(ANC < 0.5 x 10^9/L at the nadir of cycle 2) against the outcome simulated from the
   patient's true parameters (SciPy ODE): Brier score, Spiegelhalter's z and the reliability
   table (``--skip-calibration`` to leave it out).

Usage: ``.venv/bin/python benchmarks/bench_twin.py [--n 10000] [--scipy 100] [--json out.json]``
(~7 min on the loaded 2-core dev VM, 4.5 of them the 400-patient calibration). Results are also
written to ``benchmarks/results/twin.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.integrate
import scipy.optimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CL, V, OMEGA = 4.0, 30.0, (0.2, 0.1)          # L/h, L; BSV variances of CL and V
PROP, ADD = 0.1, 0.5                           # residual error: proportional (fraction), additive (mg/L)
DOSE, TAU, N_DOSES = 500.0, 12.0, 4            # mg, h
PRIOR = {"model": {"name": "1cmt_iv"},
         "parameters": {"CL": {"typical": CL, "effects": [{"covariate": "WT", "type": "power", "ref": 70,
                                                           "theta": 0.75}]},
                        "V": {"typical": V}},
         "bsv": {"parameters": ["CL", "V"], "variance": list(OMEGA)},
         "residual_error": {"type": "combined", "proportional": PROP, "additive": ADD}}
DOSE_TIMES = TAU * np.arange(N_DOSES)


def fleet(n: int, seed: int = 0):
    """Rows (one DataFrame, NONMEM columns with ID), covariates {ID: {WT}}, true etas (n, 2)."""
    rng = np.random.default_rng(seed)
    wt = rng.uniform(50, 110, n)
    eta = rng.standard_normal((n, 2)) * np.sqrt(OMEGA)
    cl, v = CL * (wt / 70) ** 0.75 * np.exp(eta[:, 0]), V * np.exp(eta[:, 1])
    ids, t_all, amt, evid, dv = [], [], [], [], []
    covs = {}
    for i in range(n):
        pid = f"P{i:05d}"
        covs[pid] = {"WT": float(wt[i])}
        k = rng.integers(1, 7)
        t = np.sort(np.round(rng.uniform(0.5, 48.0, k), 2))
        t = np.unique(t[np.abs((t / TAU) - np.round(t / TAU)) > 1e-6])
        f = conc_exact(t, cl[i], v[i])
        y = f * (1 + PROP * rng.standard_normal(t.size)) + ADD * rng.standard_normal(t.size)
        ids += [pid] * (N_DOSES + t.size)
        t_all += list(DOSE_TIMES) + list(t)
        amt += [DOSE] * N_DOSES + [0.0] * t.size
        evid += [1] * N_DOSES + [0] * t.size
        dv += [np.nan] * N_DOSES + list(y)
    df = pd.DataFrame({"ID": ids, "TIME": t_all, "AMT": amt, "EVID": evid, "DV": dv})
    return df, covs, eta


def conc_exact(t, cl, v):
    """1-cmt IV bolus (mg/L): superposition of the doses before t."""
    dt = np.asarray(t, float)[:, None] - DOSE_TIMES
    return np.sum(np.where(dt > 0, DOSE / v * np.exp(-cl / v * np.where(dt > 0, dt, 0.0)), 0.0), 1)


def conc_ivp(t, cl, v):
    """The same by solve_ivp, integrated dose to dose (the bolus a jump of the state)."""
    out = np.empty(t.size)
    a = 0.0
    edges = list(DOSE_TIMES) + [max(t.max(), DOSE_TIMES[-1]) + 1.0]
    for j in range(N_DOSES):
        a += DOSE
        lo, hi = edges[j], edges[j + 1]
        sel = (t > lo) & (t <= hi)
        sol = scipy.integrate.solve_ivp(lambda _, y: -cl / v * y, (lo, hi), [a], method="LSODA", rtol=1e-10,
                                        atol=1e-12, t_eval=np.r_[t[sel], hi] if sel.any() else [hi])
        if sel.any():
            out[sel] = sol.y[0, :-1] / v
        a = sol.y[0, -1]
    return out


def scipy_map(rows: pd.DataFrame, wt: float) -> np.ndarray:
    """MAP eta of one patient: BFGS on -2 log p(y, eta) (the objective insilico minimises)."""
    obs = rows[rows["EVID"] == 0]
    t, y = obs["TIME"].to_numpy(float), obs["DV"].to_numpy(float)
    tv_cl = CL * (wt / 70) ** 0.75

    def objective(e):
        f = conc_ivp(t, tv_cl * np.exp(e[0]), V * np.exp(e[1]))
        var = (PROP * f) ** 2 + ADD ** 2
        return e[0] ** 2 / OMEGA[0] + e[1] ** 2 / OMEGA[1] + np.sum((y - f) ** 2 / var + np.log(var))

    return scipy.optimize.minimize(objective, np.zeros(2), method="BFGS", options={"gtol": 1e-7}).x


def bench_fleet(n: int, n_scipy: int, chunk_size: int | None) -> dict:
    from insilico import twins
    df, covs, _ = fleet(n)
    t0 = time.perf_counter()
    twins.laplace_posteriors(PRIOR, df, covs, chunk_size)             # cold: compiles the chunk's kernel
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    post = twins.laplace_posteriors(PRIOR, df, covs, chunk_size)      # warm: what every later fleet update costs
    t_insilico = time.perf_counter() - t0
    ok = sum(p.status == 0 for p in post.values())
    sub = list(covs)[:n_scipy]
    t1 = time.perf_counter()
    ref = {pid: scipy_map(df[df["ID"] == pid], covs[pid]["WT"]) for pid in sub}
    t_scipy = time.perf_counter() - t1
    diff = max(float(np.max(np.abs(post[pid].eta - ref[pid]))) for pid in sub)
    rate_i, rate_s = n / t_insilico, n_scipy / t_scipy
    return {"n": n, "n_scipy": n_scipy, "insilico_cold_s": t_cold, "insilico_s": t_insilico,
            "insilico_patients_per_s": rate_i,
            "insilico_status_ok": ok, "scipy_s": t_scipy, "scipy_patients_per_s": rate_s,
            "scipy_s_extrapolated_to_n": n / rate_s, "speedup_patients_per_s": rate_i / rate_s,
            "max_abs_map_diff": diff}


def bench_latency(n_updates: int) -> dict:
    from insilico import twins
    store = Path(tempfile.mkdtemp()) / "twins.zarr"
    twins.create(store, "L1", PRIOR, {"WT": 70})
    times = []
    for k in range(n_updates + 1):
        t = 12.0 * k
        rows = pd.DataFrame({"TIME": [t, t + 11.5], "AMT": [DOSE, 0.0], "EVID": [1, 0], "DV": [np.nan, 3.0]})
        t0 = time.perf_counter()
        twins.update(store, "L1", rows)
        times.append(time.perf_counter() - t0)
    warm = times[1:]
    return {"updates": n_updates, "first_s": times[0], "median_warm_s": statistics.median(warm),
            "min_warm_s": min(warm), "max_warm_s": max(warm),
            "note": "the twin grows by one dose and one level per update; the maximum includes the one-off "
                    "compile when the history crosses a padding bucket (8 -> 16 -> 32 dose slots or levels)"}


def bench_calibration(n: int) -> dict:
    from tests.twins.neutropenia import calibration
    t0 = time.perf_counter()
    res = calibration(n, seed=1)
    res["seconds"] = time.perf_counter() - t0
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="patients in the vmapped batch")
    ap.add_argument("--scipy", type=int, default=100, help="patients in the SciPy loop (the first of the fleet)")
    ap.add_argument("--chunk-size", type=int, default=None, help="patients per compiled batch (default: engine's)")
    ap.add_argument("--updates", type=int, default=30, help="single-patient updates timed")
    ap.add_argument("--calibration", type=int, default=400, help="simulated patients of the early-warning check")
    ap.add_argument("--skip-calibration", action="store_true")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "twin.json"))
    a = ap.parse_args(argv)
    out = {"machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                       "load_before": os.getloadavg()}}
    import jax
    out["machine"]["jax"] = jax.__version__
    out["machine"]["device"] = str(jax.devices()[0])
    f = out["fleet"] = bench_fleet(a.n, a.scipy, a.chunk_size)
    print(f"fleet MAP + Laplace, {f['n']} patients: insilico {f['insilico_s']:.2f} s warm "
          f"({f['insilico_cold_s']:.1f} s cold) "
          f"({f['insilico_patients_per_s']:.0f} patients/s, {f['insilico_status_ok']} ok); "
          f"SciPy loop {f['n_scipy']} patients {f['scipy_s']:.2f} s ({f['scipy_patients_per_s']:.1f} patients/s, "
          f"{f['scipy_s_extrapolated_to_n']:.0f} s for {f['n']}); ratio {f['speedup_patients_per_s']:.0f}x; "
          f"max |MAP diff| {f['max_abs_map_diff']:.2e}")
    lat = out["latency"] = bench_latency(a.updates)
    print(f"single update with store I/O: first {lat['first_s'] * 1e3:.0f} ms, warm median "
          f"{lat['median_warm_s'] * 1e3:.1f} ms (min {lat['min_warm_s'] * 1e3:.1f}, max {lat['max_warm_s'] * 1e3:.0f}: "
          "a new padding bucket compiles once)")
    if not a.skip_calibration:
        c = out["calibration"] = bench_calibration(a.calibration)
        print(f"early warning P(ANC < 0.5 at the cycle-2 nadir), {c['n']} simulated patients: Brier "
              f"{c['brier']:.3f} (climatology {c['brier_climatology']:.3f}), Spiegelhalter z "
              f"{c['spiegelhalter_z']:.2f}, observed rate {c['event_rate']:.2f}")
        print(pd.DataFrame(c["reliability"]).to_string(index=False))
    out["machine"]["load_after"] = os.getloadavg()
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
