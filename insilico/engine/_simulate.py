"""`simulate`: N subjects × regimens × observation times -> xarray Dataset.

Subjects are processed in chunks; each chunk is padded to a power-of-two bucket (at least 8,
at most ``chunk_size``) so that a compiled function is reused for any N and any parameter
values: at most log2(chunk_size) compilations per model, method, regimen shape and number of
observation times. Memory is bounded by the chunk size whatever N is.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from insilico.dosing import DoseTable, Regimen, dose_table
from insilico.engine import _status
from insilico.engine._exact import solve_exact
from insilico.engine._ode import SolverOptions, solve_ode
from insilico.errors import SpecError
from insilico.models import Model, get_model

__all__ = ["simulate", "solve_subject", "compile_count", "SolverOptions"]

_BUILT: list = []


def solve_subject(model: Model, p: Mapping, dose, obs_t, method: str = "exact",
                  obs_after_dose: bool = False, solver: SolverOptions = SolverOptions(),
                  has_infusion: bool = True, has_ss: bool = True):
    """Pure, differentiable single-subject solve: returns (outputs dict, states[T, n], status).

    ``dose`` is the tuple (time, amt, rate, cmt, ss, ii) of 1-D arrays (one subject's row of a
    `DoseTable`). ``has_infusion``/``has_ss`` (static) may be set False when no dose is an
    infusion / steady-state dose, which skips that work. Use under ``jax.grad``/``jax.vmap``.
    """
    if method == "exact":
        y, status = solve_exact(model, p, dose, obs_t, obs_after_dose, has_infusion, has_ss)
    else:
        y, status = solve_ode(model, p, dose, obs_t, obs_after_dose, solver, has_infusion, has_ss)
    outs = model.evaluate_outputs(y, p)
    finite = jnp.all(jnp.isfinite(y)) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in outs.values()]))
    status = jnp.where((status == _status.OK) & ~finite, _status.NONFINITE, status)
    return outs, y, status


@functools.lru_cache(maxsize=256)
def _batched(model: Model, method: str, obs_after_dose: bool, solver: SolverOptions,
             shared_times: bool, keep_states: bool, has_infusion: bool, has_ss: bool):
    def one(p, dose, obs_t):
        outs, y, status = solve_subject(model, p, dose, obs_t, method, obs_after_dose, solver,
                                        has_infusion, has_ss)
        return outs, (y if keep_states else None), status

    fn = jax.jit(jax.vmap(one, in_axes=(0, 0, None if shared_times else 0)))
    _BUILT.append(fn)
    return fn


def compile_count() -> int:
    """Number of compiled executables held by the engine (for recompilation tests)."""
    return sum(f._cache_size() for f in _BUILT)


def default_chunk_size() -> int:
    """Subjects per compiled batch when not given: 512 on CPU (the per-subject cost is lowest at
    512–1024 there; larger batches leave the cache), 65,536 on a GPU/TPU, which needs wide
    batches to fill its cores (``benchmarks/README.md`` has both measurements)."""
    import jax
    return 512 if jax.default_backend() == "cpu" else 65536


def _bucket(n: int, chunk_size: int) -> int:
    """Batch size: the smallest power of two >= n (at least 8), capped at ``chunk_size``."""
    b = 8
    while b < n:
        b *= 2
    return min(b, chunk_size)


def _as_params(model: Model, params, n_hint: int | None):
    if isinstance(params, xr.Dataset):
        params = {k: params[k].values for k in model.parameter_names if k in params}
    if not isinstance(params, Mapping):
        raise SpecError("parameters", "must be a mapping of parameter name to value(s) or an xarray Dataset")
    lengths = {np.size(v) for v in params.values() if np.ndim(v) == 1}
    if len(lengths) > 1:
        raise SpecError("parameters", f"parameter arrays have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else (n_hint or 1)
    if n_hint is not None and n_hint != n and lengths:
        raise SpecError("parameters", f"{n} subjects in parameters but {n_hint} in regimen/times")
    return model.validate_params(params, n=n), n


def _check_times(times, n):
    t = np.asarray(times, dtype=np.float64)
    if t.ndim not in (1, 2) or t.shape[-1] == 0:
        raise SpecError("times", "observation times must be a non-empty 1-D (shared) or 2-D "
                                 "(subject × time) array")
    if not np.all(np.isfinite(t)):
        raise SpecError("times", "observation times must be finite")
    if np.any(t < 0):
        raise SpecError("times", "observation times must be >= 0 h")
    if np.any(np.diff(t, axis=-1) <= 0):
        raise SpecError("times", "observation times must be strictly increasing")
    if t.ndim == 2 and t.shape[0] != n:
        raise SpecError("times", f"{t.shape[0]} rows of observation times for {n} subjects")
    return t


def simulate(model: Model | str, params, regimen: Regimen | Sequence[Regimen] | DoseTable, times, *,
             method: str = "auto", solver: SolverOptions | None = None, chunk_size: int | None = None,
             obs_after_dose: bool = False, covariates: Mapping | None = None,
             keep_states: bool = False, subject: np.ndarray | None = None) -> xr.Dataset:
    """Simulate ``model`` for N subjects.

    Parameters
    ----------
    model : a `Model` or a built-in name (``"2cmt_oral"``).
    params : ``{name: scalar or (N,) array}`` or an xarray Dataset over ``subject`` (a cohort).
    regimen : one `Regimen` for everyone, one per subject, or a `DoseTable`.
    times : observation times in h, shared ``(T,)`` or per subject ``(N, T)``, strictly increasing.
    method : ``"exact"`` (linear models), ``"ode"``, or ``"auto"`` (exact when the model is linear).
    solver : `SolverOptions` for the ODE path.
    chunk_size : subjects per compiled batch (bounds memory); default `default_chunk_size()`.
    obs_after_dose : an observation at exactly a dose time is pre-dose by default (mrgsolve's
        default ``obsaf = FALSE``; NONMEM when the observation record precedes the dose record),
        which is what a trough needs; set True to see the post-dose value.
    covariates : per-subject values for doses given ``per`` a covariate (mg/kg × WT).
    keep_states : also return ``amount[subject, time, state]``.
    subject : subject identifiers for the ``subject`` coordinate (default 0..N-1).

    Returns
    -------
    xarray.Dataset with one variable per model output (subject × time, ``units`` and
    ``long_name`` attributes), ``status`` per subject (0 = ok, see ``flag_meanings``) and,
    optionally, ``amount``. One failing subject never aborts the batch: its status says why.
    On the exact path, subjects with (nearly) repeated eigenvalues (relative gap < 1e-5, e.g.
    KA = CL/V) are re-solved with the ODE path; ``attrs["ode_fallback"]`` counts them.
    """
    if isinstance(model, str):
        model = get_model(model)
    solver = solver or SolverOptions()
    if method == "auto":
        method = "exact" if model.is_linear else "ode"
    if method not in ("exact", "ode"):
        raise SpecError("method", f"must be auto, exact or ode, got {method!r}")
    if method == "exact" and not model.is_linear:
        raise SpecError("method", f"model {model.name!r} is not linear; use method='ode'")
    if chunk_size is None:
        chunk_size = default_chunk_size()
    if not (isinstance(chunk_size, int) and chunk_size > 0):
        raise SpecError("chunk_size", f"must be a positive integer, got {chunk_size!r}")

    n_hint = None
    if isinstance(regimen, DoseTable) and regimen.n_subjects > 1:
        n_hint = regimen.n_subjects
    elif isinstance(regimen, Sequence) and not isinstance(regimen, Regimen):
        n_hint = len(regimen)
    elif np.ndim(times) == 2:
        n_hint = np.shape(times)[0]
    if covariates is not None and n_hint is None:
        n_hint = len(next(iter(covariates.values())))
    p, n = _as_params(model, params, n_hint)
    t = _check_times(times, n)
    table = regimen if isinstance(regimen, DoseTable) else dose_table(regimen, model, n, covariates)
    table = table.broadcast(n)

    shared = t.ndim == 1
    fn = _batched(model, method, bool(obs_after_dose), solver, shared, bool(keep_states),
                  bool(np.any(table.rate > 0)), bool(np.any(table.ss > 0)))
    size = _bucket(n, chunk_size)
    T = t.shape[-1]
    outs = {o: np.empty((n, T)) for o in model.output_names}
    states = np.empty((n, T, model.n_states)) if keep_states else None
    status = np.empty(n, dtype=np.int8)
    for start in range(0, n, size):
        stop = min(start + size, n)
        idx = np.arange(start, start + size)
        idx = np.minimum(idx, stop - 1)  # pad with copies of the last subject (valid input)
        pc = {k: jnp.asarray(v[idx]) for k, v in p.items()}
        dc = tuple(jnp.asarray(getattr(table, f)[idx]) for f in ("time", "amt", "rate", "cmt", "ss", "ii"))
        tc = jnp.asarray(t if shared else t[idx])
        o, y, s = fn(pc, dc, tc)
        m = stop - start
        for k in outs:
            outs[k][start:stop] = np.asarray(o[k])[:m]
        if keep_states:
            states[start:stop] = np.asarray(y)[:m]
        status[start:stop] = np.asarray(s)[:m]
    bad = np.flatnonzero(status == _status.ILL_CONDITIONED) if method == "exact" else np.empty(0, int)
    if bad.size:
        # (nearly) repeated eigenvalues, e.g. KA = CL/V: Sylvester's formula has no digits left,
        # the ODE path has no such singularity; re-solve just these subjects with it
        sub = simulate(model, {k: v[bad] for k, v in p.items()}, table.take(bad),
                       t if shared else t[bad], method="ode", solver=solver, chunk_size=chunk_size,
                       obs_after_dose=obs_after_dose, keep_states=keep_states)
        for k in outs:
            outs[k][bad] = sub[k].values
        if keep_states:
            states[bad] = sub["amount"].values
        status[bad] = sub["status"].values
    ds = _to_dataset(model, outs, states, status, t, subject, method)
    ds.attrs["ode_fallback"] = int(bad.size)
    return ds


def _to_dataset(model, outs, states, status, t, subject, method) -> xr.Dataset:
    n = status.shape[0]
    tdim = "time" if t.ndim == 1 else "obs"
    coords = {"subject": np.arange(n) if subject is None else np.asarray(subject)}
    data = {}
    if t.ndim == 1:
        coords["time"] = ("time", t, {"units": "h", "long_name": "time after first dose"})
    else:
        data["time"] = (("subject", "obs"), t, {"units": "h", "long_name": "observation time"})
    for o in model.outputs:
        data[o.name] = (("subject", tdim), outs[o.name], {"units": o.units, "long_name": o.long_name})
    if states is not None:
        coords["state"] = list(model.states)
        data["amount"] = (("subject", tdim, "state"), states,
                          {"units": ", ".join(model.state_units), "long_name": "state values"})
    data["status"] = (("subject",), status, {
        "long_name": "simulation status", "flag_values": list(_status.MEANINGS),
        "flag_meanings": " ".join(v.replace(" ", "_") for v in _status.MEANINGS.values())})
    return xr.Dataset(data, coords=coords, attrs={"model": model.name, "method": method})
