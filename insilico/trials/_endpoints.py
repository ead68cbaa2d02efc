"""Per-subject endpoints computed from the dense model solution.

The engine is evaluated on a grid that contains a regular step (``execution.grid_step``), the
nominal sampling times, every endpoint time and window edge, and each dose time plus 1e-9 h
(so the post-dose value of a bolus is on the grid while the value *at* the dose time stays the
pre-dose trough). Cmax/Tmax/Cmin are taken on that grid; AUC uses the linear-up/log-down
trapezoid (exact for mono-exponential decay, second order elsewhere); time above/below a
threshold interpolates the crossing times linearly. Endpoints whose time range reaches past a
subject's dropout are missing (NaN).
"""
from __future__ import annotations

import numpy as np

POST_DOSE = 1e-9


def endpoint_grid(spec, dose_times: np.ndarray, nominal: np.ndarray) -> np.ndarray:
    """Sorted unique grid times (h) for the endpoint solution of one arm."""
    t_end = max([float(nominal.max())] + [e.window[1] for e in spec.endpoints if e.window]
                + [e.at for e in spec.endpoints if e.at is not None])
    pts = [np.arange(0.0, t_end + 1e-12, spec.execution.grid_step), nominal, [0.0, t_end]]
    for e in spec.endpoints:
        if e.window:
            pts.append(list(e.window))
        if e.at is not None:
            pts.append([e.at])
    dt = dose_times[dose_times <= t_end]
    pts += [dt, dt + POST_DOSE]
    return np.unique(np.concatenate([np.asarray(p, float) for p in pts]))


def _window(grid, w):
    return (grid >= w[0] - 1e-12) & (grid <= w[1] + 1e-12)


def auc_lin_log(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Linear-up/log-down AUC along the last axis (NaN-free input)."""
    dt = np.diff(t)
    c1, c2 = c[..., :-1], c[..., 1:]
    lin = 0.5 * (c1 + c2) * dt
    down = (c2 < c1) & (c2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log = (c1 - c2) * dt / np.log(c1 / c2)
    return np.sum(np.where(down, log, lin), axis=-1)


def _time_where(t, c, thr, above: bool):
    """Time (h) with c above (or below) thr, linear interpolation of crossings."""
    d = (c - thr) if above else (thr - c)
    d1, d2 = d[..., :-1], d[..., 1:]
    dt = np.diff(t)
    both = (d1 >= 0) & (d2 >= 0)
    cross = (d1 >= 0) != (d2 >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(d1 >= 0, d1 / (d1 - d2), d2 / (d2 - d1))
    return np.sum(np.where(both, dt, np.where(cross, frac * dt, 0.0)), axis=-1)


def compute_endpoints(spec, grid: np.ndarray, outputs: dict[str, np.ndarray], arm_dose_times: np.ndarray,
                      dropout: np.ndarray) -> dict[str, np.ndarray]:
    """Endpoint values (n,) for every endpoint in the spec; NaN when not observable."""
    res: dict[str, np.ndarray] = {}
    n = dropout.shape[0]
    for e in spec.endpoints:
        if e.type == "responder":
            base = res[e.of]
            val = np.where(np.isnan(base), np.nan,
                           (base > e.threshold if e.direction == "above" else base < e.threshold).astype(float))
            res[e.name] = val
            continue
        y = outputs[e.output]
        last_time = None
        if e.type in ("cmax", "tmax", "cmin", "auc", "time_above", "time_below", "fraction_above",
                      "fraction_in_window"):
            w = _window(grid, e.window)
            tw, yw = grid[w], y[:, w]
            last_time = e.window[1]
            if e.type == "cmax":
                val = yw.max(axis=1)
            elif e.type == "cmin":
                val = yw.min(axis=1)
            elif e.type == "tmax":
                val = tw[yw.argmax(axis=1)]
            elif e.type == "auc":
                val = auc_lin_log(tw, yw)
            elif e.type == "time_above":
                val = _time_where(tw, yw, e.threshold, True)
            elif e.type == "time_below":
                val = _time_where(tw, yw, e.threshold, False)
            elif e.type == "fraction_above":
                val = _time_where(tw, yw, e.threshold, True) / (e.window[1] - e.window[0])
            else:
                inside = (_time_where(tw, yw, e.low, True) + _time_where(tw, yw, e.high, False)
                          - (tw[-1] - tw[0]))
                val = np.clip(inside, 0.0, None) / (e.window[1] - e.window[0])
        else:
            if e.type == "trough":
                at = e.at if e.at is not None else (arm_dose_times[e.dose] if e.dose < len(arm_dose_times)
                                                     else np.nan)
            else:
                at = e.at
            if np.isnan(at):
                res[e.name] = np.full(n, np.nan)
                continue
            j = int(np.argmin(np.abs(grid - at)))
            val = y[:, j]
            if e.type == "change_from_baseline":
                val = val - y[:, 0]
            last_time = at
        res[e.name] = np.where(dropout > last_time, val, np.nan)
    return res
