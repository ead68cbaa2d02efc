"""Patient digital twins: fleet update throughput against a per-patient SciPy loop (1-cmt and 2-cmt),
single-update latency, full-posterior throughput, and the calibration of the neutropenia early warning.

1. Fleet (``--n`` patients per model, default 10,000; ``--models 1cmt,2cmt``), each simulated from
   known truth with 500 mg IV bolus q12h x4 and 1-6 levels at random times in 0.5-48 h (combined
   residual error):

   * ``1cmt``: `1cmt_iv`, CL (WT power effect) and V, BSV on CL and V (2 eta);
   * ``2cmt``: `2cmt_iv`, CL (WT power effect), V1, Q, V2, BSV on CL, V1 and V2 (3 eta).

   The levels are simulated from the closed-form solution (superposition of the mono- /
   bi-exponential impulse response). insilico computes every MAP + Laplace posterior in one
   vmapped, jitted batch (`insilico.twins.laplace_posteriors`: the data checks and padding
   included, store I/O excluded; timed warm, after one compile). The reference is what mapbayr /
   posologyr do per patient: ``scipy.optimize.minimize`` (BFGS) of the same objective
   ``-2 log p(y, eta)`` with the model solved by ``scipy.integrate.solve_ivp`` (LSODA, rtol 1e-10,
   atol 1e-12) dose to dose, on the first ``--scipy`` patients (per-patient time extrapolated to
   the fleet). Printed per model: both wall times, patients/s, the ratio (target >= 1000x) and the
   maximum |MAP eta difference| over the SciPy subset.
2. Single-update latency (each model): ``twins.update`` of one patient with store I/O (one dose +
   one level added per update), warm (compiled kernel, the twin's versions cached in the
   process): median over ``--updates`` updates after the first (target <= 50 ms).
3. Full posterior (each model, ``--full`` patients, default 50; 0 skips): the first patients of
   the fleet written to a store by one `update_all`, then ``twins.posterior_sample`` (importance
   sampling from the Laplace proposal, NUTS when its ESS is below 25 %; ``--full-draws`` draws,
   store read included) patient by patient, timed warm (the first patient excluded): patients/s
   and how many fell back to NUTS.
4. Early warning (``--calibration`` patients, default 400): `examples/twins/neutropenia.yaml`,
   each patient's twin updated with the first cycle's ANC counts (baseline, days 7, 10, 14),
   P(ANC < 0.5 x 10^9/L at the nadir of cycle 2) against the outcome simulated from the
   patient's true parameters (SciPy ODE): Brier score, Spiegelhalter's z and the reliability
   table (``--skip-calibration`` to leave it out).

Usage: ``.venv/bin/python benchmarks/bench_twin.py [--n 10000] [--scipy 100] [--full 50] [--json out.json]``;
a quick end-to-end check: ``--n 500 --scipy 5 --updates 5 --full 5 --skip-calibration --json /tmp/twin.json``.
Results are written to ``benchmarks/results/twin.json`` unless ``--json`` says otherwise.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.integrate
import scipy.optimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROP, ADD = 0.1, 0.5                           # residual error: proportional (fraction), additive (mg/L)
DOSE, TAU, N_DOSES = 500.0, 12.0, 4            # mg, h
DOSE_TIMES = TAU * np.arange(N_DOSES)
TARGET_RATIO, TARGET_LATENCY_S = 1000.0, 0.050


@dataclass(frozen=True)
class Case:
    """A fleet's prior: ``typical`` values (L/h, L; CL with a WT power effect, exponent 0.75,
    reference 70 kg), BSV variances ``omega`` of the parameters ``bsv`` (log-normal)."""

    model: str
    typical: dict
    bsv: tuple
    omega: tuple

    @property
    def prior(self) -> dict:
        params = {k: {"typical": v} for k, v in self.typical.items()}
        params["CL"]["effects"] = [{"covariate": "WT", "type": "power", "ref": 70, "theta": 0.75}]
        return {"model": {"name": self.model}, "parameters": params,
                "bsv": {"parameters": list(self.bsv), "variance": list(self.omega)},
                "residual_error": {"type": "combined", "proportional": PROP, "additive": ADD}}

    def individual(self, wt: float, eta) -> dict:
        p = dict(self.typical)
        p["CL"] = p["CL"] * (wt / 70.0) ** 0.75
        for name, e in zip(self.bsv, eta):
            p[name] = p[name] * np.exp(e)
        return p

    def system(self, p: dict) -> tuple[np.ndarray, float]:
        """(A, V): amounts (mg) obey dA/dt = A @ amounts, the bolus enters state 0, conc = state 0 / V."""
        if self.model == "1cmt_iv":
            return np.array([[-p["CL"] / p["V"]]]), p["V"]
        k10, k12, k21 = p["CL"] / p["V1"], p["Q"] / p["V1"], p["Q"] / p["V2"]
        return np.array([[-(k10 + k12), k21], [k12, -k21]]), p["V1"]

    def impulse(self, dt: np.ndarray, p: dict) -> np.ndarray:
        """Concentration (mg/L) per mg of an IV bolus ``dt`` h earlier (closed form)."""
        if self.model == "1cmt_iv":
            return np.exp(-p["CL"] / p["V"] * dt) / p["V"]
        k10, k12, k21 = p["CL"] / p["V1"], p["Q"] / p["V1"], p["Q"] / p["V2"]
        s, d = k10 + k12 + k21, np.sqrt((k10 + k12 + k21) ** 2 - 4 * k10 * k21)
        alpha, beta = (s + d) / 2, (s - d) / 2
        return ((alpha - k21) * np.exp(-alpha * dt) + (k21 - beta) * np.exp(-beta * dt)) / (p["V1"] * (alpha - beta))


CASES = {"1cmt": Case("1cmt_iv", {"CL": 4.0, "V": 30.0}, ("CL", "V"), (0.2, 0.1)),
         "2cmt": Case("2cmt_iv", {"CL": 4.0, "V1": 20.0, "Q": 6.0, "V2": 40.0}, ("CL", "V1", "V2"), (0.2, 0.1, 0.1))}


def conc_exact(case: Case, t, p: dict) -> np.ndarray:
    """Superposition of the doses before t (an observation at a dose time is pre-dose)."""
    dt = np.asarray(t, float)[:, None] - DOSE_TIMES
    return np.sum(np.where(dt > 0, DOSE * case.impulse(np.where(dt > 0, dt, 0.0), p), 0.0), 1)


def conc_ivp(case: Case, t: np.ndarray, p: dict) -> np.ndarray:
    """The same by solve_ivp, integrated dose to dose (the bolus a jump of the state)."""
    a_mat, v = case.system(p)
    out = np.empty(t.size)
    a = np.zeros(a_mat.shape[0])
    edges = list(DOSE_TIMES) + [max(t.max(), DOSE_TIMES[-1]) + 1.0]
    for j in range(N_DOSES):
        a[0] += DOSE
        lo, hi = edges[j], edges[j + 1]
        sel = (t > lo) & (t <= hi)
        sol = scipy.integrate.solve_ivp(lambda _, y: a_mat @ y, (lo, hi), a, method="LSODA", rtol=1e-10, atol=1e-12,
                                        t_eval=np.r_[t[sel], hi] if sel.any() else [hi])
        if sel.any():
            out[sel] = sol.y[0, :-1] / v
        a = sol.y[:, -1].copy()
    return out


def fleet(case: Case, n: int, seed: int = 0):
    """Rows (one DataFrame, NONMEM columns with ID and WT), covariates {ID: {WT}}."""
    rng = np.random.default_rng(seed)
    wt = rng.uniform(50, 110, n)
    eta = rng.standard_normal((n, len(case.bsv))) * np.sqrt(case.omega)
    parts, covs = [], {}
    for i in range(n):
        pid = f"P{i:05d}"
        covs[pid] = {"WT": float(wt[i])}
        t = np.sort(np.round(rng.uniform(0.5, 48.0, rng.integers(1, 7)), 2))
        t = np.unique(t[np.abs((t / TAU) - np.round(t / TAU)) > 1e-6])
        f = conc_exact(case, t, case.individual(wt[i], eta[i]))
        y = f * (1 + PROP * rng.standard_normal(t.size)) + ADD * rng.standard_normal(t.size)
        parts.append(pd.DataFrame({"ID": pid, "TIME": np.r_[DOSE_TIMES, t], "AMT": np.r_[[DOSE] * N_DOSES, 0 * t],
                                   "EVID": np.r_[[1] * N_DOSES, [0] * t.size], "DV": np.r_[[np.nan] * N_DOSES, y],
                                   "WT": wt[i]}))
    return pd.concat(parts, ignore_index=True), covs


def scipy_map(case: Case, rows: pd.DataFrame, wt: float) -> np.ndarray:
    """MAP eta of one patient: BFGS on -2 log p(y, eta) (the objective insilico minimises)."""
    obs = rows[rows["EVID"] == 0]
    t, y = obs["TIME"].to_numpy(float), obs["DV"].to_numpy(float)
    omega = np.asarray(case.omega)

    def objective(e):
        f = conc_ivp(case, t, case.individual(wt, e))
        var = (PROP * f) ** 2 + ADD ** 2
        return np.sum(e ** 2 / omega) + np.sum((y - f) ** 2 / var + np.log(var))

    return scipy.optimize.minimize(objective, np.zeros(omega.size), method="BFGS", options={"gtol": 1e-7}).x


def bench_fleet(case: Case, n: int, n_scipy: int, chunk_size: int | None) -> dict:
    from insilico import twins
    df, covs = fleet(case, n)
    data = df.drop(columns="WT")
    t0 = time.perf_counter()
    twins.laplace_posteriors(case.prior, data, covs, chunk_size)             # cold: compiles the chunk's kernel
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    post = twins.laplace_posteriors(case.prior, data, covs, chunk_size)      # warm: what every later update costs
    t_insilico = time.perf_counter() - t0
    ok = sum(p.status == 0 for p in post.values())
    sub = list(covs)[:n_scipy]
    t1 = time.perf_counter()
    ref = {pid: scipy_map(case, df[df["ID"] == pid], covs[pid]["WT"]) for pid in sub}
    t_scipy = time.perf_counter() - t1
    diff = max(float(np.max(np.abs(post[pid].eta - ref[pid]))) for pid in sub)
    rate_i, rate_s = n / t_insilico, n_scipy / t_scipy
    return {"model": case.model, "n_eta": len(case.bsv), "n": n, "n_scipy": n_scipy, "insilico_cold_s": t_cold,
            "insilico_s": t_insilico, "insilico_patients_per_s": rate_i, "insilico_status_ok": ok,
            "scipy_s": t_scipy, "scipy_patients_per_s": rate_s, "scipy_s_extrapolated_to_n": n / rate_s,
            "speedup_patients_per_s": rate_i / rate_s, "meets_1000x": rate_i / rate_s >= TARGET_RATIO,
            "max_abs_map_diff": diff}


def bench_latency(case: Case, n_updates: int) -> dict:
    from insilico import twins
    store = Path(tempfile.mkdtemp()) / "twins.zarr"
    twins.create(store, "L1", case.prior, {"WT": 70})
    times = []
    for k in range(n_updates + 1):
        t = 12.0 * k
        rows = pd.DataFrame({"TIME": [t, t + 11.5], "AMT": [DOSE, 0.0], "EVID": [1, 0], "DV": [np.nan, 3.0]})
        t0 = time.perf_counter()
        twins.update(store, "L1", rows)
        times.append(time.perf_counter() - t0)
    warm = times[1:]
    return {"model": case.model, "updates": n_updates, "first_s": times[0], "median_warm_s": statistics.median(warm),
            "min_warm_s": min(warm), "max_warm_s": max(warm),
            "meets_50ms": statistics.median(warm) <= TARGET_LATENCY_S,
            "note": "the twin grows by one dose and one level per update; the maximum includes the one-off "
                    "compile when the history crosses a padding bucket (8 -> 16 -> 32 dose slots or levels)"}


def bench_full_posterior(case: Case, n: int, n_draws: int) -> dict:
    from insilico import twins
    df, _ = fleet(case, n, seed=1)
    store = Path(tempfile.mkdtemp()) / "twins.zarr"
    twins.update_all(store, df, prior=case.prior)
    ids = list(dict.fromkeys(df["ID"]))
    methods, times = [], []
    for k, pid in enumerate(ids):
        t0 = time.perf_counter()
        res = twins.posterior_sample(store, pid, n=n_draws, seed=k)
        times.append(time.perf_counter() - t0)
        methods.append(res["method"])
    warm = times[1:] or times
    return {"model": case.model, "n": n, "n_draws": n_draws, "first_s": times[0], "warm_s": sum(warm),
            "patients_per_s": len(warm) / sum(warm), "median_s": statistics.median(warm),
            "importance": methods.count("importance"), "nuts": methods.count("nuts"),
            "note": "twins.posterior_sample per patient, store read included; the first patient (compile) excluded"}


def bench_calibration(n: int) -> dict:
    from tests.twins.neutropenia import calibration
    t0 = time.perf_counter()
    res = calibration(n, seed=1)
    res["seconds"] = time.perf_counter() - t0
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="patients in the vmapped batch, per model")
    ap.add_argument("--models", default="1cmt,2cmt", help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--scipy", type=int, default=100, help="patients in the SciPy loop (the first of the fleet)")
    ap.add_argument("--chunk-size", type=int, default=None, help="patients per compiled batch (default: engine's)")
    ap.add_argument("--updates", type=int, default=30, help="single-patient updates timed")
    ap.add_argument("--full", type=int, default=50, help="patients whose full posterior is sampled (0: skip)")
    ap.add_argument("--full-draws", type=int, default=1000, help="draws per full posterior")
    ap.add_argument("--calibration", type=int, default=400, help="simulated patients of the early-warning check")
    ap.add_argument("--skip-calibration", action="store_true")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "twin.json"))
    a = ap.parse_args(argv)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    if not models or any(m not in CASES for m in models):
        ap.error(f"--models: choose from {', '.join(CASES)}")
    if not 1 <= a.scipy <= a.n:
        ap.error("--scipy: between 1 and --n")
    out = {"machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                       "load_before": os.getloadavg()},
           "args": vars(a), "fleet": {}, "latency": {}, "full_posterior": {}}
    import jax
    out["machine"]["jax"] = jax.__version__
    out["machine"]["device"] = str(jax.devices()[0])
    for name in models:
        case = CASES[name]
        f = out["fleet"][name] = bench_fleet(case, a.n, a.scipy, a.chunk_size)
        print(f"[{name}] fleet MAP + Laplace, {f['n']} patients ({f['n_eta']} eta): insilico {f['insilico_s']:.2f} s "
              f"warm ({f['insilico_cold_s']:.1f} s cold, {f['insilico_patients_per_s']:.0f} patients/s, "
              f"{f['insilico_status_ok']} ok); SciPy loop {f['n_scipy']} patients {f['scipy_s']:.2f} s "
              f"({f['scipy_patients_per_s']:.2f} patients/s, {f['scipy_s_extrapolated_to_n']:.0f} s for {f['n']}); "
              f"ratio {f['speedup_patients_per_s']:.0f}x (target >= {TARGET_RATIO:.0f}x: "
              f"{'met' if f['meets_1000x'] else 'NOT met'}); max |MAP diff| {f['max_abs_map_diff']:.2e}", flush=True)
        lat = out["latency"][name] = bench_latency(case, a.updates)
        print(f"[{name}] single update with store I/O: first {lat['first_s'] * 1e3:.0f} ms, warm median "
              f"{lat['median_warm_s'] * 1e3:.1f} ms (target <= 50 ms: {'met' if lat['meets_50ms'] else 'NOT met'}; "
              f"min {lat['min_warm_s'] * 1e3:.1f}, max {lat['max_warm_s'] * 1e3:.0f}: a new padding bucket "
              "compiles once)", flush=True)
        if a.full > 0:
            fp = out["full_posterior"][name] = bench_full_posterior(case, a.full, a.full_draws)
            print(f"[{name}] full posterior, {fp['n']} patients x {fp['n_draws']} draws: {fp['patients_per_s']:.1f} "
                  f"patients/s warm (median {fp['median_s'] * 1e3:.0f} ms; first {fp['first_s']:.1f} s); "
                  f"importance sampling {fp['importance']}, NUTS {fp['nuts']}", flush=True)
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
