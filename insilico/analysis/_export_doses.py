"""Reconstruct the doses each virtual subject actually received from a results store.

The store keeps only ``doses_taken`` counts. The doses themselves are a pure function of the
resolved spec (regimens, ``per``-covariate scaling), the subject's covariates and the design
randomness (missed doses from ``adherence``, no doses at or after ``dropout_time``), so they
are rebuilt with the function the simulation itself uses (`insilico.trials._unit.doses_given`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from insilico.errors import SpecError

DOSE_COLUMNS = ["replicate", "arm", "subject", "time", "amt", "rate", "cmt", "ss", "ii"]


@dataclass
class StoreInfo:
    """What the exporters need to know about a store besides its arrays."""

    spec: object            # TrialSpec
    model: object           # Model
    arms: list[str]
    regimens: list          # one Regimen per arm
    counterfactual: bool

    @property
    def name(self) -> str:
        return self.spec.name


def store_info(ds) -> StoreInfo:
    from insilico.trials._prepare import _regimen
    from insilico.trials._spec import TrialSpec, resolve_model
    if "spec" not in ds.attrs:
        raise SpecError("results", "not a trial results store (no 'spec' attribute)")
    spec = TrialSpec.model_validate(json.loads(ds.attrs["spec"]))
    model = resolve_model(spec.model)
    regimens = [_regimen(arm, i) for i, arm in enumerate(spec.arms)]
    arms = [str(a) for a in ds["arm"].values]
    counterfactual = spec.design == "counterfactual"
    return StoreInfo(spec, model, arms, regimens, counterfactual)


def subject_variables(ds) -> list[str]:
    """Variables over (replicate, subject): covariates, parameters, etas, design."""
    return [k for k, v in ds.data_vars.items() if v.dims == ("replicate", "subject")]


def covariate_names(ds) -> list[str]:
    return [k for k in subject_variables(ds)
            if ds[k].attrs.get("role") in ("covariate", "derived covariate")]


def parameter_names(ds, model) -> list[str]:
    return [p for p in model.parameter_names if p in ds.data_vars and ds[p].dims == ("replicate", "subject")]


def replicate_position(ds, replicate: int) -> int:
    reps = [int(r) for r in ds["replicate"].values]
    if replicate not in reps:
        raise SpecError("replicate", f"replicate {replicate} not in the store (replicates: 0..{len(reps) - 1})")
    return reps.index(replicate)


def doses_given(ds, info: StoreInfo, replicate: int) -> pd.DataFrame:
    """Every dose given in ``replicate`` (one row per individual dose, ADDL expanded):
    replicate, arm (index), subject, time (h), amt (mg), rate (mg/h, 0 bolus),
    cmt (1-based state number, NONMEM CMT), ss, ii (h)."""
    from insilico.trials._unit import doses_given as arm_doses
    r = replicate_position(ds, replicate)
    status = np.asarray(ds["status"].isel(replicate=r).values)            # (arm, subject)
    dropout = np.asarray(ds["dropout_time"].isel(replicate=r).values, float)
    subj_vars = {k: np.asarray(ds[k].isel(replicate=r).values) for k in subject_variables(ds)}
    idx = np.asarray(ds["subject"].values).astype(np.int64)
    parts = []
    for a in range(len(info.arms)):
        sel = np.flatnonzero(status[a] >= 0)
        if sel.size == 0:
            continue
        covs = {k: v[sel] for k, v in subj_vars.items()}
        table = arm_doses(info.spec, info.model, info.regimens[a], a, idx[sel], covs, replicate, dropout[sel])
        given = table.amt > 0
        rows, cols = np.nonzero(given)
        if rows.size == 0:
            continue
        ss = table.ss[rows, cols]
        parts.append(pd.DataFrame({
            "replicate": replicate, "arm": a, "subject": idx[sel][rows],
            "time": table.time[rows, cols], "amt": table.amt[rows, cols], "rate": table.rate[rows, cols],
            "cmt": table.cmt[rows, cols].astype(np.int64) + 1, "ss": ss.astype(np.int64),
            "ii": np.where(ss > 0, table.ii[rows, cols], 0.0)}))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("time", "amt", "rate", "ii") else np.int64)
                             for c in DOSE_COLUMNS})
    return pd.concat(parts, ignore_index=True)[DOSE_COLUMNS]
