"""Import a NONMEM-style event table as per-subject dosing histories and observation times.

Columns (case-insensitive): ``ID``, ``TIME`` (h) required; ``AMT`` (mg), ``RATE`` (mg/h),
``CMT`` (1-based state number in the model's state order, so 1 = depot and 2 = central for
oral models as in ADVAN2/4), ``EVID``, ``II`` (h), ``ADDL``, ``SS``, ``MDV``, ``DV`` optional.
Every other column is kept as a covariate (its first value per subject), except the
per-record observation items ``DVID`` (integer: which model output the record measures),
``BLQ`` (0/1: below the limit of quantification) and ``LLOQ`` (the lower limit, DV units), which
are returned per observation in `NonmemData.records` (how they are used: `insilico.estimation`).
With a ``DVID`` column two observations of one ID may share a TIME if their DVIDs differ.

EVID (NONMEM Users Guide Part V, "Data items: EVID"): 0 observation, 1 dose, 2 other (an output
time without an observation), 3 reset (every state returns to the model's initial state and
infusions in progress stop, at TIME), 4 reset and dose (the reset, then the record's dose). Without
an EVID column a record with AMT > 0 is a dose, otherwise an observation. SS (Part V, "SS"): 1 the
dose is at steady state and the state is reset to it, 2 the steady state is added to the current
state (superposition), on any dose record, with II (and ADDL for the doses after it). RATE
(Part V, "RATE"): > 0 an infusion rate (mg/h), −1 the rate is the model parameter ``R<n>``, −2 the
duration is ``D<n>`` (``n`` the record's CMT; the model needs the parameter,
`insilico.models.Model.with_dose_parameters`). A negative CMT (NONMEM: turn that compartment off)
is refused.

Data are never changed silently; every problem is a `SpecError` naming the column (``data.TIME``)
and the 1-based data row (the header is not counted): an empty or missing ``ID``; a value that is
not a number or not finite (``inf``, ``nan``); a fractional ``ADDL``, ``SS``, ``EVID``, ``MDV`` or
``CMT``; ``TIME`` decreasing within an individual (NONMEM requires non-decreasing times between
resets) and an ID that reappears after another individual's records; columns whose names differ
only in case; an empty, binary, UTF-16 or non-UTF-8 file. A ``.`` is NM-TRAN's null item, read as
0 (NONMEM Users Guide Part IV, NM-TRAN: "a data item consisting of a single period is a null
item ... translated to 0"): so in ``AMT``, ``RATE``, ``II``, ``ADDL``, ``SS``, ``MDV`` it is 0 and in
``CMT`` it is the default compartment; in ``DV`` it marks a missing observation (NaN), in a
covariate a missing value (NaN); it is refused in ``ID``, ``TIME`` and ``EVID``.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from insilico.dosing._regimen import Dose, Regimen
from insilico.dosing._table import DoseTable, dose_table
from insilico.errors import SpecError

__all__ = ["NonmemData", "read_nonmem"]

STANDARD = ("ID", "TIME", "AMT", "RATE", "CMT", "EVID", "II", "ADDL", "SS", "MDV", "DV")
_INTEGER = ("CMT", "EVID", "ADDL", "SS", "MDV", "DVID", "BLQ")
RECORD = ("DVID", "BLQ", "LLOQ")     # per-observation items (not covariates)
_NULL_IS_ZERO = ("AMT", "RATE", "II", "ADDL", "SS", "MDV")   # NM-TRAN: "." reads as 0
_NULL_REFUSED = ("ID", "TIME", "EVID")


@dataclass(frozen=True)
class NonmemData:
    """Per-subject histories: ``ids`` (N,), ``doses`` (`DoseTable`), ``times`` (N, T) padded
    strictly increasing observation/output times, ``observed`` (N, T) True for real records,
    ``dv`` (N, T) with NaN where no observation, ``regimens`` (one `Regimen` per subject) and
    ``covariates`` (DataFrame indexed by ID: each subject's first value); ``varying``: the
    covariate columns whose value changes within some ID (time-varying covariates, which
    ``covariates`` does not represent: a consumer that cannot use them must refuse them);
    ``records``: per-observation arrays (N, T) aligned with ``times``: ``ROW`` (the 1-based data
    row, 0 for padding) and each of the ``DVID``, ``BLQ``, ``LLOQ`` columns the data has (NaN
    where the record leaves it empty, and for padding); ``covariate_records``: every record in data
    order with ``ID``, ``TIME``, ``EVID`` and the covariate columns (``.`` as NaN), from which
    time-varying values and ``OCC`` are read (`insilico.engine.simulate`)."""

    ids: np.ndarray
    doses: DoseTable
    times: np.ndarray
    observed: np.ndarray
    dv: np.ndarray
    regimens: list
    covariates: pd.DataFrame
    varying: tuple[str, ...] = ()
    records: dict = field(default_factory=dict)
    covariate_records: pd.DataFrame | None = None


def _read_csv(path: Path) -> pd.DataFrame:
    """The CSV at ``path`` as strings (no value interpreted yet), or SpecError ``data``."""
    if path.is_dir():
        raise SpecError("data", f"{path} is a directory; expected a CSV file")
    if not path.exists():
        raise SpecError("data", f"file not found: {path}")
    raw = path.read_bytes()
    if not raw.strip():
        raise SpecError("data", f"{path} is empty")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError("data", f"{path} is UTF-16 text; save it as UTF-8 CSV")
    if b"\x00" in raw:
        raise SpecError("data", f"{path} is a binary file, not CSV text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError("data", f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line})") from None
    header = [h.strip() for h in next(csv.reader(io.StringIO(text)))]
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise SpecError("data", f"{path} is not a readable CSV table: {str(e).strip().splitlines()[0]}") from None
    return _columns(df, header) if len(header) == len(df.columns) else df


def _columns(df: pd.DataFrame, names) -> pd.DataFrame:
    """``df`` with upper-case, stripped column names; SpecError on names equal but for case."""
    upper = [str(c).strip().upper() for c in names]
    seen: dict[str, str] = {}
    for orig, u in zip(names, upper):
        if u in seen:
            raise SpecError(f"data.{u}", f"columns {seen[u]!r} and {orig!r} differ only in case (or are "
                                         "repeated); give each column once")
        seen[u] = str(orig)
    df = df.copy()
    df.columns = upper
    return df


def _bad(where: str, mask, values, message: str):
    row = int(np.flatnonzero(np.asarray(mask))[0])
    return SpecError(f"data.{where}", f"row {row + 1}: {message} (got {values[row]!r})")


def _numeric(df: pd.DataFrame, col: str) -> np.ndarray:
    """Column ``col`` as finite floats: ``.``/empty per the NM-TRAN rule (0, NaN or refused),
    anything else that is not a finite number (or, for integer items, not an integer) refused."""
    raw = df[col].to_numpy(dtype=object)
    null = np.array([v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() in (".", "")
                     for v in raw])
    if col in _NULL_REFUSED and null.any():
        raise _bad(col, null, raw, f"{col} is missing")
    vals = pd.to_numeric(pd.Series(np.where(null, np.nan, raw), dtype=object), errors="coerce").to_numpy(float)
    bad = ~null & ~np.isfinite(vals)
    if bad.any():
        raise _bad(col, bad, raw, f"{col} must be a finite number")
    if col in _INTEGER:
        frac = ~null & (vals != np.round(vals))
        if frac.any():
            raise _bad(col, frac, raw, f"{col} must be an integer")
    if col in _NULL_IS_ZERO:
        vals = np.where(null, 0.0, vals)
    return vals


def _covariate(values: pd.Series) -> pd.Series:
    """A covariate column: numbers (``.``/empty as NaN) when every value is one, else as given."""
    s = values.astype(object)
    null = s.map(lambda v: v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() in (".", ""))
    num = pd.to_numeric(s.where(~null, np.nan), errors="coerce")
    return num if (num.notna() | null).all() else s


def _check_order(df: pd.DataFrame) -> None:
    """TIME non-decreasing within each individual, and each individual's records contiguous."""
    ids = df["ID"].to_numpy(dtype=object)
    t = df["TIME"].to_numpy(float)
    new = np.r_[True, ids[1:] != ids[:-1]]
    seen: set = set()
    for i in np.flatnonzero(new):
        if ids[i] in seen:
            raise SpecError("data.ID", f"row {i + 1}: ID {ids[i]!r} appears again after other IDs; keep each "
                                       "individual's records together")
        seen.add(ids[i])
    back = ~new & (np.r_[np.inf, np.diff(t)] < 0)
    if back.any():
        row = int(np.flatnonzero(back)[0])
        raise SpecError("data.TIME", f"row {row + 1}: TIME {t[row]:g} is before the previous record's "
                                     f"{t[row - 1]:g} for ID {ids[row]!r}; NONMEM needs non-decreasing times "
                                     "within an individual")


def _dose(r: pd.Series, row: int, model) -> Dose:
    """The `Dose` of a dose or reset record (EVID 1, 3, 4) at 1-based data row ``row``; EVID 3 is a reset
    without a dose (its AMT, RATE, SS, II, ADDL are not read, as in NONMEM)."""
    cmt = None if pd.isna(r.get("CMT", 0)) or r.get("CMT", 0) == 0 else int(r["CMT"])
    if r["EVID"] == 3:
        return Dose(amt=0.0, time=float(r["TIME"]), cmt=cmt, reset=True)
    d = Dose(amt=float(r["AMT"]), time=float(r["TIME"]), cmt=cmt, rate=float(r["RATE"]),
             ii=float(r["II"]), addl=int(r["ADDL"]), ss=int(r["SS"]), reset=bool(r["EVID"] == 4))
    d.validate(f"data.row{row}")
    if d.rate < 0:
        number = model.compartment_index(cmt if cmt is not None else model.default_dose_compartment,
                                         where=f"data.row{row}.cmt") + 1
        name = f"{'R' if d.rate == -1 else 'D'}{number}"
        if name not in model.parameter_names:
            raise SpecError("data.RATE", f"row {row}: RATE={d.rate:g} takes the infusion "
                                         f"{'rate' if d.rate == -1 else 'duration'} from the model parameter "
                                         f"{name}, which model {model.name!r} does not have; use "
                                         f"model.with_dose_parameters({name!r})")
    return d


def read_nonmem(data: str | Path | pd.DataFrame, model) -> NonmemData:
    """Read a NONMEM data set (CSV path or DataFrame) for ``model`` (a `Model` or a model name)."""
    if isinstance(model, str):
        from insilico.models import get_model
        model = get_model(model)
    if isinstance(data, (str, Path)):
        df = _read_csv(Path(data))
    elif isinstance(data, pd.DataFrame):
        df = data
    else:
        raise SpecError("data", f"expected a CSV path or a pandas DataFrame, got {type(data).__name__}")
    df = _columns(df, list(df.columns))
    for req in ("ID", "TIME"):
        if req not in df.columns:
            raise SpecError(f"data.{req}", "required column missing")
    if df.empty:
        raise SpecError("data", "no records")
    ids = df["ID"].to_numpy(dtype=object)
    null_id = np.array([v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() in (".", "")
                        for v in ids])
    if null_id.any():
        raise _bad("ID", null_id, ids, "ID is missing")
    num_id = pd.to_numeric(pd.Series(ids, dtype=object), errors="coerce")
    out = pd.DataFrame({"ID": (num_id if num_id.notna().all() else pd.Series(ids, dtype=object)).to_numpy()},
                       index=df.index)   # by position: a frame with a non-default index must not be realigned
    for c in STANDARD[1:] + RECORD:
        if c in df.columns:
            out[c] = _numeric(df, c)
    if "BLQ" in out:
        bad = ~out["BLQ"].isin([0.0, 1.0]).to_numpy() & out["BLQ"].notna().to_numpy()
        if bad.any():
            raise _bad("BLQ", bad, df["BLQ"].to_numpy(dtype=object), "BLQ must be 0 or 1")
    df = pd.concat([out.reset_index(drop=True),
                    pd.DataFrame({c: _covariate(df[c]).to_numpy() for c in df.columns
                                  if c not in STANDARD + RECORD})],
                   axis=1)
    for col, default in (("AMT", 0.0), ("RATE", 0.0), ("II", 0.0), ("ADDL", 0), ("SS", 0), ("MDV", 0)):
        if col not in df.columns:
            df[col] = default
    if "EVID" not in df.columns:
        df["EVID"] = np.where(df["AMT"] > 0, 1, 0)
    if (df["TIME"] < 0).any():
        raise _bad("TIME", (df["TIME"] < 0).to_numpy(), df["TIME"].to_numpy(), "TIME must be >= 0")
    unknown = (~df["EVID"].isin([0, 1, 2, 3, 4])).to_numpy()
    if unknown.any():
        raise _bad("EVID", unknown, df["EVID"].to_numpy(), "EVID must be 0, 1, 2, 3 or 4")
    if "CMT" in df.columns and (df["CMT"] < 0).any():
        raise _bad("CMT", (df["CMT"] < 0).to_numpy(), df["CMT"].to_numpy(),
                   "a negative CMT (NONMEM: turn the compartment off) is not supported; remove the record")
    _check_order(df)

    cov_cols = [c for c in df.columns if c not in STANDARD + RECORD]
    rec_cols = [c for c in RECORD if c in df.columns]
    ids, regimens, obs_times, obs_dv, obs_rec = [], [], [], [], []
    # one pass over plain arrays, each ID's records a contiguous block (checked by _check_order)
    sid_all = df["ID"].to_numpy()
    evid = df["EVID"].to_numpy(float)
    time_all = df["TIME"].to_numpy(float)
    is_dose = np.isin(evid, (1, 3, 4))
    is_obs = np.isin(evid, (0, 2))
    dv_all = df["DV"].to_numpy(float) if "DV" in df.columns else np.full(len(df), np.nan)
    dv_all = np.where((evid == 2) | (df["MDV"].to_numpy() == 1), np.nan, dv_all)
    rec_all = {c: df[c].to_numpy(float) for c in rec_cols}
    dose_cols = [c for c in ("CMT", "EVID", "TIME", "AMT", "RATE", "II", "ADDL", "SS") if c in df.columns]
    dose_vals = {c: df[c].to_numpy() for c in dose_cols}
    starts = np.flatnonzero(np.r_[True, sid_all[1:] != sid_all[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], len(df)]):
        sid = sid_all[a]
        doses = [_dose({c: dose_vals[c][i] for c in dose_cols}, int(i) + 1, model)
                 for i in a + np.flatnonzero(is_dose[a:b])]
        rows = a + np.flatnonzero(is_obs[a:b])
        t = time_all[rows]
        if np.any(np.diff(t) <= 0):     # strictly increasing overall passes per DVID too; else check per DVID
            _check_distinct_times(df.iloc[rows], sid)
        ids.append(sid)
        regimens.append(Regimen(tuple(doses)))
        obs_times.append(t)
        obs_dv.append(dv_all[rows])
        obs_rec.append({"ROW": rows.astype(float) + 1, **{c: v[rows] for c, v in rec_all.items()}})
    T = max(1, max(len(t) for t in obs_times))
    times = np.zeros((len(ids), T))
    dvs = np.full((len(ids), T), np.nan)
    observed = np.zeros((len(ids), T), bool)
    records = {c: np.full((len(ids), T), 0.0 if c == "ROW" else np.nan) for c in ["ROW", *rec_cols]}
    for i, (t, dv) in enumerate(zip(obs_times, obs_dv)):
        k = len(t)
        last = t[-1] if k else 0.0
        times[i, :k], dvs[i, :k], observed[i, :k] = t, dv, True
        for c, v in obs_rec[i].items():
            records[c][i, :k] = v
        times[i, k:] = last + np.arange(1, T - k + 1)   # padding outputs, never observed
    covs = df.groupby("ID", sort=False)[cov_cols].first() if cov_cols else pd.DataFrame(index=pd.Index(ids, name="ID"))
    table = dose_table(regimens, model, len(ids), where="data")
    varying = tuple(c for c in cov_cols if (df.groupby("ID", sort=False)[c].nunique(dropna=False) > 1).any())
    return NonmemData(np.asarray(ids), table, times, observed, dvs, regimens, covs, varying, records,
                      covariate_records=df[["ID", "TIME", "EVID", *cov_cols]].reset_index(drop=True))


def _check_distinct_times(obs: pd.DataFrame, sid) -> None:
    """Observation times of one ID strictly increasing; with a DVID column, per DVID (a PK and a PD
    observation may share a time)."""
    groups = obs.groupby("DVID", dropna=False)["TIME"] if "DVID" in obs.columns else [(None, obs["TIME"])]
    for dvid, t in groups:
        if np.any(np.diff(t.to_numpy(float)) <= 0):
            which = "" if dvid is None else f" for DVID {dvid:g}"
            raise SpecError("data.TIME", f"ID {sid}: observation times must be strictly increasing{which} "
                                         "(duplicate observation time)")
