"""The population-model file: a structural model, the parameter model of a cohort spec
(typical values, covariate effects, Omega, residual error) and an ``estimate`` section
(FIX and bounds). The same sections simulate a cohort (``insilico.cohorts``) and fit data.

Example (``population.yaml``)::

    name: theophylline
    model: {name: 1cmt_oral}
    output: conc                  # the model output DV measures
    parameters:
      CL: {typical: 2.8, effects: [{covariate: WT, type: power, ref: 70, theta: 0.75}]}
      V: {typical: 32}
      KA: {typical: 1.5}
    bsv: {parameters: [CL, V, KA], variance: [0.1, 0.1, 0.1]}
    residual_error: {type: combined, additive: 0.3, proportional: 0.1}
    estimate:
      fix: [CL.WT]                # the allometric exponent is not estimated
      bounds: {KA: [0.1, 10]}

Names of estimated quantities (used by ``fix``, ``bounds``, results, ``--json``): a
parameter's typical value by its name (``CL``); a covariate effect's theta as
``PARAM.COVARIATE`` (``CL.WT``; categorical multipliers ``CL.SEX[female]``); Omega elements
``OMEGA(i,j)`` (1-based, in the order of ``bsv.parameters``, lower triangle) and residual
variances ``SIGMA(k,k)`` (NONMEM: EPS variances; k = 1 the proportional or only error, k = 2
the additive error of a combined model). Omega is estimated with the structure of its initial
value, as NONMEM's $OMEGA BLOCK: elements that are 0 stay 0, the blocks of nonzero elements are
estimated as full covariance matrices.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ConfigDict, Field, field_validator

from insilico.config import SpecModel, as_tuple, read_mapping, validate
from insilico.errors import SpecError
from insilico.population import BSVSpec, IOVSpec, ParameterSpec, ResidualErrorSpec

__all__ = ["EstimateSpec", "PopulationModelSpec", "load_population_model"]


class EstimateSpec(SpecModel):
    """What is estimated: ``fix`` lists names held at their initial value; ``bounds`` gives
    ``[lower, upper]`` for a typical value or an effect theta (natural scale, units of the
    parameter); ``max_iter`` bounds the outer iterations."""

    fix: list[str] = []
    bounds: dict[str, as_tuple(tuple[float, float])] = {}
    max_iter: int = Field(default=500, ge=1, le=100_000)

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, v):
        for k, (lo, hi) in v.items():
            if not lo < hi:
                raise ValueError(f"{k}: lower bound {lo} must be below upper bound {hi}")
        return v


class ModelRef(SpecModel):
    """A built-in model ``name`` or a user model ``import: pkg.mod:attr`` (the trial spec's
    ``model`` section); ``parameters`` fixes model parameters the population model does not
    provide."""

    name: str | None = None
    import_: str | None = Field(None, alias="import")
    parameters: dict[str, float] = {}

    model_config = ConfigDict(populate_by_name=True)


class PopulationModelSpec(SpecModel):
    """A population model (see the module docstring). ``output``: the model output the DV
    column measures (default ``conc``)."""

    name: str = "population"
    description: str = ""
    model: ModelRef
    output: str = "conc"
    parameters: dict[str, ParameterSpec]
    bsv: BSVSpec | None = None
    iov: IOVSpec | None = None
    residual_error: ResidualErrorSpec
    estimate: EstimateSpec = EstimateSpec()

    @field_validator("parameters")
    @classmethod
    def _some(cls, v):
        if not v:
            raise ValueError("list at least one parameter")
        return v


def load_population_model(source: PopulationModelSpec | Mapping | str | os.PathLike,
                          overrides: list[str] | None = None) -> tuple[PopulationModelSpec, Path | None]:
    """Read and validate a population-model file (YAML path, YAML text or mapping); returns
    the spec and the folder relative paths resolve against. Errors: `SpecError` naming the
    field."""
    if isinstance(source, PopulationModelSpec):
        return source, None
    from insilico.config import apply_overrides
    data, base = read_mapping(source, "population model")
    spec = validate(PopulationModelSpec, apply_overrides(data, overrides or []))
    if (spec.model.name is None) == (spec.model.import_ is None):
        raise SpecError("model", "give exactly one of `name` (built-in) or `import` (pkg.module:attribute)")
    if spec.iov is not None:
        raise SpecError("iov", "inter-occasion variability is not estimated yet (the data reader has no "
                               "occasions); remove the iov section to fit this model")
    return spec, base
