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


PKPD_TRUTH = {"CL": 2.0, "V": 20.0, "E0": 10.0, "EMAX": 50.0, "EC50": 2.0, "omega": (0.09, 0.16),
              "prop": 0.1, "add": 2.0}
PKPD_TIMES = np.array([0.5, 1, 2, 4, 8, 12, 24.0])

PKPD_MODEL = """
model: {name: 1cmt_iv+emax}
output: conc
outputs: {1: conc, 2: effect}
parameters: {CL: {typical: 1.5}, V: {typical: 25}, E0: {typical: 8}, EMAX: {typical: 40}, EC50: {typical: 3}}
bsv: {parameters: [CL, EC50], variance: [0.2, 0.2]}
residual_error: {type: proportional, proportional: 0.2}
residual_errors: {effect: {type: additive, additive: 3.0}}
"""


def pkpd_data(n: int = 30, seed: int = 4) -> pd.DataFrame:
    """1-cmt IV bolus 100 mg + direct Emax effect; concentration (DVID 1, proportional error 10 %)
    and effect (DVID 2, additive SD 2) observed at the same 7 times."""
    t = PKPD_TRUTH
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=(n, 2)) * np.sqrt(np.asarray(t["omega"]))
    p = {"CL": t["CL"] * np.exp(eta[:, 0]), "V": np.full(n, t["V"]), "E0": np.full(n, t["E0"]),
         "EMAX": np.full(n, t["EMAX"]), "EC50": t["EC50"] * np.exp(eta[:, 1])}
    sim = simulate("1cmt_iv+emax", p, Regimen((Dose(amt=100.0),)), PKPD_TIMES)
    conc = sim["conc"].values * (1 + t["prop"] * rng.normal(size=(n, PKPD_TIMES.size)))
    effect = sim["effect"].values + t["add"] * rng.normal(size=(n, PKPD_TIMES.size))
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=100.0, EVID=1, DV=".", DVID=0))
        for j, tt in enumerate(PKPD_TIMES):
            rows += [dict(ID=i + 1, TIME=tt, AMT=0.0, EVID=0, DV=conc[i, j], DVID=1),
                     dict(ID=i + 1, TIME=tt, AMT=0.0, EVID=0, DV=effect[i, j], DVID=2)]
    return pd.DataFrame(rows)


INFUSION_TRUTH = {"CL": 4.0, "V1": 15.0, "Q": 6.0, "V2": 40.0, "CL.WT": 0.75, "omega": (0.09, 0.09), "prop": 0.1}
INFUSION_TIMES = np.array([0.5, 1, 1.5, 2, 4, 6, 8, 12, 24.0])

INFUSION_MODEL = """
model: {name: 2cmt_iv}
parameters:
  CL: {typical: 3.0, effects: [{covariate: WT, type: power, ref: 70, theta: 0.5}]}
  V1: {typical: 20}
  Q: {typical: 5}
  V2: {typical: 30}
bsv: {parameters: [CL, V1], variance: [0.2, 0.2]}
residual_error: {type: proportional, proportional: 0.2}
"""


def infusion_data(n: int = 40, seed: int = 6) -> pd.DataFrame:
    """2-cmt IV, 200 mg infused over 1 h (RATE 200 mg/h), 9 samples, CL = 4 (WT/70)^0.75 exp(eta),
    WT uniform 40-120 kg, proportional error 10 %."""
    t = INFUSION_TRUTH
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=(n, 2)) * np.sqrt(np.asarray(t["omega"]))
    wt = rng.uniform(40, 120, n)
    p = {"CL": t["CL"] * (wt / 70) ** t["CL.WT"] * np.exp(eta[:, 0]), "V1": t["V1"] * np.exp(eta[:, 1]),
         "Q": np.full(n, t["Q"]), "V2": np.full(n, t["V2"])}
    f = simulate("2cmt_iv", p, Regimen((Dose(amt=200.0, rate=200.0),)), INFUSION_TIMES)["conc"].values
    y = f * (1 + t["prop"] * rng.normal(size=f.shape))
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=200.0, RATE=200.0, EVID=1, DV=".", WT=wt[i]))
        rows += [dict(ID=i + 1, TIME=tt, AMT=0.0, RATE=0.0, EVID=0, DV=v, WT=wt[i])
                 for tt, v in zip(INFUSION_TIMES, y[i])]
    return pd.DataFrame(rows)


IV_TRUTH = {"CL": 2.0, "V": 20.0, "omega": 0.09, "prop": 0.15}
IV_TIMES = np.array([0.5, 1, 2, 4, 8, 12, 18, 24.0])

IV_MODEL = """
model: {name: 1cmt_iv}
parameters: {CL: {typical: 1.5}, V: {typical: 25}}
bsv: {parameters: [CL], variance: [0.2]}
residual_error: {type: proportional, proportional: 0.2}
"""


def blq_data(n: int = 40, seed: int = 3, fraction: float = 0.3) -> pd.DataFrame:
    """1-cmt IV bolus 100 mg, 8 samples, proportional error 15 %; the LLOQ is the ``fraction``
    quantile of the observations, and records below it are reported as BLQ = 1 with DV = LLOQ / 2
    (the value is not used: a BLQ record is censored at its LLOQ)."""
    t = IV_TRUTH
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=n) * np.sqrt(t["omega"])
    p = {"CL": t["CL"] * np.exp(eta), "V": np.full(n, t["V"])}
    f = simulate("1cmt_iv", p, Regimen((Dose(amt=100.0),)), IV_TIMES)["conc"].values
    y = f * (1 + t["prop"] * rng.normal(size=f.shape))
    lloq = float(np.quantile(y, fraction))
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=100.0, EVID=1, DV=".", BLQ=0, LLOQ=lloq))
        rows += [dict(ID=i + 1, TIME=tt, AMT=0.0, EVID=0, DV=v if v >= lloq else lloq / 2, BLQ=int(v < lloq), LLOQ=lloq)
                 for tt, v in zip(IV_TIMES, y[i])]
    return pd.DataFrame(rows)
