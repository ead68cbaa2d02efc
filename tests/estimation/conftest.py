"""Simulated NONMEM-format data sets with known truth for estimation tests."""
from __future__ import annotations

import numpy as np
import pandas as pd

from insilico.dosing import Dose, Regimen
from insilico.engine import simulate

ORAL_TRUTH = {"CL": 3.0, "V": 30.0, "KA": 1.2, "omega": (0.09, 0.04, 0.16), "prop": 0.1}
ORAL_TIMES = np.array([0.5, 1, 2, 4, 6, 8, 12, 24.0])

ORAL_MODEL = """
model: {name: 1cmt_oral}
parameters:
  CL: {typical: 2.0, effects: [{covariate: WT, type: power, ref: 70, theta: 0.75}]}
  V: {typical: 20}
  KA: {typical: 1.0}
bsv: {parameters: [CL, V, KA], variance: [0.2, 0.2, 0.2]}
residual_error: {type: proportional, proportional: 0.2}
estimate: {fix: [CL.WT]}
"""


def oral_data(n: int = 60, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """1-cmt oral, 100 mg at t = 0, 8 samples per subject, proportional error 10 %, allometric
    CL. Returns the data set and the true etas (n, 3)."""
    t = ORAL_TRUTH
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=(n, 3)) * np.sqrt(np.asarray(t["omega"]))
    wt = rng.uniform(50, 100, n)
    p = {"CL": t["CL"] * (wt / 70) ** 0.75 * np.exp(eta[:, 0]), "V": t["V"] * np.exp(eta[:, 1]),
         "KA": t["KA"] * np.exp(eta[:, 2])}
    f = simulate("1cmt_oral", p, Regimen((Dose(amt=100.0),)), ORAL_TIMES)["conc"].values
    y = f * (1 + t["prop"] * rng.normal(size=f.shape))
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=100.0, EVID=1, DV=".", WT=wt[i], CMT=1))
        rows += [dict(ID=i + 1, TIME=tt, AMT=0.0, EVID=0, DV=v, WT=wt[i], CMT=2) for tt, v in zip(ORAL_TIMES, y[i])]
    return pd.DataFrame(rows), eta
