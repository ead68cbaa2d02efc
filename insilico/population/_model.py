"""The compiled population model and the one function that builds it from the spec sections.

Conventions (NONMEM): individual parameter of subject i on occasion k::

    TV_i  = typical * prod(effects(covariates_i))
    P_i   = TV_i * exp(eta_i)                 eta ~ MVN(0, Omega)
    P_ik  = TV_i * exp(eta_i + kappa_ik)      kappa_ik ~ N(0, omega_iov^2), independent over k

Effects: power (cov/ref)^theta (allometric WT/70 with 0.75 for clearances, 1 for volumes),
exponential exp(theta (cov - ref)), linear 1 + theta (cov - ref), categorical multipliers.
Omega from CV% (log-normal): omega^2 = log(1 + CV^2), CV as a fraction; with correlations rho,
Omega_jk = rho_jk omega_j omega_k.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from insilico.errors import SpecError
from insilico.models import parameter_info
from insilico.population._spec import BSVSpec, IOVSpec, ParameterSpec, ResidualErrorSpec, correlation_matrix

__all__ = ["Effect", "PopulationModel", "ResidualError", "compile_population", "cv_percent_to_variance",
           "omega_from"]


def cv_percent_to_variance(cv_percent) -> np.ndarray:
    """omega^2 = log(1 + CV^2) for a log-normal parameter, CV given in percent."""
    cv = np.asarray(cv_percent, dtype=float) / 100.0
    return np.log1p(cv * cv)


def omega_from(variance, correlation=None) -> np.ndarray:
    """Variance-covariance matrix from diagonal variances and an optional correlation matrix."""
    sd = np.sqrt(np.asarray(variance, dtype=float))
    r = np.eye(sd.size) if correlation is None else np.asarray(correlation, dtype=float)
    return r * np.outer(sd, sd)


class Effect(eqx.Module):
    """Multiplicative covariate effect on a typical value (see module docstring).

    ``theta`` (and the categorical ``table`` of multipliers by category code, whose
    category names are ``labels``) are pytree leaves, so an estimator can differentiate with
    respect to them; ``covariate``, ``type``, ``ref`` and ``labels`` are static.
    """

    covariate: str = eqx.field(static=True)
    type: str = eqx.field(static=True)
    theta: float | jnp.ndarray = 0.0
    ref: float = eqx.field(static=True, default=1.0)
    table: jnp.ndarray | None = None
    labels: tuple[str, ...] = eqx.field(static=True, default=())

    def __call__(self, covariates: Mapping):
        x = covariates[self.covariate]
        if self.type == "power":
            return (x / self.ref) ** self.theta
        if self.type == "exponential":
            return jnp.exp(self.theta * (x - self.ref))
        if self.type == "linear":
            return 1.0 + self.theta * (x - self.ref)
        return jnp.asarray(self.table)[x]


class ResidualError(eqx.Module):
    """Residual error model: ``type`` (additive, proportional, combined, combined1, exponential) and
    its SDs (``additive`` in the observation's units, ``proportional`` relative, ``exponential``
    on the log scale); unused ones are 0. ``combined`` adds variances (SD = sqrt(a^2 + (b f)^2)),
    ``combined1`` adds SDs (SD = a + b |f|); see `ResidualErrorSpec`."""

    type: str = eqx.field(static=True)
    additive: float | jnp.ndarray = 0.0
    proportional: float | jnp.ndarray = 0.0
    exponential: float | jnp.ndarray = 0.0


class PopulationModel(eqx.Module):
    """A compiled, immutable population model (an equinox Module, so a pytree: numbers are
    leaves, names and structure static).

    Attributes
    ----------
    names : parameter names, in spec order; ``units``, ``long_names`` alike.
    typical : typical values (one per parameter, in ``units``).
    effects : per parameter, its covariate effects.
    bsv_names : parameters with between-subject variability (order of eta's last axis).
    omega, omega_chol : Omega (variance-covariance of eta) and its lower Cholesky factor, or None.
    iov_names : parameters with inter-occasion variability (order of kappa's last axis).
    iov_sd : SD of kappa per IOV parameter; ``occasions``: number of occasions (0 without IOV).
    residual : :class:`ResidualError` or None.
    """

    names: tuple[str, ...] = eqx.field(static=True)
    units: tuple[str, ...] = eqx.field(static=True)
    long_names: tuple[str, ...] = eqx.field(static=True)
    typical: tuple
    effects: tuple[tuple[Effect, ...], ...]
    bsv_names: tuple[str, ...] = eqx.field(static=True)
    omega: np.ndarray | None
    omega_chol: np.ndarray | None
    iov_names: tuple[str, ...] = eqx.field(static=True)
    iov_sd: tuple
    occasions: int = eqx.field(static=True)
    residual: ResidualError | None = None

    @property
    def covariates(self) -> tuple[str, ...]:
        """Covariates the typical values depend on."""
        return tuple(dict.fromkeys(e.covariate for es in self.effects for e in es))


def compile_population(parameters: Mapping[str, ParameterSpec], bsv: BSVSpec | None = None,
                       iov: IOVSpec | None = None, residual_error: ResidualErrorSpec | None = None, *,
                       covariates: Collection[str] | None = None,
                       categories: Mapping[str, tuple[str, ...]] | None = None) -> PopulationModel:
    """Check the spec sections against each other and build the :class:`PopulationModel`.

    ``covariates``: the covariate names effects may use (None: not checked);
    ``categories``: categorical covariates -> their labels (codes 0..K-1), needed by
    categorical effects. Raises :class:`SpecError` naming the field (``parameters.CL.units``,
    ``bsv.parameters.1``, ``iov.cv_percent.KA``, ...).
    """
    categories = dict(categories or {})
    names, units, long_names, typical, effects = [], [], [], [], []
    for name, p in parameters.items():
        where = f"parameters.{name}"
        info = parameter_info(name)
        u = p.units or (info.units if info else None)
        if u is None:
            raise SpecError(f"{where}.units", f"required (no default units for {name})")
        names.append(name)
        units.append(u)
        long_names.append(p.long_name or (info.long_name if info else name))
        typical.append(float(p.typical))
        effects.append(tuple(_effect(e, f"{where}.effects.{j}", covariates, categories)
                             for j, e in enumerate(p.effects)))
    bsv_names, omega, omega_chol = _bsv(bsv, parameters)
    iov_names, iov_sd, occasions = _iov(iov, parameters)
    residual = None
    if residual_error is not None:
        r = residual_error
        residual = ResidualError(r.type, float(r.additive or 0.0), float(r.proportional or 0.0),
                                 float(r.exponential or 0.0))
    return PopulationModel(tuple(names), tuple(units), tuple(long_names), tuple(typical), tuple(effects),
                           bsv_names, omega, omega_chol, iov_names, iov_sd, occasions, residual)


def _effect(e, where: str, covariates, categories) -> Effect:
    if covariates is not None and e.covariate not in covariates:
        raise SpecError(f"{where}.covariate", f"unknown covariate {e.covariate!r} "
                                              f"(defined: {', '.join(sorted(covariates)) or 'none'})")
    if e.type != "categorical":
        if e.covariate in categories:
            raise SpecError(f"{where}.covariate", f"{e.covariate} is categorical: use type categorical")
        return Effect(e.covariate, e.type, float(e.theta), float(e.ref))
    if e.covariate not in categories:
        raise SpecError(f"{where}.covariate", f"{e.covariate} is not categorical")
    labels = categories[e.covariate]
    for lab in e.multipliers:
        if lab not in labels:
            raise SpecError(f"{where}.multipliers.{lab}", f"not a category of {e.covariate} ({', '.join(labels)})")
    table = np.array([float(e.multipliers.get(lab, 1.0)) for lab in labels])
    return Effect(e.covariate, "categorical", table=table, labels=tuple(labels))


def _bsv(b: BSVSpec | None, parameters):
    if b is None:
        return (), None, None
    names = tuple(b.parameters)
    for i, n in enumerate(names):
        if n not in parameters:
            raise SpecError(f"bsv.parameters.{i}", f"unknown parameter {n!r}")
    if b.omega is not None:
        omega = np.asarray(b.omega, dtype=float)
    else:
        var = cv_percent_to_variance(b.cv_percent) if b.cv_percent is not None else np.asarray(b.variance, float)
        omega = omega_from(var, None if b.correlation is None else correlation_matrix(b.correlation, len(names)))
    return names, omega, np.linalg.cholesky(omega)


def _iov(v: IOVSpec | None, parameters):
    if v is None:
        return (), (), 0
    field, vals = ("variance", v.variance) if v.variance is not None else ("cv_percent", v.cv_percent)
    for n in vals:
        if n not in parameters:
            raise SpecError(f"iov.{field}.{n}", f"unknown parameter {n!r}")
    sd = tuple(float(np.sqrt(float(cv_percent_to_variance(x)) if field == "cv_percent" else float(x)))
               for x in vals.values())
    return tuple(vals), sd, v.occasions
