"""Cohort specification schema (pydantic v2, ``extra="forbid"``) and YAML loading.

The schema checks structure and types; the semantic checks (names exist, no cycles, Ω and
correlation matrices positive definite, ...) happen when the spec is compiled
(:func:`insilico.cohorts._compile.compile_spec`), which :func:`load_cohort_spec` runs, so a bad
spec fails at load time with a :class:`~insilico.errors.SpecError` naming the field.

Units: AGE years, WT kg, HT cm, SCR mg/dL, CRCL mL/min, EGFR mL/min/1.73m2, BSA m2, BMI
kg/m2; PK parameters CL/Q L/h, V L, KA 1/h (see ``_metadata.py`` for the default table).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
)

from insilico.errors import SpecError

__all__ = [
    "DERIVED",
    "DISTRIBUTIONS",
    "BSVSpec",
    "CohortSpec",
    "CorrelationSpec",
    "CovariateSpec",
    "CriteriaSpec",
    "EffectSpec",
    "IOVSpec",
    "ParameterSpec",
    "ResidualErrorSpec",
    "StrataSpec",
    "StratumLevelSpec",
    "load_cohort_spec",
]

DISTRIBUTIONS = ("normal", "lognormal", "truncnormal", "uniform", "categorical")
DERIVED = ("BMI", "BSA", "LBW", "CRCL", "EGFR")


def _param_value(v: Any) -> float | str | dict[str, float]:
    """A distribution parameter: a number, ``{category: number}`` (with ``given``), or an
    expression string over previously defined covariates."""
    if isinstance(v, bool):
        raise ValueError("expected a number, a {category: number} mapping or an expression string")  # noqa: TRY004
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            raise ValueError(f"must be finite, got {v}")
        return float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        out = {}
        for k, x in v.items():
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise ValueError(f"category {k!r}: expected a finite number, got {x!r}")
            out[str(k)] = float(x)
        return out
    raise ValueError(f"expected a number, a {{category: number}} mapping or an expression string, "
                     f"got {type(v).__name__}")


ParamValue = Annotated[Any, PlainValidator(_param_value), PlainSerializer(lambda v: v)]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CovariateSpec(_Base):
    """One covariate: either a distribution (``dist``) or an expression (``expr``).

    Distribution parameters (each a number, a mapping over the categories of ``given``, or an
    expression of other covariates):

    * ``normal``: ``mean``, ``sd``
    * ``lognormal``: ``median`` (= exp(meanlog)) or ``meanlog``, and ``sdlog`` (SD of log x)
    * ``truncnormal``: ``mean``, ``sd``, ``low``, ``high`` (normal(mean, sd) truncated to [low, high])
    * ``uniform``: ``low``, ``high``
    * ``categorical``: ``probs`` ``{label: probability}`` (stored as integer codes 0..K-1 in
      this order)
    """

    dist: Literal["normal", "lognormal", "truncnormal", "uniform", "categorical"] | None = None
    expr: str | None = None
    given: str | None = None
    mean: ParamValue = None
    sd: ParamValue = None
    median: ParamValue = None
    meanlog: ParamValue = None
    sdlog: ParamValue = None
    low: ParamValue = None
    high: ParamValue = None
    probs: dict[str, float] | None = None
    units: str | None = None
    long_name: str | None = None


class CorrelationSpec(_Base):
    """Gaussian copula: correlation ``matrix`` of the standard-normal scores of ``covariates``."""

    covariates: list[str]
    matrix: list[list[float]]


class CriteriaSpec(_Base):
    """Inclusion (all must hold) and exclusion (none may hold) criteria, as expressions."""

    inclusion: list[str] = Field(default_factory=list)
    exclusion: list[str] = Field(default_factory=list)


class StratumLevelSpec(_Base):
    fraction: float = Field(gt=0, le=1)
    criteria: list[str] = Field(default_factory=list)
    long_name: str | None = None


class StrataSpec(_Base):
    """Strata: subject ``i`` is assigned to a level deterministically from ``i`` alone
    (low-discrepancy sequence, so any block of subjects has the target fractions to within one
    subject per level); the level's ``criteria`` are added to the inclusion criteria and the
    stratum is a categorical covariate ``name`` usable as ``given``."""

    name: str
    long_name: str | None = None
    levels: dict[str, StratumLevelSpec]


class EffectSpec(_Base):
    """Covariate effect on a parameter (multiplicative on the typical value):

    * ``power``: (cov / ref) ** theta (allometric: WT, ref 70, theta 0.75)
    * ``exponential``: exp(theta * (cov - ref))
    * ``linear``: 1 + theta * (cov - ref)
    * ``categorical``: ``multipliers[category]`` (categories not listed: 1)
    """

    covariate: str
    type: Literal["power", "exponential", "linear", "categorical"]
    theta: float | None = None
    ref: float | None = None
    multipliers: dict[str, float] | None = None


class ParameterSpec(_Base):
    typical: float = Field(gt=0)
    units: str | None = None
    long_name: str | None = None
    effects: list[EffectSpec] = Field(default_factory=list)


class BSVSpec(_Base):
    """Between-subject variability, log-normal: P_i = TV_i * exp(eta_i), eta ~ MVN(0, Omega).

    Give ``omega`` (full variance-covariance matrix of eta, NONMEM $OMEGA BLOCK), or diagonal
    ``variance`` (omega^2) or ``cv_percent`` (CV% -> omega^2 = log(1 + CV^2), NONMEM
    convention for log-normal etas) with an optional ``correlation`` matrix.
    """

    parameters: list[str]
    omega: list[list[float]] | None = None
    variance: list[float] | None = None
    cv_percent: list[float] | None = None
    correlation: list[list[float]] | None = None


class IOVSpec(_Base):
    """Inter-occasion variability: P_ik = TV_i * exp(eta_i + kappa_ik), kappa_ik ~ N(0, omega_iov^2)
    independent over occasions k = 1..occasions; ``variance`` or ``cv_percent`` per parameter."""

    occasions: int = Field(ge=1, le=1000)
    variance: dict[str, float] | None = None
    cv_percent: dict[str, float] | None = None


class ResidualErrorSpec(_Base):
    """Residual (observation) error, NONMEM-style with eps ~ N(0, 1):

    * ``additive``: y = f + additive * eps  (``additive``: SD in the observation's units)
    * ``proportional``: y = f * (1 + proportional * eps)  (``proportional``: SD of the
      relative error, e.g. 0.15 = 15 %)
    * ``combined``: y = f * (1 + proportional * eps1) + additive * eps2
    * ``exponential``: y = f * exp(exponential * eps)  (SD on the log scale)
    """

    type: Literal["additive", "proportional", "combined", "exponential"]
    additive: float | None = Field(default=None, ge=0)
    proportional: float | None = Field(default=None, ge=0)
    exponential: float | None = Field(default=None, ge=0)


class CohortSpec(_Base):
    """A virtual cohort: covariates, dependencies, criteria, strata and the parameter model."""

    name: str
    description: str = ""
    covariates: dict[str, CovariateSpec]
    derived: list[Literal["BMI", "BSA", "LBW", "CRCL", "EGFR"]] = Field(default_factory=list)
    correlation: CorrelationSpec | None = None
    strata: StrataSpec | None = None
    criteria: CriteriaSpec = Field(default_factory=CriteriaSpec)
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    bsv: BSVSpec | None = None
    iov: IOVSpec | None = None
    residual_error: ResidualErrorSpec | None = None

    @field_validator("criteria", mode="before")
    @classmethod
    def _criteria_list(cls, v):
        # a plain list means inclusion criteria
        return {"inclusion": v} if isinstance(v, list) else v

    def to_json(self) -> str:
        """Canonical JSON of the spec (stored in the cohort's attributes)."""
        return self.model_dump_json(exclude_none=True)


def _validation_to_spec_error(err: ValidationError, prefix: str = "") -> SpecError:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
    field = ".".join(p for p in (prefix, loc) if p)
    msg = e["msg"]
    if e.get("type") not in ("missing", "extra_forbidden") and "input" in e:
        inp = e["input"]
        if not isinstance(inp, (dict, list)):
            msg += f" (got {inp!r})"
    if e.get("type") == "extra_forbidden":
        msg = "unknown field (not part of the cohort spec schema)"
    n = err.error_count()
    if n > 1:
        msg += f" [and {n - 1} more error{'s' if n > 2 else ''}]"
    return SpecError(field or "spec", msg)


def load_cohort_spec(source: CohortSpec | Mapping | str | os.PathLike) -> CohortSpec:
    """Load and check a cohort spec from a YAML file path, a YAML string, a mapping, or a spec.

    Raises :class:`insilico.errors.SpecError` (``str()`` = ``"field: message"``) on YAML
    errors, schema errors and semantic errors (unknown covariates, cycles, Ω not positive
    definite, ...).
    """
    from insilico.cohorts._compile import compile_spec

    if isinstance(source, CohortSpec):
        spec = source
    else:
        data = _read(source)
        if not isinstance(data, Mapping):
            raise SpecError("spec", f"a cohort spec must be a mapping, got {type(data).__name__}")
        try:
            spec = CohortSpec.model_validate(dict(data))
        except ValidationError as err:
            raise _validation_to_spec_error(err) from None
    compile_spec(spec)  # semantic checks
    return spec


def _read(source) -> Any:
    if isinstance(source, Mapping):
        return source
    if isinstance(source, (str, os.PathLike)):
        text = None
        s = os.fspath(source)
        if isinstance(source, os.PathLike) or ("\n" not in s and s.endswith((".yaml", ".yml", ".json"))):
            p = Path(s)
            if not p.is_file():
                raise SpecError("path", f"cohort spec file not found: {s}")
            text, where = p.read_text(), s
        else:
            text, where = s, "<string>"
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e)
            raise SpecError("yaml", f"cannot parse {where}{pos}: {problem}") from None
    raise SpecError("spec", f"expected a path, YAML text or mapping, got {type(source).__name__}")


def spec_from_json(text: str) -> CohortSpec:
    """Rebuild a spec from :meth:`CohortSpec.to_json` output (as stored in a cohort's attrs)."""
    return load_cohort_spec(json.loads(text))
