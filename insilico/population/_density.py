"""The one log-density of the population model: prior of the random effects plus the residual
log-likelihood of observations. Estimation (FOCE-I / Laplace / NUTS) and patient twins call
exactly :func:`log_density`; cohort draws sample from the same prior
(:func:`~insilico.population.sample_parameters`).

Convention (Beal & Sheiner, NONMEM): for subject i with random effects eta_i (and kappa_i),
predictions f_ij = f(t_ij; individual parameters) and observations y_ij::

    log p(y_i, eta_i) = log N(eta_i; 0, Omega) + sum_k log N(kappa_ik; 0, diag(omega_iov^2))
                        + sum_j log N(y_ij; f_ij, sigma_ij^2)

with sigma_ij = a (additive), b |f_ij| (proportional), sqrt((b f_ij)^2 + a^2) (combined,
y = f (1 + b eps1) + a eps2; Monolix combined2), a + b |f_ij| (combined1, y = f + (a + b |f|) eps;
Monolix combined1, NONMEM ``W = THETA(b)*IPRED + THETA(a)``); for the exponential model
y = f exp(s eps) the likelihood is that of log y: N(log y_ij; log f_ij, s^2)
(log-transform-both-sides, no Jacobian term).

Constants: every normal density is complete (NumPyro's ``log_prob``), including
-1/2 log(2 pi) per observation and per random effect. NONMEM's objective function omits them:
OFV_i = -2 log p - (n_obs + n_eta + n_kappa) log(2 pi). Callers that report a NONMEM-style OFV
subtract that constant; the gradients and Hessians are unaffected.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist

from insilico.population._model import PopulationModel, ResidualError

__all__ = ["log_density", "residual_sd"]


def residual_sd(residual: ResidualError, f) -> jnp.ndarray:
    """SD of an observation with prediction ``f`` (on the log scale for ``exponential``), in the
    observation's units: a, b |f|, sqrt(a^2 + (b f)^2) (combined), a + b |f| (combined1) or s.
    An unknown type raises ValueError (never another type's SD)."""
    f = jnp.asarray(f)
    if residual.type == "additive":
        return residual.additive * jnp.ones_like(f)
    if residual.type == "proportional":
        return residual.proportional * jnp.abs(f)
    if residual.type == "combined":
        return jnp.sqrt((residual.proportional * f) ** 2 + residual.additive ** 2)
    if residual.type == "combined1":
        return residual.additive + residual.proportional * jnp.abs(f)
    if residual.type == "exponential":
        return residual.exponential * jnp.ones_like(f)
    raise ValueError(f"unknown residual error type {residual.type!r}")


def log_density(pop: PopulationModel, eta=None, kappa=None, *, y=None, f=None, mask=None) -> jnp.ndarray:
    """log p(y, eta, kappa) of one subject (batch dims broadcast; vmap for many).

    Parameters
    ----------
    eta : ``(..., len(pop.bsv_names))`` or None (no BSV term).
    kappa : ``(..., occasions, len(pop.iov_names))`` or None (no IOV term).
    y, f : observations and predictions ``(..., n_obs)`` in the observation's units (both or
        neither); needs ``pop.residual``.
    mask : boolean ``(..., n_obs)``, True where ``y`` is an observation (False: padding, not
        counted and with zero gradient). Default all True.

    Returns the log density (natural log, all constants included; see module docstring),
    shape ``(...)``.
    """
    lp = jnp.zeros(())
    if eta is not None and pop.bsv_names:
        k = len(pop.bsv_names)
        lp = lp + dist.MultivariateNormal(jnp.zeros(k), scale_tril=jnp.asarray(pop.omega_chol)).log_prob(eta)
    if kappa is not None and pop.iov_names:
        lp = lp + dist.Normal(0.0, jnp.asarray(pop.iov_sd)).log_prob(kappa).sum((-2, -1))
    if (y is None) != (f is None):
        raise ValueError("give both y (observations) and f (predictions), or neither")
    if y is not None:
        if pop.residual is None:
            raise ValueError("the population model has no residual error model")
        lp = lp + _residual_log_likelihood(pop.residual, jnp.asarray(y), jnp.asarray(f), mask)
    return lp


def _residual_log_likelihood(r: ResidualError, y, f, mask):
    if mask is not None:  # padded entries: a harmless point (y = f = 1), then dropped
        mask = jnp.asarray(mask, dtype=bool)
        y, f = jnp.where(mask, y, 1.0), jnp.where(mask, f, 1.0)
    if r.type == "exponential":
        ll = dist.Normal(jnp.log(f), r.exponential).log_prob(jnp.log(y))
    else:
        ll = dist.Normal(f, residual_sd(r, f)).log_prob(y)
    if mask is not None:
        ll = jnp.where(mask, ll, 0.0)
    return ll.sum(-1)
