"""Drawing a cohort: per-subject keys, rejection sampling for the criteria, the Dataset.

Randomness. Subject ``i`` (global index) on rejection attempt ``a`` uses the key::

    key_i  = fold_in(fold_in(PRNGKey(seed), COHORT_STREAM), i)
    key_ia = fold_in(key_i, a)

and the NumPyro model (one subject) is run under ``handlers.seed(model, key_ia)``, vmapped over
(subject, attempt) pairs. Subject ``i`` is its first accepted attempt, so its covariates,
etas and parameters depend only on (seed, i): the same for any N, any chunk ``start``, any
batch size. The stratum (if any) depends only on ``i`` (low-discrepancy assignment).

Rows are evaluated in calls of at most ``batch_size`` rows; a smaller call is padded to the
next power of two (at least 64 rows, and at least the size of the draw's first call), so a
work unit of 100 subjects computes 128 rows per rejection round, and the few compiled shapes
are reused.

Rejection is vectorised in rounds: every pending subject tries a block of ``k`` further
attempts, ``k`` chosen from the acceptance rate observed so far (per stratum) so that about
99 % of pending subjects finish in the next round.
"""
from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro import handlers

from insilico import batching, exported, streams
from insilico.cohorts._compile import CompiledCohort, compile_spec
from insilico.cohorts._model import cohort_model, criteria_mask
from insilico.errors import SpecError

__all__ = ["COHORT_STREAM", "DEFAULT_BATCH", "MIN_BUCKET", "assign_strata", "bucket_size", "draw_cohort",
           "subject_key"]

COHORT_STREAM = streams.COHORT  # stream id of cohort draws (see insilico.streams)
DEFAULT_BATCH = 16384     # most rows per compiled call
MIN_BUCKET = 64           # fewest rows per compiled call (calls are padded to powers of two in between)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_KERNELS: OrderedDict[tuple, object] = OrderedDict()
_LOCK = threading.Lock()


def subject_key(seed: int, i: int, attempt: int = 0) -> jax.Array:
    """The PRNG key of subject ``i``, rejection attempt ``attempt`` (see module docstring)."""
    k = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), COHORT_STREAM), i)
    return jax.random.fold_in(k, attempt)


def assign_strata(index: np.ndarray, fractions) -> np.ndarray:
    """Stratum code of each global subject index: u_i = frac((i + 1) * (sqrt(5) - 1) / 2)
    (golden-ratio sequence) placed on the cumulative fractions. Depends only on ``i``; any block
    of consecutive subjects matches the fractions closely (discrepancy O(log n / n))."""
    u = np.modf((np.asarray(index, dtype=np.float64) + 1.0) * _GOLDEN)[0]
    cum = np.cumsum(np.asarray(fractions, dtype=float))[:-1]
    return np.searchsorted(cum, u, side="right").astype(np.int64)


def _kernel(c: CompiledCohort):
    """The jitted, vmapped one-subject model of ``c`` (one per spec; compiled once per bucket size
    and kept across processes by `insilico.exported.persistent`). Its last argument,
    ``(population, table)``, holds the parameter model's numbers and the resampled columns, so
    other numbers of the same structure reuse the compiled code."""
    key = c.cache_key
    with _LOCK:
        fn = _KERNELS.get(key)
        if fn is not None:
            _KERNELS.move_to_end(key)
            return fn
    model = cohort_model(c)
    names = c.output_names()
    has_stratum = c.stratum is not None

    def one(k, s, data):
        pop, table = data
        tr = handlers.trace(handlers.seed(model, k)).get_trace(1, s[None] if has_stratum else None, pop, table)
        env = {n: tr[n]["value"][0] for n in names}
        return env, criteria_mask(c, env)

    def batch(seed, subj, att, strat, data):
        base = jax.random.fold_in(jax.random.PRNGKey(seed), COHORT_STREAM)
        keys = jax.vmap(lambda i, a: jax.random.fold_in(jax.random.fold_in(base, i), a))(
            subj.astype(jnp.uint32), att.astype(jnp.uint32))
        return jax.vmap(one, in_axes=(0, 0, None))(keys, strat, data)

    # kept across processes only when the spec's key identifies the traced program
    run = exported.persistent(batch, "cohort draw", key) if key else jax.jit(batch)

    with _LOCK:
        _KERNELS[key] = run
        if len(_KERNELS) > 32:
            _KERNELS.popitem(last=False)
    return run


def bucket_size(m: int, batch: int) -> int:
    """Rows of the compiled call that evaluates ``m`` rows: the next power of two, at least
    :data:`MIN_BUCKET` and at most ``batch``, so few shapes are compiled and small draws are cheap."""
    return batching.bucket_size(m, MIN_BUCKET, batch)


def _numbers(pop) -> object:
    """``pop`` with every number as a float64 array (one jit signature, whatever the source)."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), pop)


def _population(c: CompiledCohort, population) -> object:
    """The parameter model's numbers for the kernel: the spec's, or ``population`` (checked to
    have the structure and shapes of the spec's)."""
    own = _numbers(c.population)
    if population is None:
        return own
    other = _numbers(population)
    same = jax.tree_util.tree_structure(other) == jax.tree_util.tree_structure(own) and all(
        np.shape(a) == np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(other), jax.tree_util.tree_leaves(own)))
    if not same:
        raise SpecError("population", "must have the structure of the cohort's parameter model (the same "
                                      "parameters, effects, BSV/IOV parameters and residual error type)")
    return other


def _batches(run, seed, subj, att, strat, batch, floor, data):
    """Yield (start, stop, outputs as numpy, accept mask) over batches of ``batch`` rows, the
    last one padded to its :func:`bucket_size` but to no fewer than ``floor`` rows (the first
    call's size: the later, smaller rejection rounds of a draw reuse its compiled shape).
    ``data``: the kernel's ``(population, table)`` argument."""
    total = subj.size
    for s in range(0, total, batch):
        e = min(s + batch, total)
        m = e - s
        pad = max(floor, bucket_size(m, batch)) - m
        args = [subj[s:e], att[s:e], strat[s:e]]
        if pad:
            args = [np.concatenate([a, np.zeros(pad, a.dtype)]) for a in args]
        out, acc = jax.device_get(run(np.int64(seed), *args, data))
        yield s, e, {k: v[:m] for k, v in out.items()}, acc[:m]


def draw_cohort(spec, n: int, seed: int, start: int = 0, *, apply_criteria: bool = True,
                min_acceptance: float = 1e-4, max_attempts: int | None = None,
                batch_size: int = DEFAULT_BATCH, population=None) -> xr.Dataset:
    """Draw subjects ``start .. start+n-1`` of the cohort ``spec`` with ``seed``.

    Parameters
    ----------
    spec : CohortSpec, path to a YAML file, YAML text or mapping.
    n : number of subjects (>= 1); ``start``: global index of the first one. Subject ``i`` is
        identical whatever ``n``, ``start`` or ``batch_size``.
    apply_criteria : apply inclusion/exclusion (and stratum) criteria by rejection. With
        ``False`` every subject is its first (unconstrained) draw — the distribution the
        spec's marginals and correlations describe (see :func:`validation_report`).
    min_acceptance : raise :class:`SpecError` (field ``criteria`` or the stratum's) once the
        acceptance rate is confidently below this (upper ~99.9 % bound).
    max_attempts : per-subject attempt limit (default ``ceil(30 / min_acceptance)``).
    population : a :class:`~insilico.population.PopulationModel` with the structure of the spec's
        parameter model whose numbers (typical values, effects, Omega, IOV, residual error) are
        used instead of the spec's (e.g. a trial replicate's draw from a fit's uncertainty). The
        random draws are the same: only the numbers they are scaled by change. Attribute
        ``population_override`` is 1 then.

    Returns
    -------
    xarray.Dataset over ``subject`` (int64 global index; plus ``occasion`` 1..K with IOV) with
    covariates, ``eta_P``, ``kappa_P``, parameters ``P`` (and ``P_occ``) and ``attempt``; attrs
    ``spec`` (JSON), ``seed``, ``acceptance_rate``, ``n_draws``, ...
    """
    c = compile_spec(spec)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SpecError("n", f"number of subjects must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**63):
        raise SpecError("seed", f"seed must be an integer in [0, 2**63), got {seed!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise SpecError("start", f"start must be an integer >= 0, got {start!r}")
    if start + n > 2**32:
        raise SpecError("n", "subject indices must be < 2**32")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise SpecError("batch_size", f"must be an integer >= 1, got {batch_size!r}")
    if not (0 < min_acceptance < 1):
        raise SpecError("min_acceptance", f"must be in (0, 1), got {min_acceptance}")
    if max_attempts is None:
        max_attempts = math.ceil(30.0 / min_acceptance)
    n, seed, start = int(n), int(seed), int(start)

    idx = np.arange(start, start + n, dtype=np.int64)
    strat = assign_strata(idx, c.stratum_fractions) if c.stratum else np.zeros(n, np.int64)
    run = _kernel(c)
    data = (_population(c, population), c.table_arrays())
    rejection = apply_criteria and c.has_criteria

    values: dict[str, np.ndarray] = {}
    attempt = np.zeros(n, np.int64)
    by_level: dict[str, float] = {}
    if not rejection:
        for s, e, out, _ in _batches(run, seed, idx, attempt, strat, batch_size, 0, data):
            _store(values, out, slice(s, e), n)
    else:
        attempt, by_level = _reject(c, run, seed, idx, strat, values, n, min_acceptance,
                                    max_attempts, batch_size, data)
    _check_draws(c, values, idx)
    ds = _dataset(c, values, idx, attempt, seed, start, rejection, by_level)
    ds.attrs["population_override"] = int(population is not None)
    return ds


def _first_bad(bad: np.ndarray, idx: np.ndarray) -> str:
    return f"{int(bad.sum())} subject(s) (first: subject {int(idx[int(np.flatnonzero(bad)[0])])})"


def _check_draws(c: CompiledCohort, values: dict, idx: np.ndarray) -> None:
    """SpecError naming the field when a distribution parameter given by an expression is invalid
    for some subjects (``sd``/``sdlog`` <= 0, ``low`` >= ``high``), or a truncnormal draw lies
    outside its [low, high] — the interval had no probability mass left for that subject
    (constant parameters are checked when the spec is compiled)."""
    for name, node in c.nodes.items():
        if getattr(node, "dist", None) in (None, "categorical"):
            continue
        if all(g.fn is None for g in node.params.values()):
            continue   # constants and category tables: checked when the spec is compiled
        x = np.asarray(values[name], float)
        p = {k: np.broadcast_to(np.asarray(v, float), x.shape) for k, v in node.p(values).items()}
        for k in ("sd", "sdlog"):
            if k in p and not np.all(p[k] > 0):
                raise SpecError(f"covariates.{name}.{k}", f"must be > 0; not so for {_first_bad(~(p[k] > 0), idx)}")
        if "low" in p and not np.all(p["low"] < p["high"]):
            raise SpecError(f"covariates.{name}.high", f"must be > low; not so for "
                                                       f"{_first_bad(~(p['low'] < p['high']), idx)}")
        if node.dist != "truncnormal":
            continue
        bad = ~((x >= p["low"]) & (x <= p["high"]))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            at = {k: float(v[i]) for k, v in p.items()}
            gap = max(at["low"] - at["mean"], at["mean"] - at["high"]) / at["sd"]
            raise SpecError(f"covariates.{name}", f"truncnormal has no probability mass left in [low, high] for "
                                                  f"{int(bad.sum())} subject(s) (first: subject {int(idx[i])}, "
                                                  f"interval [{at['low']:.4g}, {at['high']:.4g}] {gap:.3g} SD from "
                                                  f"the mean {at['mean']:.4g})")


def _store(values, out, where, n):
    for k, v in out.items():
        if k not in values:
            values[k] = np.empty((n,) + v.shape[1:], dtype=v.dtype)
        values[k][where] = v


def _reject(c, run, seed, idx, strat, values, n, min_acc, max_attempts, batch, data):
    n_levels = max(1, len(c.stratum_fractions))
    level = strat if c.stratum else np.zeros(n, np.int64)
    tried = np.zeros(n_levels)
    accepted = np.zeros(n_levels)
    acc_att = np.full(n, -1, np.int64)
    next_a = np.zeros(n, np.int64)
    k_level = np.ones(n_levels, np.int64)
    row_cap = max(16 * batch, 1 << 20)
    floor = bucket_size(n, batch)
    pending = np.arange(n)
    while pending.size:
        kk = np.minimum(k_level[level[pending]], max_attempts - next_a[pending])
        # keep the round within the row budget (at least one attempt each)
        while kk.sum() > max(row_cap, pending.size) and kk.max() > 1:
            kk = np.maximum(1, kk // 2)
        pos = np.repeat(pending, kk)
        first = np.repeat(np.cumsum(kk) - kk, kk)
        att = next_a[pos] + (np.arange(pos.size) - first)
        for s, e, out, acc in _batches(run, seed, idx[pos], att, strat[pos], batch, floor, data):
            hit = np.flatnonzero(acc)
            if hit.size == 0:
                continue
            p = pos[s:e][hit]
            p_u, first_hit = np.unique(p, return_index=True)  # rows ascend in attempt per subject
            new = acc_att[p_u] < 0
            p_u, rows = p_u[new], hit[first_hit[new]]
            acc_att[p_u] = att[s:e][rows]
            _store_rows(values, out, rows, p_u, n)
        done = acc_att[pending] >= 0
        used = np.where(done, acc_att[pending] + 1 - next_a[pending], kk)
        np.add.at(tried, level[pending], used)
        np.add.at(accepted, level[pending], done.astype(float))
        next_a[pending] += kk
        pending = pending[~done]
        _check_acceptance(c, tried, accepted, min_acc, n)
        if pending.size and np.any(next_a[pending] >= max_attempts):
            i = int(idx[pending[np.argmax(next_a[pending] >= max_attempts)]])
            lv = int(level[pending[0]])
            p = accepted[lv] / max(tried[lv], 1)
            raise SpecError(_crit_field(c, lv), f"subject {i} found no draw meeting the criteria in "
                                                f"{max_attempts} attempts (acceptance rate so far {p:.3g}); "
                                                f"cannot reach N={n}")
        for lv in range(n_levels):
            if accepted[lv] > 0:
                p = accepted[lv] / tried[lv]
                k_level[lv] = 1 if p >= 1 else max(1, math.ceil(math.log(0.01) / math.log1p(-p)))
            else:
                k_level[lv] = k_level[lv] * 4
    labels = c.stratum_labels or ("all",)
    by_level = {labels[lv]: float(accepted[lv] / tried[lv]) for lv in range(n_levels) if tried[lv]}
    return acc_att, by_level


def _store_rows(values, out, rows, dest, n):
    for k, v in out.items():
        if k not in values:
            values[k] = np.empty((n,) + v.shape[1:], dtype=v.dtype)
        values[k][dest] = v[rows]


def _crit_field(c: CompiledCohort, level: int) -> str:
    if c.stratum and c.stratum_criteria[level]:
        return f"strata.levels.{c.stratum_labels[level]}.criteria"
    return "criteria"


def _check_acceptance(c, tried, accepted, min_acc, n):
    for lv in range(tried.size):
        t, a = tried[lv], accepted[lv]
        if t == 0:
            continue
        upper = (a + 3.0 * math.sqrt(a) + 3.0) / t  # ~99.9 % upper Poisson bound
        if upper < min_acc:
            where = f" in stratum {c.stratum_labels[lv]!r}" if c.stratum else ""
            what = (f"no draw out of {int(t)} met the criteria{where}: they exclude (nearly) everyone"
                    if a == 0 else f"acceptance rate{where} {a / t:.3g} ({int(a)} of {int(t)} draws)")
            raise SpecError(_crit_field(c, lv), f"{what}; below min_acceptance={min_acc:g}, cannot "
                                                f"reach N={n}")


def _dataset(c: CompiledCohort, values, idx, attempt, seed, start, rejection, by_level) -> xr.Dataset:
    from insilico import __version__

    coords = {"subject": ("subject", idx, {"long_name": "global subject index", "units": "1"})}
    if c.occasions:
        coords["occasion"] = ("occasion", np.arange(1, c.occasions + 1, dtype=np.int64),
                              {"long_name": "occasion (1-based)", "units": "1"})
    data = {}
    for name in c.output_names():
        v = np.asarray(values[name])
        if c.is_integer(name):
            v = v.astype(np.int64)
        else:
            v = v.astype(np.float64)
        dims = ("subject",) if v.ndim == 1 else ("subject", "occasion")
        data[name] = (dims, v, dict(c.attrs[name]))
    data["attempt"] = ("subject", np.asarray(attempt, np.int64),
                       {"units": "1", "long_name": "index of the accepted rejection-sampling attempt",
                        "role": "diagnostic"})
    n_draws = int(np.sum(attempt + 1))
    attrs = {
        "title": f"insilico virtual cohort {c.spec.name}",
        "cohort": c.spec.name,
        "spec": c.spec_json,
        "seed": int(seed),
        "start": int(start),
        "stream_id": COHORT_STREAM,
        "criteria_applied": int(bool(rejection)),
        "n_draws": n_draws,
        "acceptance_rate": float(idx.size / n_draws),
        "acceptance_rate_by_stratum": json.dumps(by_level),
        "insilico_version": __version__,
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)
