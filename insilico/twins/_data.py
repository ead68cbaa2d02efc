"""Rows added to a twin (NONMEM columns) and a patient's history as the padded arrays the
vmapped posterior and prediction kernels read.

Rows: columns ``ID`` (optional for one patient), ``TIME`` (h from the twin's time origin),
``AMT`` (mg), ``RATE`` (mg/h), ``CMT``, ``EVID`` (0 level, 1 dose, 2 no observation), ``II``,
``ADDL``, ``SS``, ``MDV``, ``DV`` (the prior's fitted output, in its units: mg/L for ``conc``)
and the prior's covariates.
Refused, naming the column: an unknown column (a level belongs in ``DV``, in the model's units;
no ``CONC_UGL``-style columns), no rows, a level on a dose record, an amount on a level record,
a level record without a value, a dose without an amount, and -- for outputs that are zero
before any dose (drug concentrations) -- a level at or before the first dose.

Time-varying covariates (as `insilico.estimation` reads NONMEM data, ``covariate_interpolation``
of the prior). The covariates given at creation are the baseline, in force before any row. A row
that carries a covariate value sets it at the row's time; an empty cell or ``.`` (NONMEM's null)
gives none, and the value in force carries on. Every row of the history (all versions, stably
sorted by TIME) then has the value in force, and a change between consecutive rows (the baseline
counting as the row before the first) is a change of the individual parameters:

* ``locf`` (the prior's default): the new value holds from its row's time on (a dose or level at
  that time takes it);
* ``nocb``: it holds back to the previous row's time (the twin's origin, 0 h, for the first row).

The piecewise solve is `insilico.engine.solve_subject` with ``change_t``, as in estimation. A
missing value (NaN, None) in a covariate column, a value that is not a number (or not a category
of the prior), a non-positive value under a power effect, and a value for a covariate the twin's
prior does not use are refused, naming the row and the column. Future covariates (forecasts)
change at the regimen's start.

Several observed outputs (a prior whose population model maps ``outputs`` {DVID: output}, with
``residual_errors``, as `insilico.estimation` fits a PK/PD model): a level row's ``DVID`` says
which output its DV measures, by that same map (the DVID numbers of the population model, nothing
else). A level without a DVID (no column, or an empty cell / ``.``) measures the prior's primary
output ``output``; a history stored before DVIDs existed reads the same way. Refused, naming the
row and ``data.DVID``: a DVID that is not an integer, one the prior does not map to an output, a
DVID other than 0 on a dose or EVID 2 record (0 is NONMEM's usual filler there; it is stored as
none), and -- for a prior with one observed output and no ``outputs`` map -- two different DVIDs
among the history's levels (estimation's rule: map each DVID to an output first). Two levels of
one output at one time are refused; levels of two different outputs may share a time. The "level
at or before the first dose" rule applies to each output without a baseline (a concentration),
not to one that is nonzero before any dose (a biomarker, ANC).

Occasions (a prior with inter-occasion variability, ``iov``; as `insilico.estimation` reads them):
each row's occasion is its value in the prior's ``iov.column`` (default ``OCC``, matched
case-insensitively), an integer 1..K with K = ``iov.occasions`` (the most occasions a history may
hold) on every row; between rows it follows ``covariate_interpolation`` like a time-varying
covariate. Without that column, a prior with ``iov.starts`` places occasion k from ``starts[k]`` h
on the twin's clock (the first also before its start; a row exactly at a start is in the new
occasion); a prior without ``starts`` refuses the rows (`SpecError` ``data.<column>``). One history
takes all its occasions from the column or all from ``starts``. Refused, naming the row and the
column: an empty cell, a value that is not an integer 1..K. The history carries each row's occasion
in the column `OCC` (NaN: from ``starts``), and every patient of a prior with IOV takes the
piecewise solve (``occ``: each interval's occasion, 0-based, as estimation's subjects).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from insilico.batching import bucket_size
from insilico.dosing import Dose, Regimen, dose_table, event_slots
from insilico.errors import SpecError
from insilico.store import ROW_COLUMNS

__all__ = ["OCC", "batch_arrays", "carried", "check_history", "covariate_rows", "covariate_schedule", "dvid_rows",
           "first_values", "history_columns", "history_frame", "in_force", "normalise_rows", "occasion_rows",
           "occasions_of", "read_table", "rows_of", "schedule_arrays", "stack_schedules", "varies"]

OCC = "__OCC__"      # a history's column of row occasions (1-based; NaN: from iov.starts)

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


def normalise_rows(data, covariates: tuple, *, need_id: bool = False, occasions: tuple = ()) -> pd.DataFrame:
    """The rows of ``data`` (CSV path or DataFrame) checked (module docstring) as a DataFrame
    with ``ID`` (str, when given), `ROW_COLUMNS` (float), the covariate columns present and the
    occasion columns ``occasions`` (the priors' ``iov.column``; upper case, as read, checked by
    `occasion_rows`) present."""
    df = read_table(data)
    df.columns = [str(c).strip().upper() for c in df.columns]
    if len(set(df.columns)) != len(df.columns):
        raise SpecError("data", "two columns have the same name (names are case-insensitive)")
    if df.empty:
        raise SpecError("data", "no rows: an update adds at least one dose or level")
    allowed = {"ID", *ROW_COLUMNS, "DVID", *(c.upper() for c in covariates), *(c.upper() for c in occasions)}
    for c in df.columns:
        if c not in allowed:
            raise SpecError(f"data.{c}", f"unknown column {c!r}: a level goes in DV, in the units of the prior's "
                                         f"output; allowed columns: ID, {', '.join(ROW_COLUMNS)}, DVID"
                                         + (f" and the covariates {', '.join(covariates)}" if covariates else "")
                                         + (f" and the occasion column {', '.join(occasions)}" if occasions else ""))
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
    if "DVID" in df.columns:
        dvid = _numbers(df, "DVID")
        given = np.isfinite(dvid)
        if (given & (dvid != np.round(dvid))).any():
            raise _bad("DVID", given & (dvid != np.round(dvid)), "DVID must be an integer (the population model's "
                                                                 "outputs map DVIDs to model outputs)")
        if (given & (evid != 0) & (dvid != 0)).any():
            raise _bad("DVID", given & (evid != 0) & (dvid != 0), "a DVID on a record that is not a level "
                                                                  "(EVID 1 or 2); it measures nothing (leave it "
                                                                  "empty or 0)")
        out["DVID"] = np.where(evid != 0, np.nan, dvid)
    for c in covariates:
        if c.upper() in df.columns:
            out[c] = df[c.upper()].to_numpy()
    for c in occasions:
        if c.upper() in df.columns:
            out[c.upper()] = df[c.upper()].to_numpy()
    return pd.DataFrame(out)


def rows_of(df: pd.DataFrame) -> dict:
    """{column: float array} of `ROW_COLUMNS` (the form a twin version stores)."""
    return {c: df[c].to_numpy(float) for c in ROW_COLUMNS}


def dvid_rows(tm, df: pd.DataFrame, pid: str, earlier=None) -> np.ndarray | None:
    """The DVIDs the rows ``df`` (from `normalise_rows`) carry, (n,) float with NaN where none
    (every non-level row), or None without a DVID column; checked against the prior (module
    docstring), `SpecError` ``data.DVID`` naming the row (the data's row number). ``earlier``:
    the DVIDs of the history's earlier rows (a prior with one observed output and no ``outputs``
    map accepts one DVID value in the whole history)."""
    if "DVID" not in df.columns:
        return None
    dvid = df["DVID"].to_numpy(float)
    rownum = _rownum(df)
    given = np.isfinite(dvid)
    if tm.dvids:
        bad = given & ~np.isin(dvid, [float(k) for k in tm.dvids])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            mapped = ", ".join(f"{k}: {v}" for k, v in sorted(tm.dvids.items()))
            raise SpecError("data.DVID", f"row {rownum[i]}: {pid}: DVID {dvid[i]:g} is not mapped to an output of "
                                         f"the twin's prior (outputs: {mapped})")
        return dvid
    seen = np.asarray(earlier, float) if earlier is not None else np.zeros(0)
    seen = seen[np.isfinite(seen)]
    first = seen[0] if seen.size else (dvid[given][0] if given.any() else np.nan)
    bad = given & (dvid != first)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SpecError("data.DVID", f"row {rownum[i]}: {pid}: DVID {dvid[i]:g}, but the history's levels also have "
                                     f"DVID {first:g} and the twin's prior observes one output ({tm.output}) with no "
                                     "outputs map: map each DVID to a model output in the prior (outputs: {1: conc, "
                                     "2: effect}) and give each its residual_errors")
    return dvid


def carried(tm, parts: list[dict]) -> tuple:
    """The columns a history carries besides `ROW_COLUMNS`: the prior's covariates, `OCC` with
    IOV, and ``DVID`` when the prior observes several outputs or some rows gave one."""
    dvid = tm.several or any("DVID" in p for p in parts)
    return (*_names(tm), *(("DVID",) if dvid else ()))


def _rownum(df: pd.DataFrame) -> np.ndarray:
    return np.asarray(df.index) + 1 if pd.api.types.is_integer_dtype(df.index) else np.arange(1, len(df) + 1)


def occasion_rows(tm, df: pd.DataFrame, pid: str, earlier=None) -> np.ndarray | None:
    """Each row's occasion (n,) float, 1-based, from the prior's ``iov.column`` of the rows ``df``
    (from `normalise_rows`), or None: no IOV, or no column under a prior with ``iov.starts``
    (occasions by TIME). Checked (module docstring), `SpecError` ``data.<column>`` naming the row
    (the data's row number); ``earlier``: the occasions of the history's earlier rows (one source
    per history)."""
    if not tm.n_kappa:
        return None
    column, k = tm.spec.iov.column, tm.occasions
    field, col = f"data.{column}", column.upper()
    seen = np.asarray(earlier, float) if earlier is not None else np.zeros(0)
    if col not in df.columns:
        if not tm.spec.iov.starts:
            raise SpecError(field, f"column missing: {pid}: the twin's prior has inter-occasion variability "
                                   f"({k} occasions of {', '.join(tm.pop.iov_names)}); give each row's occasion "
                                   f"1..{k} in {column} (iov.column), or occasion start times in the prior "
                                   "(iov.starts)")
        if np.isfinite(seen).any():
            raise SpecError(field, f"column missing: {pid}: the history's earlier rows gave their occasions in "
                                   f"{column}; give it on every row (one source of occasions per history)")
        return None
    raw = df[col]
    null = raw.isna().to_numpy() | raw.astype(str).str.strip().isin(["", "."]).to_numpy()
    vals = pd.to_numeric(raw.where(~null), errors="coerce").to_numpy(float)
    bad = ~(np.isfinite(vals) & (vals == np.round(vals)) & (vals >= 1) & (vals <= k))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SpecError(field, f"row {_rownum(df)[i]}: {pid}: {column} {raw.iloc[i]!r} is not an occasion of the "
                               f"twin's prior: give an integer 1..{k} (iov.occasions: the most occasions of a "
                               "history) on every row")
    if seen.size and not np.isfinite(seen).any():
        raise SpecError(field, f"{pid}: the history's earlier rows took their occasions from iov.starts; leave "
                               f"{column} out (one source of occasions per history)")
    return vals


def _cell_kinds(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(empty, missing) masks of a covariate column: empty = ``""`` or ``"."`` (no value given on
    the row), missing = NaN / None (refused in a twin's own covariate column)."""
    missing = col.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return np.zeros(len(col), bool), missing
    text = col.astype(str).str.strip()
    empty = text.isin(["", "."]).to_numpy() & ~missing
    return empty, missing


def covariate_rows(tm, df: pd.DataFrame, pid: str, batch_columns: tuple = ()) -> dict:
    """{name: (n,) float}: the values of the prior's covariates that the rows ``df`` carry
    (`TwinModel.code`: numbers or category indices; NaN where a row gives none), for the
    covariate columns present. `SpecError` ``data.NAME`` naming the row (the data's row number)
    for a missing or invalid value, and for a value of a column in ``batch_columns`` (other
    twins' covariates in a fleet batch) that this twin's prior does not use."""
    out = {}
    rownum = _rownum(df)
    for c in batch_columns:
        if c in df.columns and c not in tm.covariates:
            empty, missing = _cell_kinds(df[c])
            given = ~empty & ~missing
            if given.any():
                i = int(np.flatnonzero(given)[0])
                raise SpecError(f"data.{c}", f"row {rownum[i]}: {pid}: the twin's prior does not use covariate {c} "
                                             f"(its covariates: {', '.join(tm.covariates) or 'none'})")
    for c in tm.covariates:
        if c not in df.columns:
            continue
        col = df[c]
        empty, missing = _cell_kinds(col)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise SpecError(f"data.{c}", f"row {rownum[i]}: {pid}: no value (NaN) for covariate {c}; leave the cell "
                                         "empty or '.' to keep the value in force")
        vals = np.full(len(col), np.nan)
        for i in np.flatnonzero(~empty):
            v = tm.check_value(c, col.iloc[i], f"data.{c}", f"row {rownum[i]}: {pid}: covariate {c} = ")
            vals[i] = tm.code(c, v)
        out[c] = vals
    return out


def first_values(tm, df: pd.DataFrame, values: dict, pid: str) -> dict:
    """A new twin's baseline from its rows: each covariate's first value given, in TIME order
    (`covariate_rows` ``values``); `SpecError` ``data.NAME`` when no row gives one."""
    order = np.argsort(df["TIME"].to_numpy(float), kind="stable")
    out = {}
    for c in tm.covariates:
        v = values.get(c, np.full(len(df), np.nan))[order]
        ok = np.flatnonzero(np.isfinite(v))
        if not ok.size:
            raise SpecError(f"data.{c}", f"{pid}: no value for covariate {c} (a new twin takes its covariates from "
                                         "its rows)")
        out[c] = tm.value(c, v[ok[0]])
    return out


def _names(tm) -> tuple:
    """The columns of a schedule: the prior's covariates, then `OCC` with IOV."""
    return (*tm.covariates, OCC) if tm.n_kappa else tuple(tm.covariates)


def _with_starts(tm, t, given, own, until) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occasions in a schedule (module docstring): rows after ``until`` (a forecast's start) lose
    theirs; a history without occasion values takes ``iov.starts``: a row at each later start (a
    change at its own time) up to the last row, or up to ``until``."""
    given = given.copy()
    if until is not None:
        given[t > until, -1] = np.nan
    starts = tm.spec.iov.starts
    if not starts or np.isfinite(given[:, -1]).any():
        return t, given, own
    end = until if until is not None else (t[-1] if t.size else -np.inf)
    for k, s in enumerate(starts[1:], start=2):
        if s <= end:
            i = int(np.searchsorted(t, s, side="left"))
            row = np.full(given.shape[1], np.nan)
            row[-1] = k
            t, given, own = np.insert(t, i, s), np.insert(given, i, row, axis=0), np.insert(own, i, True)
    return t, given, own


def _filled(tm, hist, baseline: dict, extra=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times (n,), values in force (n+1, m) with the baseline first, own (n,): rows whose change
    happens at their own time whatever the convention) for the history plus an optional
    ``extra`` row (time, {name: value}) of future covariates (and occasion). With IOV the last
    column is the occasion: the first row's, else 1, before the first row."""
    names = _names(tm)
    t = np.asarray(hist["TIME"], float)
    given = np.stack([np.asarray(hist[c], float) if c in hist else np.full(t.size, np.nan) for c in names], 1) \
        if names else np.zeros((t.size, 0))
    own = np.zeros(t.size, bool)
    x0 = np.array([tm.code(c, baseline[c]) for c in tm.covariates])
    if tm.n_kappa:
        first = given[np.isfinite(given[:, -1]), -1]
        x0 = np.r_[x0, first[0] if first.size else 1.0]
        t, given, own = _with_starts(tm, t, given, own, None if extra is None else extra[0])
    if extra is not None:
        te, vals = extra
        row = np.array([tm.code(c, vals[c]) if c in vals else np.nan for c in names])
        k = int(np.searchsorted(t, te, side="right"))        # after the history's rows at that time
        t, given, own = np.insert(t, k, te), np.insert(given, k, row, axis=0), np.insert(own, k, True)
    full = np.vstack([x0[None], given])
    ok = np.isfinite(full)
    idx = np.maximum.accumulate(np.where(ok, np.arange(full.shape[0])[:, None], 0), axis=0)
    return t, np.take_along_axis(full, idx, axis=0), own


def covariate_schedule(tm, hist, baseline: dict, future: tuple | None = None) -> tuple[np.ndarray, dict]:
    """The piecewise-constant covariates of one history (module docstring): change times (C,) h
    and {name: (C+1,) codes}, value ``j`` in force from change ``j-1`` to change ``j`` (C = 0:
    constant); with IOV also {`OCC`: (C+1,) occasions, 1-based}. ``future``: (time, {name:
    value}) changes at that time (forecasts; the occasion of the regimen to come as `OCC`)."""
    t, filled, own = _filled(tm, hist, baseline, future)
    r = np.flatnonzero(np.any(filled[1:] != filled[:-1], axis=1))      # row r differs from the one before
    if tm.problem.nocb:
        change_t = np.where(own[r], t[r], np.r_[0.0, t][r])
    else:
        change_t = t[r]
    seg = filled[np.r_[0, r + 1]]
    return change_t, {c: seg[:, j] for j, c in enumerate(_names(tm))}


def in_force(tm, hist, baseline: dict) -> dict:
    """The covariates in force after the history's last row ({name: value or label})."""
    _, filled, _ = _filled(tm, hist, baseline)
    return {c: tm.value(c, filled[-1, j]) for j, c in enumerate(tm.covariates)}


def occasions_of(tm, hist, baseline: dict) -> tuple[list, int | None]:
    """(the occasions (1-based) in force at some time from the first to the last row of the
    history, the occasion in force at its last row); ([], None) without IOV or rows."""
    if not tm.n_kappa or not np.asarray(hist["TIME"]).size:
        return [], None
    _, filled, _ = _filled(tm, hist, baseline)
    return sorted({int(x) for x in filled[1:, -1]}), int(filled[-1, -1])


def history_columns(parts: list[dict], covariates: tuple = ()) -> dict:
    """The rows of several versions ({column: array} each, oldest first) as one {column: array},
    stably sorted by TIME (rows at the same time keep the order they were added in): the form
    fleets use (no DataFrame per patient). ``covariates``: covariate columns carried along
    (`covariate_rows` codes; NaN where a row, or a whole part, gives none)."""
    cols = (*ROW_COLUMNS, *covariates)

    def column(p, c):
        return np.asarray(p[c], float).reshape(-1) if c in p else np.full(np.asarray(p["TIME"]).size, np.nan)

    blocks = [np.stack([column(p, c) for c in cols], axis=1) for p in parts]
    m = np.concatenate(blocks) if blocks else np.zeros((0, len(cols)))
    return dict(zip(cols, m[np.argsort(m[:, 0], kind="stable")].T))


def history_frame(parts: list[dict], covariates: tuple = ()) -> pd.DataFrame:
    """`history_columns` as a DataFrame."""
    return pd.DataFrame(history_columns(parts, covariates))


def _columns(h) -> dict:
    """{column: float array} of a history (DataFrame or `history_columns`)."""
    if isinstance(h, dict):
        return h
    return {c: h[c].to_numpy(float) for c in h.columns}


def _output_of(tm, hist) -> np.ndarray:
    """Each history row's index into ``tm.outputs`` (0: the primary output; non-level rows 0)."""
    if tm.several and "DVID" in hist:
        return tm.output_index(np.asarray(hist["DVID"], float))
    return np.zeros(np.asarray(hist["TIME"]).size, dtype=np.int32)


def check_history(tm, hist, pid: str) -> None:
    """Refuse what the whole history cannot hold (module docstring): levels at or before the
    first dose of an output without baseline, two levels of one output at one time."""
    t, evid, dv = (np.asarray(hist[c], float) for c in ("TIME", "EVID", "DV"))
    out = _output_of(tm, hist)
    obs = (evid == 0) & np.isfinite(dv)
    baselines = np.asarray(tm.baselines or (tm.baseline,), bool)
    no_base = obs & ~baselines[out]
    if no_base.any():
        first = t[evid == 1].min() if (evid == 1).any() else np.inf
        early = no_base & (t <= first)
        if early.any():
            i = int(np.flatnonzero(early)[0])
            where = f"the first dose (TIME {first:g} h)" if np.isfinite(first) else "any dose (there is none)"
            name = tm.outputs[out[i]] if tm.outputs else tm.output
            raise SpecError("data.TIME", f"{pid}: a level at TIME {t[i]:g} h, at or before {where}; the "
                                         f"prior's output {name!r} is 0 before a dose (no baseline model)")
    rec = evid != 1
    times, which = t[rec], out[rec]
    if np.unique(np.stack([times, which.astype(float)]), axis=1).shape[1] != times.size:
        if not tm.several:
            raise SpecError("data.TIME", f"{pid}: two levels (or EVID 2 records) at the same time")
        key = times + 0j + which * 1j
        _, first_of, counts = np.unique(key, return_index=True, return_counts=True)
        j = first_of[np.flatnonzero(counts > 1)[0]]
        raise SpecError("data.TIME", f"{pid}: two levels (or EVID 2 records) of output {tm.outputs[which[j]]!r} at "
                                     f"the same time ({times[j]:g} h); levels of different outputs may share a time")


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
    out = np.zeros((n, tb), dtype=np.int32)
    for i, (h, o) in enumerate(zip(cols, obs)):
        t, dv = h["TIME"][o], h["DV"][o]
        k = t.size
        last = t[-1] if k else 0.0
        times[i, :k], times[i, k:] = t, last + np.arange(1, tb - k + 1)
        fitted = (h["EVID"][o] == 0) & (h["MDV"][o] == 0) & np.isfinite(dv)
        mask[i, :k], y[i, :k] = fitted, np.where(fitted, dv, 0.0)
        out[i, :k] = _output_of(tm, h)[o]
    idx = np.minimum(np.arange(n_pad), n - 1)
    cov = {k: v[idx] for k, v in tm.covariate_arrays(covs).items()}
    dose = tuple(np.asarray(getattr(doses, f))[idx] for f in ("time", "amt", "rate", "cmt", "ss", "ii"))
    subjects = {"cov": cov, "dose": dose, "t": times[idx], "y": y[idx],
                "mask": mask[idx] & (np.arange(n_pad) < n)[:, None]}
    if tm.several:
        subjects["out"] = out[idx]      # each record's output (index into tm.outputs), as estimation's records
    if tm.n_kappa or any(c in h for h in cols for c in tm.covariates):
        pieces = schedule_arrays(tm, [covariate_schedule(tm, h, v) for h, v in zip(cols, covs)])
        if pieces is not None:
            subjects.update(_index_tree(pieces, idx))
    return subjects, bool(np.any(doses.rate != 0)), event_slots(doses.ss)


def _index_tree(tree: dict, idx) -> dict:
    """Every array of a nested dict indexed by ``idx`` along its leading axis."""
    return {k: _index_tree(v, idx) if isinstance(v, dict) else np.asarray(v)[idx] for k, v in tree.items()}


def schedule_arrays(tm, schedules: list) -> dict | None:
    """The subject entries (`insilico.estimation.Problem.subjects`) of several `covariate_schedule`
    results: {"cov": {name: (N, C+1)}, "change_t": {"locf" | "nocb": (N, C)}} and with IOV
    "occ": (N, C+1) each interval's occasion index (0-based); None when nothing changes (no IOV)."""
    change_t, values = stack_schedules(tm, schedules)
    if change_t is None:
        return None
    out = {"change_t": {"nocb" if tm.problem.nocb else "locf": change_t}}
    if tm.n_kappa:
        out["occ"] = np.asarray(values.pop(OCC)).astype(np.int32) - 1
    return {"cov": values, **out}


def varies(tm, hist, baseline: dict) -> bool:
    """Whether this patient takes the piecewise solve: a covariate of the history changes, or the
    prior has IOV (every patient, as in estimation)."""
    if tm.n_kappa:
        return True
    return any(c in hist for c in tm.covariates) and covariate_schedule(tm, hist, baseline)[0].size > 0


def stack_schedules(tm, schedules: list) -> tuple[np.ndarray | None, dict]:
    """`covariate_schedule` results of several patients as (N, C) change times and {name: (N, C+1)}
    values, C padded to `insilico.batching.bucket_size` with copies of each row's last change
    (inert: an empty interval, the same value; at 0 h without a change); (None, {}) when no value
    changes and the prior has no IOV."""
    n_changes = max(ct.size for ct, _ in schedules)
    if n_changes == 0 and not tm.n_kappa:
        return None, {}
    c_pad = bucket_size(max(1, n_changes), least=1)
    change_t = np.zeros((len(schedules), c_pad))
    values = {c: np.zeros((len(schedules), c_pad + 1), dtype=np.int32 if c in tm.categories else float)
              for c in _names(tm)}
    for i, (ct, vals) in enumerate(schedules):
        k = ct.size
        change_t[i, :k], change_t[i, k:] = ct, (ct[-1] if k else 0.0)
        for c, v in vals.items():
            values[c][i, :k + 1], values[c][i, k + 1:] = v, v[-1]
    return change_t, values
