"""`ParameterSchedule`: per-subject parameters that change over time (time-varying covariates, occasions).

A schedule holds, for N subjects, ``change_t`` (N, C) change times in h (non-decreasing per row) and
``values`` ``{name: (N, C+1)}``: value ``j`` holds from change ``j−1`` to change ``j``, value 0 before
the first change. Rows with fewer changes are padded with copies of their last change (an inert
change: same time, same values), so any schedule pads to a static number of changes.

Records to changes (``interpolation``), for one subject's records at times ``t_1 <= … <= t_k`` with
values ``v_1 … v_k``:

* ``"locf"`` (last observation carried forward; the default here, as in rxode2's default
  ``covsInterpolation = "locf"``): ``v_j`` holds from ``t_j`` until ``t_{j+1}``; changes at
  ``t_2 … t_k``; a point exactly at ``t_j`` (a dose, an observation) takes ``v_j``.
* ``"nocb"`` (next observation carried backward): ``v_j`` holds over ``(t_{j−1}, t_j]``; changes at
  ``t_1 … t_{k−1}``; a point exactly at ``t_j`` takes ``v_j``, the record's own value. This is how
  NONMEM's PREDPP advances the system (NONMEM Users Guide Part VI, PREDPP: PK is evaluated with each
  event record and the system advanced to that record's time with the values so computed, i.e. the
  values of the record that ends the interval); mrgsolve's default (``nocb = TRUE``) and rxode2's
  ``covsInterpolation = "nocb"`` follow it.

Either way the first record's value also holds before it, and the last record's value after it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from insilico.errors import SpecError

__all__ = ["ParameterSchedule", "INTERPOLATIONS"]

INTERPOLATIONS = ("locf", "nocb")
"""Accepted ``covariate_interpolation`` values (module docstring)."""


def check_interpolation(value: str, where: str = "covariate_interpolation") -> bool:
    """True for ``"nocb"``, False for ``"locf"``; SpecError ``where`` otherwise."""
    v = str(value).lower()
    if v not in INTERPOLATIONS:
        raise SpecError(where, f"must be 'locf' (last value carried forward) or 'nocb' (next value carried "
                               f"backward), got {value!r}")
    return v == "nocb"


@dataclass(frozen=True)
class ParameterSchedule:
    """Piecewise-constant parameters of N subjects (module docstring).

    change_t : (N, C) change times in h, non-decreasing per subject.
    values : ``{name: (N, C+1)}`` parameter values per segment, in the parameter's units.
    nocb : a point exactly at a change takes the value ending there (True) or starting there (False).
    """

    change_t: np.ndarray
    values: dict = field(default_factory=dict)
    nocb: bool = False

    @property
    def n_subjects(self) -> int:
        return self.change_t.shape[0]

    @property
    def n_changes(self) -> int:
        return self.change_t.shape[1]

    def take(self, idx) -> ParameterSchedule:
        """Subjects ``idx`` (an index array or slice)."""
        return ParameterSchedule(self.change_t[idx], {k: v[idx] for k, v in self.values.items()}, self.nocb)

    def padded(self, n_changes: int) -> ParameterSchedule:
        """The schedule with ``n_changes`` changes per subject, the added ones copies of the last."""
        extra = int(n_changes) - self.n_changes
        if extra < 0:
            raise ValueError(f"cannot pad {self.n_changes} changes to {n_changes}")
        if extra == 0:
            return self
        last_t = self.change_t[:, -1:] if self.n_changes else np.zeros((self.n_subjects, 1))
        return ParameterSchedule(np.concatenate([self.change_t, np.repeat(last_t, extra, axis=1)], axis=1),
                                 {k: np.concatenate([v, np.repeat(v[:, -1:], extra, axis=1)], axis=1)
                                  for k, v in self.values.items()}, self.nocb)

    def varies(self) -> np.ndarray:
        """(N,) True for subjects whose parameters change at all."""
        out = np.zeros(self.n_subjects, bool)
        for v in self.values.values():
            out |= np.any(v != v[:, :1], axis=1)
        return out

    def completed(self, base: Mapping) -> ParameterSchedule:
        """The schedule with every parameter of ``base`` ({name: (N,)}) not in it held constant."""
        c1 = self.n_changes + 1
        extra = {k: np.repeat(np.asarray(v, float)[:, None], c1, axis=1) for k, v in base.items()
                 if k not in self.values}
        return ParameterSchedule(self.change_t, {**self.values, **extra}, self.nocb)

    def merged(self, other: ParameterSchedule) -> ParameterSchedule:
        """Both schedules on the union of their change times (parameters of ``other`` win where both have one).
        Point convention: this schedule's."""
        if other.n_subjects != self.n_subjects:
            raise ValueError(f"{other.n_subjects} subjects to merge with {self.n_subjects}")
        times = np.concatenate([self.change_t, other.change_t], axis=1)
        times.sort(axis=1)
        values = {}
        for sched in (self, other):
            for name, v in sched.values.items():
                idx = np.stack([np.searchsorted(ct, tt, side="right") for ct, tt in zip(sched.change_t, times)])
                values[name] = np.concatenate([v[:, :1], np.take_along_axis(v, idx, axis=1)], axis=1)
        return ParameterSchedule(times, values, self.nocb)

    @classmethod
    def from_records(cls, times: Sequence[np.ndarray], values: Mapping[str, Sequence[np.ndarray]],
                     interpolation: str = "locf", where: str = "parameters") -> ParameterSchedule:
        """A schedule from each subject's records: ``times[s]`` (k_s,) non-decreasing record times in h and
        ``values[name][s]`` (k_s,) the parameter's value on those records (module docstring for
        ``interpolation``). SpecError ``<where>.TIME`` for times that decrease within a subject."""
        nocb = check_interpolation(interpolation)
        for s, t in enumerate(times):
            if len(t) == 0:
                raise SpecError(f"{where}.TIME", f"subject {s} has no records")
            back = np.flatnonzero(np.diff(t) < 0)
            if back.size:
                raise SpecError(f"{where}.TIME", f"subject {s}: TIME {t[back[0] + 1]:g} comes after "
                                                 f"{t[back[0]]:g}; sort the records by TIME within each ID")
        C = max(1, max(len(t) for t in times) - 1)
        n = len(times)
        change_t = np.zeros((n, C))
        out = {k: np.zeros((n, C + 1)) for k in values}
        for s, t in enumerate(times):
            t = np.asarray(t, float)
            ct = t[:-1] if nocb else t[1:]
            if ct.size:
                change_t[s, :ct.size], change_t[s, ct.size:] = ct, ct[-1]
            for k in values:
                v = np.asarray(values[k][s], float)
                out[k][s, :v.size], out[k][s, v.size:] = v, v[-1]
        return cls(change_t, out, nocb)

    @classmethod
    def from_occasions(cls, per_occasion: Mapping[str, np.ndarray], starts, where: str = "occasions",
                       nocb: bool = False) -> ParameterSchedule:
        """Inter-occasion variability by time ranges: occasion ``k`` runs from ``starts[k]`` (h) to
        ``starts[k+1]``, the first also before ``starts[0]``, the last to the end; parameter ``P`` in
        occasion ``k`` is ``per_occasion[P][:, k]`` ((N, K) arrays, K >= len(starts)). SpecError ``where``
        for starts that are not finite, negative or not strictly increasing, or too few occasion values."""
        s = np.asarray(starts, dtype=float) if np.ndim(starts) == 1 else None
        if s is None or s.size == 0:
            raise SpecError(where, f"must be a non-empty list of occasion start times in h, got {starts!r}")
        if not np.all(np.isfinite(s)) or np.any(s < 0):
            raise SpecError(where, f"occasion start times must be finite and >= 0 h, got {s.tolist()}")
        if np.any(np.diff(s) <= 0):
            raise SpecError(where, f"occasion start times must be strictly increasing, got {s.tolist()}")
        if not per_occasion:
            raise SpecError(where, "occasions are given but the parameters have no per-occasion values "
                                   "(P_occ over occasion, e.g. a cohort with an iov section)")
        values = {}
        for name, v in per_occasion.items():
            v = np.asarray(v, dtype=float)
            if v.ndim != 2 or v.shape[1] < s.size:
                raise SpecError(where, f"{len(s)} occasions but {name}_occ has "
                                       f"{v.shape[-1] if v.ndim else 0} occasion values per subject")
            values[name] = v[:, :s.size]
        n = next(iter(values.values())).shape[0]
        change_t = np.repeat(s[1:][None] if s.size > 1 else np.zeros((1, 1)), n, axis=0)
        if s.size == 1:
            values = {k: np.repeat(v, 2, axis=1) for k, v in values.items()}
        return cls(change_t, values, nocb)
