"""Simulating residual (observation) error, deterministic per subject and observation.

Key of observation ``j`` of subject ``i``::

    root  = fold_in(PRNGKey(seed), RESIDUAL_STREAM)   (or a caller-derived key, e.g. with
                                                        the replicate folded in)
    k_ij  = fold_in(fold_in(root, i), j)
    eps   = normal(k_ij, (2,))                         (eps1, eps2 ~ N(0, 1))

so a subject's noise does not depend on which other subjects or observations are simulated
with it. Error models (NONMEM $ERROR style): additive y = f + a eps1; proportional
y = f (1 + b eps1); combined y = f (1 + b eps1) + a eps2; combined1 y = f + (a + b |f|) eps1
(SD a + b f: Monolix combined1, NONMEM ``Y = IPRED + W*EPS(1)``, ``W = THETA(b)*IPRED + THETA(a)``);
exponential y = f exp(s eps1).
The matching likelihood is :func:`~insilico.population.log_density`.

With concrete inputs the kernel is kept across processes (`insilico.exported.persistent`, one
program per error type): a new process loads it instead of tracing it; same program, same numbers.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from insilico import exported, streams
from insilico.batching import bucket_size
from insilico.config import validate
from insilico.population._spec import ResidualErrorSpec

__all__ = ["RESIDUAL_STREAM", "apply_residual_error", "residual_root_key"]

RESIDUAL_STREAM = streams.RESIDUAL  # see insilico.streams
MIN_ROWS = 4096   # observations padded to at least this many rows: one compiled shape for typical work units


def residual_root_key(key_or_seed) -> jax.Array:
    """``fold_in(PRNGKey(seed), RESIDUAL_STREAM)`` for an integer seed; a key is used as is."""
    if isinstance(key_or_seed, (int, np.integer)) and not isinstance(key_or_seed, bool):
        return jax.random.fold_in(jax.random.PRNGKey(int(key_or_seed)), RESIDUAL_STREAM)
    k = key_or_seed
    if hasattr(k, "dtype") and jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key):
        return k
    if isinstance(k, jax.Array):   # a device array or a tracer
        return jnp.asarray(k, dtype=jnp.uint32)
    return jax.device_put(np.asarray(k, dtype=np.uint32))   # host key: a transfer, no compiled copy


@functools.partial(jax.jit, static_argnames=("kind",))
def _noisy(f, root, subjects, observations, kind: str, additive, proportional, exponential):
    """Observations ``f`` (flat) with residual error of type ``kind``; eps of row r from
    ``normal(fold_in(fold_in(root, subjects[r]), observations[r]), (2,))``."""
    def draw(i, j):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(root, i), j), (2,))
    eps = jax.vmap(draw)(subjects, observations)
    e1, e2 = eps[:, 0], eps[:, 1]
    if kind == "additive":
        return f + additive * e1
    if kind == "proportional":
        return f * (1.0 + proportional * e1)
    if kind == "combined":
        return f * (1.0 + proportional * e1) + additive * e2
    if kind == "combined1":
        return f + (additive + proportional * jnp.abs(f)) * e1
    if kind == "exponential":
        return f * jnp.exp(exponential * e1)
    raise ValueError(f"unknown residual error type {kind!r}")


_KEPT: dict = {}


def _kept_noisy(kind: str):
    """`_noisy` of error type ``kind`` as a kernel kept across processes."""
    kept = _KEPT.get(kind)
    if kept is None:
        def noisy(f, root, subjects, observations, additive, proportional, exponential):
            return _noisy.__wrapped__(f, root, subjects, observations, kind, additive, proportional, exponential)
        kept = _KEPT[kind] = exported.persistent(noisy, "residual error", repr(kind))
    return kept


def apply_residual_error(values, error_spec: ResidualErrorSpec | Mapping, key_or_seed,
                         subject_index, obs_index=None) -> jax.Array:
    """Add residual error to model predictions.

    Parameters
    ----------
    values : predictions f, shape ``subject_index.shape + (n_obs,)`` (e.g. (n_subjects, n_obs),
        or (n_obs,) with a scalar ``subject_index``), in the observation's units (mg/L).
    error_spec : :class:`ResidualErrorSpec` or mapping (``type``, ``additive``,
        ``proportional``, ``exponential``); a bad one raises SpecError (field ``residual_error.*``).
    key_or_seed : integer seed, or a PRNG key to use as the root of the residual stream.
    subject_index : global subject index (scalar or array).
    obs_index : index of each observation within the subject (default ``0..n_obs-1``);
        broadcastable to ``values``.

    Returns the noisy observations (same shape). Pure JAX: usable under ``jit`` when
    ``error_spec`` is static. Concrete inputs run one compiled kernel padded to a power-of-two
    number of rows (`insilico.batching.bucket_size`), so new shapes rarely recompile.
    """
    spec = error_spec if isinstance(error_spec, ResidualErrorSpec) else \
        validate(ResidualErrorSpec, dict(error_spec), "residual_error")
    root = residual_root_key(key_or_seed)
    traced = any(isinstance(x, jax.core.Tracer) for x in (values, subject_index, obs_index))
    xp = jnp if traced else np        # host arithmetic for concrete inputs: no eager device ops
    f = xp.asarray(values, dtype=float)
    subj = xp.asarray(subject_index)
    if f.ndim != subj.ndim + 1 or f.shape[:-1] != subj.shape:
        raise ValueError(f"values shape {f.shape} must be subject_index shape {subj.shape} + (n_obs,)")
    obs = xp.arange(f.shape[-1]) if obs_index is None else xp.asarray(obs_index)
    flat_f = f.reshape(-1)
    flat_s = xp.broadcast_to(subj[..., None], f.shape).reshape(-1).astype(np.uint32)
    flat_o = xp.broadcast_to(obs, f.shape).reshape(-1).astype(np.uint32)
    n, pad = flat_f.size, bucket_size(flat_f.size, MIN_ROWS) - flat_f.size
    if pad:   # one compiled shape per power of two, whatever the number of observations
        flat_f, flat_s, flat_o = (xp.concatenate([a, xp.zeros(pad, a.dtype)]) for a in (flat_f, flat_s, flat_o))
    sds = (spec.additive or 0.0, spec.proportional or 0.0, spec.exponential or 0.0)
    if traced or isinstance(root, jax.core.Tracer) or jax.dtypes.issubdtype(root.dtype, jax.dtypes.prng_key):
        return _noisy(flat_f, root, flat_s, flat_o, spec.type, *sds)[:n].reshape(f.shape)
    out = _kept_noisy(spec.type)(flat_f, root, flat_s, flat_o, *(np.float64(x) for x in sds))
    return jax.device_put(np.asarray(out)[:n].reshape(f.shape))   # trimmed on the host: no eager device op
