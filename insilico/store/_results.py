"""Reading a trial results store: which variables are what, values of the simulated subject–arm
pairs, and the JSON documents kept in the attributes. Pure functions of an ``xarray.Dataset``;
the ``ds.insilico`` accessor (`insilico.store._accessor`) exposes them.

Variables are recognised by their attributes (``role``, ``endpoint_type``, see
`insilico.store._layout`) and, for time-varying outputs, by their dimensions, so a hand-built
Dataset with the same dimensions (tests, other tools) reads the same way.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from insilico.errors import SpecError

PAIR_DIMS = ("replicate", "arm", "subject")
SUBJECT_DIMS = ("replicate", "subject")
ANALYSIS_TABLES = ("summary", "comparisons", "probability_of_success", "pta", "power")


def stored_json(ds: xr.Dataset, key: str):
    """The JSON document in attribute ``key`` (parsed), or ``None`` when absent."""
    v = ds.attrs.get(key)
    if v is None or v == "":
        return None
    return json.loads(v) if isinstance(v, (str, bytes)) else v


def _time_varying(ds: xr.Dataset) -> list[str]:
    return [str(k) for k, v in ds.data_vars.items() if {"arm", "subject", "time"} <= set(v.dims)]


def _is_observed(ds: xr.Dataset, name: str) -> bool:
    role = ds[name].attrs.get("role")
    return role == "observed output" if role else name.endswith("_obs")


def output_names(ds: xr.Dataset) -> list[str]:
    """Model outputs stored over (replicate, arm, subject, time), without residual-error copies."""
    return [k for k in _time_varying(ds) if not _is_observed(ds, k)]


def observed_names(ds: xr.Dataset) -> list[str]:
    """Residual-error copies of outputs (``conc_obs``), over (replicate, arm, subject, time)."""
    return [k for k in _time_varying(ds) if _is_observed(ds, k)]


def endpoint_names(ds: xr.Dataset) -> list[str]:
    """Endpoints (variables with an ``endpoint_type``), in the spec's order when it is stored."""
    names = [str(k) for k, v in ds.data_vars.items() if "endpoint_type" in v.attrs]
    spec = stored_json(ds, "spec")
    if spec:
        order = [e["name"] for e in spec.get("endpoints", [])]
        names.sort(key=lambda n: order.index(n) if n in order else len(order))
    return names


def _with_role(ds: xr.Dataset, *roles: str) -> list[str]:
    return [str(k) for k, v in ds.data_vars.items() if v.attrs.get("role") in roles]


def covariate_names(ds: xr.Dataset) -> list[str]:
    """Covariates drawn or derived by the cohort (``role`` covariate / derived covariate)."""
    return _with_role(ds, "covariate", "derived covariate")


def parameter_names(ds: xr.Dataset) -> list[str]:
    """Individual model parameters (``role`` parameter), over (replicate, subject)."""
    return _with_role(ds, "parameter")


def subject_variable_names(ds: xr.Dataset) -> list[str]:
    """Every variable over (replicate, subject): covariates, random effects, parameters, design."""
    return [str(k) for k, v in ds.data_vars.items() if v.dims == SUBJECT_DIMS]


def _select(da: xr.DataArray, dim: str, label) -> xr.DataArray:
    if label is None or dim not in da.dims:
        return da
    if label not in da[dim].values:
        raise SpecError(dim, f"{label!r} is not in the store ({dim}: {[str(x) for x in da[dim].values]})")
    return da.sel({dim: [label]})


def _labels(ds: xr.Dataset, dim: str, label):
    """The labels of ``dim`` after selecting ``label`` (all labels when ``None``)."""
    return ds[dim].values if label is None else np.asarray([label])


def arm_values(ds: xr.Dataset, name: str, replicate=None, *, arm=None, ok_only: bool = False) -> pd.DataFrame:
    """Values of ``name`` for the simulated subject–arm pairs (``status >= 0``; ``ok_only``:
    ``status == 0``), as a long table with columns replicate, arm, subject, then one column per
    further dimension of ``name`` (e.g. time), and value. Rows are in (replicate, arm, subject,
    …) order; missing values stay NaN. ``replicate`` / ``arm`` select one label. A variable over
    (replicate, subject), such as a covariate, is repeated for every arm the subject is in."""
    if name not in ds.variables:
        raise SpecError("name", f"{name!r} is not in the results store")
    da = _select(_select(ds[name], "replicate", replicate), "arm", arm)
    st = _select(_select(ds["status"], "replicate", replicate), "arm", arm)
    st = np.asarray(st.transpose(*PAIR_DIMS).values)
    r, a, s = np.nonzero(st == 0 if ok_only else st >= 0)
    base = [d for d in PAIR_DIMS if d in da.dims]
    extra = [d for d in da.dims if d not in PAIR_DIMS]
    v = np.asarray(da.transpose(*base, *extra).values)
    v = v[r, a, s] if "arm" in da.dims else v[r, s]
    n_extra = int(np.prod([da.sizes[d] for d in extra], dtype=int))
    cols = {"replicate": np.asarray(_labels(ds, "replicate", replicate))[r],
            "arm": np.asarray(_labels(ds, "arm", arm), dtype=object)[a],
            "subject": np.asarray(ds["subject"].values)[s]}
    cols = {k: np.repeat(c, n_extra) for k, c in cols.items()}
    if extra:
        grids = np.meshgrid(*(np.asarray(da[d].values) for d in extra), indexing="ij")
        for d, g in zip(extra, grids):
            cols[d] = np.tile(g.ravel(), len(r))
    cols["value"] = v.reshape(-1)
    return pd.DataFrame(cols)


def simulated_pairs(ds: xr.Dataset, *, ok_only: bool = False) -> xr.DataArray:
    """(replicate, arm, subject) mask of the subject–arm pairs simulated (``ok_only``: status 0)."""
    return ds["status"] == 0 if ok_only else ds["status"] >= 0


def status_meanings(ds: xr.Dataset) -> dict[int, str]:
    """``{code: meaning}`` of the store's ``status`` (its CF ``flag_values`` / ``flag_meanings``,
    words joined by ``_`` read back with spaces)."""
    attrs = ds["status"].attrs
    words = str(attrs.get("flag_meanings", "")).split()
    return {int(c): w.replace("_", " ") for c, w in zip(attrs.get("flag_values", []), words)}


_RULES = {"positive": (lambda v: v > 0, "must be > 0"), "nonnegative": (lambda v: v >= 0, "must be >= 0"),
          "fraction": (lambda v: (v >= 0) & (v <= 1), "must be between 0 and 1")}


def _fmt(name: str, v: float, units: str) -> str:
    u = f" {units}" if units and units != "1" else ""
    return f"{name} = {v:.4g}{u}"


def _per_covariates(ds: xr.Dataset) -> list[set[str]]:
    """Per arm (store order), the covariates its doses are given ``per`` (from the stored spec)."""
    spec = stored_json(ds, "spec") or {}
    arms = spec.get("arms", [])
    return [{d["per"] for d in (arms[i].get("regimen") or []) if d.get("per")} if i < len(arms) else set()
            for i in range(ds.sizes["arm"])]


def _details(ds: xr.Dataset, r: np.ndarray, a: np.ndarray, s: np.ndarray) -> list[str]:
    """Why each flagged pair (indices ``r``, ``a``, ``s``) is invalid, from its stored values:
    non-finite covariates, covariates its arm doses ``per`` that are not > 0, and parameters
    outside their stored ``constraint`` (or non-finite)."""
    parts: list[list[str]] = [[] for _ in r]

    def values(name):
        da = ds[name].transpose(*SUBJECT_DIMS)
        return np.asarray(da.values, dtype=float)[r, s], da.attrs.get("units", "")

    per = _per_covariates(ds)
    for name in covariate_names(ds):
        if not np.issubdtype(ds[name].dtype, np.floating):
            continue
        v, units = values(name)
        for k in np.flatnonzero(~np.isfinite(v)):
            parts[k].append(_fmt(name, v[k], units))
        dosed = np.array([name in arm for arm in per], dtype=bool)[a]
        for k in np.flatnonzero(dosed & np.isfinite(v) & ~(v > 0)):
            parts[k].append(f"dose per {_fmt(name, v[k], units)} (must be > 0)")
    for name in parameter_names(ds):
        v, units = values(name)
        ok, rule = _RULES.get(ds[name].attrs.get("constraint"), (lambda x: np.ones_like(x, bool), ""))
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(v) | ~ok(v)
        for k in np.flatnonzero(bad):
            parts[k].append(_fmt(name, v[k], units) + (f" ({rule})" if np.isfinite(v[k]) and rule else ""))
    return ["; ".join(p) for p in parts]


def flagged_subjects(ds: xr.Dataset) -> pd.DataFrame:
    """The subject–arm pairs simulated without results (``status > 0``): one row each, in
    (replicate, arm, subject) order, with columns replicate, arm, subject, status (code),
    reason (its ``flag_meanings`` entry, e.g. "invalid individual parameter") and detail (the
    stored values that explain it, e.g. ``CL = -1.1 L/h (must be > 0)``; empty for solver
    failures)."""
    st = np.asarray(ds["status"].transpose(*PAIR_DIMS).values)
    r, a, s = np.nonzero(st > 0)
    meanings = status_meanings(ds)
    codes = st[r, a, s].astype(int)
    return pd.DataFrame({"replicate": np.asarray(ds["replicate"].values)[r],
                         "arm": np.asarray(ds["arm"].values, dtype=object)[a],
                         "subject": np.asarray(ds["subject"].values)[s], "status": codes,
                         "reason": [meanings.get(int(c), f"status {int(c)}") for c in codes],
                         "detail": _details(ds, r, a, s) if r.size else []})


def flagged_counts(flagged: pd.DataFrame) -> pd.DataFrame:
    """Counts of `flagged_subjects` rows by arm and reason (all replicates): columns arm,
    status, reason, n; arms in store order, then by status code."""
    if flagged.empty:
        return pd.DataFrame({"arm": [], "status": [], "reason": [], "n": []})
    g = flagged.groupby(["arm", "status", "reason"], sort=False).size().rename("n").reset_index()
    order = {arm: i for i, arm in enumerate(pd.unique(flagged["arm"]))}
    return g.sort_values(["arm", "status"], key=lambda c: c.map(order) if c.name == "arm" else c,
                         ignore_index=True)


def is_complete(ds: xr.Dataset) -> bool:
    """True when every work unit of the run has written its region (``_done`` all 1)."""
    return "_done" in ds.variables and bool(np.asarray(ds["_done"].values).all())


def analysis_tables(document: dict | None) -> dict:
    """The stored analysis as pandas DataFrames: ``summary`` and ``comparisons`` map endpoint ->
    DataFrame; ``probability_of_success``, ``pta`` and ``power`` are DataFrames. Tables the
    analysis does not have are left out."""
    out: dict = {}
    for key in ANALYSIS_TABLES:
        rows = (document or {}).get(key)
        if not rows:
            continue
        out[key] = ({k: pd.DataFrame(v) for k, v in rows.items()} if isinstance(rows, dict) else pd.DataFrame(rows))
    return out
