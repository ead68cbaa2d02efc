"""Cohort specification schema (pydantic v2, ``extra="forbid"``) and its parsing.

The schema checks structure, types and what one section can check by itself (a value's range,
fields required or not used with a distribution, probabilities summing to 1, a correlation
matrix's shape and definiteness, units grammar); checks across sections (names exist, no
cycles, categories of ``given``) happen when the spec is compiled
(:func:`insilico.cohorts._compile.compile_spec`), which :func:`~insilico.cohorts.load_cohort_spec`
runs, so a bad spec fails at load time with a :class:`~insilico.errors.SpecError` naming the field.

The parameter-model sections (``parameters``, ``bsv``, ``iov``, ``residual_error``) are the
classes of :mod:`insilico.population`.

Units (:mod:`insilico.units` grammar): AGE years, WT kg, HT cm, SCR mg/dL, CRCL mL/min, EGFR
mL/min/(1.73*m**2), BSA m**2, BMI kg/m**2; PK parameters CL/Q L/h, V L, KA 1/h (defaults:
``_metadata.COVARIATES`` and ``insilico.models.PARAMETER_INFO``).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from insilico.config import SpecModel, read_mapping, validate
from insilico.errors import SpecError
from insilico.population import (
    BSVSpec,
    EffectSpec,
    IOVSpec,
    ParameterSpec,
    ResidualErrorSpec,
    correlation_matrix,
    required,
    units_value,
)

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
    "ResampleSpec",
    "ResidualErrorSpec",
    "StrataSpec",
    "StratumLevelSpec",
    "parse_cohort_spec",
]

DISTRIBUTIONS = ("normal", "lognormal", "truncnormal", "uniform", "categorical")
DERIVED = ("BMI", "BSA", "LBW", "CRCL", "EGFR")
# parameters of each distribution (lognormal: meanlog or median)
DIST_PARAMS = {
    "normal": ("mean", "sd"),
    "lognormal": ("meanlog", "median", "sdlog"),
    "truncnormal": ("mean", "sd", "low", "high"),
    "uniform": ("low", "high"),
    "categorical": ("probs",),
}
DIST_FIELDS = ("mean", "sd", "meanlog", "median", "sdlog", "low", "high", "probs")
_POSITIVE = ("sd", "sdlog", "median")


def _param_value(v: Any) -> float | str | dict[str, float]:
    """A distribution parameter: a number, ``{category: number}`` (with ``given``), or an
    expression string over previously defined covariates."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError("expected a number, a {category: number} mapping or an expression string")
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


def _probability(p: float) -> float:
    if not 0 <= p <= 1:
        raise ValueError("probability must be in [0, 1]")
    return p


ParamValue = Annotated[Any, PlainValidator(_param_value), PlainSerializer(lambda v: v)]
Probability = Annotated[float, AfterValidator(_probability)]


class _Base(SpecModel):
    """Strict types, finite floats, unknown fields refused (`insilico.config.SpecModel`)."""


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

    ``units`` follow :mod:`insilico.units` (default for standard names, ``1`` for categorical).
    """

    dist: Literal["normal", "lognormal", "truncnormal", "uniform", "categorical"] | None = None
    expr: str | None = None
    given: str | None = Field(default=None, validate_default=True)
    mean: ParamValue = Field(default=None, validate_default=True)
    sd: ParamValue = Field(default=None, validate_default=True)
    meanlog: ParamValue = Field(default=None, validate_default=True)
    median: ParamValue = Field(default=None, validate_default=True)
    sdlog: ParamValue = Field(default=None, validate_default=True)
    low: ParamValue = Field(default=None, validate_default=True)
    high: ParamValue = Field(default=None, validate_default=True)
    probs: dict[str, Probability] | None = Field(default=None, validate_default=True)
    units: Annotated[str | None, AfterValidator(units_value)] = None
    long_name: str | None = None

    @field_validator("given", *DIST_FIELDS)
    @classmethod
    def _dist_field(cls, v, info: ValidationInfo):
        f, d, expr = info.field_name, info.data.get("dist"), info.data.get("expr")
        if (d is None) == (expr is None):  # reported once, by _dist_or_expr
            return v
        if expr is not None:
            if v is not None:
                raise ValueError("not allowed with expr")
            return v
        if f == "given":
            if d == "categorical" and v is not None:
                raise ValueError("a categorical covariate cannot be conditional (not supported)")
            return v
        allowed = DIST_PARAMS[d]
        if v is not None and f not in allowed:
            raise ValueError(f"not a parameter of {d} (expected {', '.join(sorted(allowed))})")
        if f not in allowed:
            return v
        if f == "probs":
            return _probs(v)
        if f == "meanlog":
            return v
        if f == "median" and (v is None) == (info.data.get("meanlog") is None):
            if v is None:
                raise required("lognormal needs exactly one of median or meanlog")
            raise ValueError("lognormal needs exactly one of median or meanlog")
        if f != "median" and v is None:
            raise required(f"required for {d}")
        if isinstance(v, dict) and info.data.get("given") is None:
            raise ValueError("a {category: value} mapping needs `given` (a categorical covariate)")
        if isinstance(v, float) and f in _POSITIVE and not v > 0:
            raise ValueError("must be > 0")
        low = info.data.get("low")
        if f == "high" and isinstance(v, float) and isinstance(low, float) and not low < v:
            raise ValueError(f"must be > low ({low})")
        return v

    @model_validator(mode="after")
    def _dist_or_expr(self):
        if (self.dist is None) == (self.expr is None):
            raise ValueError("give exactly one of dist (a distribution) or expr (an expression)")
        return self


def _probs(v):
    if not v:
        raise required("categorical needs probs {label: probability}")
    s = sum(v.values())
    if abs(s - 1) > 1e-6:
        raise ValueError(f"probabilities must sum to 1, got {s:.6g}")
    return v


class CorrelationSpec(_Base):
    """Gaussian copula: correlation ``matrix`` of the standard-normal scores of ``covariates``."""

    covariates: list[str]
    matrix: list[list[float]]

    @field_validator("covariates")
    @classmethod
    def _covariates(cls, v):
        if len(v) < 2:
            raise ValueError("list at least two covariates")
        if len(set(v)) != len(v):
            raise ValueError("covariates must be distinct")
        return v

    @field_validator("matrix")
    @classmethod
    def _matrix(cls, v, info: ValidationInfo):
        names = info.data.get("covariates")
        if names:
            correlation_matrix(v, len(names))
        return v


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

    @field_validator("levels")
    @classmethod
    def _levels(cls, v):
        if not v:
            raise ValueError("at least one level is required")
        total = sum(lv.fraction for lv in v.values())
        if abs(total - 1) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {total:.6g}")
        return v


class ResampleSpec(_Base):
    """Covariates resampled from a table of real subjects (bootstrap): each virtual subject is a
    whole row of ``table`` drawn uniformly with replacement, so the ``columns`` keep their joint
    distribution. The row is a random draw of the subject's key like every other cohort draw
    (deterministic per seed and subject index, redrawn on each rejection attempt of the criteria).

    * ``table``: a ``.csv`` or ``.parquet`` file, or a fit store (``.zarr``: the covariates of the
      fitted subjects), relative to the cohort file's folder;
    * ``id``: the column naming the subject when the table has several rows per subject (a NONMEM
      data set): the first row of each subject is used;
    * ``columns``: the covariates taken from the table (each becomes a covariate of that name);
    * ``categories``: ``{column: [label, ...]}`` categorical columns, stored as codes 0..K-1 in this
      order (a value matches a label by text, or by number: ``1.0`` matches ``"1"``); a column of
      text is categorical with its sorted distinct values as labels unless listed here;
    * ``units``/``long_name``: per column (default: the standard covariate's, ``1`` for categorical).
    """

    table: Annotated[str, Field(min_length=1)]
    columns: list[str]
    id: str | None = None
    categories: dict[str, list[str]] = Field(default_factory=dict)
    units: dict[str, Annotated[str, AfterValidator(units_value)]] = Field(default_factory=dict)
    long_name: dict[str, str] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _columns(cls, v):
        if not v:
            raise ValueError("list at least one column")
        if len(set(v)) != len(v):
            raise ValueError("columns must be distinct")
        return v

    @field_validator("categories")
    @classmethod
    def _labels(cls, v):
        for name, labels in v.items():
            if not labels:
                raise ValueError(f"{name}: list at least one category label")
            if len(set(labels)) != len(labels):
                raise ValueError(f"{name}: category labels must be distinct")
        return v

    @model_validator(mode="after")
    def _listed(self):
        for field in ("categories", "units", "long_name"):
            for name in getattr(self, field):
                if name not in self.columns:
                    raise SpecError(f"{field}.{name}", f"not one of the columns ({', '.join(self.columns)})")
        return self


class CohortSpec(_Base):
    """A virtual cohort: covariates, dependencies, criteria, strata and the parameter model.

    ``covariates`` may be left out: a covariate-free cohort draws only the parameter model
    (typical values with BSV/IOV), e.g. ``{name: c, parameters: {CL: {typical: 5}}, bsv: ...}``.
    ``resample`` takes covariates from a table of real subjects (:class:`ResampleSpec`); the
    other covariates, derived covariates and criteria may use them."""

    name: str
    description: str = ""
    resample: ResampleSpec | None = None
    covariates: dict[str, CovariateSpec] = Field(default_factory=dict)
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


def parse_cohort_spec(source, base: str | os.PathLike | None = None) -> CohortSpec:
    """The :class:`CohortSpec` in ``source`` (a spec, mapping, path or YAML text), checked
    against the schema only (:func:`~insilico.cohorts.load_cohort_spec` also compiles it).

    A relative ``resample.table`` is made absolute: against the folder of a spec file, against
    ``base`` for a mapping (a cohort written inside a trial spec: the trial spec's folder), else
    against the working directory."""
    if isinstance(source, CohortSpec):
        return source
    data, folder = read_mapping(source, "cohort spec")
    if "model" in data:
        raise SpecError("model", "a cohort spec has no structural model: this looks like a population-model file "
                                 "(insilico fit's input), which a trial takes as cohort: {population: FILE, "
                                 "covariates: COHORT_FILE} (insilico.cohorts.load_population_cohort)")
    if base is not None and isinstance(source, Mapping):
        folder = Path(base)
    spec = validate(CohortSpec, data)
    if spec.resample is not None and not Path(spec.resample.table).is_absolute():
        table = str((Path(folder) / spec.resample.table).resolve())
        spec = spec.model_copy(update={"resample": spec.resample.model_copy(update={"table": table})})
    return spec
