"""A population-model file as a cohort: the parameter model of ``population.yaml`` (the file
`insilico fit` and `insilico twin --prior` take and `insilico import nonmem` writes) joined with
the covariates of a cohort spec.

A population-model file (`insilico.estimation.PopulationModelSpec`) holds a structural ``model``,
the parameter model — ``parameters`` (typical values, covariate effects), ``bsv`` (Omega),
``iov``, ``residual_error`` — and estimation settings (``output``, ``outputs``,
``residual_errors``, ``estimate``), but no covariate distributions. A cohort spec holds the
covariates (distributions, expressions, derived, resampled rows, copula, strata) and criteria.
A **population cohort** is the two together, written in a trial as::

    cohort: {population: run1/population.yaml, covariates: ../cohorts/neonates.yaml}

Why two files joined rather than covariate distributions inside the population file: the
population file stays exactly what `insilico fit` reads and writes back with its estimates (and
what an import writes), the population the covariates describe is a choice of the trial (the same
fitted model simulated in neonates or in adults), and one covariate file serves several models.

* The parameter model is the population file's, number for number: each subject's parameters are
  `insilico.population.individual_parameters` of its covariates and eta with the file's typical
  values, effects, Omega, IOV and residual error. Parameters without ``units`` take the
  structural model's (``units``), as `insilico.fit` does.
* ``covariates``: a cohort spec (a file, relative to ``base``, or a mapping written inline; its
  ``name`` may be left out) with covariates, ``resample``, ``derived``, ``correlation``,
  ``strata`` and ``criteria`` — no parameter model: a covariate spec with its own ``parameters``,
  ``bsv``, ``iov`` or ``residual_error`` is refused (one of the two parameter models would be
  ignored).
* Every covariate an effect uses must be one the covariate spec produces (drawn, expression,
  derived, resampled or the stratum), a categorical effect's on a categorical covariate whose
  categories include the multipliers' levels; otherwise a `SpecError` names the covariate and the
  effect. Without ``covariates`` (or as ``cohort: population.yaml``) the population file is a
  cohort by itself when no effect uses a covariate.
* Residual error: a trial applies the cohort's ``residual_error`` to its ``conc`` output, so it
  is kept when the population's ``output`` (what its DV measured) is ``conc`` and left out
  otherwise (as for a fit store as cohort, `insilico.cohorts.fit_cohort_spec`). The other keys
  (``estimate``, ``outputs`` and ``residual_errors`` of other outputs, how time-varying data
  covariates are read) are settings of a fit on data, not of a simulation: a cohort's covariates are
  drawn, one value per subject.
* The structural ``model`` (and its fixed ``model.parameters``) is returned
  (:class:`PopulationCohort`) for the caller to check against the model it simulates: a trial
  refuses another model (`insilico.trials.prepare`).

Errors are `SpecError` with fields relative to the cohort entry: ``population`` (the file),
``population.<field>`` (inside it, e.g. ``population.parameters.CL.typical``), ``covariates``,
``covariates.<field>``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from insilico.cohorts._compile import compile_spec
from insilico.cohorts._spec import CohortSpec, parse_cohort_spec
from insilico.config import SpecModel, read_mapping, validate
from insilico.errors import SpecError

__all__ = ["PARAMETER_SECTIONS", "PopulationCohort", "PopulationCohortSpec", "is_population_model",
           "load_population_cohort"]

PARAMETER_SECTIONS = ("parameters", "bsv", "iov", "residual_error")   # the parameter model of a cohort spec
_OUTPUT = "conc"   # the output a trial applies the cohort's residual error to


class PopulationCohortSpec(SpecModel):
    """``{population: FILE, covariates: FILE | {cohort spec without a parameter model}}``
    (module docstring); unknown keys are refused."""

    population: Annotated[str, Field(min_length=1)]
    covariates: Annotated[str, Field(min_length=1)] | dict[str, Any] | None = None


@dataclass(frozen=True)
class PopulationCohort:
    """A population cohort: ``spec`` (the joined, compiled-and-checked `CohortSpec`), the population
    file's structural ``model`` (`insilico.models.ModelRef`, relative paths against ``model_base``,
    the population file's folder), its ``output``, and the files used (``population``,
    ``covariates``: None when inline or absent)."""

    spec: CohortSpec
    model: Any
    model_base: Path
    output: str
    population: Path
    covariates: Path | None


def is_population_model(source) -> bool:
    """Whether ``source`` (a path or mapping) is a population-model file rather than a cohort
    spec: it names a structural ``model`` (a cohort spec has none). False when unreadable."""
    try:
        data, _ = read_mapping(source, "population model")
    except SpecError:
        return False
    return "model" in data


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(base) / p


def _population_file(path: Path):
    """The population-model spec in ``path`` (errors: ``population``, ``population.<field>``).
    Validated as `insilico.fit` validates it, except that ``iov`` (not estimated yet) is allowed:
    a simulation applies it."""
    from insilico.estimation import PopulationModelSpec, load_population_model
    if not path.is_file():
        raise SpecError("population", f"population-model file not found: {path}")
    try:
        data, folder = read_mapping(path, "population model")
    except SpecError as e:
        raise SpecError("population", e.message) from None
    if "model" not in data:
        raise SpecError("population", f"{path.name} is not a population-model file (it has no structural `model:`); "
                                      "a cohort spec is given as cohort: FILE itself")
    try:
        spec, _ = load_population_model({k: v for k, v in data.items() if k != "iov"})
        if "iov" in data:
            spec = validate(PopulationModelSpec, data)
    except SpecError as e:
        raise SpecError(f"population.{e.field}" if e.field else "population", f"{path.name}: {e.message}") from None
    return spec, folder


def _covariate_spec(source, base: Path) -> tuple[CohortSpec | None, Path | None, str]:
    """The covariate spec (file or inline mapping), its path, and a description for messages."""
    if source is None:
        return None, None, "no covariate spec"
    if isinstance(source, str):
        path = _resolve(source, base)
        if not path.is_file():
            raise SpecError("covariates", f"covariate (cohort) spec file not found: {path}")
        try:
            data, _ = read_mapping(path, "cohort spec")
        except SpecError as e:
            raise SpecError("covariates", e.message) from None
        where, what = path, f"the covariate spec {path.name}"
    else:
        data, where, what = {"name": "covariates", **source}, None, "the inline covariate spec"
    if "model" in data:
        raise SpecError("covariates", f"{what} is a population-model file (it has `model:`); covariates come from a "
                                      "cohort spec (covariates, resample, derived, correlation, strata, criteria)")
    own = [k for k in PARAMETER_SECTIONS if data.get(k)]
    if own:
        raise SpecError(f"covariates.{own[0]}", f"{what} has its own parameter model ({', '.join(own)}); with "
                                                "`population:` the parameter model is the population file's: "
                                                "give a cohort spec with covariates and criteria only")
    try:
        spec = parse_cohort_spec(where if where is not None else data, None if where is not None else base)
    except SpecError as e:
        raise SpecError(f"covariates.{e.field}" if e.field else "covariates", e.message) from None
    return spec, where, what


def _produced(spec: CohortSpec | None) -> list[str]:
    """The covariates a covariate spec produces (stratum, resampled columns, covariates, derived)."""
    if spec is None:
        return []
    strata = [spec.strata.name] if spec.strata is not None else []
    resampled = list(spec.resample.columns) if spec.resample is not None else []
    return strata + resampled + list(spec.covariates) + list(spec.derived)


def load_population_cohort(source, base: str | os.PathLike | None = None, *,
                           units: Mapping[str, str] | Callable[[Any, Path], Mapping[str, str]] | None = None
                           ) -> PopulationCohort:
    """The population cohort of ``source`` (module docstring): a :class:`PopulationCohortSpec`, a
    mapping ``{population, covariates}``, or the path of a population-model file (no covariates).
    ``base``: the folder relative paths refer to (default: the working directory); ``units``:
    {parameter: units} of the structural model, for parameters the population file gives none, or
    a callable ``units(model, folder)`` returning them from the population's structural model
    (`insilico.models.ModelRef`) and the folder its relative paths refer to, called once the file
    is read and before the cohort is built (where a caller checks that model: a trial refuses
    another model than its own); what it raises propagates unchanged.

    Returns the joined cohort spec, compiled and checked (`compile_spec`), with the population's
    structural model. Raises `SpecError` (module docstring for the fields)."""
    base = Path.cwd() if base is None else Path(base)
    if isinstance(source, (str, os.PathLike)):
        source = PopulationCohortSpec(population=str(source))
    elif not isinstance(source, PopulationCohortSpec):
        source = validate(PopulationCohortSpec, dict(source))
    ppath = _resolve(source.population, base)
    pm, folder = _population_file(ppath)
    units = dict((units(pm.model, Path(folder)) if callable(units) else units) or {})
    cov, cpath, what = _covariate_spec(source.covariates, base)
    produced = _produced(cov)
    for name, p in pm.parameters.items():
        for j, e in enumerate(p.effects):
            if e.covariate not in produced:
                uses = (f"no covariate {e.covariate!r}, which the population model's effect "
                        f"parameters.{name}.effects.{j} ({ppath.name}) uses")
                if cov is None:
                    raise SpecError("covariates", f"{uses}, and no covariate spec is given: write cohort: "
                                                  f"{{population: {source.population}, covariates: COHORT_FILE}} with "
                                                  f"a cohort spec that draws {e.covariate}")
                raise SpecError("covariates", f"{uses}; {what} gives {', '.join(produced) or 'none'}: add "
                                              f"{e.covariate} to it")
    parameters = {n: (p.model_copy(update={"units": units[n]}) if p.units is None and n in units else p)
                  for n, p in pm.parameters.items()}
    described = f"population model {ppath.name}" + (f" ({pm.description.strip()})" if pm.description.strip() else "")
    update = {"name": pm.name, "parameters": parameters, "bsv": pm.bsv, "iov": pm.iov,
              "residual_error": pm.residual_error if pm.output == _OUTPUT else None,
              "description": described + (f" with the covariates of {cpath.name if cpath else 'an inline spec'}"
                                           if cov is not None else "")}
    joined = (cov if cov is not None else CohortSpec(name=pm.name)).model_copy(update=update)
    try:
        joined = parse_cohort_spec(joined.model_dump(mode="json", by_alias=True, exclude_none=True), base)
        compile_spec(joined)
    except SpecError as e:
        section = e.field.split(".", 1)[0]
        if section in PARAMETER_SECTIONS:
            raise SpecError(f"population.{e.field}", f"{ppath.name} with {what}: {e.message}") from None
        raise SpecError(f"covariates.{e.field}" if e.field else "covariates", e.message) from None
    return PopulationCohort(joined, pm.model, Path(folder), pm.output, ppath, cpath)
