"""An estimation problem: population model + structural model + data, as padded arrays.

`build_problem` checks the data against the model (covariates the effects use, doses into
existing compartments, observations of the fitted output) and turns them into per-subject
arrays (subjects x doses, subjects x observation times) that the vmapped objective reads.
Subjects that cannot be evaluated for a reason of their own (a missing or invalid covariate
value) are excluded and listed in ``problem.excluded`` with the reason; they never abort a fit.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

from insilico.dosing import NonmemData, event_slots, read_nonmem
from insilico.engine import SolverOptions, solve_subject
from insilico.errors import SpecError
from insilico.estimation._params import ParameterVector
from insilico.estimation._spec import PopulationModelSpec
from insilico.population import compile_population, individual_parameters

__all__ = ["Problem", "build_problem", "resolve"]


@dataclass(frozen=True)
class Problem:
    """Everything the objective needs. Arrays are over the included subjects.

    ids : subject IDs (N,); ``excluded``: {ID: reason} of subjects left out.
    data_covariates : every covariate column of the data (first value per subject), indexed by ID.
    covariates : {name: (N,) float or int codes} for the covariates the effects use.
    dose : (time, amt, rate, cmt, ss, ii), each (N, E).
    times, y, mask : (N, T) observation times (h), DV and True where DV is a fitted observation.
    fixed : model parameters not in the population model ({name: value}).
    """

    spec: PopulationModelSpec
    model: object
    params: ParameterVector
    ids: np.ndarray
    covariates: dict
    dose: tuple
    times: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    fixed: dict
    method: str
    solver: SolverOptions
    has_infusion: bool
    has_ss: int    # static: `insilico.dosing.event_slots` of the dose table (0: no SS, no reset)
    data_sha256: str = ""
    excluded: dict = field(default_factory=dict)
    data_covariates: pd.DataFrame | None = None    # every covariate column of the data, one row per subject

    @property
    def n_subjects(self) -> int:
        return int(self.ids.size)

    @property
    def n_observations(self) -> int:
        return int(self.mask.sum())

    @property
    def n_eta(self) -> int:
        return len(self.params.template.bsv_names)

    def subjects(self):
        """The per-subject arrays as one pytree with a leading subject axis."""
        return {"cov": {k: jnp.asarray(v) for k, v in self.covariates.items()},
                "dose": tuple(jnp.asarray(a) for a in self.dose),
                "t": jnp.asarray(self.times), "y": jnp.asarray(self.y), "mask": jnp.asarray(self.mask)}

    def predict_outputs(self, pop, subject, eta):
        """Every model output at the subject's times (``{name: (T,)}``) and the solver status."""
        p = individual_parameters(pop, subject["cov"], eta)
        full = {**self.fixed, **p}
        outs, _, status = solve_subject(self.model, full, subject["dose"], subject["t"], self.method,
                                        solver=self.solver, has_infusion=self.has_infusion, has_ss=self.has_ss)
        return outs, status

    def predict(self, pop, subject, eta):
        """Prediction of the fitted output at the subject's times, and the solver status."""
        outs, status = self.predict_outputs(pop, subject, eta)
        return outs[self.spec.output], status


def resolve(spec: PopulationModelSpec, base: Path | None = None):
    """The structural model a population model names (built-in or ``import``)."""
    from insilico.trials._spec import ModelSpec, resolve_model
    ref = ModelSpec(name=spec.model.name, **({"import": spec.model.import_} if spec.model.import_ else {}))
    return resolve_model(ref, base)


def _with_model_units(spec: PopulationModelSpec, model) -> PopulationModelSpec:
    """Parameters without ``units`` take the structural model's declared units."""
    params = {name: (p if p.units else p.model_copy(update={"units": model.parameter(name).units}))
              for name, p in spec.parameters.items()}
    return spec.model_copy(update={"parameters": params})


def _label(v) -> str:
    """A category's label: integer-valued numbers as integers (7 and 7.0 both read "7")."""
    if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _covariate_arrays(spec, data: NonmemData, pop_covariates, categorical):
    """Per-subject covariate arrays and {ID: reason} for subjects with unusable values."""
    cov = data.covariates
    out, bad = {}, {}
    for c in pop_covariates:
        if c not in cov.columns:
            raise SpecError(f"data.{c}", f"column missing: the population model's effects use covariate {c}")
        if c in data.varying:
            raise SpecError(f"data.{c}", f"{c} changes within an ID (time-varying); estimation uses one value per "
                                         "subject today: give a baseline column instead")
        col = cov[c]
        if c in categorical:
            labels = categorical[c]
            text = [_label(v) for v in col]
            codes = np.array([labels.index(t) if t in labels else -1 for t in text])
            for sid, code in zip(cov.index, codes):
                if code < 0:
                    bad.setdefault(sid, f"{c} = {col[sid]!r} is not a category with a multiplier")
            out[c] = np.maximum(codes, 0)
            continue
        vals = pd.to_numeric(col, errors="coerce").to_numpy(float)
        power = any(e.covariate == c and e.type == "power" for p in spec.parameters.values() for e in p.effects)
        for sid, v in zip(cov.index, vals):
            if not np.isfinite(v):
                bad.setdefault(sid, f"{c} is missing or not a number")
            elif power and v <= 0:
                bad.setdefault(sid, f"{c} = {v:g} must be > 0 for a power effect")
        out[c] = np.where(np.isfinite(vals), vals, 1.0)
    return out, bad


def build_problem(spec: PopulationModelSpec, data, *, base: Path | None = None, model=None,
                  solver: SolverOptions | None = None, require_observations: bool = True) -> Problem:
    """Check ``data`` (a NONMEM CSV path, DataFrame or `NonmemData`) against ``spec`` and build
    the :class:`Problem`. Errors name the field or the data row and column (`SpecError`).
    ``require_observations=False`` accepts data without any observation (predictions from the
    prior, candidate regimens)."""
    model = model if model is not None else resolve(spec, base)
    if spec.output not in model.output_names:
        raise SpecError("output", f"model {model.name!r} has no output {spec.output!r} "
                                  f"(outputs: {', '.join(model.output_names)})")
    for name in spec.parameters:
        if name not in model.parameter_names:
            raise SpecError(f"parameters.{name}", f"not a parameter of model {model.name!r} "
                                                  f"({', '.join(model.parameter_names)})")
    spec = _with_model_units(spec, model)
    digest = ""
    if isinstance(data, (str, Path)):
        digest = hashlib.sha256(Path(data).read_bytes()).hexdigest() if Path(data).is_file() else ""
    nm = data if isinstance(data, NonmemData) else read_nonmem(data, model)
    categorical = {}
    for p in spec.parameters.values():
        for e in p.effects:
            if e.type == "categorical":
                categorical[e.covariate] = tuple(e.multipliers)
    covariates = list(dict.fromkeys(e.covariate for p in spec.parameters.values() for e in p.effects))
    cov, bad = _covariate_arrays(spec, nm, covariates, categorical)
    template = compile_population(spec.parameters, spec.bsv, None, spec.residual_error,
                                  covariates=covariates, categories=categorical)
    pv = ParameterVector(template, spec.estimate.fix, spec.estimate.bounds)
    fixed = {}
    for par in model.parameters:
        if par.name in spec.parameters:
            continue
        if par.name in spec.model.parameters:
            fixed[par.name] = float(spec.model.parameters[par.name])
        elif par.default is not None:
            fixed[par.name] = float(par.default)
        else:
            raise SpecError("parameters", f"model {model.name!r} needs {par.name} ({par.units}): add it to "
                                          "parameters (estimated) or to model.parameters (fixed)")
    mask = nm.observed & np.isfinite(nm.dv)
    keep = np.array([sid not in bad for sid in nm.ids])
    if not keep.any():
        raise SpecError("data", "no subject can be fitted: " + "; ".join(f"ID {k}: {v}" for k, v in bad.items()))
    if require_observations and not mask[keep].any():
        raise SpecError("data.DV", "no observations to fit (every DV is missing, MDV=1 or EVID=2)")
    table = nm.doses
    dose = tuple(np.asarray(getattr(table, f))[keep] for f in ("time", "amt", "rate", "cmt", "ss", "ii"))
    return Problem(spec, model, pv, nm.ids[keep], {k: v[keep] for k, v in cov.items()}, dose,
                   nm.times[keep], np.where(mask, nm.dv, 0.0)[keep], mask[keep], fixed,
                   "exact" if model.is_linear else "ode",
                   replace(solver or SolverOptions(), adjoint="forward"), bool(np.any(table.rate != 0)),
                   event_slots(table.ss), digest, bad, nm.covariates.loc[nm.ids[keep]])
