"""Covariate nodes: how each covariate is drawn inside the NumPyro model.

* :class:`DistNode` — a distribution (normal, lognormal, truncnormal, uniform, categorical),
  whose parameters may be constants, ``{category: value}`` mappings over a categorical
  ``given`` covariate, or expressions of previously defined covariates. Outside the copula
  it is a ``numpyro.sample`` site with that distribution (so it can later be conditioned on
  data); inside the Gaussian copula its value is the inverse CDF of Phi(z) for the copula's
  standard-normal score z, recorded with ``numpyro.deterministic``.
* :class:`ExprNode` — an expression of other covariates (e.g. WT = BMI * (HT/100)**2).
* :class:`DerivedNode` — a built-in derived covariate (BMI, BSA, LBW, CRCL, EGFR).
* :class:`StratumNode` — the stratum, an observed categorical site (assigned per subject).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import ndtr, ndtri

__all__ = ["DistNode", "ExprNode", "DerivedNode", "StratumNode", "ParamGetter"]


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


@dataclass(frozen=True)
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
        p = self.p(env)
        if self.dist == "normal":
            return dist.Normal(p["mean"], p["sd"])
        if self.dist == "lognormal":
            return dist.LogNormal(p["meanlog"], p["sdlog"])
        if self.dist == "truncnormal":
            return dist.TruncatedNormal(p["mean"], p["sd"], low=p["low"], high=p["high"])
        if self.dist == "uniform":
            return dist.Uniform(p["low"], p["high"])
        return dist.Categorical(probs=jnp.asarray(self.probs))

    def sample(self, env, z) -> jnp.ndarray:
        """Draw inside the subject plate (``z``: copula scores, shape (..., m), or None)."""
        if self.copula_index is None:
            return numpyro.sample(self.name, self.distribution(env))
        return numpyro.deterministic(self.name, self.from_score(z[..., self.copula_index], env))

    def from_score(self, z, env):
        """Inverse-CDF transform of a standard-normal score ``z`` (Gaussian copula)."""
        p = self.p(env)
        if self.dist == "normal":
            return p["mean"] + p["sd"] * z
        if self.dist == "lognormal":
            return jnp.exp(p["meanlog"] + p["sdlog"] * z)
        if self.dist == "uniform":
            return p["low"] + (p["high"] - p["low"]) * ndtr(z)
        if self.dist == "truncnormal":
            # sample by symmetry on the side where the normal CDF is accurate
            a = (p["low"] - p["mean"]) / p["sd"]
            b = (p["high"] - p["mean"]) / p["sd"]
            flip = (a + b) > 0
            lo, hi = jnp.where(flip, -b, a), jnp.where(flip, -a, b)
            u = ndtr(jnp.where(flip, -z, z))
            s = ndtri(ndtr(lo) + u * (ndtr(hi) - ndtr(lo)))
            s = jnp.clip(jnp.where(flip, -s, s), a, b)
            return p["mean"] + p["sd"] * s
        cum = jnp.cumsum(jnp.asarray(self.probs))[:-1]
        return jnp.searchsorted(cum, ndtr(z), side="right")

    def cdf(self, x, env) -> np.ndarray:
        """Conditional CDF F(x | parents) for continuous distributions (validation, PIT)."""
        p = self.p(env)
        if self.dist == "normal":
            u = ndtr((x - p["mean"]) / p["sd"])
        elif self.dist == "lognormal":
            u = ndtr((jnp.log(x) - p["meanlog"]) / p["sdlog"])
        elif self.dist == "uniform":
            u = (x - p["low"]) / (p["high"] - p["low"])
        elif self.dist == "truncnormal":
            fa = ndtr((p["low"] - p["mean"]) / p["sd"])
            fb = ndtr((p["high"] - p["mean"]) / p["sd"])
            u = (ndtr((x - p["mean"]) / p["sd"]) - fa) / (fb - fa)
        else:
            raise TypeError("cdf of a categorical covariate")
        return np.asarray(u, dtype=float)


@dataclass(frozen=True)
class ExprNode:
    name: str
    fn: Callable
    source: str
    deps: frozenset[str] = frozenset()
    kind: str = field(default="expr")
    categorical: bool = False

    def sample(self, env, z):
        return numpyro.deterministic(self.name, jnp.asarray(self.fn(env), dtype=float))


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

    def sample(self, env, z):
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

    def sample(self, env, z, stratum=None):
        return numpyro.sample(self.name, dist.Categorical(probs=jnp.asarray(self.probs)), obs=stratum)
