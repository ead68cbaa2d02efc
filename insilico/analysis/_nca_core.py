"""Vectorised NCA computations on normalised rows (see ``_nca_input.to_rows``).

Each function takes time-sorted ``T``, ``C`` of shape ``(n_rows, n_times)`` plus per-row
arrays, and returns ``(columns, flags)``: a dict of 1-D arrays (one value per row) and a dict of
boolean flag arrays. No Python loop over rows.
"""
from __future__ import annotations

import numpy as np

from ._nca_auc import interpolate, segment_areas, use_log
from ._nca_blq import BLQRule, apply_blq
from ._nca_input import last_true, pack, take
from ._nca_lambdaz import NOT_POSITIVE, TOO_FEW_POINTS, fit_lambda_z

LN2 = np.log(2.0)


def _peak(Tp, Cp, Op, *, lowest=False):
    """(value, time, index) of the first max (or min) among observed samples; NaN where none."""
    has = Op.any(axis=1)
    fill = np.inf if lowest else -np.inf
    a = np.where(Op, Cp, fill)
    i = np.argmin(a, axis=1) if lowest else np.argmax(a, axis=1)
    return np.where(has, take(Cp, i), np.nan), np.where(has, take(Tp, i), np.nan), i


def _areas(Tp, Cp, n, method, i_peak_all, upto):
    """Sum of segment AUC/AUMC over segments j -> j+1 with j + 1 <= upto (packed indices)."""
    t1, t2, c1, c2 = Tp[:, :-1], Tp[:, 1:], Cp[:, :-1], Cp[:, 1:]
    j = np.arange(Tp.shape[1] - 1)[None, :]
    after_tmax = j >= i_peak_all[:, None]
    log = use_log(c1, c2, method, after_tmax)
    auc, aumc = segment_areas(t1, t2, c1, c2, log)
    inside = (j + 1 <= upto[:, None]) & (j + 1 < n[:, None])
    return np.where(inside, auc, 0.0).sum(axis=1), np.where(inside, aumc, 0.0).sum(axis=1)


def _duplicates(Tp, n):
    j = np.arange(Tp.shape[1] - 1)[None, :]
    return ((np.diff(Tp, axis=1) == 0) & (j + 1 < n[:, None])).any(axis=1)


def _lambda_z_columns(fit):
    with np.errstate(all="ignore"):
        half_life = LN2 / fit.lambda_z
        span = (fit.t_last - fit.t_first) / half_life
    return {
        "lambda_z": fit.lambda_z,
        "lambda_z_intercept": fit.intercept,
        "lambda_z_n_points": fit.n_points,
        "lambda_z_t_first": fit.t_first,
        "lambda_z_t_last": fit.t_last,
        "r_squared": fit.r_squared,
        "adj_r_squared": fit.adj_r_squared,
        "span_ratio": span,
        "half_life": half_life,
    }


def single_dose(
    T, C, *, dose, lloq, dose_time, duration, route, method, rule: BLQRule,
    min_points, adj_r2_tol, n_points, allow_tmax, min_span_ratio, max_auc_extrap_pct,
):
    n_rows = T.shape[0]
    C, n_blq = apply_blq(C, lloq, rule)
    T = T - dose_time[:, None]
    with np.errstate(invalid="ignore"):
        C = np.where(T >= 0, C, np.nan)  # pre-dose samples are not part of a single-dose profile
    valid = np.isfinite(C)
    at0 = valid & (T == 0)
    if route == "iv-bolus":
        with np.errstate(invalid="ignore"):
            bad0 = at0 & ~(C > 0)  # a zero at dose time of a bolus is a pre-dose value: re-estimate C0
        C = np.where(bad0, np.nan, C)
        valid &= ~bad0
        at0 &= ~bad0
    n_obs = valid.sum(axis=1)
    has0 = at0.any(axis=1)
    c0_obs = np.where(has0, take(np.where(at0, C, np.nan), np.argmax(at0, axis=1)), np.nan)

    c0_first_observed = np.zeros(n_rows, dtype=bool)
    if route == "iv-bolus":
        with np.errstate(invalid="ignore"):
            after = valid & (T > 0)
        pad = np.full((n_rows, 1), np.nan)
        k, Ta, Ca = pack(np.concatenate([after, pad > 0], axis=1), np.concatenate([T, pad], axis=1),
                         np.concatenate([C, pad], axis=1))
        t1, t2, c1, c2 = Ta[:, 0], Ta[:, 1], Ca[:, 0], Ca[:, 1]
        with np.errstate(all="ignore"):
            decl = (k >= 2) & (c1 > 0) & (c2 > 0) & (c2 < c1)
            back = np.exp(np.log(c1) + (np.log(c1) - np.log(c2)) / (t2 - t1) * t1)
            pos = Ca > 0
        ipos, anypos = np.argmax(pos, axis=1), pos.any(axis=1)
        first_pos = np.where(anypos, take(Ca, ipos), 0.0)
        c0_est = np.where(decl, back, first_pos)
        c0_first_observed = ~has0 & ~decl & anypos
    else:
        c0_est = np.zeros(n_rows)
    insert = ~has0 & (n_obs > 0)
    c0 = np.where(has0, c0_obs, np.where(insert, c0_est, np.nan))

    T_ext = np.concatenate([np.zeros((n_rows, 1)), T], axis=1)
    C_ext = np.concatenate([np.where(insert, c0_est, np.nan)[:, None], C], axis=1)
    O_ext = np.concatenate([np.zeros((n_rows, 1), dtype=bool), valid], axis=1)
    n, Tp, Cp, Op = pack(np.isfinite(C_ext), T_ext, C_ext, O_ext)

    has_data = n_obs > 0
    cmax, tmax, _ = _peak(Tp, Cp, Op)
    with np.errstate(invalid="ignore"):
        pos_obs = Op & (Cp > 0)
    ilast, has_pos = last_true(pos_obs)
    tmax = np.where(has_pos, tmax, np.nan)
    clast = np.where(has_pos, take(Cp, ilast), np.nan)
    tlast = np.where(has_pos, take(Tp, ilast), np.nan)

    i_peak_all = np.argmax(np.where(np.isfinite(Cp), Cp, -np.inf), axis=1)
    auclast, aumclast = _areas(Tp, Cp, n, method, i_peak_all, np.where(has_pos, ilast, 0))
    auclast = np.where(has_data, auclast, np.nan)
    aumclast = np.where(has_data, aumclast, np.nan)

    with np.errstate(invalid="ignore"):
        after_peak = (Tp >= tmax[:, None]) if allow_tmax else (Tp > tmax[:, None])
        eligible = pos_obs & after_peak
        if route == "iv-infusion":
            eligible &= Tp > duration[:, None]
    fit = fit_lambda_z(Tp, Cp, eligible, min_points=min_points, adj_r2_tol=adj_r2_tol, n_points=n_points)
    lam = fit.lambda_z
    cols_lz = _lambda_z_columns(fit)

    sub = duration / 2.0 if route == "iv-infusion" else np.zeros(n_rows)
    with np.errstate(all="ignore"):
        clast_pred = np.exp(fit.ln_pred(tlast))
        out = {"n_obs": n_obs, "n_blq": n_blq, "c0": c0, "cmax": cmax, "tmax": tmax, "clast": clast,
               "tlast": tlast, "auclast": auclast, "aumclast": aumclast, **cols_lz, "clast_pred": clast_pred}
        for kind, cl in (("obs", clast), ("pred", clast_pred)):
            aucinf = auclast + cl / lam
            aumcinf = aumclast + cl * tlast / lam + cl / lam**2
            out[f"aucinf_{kind}"] = aucinf
            out[f"aumcinf_{kind}"] = aumcinf
            out[f"auc_pct_extrap_{kind}"] = 100.0 * (aucinf - auclast) / aucinf
        out["mrt_last"] = aumclast / auclast - sub
        for kind in ("obs", "pred"):
            out[f"mrtinf_{kind}"] = out[f"aumcinf_{kind}"] / out[f"aucinf_{kind}"] - sub
        for kind in ("obs", "pred"):
            cl_ = dose / out[f"aucinf_{kind}"]
            out[f"cl_{kind}"] = cl_
            out[f"vz_{kind}"] = dose / (lam * out[f"aucinf_{kind}"])
            out[f"vss_{kind}"] = cl_ * out[f"mrtinf_{kind}"] if route != "extravascular" else np.full(n_rows, np.nan)
    if not has_data.all():
        for k_, v in out.items():
            if v.dtype.kind == "f":
                out[k_] = np.where(has_data, v, np.nan)

    estimated = fit.status == 0
    with np.errstate(invalid="ignore"):
        flags = {
            "no_data": ~has_data,
            "no_positive_conc": has_data & ~has_pos,
            "lambda_z_too_few_points": has_pos & (fit.status == TOO_FEW_POINTS),
            "lambda_z_not_positive": has_pos & (fit.status == NOT_POSITIVE),
            "no_dose": has_data & ~np.isfinite(dose),
            "c0_first_observed": c0_first_observed,
            "duplicate_time": _duplicates(Tp, n),
            "span_ratio_low": estimated & (cols_lz["span_ratio"] < min_span_ratio),
            "auc_extrap_high": estimated & (out["auc_pct_extrap_obs"] > max_auc_extrap_pct),
        }
    return out, flags


def _value_at(Tp, Cp, n, target, method):
    """C at ``target`` per row: the sample there, else interpolated; also (exact, interpolated) masks."""
    m = Tp.shape[1]
    with np.errstate(invalid="ignore"):
        le = Tp <= target[:, None]
        eq = Tp == target[:, None]
    exact = eq.any(axis=1)
    i_eq = np.argmax(eq, axis=1)
    j = le.sum(axis=1) - 1
    inside = ~exact & (j >= 0) & (j + 1 < n)
    jj = np.clip(j, 0, m - 1)
    j2 = np.clip(j + 1, 0, m - 1)
    t1, t2, c1, c2 = take(Tp, jj), take(Tp, j2), take(Cp, jj), take(Cp, j2)
    log = use_log(c1, c2, "linear-up/log-down" if method != "linear" else "linear")
    val = np.where(exact, take(Cp, i_eq), np.where(inside, interpolate(t1, t2, c1, c2, target, log), np.nan))
    return val, exact, inside


def steady_state(
    T, C, *, tau, start, dose, lloq, method, rule: BLQRule,
    min_points, adj_r2_tol, n_points, allow_tmax, min_span_ratio,
):
    n_rows = T.shape[0]
    C, n_blq = apply_blq(C, lloq, rule)
    X = T - start[:, None]
    n_all, Xp, Cp_all = pack(np.isfinite(C), X, C)
    c_start, _, in0 = _value_at(Xp, Cp_all, n_all, np.zeros(n_rows), method)
    c_end, _, in1 = _value_at(Xp, Cp_all, n_all, tau, method)
    with np.errstate(invalid="ignore"):
        win = np.isfinite(C) & (X >= 0) & (X <= tau[:, None])
    T_ext = np.concatenate([np.zeros((n_rows, 1)), X, tau[:, None]], axis=1)
    C_ext = np.concatenate([np.where(in0, c_start, np.nan)[:, None], np.where(win, C, np.nan),
                            np.where(in1, c_end, np.nan)[:, None]], axis=1)
    O_ext = np.concatenate([np.zeros((n_rows, 1), dtype=bool), win, np.zeros((n_rows, 1), dtype=bool)], axis=1)
    n, Tp, Cp, Op = pack(np.isfinite(C_ext), T_ext, C_ext, O_ext)

    n_obs = Op.sum(axis=1)
    has_data = n_obs > 0
    cmax, tmax, _ = _peak(Tp, Cp, Op)
    cmin, tmin, _ = _peak(Tp, Cp, Op, lowest=True)
    covered = np.isfinite(c_start) & np.isfinite(c_end)
    i_peak_all = np.argmax(np.where(np.isfinite(Cp), Cp, -np.inf), axis=1)
    auctau, _ = _areas(Tp, Cp, n, method, i_peak_all, n - 1)
    auctau = np.where(covered, auctau, np.nan)

    with np.errstate(invalid="ignore"):
        pos_obs = Op & (Cp > 0)
        after_peak = (Tp >= tmax[:, None]) if allow_tmax else (Tp > tmax[:, None])
    fit = fit_lambda_z(Tp, Cp, pos_obs & after_peak, min_points=min_points, adj_r2_tol=adj_r2_tol,
                       n_points=n_points)
    cols_lz = _lambda_z_columns(fit)
    with np.errstate(all="ignore"):
        cavg = auctau / tau
        out = {
            "n_obs": n_obs, "n_blq": n_blq, "c0": c_start, "ctau": c_end, "cmax": cmax, "tmax": tmax,
            "cmin": cmin, "tmin": tmin, "auctau": auctau, "cavg": cavg,
            "fluctuation_pct": 100.0 * (cmax - cmin) / cavg,
            "swing_pct": np.where(cmin > 0, 100.0 * (cmax - cmin) / cmin, np.nan),
            "cl_ss": dose / auctau,
            **cols_lz,
            "vz_ss": dose / (fit.lambda_z * auctau),
        }
    has_pos = pos_obs.any(axis=1)
    with np.errstate(invalid="ignore"):
        flags = {
            "no_data": ~has_data,
            "no_positive_conc": has_data & ~has_pos,
            "lambda_z_too_few_points": has_pos & (fit.status == TOO_FEW_POINTS),
            "lambda_z_not_positive": has_pos & (fit.status == NOT_POSITIVE),
            "no_dose": has_data & ~np.isfinite(dose),
            "duplicate_time": _duplicates(Tp, n),
            "span_ratio_low": (fit.status == 0) & (cols_lz["span_ratio"] < min_span_ratio),
            "interval_start_missing": has_data & ~np.isfinite(c_start),
            "interval_end_missing": has_data & ~np.isfinite(c_end),
            "interval_start_interpolated": in0,
            "interval_end_interpolated": in1,
        }
    return out, flags
