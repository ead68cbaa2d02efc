"""Terminal-phase rate constant λz by log-linear regression with automatic point selection.

Selection rule ("best fit", Phoenix WinNonlin; PKNCA ``pk.calc.half.life``; Gabrielsson &
Weiner 4th ed. section 2.8.4):

1. eligible points: positive concentrations strictly after Tmax (at or after Tmax when
   ``allow_tmax``), and after the end of an infusion;
2. regress ``ln C`` on ``t`` over the last 3, 4, ..., all eligible points (ordinary least squares);
3. keep fits with ``λz = -slope > 0`` and at least ``min_points`` points;
4. among those, take the best adjusted R², ``adj R² = 1 - (1 - R²)(n - 1)/(n - 2)``;
5. every kept fit whose adjusted R² is greater than ``best - adj_r2_tol`` (1e-4) qualifies, and
   the qualifying fit with the most points wins.

Difference from PKNCA worth knowing: PKNCA takes the best adjusted R² over *all* fits, including
those with λz <= 0, so a rising tail that fits better than every falling one leaves λz missing.
Here the best is taken over fits with λz > 0 (Phoenix: "λz must be positive"). The two agree
whenever the best-fitting regression has λz > 0, i.e. on any profile with a terminal decline.

With ``n_points`` given, exactly the last ``n_points`` eligible points are used (no selection).

All fits for all subjects are obtained at once from cumulative sums over the eligible points
taken from the last one backwards, so the cost is O(subjects × samples) with no Python loop.
Times and log concentrations are shifted by the last eligible point before summing to avoid
cancellation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._nca_input import take

OK, TOO_FEW_POINTS, NOT_POSITIVE = 0, 1, 2


@dataclass
class LambdaZFit:
    lambda_z: np.ndarray  # 1/time
    intercept: np.ndarray  # ln-concentration at time 0 of the row's time axis
    n_points: np.ndarray  # int, 0 when not estimated
    r_squared: np.ndarray
    adj_r_squared: np.ndarray
    t_first: np.ndarray
    t_last: np.ndarray
    status: np.ndarray  # OK / TOO_FEW_POINTS / NOT_POSITIVE
    ln_at_last: np.ndarray  # fitted ln C at t_last

    def ln_pred(self, t: np.ndarray) -> np.ndarray:
        """Fitted ln C at ``t`` (NaN where no fit)."""
        return self.ln_at_last - self.lambda_z * (t - self.t_last)


def fit_lambda_z(
    T: np.ndarray,
    C: np.ndarray,
    eligible: np.ndarray,
    *,
    min_points: int = 3,
    adj_r2_tol: float = 1e-4,
    n_points: int | None = None,
) -> LambdaZFit:
    """Best-fit terminal regression for every row of time-sorted ``T``, ``C`` (see module docs)."""
    n_s, m = T.shape
    order = np.argsort(eligible, axis=1, kind="stable")[:, ::-1]  # eligible first, latest first
    x = np.take_along_axis(T, order, 1)
    c = np.take_along_axis(C, order, 1)
    k = eligible.sum(axis=1)
    valid = np.arange(m)[None, :] < k[:, None]
    with np.errstate(all="ignore"):
        y = np.where(valid, np.log(np.where(valid, c, 1.0)), 0.0)
        x0, y0 = x[:, :1], y[:, :1]
        X = np.where(valid, x - x0, 0.0)
        Y = np.where(valid, y - y0, 0.0)
        n = np.arange(1, m + 1, dtype=float)[None, :]
        Sx, Sy = np.cumsum(X, 1), np.cumsum(Y, 1)
        Sxx, Sxy, Syy = np.cumsum(X * X, 1), np.cumsum(X * Y, 1), np.cumsum(Y * Y, 1)
        mx, my = Sx / n, Sy / n
        sxx = Sxx - Sx * mx
        sxy = Sxy - Sx * my
        syy = Syy - Sy * my
        slope = sxy / sxx
        lam = -slope
        r2 = np.minimum(sxy * sxy / (sxx * syy), 1.0)
        adj = np.where(n > 2, 1.0 - (1.0 - r2) * (n - 1.0) / (n - 2.0), np.nan)
        ln_last = my - slope * mx  # fitted ln C - y0 at the last eligible time (X = 0)
    usable = valid & (sxx > 0) & np.isfinite(lam) & (lam > 0)
    if n_points is None:
        cand = usable & (n >= min_points)
        score = np.where(cand, adj, -np.inf)
        best = score.max(axis=1, keepdims=True)
        ok = cand & (score > best - adj_r2_tol)
        required = min_points
    else:
        ok = usable & (n == n_points)
        required = n_points
    idx = m - 1 - np.argmax(ok[:, ::-1], axis=1)
    has = ok.any(axis=1)

    def pick(a):
        return np.where(has, take(a, idx), np.nan)

    lam_s = pick(np.broadcast_to(lam, (n_s, m)))
    t_last = np.where(has, x0[:, 0], np.nan)
    ln_at_last = pick(ln_last) + y0[:, 0]
    fit = LambdaZFit(
        lambda_z=lam_s,
        intercept=ln_at_last + lam_s * t_last,
        n_points=np.where(has, idx + 1, 0).astype(np.int64),
        r_squared=pick(r2),
        adj_r_squared=pick(np.broadcast_to(adj, (n_s, m))),
        t_first=pick(x),
        t_last=t_last,
        status=np.where(has, OK, np.where(k < required, TOO_FEW_POINTS, NOT_POSITIVE)).astype(np.int8),
        ln_at_last=ln_at_last,
    )
    return fit
