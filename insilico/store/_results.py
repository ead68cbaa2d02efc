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
