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

Names of estimated quantities (used by ``fix``, ``bounds``, results, ``--json``): a parameter's
typical value by its name (``CL``); a covariate effect's theta as ``PARAM.COVARIATE`` (``CL.WT``;
categorical multipliers ``CL.SEX[female]``); Omega elements ``OMEGA(i,j)`` (1-based, in the order of
``bsv.parameters``, lower triangle) and residual variances ``SIGMA(k,k)`` (NONMEM: EPS variances; k
= 1 the proportional or only error, k = 2 the additive error of a ``combined`` or ``combined1``
model; for ``combined1``, SD = a + b|f|, they are the squared SD coefficients b² and a²,
`insilico.population.population_quantities`). Omega is estimated with the structure of its initial
value, as NONMEM's $OMEGA BLOCK: elements that are 0 stay 0, the blocks of nonzero elements are
estimated as full covariance matrices.

Several observed outputs (NONMEM's DVID): ``outputs`` maps the data's DVID values to model
outputs, ``output`` (the primary one) takes ``residual_error`` and every other mapped output its
own model in ``residual_errors``; their SIGMAs follow the primary's, outputs in DVID order::

    model: {name: 1cmt_iv+emax}
    output: conc
    outputs: {1: conc, 2: effect}
    residual_error: {type: proportional, proportional: 0.1}          # conc: SIGMA(1,1)
    residual_errors: {effect: {type: additive, additive: 2.0}}       # effect: SIGMA(2,2)

Without a DVID column every record measures ``output``.

Time-varying covariates: a covariate column whose value changes within an ID changes the individual
parameters between records. ``covariate_interpolation`` says which value holds between two
records: ``locf`` (the default: a record's value holds from its time until the next record) or
``nocb`` (a record's value holds back to the previous record; what NONMEM's PREDPP does, advancing
the system to each event record with that record's values, and mrgsolve's default ``nocb = TRUE``)::

    covariate_interpolation: nocb

Details: `insilico.estimation._problem`.

Inter-occasion variability (IOV), ``iov: {occasions: K, variance: {CL: 0.04}}``: parameter P of
subject i on occasion k is ``TV_i exp(eta_i + kappa_ik)``, kappa_ik ~ N(0, Omega_IOV) independent over
occasions, one diagonal Omega_IOV shared by every occasion (NONMEM's ``$OMEGA BLOCK(n) ... SAME``
convention, NONMEM Users Guide Part VIII). FOCE-I and Laplace estimate Omega_IOV: its variances are
named ``OMEGA_IOV(j,j)`` (1-based, in the order of the ``iov`` parameters; they may be listed in
``estimate.fix``). Each record's occasion comes from the data's ``OCC`` column (integer 1..K on every
record; between records it follows ``covariate_interpolation``, like a time-varying covariate) or,
when the data have no OCC column, from ``iov.starts`` (occasion k from ``starts[k]`` h on the data's
TIME clock, the first also before its start; a record exactly at a start belongs to the new occasion).
With both, the OCC column defines the fit's occasions (the result says so: ``extra["occasions"]``).
With neither, the fit is refused (`SpecError` ``iov``). NUTS samples the kappas and Omega_IOV too
(`insilico.estimation._nuts`). Details: `insilico.estimation._problem`.

Censored observations (BLQ), ``estimate: {blq: m1 | m3}``: a record is below the limit of
quantification when ``BLQ`` = 1 or ``DV < LLOQ`` (NONMEM/Monolix convention; a record without an
``LLOQ`` value takes its DV as the limit, which is how such data sets report it). ``m1`` (the
default when the data have a ``BLQ`` or ``LLOQ`` column) drops those records; ``m3`` (Beal, J
Pharmacokinet Pharmacodyn 2001;28:481) keeps them with the likelihood
``P(y < LLOQ) = Phi((LLOQ - IPRED) / SD)`` (on the log scale for the exponential error), which needs
``method: laplace`` or ``nuts`` (as NONMEM needs LAPLACIAN for M3).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from insilico.config import SpecModel, as_tuple, read_mapping, validate
from insilico.errors import SpecError
from insilico.models import ModelRef  # `model:`, as in a trial spec (one home: insilico.models)
from insilico.population import BSVSpec, IOVSpec, ParameterSpec, ResidualErrorSpec

__all__ = ["EstimateSpec", "PopulationModelSpec", "load_population_model"]


class EstimateSpec(SpecModel):
    """What is estimated: ``fix`` lists names held at their initial value; ``bounds`` gives
    ``[lower, upper]`` for a typical value or an effect theta (natural scale, units of the
    parameter); ``max_iter`` bounds the outer iterations; ``blq``: the handling of records below
    the limit of quantification, ``m1`` (drop) or ``m3`` (censored likelihood), default ``m1``
    when the data have a BLQ or LLOQ column (see the module docstring)."""

    fix: list[str] = []
    bounds: dict[str, as_tuple(tuple[float, float])] = {}
    max_iter: int = Field(default=500, ge=1, le=100_000)
    blq: Literal["m1", "m3"] | None = None

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, v):
        for k, (lo, hi) in v.items():
            if not lo < hi:
                raise ValueError(f"{k}: lower bound {lo} must be below upper bound {hi}")
        return v


class PopulationModelSpec(SpecModel):
    """A population model (see the module docstring). ``output``: the model output the DV
    column measures (default ``conc``); ``outputs``: {DVID: model output} and
    ``residual_errors``: {output: residual model} for several observed outputs;
    ``covariate_interpolation``: ``locf`` or ``nocb``, the value of a time-varying covariate between
    records (module docstring)."""

    name: str = "population"
    description: str = ""
    model: ModelRef
    output: str = "conc"
    parameters: dict[str, ParameterSpec]
    bsv: BSVSpec | None = None
    iov: IOVSpec | None = None
    residual_error: ResidualErrorSpec
    outputs: dict[int, str] = {}
    residual_errors: dict[str, ResidualErrorSpec] = {}
    estimate: EstimateSpec = EstimateSpec()
    covariate_interpolation: Literal["locf", "nocb"] = "locf"

    @property
    def fitted_outputs(self) -> tuple[str, ...]:
        """The observed outputs: ``output`` first, then the other mapped ones in DVID order."""
        return tuple(dict.fromkeys([self.output, *(self.outputs[k] for k in sorted(self.outputs))]))

    @field_validator("outputs", mode="before")
    @classmethod
    def _integer_keys(cls, v):
        """DVID keys written as text (JSON object keys, ``"1"``) read as integers."""
        if isinstance(v, Mapping):
            return {int(k) if isinstance(k, str) and k.strip().isdigit() else k: o for k, o in v.items()}
        return v

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
    _check_outputs(spec)
    return spec, base


def _check_outputs(spec: PopulationModelSpec) -> None:
    """``outputs`` maps to ``output`` among others; ``residual_errors`` covers exactly the other outputs."""
    mapped = set(spec.outputs.values())
    if spec.outputs and spec.output not in mapped:
        raise SpecError("outputs", f"map the primary output {spec.output!r} (``output``) to a DVID "
                                   f"(mapped: {', '.join(sorted(mapped))})")
    others = [o for o in spec.fitted_outputs if o != spec.output]
    for o in others:
        if o not in spec.residual_errors:
            raise SpecError(f"residual_errors.{o}", f"output {o!r} is observed (outputs) and needs its residual "
                                                    "error model here")
    for o in spec.residual_errors:
        if o not in others:
            raise SpecError(f"residual_errors.{o}", f"{o!r} is not an observed output other than {spec.output!r} "
                                                    "(its residual model is residual_error)" if o == spec.output
                            else f"{o!r} is not mapped in outputs")
