"""Import a NONMEM-style event table as per-subject dosing histories and observation times.

Columns (case-insensitive): ``ID``, ``TIME`` (h) required; ``AMT`` (mg), ``RATE`` (mg/h),
``CMT`` (1-based state number in the model's state order, so 1 = depot and 2 = central for
oral models as in ADVAN2/4), ``EVID``, ``II`` (h), ``ADDL``, ``SS``, ``MDV``, ``DV`` optional.
Every other column is kept as a covariate (its first value per subject).

EVID (NONMEM): 0 observation, 1 dose, 2 other (an output time without an observation);
3 (reset) and 4 (reset + dose) are rejected with a clear error. Without an EVID column a
record with AMT > 0 is a dose, otherwise an observation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from insilico.dosing._regimen import Dose, Regimen
from insilico.dosing._table import DoseTable, dose_table
from insilico.errors import SpecError

__all__ = ["NonmemData", "read_nonmem"]

STANDARD = ("ID", "TIME", "AMT", "RATE", "CMT", "EVID", "II", "ADDL", "SS", "MDV", "DV")


@dataclass(frozen=True)
class NonmemData:
    """Per-subject histories: ``ids`` (N,), ``doses`` (`DoseTable`), ``times`` (N, T) padded
    strictly increasing observation/output times, ``observed`` (N, T) True for real records,
    ``dv`` (N, T) with NaN where no observation, ``regimens`` (one `Regimen` per subject) and
    ``covariates`` (DataFrame indexed by ID)."""

    ids: np.ndarray
    doses: DoseTable
    times: np.ndarray
    observed: np.ndarray
    dv: np.ndarray
    regimens: list
    covariates: pd.DataFrame


def read_nonmem(data: str | Path | pd.DataFrame, model) -> NonmemData:
    """Read a NONMEM data set (CSV path or DataFrame) for ``model``."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise SpecError("data", f"file not found: {path}")
        df = pd.read_csv(path, na_values=["."])
    else:
        df = data.copy()
    df.columns = [str(c).strip().upper() for c in df.columns]
    for req in ("ID", "TIME"):
        if req not in df.columns:
            raise SpecError(f"data.{req}", "required column missing")
    if df.empty:
        raise SpecError("data", "no records")
    for col, default in (("AMT", 0.0), ("RATE", 0.0), ("II", 0.0), ("ADDL", 0), ("SS", 0), ("MDV", 0)):
        if col not in df.columns:
            df[col] = default
    if "EVID" not in df.columns:
        df["EVID"] = np.where(df["AMT"].fillna(0) > 0, 1, 0)
    numeric = [c for c in STANDARD if c in df.columns and c not in ("ID", "DV")]
    for c in numeric:
        bad = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.values)[0])
            raise SpecError(f"data.{c}", f"row {row}: not a number ({df[c].iloc[row]!r})")
        df[c] = pd.to_numeric(df[c])
    if df["TIME"].isna().any() or (df["TIME"] < 0).any():
        row = int(np.flatnonzero((df["TIME"].isna() | (df["TIME"] < 0)).values)[0])
        raise SpecError("data.TIME", f"row {row}: TIME must be a number >= 0")
    reset = df["EVID"].isin([3, 4])
    if reset.any():
        raise SpecError("data.EVID", f"row {int(np.flatnonzero(reset.values)[0])}: EVID 3/4 (reset) is not supported")
    unknown = ~df["EVID"].isin([0, 1, 2])
    if unknown.any():
        raise SpecError("data.EVID", f"row {int(np.flatnonzero(unknown.values)[0])}: EVID must be 0, 1 or 2")

    cov_cols = [c for c in df.columns if c not in STANDARD]
    ids, regimens, obs_times, obs_dv, obs_flag = [], [], [], [], []
    for sid, g in df.groupby("ID", sort=False):
        g = g.sort_values("TIME", kind="stable")
        doses = []
        for row_idx, r in g[g["EVID"] == 1].iterrows():
            cmt = None if "CMT" not in g.columns or pd.isna(r.get("CMT")) else int(r["CMT"])
            d = Dose(amt=float(r["AMT"]), time=float(r["TIME"]), cmt=cmt, rate=float(r["RATE"]),
                     ii=float(r["II"]), addl=int(r["ADDL"]), ss=int(r["SS"]))
            d.validate(f"data.row{row_idx}")
            doses.append(d)
        obs = g[g["EVID"].isin([0, 2])]
        t = obs["TIME"].to_numpy(float)
        if np.any(np.diff(t) <= 0):
            raise SpecError("data.TIME", f"ID {sid}: observation times must be strictly increasing "
                                         "(duplicate observation time)")
        dv = obs["DV"].to_numpy(float) if "DV" in obs.columns else np.full(len(obs), np.nan)
        dv = np.where((obs["EVID"].to_numpy() == 2) | (obs["MDV"].to_numpy() == 1), np.nan, dv)
        ids.append(sid)
        regimens.append(Regimen(tuple(doses)))
        obs_times.append(t)
        obs_dv.append(dv)
        obs_flag.append(np.ones(len(t), bool))
    T = max(1, max(len(t) for t in obs_times))
    times = np.zeros((len(ids), T))
    dvs = np.full((len(ids), T), np.nan)
    observed = np.zeros((len(ids), T), bool)
    for i, (t, dv) in enumerate(zip(obs_times, obs_dv)):
        k = len(t)
        last = t[-1] if k else 0.0
        times[i, :k], dvs[i, :k], observed[i, :k] = t, dv, True
        times[i, k:] = last + np.arange(1, T - k + 1)   # padding outputs, never observed
    covs = df.groupby("ID", sort=False)[cov_cols].first() if cov_cols else pd.DataFrame(index=pd.Index(ids, name="ID"))
    table = dose_table(regimens, model, len(ids), where="data")
    return NonmemData(np.asarray(ids), table, times, observed, dvs, regimens, covs)
