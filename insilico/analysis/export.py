"""Export a trial results store: NONMEM data sets, ADaM-like tables, long Parquet tables.

Everything exported is simulated: ADaM-like tables carry ``SIMFL = "Y"`` on every row and a
dataset label containing ``SIMULATED DATA – insilico``; Parquet files carry the same label
and ``insilico.simulated = true`` in their schema metadata.

* `to_nonmem(ds, replicate=0, dv=None)` — one NONMEM event table (DataFrame).
* `to_adam(ds)` — ``{"ADSL", "ADPC", "ADPD", "ADPP"}`` DataFrames (ADPD only when the model has
  time-varying outputs other than concentrations).
* `tables(ds)` / `to_parquet(ds, path)` / `read_parquet(path)` — long tables ``subjects``,
  ``observations``, ``endpoints``, ``doses``, one Parquet file each in a directory.
* `export(ds_or_path, fmt, out, overwrite=False)` — what ``insilico export`` calls.

Doses are the ones each subject actually took (missed doses and doses after dropout are
left out), as the work units recorded them in the store (``dose_time``, ``dose_amt``, …).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from insilico import store
from insilico.errors import SpecError

__all__ = ["FORMATS", "SIMULATED_LABEL", "export", "read_parquet", "tables", "to_adam", "to_nonmem", "to_parquet"]

FORMATS = ("nonmem", "adam", "parquet")
SIMULATED_LABEL = "SIMULATED DATA – insilico"
NONMEM_COLUMNS = ["ID", "TIME", "AMT", "DV", "EVID", "MDV", "CMT", "RATE", "II", "ADDL", "SS"]
CONC_OUTPUTS = ("conc", "conc_obs")
DOSE_COLUMNS = ["replicate", "arm", "subject", "time", "amt", "rate", "cmt", "ss", "ii"]


# -- shared pieces ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Trial:
    """What the exporters need besides the arrays: trial name, arm names, design."""

    name: str
    arms: list[str]
    counterfactual: bool


def _trial(ds) -> _Trial:
    spec = ds.insilico.spec
    if spec is None:
        raise SpecError("results", "not a trial results store (no 'spec' attribute)")
    if "dose_amt" not in ds.variables:
        raise SpecError("results", "the store has no dose record (written by an older insilico); run the trial again")
    return _Trial(spec["name"], [str(a) for a in ds["arm"].values], spec["design"] == "counterfactual")


def replicate_position(ds, replicate: int) -> int:
    reps = [int(r) for r in ds["replicate"].values]
    if replicate not in reps:
        raise SpecError("replicate", f"replicate {replicate} not in the store (replicates: 0..{len(reps) - 1})")
    return reps.index(replicate)


def _time_outputs(ds) -> list[str]:
    return ds.insilico.outputs + ds.insilico.observed


def _central_cmt(ds) -> int:
    """NONMEM CMT of the ``central`` state (0 when the model has none), from ``dose_cmt``'s flags."""
    states = ds["dose_cmt"].attrs["flag_meanings"].split()
    return states.index("central") if "central" in states else 0


def doses_given(ds, replicate: int) -> pd.DataFrame:
    """Every dose taken in ``replicate`` (one row per dose, ADDL expanded), read from the store's
    dose record: replicate, arm (index), subject, time (h), amt (mg), rate (mg/h, 0 bolus),
    cmt (1-based state number, NONMEM CMT), ss, ii (h, steady-state doses only)."""
    r = replicate_position(ds, replicate)
    rec = ds.isel(replicate=r)
    amt = np.asarray(rec["dose_amt"].transpose("arm", "subject", "dose").values, float)
    a, s, d = np.nonzero(amt > 0)

    def field(name, dtype):
        if name not in ds.variables:      # stored only when some dose is an infusion / at steady state
            return np.zeros(a.size, dtype)
        return np.asarray(rec[name].transpose("arm", "subject", "dose").values)[a, s, d].astype(dtype)

    return pd.DataFrame({
        "replicate": replicate, "arm": a.astype(np.int64), "subject": np.asarray(ds["subject"].values)[s],
        "time": field("dose_time", float), "amt": amt[a, s, d], "rate": field("dose_rate", float),
        "cmt": field("dose_cmt", np.int64), "ss": field("dose_ss", np.int64), "ii": field("dose_ii", float),
    }, columns=DOSE_COLUMNS)


def _replicates(ds, replicate) -> list[int]:
    if replicate is None:
        return [int(r) for r in ds["replicate"].values]
    replicate_position(ds, int(replicate))
    return [int(replicate)]


def _arm_index(ds, labels) -> np.ndarray:
    arms = [str(a) for a in ds["arm"].values]
    return np.asarray([arms.index(str(x)) for x in labels], dtype=np.int64) if len(labels) else np.zeros(0, np.int64)


def _observations(ds, variables, replicate=None) -> pd.DataFrame:
    """Long table of the sampled, non-missing values of ``variables`` (subjects in the arm):
    replicate, arm (index), subject, time (nominal h), actual_time (h), variable, value."""
    cols = ["replicate", "arm", "subject", "time", "actual_time", "variable", "value"]
    parts = []
    for rep in _replicates(ds, replicate):
        actual = store.arm_values(ds, "obs_time", rep)["value"] if "obs_time" in ds.variables else None
        for var in variables:
            df = store.arm_values(ds, var, rep)
            df["actual_time"] = df["time"] if actual is None else actual.to_numpy()
            df["variable"] = var
            parts.append(df[np.isfinite(df["value"].to_numpy(float))])
    if not parts:
        return pd.DataFrame(columns=cols)
    df = pd.concat(parts, ignore_index=True)
    df["arm"] = _arm_index(ds, df["arm"].to_numpy())
    return df[cols]


def _in_arm(ds, replicate=None) -> pd.DataFrame:
    """(replicate, arm, subject, status, doses_taken) for every subject simulated in an arm."""
    parts = []
    for rep in _replicates(ds, replicate):
        df = store.arm_values(ds, "status", rep).rename(columns={"value": "status"})
        df["doses_taken"] = store.arm_values(ds, "doses_taken", rep)["value"].to_numpy()
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    df["arm"] = _arm_index(ds, df["arm"].to_numpy())
    return df.astype({"replicate": np.int64, "status": np.int64, "doses_taken": np.int64})


def _subject_table(ds, names, replicate=None) -> pd.DataFrame:
    parts = []
    for rep in _replicates(ds, replicate):
        r = replicate_position(ds, rep)
        cols = {"replicate": rep, "subject": np.asarray(ds["subject"].values)}
        cols.update({k: np.asarray(ds[k].isel(replicate=r).values) for k in names})
        parts.append(pd.DataFrame(cols))
    return pd.concat(parts, ignore_index=True)


def _units(ds, var) -> str:
    return str(ds[var].attrs.get("units", ""))


# -- NONMEM -------------------------------------------------------------------------------
def to_nonmem(ds, replicate: int = 0, dv: str | None = None) -> pd.DataFrame:
    """A NONMEM event table for one replicate.

    Records: doses (EVID 1, MDV 1, DV missing) — one row per dose actually taken, ADDL
    expanded (ADDL = 0), CMT = the model's 1-based state number, RATE mg/h (0 bolus), SS/II
    from the regimen; observations (EVID 0, MDV 0) — every sampled, non-missing value of
    ``dv`` (default ``conc_obs`` when the store has residual error, else ``conc``) at the
    actual sampling time, CMT = the ``central`` state number (0 if the model has none).
    At equal times the observation comes first (pre-dose, as the engine samples).

    ``ID`` numbers the (arm, subject) pairs 1..K in arm then subject order, so it is unique
    per arm in counterfactual designs; extra columns: ``ARM`` (name), ``ARMN`` (1-based),
    ``SUBJ`` (store subject index), ``REP``, ``NTIME`` (nominal time) and the covariates.
    """
    info = _trial(ds)
    outputs = _time_outputs(ds)
    if dv is None:
        dv = "conc_obs" if "conc_obs" in outputs else "conc"
    if dv not in outputs:
        raise SpecError("dv", f"{dv!r} is not a sampled output of this store; choose from {outputs}")
    replicate_position(ds, int(replicate))
    obs = _observations(ds, [dv], replicate)
    doses = doses_given(ds, int(replicate))
    obs_cmt = _central_cmt(ds)
    n_obs, n_dose = len(obs), len(doses)
    recs = pd.DataFrame({
        "arm": np.concatenate([doses["arm"].to_numpy(), obs["arm"].to_numpy()]).astype(np.int64),
        "subject": np.concatenate([doses["subject"].to_numpy(), obs["subject"].to_numpy()]).astype(np.int64),
        "TIME": np.concatenate([doses["time"].to_numpy(), obs["actual_time"].to_numpy()]),
        "AMT": np.concatenate([doses["amt"].to_numpy(), np.zeros(n_obs)]),
        "DV": np.concatenate([np.full(n_dose, np.nan), obs["value"].to_numpy()]),
        "EVID": np.concatenate([np.ones(n_dose, np.int64), np.zeros(n_obs, np.int64)]),
        "MDV": np.concatenate([np.ones(n_dose, np.int64), np.zeros(n_obs, np.int64)]),
        "CMT": np.concatenate([doses["cmt"].to_numpy(), np.full(n_obs, obs_cmt)]).astype(np.int64),
        "RATE": np.concatenate([doses["rate"].to_numpy(), np.zeros(n_obs)]),
        "II": np.concatenate([doses["ii"].to_numpy(), np.zeros(n_obs)]),
        "ADDL": np.zeros(n_dose + n_obs, np.int64),
        "SS": np.concatenate([doses["ss"].to_numpy(), np.zeros(n_obs, np.int64)]).astype(np.int64),
        "NTIME": np.concatenate([doses["time"].to_numpy(), obs["time"].to_numpy()]),
    })
    recs = recs.sort_values(["arm", "subject", "TIME", "EVID"], kind="stable").reset_index(drop=True)
    pair = recs["arm"].to_numpy() * (int(recs["subject"].max()) + 1 if len(recs) else 1) + recs["subject"].to_numpy()
    recs.insert(0, "ID", (np.unique(pair, return_inverse=True)[1] + 1).astype(np.int64))
    recs["ARM"] = np.asarray(info.arms, dtype=object)[recs["arm"].to_numpy()]
    recs["ARMN"] = recs["arm"] + 1
    recs["SUBJ"] = recs["subject"]
    recs["REP"] = int(replicate)
    covs = ds.insilico.covariates
    if covs:
        sub = _subject_table(ds, covs, replicate).set_index("subject")
        for c in covs:
            recs[c] = sub[c].reindex(recs["subject"].to_numpy()).to_numpy()
    out = recs[NONMEM_COLUMNS + ["ARM", "ARMN", "SUBJ", "REP", "NTIME"] + covs]
    out.attrs["label"] = f"NONMEM data set: trial {info.name}, replicate {replicate}, DV={dv} ({SIMULATED_LABEL})"
    return out


# -- ADaM-like ----------------------------------------------------------------------------
def _paramcd(names) -> dict[str, str]:
    """CDISC-style PARAMCD (upper case, alphanumeric, at most 8 characters, unique)."""
    out, used = {}, set()
    for n in names:
        base = re.sub(r"[^A-Z0-9]", "", n.upper())[:8] or "PARAM"
        code, k = base, 1
        while code in used:
            suffix = str(k)
            code, k = base[: 8 - len(suffix)] + suffix, k + 1
        used.add(code)
        out[n] = code
    return out


def _usubjid(study: str, rep, subject, arm, counterfactual: bool) -> np.ndarray:
    ids = [f"{study}-R{int(r):03d}-{int(s):06d}" for r, s in zip(rep, subject)]
    if counterfactual:
        ids = [f"{i}-A{int(a) + 1}" for i, a in zip(ids, arm)]
    return np.asarray(ids, dtype=object)


def _adam_keys(df, info, arms) -> pd.DataFrame:
    """STUDYID, USUBJID, SUBJID, REPLICATE, ARM, ARMN, TRTA from replicate/arm/subject columns."""
    keys = pd.DataFrame({
        "STUDYID": info.name,
        "USUBJID": _usubjid(info.name, df["replicate"], df["subject"], df["arm"], info.counterfactual),
        "SUBJID": df["subject"].to_numpy().astype(np.int64),
        "REPLICATE": df["replicate"].to_numpy().astype(np.int64),
        "ARM": np.asarray(arms, dtype=object)[df["arm"].to_numpy()],
        "ARMN": df["arm"].to_numpy().astype(np.int64) + 1,
    })
    keys["TRTA"] = keys["ARM"]
    return keys


def _time_table(ds, info, variables, replicate) -> pd.DataFrame:
    obs = _observations(ds, variables, replicate)
    codes = _paramcd(variables)
    df = _adam_keys(obs, info, info.arms)
    t = obs["time"].to_numpy(float)
    df["PARAMCD"] = obs["variable"].map(codes).to_numpy()
    df["PARAM"] = obs["variable"].map(lambda v: str(ds[v].attrs.get("long_name", v))).to_numpy()
    df["AVAL"] = obs["value"].to_numpy(float)
    df["AVALU"] = obs["variable"].map(lambda v: _units(ds, v)).to_numpy()
    df["AVISITN"] = (np.floor(t / 24.0) + 1).astype(np.int64)
    df["AVISIT"] = ["Day " + str(d) for d in df["AVISITN"]]
    df["ATPTN"] = t
    df["ATPT"] = [f"{x:g} h" for x in t]
    df["NFRLT"] = t
    df["ARELTM"] = obs["actual_time"].to_numpy(float)
    df["ARELTMU"] = "h"
    df["SIMFL"] = "Y"
    return df


def to_adam(ds, replicate: int | None = None) -> dict[str, pd.DataFrame]:
    """ADaM-like tables (all replicates unless ``replicate`` is given), every row ``SIMFL = "Y"``
    and ``df.attrs["label"]`` containing ``SIMULATED DATA – insilico``.

    * ``ADSL``: one row per subject and arm (subject-level: covariates, ``DOSESTK`` doses
      taken, ``DROPTM`` dropout time (h, missing for completers), ``COMPLFL``, ``SIMSTAT``).
    * ``ADPC``: sampled concentrations (``conc``; ``conc_obs`` with residual error), one row per
      sample: ``PARAMCD``/``PARAM``/``AVAL``/``AVALU``, ``AVISIT(N)`` (study day),
      ``ATPT(N)`` and ``NFRLT`` (nominal h after the first dose), ``ARELTM`` (actual h).
    * ``ADPD``: the other time-varying outputs (e.g. ``effect``), same layout.
    * ``ADPP``: per-subject endpoints as ``PARAMCD``/``PARAM``/``AVAL``/``AVALU`` (AVAL missing
      where the endpoint is, e.g. after dropout).

    ``USUBJID`` is ``<trial>-R<replicate>-<subject>`` (``-A<arm>`` appended in counterfactual
    designs, where each virtual patient is in every arm).
    """
    info = _trial(ds)
    outs = _time_outputs(ds)
    arms = info.arms
    # ADSL
    members = _in_arm(ds, replicate)
    adsl = _adam_keys(members, info, arms)
    covs = ds.insilico.covariates
    subj = _subject_table(ds, covs + ["dropout_time"], replicate).set_index(["replicate", "subject"])
    key = pd.MultiIndex.from_arrays([members["replicate"], members["subject"]])
    for c in covs:
        adsl[c] = subj[c].reindex(key).to_numpy()
    drop = subj["dropout_time"].reindex(key).to_numpy(float)
    adsl["DOSESTK"] = members["doses_taken"].to_numpy()
    adsl["DROPTM"] = np.where(np.isfinite(drop), drop, np.nan)
    adsl["COMPLFL"] = np.where(np.isfinite(drop), "N", "Y")
    adsl["SIMSTAT"] = members["status"].to_numpy()
    adsl["SIMFL"] = "Y"
    result = {"ADSL": adsl}
    conc = [v for v in outs if v in CONC_OUTPUTS]
    other = [v for v in outs if v not in CONC_OUTPUTS]
    if conc:
        result["ADPC"] = _time_table(ds, info, conc, replicate)
    if other:
        result["ADPD"] = _time_table(ds, info, other, replicate)
    # ADPP
    eps = ds.insilico.endpoints
    codes = _paramcd(eps)
    parts = []
    for rep in _replicates(ds, replicate):
        sub = members[members["replicate"] == rep]          # same (arm, subject) rows as arm_values
        for e in eps:
            vals = store.arm_values(ds, e, rep)["value"].to_numpy(float)
            df = _adam_keys(sub, info, arms)
            df["PARAMCD"] = codes[e]
            df["PARAM"] = str(ds[e].attrs.get("long_name", e))
            df["AVAL"] = vals
            df["AVALU"] = _units(ds, e)
            df["SIMFL"] = "Y"
            parts.append(df)
    result["ADPP"] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["STUDYID", "USUBJID", "PARAMCD", "PARAM", "AVAL", "AVALU", "SIMFL"])
    labels = {"ADSL": "Subject-level analysis dataset", "ADPC": "Pharmacokinetic concentrations",
              "ADPD": "Pharmacodynamic observations", "ADPP": "Per-subject endpoints (PK/PD parameters)"}
    for name, df in result.items():
        df.attrs["label"] = f"{name} – {labels[name]} – {SIMULATED_LABEL} (trial {info.name})"
    return result


# -- long tables / Parquet ------------------------------------------------------------------
def tables(ds, replicate: int | None = None) -> dict[str, pd.DataFrame]:
    """Long-format tables (all replicates unless ``replicate`` is given):

    * ``subjects``: replicate, subject, then every (replicate, subject) variable (covariates,
      parameters, etas, allocated_arm, dropout_time).
    * ``observations``: replicate, arm (name), subject, time (nominal h), actual_time (h),
      variable, value — sampled, non-missing values of every time-varying output.
    * ``endpoints``: replicate, arm, subject, status, doses_taken, endpoint, value.
    * ``doses``: replicate, arm, subject, time, amt, rate, cmt (1-based), ss, ii — the doses taken.
    """
    info = _trial(ds)
    arms = np.asarray(info.arms, dtype=object)
    subjects = _subject_table(ds, store.subject_variable_names(ds), replicate)
    obs = _observations(ds, _time_outputs(ds), replicate)
    obs["arm"] = arms[obs["arm"].to_numpy().astype(np.int64)]
    members = _in_arm(ds, replicate)
    parts = []
    for rep in _replicates(ds, replicate):
        sub = members[members["replicate"] == rep]          # same (arm, subject) rows as arm_values
        for e in ds.insilico.endpoints:
            df = sub.copy()
            df["endpoint"] = e
            df["value"] = store.arm_values(ds, e, rep)["value"].to_numpy(float)
            parts.append(df)
    endpoints = pd.concat(parts, ignore_index=True) if parts else members.assign(endpoint="", value=np.nan)[:0]
    endpoints["arm"] = arms[endpoints["arm"].to_numpy().astype(np.int64)]
    doses = pd.concat([doses_given(ds, rep) for rep in _replicates(ds, replicate)], ignore_index=True)
    doses["arm"] = arms[doses["arm"].to_numpy().astype(np.int64)]
    out = {"subjects": subjects, "observations": obs, "endpoints": endpoints, "doses": doses}
    for name, df in out.items():
        df.attrs["label"] = f"{name} – {SIMULATED_LABEL} (trial {info.name})"
    return out


def _write_parquet(df: pd.DataFrame, path: Path, meta: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pandas(df, preserve_index=False)
    md = dict(table.schema.metadata or {})
    md.update({k.encode(): v.encode() for k, v in meta.items()})
    pq.write_table(table.replace_schema_metadata(md), path)


def to_parquet(ds, path, replicate: int | None = None, overwrite: bool = False,
               adam: bool = False) -> Path:
    """Write `tables` (or, with ``adam=True``, `to_adam`) as one Parquet file per table in the
    directory ``path`` (``<table>.parquet``). Schema metadata: ``insilico.label``,
    ``insilico.simulated`` (``"true"``), ``insilico.trial``, ``insilico.spec`` (JSON)."""
    path = store.check_out(path, folder=True)
    tabs = to_adam(ds, replicate) if adam else tables(ds, replicate)
    _prepare_out(path, overwrite)
    path.mkdir(parents=True)
    files = []
    for name, df in tabs.items():
        files.append(path / f"{name.lower() if adam else name}.parquet")
        _write_parquet(df, files[-1],
                       {"insilico.label": df.attrs.get("label", SIMULATED_LABEL), "insilico.simulated": "true",
                        "insilico.trial": str(ds.attrs.get("trial", "")),
                        "insilico.spec": str(ds.attrs.get("spec", ""))})
    store.write_manifest(path, "export", files)
    return path


def read_parquet(path) -> dict[str, pd.DataFrame]:
    """Read a `to_parquet` directory back: ``{table: DataFrame}`` with ``attrs["label"]``."""
    import pyarrow.parquet as pq
    path = Path(path)
    if not path.is_dir():
        raise SpecError("path", f"no exported Parquet directory at {path}")
    out = {}
    for f in sorted(path.glob("*.parquet")):
        t = pq.read_table(f)
        df = t.to_pandas()
        md = t.schema.metadata or {}
        df.attrs = {"label": md.get(b"insilico.label", b"").decode()}
        out[f.stem] = df
    return out


# -- dispatcher (CLI) -----------------------------------------------------------------------
def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite``, and then remove it only when it is an
    earlier insilico export (`insilico.store.replace_owned`)."""
    store.replace_owned(out, "export", overwrite=overwrite)


def export(results, fmt: str, out, *, replicate: int | None = None, dv: str | None = None,
           overwrite: bool = False) -> Path:
    """Export a results store (path or Dataset) to ``out``:

    * ``nonmem``: one CSV file (``.`` for missing values), replicate ``replicate`` (default 0);
    * ``adam``: a directory of CSV files (``adsl.csv``, ``adpc.csv``, …) and ``labels.json``;
    * ``parquet``: a directory of long-format Parquet tables (`to_parquet`).
    """
    if fmt not in FORMATS:
        raise SpecError("--format", f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    out = store.check_out(out, folder=fmt != "nonmem")
    if out.exists():
        if not overwrite:
            raise SpecError("--out", f"{out} already exists (use --overwrite to replace it)")
        if store.recognise(out) != "export":
            store.replace_owned(out, "export", overwrite=True)     # refuses, naming --out
    if isinstance(results, (str, Path)):
        from insilico.store import open_results
        ds = open_results(results)
    else:
        ds = results
    if fmt == "nonmem":
        df = to_nonmem(ds, 0 if replicate is None else replicate, dv)
        _prepare_out(out, overwrite)
        from insilico.dosing import write_nonmem_csv
        return write_nonmem_csv(df, out)
    if fmt == "parquet":
        return to_parquet(ds, out, replicate, overwrite=overwrite)
    tabs = to_adam(ds, replicate)
    _prepare_out(out, overwrite)
    out.mkdir(parents=True)
    for name, df in tabs.items():
        df.to_csv(out / f"{name.lower()}.csv", index=False, float_format="%.12g")
    (out / "labels.json").write_text(json.dumps({n.lower(): df.attrs["label"] for n, df in tabs.items()},
                                                ensure_ascii=False, indent=1) + "\n")
    store.write_manifest(out, "export", [f"{n.lower()}.csv" for n in tabs] + ["labels.json"])
    return out
