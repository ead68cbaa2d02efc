"""`simulate`: N subjects × regimens × observation times -> xarray Dataset.

Compiled code is reused across calls: every shape that reaches the compiled solver is padded to a
bucket (`insilico.batching.bucket_size`, the next power of two above a floor), so neither new
parameter values, nor a new N, nor a schedule with another number of doses or observation times
recompiles while it stays in the same bucket:

* subjects: chunks of ``chunk_size`` (memory is bounded whatever N is), each padded to a bucket of
  at least `MIN_SUBJECTS` rows (copies of the chunk's last subject);
* dose slots: at least `MIN_DOSE_SLOTS`, padded with inert slots (`DoseTable.padded`: amount 0 at
  the time and compartment of a dose the subject has anyway);
* observation times: at least `MIN_TIME_SLOTS`, in `TIME_BUCKETS_PER_OCTAVE` steps per power of two
  (at most 25 % extra times: the ODE path takes a scan step per time), padded with copies of each
  subject's last time (zero-length intervals on the ODE path, independent evaluations on the
  exact path).

Padding rows and times are dropped from the result; results equal an unpadded solve (tested: bit
for bit on the ODE path, ≤ 1e-14 relative on the exact path, where a sum over dose records may
round differently with more zero terms). So there is at most one compilation per model, method, solver options,
static dosing flags (infusion, steady state) and combination of the three buckets.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from insilico import exported
from insilico.batching import bucket_size
from insilico.dosing import DoseTable, NonmemData, Regimen, dose_table, event_slots
from insilico.engine import _status
from insilico.engine._exact import solve_exact
from insilico.engine._ode import SolverOptions, solve_ode
from insilico.engine._schedule import ParameterSchedule, check_interpolation
from insilico.engine._varying import outputs_varying, solve_varying
from insilico.errors import SpecError
from insilico.models import Model, get_model

__all__ = ["simulate", "solve_subject", "compile_count", "SolverOptions", "MIN_SUBJECTS", "MIN_DOSE_SLOTS",
           "MIN_TIME_SLOTS", "TIME_BUCKETS_PER_OCTAVE", "MIN_CHANGE_SLOTS"]

MIN_SUBJECTS = 8
"""Smallest padded batch of subjects (bounded above by ``chunk_size``)."""
MIN_DOSE_SLOTS = 8
"""Smallest padded number of dose slots per subject (so 1 to 8 doses share one compiled shape)."""
MIN_TIME_SLOTS = 16
"""Smallest padded number of observation times per subject (1 to 16 share one compiled shape)."""
TIME_BUCKETS_PER_OCTAVE = 4
"""Padded time counts between two powers of two (16, 20, 24, 28, 32, 40, …, 160, 192, 224, 256, …)."""
MIN_CHANGE_SLOTS = 4
"""Smallest padded number of parameter change times per subject (time-varying parameters, occasions)."""

_BUILT: list = []


def solve_subject(model: Model, p: Mapping, dose, obs_t, method: str = "exact",
                  obs_after_dose: bool = False, solver: SolverOptions = SolverOptions(),
                  has_infusion: bool = True, has_ss: bool = True, change_t=None, nocb: bool = False):
    """Pure, differentiable single-subject solve: returns (outputs dict, states[T, n], status).

    ``dose`` is the tuple (time, amt, rate, cmt, ss, ii) of 1-D arrays (one subject's row of a
    `DoseTable`). ``has_infusion``/``has_ss`` (static; ``has_ss``: `insilico.dosing.event_slots` of the table,
    the dose slots carrying SS or reset codes) may be set False/0 when no dose is an
    infusion / steady-state dose, which skips that work. Use under ``jax.grad``/``jax.vmap``.

    Time-varying parameters: with ``change_t`` (C,) sorted change times in h, each ``p[name]`` is a
    (C+1,) array, value ``j`` in effect from change ``j−1`` to change ``j``; ``nocb`` (static) says
    which value a point in time exactly at a change takes (`insilico.engine._varying`). Without
    ``change_t`` (the default) nothing of that machinery is traced.
    """
    if change_t is not None:
        y, status = solve_varying(model, p, change_t, dose, obs_t, obs_after_dose, method, solver,
                                  has_infusion, has_ss, nocb)
        outs = outputs_varying(model, y, p, change_t, obs_t, nocb)
    elif method == "exact":
        y, status = solve_exact(model, p, dose, obs_t, obs_after_dose, has_infusion, has_ss)
        outs = model.evaluate_outputs(y, p)
    else:
        y, status = solve_ode(model, p, dose, obs_t, obs_after_dose, solver, has_infusion, has_ss)
        outs = model.evaluate_outputs(y, p)
    finite = jnp.all(jnp.isfinite(y)) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in outs.values()]))
    status = jnp.where((status == _status.OK) & ~finite, _status.NONFINITE, status)
    return outs, y, status


@functools.lru_cache(maxsize=256)
def _batched(model: Model, method: str, obs_after_dose: bool, solver: SolverOptions,
             shared_times: bool, keep_states: bool, has_infusion: bool, has_ss: bool, varying: str | None = None):
    """Jitted, vmapped `solve_subject`; ``varying`` (``None``, ``"locf"``, ``"nocb"``): the subjects'
    parameters change at times given as a fourth argument (N, C). The traced program is kept across
    processes (`insilico.exported.persistent`, keyed by `insilico.exported.fingerprint` of the model,
    method, solver options and static flags) when the model can be fingerprinted."""
    def one(p, dose, obs_t, change_t=None):
        outs, y, status = solve_subject(model, p, dose, obs_t, method, obs_after_dose, solver,
                                        has_infusion, has_ss, change_t, varying == "nocb")
        return outs, (y if keep_states else None), status

    if varying:
        fn = functools.partial(_micro_batched, one, shared_times)
    else:
        fn = jax.vmap(one, in_axes=(0, 0, None if shared_times else 0))
    # kept traced across processes when everything the kernel closes over has a fingerprint
    # (built-in and text-equation models; a model of user Python code is jitted in each process)
    key = exported.fingerprint((model, method, obs_after_dose, solver, shared_times, keep_states, has_infusion,
                                has_ss, varying))
    fn = exported.persistent(fn, "engine", key) if key else jax.jit(fn)
    _BUILT.append(fn)
    return fn


MICRO_BATCH = 8
"""Subjects per vmapped step of the time-varying solve (`_micro_batched`)."""


def _micro_batched(one, shared_times: bool, p, dose, obs_t, change_t):
    """``one`` over the subjects in fixed groups of `MICRO_BATCH` (``jax.lax.map``), padded with copies
    of the last subject. The time-varying solve is a scan whose per-step arrays are as small as the
    batch, and XLA's CPU code for an elementwise function (exp) depends on the array size; with one
    compiled group shape each subject's numbers are identical whatever the chunk it is solved in."""
    per_subject = (p, dose, change_t) if shared_times else (p, dose, obs_t, change_t)
    n = jax.tree_util.tree_leaves(per_subject)[0].shape[0]
    pad = -n % MICRO_BATCH
    if pad:
        per_subject = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]),
                                             per_subject)
    if shared_times:
        out = jax.lax.map(lambda a: one(a[0], a[1], obs_t, a[2]), per_subject, batch_size=MICRO_BATCH)
    else:
        out = jax.lax.map(lambda a: one(*a), per_subject, batch_size=MICRO_BATCH)
    return jax.tree_util.tree_map(lambda a: a[:n], out)


def compile_count() -> int:
    """Number of compiled executables held by the engine (for recompilation tests)."""
    return sum(f.cache_size() if hasattr(f, "cache_size") else f._cache_size() for f in _BUILT)


def default_chunk_size() -> int:
    """Subjects per compiled batch when not given: 512 on CPU (the per-subject cost is lowest at
    512–1024 there; larger batches leave the cache), 65,536 on a GPU/TPU, which needs wide
    batches to fill its cores (``benchmarks/README.md`` has both measurements)."""
    return 512 if jax.default_backend() == "cpu" else 65536


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------

def _as_params(model: Model, params, n_hint: int | None):
    if isinstance(params, xr.Dataset):
        params = {k: params[k].values for k in model.parameter_names if k in params}
    if not isinstance(params, Mapping):
        raise SpecError("parameters", "must be a mapping of parameter name to value(s), a pandas DataFrame "
                                      "(one row per subject) or an xarray Dataset")
    lengths = {np.size(v) for v in params.values() if np.ndim(v) == 1}
    if len(lengths) > 1:
        raise SpecError("parameters", f"parameter arrays have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else (n_hint or 1)
    if n_hint is not None and n_hint != n and lengths:
        raise SpecError("parameters", f"{n} subjects in parameters but {n_hint} in regimen/times")
    return model.validate_params(params, n=n), n


def _id_values(values) -> np.ndarray:
    """Subject IDs as numbers when every one is a number (``"7"`` and ``7`` match), else as given."""
    num = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce")
    return num.to_numpy(float) if num.notna().all() else np.asarray(values, dtype=object)


def _some(values, k: int = 5) -> str:
    values = list(values)
    return ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:k]) + (
        f" and {len(values) - k} more" if len(values) > k else "")


def _frame_ids(frame: pd.DataFrame):
    """The ``ID`` column of a parameter table (name matched case-insensitively), or None."""
    cols = [c for c in frame.columns if str(c).strip().upper() == "ID"]
    if len(cols) > 1:
        raise SpecError("parameters.ID", f"the parameter table has {len(cols)} ID columns {cols}; keep one")
    if not cols:
        return None, None
    ids = frame[cols[0]]
    missing = ids.isna().to_numpy() | np.array([str(v).strip() in ("", ".") for v in ids])
    if missing.any():
        raise SpecError("parameters.ID", f"row {int(np.flatnonzero(missing)[0]) + 1}: ID is missing")
    dup = ids.duplicated().to_numpy()
    if dup.any():
        raise SpecError("parameters.ID", f"ID {ids.iloc[int(np.flatnonzero(dup)[0])]!r} appears in more than one "
                                         "row; give one row per subject")
    return cols[0], ids.to_numpy()


def _frame_columns(model: Model, frame: pd.DataFrame, id_col) -> dict:
    """Parameter columns of ``frame`` as float arrays; SpecError for a missing or misspelt
    parameter column and for a value that is not a finite number (naming row and column)."""
    names = list(model.parameter_names)
    upper = {n.upper(): n for n in names}
    for c in frame.columns:
        if c != id_col and c not in names and str(c).strip().upper() in upper:
            raise SpecError(f"parameters.{c}", f"not a parameter of model {model.name!r}; did you mean "
                                               f"{upper[str(c).strip().upper()]!r}? (names are case-sensitive)")
    missing = [p.name for p in model.parameters if p.default is None and p.name not in frame.columns]
    if missing:
        raise SpecError(f"parameters.{missing[0]}", f"column missing from the parameter table (model "
                                                    f"{model.name!r} needs {missing}; the table has "
                                                    f"{[str(c) for c in frame.columns]})")
    out = {}
    for name in names:
        if name not in frame.columns:
            continue
        raw = frame[name]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(float)
        bad = ~np.isfinite(num)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SpecError(f"parameters.{name}", f"row {row + 1}: must be a finite number, got {raw.iloc[row]!r}")
        out[name] = num
    return out


def _frame_params(model: Model, frame: pd.DataFrame, data_ids: np.ndarray | None):
    """Per-subject parameters from a table with one row per subject (mrgsolve ``idata``): columns
    named as the model's parameters (others, such as covariates, are ignored; parameters with a
    default may be left out), and optionally an ``ID`` column. With NONMEM data, rows are matched
    to the data's IDs by ``ID`` (every data ID needs exactly one row, and every row a data ID), or
    without an ``ID`` column taken in the data's subject order. Returns (params, subject IDs or None)."""
    if frame.shape[0] == 0:
        raise SpecError("parameters", "the parameter table has no rows")
    id_col, ids = _frame_ids(frame)
    values = _frame_columns(model, frame, id_col)
    if data_ids is None:
        return values, ids
    if ids is None:
        if frame.shape[0] != len(data_ids):
            raise SpecError("parameters", f"{frame.shape[0]} rows of parameters for {len(data_ids)} subjects in the "
                                          "data; add an ID column to match rows to the data's IDs")
        return values, None
    want, have = _id_values(data_ids), _id_values(ids)
    pos = pd.Index(have).get_indexer(pd.Index(want))
    if (pos < 0).any():
        raise SpecError("parameters.ID", f"IDs in the data without a row in the parameter table: "
                                         f"{_some(np.asarray(data_ids)[pos < 0])}")
    extra = np.setdiff1d(np.arange(len(ids)), pos)
    if extra.size:
        raise SpecError("parameters.ID", f"IDs in the parameter table that are not in the data: {_some(ids[extra])}"
                                         "; select the data's subjects first (frame[frame.ID.isin(data.ids)])")
    return {k: v[pos] for k, v in values.items()}, None


def _named_column(frame: pd.DataFrame, name: str, where: str):
    """The column of ``frame`` named ``name`` case-insensitively, or None; SpecError for two."""
    cols = [c for c in frame.columns if str(c).strip().upper() == name]
    if len(cols) > 1:
        raise SpecError(where, f"the table has {len(cols)} {name} columns {cols}; keep one")
    return cols[0] if cols else None


def _subject_rows(ids: np.ndarray | None, n_rows: int, data_ids: np.ndarray | None, where: str):
    """Row indices of each subject of a long table (rows of one ID need not be contiguous): in the data's
    subject order with NONMEM data, else in order of first appearance. Returns (rows per subject, IDs or None)."""
    if ids is None:
        if data_ids is not None and len(data_ids) != 1:
            raise SpecError(f"{where}.ID", f"the table has no ID column but the data has {len(data_ids)} subjects")
        return [np.arange(n_rows)], None
    key = _id_values(ids)
    order = pd.unique(pd.Series(key, dtype=object))
    groups = {k: np.flatnonzero(pd.Series(key, dtype=object) == k) for k in order}
    if data_ids is None:
        return [groups[k] for k in order], np.asarray([ids[g[0]] for g in groups.values()])
    want = _id_values(data_ids)
    missing = [d for d, k in zip(data_ids, want) if k not in groups]
    if missing:
        raise SpecError(f"{where}.ID", f"IDs in the data without rows in the table: {_some(missing)}")
    extra = set(order) - set(want.tolist())
    if extra:
        raise SpecError(f"{where}.ID", f"IDs in the table that are not in the data: {_some(sorted(extra, key=str))}")
    return [groups[k] for k in want], None


def _frame_schedule(model: Model, frame: pd.DataFrame, data_ids, interpolation: str):
    """Time-varying parameters from a long table (mrgsolve-style): columns ``TIME`` (h), optional ``ID``
    and the model's parameters, one row per subject and time. Returns (schedule, subject IDs or None)."""
    tcol = _named_column(frame, "TIME", "parameters.TIME")
    id_col = _named_column(frame, "ID", "parameters.ID")
    t = pd.to_numeric(frame[tcol], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SpecError("parameters.TIME", f"row {row + 1}: must be a finite time >= 0 h, "
                                           f"got {frame[tcol].iloc[row]!r}")
    values = _frame_columns(model, frame.drop(columns=[tcol]), id_col)
    rows, ids = _subject_rows(None if id_col is None else frame[id_col].to_numpy(), len(frame), data_ids,
                              "parameters")
    sched = ParameterSchedule.from_records([t[r] for r in rows], {k: [v[r] for r in rows] for k, v in values.items()},
                                           interpolation, where="parameters")
    return sched, ids


def _data_schedule(model: Model, data: NonmemData, interpolation: str) -> ParameterSchedule | None:
    """Columns of NONMEM data named as model parameters whose value changes within an ID, as a schedule
    over every record of each subject (``interpolation``); None when there are none."""
    names = [c for c in data.varying if c in model.parameter_names]
    if not names:
        return None
    if data.covariate_records is None:
        raise SpecError("data", f"the columns {names} change within an ID but the data carry no per-record values "
                                "(NonmemData.covariate_records); read the data with insilico.dosing.read_nonmem")
    rec = data.covariate_records
    for c in names:
        num = pd.to_numeric(rec[c], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(num)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SpecError(f"data.{c}", f"row {row + 1}: a time-varying parameter needs a finite number on every "
                                         f"record, got {rec[c].iloc[row]!r}")
    rows, _ = _subject_rows(rec["ID"].to_numpy(), len(rec), data.ids, "data")
    t = rec["TIME"].to_numpy(float)
    return ParameterSchedule.from_records([t[r] for r in rows],
                                          {c: [rec[c].to_numpy(float)[r] for r in rows] for c in names},
                                          interpolation, where="data")


def _per_occasion(model: Model, params):
    """Split ``params`` into (parameters, {P: (N, K) values per occasion}, occasion labels): variables
    ``P_occ`` over ``occasion`` of a cohort Dataset (labels: its ``occasion`` coordinate) or 2-D
    ``P_occ`` entries of a mapping (labels 1..K)."""
    names = set(model.parameter_names)
    if isinstance(params, xr.Dataset):
        occ = {k[:-4]: params[k].transpose("subject", "occasion").values for k in params.data_vars
               if k.endswith("_occ") and k[:-4] in names and "occasion" in params[k].dims}
        labels = params["occasion"].values if occ and "occasion" in params.coords else None
        return {k: params[k].values for k in model.parameter_names if k in params}, occ, labels
    if isinstance(params, Mapping):
        occ = {k[:-4]: np.asarray(v, float) for k, v in params.items()
               if isinstance(k, str) and k.endswith("_occ") and k[:-4] in names}
        for k, v in occ.items():
            if v.ndim != 2:
                raise SpecError(f"parameters.{k}_occ", f"must be a (subject, occasion) array, got shape {v.shape}")
        rest = {k: v for k, v in params.items() if not (isinstance(k, str) and k[:-4] in occ and k.endswith("_occ"))}
        return rest, occ, None
    return params, {}, None


def _occasion_schedule(per_occ: dict, labels, occasions, data: NonmemData | None, interpolation: str):
    """Inter-occasion variability: occasion k of each subject uses ``per_occ[P][:, k]``, occasions by start
    times (``occasions``) or by the data's ``OCC`` column (its values are occasion labels). None without IOV."""
    occ_col = None
    if data is not None and data.covariate_records is not None:
        occ_col = _named_column(data.covariate_records, "OCC", "data.OCC")
    if occasions is not None and occ_col is not None:
        raise SpecError("occasions", "give occasion start times or an OCC column in the data, not both")
    if occasions is None and occ_col is None:
        if per_occ:
            raise SpecError("occasions", f"the parameters have per-occasion values ({sorted(per_occ)} over occasion: "
                                         "inter-occasion variability) but no occasions are defined; give "
                                         "occasions=[start times in h] or NONMEM data with an OCC column")
        return None
    if occasions is not None:
        return ParameterSchedule.from_occasions(per_occ, occasions)
    if not per_occ:
        return None     # an OCC column without per-occasion parameters is an ordinary covariate
    rec = data.covariate_records
    k_max = min(v.shape[1] for v in per_occ.values())
    labels = np.arange(1, k_max + 1) if labels is None else np.asarray(labels)[:k_max]
    occ = pd.to_numeric(rec[occ_col], errors="coerce").to_numpy(float)
    pos = pd.Index(labels.astype(float)).get_indexer(occ)
    if (pos < 0).any():
        row = int(np.flatnonzero(pos < 0)[0])
        raise SpecError("data.OCC", f"row {row + 1}: OCC {rec[occ_col].iloc[row]!r} is not one of the {k_max} "
                                    f"occasions of the parameters (labels {labels.tolist()})")
    rows, _ = _subject_rows(rec["ID"].to_numpy(), len(rec), data.ids, "data")
    t = rec["TIME"].to_numpy(float)
    return ParameterSchedule.from_records(
        [t[r] for r in rows], {k: [v[s, pos[r]] for s, r in enumerate(rows)] for k, v in per_occ.items()},
        interpolation, where="data")


def _combine(model: Model, p: dict, schedules) -> tuple[dict, ParameterSchedule | None]:
    """One schedule from ``schedules`` (None entries skipped), completed with ``p``; its values checked
    against the parameters' constraints. Returns (p with each subject's first values, schedule or None)."""
    schedules = [x for x in schedules if x is not None]
    if not schedules:
        return p, None
    sched = schedules[0]
    for other in schedules[1:]:
        sched = sched.merged(other)
    n = len(next(iter(p.values())))
    if sched.n_subjects == 1 and n > 1:     # one table without ID: the same schedule for every subject
        sched = ParameterSchedule(np.repeat(sched.change_t, n, axis=0),
                                  {k: np.repeat(v, n, axis=0) for k, v in sched.values.items()}, sched.nocb)
    if sched.n_subjects != n:
        raise SpecError("parameters", f"{sched.n_subjects} subjects with time-varying parameters but {n} subjects")
    sched = sched.completed(p)
    model.validate_params({k: v.ravel() for k, v in sched.values.items()})
    return {k: v[:, 0].copy() for k, v in sched.values.items()}, sched


def _check_times(times, n):
    if times is None:
        raise SpecError("times", "observation times are required (or give NONMEM data as the regimen)")
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


def _check_compartments(model: Model, table: DoseTable) -> None:
    """Every dose slot names a state of ``model`` (a table built for another model may not)."""
    bad = (table.cmt < 0) | (table.cmt >= model.n_states)
    if bad.any():
        s, e = (int(i[0]) for i in np.nonzero(bad))
        raise SpecError("regimen.cmt", f"subject {s}, dose slot {e}: compartment index {int(table.cmt[s, e])} is "
                                       f"not a state of model {model.name!r} (0..{model.n_states - 1}); was the "
                                       "dose table built for another model?")


def _pad_times(t: np.ndarray, size: int) -> np.ndarray:
    """``t`` (T,) or (N, T) padded to ``size`` columns with copies of the last time."""
    extra = size - t.shape[-1]
    return np.concatenate([t, np.repeat(t[..., -1:], extra, axis=-1)], axis=-1) if extra else t


# ------------------------------------------------------------------------------------------------
# simulate
# ------------------------------------------------------------------------------------------------

def simulate(model: Model | str, params, regimen: Regimen | Sequence[Regimen] | DoseTable | NonmemData,
             times=None, *, method: str = "auto", solver: SolverOptions | None = None,
             chunk_size: int | None = None, obs_after_dose: bool = False, covariates: Mapping | None = None,
             keep_states: bool = False, subject: np.ndarray | None = None,
             covariate_interpolation: str = "locf", occasions=None) -> xr.Dataset:
    """Simulate ``model`` for N subjects.

    Parameters
    ----------
    model : a `Model` or a built-in name (``"2cmt_oral"``).
    params : ``{name: scalar or (N,) array}``; an xarray Dataset over ``subject`` (a cohort); or a
        pandas DataFrame with one row per subject (mrgsolve ``idata``): columns named as the
        model's parameters (other columns are ignored; parameters with a default may be left out)
        and an optional ``ID`` column, which with NONMEM data matches rows to the data's IDs
        (every data ID needs exactly one row and every row a data ID) and otherwise labels the
        subjects. Without ``ID`` rows are taken in subject order. Parameters that change over
        time (mrgsolve-style time-varying parameters): a DataFrame with a ``TIME`` column (h), one
        row per subject and time (rows sorted by TIME within each ID); values between rows
        follow ``covariate_interpolation``. Inter-occasion variability: variables ``P_occ`` over
        ``occasion`` (a cohort with an ``iov`` section) or 2-D ``{"P_occ": (N, K)}`` entries give
        parameter ``P`` in occasion ``k``; they need ``occasions`` or an ``OCC`` column in the data.
    regimen : one `Regimen` for everyone, one per subject, a `DoseTable`, or `NonmemData`
        (`insilico.dosing.read_nonmem`, read for this model): each subject's doses, and by
        default its record times (EVID 0 and 2) as observation times.
    times : observation times in h, shared ``(T,)`` or per subject ``(N, T)``, strictly increasing.
        Required unless ``regimen`` is `NonmemData`; then, when given, they are a prediction grid
        and the data's observations are returned alongside (``dv``, ``dv_time``).
    method : ``"exact"`` (linear models), ``"ode"``, or ``"auto"`` (exact when the model is linear).
    solver : `SolverOptions` for the ODE path.
    chunk_size : subjects per compiled batch (bounds memory); default `default_chunk_size()`.
    obs_after_dose : an observation at exactly a dose time is pre-dose by default (mrgsolve's
        default ``obsaf = FALSE``; NONMEM when the observation record precedes the dose record),
        which is what a trough needs; set True to see the post-dose value.
    covariates : per-subject values for doses given ``per`` a covariate (mg/kg × WT); only with
        `Regimen` inputs (a dose table and NONMEM data hold amounts in mg already).
    keep_states : also return ``amount[subject, time, state]``.
    subject : subject identifiers for the ``subject`` coordinate (default: the data's or the
        parameter table's IDs, else 0..N-1).
    covariate_interpolation : ``"locf"`` (default: a record's value holds from its time to the
        next record) or ``"nocb"`` (a record's value holds back to the previous record, as NONMEM
        and mrgsolve's default ``nocb = TRUE`` do); for a ``TIME`` parameter table and for NONMEM
        data columns named as model parameters that change within an ID (those columns then give
        the parameter, over ``params``). Definitions: `insilico.engine.ParameterSchedule`.
    occasions : occasion start times in h, strictly increasing (``[0, 168, 336]``): occasion k runs
        from ``occasions[k]`` to the next start (the first also before its start) and uses
        ``P_occ[:, k]``. With NONMEM data an ``OCC`` column may define the occasions instead: its
        value on each record is the occasion label (the cohort's ``occasion`` coordinate, else
        1..K), interpolated between records like a covariate. A point exactly at an occasion start
        (a dose, an observation) belongs to the new occasion, unless the call also has time-varying
        covariates with ``"nocb"``, whose convention then holds for every change.

    Returns
    -------
    xarray.Dataset with one variable per model output (subject × time, ``units`` and
    ``long_name`` attributes), ``status`` per subject (0 = ok, see ``flag_meanings``) and,
    optionally, ``amount``. One failing subject never aborts the batch: its status says why.
    With per-subject times the time axis is ``obs`` and ``time`` is a (subject, obs) variable.
    ``attrs["sampling"]`` says what the times are: ``"grid"`` (times the caller asked for) or
    ``"records"`` (a NONMEM data set's record times; padding of subjects with fewer records is
    NaN in ``time`` and in every output). With NONMEM data the observations are included:
    ``dv`` (NaN where none: EVID 2, MDV 1, missing DV) on the records' axis (``obs``), or, with
    a prediction grid, on a ``record`` axis with its times in ``dv_time``.
    On the exact path, subjects with (nearly) repeated eigenvalues (relative gap < 1e-5, e.g.
    KA = CL/V) are re-solved with the ODE path; ``attrs["ode_fallback"]`` counts them.
    """
    model = get_model(model) if isinstance(model, str) else model
    method = _resolve_method(model, method)
    solver = solver or SolverOptions()
    if chunk_size is None:
        chunk_size = default_chunk_size()
    if not (isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size > 0):
        raise SpecError("chunk_size", f"must be a positive integer, got {chunk_size!r}")

    data = regimen if isinstance(regimen, NonmemData) else None
    if data is not None:
        regimen = data.doses
        if subject is None:
            subject = data.ids
    if covariates is not None and isinstance(regimen, DoseTable):
        raise SpecError("covariates", "doses of a dose table or NONMEM data are in mg already; covariates scale "
                                      "only doses of a Regimen given per a covariate")
    on_records = data is not None and times is None
    if on_records:
        times = data.times
    check_interpolation(covariate_interpolation)
    schedules = []
    if isinstance(params, pd.DataFrame) and _named_column(params, "TIME", "parameters.TIME") is not None:
        sched, frame_ids = _frame_schedule(model, params, None if data is None else data.ids,
                                           covariate_interpolation)
        params = {k: v[:, 0] for k, v in sched.values.items()}
        schedules.append(sched)
        if subject is None:
            subject = frame_ids
    elif isinstance(params, pd.DataFrame):
        params, frame_ids = _frame_params(model, params, None if data is None else data.ids)
        if subject is None:
            subject = frame_ids
    params, per_occ, occ_labels = _per_occasion(model, params)
    if data is not None:
        schedules.append(_data_schedule(model, data, covariate_interpolation))
    schedules.append(_occasion_schedule(per_occ, occ_labels, occasions, data, covariate_interpolation))
    if isinstance(params, Mapping):   # parameters given only over time still need a first value here
        firsts = {k: v[:, 0] for x in schedules if x is not None for k, v in x.values.items()}
        params = {**firsts, **params}

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
    p, schedule = _combine(model, p, schedules)
    t = _check_times(times, n)
    table = regimen if isinstance(regimen, DoseTable) else dose_table(regimen, model, n, covariates)
    table = table.broadcast(n)
    _check_compartments(model, table)

    outs, states, status, fallback = _solve_schedule(model, p, table, t, method, solver, chunk_size,
                                                     obs_after_dose, keep_states, schedule)
    if on_records:
        t = np.where(data.observed, t, np.nan)
        outs = {k: np.where(data.observed, v, np.nan) for k, v in outs.items()}
        if keep_states:
            states = np.where(data.observed[..., None], states, np.nan)
    ds = _to_dataset(model, outs, states, status, t, subject, method)
    ds.attrs["ode_fallback"] = fallback
    ds.attrs["sampling"] = "records" if on_records else "grid"
    if data is not None:
        ds = _with_observations(ds, data, on_records)
    return ds


def _resolve_method(model: Model, method: str) -> str:
    if method == "auto":
        return "exact" if model.is_linear else "ode"
    if method not in ("exact", "ode"):
        raise SpecError("method", f"must be auto, exact or ode, got {method!r}")
    if method == "exact" and not model.is_linear:
        raise SpecError("method", f"model {model.name!r} is not linear; use method='ode'")
    return method


def _solve_schedule(model, p, table: DoseTable, t, method, solver, chunk_size, obs_after_dose, keep_states,
                    schedule: ParameterSchedule | None):
    """`_solve` with parameters that may change over time: subjects whose parameters change go through the
    time-varying solve, the others (and every subject without a schedule) through the usual one."""
    vary = np.zeros(len(table.time), bool) if schedule is None else schedule.varies()
    if not vary.any():
        return _solve(model, p, table, t, method, solver, chunk_size, obs_after_dose, keep_states)
    if vary.all():
        return _solve(model, p, table, t, method, solver, chunk_size, obs_after_dose, keep_states, schedule)
    n, T = len(table.time), t.shape[-1]
    outs = {o: np.empty((n, T)) for o in model.output_names}
    states = np.empty((n, T, model.n_states)) if keep_states else None
    status, fallback = np.empty(n, dtype=np.int8), 0
    for idx, sched in ((np.flatnonzero(~vary), None), (np.flatnonzero(vary), schedule.take(vary))):
        o, y, st, fb = _solve(model, {k: v[idx] for k, v in p.items()}, table.take(idx), t if t.ndim == 1 else t[idx],
                              method, solver, chunk_size, obs_after_dose, keep_states, sched)
        for k in outs:
            outs[k][idx] = o[k]
        if keep_states:
            states[idx] = y
        status[idx], fallback = st, fallback + fb
    return outs, states, status, fallback


def _solve(model, p, table: DoseTable, t, method, solver, chunk_size, obs_after_dose, keep_states,
           schedule: ParameterSchedule | None = None):
    """Outputs {name: (N, T)}, states (N, T, n) or None, status (N,) and the number of subjects
    re-solved on the ODE path; shapes padded to buckets for the compiled call (module docstring).
    With ``schedule`` every subject's parameters are its values (N, C+1), C padded to a bucket."""
    n, T = len(table.time), t.shape[-1]
    shared = t.ndim == 1
    fn = _batched(model, method, bool(obs_after_dose), solver, shared, bool(keep_states),
                  bool(np.any(table.rate != 0)), event_slots(table.ss),
                  None if schedule is None else ("nocb" if schedule.nocb else "locf"))
    if schedule is not None:
        sched = schedule.padded(bucket_size(max(schedule.n_changes, 1), MIN_CHANGE_SLOTS))
        p, change_t = sched.values, sched.change_t
    size = bucket_size(n, MIN_SUBJECTS, chunk_size)
    padded = table.padded(bucket_size(table.n_events, MIN_DOSE_SLOTS))
    tp = _pad_times(t, bucket_size(T, MIN_TIME_SLOTS, per_octave=TIME_BUCKETS_PER_OCTAVE))
    outs = {o: np.empty((n, T)) for o in model.output_names}
    states = np.empty((n, T, model.n_states)) if keep_states else None
    status = np.empty(n, dtype=np.int8)
    for start in range(0, n, size):
        stop = min(start + size, n)
        idx = np.minimum(np.arange(start, start + size), stop - 1)  # pad with copies of the last subject
        # NumPy arrays straight to the compiled call: jnp.asarray would compile (or load) a small
        # conversion program per shape and dtype in every new process
        pc = {k: np.asarray(v[idx]) for k, v in p.items()}
        dc = tuple(np.asarray(getattr(padded, f)[idx]) for f in ("time", "amt", "rate", "cmt", "ss", "ii"))
        extra = () if schedule is None else (np.asarray(change_t[idx]),)
        o, y, s = fn(pc, dc, np.asarray(tp if shared else tp[idx]), *extra)
        m = stop - start
        for k in outs:
            outs[k][start:stop] = np.asarray(o[k])[:m, :T]
        if keep_states:
            states[start:stop] = np.asarray(y)[:m, :T]
        status[start:stop] = np.asarray(s)[:m]
    bad = np.flatnonzero(status == _status.ILL_CONDITIONED) if method == "exact" else np.empty(0, int)
    if bad.size:
        # (nearly) repeated eigenvalues, e.g. KA = CL/V: Sylvester's formula has no digits left,
        # the ODE path has no such singularity; re-solve just these subjects with it
        o, y, s, _ = _solve(model, {k: v[bad] for k, v in p.items()}, table.take(bad), t if shared else t[bad],
                            "ode", solver, chunk_size, obs_after_dose, keep_states,
                            None if schedule is None else schedule.take(bad))
        for k in outs:
            outs[k][bad] = o[k]
        if keep_states:
            states[bad] = y
        status[bad] = s
    return outs, states, status, int(bad.size)


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


def _with_observations(ds: xr.Dataset, data: NonmemData, on_records: bool) -> xr.Dataset:
    """``ds`` with the data's observations: ``dv`` over (subject, obs) when the outputs are at the
    record times, else ``dv`` and ``dv_time`` over (subject, record)."""
    dv = np.where(data.observed, data.dv, np.nan)
    attrs = {"long_name": "observed value (NONMEM DV)", "comment": "units as in the data set; NaN: no observation"}
    if on_records:
        return ds.assign(dv=(("subject", "obs"), dv, attrs))
    when = np.where(data.observed, data.times, np.nan)
    return ds.assign(dv=(("subject", "record"), dv, attrs),
                     dv_time=(("subject", "record"), when, {"units": "h", "long_name": "observation time"}))
