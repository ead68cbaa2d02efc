"""Saving and loading cohorts: Zarr (``.zarr``), CSV (``.csv``) and Parquet (``.parquet``).

* Zarr keeps the Dataset as is (attrs included).
* CSV and Parquet are wide tables, one row per subject: column ``subject`` (int64), one
  column per variable, ``NAME[k]`` for variables over ``occasion`` (k = occasion label).
  Categorical covariates are written as their labels. Everything needed to rebuild the
  Dataset exactly (dims, dtypes, variable and dataset attrs) is a JSON document stored in
  the Parquet schema metadata (key ``insilico.cohort``) or, for CSV, in a sidecar file
  ``<name>.csv.json``. Floats are written with round-trip precision, so save -> load is exact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from insilico.errors import SpecError

__all__ = ["load_cohort", "save_cohort"]

_META_KEY = "insilico.cohort"
_FORMAT = "insilico-cohort/1"


def _kind(path) -> str:
    p = str(path).rstrip("/\\")
    for suffix, kind in ((".zarr", "zarr"), (".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if p.lower().endswith(suffix):
            return kind
    raise SpecError("path", f"unsupported cohort file type {Path(p).suffix or p!r}: use .zarr, .csv or .parquet")


def save_cohort(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write a cohort Dataset to ``path`` (format from the suffix); returns the path.

    An existing ``path`` is replaced only with ``overwrite`` and only when it is a cohort
    insilico saved (a Zarr store marked ``insilico_store: cohort``, a CSV with its insilico
    sidecar, a Parquet file with insilico's metadata); anything else raises ``SpecError``
    naming ``--out`` and is left untouched (`insilico.store.replace_owned`)."""
    from insilico.store import KIND_ATTR, check_out, replace_owned
    kind = _kind(path)
    path = check_out(path, folder=kind == "zarr")
    replace_owned(path, "cohort", overwrite=overwrite)
    if kind == "zarr":
        ds.assign_attrs({KIND_ATTR: "cohort"}).to_zarr(path, mode="w", consolidated=False)
        return path
    df, meta = _to_table(ds)
    text = json.dumps(meta)
    if kind == "csv":
        df.to_csv(path, index=False)
        Path(str(path) + ".json").write_text(text)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY.encode(): text.encode()})
        pq.write_table(table, path)
    return path


def load_cohort(path: str | os.PathLike) -> xr.Dataset:
    """Read a cohort written by :func:`save_cohort` (format from the suffix)."""
    from insilico.store import KIND_ATTR
    kind = _kind(path)
    path = Path(path)
    if not path.exists():
        raise SpecError("path", f"no such cohort file: {path}")
    if kind == "zarr":
        with xr.open_zarr(path, consolidated=False) as ds:
            out = ds.load()
        out.attrs.pop(KIND_ATTR, None)      # the ownership marker (save_cohort), not cohort data
        return out
    if kind == "csv":
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        side = Path(str(path) + ".json")
        meta = json.loads(side.read_text()) if side.exists() else None
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(_META_KEY.encode())
        meta = json.loads(raw) if raw else None
        df = table.to_pandas()
    return _from_table(df, meta)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _labels(attrs) -> list[str] | None:
    fm = attrs.get("flag_meanings")
    return fm.split(" ") if isinstance(fm, str) else None


def _to_table(ds: xr.Dataset):
    cols: dict[str, object] = {"subject": ds["subject"].values.astype(np.int64)}
    meta = {"format": _FORMAT, "attrs": {k: _jsonable(v) for k, v in ds.attrs.items()},
            "coords": {}, "variables": {}}
    for name, c in ds.coords.items():
        meta["coords"][name] = {"values": _jsonable(c.values) if name != "subject" else None,
                                "dtype": str(c.dtype), "attrs": {k: _jsonable(v) for k, v in c.attrs.items()}}
    for name, v in ds.data_vars.items():
        if v.dims[0] != "subject" or v.ndim > 2:
            raise SpecError(f"variables.{name}", f"cannot write dims {v.dims} to a table")
        meta["variables"][name] = {"dims": list(v.dims), "dtype": str(v.dtype),
                                   "attrs": {k: _jsonable(x) for k, x in v.attrs.items()}}
        labels = _labels(v.attrs)
        vals = v.values
        if labels is not None:
            vals = np.asarray(labels, dtype=object)[vals]
        if v.ndim == 1:
            cols[name] = vals
        else:
            for j, lab in enumerate(ds[v.dims[1]].values):
                cols[f"{name}[{lab}]"] = vals[:, j]
    return pd.DataFrame(cols), meta


def _from_table(df: pd.DataFrame, meta: dict | None) -> xr.Dataset:
    if meta is None:  # a foreign table: every column but `subject` becomes a variable
        return xr.Dataset.from_dataframe(df.set_index("subject"))
    if meta.get("format") != _FORMAT:
        raise SpecError("metadata.format", f"unsupported cohort table format {meta.get('format')!r}")
    coords = {}
    for name, c in meta["coords"].items():
        vals = df["subject"].to_numpy().astype(c["dtype"]) if name == "subject" else np.asarray(c["values"], c["dtype"])
        coords[name] = (name, vals, c["attrs"])
    data = {}
    for name, v in meta["variables"].items():
        attrs = v["attrs"]
        if len(v["dims"]) == 1:
            vals = df[name].to_numpy()
        else:
            occ = meta["coords"][v["dims"][1]]["values"]
            vals = np.stack([df[f"{name}[{lab}]"].to_numpy() for lab in occ], axis=1)
        labels = _labels(attrs)
        if labels is not None:
            codes = pd.Categorical(np.asarray(vals).astype(str).ravel(), categories=labels).codes
            if np.any(codes < 0):
                raise SpecError(f"variables.{name}", f"values outside the categories {labels}")
            vals = codes.astype(np.int64).reshape(np.shape(vals))
        data[name] = (tuple(v["dims"]), np.asarray(vals).astype(v["dtype"]), attrs)
    return xr.Dataset(data, coords=coords, attrs=meta["attrs"])
