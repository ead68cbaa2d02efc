"""Priors, patients and an independent NumPy reference of the twin posterior (1-cmt IV bolus:
C(t) = sum_i D_i / V exp(-CL / V (t - t_i)) over doses before t)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

CL_TV, V_TV, WT, OMEGA2, PROP = 4.0, 30.0, 80.0, 0.2, 0.15

PRIOR = {"model": {"name": "1cmt_iv"},
         "parameters": {"CL": {"typical": CL_TV, "effects": [{"covariate": "WT", "type": "power", "ref": 70,
                                                               "theta": 0.75}]},
                        "V": {"typical": V_TV}},
         "bsv": {"parameters": ["CL"], "variance": [OMEGA2]},
         "residual_error": {"type": "proportional", "proportional": PROP}}

PRIOR2 = {"model": {"name": "1cmt_iv"},
          "parameters": {"CL": {"typical": CL_TV}, "V": {"typical": V_TV}},
          "bsv": {"parameters": ["CL", "V"], "variance": [0.2, 0.1]},
          "residual_error": {"type": "combined", "proportional": 0.1, "additive": 0.5}}


def cl_typical(wt: float = WT) -> float:
    return CL_TV * (wt / 70.0) ** 0.75


def conc(t, cl, v, dose_times, dose_amts):
    """Concentration (mg/L) at times ``t`` (an observation at a dose time is pre-dose); the
    result has shape ``broadcast(cl, v).shape + t.shape``."""
    t = np.asarray(t, float)
    cl, v = np.broadcast_arrays(np.asarray(cl, float), np.asarray(v, float))
    extra = (1,) * (t.ndim + 1)
    cl, v = cl.reshape(cl.shape + extra), v.reshape(v.shape + extra)
    dt = t[..., None] - np.asarray(dose_times, float)
    after = dt > 0
    return np.sum(np.where(after, np.asarray(dose_amts) / v * np.exp(-cl / v * np.where(after, dt, 0.0)), 0.0), -1)


def fd_hessian(fun, x, h=1e-4):
    """Central-difference Hessian of ``fun`` at ``x`` (step ``h``): the twins' Laplace references."""
    x = np.atleast_1d(np.asarray(x, float))
    k = x.size
    out = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            out[i, j] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (4 * h * h)
    return out


def rows(doses, levels) -> pd.DataFrame:
    """NONMEM rows: doses [(time, amt)], levels [(time, dv)]."""
    r = [dict(TIME=t, AMT=a, EVID=1, DV=".") for t, a in doses] + [dict(TIME=t, AMT=0, EVID=0, DV=y) for t, y in levels]
    return pd.DataFrame(r)


DOSES = [(0.0, 500.0), (12.0, 500.0)]
LEVELS = [(11.5, 3.1), (14.0, 16.0)]


@pytest.fixture
def store(tmp_path):
    return tmp_path / "twins.zarr"
