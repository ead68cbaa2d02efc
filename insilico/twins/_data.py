"""Rows added to a twin (NONMEM columns) and a patient's history as the padded arrays the
vmapped posterior and prediction kernels read.

Rows: columns ``ID`` (optional for one patient), ``TIME`` (h from the twin's time origin),
``AMT`` (mg), ``RATE`` (mg/h), ``CMT``, ``EVID`` (0 level, 1 dose, 2 no observation), ``II``,
``ADDL``, ``SS``, ``MDV``, ``DV`` (the prior's fitted output, in its units: mg/L for ``conc``)
and the prior's covariates (which must equal the twin's values: covariates are set at creation).
Refused, naming the column: an unknown column (a level belongs in ``DV``, in the model's units;
no ``CONC_UGL``-style columns), no rows, a level on a dose record, an amount on a level record,
a level record without a value, a dose without an amount, and -- for outputs that are zero
before any dose (drug concentrations) -- a level at or before the first dose.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from insilico.batching import bucket_size
from insilico.dosing import Dose, Regimen, dose_table, event_slots
from insilico.errors import SpecError
from insilico.store import ROW_COLUMNS

__all__ = ["batch_arrays", "check_covariate_columns", "check_history", "history_columns", "history_frame",
           "normalise_rows", "read_table", "rows_of"]

_NULL_IS_ZERO = ("AMT", "RATE", "CMT", "II", "ADDL", "SS", "MDV")


def read_table(data) -> pd.DataFrame:
    """``data`` (CSV path, read as text, or DataFrame) as a DataFrame (a copy)."""
    if isinstance(data, pd.DataFrame):
        return data.copy()
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise SpecError("--data", f"file not found: {path}")
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise SpecError("--data", f"{path} is not a readable CSV: {e}") from None
    raise SpecError("--data", f"expected a CSV path or a pandas DataFrame, got {type(data).__name__}")


def _numbers(df: pd.DataFrame, col: str) -> np.ndarray:
    raw = df[col]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        vals = raw.to_numpy(float)           # numbers already: NaN is a null (fast path of one-patient updates)
        null = pd.Series(np.isnan(vals))
    else:
        null = raw.astype(str).str.strip().isin([".", ""]) | raw.isna()
        vals = pd.to_numeric(raw.where(~null), errors="coerce").to_numpy(float)
    bad = ~null.to_numpy() & ~np.isfinite(vals)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SpecError(f"data.{col}", f"row {i + 1}: {raw.iloc[i]!r} is not a number")
    if col in _NULL_IS_ZERO:
        vals = np.where(null.to_numpy(), 0.0, vals)
    return vals


def _bad(col: str, mask: np.ndarray, message: str):
    i = int(np.flatnonzero(mask)[0])
    return SpecError(f"data.{col}", f"row {i + 1}: {message}")


def normalise_rows(data, covariates: tuple, *, need_id: bool = False) -> pd.DataFrame:
    """The rows of ``data`` (CSV path or DataFrame) checked (module docstring) as a DataFrame
    with ``ID`` (str, when given), `ROW_COLUMNS` (float) and the covariate columns present."""
    df = read_table(data)
    df.columns = [str(c).strip().upper() for c in df.columns]
    if len(set(df.columns)) != len(df.columns):
        raise SpecError("data", "two columns have the same name (names are case-insensitive)")
    if df.empty:
        raise SpecError("data", "no rows: an update adds at least one dose or level")
    allowed = {"ID", *ROW_COLUMNS, *(c.upper() for c in covariates)}
    for c in df.columns:
        if c not in allowed:
            raise SpecError(f"data.{c}", f"unknown column {c!r}: a level goes in DV, in the units of the prior's "
                                         f"output; allowed columns: ID, {', '.join(ROW_COLUMNS)}"
                                         + (f" and the covariates {', '.join(covariates)}" if covariates else ""))
    if "TIME" not in df.columns:
        raise SpecError("data.TIME", "required column missing")
    if need_id and "ID" not in df.columns:
        raise SpecError("data.ID", "required column missing (one batch holds many patients)")
    n = len(df)
    out = {}
    if "ID" in df.columns:
        ids = df["ID"].astype(str).str.strip().to_numpy()
        missing = np.isin(ids, ["", ".", "nan", "None"])
        if missing.any():
            raise _bad("ID", missing, "ID is missing")
        out["ID"] = ids
    for c in ROW_COLUMNS:
        out[c] = _numbers(df, c) if c in df.columns else np.full(n, np.nan if c == "DV" else 0.0)
    if "EVID" not in df.columns:
        out["EVID"] = np.where(out["AMT"] > 0, 1.0, 0.0)
    t, evid, amt, dv, mdv = (out[c] for c in ("TIME", "EVID", "AMT", "DV", "MDV"))
    checks = [
        ("TIME", ~np.isfinite(t) | (t < 0), "TIME must be a number >= 0 (h from the twin's time origin)"),
        ("EVID", ~np.isin(evid, (0, 1, 2)), "EVID must be 0 (level), 1 (dose) or 2 (no observation)"),
        ("AMT", (evid != 1) & (amt != 0), "an amount on a record that is not a dose (EVID 1); a level goes in DV"),
        ("AMT", (evid == 1) & ~(amt > 0), "a dose (EVID 1) needs AMT > 0 (mg)"),
        ("RATE", out["RATE"] < 0, "RATE -1/-2 (modelled rate/duration) is not supported by twins yet; give the "
                                  "rate (mg/h)"),
        ("DV", (evid == 1) & np.isfinite(dv) & (dv != 0), "a level on a dose record (EVID 1); put it on its own "
                                                          "record (EVID 0) at its time"),
        ("DV", (evid == 0) & (mdv == 0) & ~np.isfinite(dv), "a level record (EVID 0) without a value in DV"),
    ]
    for col, mask, msg in checks:
        if mask.any():
            raise _bad(col, mask, msg)
    out["DV"] = np.where(evid != 0, np.nan, dv)
    for c in covariates:
        if c.upper() in df.columns:
            out[c] = df[c.upper()].to_numpy()
    return pd.DataFrame(out)


def rows_of(df: pd.DataFrame) -> dict:
    """{column: float array} of `ROW_COLUMNS` (the form a twin version stores)."""
    return {c: df[c].to_numpy(float) for c in ROW_COLUMNS}


def check_covariate_columns(df: pd.DataFrame, covariates: dict, pid: str) -> None:
    """Covariate columns in update rows must repeat the twin's values (set at creation)."""
    for c, v in covariates.items():
        if c not in df.columns:
            continue
        vals = df[c].astype(str).str.strip()
        ok = vals.isin([str(v), "", "."])
        if not isinstance(v, str):
            num = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
            ok = ok.to_numpy() | np.isclose(num, float(v), rtol=1e-12, atol=0)
        ok = np.asarray(ok)
        if not ok.all():
            raise _bad(c, ~ok, f"{pid}: covariate {c} differs from the twin's value {v!r}; covariates are set at "
                               "creation (time-varying covariates are not supported yet)")


def history_columns(parts: list[dict]) -> dict:
    """The rows of several versions ({column: array} each, oldest first) as one {column: array},
    stably sorted by TIME (rows at the same time keep the order they were added in): the form
    fleets use (no DataFrame per patient)."""
    blocks = [np.stack([np.asarray(p[c], float).reshape(-1) for c in ROW_COLUMNS], axis=1) for p in parts]
    m = np.concatenate(blocks) if blocks else np.zeros((0, len(ROW_COLUMNS)))
    return dict(zip(ROW_COLUMNS, m[np.argsort(m[:, 0], kind="stable")].T))


def history_frame(parts: list[dict]) -> pd.DataFrame:
    """`history_columns` as a DataFrame."""
    return pd.DataFrame(history_columns(parts))


def _columns(h) -> dict:
    """{column: float array} of a history (DataFrame or `history_columns`)."""
    if isinstance(h, dict):
        return h
    return dict(zip(ROW_COLUMNS, h[list(ROW_COLUMNS)].to_numpy(float).T))


def check_history(tm, hist, pid: str) -> None:
    """Refuse what the whole history cannot hold (module docstring): levels at or before the
    first dose when the output has no baseline, duplicate level times."""
    t, evid, dv = (np.asarray(hist[c], float) for c in ("TIME", "EVID", "DV"))
    obs = (evid == 0) & np.isfinite(dv)
    if not tm.baseline and obs.any():
        first = t[evid == 1].min() if (evid == 1).any() else np.inf
        early = t[obs] <= first
        if early.any():
            where = f"the first dose (TIME {first:g} h)" if np.isfinite(first) else "any dose (there is none)"
            raise SpecError("data.TIME", f"{pid}: a level at TIME {t[obs][early][0]:g} h, at or before {where}; the "
                                         f"prior's output {tm.output!r} is 0 before a dose (no baseline model)")
    times = t[evid != 1]
    if np.unique(times).size != times.size:
        raise SpecError("data.TIME", f"{pid}: two levels (or EVID 2 records) at the same time")


def _doses(h: dict) -> Regimen:
    d = h["EVID"] == 1
    return Regimen(tuple(Dose(amt=float(a), time=float(t), cmt=int(c) if c > 0 else None, rate=float(r), ii=float(i),
                              addl=int(n), ss=int(ss))
                         for a, t, c, r, i, n, ss in zip(*(h[k][d] for k in ("AMT", "TIME", "CMT", "RATE", "II",
                                                                             "ADDL", "SS")))))


def batch_arrays(tm, hists: list, covs: list[dict], n_pad: int) -> tuple[dict, bool, bool]:
    """The subjects pytree (NumPy; leading axis ``n_pad`` >= len(hists), extra rows copies of the
    last patient with no observation) of an estimation `Problem` for these histories (checked
    by `normalise_rows` and `check_history`), and whether any dose is an infusion / steady
    state. Dose slots and observation times are padded to `insilico.batching.bucket_size` (at
    least 8) so new history lengths rarely recompile; padded times follow the last one 1 h apart."""
    n = len(hists)
    cols = [_columns(h) for h in hists]
    table = dose_table([_doses(h) for h in cols], tm.model, n, where="data")
    doses = table.padded(bucket_size(table.n_events, least=8))
    obs = [h["EVID"] != 1 for h in cols]
    tb = bucket_size(max(1, max(int(o.sum()) for o in obs)), least=8)
    times, y, mask = np.zeros((n, tb)), np.zeros((n, tb)), np.zeros((n, tb), bool)
    for i, (h, o) in enumerate(zip(cols, obs)):
        t, dv = h["TIME"][o], h["DV"][o]
        k = t.size
        last = t[-1] if k else 0.0
        times[i, :k], times[i, k:] = t, last + np.arange(1, tb - k + 1)
        fitted = (h["EVID"][o] == 0) & (h["MDV"][o] == 0) & np.isfinite(dv)
        mask[i, :k], y[i, :k] = fitted, np.where(fitted, dv, 0.0)
    idx = np.minimum(np.arange(n_pad), n - 1)
    cov = {k: v[idx] for k, v in tm.covariate_arrays(covs).items()}
    dose = tuple(np.asarray(getattr(doses, f))[idx] for f in ("time", "amt", "rate", "cmt", "ss", "ii"))
    subjects = {"cov": cov, "dose": dose, "t": times[idx], "y": y[idx],
                "mask": mask[idx] & (np.arange(n_pad) < n)[:, None]}
    return subjects, bool(np.any(doses.rate != 0)), event_slots(doses.ss)
