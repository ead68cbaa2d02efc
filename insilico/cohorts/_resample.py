"""Covariates resampled from a table of real subjects (the ``resample`` section of a cohort spec).

Each virtual subject draws one row index ``r ~ DiscreteUniform(0, rows - 1)`` (the NumPyro site
:data:`ROW`, inside the subject plate, so it comes from the subject's key like every other draw:
the same subject index and seed give the same row whatever N or chunking, and each rejection
attempt of the criteria draws a new row); every resampled column takes that row's value. Whole
rows are drawn, so the columns keep their joint (empirical) distribution.

The table's values are an argument of the compiled cohort kernel, not constants inside it: a
table of the same size and columns reuses the compiled code.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from insilico.errors import SpecError

__all__ = ["ROW", "ColumnNode", "ResampleTable", "RowNode", "read_resample_table", "table_fingerprint"]

ROW = "resample_row"      # the covariate holding each subject's row of the table (0-based)


@dataclass(frozen=True)
class ResampleTable:
    """The resampled columns: ``values`` name -> (rows,) float64 (continuous) or int64 codes
    (categorical, labels in ``categories``); ``ids``: the subject of each row (the ``id`` column,
    or the fit's subject IDs; else the row number)."""

    values: dict[str, np.ndarray]
    categories: dict[str, tuple[str, ...]]
    ids: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.ids.size)


@dataclass(frozen=True)
class RowNode:
    """The row index of the table each subject takes (a ``numpyro.sample`` site)."""

    name: str
    rows: int
    deps: frozenset[str] = frozenset()
    kind: str = field(default="resample_row")
    categorical: bool = False

    def sample(self, env, copula=None, table=None):
        return numpyro.sample(self.name, dist.DiscreteUniform(0, self.rows - 1))


@dataclass(frozen=True)
class ColumnNode:
    """A resampled covariate: the value of column ``name`` in the subject's row."""

    name: str
    categorical: bool
    deps: frozenset[str] = frozenset({ROW})
    kind: str = field(default="resampled")

    def sample(self, env, copula=None, table=None):
        return numpyro.deterministic(self.name, jnp.asarray(table[self.name])[env[ROW]])


def table_fingerprint(path: str) -> str:
    """What identifies the current content of a table file or fit store: its path, size and
    modification time (of every file under a folder), as a short hash."""
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256(str(p).encode())
    for q in files:
        try:
            st = q.stat()
        except OSError:
            continue
        h.update(f"{q}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _read_frame(path: str, id_column: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The table at ``path`` (.csv, .parquet/.pq, or a fit store .zarr) and the subject of each row."""
    p = Path(path)
    if not p.exists():
        raise SpecError("resample.table", f"no such file: {p}")
    low = p.name.lower().rstrip("/")
    if p.is_dir() or low.endswith(".zarr"):
        if id_column is not None:
            raise SpecError("resample.id", "a fit store has one row per fitted subject: leave id out")
        return _fit_frame(p)
    try:
        if low.endswith((".parquet", ".pq")):
            df = pd.read_parquet(p)
        elif low.endswith(".csv"):
            df = pd.read_csv(p, keep_default_na=False, na_values=["", ".", "NA", "NaN", "nan"])
        else:
            raise SpecError("resample.table", f"unsupported table type {p.suffix or p.name!r}: use .csv, "
                                              ".parquet or a fit store (.zarr)")
    except SpecError:
        raise
    except Exception as e:
        raise SpecError("resample.table", f"cannot read {p}: {type(e).__name__}: {e}") from None
    if id_column is None:
        return df.reset_index(drop=True), np.arange(len(df))
    if id_column not in df.columns:
        raise SpecError("resample.id", f"no column {id_column!r} in {p.name} "
                                       f"(columns: {', '.join(map(str, df.columns))})")
    first = df.groupby(id_column, sort=False).head(1)
    return first.reset_index(drop=True), first[id_column].to_numpy()


def _fit_frame(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The covariates of the fitted subjects of a fit store (variables ``covariates (subject,
    covariate)`` and ``covariate_text (subject, covariate_text_name)``)."""
    from insilico.store import open_fit
    try:
        ds = open_fit(path)
    except SpecError as e:
        raise SpecError("resample.table", e.message) from None
    if "covariates" not in ds and "covariate_text" not in ds:
        raise SpecError("resample.table", f"the fit store {path.name} holds no covariates of the fitted subjects "
                                          "(written by an older insilico, or the data had no covariate column)")
    df = pd.DataFrame(index=np.arange(ds.sizes["subject"]))
    if "covariates" in ds:
        for j, name in enumerate(ds["covariate"].values):
            df[str(name)] = ds["covariates"].values[:, j]
    if "covariate_text" in ds:
        for j, name in enumerate(ds["covariate_text_name"].values):
            df[str(name)] = [str(v) for v in ds["covariate_text"].values[:, j]]   # zarr may give StringDType
    return df, ds["subject"].values


def _codes(col: pd.Series, labels: tuple[str, ...], where: str, ids) -> np.ndarray:
    """Category codes of ``col``: a value matches a label by its text, or by number (1.0 ~ "1")."""
    numeric = {}
    for k, lab in enumerate(labels):
        try:
            numeric.setdefault(float(lab), k)
        except ValueError:
            pass
    out = np.empty(len(col), np.int64)
    for r, v in enumerate(col.to_numpy()):
        text = str(v)
        if text in labels:
            out[r] = labels.index(text)
            continue
        try:
            out[r] = numeric[float(v)]
        except (KeyError, TypeError, ValueError):
            raise SpecError(where, f"row {r} (subject {ids[r]}): value {v!r} is not one of the categories "
                                   f"{', '.join(labels)}") from None
    return out


def read_resample_table(spec) -> ResampleTable:
    """Read and check the table of a :class:`~insilico.cohorts.ResampleSpec`. Raises
    :class:`SpecError` naming the field: a missing file or column, an empty table, a value that
    is missing or not a number in a continuous column, or not a listed category."""
    df, ids = _read_frame(spec.table, spec.id)
    if len(df) == 0:
        raise SpecError("resample.table", f"{Path(spec.table).name} has no rows")
    values, categories = {}, {}
    for i, name in enumerate(spec.columns):
        where = f"resample.columns.{i}"
        if name not in df.columns:
            raise SpecError(where, f"no column {name!r} in {Path(spec.table).name} "
                                   f"(columns: {', '.join(map(str, df.columns))})")
        col = df[name]
        missing = col.isna().to_numpy()
        if missing.any():
            r = int(np.flatnonzero(missing)[0])
            raise SpecError(where, f"{int(missing.sum())} row(s) without a value of {name} (first: row {r}, "
                                   f"subject {ids[r]})")
        if name in spec.categories or not pd.api.types.is_numeric_dtype(col):
            labels = tuple(spec.categories.get(name) or sorted(col.astype(str).unique()))
            categories[name] = labels
            values[name] = _codes(col, labels, f"resample.categories.{name}" if name in spec.categories else where,
                                  ids)
            continue
        x = pd.to_numeric(col, errors="coerce").to_numpy(float)
        bad = ~np.isfinite(x)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise SpecError(where, f"{name} must be a finite number; row {r} (subject {ids[r]}) has "
                                   f"{col.iloc[r]!r}")
        values[name] = x
    return ResampleTable(values, categories, np.asarray(ids))
