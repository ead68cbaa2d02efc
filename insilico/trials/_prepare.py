"""Resolve and cross-check a validated spec before anything is written.

`TrialContext` holds everything a work unit needs (model, cohort spec, regimens, nominal
times, parameter sources). It is rebuilt from the spec's JSON on every worker, so work units
are pure functions of (spec, replicate, arm, chunk).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insilico.cohorts import load_cohort_spec
from insilico.dosing import Dose, Regimen
from insilico.errors import SpecError
from insilico.trials._spec import TrialSpec, resolve_model


@dataclass
class TrialContext:
    spec: TrialSpec
    base: Path
    model: object
    cohort: object
    regimens: list
    nominal: np.ndarray
    outputs: list
    fixed: dict
    cohort_params: list

    @property
    def n_arms(self) -> int:
        return len(self.spec.arms)

    @property
    def n_chunks(self) -> int:
        return int(np.ceil(self.spec.n / self.spec.execution.chunk_size))

    def spec_json(self) -> str:
        return self.spec.model_dump_json(by_alias=True)


def _regimen(arm, i) -> Regimen:
    doses = []
    for d in arm.regimen:
        addl = (d.n - 1) if d.n is not None else d.addl
        doses.append(Dose(amt=d.amt, time=d.time, cmt=d.cmt, rate=d.rate, duration=d.duration, ii=d.ii,
                          addl=addl, ss=d.ss, per=d.per))
    reg = Regimen(tuple(doses))
    reg.validate(f"arms.{i}.regimen")
    return reg


def nominal_times(spec: TrialSpec) -> np.ndarray:
    t = spec.observations.times
    if isinstance(t, list):
        arr = np.asarray(t, float)
    else:
        if t.stop <= t.start:
            raise SpecError("observations.times.stop", "must be greater than start")
        arr = np.arange(t.start, t.stop + 1e-9 * t.step, t.step)
    if arr.size == 0:
        raise SpecError("observations.times", "no sampling times")
    if np.any(np.diff(arr) <= 0):
        raise SpecError("observations.times", "sampling times must be strictly increasing")
    return arr


def prepare(spec: TrialSpec, base: Path) -> TrialContext:
    """Resolve model and cohort and check that they fit together (raises SpecError)."""
    model = resolve_model(spec.model)
    if isinstance(spec.cohort, str):
        cpath = (base / spec.cohort) if not Path(spec.cohort).is_absolute() else Path(spec.cohort)
        if not cpath.exists():
            raise SpecError("cohort", f"cohort spec file not found: {cpath}")
        src = cpath
    else:
        src = spec.cohort
    try:
        cohort = load_cohort_spec(src)
    except SpecError as e:
        raise SpecError(f"cohort.{e.field}" if e.field else "cohort", e.message) from None
    cohort_params = [p for p in cohort.parameters if p in model.parameter_names]
    for k in spec.model.parameters:
        if k in cohort_params:
            raise SpecError(f"model.parameters.{k}", "is drawn by the cohort's parameter model; set its "
                                                     "typical value there instead")
        if k not in model.parameter_names:
            raise SpecError(f"model.parameters.{k}", f"unknown parameter for model {model.name!r}; "
                                                     f"known: {list(model.parameter_names)}")
    fixed = model.validate_params({k: v for k, v in spec.model.parameters.items() if k not in cohort_params}
                                  | {k: 1.0 for k in cohort_params}, where="model.parameters")
    fixed = {k: float(v) for k, v in fixed.items() if k not in cohort_params}
    for k in spec.replicates.uncertainty:
        if k not in model.parameter_names:
            raise SpecError(f"replicates.uncertainty.{k}", f"unknown parameter for model {model.name!r}")
    regimens = []
    cov_names = set(cohort.covariates) | set(getattr(cohort, "derived", []) or [])
    for i, arm in enumerate(spec.arms):
        reg = _regimen(arm, i)
        for j, d in enumerate(reg.doses):
            if d.per is not None and d.per not in cov_names:
                raise SpecError(f"arms.{i}.regimen.{j}.per", f"covariate {d.per!r} is not in the cohort")
            model.compartment_index(d.cmt if d.cmt is not None else model.default_dose_compartment,
                                    where=f"arms.{i}.regimen.{j}.cmt")
        regimens.append(reg)
    nominal = nominal_times(spec)
    outputs = spec.observations.outputs or list(model.output_names)
    for o in outputs:
        if o not in model.output_names:
            raise SpecError("observations.outputs", f"unknown output {o!r}; model outputs: {list(model.output_names)}")
    reserved = set(outputs) | set(model.parameter_names) | cov_names | {"status", "doses_taken", "dropout_time"}
    for i, e in enumerate(spec.endpoints):
        if e.type != "responder" and e.output not in model.output_names:
            raise SpecError(f"endpoints.{i}.output", f"unknown output {e.output!r}; model outputs: "
                                                     f"{list(model.output_names)}")
        if e.name in reserved:
            raise SpecError(f"endpoints.{i}.name", f"{e.name!r} clashes with an output, parameter or covariate")
        if e.type == "trough" and e.dose is not None:
            for a, reg in enumerate(regimens):
                if e.dose >= len(reg.expanded()) and reg.doses:
                    raise SpecError(f"endpoints.{i}.dose", f"arm {spec.arms[a].name!r} has only "
                                                           f"{len(reg.expanded())} doses")
    return TrialContext(spec, base, model, cohort, regimens, nominal, outputs, fixed, cohort_params)


def context_from_json(spec_json: str, base: str) -> TrialContext:
    return prepare(TrialSpec.model_validate(json.loads(spec_json)), Path(base))
