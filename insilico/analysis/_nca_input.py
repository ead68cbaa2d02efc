"""Input normalisation for NCA: everything becomes two float arrays ``(n_rows, n_times)``.

Rows are subjects (or any flattened combination of non-time dimensions), columns are samples
sorted by time. A missing sample is ``NaN`` in the concentration (and, for padded ragged input,
in the time). All later stages are vectorised over rows and never loop over subjects.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from insilico.errors import SpecError


def _is_per_subject_list(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(np.ndim(e) >= 1 for e in x)


def _pad(rows: Sequence, name: str) -> np.ndarray:
    arrs = [np.asarray(r, dtype=float).ravel() for r in rows]
    m = max((a.size for a in arrs), default=0)
    out = np.full((len(arrs), m), np.nan)
    for i, a in enumerate(arrs):
        out[i, : a.size] = a
    return out


def to_rows(time, conc) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(T, C)``, both ``float64`` of shape ``(n_rows, n_times)``, each row sorted by time.

    Accepted layouts
    ----------------
    * ``conc`` 1-D (one subject) with ``time`` 1-D of the same length;
    * ``conc`` 2-D ``(subjects, times)`` with a shared 1-D ``time`` or a 2-D ``time`` of the same shape;
    * per-subject sequences: ``conc`` a list of 1-D arrays and ``time`` a list of 1-D arrays of
      matching lengths (ragged), or one shared 1-D ``time``.

    Non-finite concentrations or times mark a missing sample. Shape errors concern the whole
    input and raise :class:`~insilico.errors.SpecError`.
    """
    if conc is None:
        raise SpecError("conc", "concentrations are required")
    if time is None:
        raise SpecError("time", "sampling times are required (or pass an xarray.DataArray with a time coordinate)")
    if _is_per_subject_list(conc):
        lengths = [np.size(c) for c in conc]
        C = _pad(conc, "conc")
        if _is_per_subject_list(time):
            if len(time) != len(conc):
                raise SpecError("time", f"{len(time)} time arrays for {len(conc)} concentration arrays")
            tl = [np.size(t) for t in time]
            bad = [i for i, (a, b) in enumerate(zip(tl, lengths)) if a != b]
            if bad:
                raise SpecError("time", f"subject {bad[0]}: {tl[bad[0]]} times for {lengths[bad[0]]} concentrations")
            T = _pad(time, "time")
        else:
            t = np.asarray(time, dtype=float)
            if t.ndim != 1 or any(n != t.size for n in lengths):
                raise SpecError("time", "a shared time vector must be 1-D with one entry per sample of every subject")
            T = np.broadcast_to(t, C.shape).copy()
    else:
        C = np.asarray(conc, dtype=float)
        if C.ndim == 1:
            C = C[None, :]
        if C.ndim != 2:
            raise SpecError("conc", f"expected 1-D or 2-D (subjects, times) concentrations, got {C.ndim}-D")
        if _is_per_subject_list(time):
            T = _pad(time, "time")
            if T.shape != C.shape:
                raise SpecError("time", f"per-subject times of shape {T.shape} do not match conc {C.shape}")
        else:
            T = np.asarray(time, dtype=float)
            if T.ndim == 1:
                if T.size != C.shape[1]:
                    raise SpecError("time", f"{T.size} times for {C.shape[1]} samples per subject")
                T = np.broadcast_to(T, C.shape).copy()
            elif T.shape != C.shape:
                raise SpecError("time", f"time of shape {T.shape} does not match conc {C.shape}")
    if C.shape[1] == 0:  # keep one (missing) column so reductions along time are defined
        C = np.full((C.shape[0], 1), np.nan)
        T = np.full((C.shape[0], 1), np.nan)
    T = np.where(np.isfinite(T), T, np.nan)
    C = np.where(np.isfinite(C) & np.isfinite(T), C, np.nan)
    order = np.argsort(T, axis=1, kind="stable")  # NaN times sort last
    return np.take_along_axis(T, order, 1), np.take_along_axis(C, order, 1)


def per_row(x, n: int, name: str, default=np.nan) -> np.ndarray:
    """Broadcast a scalar / per-row value to a float array of shape ``(n,)`` (``None`` -> default)."""
    if x is None:
        return np.full(n, default, dtype=float)
    a = np.asarray(x, dtype=float)
    if a.ndim == 0:
        return np.full(n, float(a))
    a = a.ravel()
    if a.size != n:
        raise SpecError(name, f"expected a scalar or {n} values (one per subject), got {a.size}")
    return a.copy()


def pack(valid: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Move the ``valid`` entries of each row to the front (order kept); pad the rest with NaN/False.

    Returns ``(n_valid, *packed_arrays)``.
    """
    order = np.argsort(~valid, axis=1, kind="stable")
    n = valid.sum(axis=1)
    keep = np.arange(valid.shape[1])[None, :] < n[:, None]
    out = []
    for a in arrays:
        p = np.take_along_axis(a, order, 1)
        out.append(p & keep if p.dtype == bool else np.where(keep, p, np.nan))
    return (n, *out)


def last_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the last True per row and whether any is True (index 0 where none)."""
    m = mask.shape[1]
    any_ = mask.any(axis=1)
    idx = m - 1 - np.argmax(mask[:, ::-1], axis=1)
    return np.where(any_, idx, 0), any_


def first_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first True per row and whether any is True (index 0 where none)."""
    return np.argmax(mask, axis=1), mask.any(axis=1)


def take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[i, idx[i]]`` for every row ``i``."""
    return np.take_along_axis(a, idx[:, None].astype(np.intp), 1)[:, 0]
