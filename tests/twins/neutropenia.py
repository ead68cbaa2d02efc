"""The neutropenia early-warning example (`examples/twins/neutropenia.yaml`) on simulated patients:
1000 mg IV bolus cycles every 21 days (504 h); each twin sees the first cycle's ANC counts
(baseline before the dose, days 7, 10 and 14) and predicts P(ANC < 0.5 x 10^9/L at the nadir of
cycle 2), i.e. P(min ANC over (504, 1008] h < 0.5) given a second 1000 mg dose at 504 h. The
outcome is that minimum of the patient's true ANC (no measurement error), on the same grid the
twin's `risk` uses. Shared by tests/twins/test_early_warning.py and benchmarks/bench_twin.py."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.integrate

from insilico import twins

PRIOR = Path(__file__).resolve().parents[2] / "examples" / "twins" / "neutropenia.yaml"
FIXED = {"CL": 4.0, "V": 30.0, "MTT": 125.0, "GAMMA": 0.17}
TYPICAL = {"CIRC0": 5.0, "SLOPE": 0.3}
OMEGA = {"CIRC0": 0.1, "SLOPE": 0.25}
PROP = 0.15
DOSE, CYCLE = 1000.0, 504.0                      # mg, h
ANC_TIMES = np.array([0.0, 168.0, 240.0, 336.0])   # h: baseline (pre-dose), days 7, 10, 14
THRESHOLD = 0.5                                  # 10^9/L
POINTS = 241                                     # the risk grid (twins.risk default)


def _rhs(t, y, circ0, slope):
    """1-cmt IV (amount A, mg) driving Friberg's model (Friberg 2002; 10^9/L), written out in NumPy."""
    a, prol, m1, m2, m3, circ = y
    ktr = 4.0 / FIXED["MTT"]
    edrug = slope * a / FIXED["V"]
    return [-FIXED["CL"] / FIXED["V"] * a, ktr * prol * ((1 - edrug) * (circ0 / circ) ** FIXED["GAMMA"] - 1),
            ktr * (prol - m1), ktr * (m1 - m2), ktr * (m2 - m3), ktr * (m3 - circ)]


def true_anc(circ0: float, slope: float, times: np.ndarray) -> np.ndarray:
    """ANC (10^9/L) at increasing ``times`` (h) under 1000 mg boluses at 0 and 504 h, by
    `scipy.integrate.solve_ivp` (LSODA, rtol 1e-9) dose to dose: the independent reference of the
    engine's ODE path. A time equal to a dose time is before that dose (NONMEM)."""
    y = np.array([0.0] + [circ0] * 5)
    out = np.full(times.size, circ0)                         # at or before the first dose: the baseline
    for lo, hi in ((0.0, CYCLE), (CYCLE, times.max())):
        if hi <= lo:
            break
        y[0] += DOSE
        sel = (times > lo) & (times <= hi)
        ev = np.union1d(times[sel], [hi])
        sol = scipy.integrate.solve_ivp(_rhs, (lo, hi), y, method="LSODA", rtol=1e-9, atol=1e-10, t_eval=ev,
                                        args=(circ0, slope))
        out[sel] = sol.y[5, np.searchsorted(ev, times[sel])]
        y = sol.y[:, -1].copy()
    return out


def patients(n: int, seed: int = 0):
    """(rows: cycle-1 dose and ANC counts with ID, truth {CIRC0, SLOPE, nadir2: true cycle-2
    nadir}, outcome (n,) bool)."""
    rng = np.random.default_rng(seed)
    truth = {k: TYPICAL[k] * np.exp(np.sqrt(OMEGA[k]) * rng.standard_normal(n)) for k in TYPICAL}
    grid = np.linspace(CYCLE + 1e-7, 2 * CYCLE, POINTS)
    anc = np.stack([true_anc(c, s, np.r_[ANC_TIMES, grid]) for c, s in zip(truth["CIRC0"], truth["SLOPE"])])
    counts = anc[:, :ANC_TIMES.size] * (1 + PROP * rng.standard_normal((n, ANC_TIMES.size)))
    truth["nadir2"] = anc[:, ANC_TIMES.size:].min(1)
    outcome = truth["nadir2"] < THRESHOLD
    rows = []
    for i in range(n):
        pid = f"N{i:04d}"
        rows.append(dict(ID=pid, TIME=0.0, AMT=DOSE, EVID=1, DV=np.nan))
        rows += [dict(ID=pid, TIME=t, AMT=0.0, EVID=0, DV=y) for t, y in zip(ANC_TIMES, counts[i])]
    return pd.DataFrame(rows), truth, outcome


def predicted_risks(store, ids, n_draws: int = 500, seed: int = 0) -> np.ndarray:
    """P(ANC < 0.5 over cycle 2) of each twin: a second 1000 mg dose at 504 h, horizon 504 h."""
    return np.array([twins.risk(store, pid, "ANC", below=THRESHOLD, within=CYCLE, regimen=f"{DOSE:g} mg",
                                start=CYCLE, n_draws=n_draws, seed=seed, points=POINTS)["probability"]
                     for pid in ids])


def calibration(n: int, seed: int = 0, n_draws: int = 500, bins: int = 5) -> dict:
    """Twins of ``n`` simulated patients (one fleet update), their predicted risks against the
    simulated outcomes: Brier score, reliability table and Spiegelhalter's z."""
    rows, truth, outcome = patients(n, seed)
    store = Path(tempfile.mkdtemp()) / "twins.zarr"
    twins.update_all(store, rows, prior=PRIOR)
    ids = list(dict.fromkeys(rows["ID"]))
    p = predicted_risks(store, ids, n_draws, seed)
    return {"n": n, "probabilities": p.tolist(), "outcomes": outcome.astype(int).tolist(),
            "true_nadir2": truth["nadir2"].tolist(),
            "event_rate": float(outcome.mean()), "brier": twins.brier_score(p, outcome),
            "brier_climatology": twins.brier_score(np.full(n, outcome.mean()), outcome),
            "spiegelhalter_z": twins.spiegelhalter_z(p, outcome),
            "reliability": twins.reliability_table(p, outcome, bins).to_dict("records")}
