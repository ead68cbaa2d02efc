"""Covariate nodes: how each covariate is drawn inside the NumPyro model.

* :class:`DistNode` — a distribution (normal, lognormal, truncnormal, uniform, categorical),
  whose parameters may be constants, ``{category: value}`` mappings over a categorical
  ``given`` covariate, or expressions of previously defined covariates. It is a
  ``numpyro.sample`` site (so it can later be conditioned on data); inside the Gaussian
  copula its distribution is conditional on the scores of the copula members drawn before
  it (see :meth:`DistNode.sample`).
* :class:`ExprNode` — an expression of other covariates (e.g. WT = BMI * (HT/100)**2).
* :class:`DerivedNode` — a built-in derived covariate (BMI, BSA, LBW, CRCL, EGFR).
* :class:`StratumNode` — the stratum, an observed categorical site (assigned per subject).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

__all__ = ["DerivedNode", "DistNode", "ExprNode", "ParamGetter", "StratumNode"]


@dataclass(frozen=True)
class ParamGetter:
    """A distribution parameter: ``const`` (float), ``table`` (per category of ``given``) or
    ``fn`` (compiled expression)."""

    const: float | None = None
    table: tuple[float, ...] | None = None
    given: str | None = None
    fn: Callable | None = None

    def __call__(self, env: Mapping) -> jnp.ndarray | float:
        if self.const is not None:
            return self.const
        if self.table is not None:
            return jnp.asarray(self.table)[env[self.given]]
        return self.fn(env)

    @property
    def is_const(self) -> bool:
        return self.const is not None


@dataclass(frozen=True, eq=False)
class DistNode:
    name: str
    dist: str
    params: Mapping[str, ParamGetter]  # normal: mean, sd; lognormal: meanlog, sdlog; ...
    given: str | None = None
    labels: tuple[str, ...] = ()  # categorical
    probs: tuple[float, ...] = ()  # categorical
    copula_index: int | None = None
    deps: frozenset[str] = frozenset()
    kind: str = field(default="dist")

    @property
    def categorical(self) -> bool:
        return self.dist == "categorical"

    def p(self, env) -> dict:
        return {k: g(env) for k, g in self.params.items()}

    def distribution(self, env) -> dist.Distribution:
        if self.categorical:
            return dist.Categorical(probs=jnp.asarray(self.probs))
        return self.marginal(self.p(env))

    def sample(self, env, copula) -> jnp.ndarray:
        """A ``numpyro.sample`` site inside the subject plate.

        ``copula``: None, or the Gaussian-copula state ``(L, e)``: the Cholesky factor of the
        score correlation (in evaluation order) and the list of standardised innovations of
        the copula members drawn so far. A copula member with index j has score
        z_j | z_<j ~ N(mu_j, L_jj^2), mu_j = sum_k<j L_jk e_k, and x_j = F_j^-1(Phi(z_j)): a
        Normal/LogNormal with shifted parameters for normal/lognormal marginals, else a
        TransformedDistribution of that normal. Either way the covariate is a proper sample
        site that can be conditioned on an observed value.
        """
        if self.copula_index is None:
            return numpyro.sample(self.name, self.distribution(env))
        lo, e = copula
        j = self.copula_index
        mu = sum((lo[j, k] * e[k] for k in range(j)), 0.0)
        sd = float(lo[j, j])
        p = self.p(env)
        if self.dist == "normal":
            d = dist.Normal(p["mean"] + p["sd"] * mu, p["sd"] * sd)
        elif self.dist == "lognormal":
            d = dist.LogNormal(p["meanlog"] + p["sdlog"] * mu, p["sdlog"] * sd)
        else:
            d = dist.TransformedDistribution(dist.Normal(mu, sd), ScoreToMarginal(self, p))
        x = numpyro.sample(self.name, d)
        e.append((self.to_score(x, p) - mu) / sd)
        return x

    def marginal(self, p) -> dist.Distribution:
        """The (continuous) marginal distribution with parameters ``p``."""
        if self.dist == "normal":
            return dist.Normal(p["mean"], p["sd"])
        if self.dist == "lognormal":
            return dist.LogNormal(p["meanlog"], p["sdlog"])
        if self.dist == "uniform":
            return dist.Uniform(p["low"], p["high"])
        return dist.TruncatedNormal(p["mean"], p["sd"], low=p["low"], high=p["high"])

    def from_score(self, z, p):
        """x = F^-1(Phi(z)) of a standard-normal score ``z`` (parameters ``p``): an affine map for
        normal and log-normal marginals, NumPyro's ``icdf`` otherwise."""
        if self.dist == "normal":
            return p["mean"] + p["sd"] * z
        if self.dist == "lognormal":
            return jnp.exp(p["meanlog"] + p["sdlog"] * z)
        return self.marginal(p).icdf(_std_normal().cdf(z))

    def to_score(self, x, p):
        """z = Phi^-1(F(x)), the inverse of :meth:`from_score`."""
        if self.dist == "normal":
            return (x - p["mean"]) / p["sd"]
        if self.dist == "lognormal":
            return (jnp.log(x) - p["meanlog"]) / p["sdlog"]
        if self.dist == "uniform":
            return _std_normal().icdf(self.marginal(p).cdf(x))
        # truncated normal: when the interval lies above the mean, use the mirror image
        # (1 - F(x) = F'(2 mean - x) of the reflected distribution), whose CDF is accurate there
        m = p["mean"]
        flip = (p["low"] + p["high"]) > 2 * m
        mirror = dist.TruncatedNormal(m, p["sd"], low=2 * m - p["high"], high=2 * m - p["low"])
        z_up = -_std_normal().icdf(jnp.clip(mirror.cdf(2 * m - x), 0.0, 1.0))
        z_lo = _std_normal().icdf(jnp.clip(self.marginal(p).cdf(x), 0.0, 1.0))
        return jnp.where(flip, z_up, z_lo)

    def cdf(self, x, env) -> np.ndarray:
        """Conditional CDF F(x | parents) of a continuous covariate (validation, PIT)."""
        if self.categorical:
            raise TypeError("cdf of a categorical covariate")
        return np.asarray(_std_normal().cdf(self.to_score(x, self.p(env))), dtype=float)


def _std_normal() -> dist.Normal:
    return dist.Normal(0.0, 1.0)


class ScoreToMarginal(dist.transforms.Transform):
    """Bijection z -> F^-1(Phi(z)) from a standard-normal score to a covariate's marginal."""

    domain = constraints.real

    def __init__(self, node: DistNode, p: dict):
        self.node, self.p = node, p

    @property
    def codomain(self):
        return constraints.interval(self.p["low"], self.p["high"])

    def __call__(self, z):
        return self.node.from_score(z, self.p)

    def _inverse(self, x):
        return self.node.to_score(x, self.p)

    def log_abs_det_jacobian(self, z, x, intermediates=None):
        # dx/dz = phi(z) / f(x)
        return _std_normal().log_prob(z) - self.node.marginal(self.p).log_prob(x)

    def tree_flatten(self):
        keys = tuple(sorted(self.p))
        return tuple(self.p[k] for k in keys), (self.node, keys)

    @classmethod
    def tree_unflatten(cls, aux, children):
        node, keys = aux
        return cls(node, dict(zip(keys, children)))


@dataclass(frozen=True)
class ExprNode:
    name: str
    fn: Callable
    source: str
    deps: frozenset[str] = frozenset()
    kind: str = field(default="expr")
    categorical: bool = False

    def sample(self, env, copula=None, n_subjects: int = 1):
        """The expression's value per subject (a constant expression is broadcast to the
        ``n_subjects`` of the plate)."""
        value = jnp.asarray(self.fn(env), dtype=float)
        return numpyro.deterministic(self.name, jnp.broadcast_to(value, jnp.broadcast_shapes(value.shape,
                                                                                          (n_subjects,))))


@dataclass(frozen=True)
class DerivedNode:
    name: str
    fn: Callable
    inputs: tuple[str, ...]  # covariate names; "female" is computed from `sex`
    sex: str | None = None
    female_code: int | None = None
    deps: frozenset[str] = frozenset()
    kind: str = field(default="derived")
    categorical: bool = False

    def sample(self, env, copula=None):
        args = [env[self.sex] == self.female_code if a == "female" else env[a] for a in self.inputs]
        return numpyro.deterministic(self.name, self.fn(*args))


@dataclass(frozen=True)
class StratumNode:
    name: str
    labels: tuple[str, ...]
    probs: tuple[float, ...]
    deps: frozenset[str] = frozenset()
    kind: str = field(default="stratum")
    categorical: bool = True

    def sample(self, env, copula=None, stratum=None):
        return numpyro.sample(self.name, dist.Categorical(probs=jnp.asarray(self.probs)), obs=stratum)
