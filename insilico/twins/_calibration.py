"""Calibration of predicted event probabilities (early warning) against observed outcomes.

* Brier score: ``mean((p - o)^2)`` (Brier 1950, Mon Weather Rev 78:1); 0 is perfect, and a
  forecaster that always says the event rate scores ``rate (1 - rate)`` (climatology).
* Reliability table (the data of a reliability diagram): predictions binned into ``bins``
  equal-width bins on [0, 1] (the last bin closed); per bin the number of cases, the mean
  predicted probability, the observed frequency and its Wilson 95 % interval.
* Spiegelhalter's z (Spiegelhalter 1986, Stat Med 5:421):
  ``z = sum (o - p)(1 - 2p) / sqrt(sum (1 - 2p)^2 p (1 - p))``, standard normal when the
  probabilities are calibrated (outcomes independent Bernoulli(p)).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from insilico.errors import SpecError

__all__ = ["brier_score", "reliability_table", "spiegelhalter_z"]

WILSON_Z = 1.959963984540054     # 95 % two-sided


def _checked(p, outcome) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, float).reshape(-1)
    o = np.asarray(outcome, float).reshape(-1)
    if p.size == 0 or p.size != o.size:
        raise SpecError("probabilities", f"need one outcome per probability ({p.size} probabilities, {o.size} "
                                         "outcomes), at least one")
    if not np.all((p >= 0) & (p <= 1)):
        raise SpecError("probabilities", "probabilities must lie in [0, 1]")
    if not np.all((o == 0) | (o == 1)):
        raise SpecError("outcomes", "outcomes must be 0/1 (or booleans)")
    return p, o


def brier_score(p, outcome) -> float:
    """Mean squared difference between probabilities ``p`` and 0/1 ``outcome`` (module docstring)."""
    p, o = _checked(p, outcome)
    return float(np.mean((p - o) ** 2))


def spiegelhalter_z(p, outcome) -> float:
    """Spiegelhalter's calibration z statistic (module docstring); NaN when every p is 0, 1/2 or 1."""
    p, o = _checked(p, outcome)
    var = np.sum((1 - 2 * p) ** 2 * p * (1 - p))
    return float(np.sum((o - p) * (1 - 2 * p)) / np.sqrt(var)) if var > 0 else float("nan")


def _wilson(k: float, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    f, z2 = k / n, WILSON_Z ** 2
    centre = (f + z2 / (2 * n)) / (1 + z2 / n)
    half = WILSON_Z * np.sqrt(f * (1 - f) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def reliability_table(p, outcome, bins: int = 5) -> pd.DataFrame:
    """One row per probability bin: ``bin_low``, ``bin_high``, ``n``, ``predicted`` (mean p),
    ``observed`` (event frequency), ``lower``/``upper`` (its Wilson 95 % interval); empty bins
    have n = 0 and NaN."""
    p, o = _checked(p, outcome)
    if int(bins) < 1:
        raise SpecError("bins", "need at least one bin")
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, int(bins) - 1)
    rows = []
    for b in range(int(bins)):
        sel = which == b
        n, k = int(sel.sum()), float(o[sel].sum())
        lo, hi = _wilson(k, n)
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "n": n,
                     "predicted": float(p[sel].mean()) if n else float("nan"),
                     "observed": k / n if n else float("nan"), "lower": lo, "upper": hi})
    return pd.DataFrame(rows)
