"""Parameter model: typical values, covariate effects, between-subject and inter-occasion
variability (NONMEM conventions).

Individual parameter of subject i on occasion k::

    TV_i  = typical * prod(effects(covariates_i))
    P_i   = TV_i * exp(eta_i)                 eta ~ MVN(0, Omega)            (``P``)
    P_ik  = TV_i * exp(eta_i + kappa_ik)      kappa_ik ~ N(0, omega_iov^2)   (``P_occ``)

Effects: power (cov/ref)^theta (allometric WT/70 with 0.75 for clearances, 1 for volumes),
exponential exp(theta (cov - ref)), linear 1 + theta (cov - ref), categorical multipliers.

Omega from CV% (log-normal, NONMEM): omega^2 = log(1 + CV^2), CV as a fraction; with
correlations rho, Omega_jk = rho_jk omega_j omega_k.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

__all__ = ["Effect", "ParamNode", "cv_percent_to_variance", "omega_from", "sample_parameters"]


def cv_percent_to_variance(cv_percent) -> np.ndarray:
    """omega^2 = log(1 + CV^2) for a log-normal parameter, CV given in percent."""
    cv = np.asarray(cv_percent, dtype=float) / 100.0
    return np.log1p(cv * cv)


def omega_from(variance, correlation=None) -> np.ndarray:
    """Variance-covariance matrix from diagonal variances and an optional correlation matrix."""
    sd = np.sqrt(np.asarray(variance, dtype=float))
    r = np.eye(sd.size) if correlation is None else np.asarray(correlation, dtype=float)
    return r * np.outer(sd, sd)


@dataclass(frozen=True)
class Effect:
    covariate: str
    type: str
    theta: float = 0.0
    ref: float = 1.0
    table: tuple[float, ...] = ()  # categorical multipliers by code

    def __call__(self, env: Mapping):
        x = env[self.covariate]
        if self.type == "power":
            return (x / self.ref) ** self.theta
        if self.type == "exponential":
            return jnp.exp(self.theta * (x - self.ref))
        if self.type == "linear":
            return 1.0 + self.theta * (x - self.ref)
        return jnp.asarray(self.table)[x]


@dataclass(frozen=True)
class ParamNode:
    name: str
    typical: float
    effects: tuple[Effect, ...]

    def typical_value(self, env) -> jnp.ndarray:
        tv = self.typical
        for e in self.effects:
            tv = tv * e(env)
        return tv


def sample_parameters(params: tuple[ParamNode, ...], env: Mapping, bsv_names: tuple[str, ...],
                      omega_chol: np.ndarray | None, iov_sd: Mapping[str, float], occasions: int,
                      like) -> dict:
    """NumPyro sites for etas, kappas and individual parameters (inside the subject plate).

    ``like``: an array with the subject batch shape (to broadcast constant typical values).
    """
    out = {}
    eta = None
    if bsv_names:
        k = len(bsv_names)
        eta = numpyro.sample("eta", dist.MultivariateNormal(jnp.zeros(k), scale_tril=jnp.asarray(omega_chol)))
        for j, n in enumerate(bsv_names):
            out[f"eta_{n}"] = numpyro.deterministic(f"eta_{n}", eta[..., j])
    kappas = {}
    for n, sd in iov_sd.items():
        kappas[n] = numpyro.sample(f"kappa_{n}", dist.Normal(0.0, sd).expand([occasions]).to_event(1))
        out[f"kappa_{n}"] = kappas[n]
    for p in params:
        tv = p.typical_value(env) * jnp.ones_like(like, dtype=float)
        e = out.get(f"eta_{p.name}", 0.0)
        out[p.name] = numpyro.deterministic(p.name, tv * jnp.exp(e))
        if p.name in kappas:
            out[f"{p.name}_occ"] = numpyro.deterministic(
                f"{p.name}_occ", out[p.name][..., None] * jnp.exp(kappas[p.name]))
    return out
