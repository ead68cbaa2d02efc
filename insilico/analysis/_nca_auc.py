"""Trapezoidal areas (AUC, AUMC) and interpolation between samples.

Conventions (Gabrielsson & Weiner, *Pharmacokinetic and Pharmacodynamic Data Analysis*, 4th ed.,
section 2.8; Phoenix WinNonlin user's guide "NCA computation rules"; PKNCA ``pk.calc.auc``):

linear trapezoid, for a segment (t1, C1) -> (t2, C2) with dt = t2 - t1::

    AUC  = dt (C1 + C2) / 2
    AUMC = dt (t1 C1 + t2 C2) / 2

log trapezoid (used when the method asks for it and C1 > 0, C2 > 0, C1 != C2)::

    AUC  = dt (C1 - C2) / ln(C1/C2)
    AUMC = dt (t1 C1 - t2 C2) / ln(C1/C2) + dt^2 (C1 - C2) / ln(C1/C2)^2

which are the exact integrals of C(t) and t·C(t) for the exponential through both points.
The log forms are evaluated as ``AUC = dt C1 h(L)``, ``AUMC = t1 AUC + C1 dt^2 g(L)`` with
``L = ln(C1/C2)``, ``h = -expm1(-L)/L`` and ``g = (1 - e^-L (1 + L))/L^2`` (a series for small
``|L|``), algebraically identical and free of the cancellation the textbook form suffers when
C1 ≈ C2.

Methods
-------
``"linear"``               linear trapezoid everywhere.
``"linear-up/log-down"``   linear when C rises or stays equal, log when it falls and both C > 0
                           (Phoenix "Linear Up Log Down", PKNCA ``"lin up/log down"``; default).
``"lin-log"``              linear up to Tmax, log after Tmax where both C > 0 and C1 != C2
                           (Phoenix "Linear Log", PKNCA ``"lin-log"``).
"""
from __future__ import annotations

import numpy as np

from insilico.errors import SpecError

AUC_METHODS = ("linear", "linear-up/log-down", "lin-log")
_ALIASES = {
    "linear": "linear",
    "lin": "linear",
    "linear-up/log-down": "linear-up/log-down",
    "lin up/log down": "linear-up/log-down",
    "linear up log down": "linear-up/log-down",
    "linlog": "linear-up/log-down",
    "log-down": "linear-up/log-down",
    "lin-log": "lin-log",
    "linear-log": "lin-log",
    "linear log": "lin-log",
}


def resolve_method(method: str) -> str:
    key = str(method).strip().lower()
    if key not in _ALIASES:
        raise SpecError("auc_method", f"unknown AUC method {method!r}; choose one of {AUC_METHODS}")
    return _ALIASES[key]


def use_log(c1, c2, method: str, after_tmax=None) -> np.ndarray:
    """Whether each segment uses the log trapezoid."""
    with np.errstate(invalid="ignore"):
        ok = (c1 > 0) & (c2 > 0) & (c1 != c2)
        if method == "linear":
            return np.zeros(np.shape(ok), dtype=bool)
        if method == "linear-up/log-down":
            return ok & (c2 < c1)
        if after_tmax is None:
            raise ValueError("lin-log needs after_tmax")
        return ok & after_tmax


def _h_small(L):
    # (1 - e^-L) / L = sum_{n>=1} (-1)^(n-1) L^(n-1) / n!
    return 1.0 - L / 2.0 + L**2 / 6.0 - L**3 / 24.0 + L**4 / 120.0 - L**5 / 720.0


def _g_small(L):
    # (1 - e^-L (1 + L)) / L^2 = sum_{n>=2} (-1)^n (n-1) L^(n-2) / n!
    return 0.5 - L / 3.0 + L**2 / 8.0 - L**3 / 30.0 + L**4 / 144.0 - L**5 / 840.0


def segment_areas(t1, t2, c1, c2, log) -> tuple[np.ndarray, np.ndarray]:
    """AUC and AUMC of each segment, log trapezoid where ``log`` else linear (elementwise)."""
    t1, t2, c1, c2, log = np.broadcast_arrays(t1, t2, c1, c2, log)
    dt = t2 - t1
    with np.errstate(all="ignore"):
        auc = dt * (c1 + c2) / 2.0
        aumc = dt * (t1 * c1 + t2 * c2) / 2.0
        if log.any():  # the log forms only where needed (they cost ~10x the linear ones)
            t1l, dtl, c1l = t1[log], dt[log], c1[log]
            L = np.log(c1l / c2[log])
            small = np.abs(L) < 1e-2
            h = np.empty_like(L)
            g = np.empty_like(L)
            h[small], g[small] = _h_small(L[small]), _g_small(L[small])
            Lb = L[~small]
            em = -np.expm1(-Lb)
            h[~small] = em / Lb
            g[~small] = (em - Lb * np.exp(-Lb)) / Lb**2
            log_auc = dtl * c1l * h
            auc[log] = log_auc
            aumc[log] = t1l * log_auc + c1l * dtl * dtl * g
    return auc, aumc


def interpolate(t1, t2, c1, c2, t, log) -> np.ndarray:
    """Concentration at ``t`` in ``[t1, t2]``: log-linear where ``log`` else linear."""
    with np.errstate(all="ignore"):
        f = (t - t1) / (t2 - t1)
        f = np.where(t2 > t1, f, 0.0)
        lin = c1 + (c2 - c1) * f
        lg = np.exp(np.log(np.where(log, c1, 1.0)) + np.log(np.where(log, c2 / np.where(log, c1, 1.0), 1.0)) * f)
    return np.where(log, lg, lin)
