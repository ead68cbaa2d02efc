"""Write per-subject event histories as a NONMEM data set (the inverse of `read_nonmem`).

Columns: ``ID TIME AMT RATE CMT EVID MDV DV II ADDL SS``, then the per-observation items
``DVID``, ``BLQ``, ``LLOQ`` the data have, then the covariates. From `NonmemData` read by
`read_nonmem` each record keeps its own covariate values (``NonmemData.covariate_records``), so
time-varying covariates (a value that changes within an ID) are written record by record; from a
`DoseTable` (or `NonmemData` without per-record values) one value per ID is repeated on each of its
records. Units as read: TIME and II h, AMT mg, RATE mg/h. Missing values are NM-TRAN's null
item ``.``. Numbers are written with the shortest decimal that reads back as the same float64, so
`read_nonmem` of the file gives the same events bit for bit.

Records (NONMEM Users Guide Part V, "Data items"; the semantics of `insilico.dosing`):

* a dose: EVID 1 (EVID 4 when the system is reset before it), MDV 1, AMT, RATE (> 0 mg/h, 0 a
  bolus, −1 / −2 modelled rate / duration), CMT (the model's 1-based state number; ``.`` for a
  dose read without CMT, i.e. the model's default dose compartment), II, ADDL, SS (0/1/2);
* a reset without a dose (no AMT, RATE, II, ADDL or SS): EVID 3, MDV 1;
* an observation: EVID 0, MDV 0, DV; a record time without an observation: MDV 1, DV ``.``, with
  the record's EVID as read (NONMEM distinguishes EVID 2, "other event", from an EVID 0 record
  with MDV 1, a missing observation; `read_nonmem` reads both as a time with DV missing, and
  ``covariate_records["EVID"]`` keeps which): EVID 2 stays 2, EVID 0 with MDV 1 (or a null DV)
  stays EVID 0 with MDV 1. A record given a DV value (``result``, ``dv``) is an observation, EVID
  0 MDV 0. Without per-record EVIDs (a `DoseTable`) a time without observation is EVID 2.

Within an ID records are sorted by TIME; at one time the observation records come first (an
observation at a dose time is pre-dose: insilico's and mrgsolve's default, NONMEM's when the
observation record precedes the dose), then the dose records in their order. The one exception:
an ID whose time-varying covariates take different values on records at the same TIME keeps those
records in the data's order (the last record at a time gives the value that holds after it under
LOCF, the first the value before it under NOCB: `insilico.engine.ParameterSchedule`), so the
re-read data give the same parameter schedule.

Sources: `NonmemData` (the dose records as read, so ADDL and II are kept) or a `DoseTable`
(expanded: one record per dose, ADDL 0; its ``ss`` holds SS + 4·reset, decoded as
``ss & DoseTable.SS_MASK`` and ``ss & DoseTable.RESET``; a slot with no amount and no reset is
padding and is not written). DV comes from the data, from a `simulate` result on the data's
records (``result``, output ``output``: every record that has an observation gets the simulated
value) or from ``dv``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from insilico.dosing._nonmem import RECORD, STANDARD, NonmemData
from insilico.dosing._regimen import Regimen
from insilico.dosing._table import DoseTable
from insilico.errors import SpecError

__all__ = ["COLUMNS", "nonmem_frame", "write_nonmem", "write_nonmem_csv"]

COLUMNS = ("ID", "TIME", "AMT", "RATE", "CMT", "EVID", "MDV", "DV", "II", "ADDL", "SS")
"""The NONMEM data items written, in this order (then DVID/BLQ/LLOQ and the covariates)."""
_INTEGER = ("CMT", "EVID", "MDV", "ADDL", "SS", "DVID", "BLQ")
_OBSERVATION, _DOSE = 0, 1    # sort key at equal TIME: observations before doses (pre-dose)


def _model(model):
    if isinstance(model, str):
        from insilico.models import get_model
        return get_model(model)
    return model


def _dose_rows(regimen: Regimen, model) -> list[dict]:
    """Dose and reset records of one subject's regimen, in its order."""
    rows = []
    for d in regimen.doses:
        cmt = np.nan if d.cmt is None else model.compartment_index(d.cmt, where="data.CMT") + 1
        rate = d.infusion_rate
        pure_reset = d.reset and not (d.amt or rate or d.ii or d.addl or d.ss)
        rows.append({"TIME": d.time, "AMT": d.amt, "RATE": rate, "CMT": cmt,
                     "EVID": 3 if pure_reset else 4 if d.reset else 1, "II": d.ii, "ADDL": d.addl, "SS": d.ss})
    return rows


def _table_rows(table: DoseTable, i: int) -> list[dict]:
    """Dose and reset records of subject ``i`` of an expanded dose table (padding slots left out)."""
    rows = []
    for k in range(table.n_events):
        code = int(table.ss[i, k])
        reset, amt, rate = bool(code & DoseTable.RESET), float(table.amt[i, k]), float(table.rate[i, k])
        ss, ii = code & DoseTable.SS_MASK, float(table.ii[i, k])
        if amt == 0 and rate == 0 and not reset:
            continue
        pure_reset = reset and not (amt or rate or ii or ss)
        rows.append({"TIME": float(table.time[i, k]), "AMT": amt, "RATE": rate, "CMT": int(table.cmt[i, k]) + 1,
                     "EVID": 3 if pure_reset else 4 if reset else 1, "II": ii, "ADDL": 0, "SS": ss})
    return rows


def _observation_rows(times, dv, records: dict, i: int, evid=None) -> list[dict]:
    """Record times of subject ``i`` (NaN times are padding): EVID 0 with a DV, else the record's
    EVID as read (``evid`` (N, T): 0 or 2) with MDV 1, EVID 2 without ``evid``."""
    rows = []
    for k in np.flatnonzero(np.isfinite(times[i])):
        value = float(dv[i, k])
        seen = np.isfinite(value)
        missing = 2 if evid is None else int(evid[i, k])
        rows.append({"TIME": float(times[i, k]), "EVID": 0 if seen else missing, "MDV": 0 if seen else 1,
                     "DV": value if seen else np.nan,
                     **{c: float(v[i, k]) for c, v in records.items()}})
    return rows


def _per_record(data: NonmemData):
    """From `read_nonmem`'s per-record table: (EVID of each record time (N, T), {ID index: covariate rows
    of its observation records (T_i, C)}, {ID index: covariate rows of its dose records in regimen
    order}, {ID index: 1-based data rows of the observation then the dose records}), or None when the
    data carry no per-record values (then covariates are one per ID). `SpecError` ``data`` when the
    per-record table does not match the records."""
    rec = data.covariate_records
    if rec is None or "ROW" not in data.records:
        return None
    covs = [c for c in rec.columns if c not in ("ID", "TIME", "EVID")]
    rows = data.records["ROW"]
    evid = np.zeros(data.times.shape, int)
    obs_cov, dose_cov, order = {}, {}, {}
    ids = rec["ID"].to_numpy(dtype=object).astype(str)
    rec_t, rec_evid = rec["TIME"].to_numpy(float), rec["EVID"].to_numpy()
    is_dose = np.isin(rec_evid, [1, 3, 4])
    dose_rows: dict[str, list] = {}
    for j in np.flatnonzero(is_dose):
        dose_rows.setdefault(ids[j], []).append(j)
    for i, sid in enumerate(data.ids):
        k = np.flatnonzero(data.observed[i])
        r = rows[i, k].astype(int) - 1
        if (r < 0).any() or (r >= len(rec)).any() or (ids[r] != str(sid)).any() \
                or not np.array_equal(rec_t[r], data.times[i, k]):
            raise SpecError("data", f"ID {sid}: the per-record values (covariate_records) do not match the "
                                    "observation records (ROW); read the data with insilico.dosing.read_nonmem")
        evid[i, k] = rec_evid[r]
        obs_cov[i] = rec.iloc[r][covs].reset_index(drop=True)
        d = np.asarray(dose_rows.get(str(sid), []), int)
        if len(d) != len(data.regimens[i].doses):
            raise SpecError("data", f"ID {sid}: {len(d)} dose records in covariate_records but "
                                    f"{len(data.regimens[i].doses)} doses in the regimen")
        dose_cov[i] = rec.iloc[d][covs].reset_index(drop=True)
        order[i] = np.r_[r, d] + 1.0
    return evid, obs_cov, dose_cov, order


def _simulated_dv(data: NonmemData, result, output: str) -> np.ndarray:
    """DV (N, T) from a `simulate` result on the data's records: the simulated ``output`` where
    the data have an observation, NaN elsewhere."""
    if output not in result:
        raise SpecError("output", f"the simulation result has no output {output!r} (it has "
                                  f"{sorted(k for k in result.data_vars)})")
    if result.attrs.get("sampling") != "records":
        raise SpecError("result", "simulate the data at their own record times (no `times` argument) to fill DV")
    values = np.asarray(result[output].transpose("subject", ...).values, float)
    ids = np.asarray(result["subject"].values)
    if values.shape != data.times.shape or not np.array_equal(ids.astype(str), np.asarray(data.ids).astype(str)):
        raise SpecError("result", f"the simulation result (subjects {ids.tolist()[:5]}…, shape {values.shape}) is "
                                  f"not of these data (IDs {np.asarray(data.ids).tolist()[:5]}…, shape "
                                  f"{data.times.shape})")
    return np.where(data.observed & np.isfinite(data.dv), values, np.nan)


def _as_2d(values, n: int, name: str) -> np.ndarray:
    a = np.asarray(values, float)
    if a.ndim == 1:
        a = np.broadcast_to(a, (n, a.shape[0]))
    if a.ndim != 2 or a.shape[0] != n:
        raise SpecError(name, f"must be (subjects, times) with {n} subjects or one row of times, got shape {a.shape}")
    return a


def _from_data(data: NonmemData, model, result, output: str, dv):
    """(ids, record times, DV, per-record items, dose rows per subject, covariates) of `NonmemData`."""
    if result is not None and dv is not None:
        raise SpecError("dv", "give either a simulation result or dv values, not both")
    per_record = _per_record(data)
    if per_record is None and data.varying:
        raise SpecError("data", f"covariates {list(data.varying)} change within an ID (time-varying) but the data "
                                "carry no per-record values (covariate_records); read them with read_nonmem")
    n = len(data.ids)
    values = _simulated_dv(data, result, output) if result is not None else (
        data.dv if dv is None else _as_2d(dv, n, "dv"))
    if values.shape != data.times.shape:
        raise SpecError("dv", f"shape {values.shape} differs from the records' {data.times.shape}")
    records = {c: v for c, v in data.records.items() if c in RECORD}
    return (np.asarray(data.ids), np.where(data.observed, data.times, np.nan), values, records,
            [_dose_rows(r, model) for r in data.regimens], data.covariates.reset_index(drop=True), per_record)


def _from_table(table: DoseTable, times, dv, ids, covariates):
    """The same as `_from_data` for an expanded dose table and record times."""
    n = table.n_subjects
    if times is None:
        raise SpecError("times", "record times are required with a dose table")
    obs_t = _as_2d(times, n, "times")
    values = np.full(obs_t.shape, np.nan) if dv is None else _as_2d(dv, n, "dv")
    if values.shape != obs_t.shape:
        raise SpecError("dv", f"shape {values.shape} differs from the times' {obs_t.shape}")
    ids = np.arange(1, n + 1) if ids is None else np.asarray(ids)
    if len(ids) != n:
        raise SpecError("ids", f"{len(ids)} IDs for {n} subjects")
    covariates = pd.DataFrame(index=range(n)) if covariates is None else covariates.reset_index(drop=True)
    if len(covariates) != n:
        raise SpecError("covariates", f"{len(covariates)} rows for {n} subjects")
    clash = [c for c in covariates.columns if str(c).upper() in STANDARD + RECORD]
    if clash:
        raise SpecError("covariates", f"columns {clash} are NONMEM data items, not covariates")
    return ids, obs_t, values, {}, [_table_rows(table, i) for i in range(n)], covariates, None


def _subject_frame(sid, obs_rows: list, dose_rows: list, records, covariates: pd.Series,
                   obs_cov: pd.DataFrame | None = None, dose_cov: pd.DataFrame | None = None,
                   order=None) -> pd.DataFrame:
    """One ID's records sorted by TIME, observations before doses at equal times (module docstring
    for the exception). ``obs_cov``/``dose_cov``: per-record covariate values (rows aligned with
    ``obs_rows``/``dose_rows``); ``order`` (the data rows of the observation then dose records)
    keeps the data's order at times where they differ; else ``covariates`` (one value per ID)."""
    obs = pd.DataFrame(obs_rows, columns=["TIME", "EVID", "MDV", "DV", *records])
    doses = pd.DataFrame(dose_rows, columns=["TIME", "AMT", "RATE", "CMT", "EVID", "II", "ADDL", "SS"])
    obs["_kind"], doses["_kind"], doses["MDV"] = _OBSERVATION, _DOSE, 1
    if obs_cov is not None:
        obs = pd.concat([obs, obs_cov.reset_index(drop=True)], axis=1)
        doses = pd.concat([doses, dose_cov.reset_index(drop=True)], axis=1)
    sub = pd.concat([f for f in (obs, doses) if len(f)] or [obs], ignore_index=True)
    keys = ["TIME", "_kind"]
    if order is not None:
        sub["_row"] = np.asarray(order, float)
        cov_cols = list(obs_cov.columns)
        clash = sub.groupby("TIME")[cov_cols].nunique(dropna=False).gt(1).any(axis=1) if cov_cols else None
        if clash is not None and clash.any():
            keys = ["TIME", "_row"]      # the data's order decides which value holds at that time
    sub = sub.sort_values(keys, kind="stable").drop(columns=[c for c in ("_kind", "_row") if c in sub])
    sub.insert(0, "ID", sid)
    if obs_cov is None:
        for c, v in covariates.items():
            sub[c] = v
    return sub


def nonmem_frame(data: NonmemData | DoseTable, model, *, result=None, output: str = "conc", times=None, dv=None,
                 ids=None, covariates: pd.DataFrame | None = None) -> pd.DataFrame:
    """The NONMEM data set of ``data`` as a DataFrame (module docstring for the records).

    data : `NonmemData` (`read_nonmem`) or an expanded `DoseTable`.
    model : the `Model` (or built-in name) the data are for: resolves compartments to CMT numbers.
    result : a `simulate` result on the `NonmemData`'s records whose ``output`` (default ``conc``,
        mg/L) becomes DV of every record with an observation (NonmemData only; not with ``dv``).
    dv : DV values (N, T) aligned with the record times (NaN: a record time without an
        observation, EVID 2); default the data's own (NonmemData) or none (a dose table).
    times, ids, covariates : with a `DoseTable` only (NonmemData carries its own): record times
        (h; (T,) for everyone or (N, T), NaN = no record), subject IDs (default 1..N) and one row per
        subject (in subject order) of covariate columns.
    """
    model = _model(model)
    if isinstance(data, NonmemData):
        given = [k for k, v in (("times", times), ("ids", ids), ("covariates", covariates)) if v is not None]
        if given:
            raise SpecError(given[0], "NonmemData carries its own record times, IDs and covariates")
        parts = _from_data(data, model, result, output, dv)
    elif isinstance(data, DoseTable):
        if result is not None:
            raise SpecError("result", "a simulation result fills DV of NonmemData; with a dose table give dv")
        parts = _from_table(data, times, dv, ids, covariates)
    else:
        raise SpecError("data", f"expected NonmemData or a DoseTable, got {type(data).__name__}")
    ids, obs_t, values, records, dose_rows, covariates, per_record = parts
    frames = []
    for i in range(len(ids)):
        if per_record is None:
            frames.append(_subject_frame(ids[i], _observation_rows(obs_t, values, records, i), dose_rows[i], records,
                                         covariates.iloc[i]))
            continue
        evid, obs_cov, dose_cov, order = per_record
        frames.append(_subject_frame(ids[i], _observation_rows(obs_t, values, records, i, evid), dose_rows[i],
                                     records, covariates.iloc[i], obs_cov[i], dose_cov[i], order[i]))
    out = pd.concat(frames, ignore_index=True)
    for c in ("AMT", "RATE", "II", "ADDL", "SS"):
        out[c] = out[c].fillna(0)
    for c in _INTEGER:
        if c in out:
            out[c] = out[c].astype("Int64")
    return out[[*COLUMNS, *records, *covariates.columns]]


def write_nonmem(path, data: NonmemData | DoseTable, model, *, overwrite: bool = False, **kwargs) -> pd.DataFrame:
    """Write the NONMEM data set of ``data`` (`nonmem_frame`, which takes ``kwargs``: ``result``,
    ``output``, ``times``, ``dv``, ``ids``, ``covariates``) to the CSV file ``path``, ``.`` for
    missing values. An existing file is replaced only with ``overwrite`` (else `SpecError`
    naming ``path``). Returns the table written; `read_nonmem` of the file gives the same events."""
    path = Path(path)
    if path.is_dir():
        raise SpecError("path", f"{path} is a folder; give the CSV file to write")
    if path.exists() and not overwrite:
        raise SpecError("path", f"{path} already exists; pass overwrite=True to replace it")
    frame = nonmem_frame(data, model, **kwargs)
    write_nonmem_csv(frame, path)
    return frame


def write_nonmem_csv(frame: pd.DataFrame, path) -> Path:
    """Write a NONMEM table (``frame``: one row per record) as CSV: ``.`` for missing values
    (NONMEM's convention), numbers in full precision (they read back exactly). The one CSV writer
    of NONMEM tables (data sets here, trial exports in `insilico.analysis.export.to_nonmem`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, na_rep=".")
    return path
