"""The residual likelihood of one subject's records: several observed outputs, each with its own
residual error model, and censored records (BLQ, Beal's M3).

A subject (`Problem.subjects`) may carry, besides ``y`` and ``mask`` (N, T):

* ``out`` (T,) int: the index of the record's output in `Problem.outputs` (absent: every record
  measures the first output);
* ``cens`` (T,) bool and ``lloq`` (T,): the record is below the limit ``lloq`` (same units as DV)
  and contributes ``log P(y < LLOQ) = log Phi((LLOQ - f) / sd)`` (Beal 2001, M3), on the log scale
  (``log LLOQ`` and ``log f``) for the exponential error; absent: no censored record.

Uncensored records contribute the Gaussian ``log N(y; f, sd^2)`` (on the log scale for the
exponential error), ``sd`` from the record's own output's residual model at its prediction
(`insilico.population.residual_sd`). Natural logs, every constant included.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.stats import norm

from insilico.population import residual_sd

__all__ = ["log_likelihood", "record_log_scale", "record_sd", "residual_models"]


def residual_models(pop) -> tuple:
    """One residual model per observed output (``pop.residuals``; a plain population model: its one)."""
    return getattr(pop, "residuals", ()) or (pop.residual,)


def _per_record(values, subject):
    """``values`` (n_outputs, T) -> each record's own output's value (T,)."""
    if values.shape[0] == 1 or "out" not in subject:
        return values[0]
    return jnp.take_along_axis(values, subject["out"][None, :], axis=0)[0]


def record_sd(pop, subject, f):
    """Residual SD of each record at prediction ``f`` (T,), from its output's residual model."""
    return _per_record(jnp.stack([residual_sd(r, f) for r in residual_models(pop)]), subject)


def record_log_scale(pop, subject):
    """True for records whose output has the exponential (log-scale) error (T,)."""
    flags = [r.type == "exponential" for r in residual_models(pop)]
    if len(flags) == 1 or "out" not in subject:
        return jnp.full(subject["y"].shape[-1], flags[0])
    return jnp.asarray(flags)[subject["out"]]


def log_likelihood(pop, subject, f):
    """log p(y | f) of one subject (scalar): the sum over masked records (module docstring)."""
    mask = subject["mask"]
    log = record_log_scale(pop, subject)
    cens = subject["cens"] & mask if "cens" in subject else jnp.zeros_like(mask)
    f = jnp.where(mask, f, 1.0)
    y = jnp.where(mask & ~cens, subject["y"], 1.0)
    sd = jnp.where(mask, record_sd(pop, subject, f), 1.0)
    ft = jnp.where(log, jnp.log(jnp.where(log, f, 1.0)), f)
    yt = jnp.where(log, jnp.log(jnp.where(log, y, 1.0)), y)
    ll = norm.logpdf(yt, ft, sd)
    if "cens" in subject:
        lloq = jnp.where(cens, subject["lloq"], 1.0)
        limit = jnp.where(log, jnp.log(jnp.where(log, lloq, 1.0)), lloq)
        ll = jnp.where(cens, norm.logcdf((limit - ft) / sd), ll)
    return jnp.where(mask, ll, 0.0).sum(-1)
