"""Spec sections of a population (parameter) model, pydantic v2 (``extra="forbid"``, frozen).

Each class checks what it can see by itself (a value's range, a matrix's shape and definiteness,
a field required or not used with another field of the same section); a failure names the
dotted field (``bsv.cv_percent.0``, ``parameters.CL.effects.0.ref``) once converted by
:func:`insilico.config.spec_error`. What needs other sections (known covariates, categories,
parameter names listed in ``bsv``/``iov``) is checked by :func:`~insilico.population.compile_population`.

Units follow :mod:`insilico.units`; parameters default to ``insilico.models.PARAMETER_INFO``.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from insilico.config import SpecModel
from insilico.units import is_valid_units

__all__ = ["BSVSpec", "EffectSpec", "IOVSpec", "ParameterSpec", "ResidualErrorSpec", "cholesky_factor", "required",
           "correlation_matrix", "square_matrix", "units_value"]


class _Base(SpecModel):
    """Strict types, finite floats, unknown fields refused (`insilico.config.SpecModel`)."""


def required(message: str) -> PydanticCustomError:
    """A "missing"-type error with ``message`` (the converter adds no "(got None)")."""
    return PydanticCustomError("missing", message)


def units_value(v: str | None) -> str | None:
    """Validator of a ``units`` field (grammar of :mod:`insilico.units`)."""
    if v is not None and not is_valid_units(v):
        raise ValueError("invalid units: write products with '*', quotients with '/', powers with '**' "
                         "(e.g. 'mg*h/L', 'kg/m**2'), '1' if dimensionless")
    return v


def _positive(v: float) -> float:
    if not v > 0:
        raise ValueError("must be > 0")
    return v


Positive = Annotated[float, AfterValidator(_positive)]
Units = Annotated[str | None, AfterValidator(units_value)]


def square_matrix(m, n: int, what: str) -> np.ndarray:
    """``m`` as a finite symmetric n x n array, else ValueError."""
    if len(m) != n or any(len(r) != n for r in m):
        raise ValueError(f"{what} must be {n}x{n}")
    a = np.asarray(m, dtype=float)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must be finite")
    if not np.allclose(a, a.T, atol=1e-10, rtol=0):
        raise ValueError(f"{what} must be symmetric")
    return a


def correlation_matrix(m, n: int) -> np.ndarray:
    """``m`` as an n x n correlation matrix (symmetric, unit diagonal, entries in [-1, 1],
    positive definite), else ValueError."""
    r = square_matrix(m, n, "correlation matrix")
    if not np.allclose(np.diag(r), 1.0, atol=1e-12):
        raise ValueError("correlation matrix must have 1 on the diagonal")
    if np.any(np.abs(r) > 1):
        raise ValueError("correlations must lie in [-1, 1]")
    cholesky_factor(r, "correlation matrix")
    return r


def cholesky_factor(a: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factor of ``a``, or ValueError "``what`` is not positive definite"."""
    try:
        lo = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        lo = None
    if lo is None or not np.all(np.isfinite(lo)):
        ev = np.linalg.eigvalsh(a).min()
        raise ValueError(f"{what} is not positive definite (smallest eigenvalue {ev:.3g})")
    return lo


class EffectSpec(_Base):
    """Covariate effect on a parameter (multiplicative on the typical value):

    * ``power``: (cov / ref) ** theta (allometric: WT, ref 70, theta 0.75)
    * ``exponential``: exp(theta * (cov - ref))
    * ``linear``: 1 + theta * (cov - ref)
    * ``categorical``: ``multipliers[category]`` (categories not listed: 1)

    ``ref`` is in the covariate's units; ``theta`` has the inverse units for exponential and
    linear effects and is dimensionless for power effects.
    """

    covariate: str
    type: Literal["power", "exponential", "linear", "categorical"]
    theta: float | None = Field(default=None, validate_default=True)
    ref: float | None = Field(default=None, validate_default=True)
    multipliers: dict[str, Positive] | None = Field(default=None, validate_default=True)

    @field_validator("theta", "ref")
    @classmethod
    def _theta_ref(cls, v, info: ValidationInfo):
        kind = info.data.get("type")
        if kind == "categorical" and v is not None:
            raise ValueError("not used by a categorical effect (use multipliers)")
        if kind not in (None, "categorical") and v is None:
            raise required(f"required for a {kind} effect")
        if kind == "power" and info.field_name == "ref" and not v > 0:
            raise ValueError("must be > 0 for a power effect")
        if v is not None and not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    @field_validator("multipliers")
    @classmethod
    def _multipliers(cls, v, info: ValidationInfo):
        kind = info.data.get("type")
        if kind == "categorical" and not v:
            raise required("categorical effect needs multipliers {category: factor}")
        if kind not in (None, "categorical") and v is not None:
            raise ValueError(f"not used by a {kind} effect")
        return v


class ParameterSpec(_Base):
    """A parameter's typical value (> 0, in ``units``) and its covariate effects. ``units`` and
    ``long_name`` default to ``insilico.models.PARAMETER_INFO`` for standard names."""

    typical: float = Field(gt=0)
    units: Units = None
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
    variance: list[Positive] | None = None
    cv_percent: list[Positive] | None = None
    correlation: list[list[float]] | None = None

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, v):
        if not v:
            raise ValueError("list at least one parameter")
        if len(set(v)) != len(v):
            raise ValueError("parameters must be distinct")
        return v

    @field_validator("omega")
    @classmethod
    def _omega(cls, v, info: ValidationInfo):
        k = len(info.data.get("parameters") or ())
        if v is None or not k:
            return v
        om = square_matrix(v, k, "omega")
        if np.any(np.diag(om) <= 0):
            raise ValueError("variances (diagonal) must be > 0")
        cholesky_factor(om, "omega")
        return v

    @field_validator("variance", "cv_percent")
    @classmethod
    def _values(cls, v, info: ValidationInfo):
        k = len(info.data.get("parameters") or ())
        if v is not None and k and len(v) != k:
            raise ValueError(f"needs {k} values (one per parameter), got {len(v)}")
        return v

    @field_validator("correlation")
    @classmethod
    def _correlation(cls, v, info: ValidationInfo):
        if v is None:
            return v
        if info.data.get("omega") is not None:
            raise ValueError("not used with a full omega matrix")
        k = len(info.data.get("parameters") or ())
        if k:
            correlation_matrix(v, k)
        return v

    @model_validator(mode="after")
    def _one_of(self):
        if sum(getattr(self, f) is not None for f in ("omega", "variance", "cv_percent")) != 1:
            raise ValueError("give exactly one of omega (matrix), variance or cv_percent")
        return self


class IOVSpec(_Base):
    """Inter-occasion variability: P_ik = TV_i * exp(eta_i + kappa_ik), kappa_ik ~ N(0, omega_iov^2)
    independent over occasions k = 1..occasions; ``variance`` or ``cv_percent`` per parameter.
    ``starts``: when each occasion begins in a simulation (h after the first dose, strictly increasing,
    one per occasion; occasion k runs until the next start, the first also before its start): a trial
    simulates parameter P with ``P_occ`` of the occasion in effect (`insilico.engine.simulate`
    ``occasions``) and refuses a cohort with IOV but no ``starts``. ``column``: the data column that
    numbers each record's occasion 1..``occasions`` in a fit on NONMEM data (default ``OCC``, matched
    case-insensitively; e.g. ``VISIT`` as a control stream's ``IF (VISIT.EQ.1)`` indicators read it)."""

    occasions: int = Field(ge=1, le=1000)
    variance: dict[str, Positive] | None = None
    cv_percent: dict[str, Positive] | None = None
    starts: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = None
    column: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "OCC"

    @model_validator(mode="after")
    def _starts(self):
        if self.starts is not None:
            if len(self.starts) != self.occasions:
                raise ValueError(f"starts: give one start time per occasion ({self.occasions}), got "
                                 f"{len(self.starts)}")
            if any(b <= a for a, b in zip(self.starts, self.starts[1:])):
                raise ValueError(f"starts: occasion start times must be strictly increasing, got {self.starts}")
        return self

    @field_validator("variance", "cv_percent")
    @classmethod
    def _not_empty(cls, v):
        if v is not None and not v:
            raise ValueError("list at least one parameter")
        return v

    @model_validator(mode="after")
    def _one_of(self):
        if (self.variance is None) == (self.cv_percent is None):
            raise ValueError("give exactly one of variance or cv_percent")
        return self


_RESIDUAL_FIELDS = {"additive": ("additive",), "proportional": ("proportional",),
                    "combined": ("additive", "proportional"), "combined1": ("additive", "proportional"),
                    "exponential": ("exponential",)}


class ResidualErrorSpec(_Base):
    """Residual (observation) error, NONMEM-style with eps ~ N(0, 1):

    * ``additive``: y = f + additive * eps  (``additive``: SD in the observation's units)
    * ``proportional``: y = f * (1 + proportional * eps)  (``proportional``: SD of the
      relative error, e.g. 0.15 = 15 %)
    * ``combined``: y = f * (1 + proportional * eps1) + additive * eps2, so
      Var(y) = (proportional * f)^2 + additive^2 (Monolix ``combined2``; NONMEM
      ``W = SQRT(THETA(a)**2 + (THETA(b)*IPRED)**2)``)
    * ``combined1``: y = f + (additive + proportional * |f|) * eps, so
      SD(y) = additive + proportional * |f| (the SDs add, not the variances). Monolix's
      ``combined1`` error model (Monolix documentation, "Residual error model": combined1
      g = a + b f, combined2 g = sqrt(a^2 + b^2 f^2)); NONMEM's ``W = THETA(b)*IPRED + THETA(a)``,
      ``Y = IPRED + W*EPS(1)`` with ``$SIGMA 1 FIX``. ``additive`` in the observation's units,
      ``proportional`` relative.
    * ``exponential``: y = f * exp(exponential * eps)  (SD on the log scale)
    """

    type: Literal["additive", "proportional", "combined", "combined1", "exponential"]
    additive: float | None = Field(default=None, ge=0, validate_default=True)
    proportional: float | None = Field(default=None, ge=0, validate_default=True)
    exponential: float | None = Field(default=None, ge=0, validate_default=True)

    @field_validator("additive", "proportional", "exponential")
    @classmethod
    def _used(cls, v, info: ValidationInfo):
        kind = info.data.get("type")
        if kind is None:
            return v
        need = info.field_name in _RESIDUAL_FIELDS[kind]
        if need and v is None:
            raise required(f"required for {kind} error")
        if not need and v is not None:
            raise ValueError(f"not used by {kind} error")
        return v
