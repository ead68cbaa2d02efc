"""Design randomness: allocation, dropout, adherence and sampling schedules.

Every draw comes from a key derived from (seed, stream, replicate, subject index[, dose or
sample index]) with ``jax.random.fold_in`` — never from chunk or worker identity — so a
subject's allocation, dropout time, missed doses and sampling times are the same whatever the
chunking, and the same in every arm of a counterfactual design.

The draws run as kernels kept across processes (`insilico.exported.persistent`: a new process
loads the traced program instead of tracing it again); the kept program is the jitted kernel's
own, so its numbers are the same bit for bit (``tests/trials/test_design_persistent.py``).
"""
from __future__ import annotations

import functools
import zlib
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from insilico import exported
from insilico.batching import bucket_size
from insilico.errors import SpecError
from insilico.streams import JITTER, stream_id

# Columns (doses, samples, dropout intervals) are padded to at least 64 so that one compiled
# shape serves dropout, adherence and sampling draws alike (column j never depends on m).
MIN_COLUMNS = 64


def _padded(idx: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.uint32)
    return np.concatenate([idx, np.zeros(bucket_size(idx.size) - idx.size, np.uint32)])


def _root(seed, stream, replicate):
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), stream), replicate)


@jax.jit
def _keys(seed, stream, replicate, idx):
    root = _root(seed, stream, replicate)
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(idx)


@functools.partial(jax.jit, static_argnames=("m",))
def _uniform_kernel(seed, stream, replicate, idx, m: int):
    cols = jnp.arange(m, dtype=jnp.uint32)
    return jax.vmap(lambda k: jax.vmap(lambda j: jax.random.uniform(jax.random.fold_in(k, j)))(cols))(
        _keys(seed, stream, replicate, idx))


@functools.partial(jax.jit, static_argnames=("m",))
def _normal_kernel(seed, stream, replicate, idx, sub, m: int):
    cols = jnp.arange(m, dtype=jnp.uint32)
    return jax.vmap(lambda k: jax.vmap(lambda j: jax.random.normal(
        jax.random.fold_in(jax.random.fold_in(k, sub), j)))(cols))(_keys(seed, stream, replicate, idx))


@jax.jit
def _key_normal_kernel(seed, stream, replicate, idx):
    return jax.vmap(jax.random.normal)(_keys(seed, stream, replicate, idx))


@jax.jit
def _permutation_kernel(seed, stream, replicate, idx, block):
    return jax.vmap(lambda k: jax.random.permutation(k, block))(_keys(seed, stream, replicate, idx))


_KEPT: dict = {}


def _kept(kernel, **static):
    """The jitted ``kernel`` (with its static arguments ``static``) as a kernel kept across processes
    (`insilico.exported.persistent`, keyed by the kernel's name and ``static``)."""
    k = (kernel.__name__, tuple(sorted(static.items())))
    f = _KEPT.get(k)
    if f is None:
        fn = functools.partial(kernel.__wrapped__, **static) if static else kernel.__wrapped__
        f = _KEPT[k] = exported.persistent(fn, f"design {kernel.__name__}", repr(k[1]))
    return f


def _args(seed: int, stream: str, replicate: int):
    return np.int64(seed), np.uint32(stream_id(stream)), np.uint32(replicate)


def subject_keys(seed: int, stream: str, replicate: int, idx: np.ndarray):
    """Keys ``fold_in(fold_in(fold_in(PRNGKey(seed), stream), replicate), i)`` of the subjects ``idx``
    (raw uint32 keys, shape (n, 2), as a NumPy array: trimmed on the host, no eager device op)."""
    idx = np.asarray(idx)
    return np.asarray(_kept(_keys)(*_args(seed, stream, replicate), _padded(idx)))[: idx.size]


def _uniform(seed: int, stream: str, replicate: int, idx: np.ndarray, m: int) -> np.ndarray:
    """(n, m) uniforms; column j from fold_in(key_i, j), so columns do not depend on m."""
    idx = np.asarray(idx)
    u = _kept(_uniform_kernel, m=bucket_size(m, MIN_COLUMNS))(*_args(seed, stream, replicate), _padded(idx))
    return np.asarray(u)[: idx.size, :m]


MAX_BLOCK = 10_000   # subjects in one randomisation block


def allocation_block(ratios: list[float]) -> np.ndarray:
    """Arm indices of one randomisation block: each ratio the nearest fraction with denominator
    <= 100, then all reduced to the smallest integers. A ratio that rounds to 0 (an arm that would
    never be allocated) or a block over `MAX_BLOCK` subjects is a `SpecError` naming
    ``arms.<i>.ratio``."""
    fr = [Fraction(r).limit_denominator(100) for r in ratios]
    for i, f in enumerate(fr):
        if f <= 0:
            raise SpecError(f"arms.{i}.ratio", f"ratio {ratios[i]!r} rounds to 0 (ratios are taken to the nearest "
                                               "fraction with denominator <= 100): this arm would get no subjects")
    den = int(np.lcm.reduce([f.denominator for f in fr]))
    ints = [int(f * den) for f in fr]
    g = int(np.gcd.reduce(ints))
    ints = [k // g for k in ints]
    if sum(ints) > MAX_BLOCK:
        i = int(np.argmax(ints))
        raise SpecError(f"arms.{i}.ratio", f"ratios {list(ratios)} need a randomisation block of {sum(ints)} "
                                           f"subjects (integers {ints}; at most {MAX_BLOCK}); use simpler ratios")
    return np.repeat(np.arange(len(ratios)), ints)


def allocate(seed: int, replicate: int, idx: np.ndarray, ratios: list[float]) -> np.ndarray:
    """Permuted-block randomisation: subject i is in block i // B (B = block length), each
    block a seeded permutation of the allocation ratios — exact ratios in every full block."""
    block = allocation_block(ratios)
    B = len(block)
    blocks = np.unique(idx // B)
    perms = np.asarray(_kept(_permutation_kernel)(*_args(seed, "randomisation", replicate), _padded(blocks),
                                                  block))[: blocks.size]
    return perms[np.searchsorted(blocks, idx // B), idx % B]


def dropout_times(spec, seed: int, replicate: int, idx: np.ndarray) -> np.ndarray:
    """Dropout time (h) per subject, ``inf`` for completers.

    Constant hazard h: T = −ln(U)/h (exponential). Intervals: in interval k (from the previous
    end) a subject still in the trial drops out with its conditional probability
    (`DropoutSpec.interval_probabilities`, also for cumulative targets), at a uniform time in it.
    """
    n = len(idx)
    if spec is None:
        return np.full(n, np.inf)
    if spec.hazard is not None:
        if spec.hazard == 0:
            return np.full(n, np.inf)
        u = _uniform(seed, "dropout", replicate, idx, 1)[:, 0]
        return -np.log1p(-u) / spec.hazard
    steps = spec.interval_probabilities()
    K = len(steps)
    if K == 0:
        return np.full(n, np.inf)
    u = _uniform(seed, "dropout", replicate, idx, 2 * K)
    ends = np.array([end for end, _ in steps])
    starts = np.concatenate([[0.0], ends[:-1]])
    probs = np.array([p for _, p in steps])
    drop = u[:, :K] < probs
    first = np.where(drop.any(axis=1), drop.argmax(axis=1), -1)
    t = np.full(n, np.inf)
    has = first >= 0
    k = first[has]
    t[has] = starts[k] + u[has, K + k] * (ends[k] - starts[k])
    return t


def doses_taken(spec, seed: int, replicate: int, idx: np.ndarray, n_doses: int) -> np.ndarray:
    """(n, n_doses) bool: which of a subject's doses are taken (independent misses with
    1 − probability, and missed runs of ``length`` doses starting with ``start_probability``)."""
    n = len(idx)
    if spec is None or n_doses == 0:
        return np.ones((n, n_doses), bool)
    u = _uniform(seed, "adherence", replicate, idx, 2 * n_doses)
    taken = u[:, :n_doses] < spec.probability
    if spec.missed_run:
        L = min(int(spec.missed_run["length"]), n_doses)   # a run longer than the regimen misses the rest
        starts = u[:, n_doses:] < spec.missed_run["start_probability"]
        in_run = np.zeros_like(starts)
        for lag in range(L):
            in_run[:, lag:] |= starts[:, : n_doses - lag]
        taken &= ~in_run
    return taken


def sampling(spec, seed: int, replicate: int, idx: np.ndarray, nominal: np.ndarray):
    """Per-subject (sampled mask (n, T), actual times (n, T)).

    Sparse designs sample ``per_subject`` of the nominal times (a seeded random subset);
    jitter adds N(0, jitter_sd²) h to each actual time (kept >= 0 and strictly increasing).
    """
    n, T = len(idx), len(nominal)
    mask = np.ones((n, T), bool)
    if spec.per_subject is not None and spec.per_subject < T:
        u = _uniform(seed, "schedule", replicate, idx, T)
        rank = np.argsort(np.argsort(u, axis=1), axis=1)
        mask = rank < spec.per_subject
    actual = np.broadcast_to(nominal, (n, T)).copy()
    if spec.jitter_sd > 0:
        z = np.asarray(_kept(_normal_kernel, m=bucket_size(T, MIN_COLUMNS))(
            *_args(seed, "schedule", replicate), _padded(idx), np.uint32(JITTER)))[:n, :T]
        actual = np.sort(np.maximum(actual + spec.jitter_sd * z, 0.0), axis=1)
        gap = 1e-6
        actual = np.maximum.accumulate(actual - gap * np.arange(T), axis=1) + gap * np.arange(T)
    return mask, actual


def uncertainty_factors(spec, seed: int, replicate: int) -> dict[str, float]:
    """Per-replicate multiplicative factors exp(sd·z) for population-parameter uncertainty."""
    out = {}
    names = list(spec.uncertainty)
    if not names:
        return out
    ids = np.array([zlib.crc32(n.encode()) for n in names], dtype=np.uint32)
    z = np.asarray(_kept(_key_normal_kernel)(*_args(seed, "uncertainty", replicate), _padded(ids)))
    for j, name in enumerate(names):
        sd = spec.uncertainty[name]
        out[name] = float(np.exp(sd * z[j])) if sd > 0 else 1.0
    return out
