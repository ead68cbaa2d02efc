"""Non-compartmental analysis (NCA) of sampled concentration-time profiles.

Public functions
----------------
:func:`nca`            single-dose parameters per subject (Cmax ... AUCinf, λz, t½, MRT, CL/F, Vz/F).
:func:`nca_ss`         dosing-interval parameters at steady state (AUCtau, Cmin, Cavg, fluctuation).
:func:`auc`, :func:`aumc`  area (first moment) under a profile by a chosen trapezoid rule.
:func:`parameter_table`    names, units and descriptions of the output columns.

Everything is vectorised over subjects (no Python loop per subject), so a population of 10^5
simulated profiles is analysed in one call. A subject whose parameters cannot be estimated gets
NaN and a flag (column ``nca_flags``, codes in :data:`FLAGS`); only malformed *input* (shapes, unknown
options) raises :class:`~insilico.errors.SpecError`.

Inputs and outputs
------------------
``conc`` may be 1-D (one subject), 2-D ``(subjects, times)`` with a shared 1-D ``time`` or a 2-D
``time`` of the same shape, or a list of per-subject arrays with a list of per-subject times
(ragged). Missing samples are NaN. The result is a :class:`pandas.DataFrame`, one row per subject
(index ``subject``), with ``df.attrs["units"]`` and ``df.attrs["long_name"]`` describing every
column. If ``conc`` is an :class:`xarray.DataArray` with a ``time`` dimension (e.g. dims
``(subject, time)``, or ``(replicate, arm, subject, time)`` straight from a results store) the
result is an :class:`xarray.Dataset` over the remaining dimensions whose variables carry ``units``
and ``long_name`` attributes; the time values come from the ``time`` coordinate.

Default units are the project's (time h, concentration mg/L, dose mg), giving AUC in mg*h/L,
λz in 1/h, CL in L/h and V in L. Other units may be named (``time_unit=...``); they only label the
output, no conversion is made, so the inputs must be mutually consistent.

Conventions (Gabrielsson & Weiner, *Pharmacokinetic and Pharmacodynamic Data Analysis: Concepts
and Applications*, 4th ed., 2000, ch. 2.8; Phoenix WinNonlin NCA computation rules; PKNCA,
Denney et al. 2015)
-------------------
* **Dose time.** Times are taken relative to ``dose_time`` (default 0); samples before it are
  ignored. When no sample exists at dose time one is inserted: C(0) = 0 for ``route=
  "extravascular"`` and ``"iv-infusion"``; for ``"iv-bolus"`` C0 is back-extrapolated log-linearly
  from the first two positive samples when they decline, otherwise the first positive
  concentration is used (flag ``c0_first_observed``) -- the Phoenix rule. A zero at dose time of a
  bolus is treated as pre-dose and replaced by C0.
* **Cmax/Tmax** are over observed samples (inserted C0 excluded); Tmax is the first time of Cmax.
  **Clast/Tlast** are the last observed concentration > 0 and its time.
* **AUClast/AUMClast** integrate from dose time to Tlast with ``auc_method``: ``"linear"``,
  ``"linear-up/log-down"`` (default; log trapezoid when C falls and both values are > 0), or
  ``"lin-log"`` (log after Tmax); formulas in ``_nca_auc``.
* **λz** by the adjusted-R² "best fit" (Phoenix / PKNCA): regress ln C on t over the last 3, 4, ...
  positive samples after Tmax (Tmax excluded, as PKNCA's default; ``allow_tmax_in_lambda_z=True``
  includes it, e.g. for an IV bolus sampled at dose time; after the end of an infusion); keep fits
  with λz > 0; among those, every fit with adjusted R² > best - ``adj_r2_tol`` (1e-4) qualifies
  and the one with the most points wins (the best is taken over fits with λz > 0; PKNCA takes it
  over all fits, which differs only when a rising tail fits best -- see ``_nca_lambdaz``). At least
  ``min_points`` (3) points. ``lambda_z_points=n`` forces the last n points.
  Reported: λz, the intercept (ln C at dose time), the number of points, first/last time used,
  R², adjusted R², span ratio = (last - first time used)/t½, t½ = ln2/λz.
* **Extrapolation** to infinity is offered both ways, as PKNCA and Phoenix do:
  ``*_obs`` uses the observed Clast, ``*_pred`` uses Clast predicted by the λz regression:
  AUCinf = AUClast + Clast/λz, AUMCinf = AUMClast + Clast·Tlast/λz + Clast/λz²,
  %AUCextrap = 100 (AUCinf - AUClast)/AUCinf, MRT = AUMCinf/AUCinf (minus infusion duration/2),
  CL = Dose/AUCinf, Vz = Dose/(λz·AUCinf), Vss = CL·MRT (IV routes only). For extravascular dosing
  CL and Vz are the apparent CL/F and Vz/F.
* **BLQ** (``lloq`` given): a sample is BLQ when C < LLOQ. Default rule ``"zero-then-drop"``: BLQ
  before the first measurable sample -> 0, BLQ after it -> excluded. Other presets and a
  per-position mapping are described in :class:`BLQRule`. Without ``lloq`` concentrations are used
  as given.
* **Warnings** (values kept, flag set): span ratio < ``min_span_ratio`` (2) -> ``span_ratio_low``;
  %AUCextrap(obs) > ``max_auc_extrap_pct`` (20) -> ``auc_extrap_high``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from insilico.errors import SpecError

from ._nca_auc import AUC_METHODS, resolve_method
from ._nca_blq import BLQ_PRESETS, BLQRule
from ._nca_core import _areas, single_dose, steady_state
from ._nca_input import _is_per_subject_list, pack, per_row, to_rows
from ._nca_params import FLAGS, SINGLE_DOSE, STEADY_STATE, Units, join_flags

__all__ = [
    "AUC_METHODS",
    "BLQ_PRESETS",
    "FLAGS",
    "ROUTES",
    "BLQRule",
    "auc",
    "aumc",
    "nca",
    "nca_ss",
    "parameter_table",
]

ROUTES = ("extravascular", "iv-bolus", "iv-infusion")


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def nca(
    time=None,
    conc=None,
    dose=None,
    *,
    lloq=None,
    auc_method: str = "linear-up/log-down",
    blq_rule: str | BLQRule | dict = "zero-then-drop",
    route: str = "extravascular",
    duration=None,
    dose_time=0.0,
    min_points: int = 3,
    adj_r2_tol: float = 1e-4,
    lambda_z_points: int | None = None,
    allow_tmax_in_lambda_z: bool = False,
    min_span_ratio: float = 2.0,
    max_auc_extrap_pct: float = 20.0,
    subjects=None,
    time_dim: str = "time",
    time_unit: str | None = None,
    conc_unit: str | None = None,
    dose_unit: str | None = None,
):
    """Single-dose non-compartmental analysis, one result row per subject.

    Parameters
    ----------
    time : sampling times (h after ``dose_time``): 1-D shared, 2-D per subject, or a list of
        per-subject arrays. May be omitted (or the DataArray passed first) for DataArray ``conc``.
    conc : concentrations (mg/L): 1-D, 2-D ``(subjects, times)``, list of per-subject arrays, or an
        :class:`xarray.DataArray` with a ``time_dim`` dimension. NaN = missing sample.
    dose : dose (mg), scalar or one per subject (DataArray: broadcast against ``conc``). ``None``
        leaves CL, Vz, Vss NaN with flag ``no_dose``.
    lloq : lower limit of quantification (mg/L), scalar or per subject; ``None`` = no BLQ handling.
    auc_method : ``"linear-up/log-down"`` (default), ``"linear"`` or ``"lin-log"``.
    blq_rule : preset name (``"zero-then-drop"`` default, ``"pknca"``, ``"zero"``, ``"drop"``,
        ``"half-lloq"``), a ``{"first", "middle", "last"}`` mapping or a :class:`BLQRule`.
    route : ``"extravascular"`` (default), ``"iv-bolus"`` or ``"iv-infusion"`` (needs ``duration``).
    duration : infusion duration (h), scalar or per subject; required for ``"iv-infusion"``.
    dose_time : time of the dose (h), scalar or per subject; reported times are relative to it.
    min_points, adj_r2_tol, lambda_z_points : λz selection (module docs).
    allow_tmax_in_lambda_z : include the Tmax sample among λz candidates (default ``False``).
    min_span_ratio, max_auc_extrap_pct : thresholds of the warning flags.
    subjects : row labels for the DataFrame index (default ``0..n-1``).
    time_dim : name of the time dimension of a DataArray input.
    time_unit, conc_unit, dose_unit : unit labels (default from DataArray ``units`` attributes,
        else h, mg/L, mg).

    Returns
    -------
    pandas.DataFrame (index ``subject``, columns as in :func:`parameter_table`) or, for DataArray
    input, an xarray.Dataset over the non-time dimensions.
    """
    method = resolve_method(auc_method)
    rule = BLQRule.resolve(blq_rule)
    if route not in ROUTES:
        raise SpecError("route", f"unknown route {route!r}; choose one of {ROUTES}")
    if route == "iv-infusion" and duration is None:
        raise SpecError("duration", "route 'iv-infusion' needs the infusion duration")
    _check_selection(min_points, adj_r2_tol, lambda_z_points)
    allow_tmax = bool(allow_tmax_in_lambda_z)
    settings = {"auc_method": method, "blq_rule": _rule_str(rule), "route": route,
                "min_points": min_points, "adj_r2_tol": adj_r2_tol}

    def compute(T, C, row):
        n = T.shape[0]
        return single_dose(
            T, C, dose=row(dose, "dose"), lloq=row(lloq, "lloq"), dose_time=row(dose_time, "dose_time"),
            duration=row(duration, "duration"), route=route, method=method, rule=rule,
            min_points=min_points, adj_r2_tol=adj_r2_tol, n_points=lambda_z_points, allow_tmax=allow_tmax,
            min_span_ratio=min_span_ratio, max_auc_extrap_pct=max_auc_extrap_pct,
        ) + (n,)

    return _run(compute, SINGLE_DOSE, time, conc, dose, subjects, time_dim, time_unit, conc_unit, dose_unit,
                settings)


def nca_ss(
    time=None,
    conc=None,
    tau=None,
    dose=None,
    *,
    start=0.0,
    lloq=None,
    auc_method: str = "linear-up/log-down",
    blq_rule: str | BLQRule | dict = "zero-then-drop",
    min_points: int = 3,
    adj_r2_tol: float = 1e-4,
    lambda_z_points: int | None = None,
    allow_tmax_in_lambda_z: bool = False,
    min_span_ratio: float = 2.0,
    subjects=None,
    time_dim: str = "time",
    time_unit: str | None = None,
    conc_unit: str | None = None,
    dose_unit: str | None = None,
):
    """Steady-state NCA over one dosing interval ``[start, start + tau]``.

    Inputs as in :func:`nca`; ``tau`` (h) and ``start`` (h, the dose time opening the interval)
    are scalars or per subject. The BLQ rule is applied to the whole profile first. C at the
    interval ends (``c0``, ``ctau``) is the sample there or, if none, is interpolated between the
    neighbouring samples (linear; log-linear when declining with both values > 0, unless
    ``auc_method="linear"``), flagged ``interval_*_interpolated``; when the ends are not bracketed
    by samples AUCtau is NaN (``interval_*_missing``). No pre-dose value is assumed.

    Outputs: Cmax/Tmax and Cmin/Tmin over the observed samples in the interval (times relative to
    ``start``), AUCtau by ``auc_method``, Cavg = AUCtau/tau, fluctuation % = 100 (Cmax - Cmin)/Cavg,
    swing % = 100 (Cmax - Cmin)/Cmin, CLss(/F) = Dose/AUCtau, λz from the positive samples after
    Tmax within the interval (same selection as :func:`nca`), t½ and Vz(/F) = Dose/(λz·AUCtau)
    (PKNCA convention for steady state).
    """
    if tau is None:
        raise SpecError("tau", "the dosing interval tau is required")
    method = resolve_method(auc_method)
    rule = BLQRule.resolve(blq_rule)
    _check_selection(min_points, adj_r2_tol, lambda_z_points)
    settings = {"auc_method": method, "blq_rule": _rule_str(rule), "route": "steady-state",
                "min_points": min_points, "adj_r2_tol": adj_r2_tol}

    def compute(T, C, row):
        tau_r = row(tau, "tau")
        if not np.all(tau_r > 0):
            raise SpecError("tau", "the dosing interval must be > 0")
        return steady_state(
            T, C, tau=tau_r, start=row(start, "start"), dose=row(dose, "dose"), lloq=row(lloq, "lloq"),
            method=method, rule=rule, min_points=min_points, adj_r2_tol=adj_r2_tol, n_points=lambda_z_points,
            allow_tmax=bool(allow_tmax_in_lambda_z), min_span_ratio=min_span_ratio,
        ) + (T.shape[0],)

    return _run(compute, STEADY_STATE, time, conc, dose, subjects, time_dim, time_unit, conc_unit, dose_unit,
                settings)


def auc(time, conc, method: str = "linear-up/log-down"):
    """Area under the whole profile (all finite samples, first to last) by the trapezoid ``method``.

    ``conc`` 1-D gives a float; 2-D ``(rows, times)`` (shared or per-row ``time``) gives one value
    per row. No dose-time insertion and no BLQ handling: see :func:`nca` for that.
    """
    return _whole_profile(time, conc, method, moment=0)


def aumc(time, conc, method: str = "linear-up/log-down"):
    """Area under the first-moment curve t·C(t) over the whole profile (see :func:`auc`)."""
    return _whole_profile(time, conc, method, moment=1)


def parameter_table(steady_state: bool = False, *, time_unit="h", conc_unit="mg/L", dose_unit="mg") -> pd.DataFrame:
    """Output columns of :func:`nca` (or :func:`nca_ss`) with their units and descriptions."""
    u = Units(time_unit, conc_unit, dose_unit)
    table = STEADY_STATE if steady_state else SINGLE_DOSE
    return pd.DataFrame(
        [(k, u.of(kind), ln) for k, (kind, ln) in table.items()], columns=["name", "units", "long_name"]
    ).set_index("name")


# ----------------------------------------------------------------------------------------------
# plumbing
# ----------------------------------------------------------------------------------------------
def _check_selection(min_points, adj_r2_tol, lambda_z_points):
    if int(min_points) != min_points or min_points < 3:
        raise SpecError("min_points", "at least 3 points are needed for the adjusted R² rule")
    if not adj_r2_tol >= 0:
        raise SpecError("adj_r2_tol", "must be >= 0")
    if lambda_z_points is not None and (int(lambda_z_points) != lambda_z_points or lambda_z_points < 2):
        raise SpecError("lambda_z_points", "must be an integer >= 2 (or None for automatic selection)")


def _rule_str(rule: BLQRule) -> str:
    for name, r in BLQ_PRESETS.items():
        if r == rule:
            return name
    return f"first={rule.first},middle={rule.middle},last={rule.last}"


def _whole_profile(time, conc, method, moment):
    method = resolve_method(method)
    scalar = not _is_per_subject_list(conc) and np.ndim(conc) == 1
    T, C = to_rows(time, conc)
    n, Tp, Cp = pack(np.isfinite(C), T, C)
    i_peak = np.argmax(np.where(np.isfinite(Cp), Cp, -np.inf), axis=1)
    a, m = _areas(Tp, Cp, n, method, i_peak, n - 1)
    out = np.where(n > 0, m if moment else a, np.nan)
    return float(out[0]) if scalar else out


def _is_dataarray(x) -> bool:
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a core dependency
        return False
    return isinstance(x, xr.DataArray)


def _run(compute, table, time, conc, dose, subjects, time_dim, time_unit, conc_unit, dose_unit, settings):
    if conc is None and _is_dataarray(time):
        time, conc = None, time
    if _is_dataarray(conc):
        return _run_xarray(compute, table, time, conc, dose, time_dim, time_unit, conc_unit, dose_unit, settings)
    T, C = to_rows(time, conc)
    n_rows = T.shape[0]

    def row(x, name):
        if _is_dataarray(x):
            x = x.values
        return per_row(x, n_rows, name)

    cols, flags, n = compute(T, C, row)
    units = Units(time_unit or "h", conc_unit or "mg/L", dose_unit or "mg")
    if subjects is None:
        index = pd.RangeIndex(n, name="subject")
    else:
        index = pd.Index(list(subjects), name="subject")
        if len(index) != n:
            raise SpecError("subjects", f"{len(index)} labels for {n} subjects")
    data = {k: cols[k] for k in table if k != "nca_flags"}
    data["nca_flags"] = join_flags(n, flags)
    df = pd.DataFrame(data, index=index)
    df.attrs["units"] = {k: units.of(kind) for k, (kind, _) in table.items()}
    df.attrs["long_name"] = {k: ln for k, (_, ln) in table.items()}
    df.attrs.update(settings)
    return df


def _run_xarray(compute, table, time, da, dose, time_dim, time_unit, conc_unit, dose_unit, settings):
    import xarray as xr

    if time_dim not in da.dims:
        raise SpecError("conc", f"DataArray has no {time_dim!r} dimension (dims {da.dims})")
    other = [d for d in da.dims if d != time_dim]
    da = da.transpose(*other, time_dim)
    if time is None:
        if time_dim not in da.coords:
            raise SpecError("time", f"DataArray has no {time_dim!r} coordinate; pass time explicitly")
        t = da[time_dim].values
        time_attrs = da[time_dim].attrs
    else:
        t, time_attrs = np.asarray(time), {}
    if np.issubdtype(np.asarray(t).dtype, np.timedelta64):
        t = np.asarray(t) / np.timedelta64(1, "h")
        time_unit = time_unit or "h"
    t = np.asarray(t, dtype=float)
    shape = tuple(da.sizes[d] for d in other)
    n_t = da.sizes[time_dim]
    C = np.asarray(da.values, dtype=float).reshape(-1, n_t)
    if t.ndim == 1:
        T = np.broadcast_to(t, C.shape)
    else:  # per-row times given as an array aligned with conc
        T = np.asarray(t, dtype=float).reshape(-1, n_t)
    T, C = to_rows(T, C)
    template = da.isel({time_dim: 0}, drop=True)

    def row(x, name):
        if _is_dataarray(x):
            extra = set(x.dims) - set(other)
            if extra:
                raise SpecError(name, f"dimensions {sorted(extra)} are not in the concentration array")
            x = x.broadcast_like(template).transpose(*other).values
        return per_row(x, C.shape[0], name)

    cols, flags, n = compute(T, C, row)
    dose_unit = dose_unit or (dose.attrs.get("units") if _is_dataarray(dose) else None) or "mg"
    units = Units(time_unit or time_attrs.get("units") or "h", conc_unit or da.attrs.get("units") or "mg/L", dose_unit)
    coords = {k: v for k, v in da.coords.items() if time_dim not in v.dims and set(v.dims) <= set(other)}
    data_vars: dict[str, Any] = {}
    for k, (kind, long_name) in table.items():
        vals = np.asarray(join_flags(n, flags), dtype=str) if k == "nca_flags" else cols[k]
        attrs = {"long_name": long_name, "units": units.of(kind)}
        if k == "nca_flags":   # a string of ';'-joined flag names, so no CF flag_values
            attrs["flag_meanings"] = " ".join(FLAGS)
            attrs["comment"] = "; ".join(f"{f}: {d}" for f, d in FLAGS.items())
        data_vars[k] = (tuple(other), vals.reshape(shape), attrs)
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({k: str(v) for k, v in settings.items()})
    ds.attrs["conventions"] = "NCA per Gabrielsson & Weiner; lambda_z best fit by adjusted R2 (Phoenix/PKNCA)"
    return ds
