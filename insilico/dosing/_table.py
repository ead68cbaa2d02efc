"""Per-subject dose tables padded to a common shape (the engine's dosing input).

`DoseTable` holds NumPy arrays of shape ``(n_subjects, n_events)``: time (h), amt (mg, after
``per``-covariate scaling), rate (mg/h, 0 for bolus, -1 / -2 for NONMEM's modelled rate /
duration), cmt (0-based state index), ss (the event code: the NONMEM SS value 0/1/2, plus
`DoseTable.RESET` = 4 when the system is reset before the dose, NONMEM EVID 3/4; so
``ss & DoseTable.SS_MASK`` is SS and ``ss & DoseTable.RESET`` the reset) and ii (h). Every
engine input takes these six arrays, so the event code reaches every solve.

Subjects with fewer doses, and the extra slots of `DoseTable.padded` (the engine pads
the number of slots to a bucket so a new schedule length reuses compiled code), get **inert
slots**: amount 0, rate 0, not steady state, at the time and compartment of the subject's last
slot (time 0 in the default dose compartment for a subject without doses). Such a slot enters
exactly when a record of the subject enters anyway (same time, same ALAG), so it adds no
interval end on the ODE path and a zero term on the exact path: results are unchanged (bit for
bit on the ODE path; on the exact path to rounding, ≤ 1e-14 relative, as a sum over records gets
more zero terms).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from insilico.dosing._regimen import Regimen
from insilico.errors import SpecError

__all__ = ["DoseTable", "dose_table", "event_slots"]

FIELDS = ("time", "amt", "rate", "cmt", "ss", "ii")


@dataclass(frozen=True)
class DoseTable:
    time: np.ndarray
    amt: np.ndarray
    rate: np.ndarray
    cmt: np.ndarray
    ss: np.ndarray
    ii: np.ndarray

    SS_MASK: ClassVar[int] = 3
    """``ss & SS_MASK``: the NONMEM SS value (0 none, 1 reset to steady state, 2 add steady state)."""
    RESET: ClassVar[int] = 4
    """``ss & RESET``: the system is reset to the model's initial state before the dose (EVID 3/4)."""

    @property
    def n_subjects(self) -> int:
        return self.time.shape[0]

    @property
    def n_events(self) -> int:
        return self.time.shape[1]

    def take(self, idx) -> DoseTable:
        """Rows ``idx`` (an index array or slice)."""
        return DoseTable(*(getattr(self, f)[idx] for f in FIELDS))

    def padded(self, n_events: int) -> DoseTable:
        """The table with ``n_events`` slots per subject (at least `n_events`), the added slots inert
        (see the module docstring)."""
        extra = int(n_events) - self.n_events
        if extra < 0:
            raise ValueError(f"cannot pad {self.n_events} dose slots to {n_events}")
        if extra == 0:
            return self
        shape = (self.n_subjects, extra)

        def last(a):
            return np.repeat(a[:, -1:], extra, axis=1)

        return DoseTable(*(np.concatenate([getattr(self, f), new], axis=1) for f, new in zip(FIELDS, (
            last(self.time), np.zeros(shape), np.zeros(shape), last(self.cmt), np.zeros(shape, self.ss.dtype),
            np.zeros(shape)))))

    def broadcast(self, n: int) -> DoseTable:
        if self.n_subjects == n:
            return self
        if self.n_subjects != 1:
            raise SpecError("regimen", f"dose table has {self.n_subjects} subjects, expected {n}")
        return DoseTable(*(np.repeat(getattr(self, f), n, axis=0) for f in FIELDS))


def dose_table(regimens: Regimen | Sequence[Regimen], model, n: int | None = None,
               covariates: Mapping[str, np.ndarray] | None = None,
               where: str = "regimen") -> DoseTable:
    """Build a `DoseTable` from one regimen (shared) or one regimen per subject.

    ``covariates`` supplies per-subject values for doses given ``per`` a covariate
    (e.g. mg/kg × WT). Compartments are resolved by name or NONMEM number against ``model``.
    """
    shared = isinstance(regimens, Regimen)
    regs = [regimens] if shared else list(regimens)
    if not regs:
        raise SpecError(where, "no regimen given")
    if n is None:
        n = 1 if shared else len(regs)
    if not shared and len(regs) != n:
        raise SpecError(where, f"{len(regs)} regimens for {n} subjects")
    needs_cov = any(d.per for r in regs for d in r.doses)
    rows_n = n if (needs_cov or not shared) else 1
    per_rows = []
    for s in range(rows_n):
        reg = regs[0] if shared else regs[s]
        w = where if shared else f"{where}.{s}"
        reg.validate(w)
        rows = []
        for d in reg.expanded():
            amt = d.amt
            rate = d.infusion_rate
            if d.per:
                if covariates is None or d.per not in covariates:
                    raise SpecError(f"{w}.per", f"dose is per {d.per!r} but that covariate is not available")
                scale = float(np.asarray(covariates[d.per])[s])
                if not np.isfinite(scale) or scale <= 0:
                    raise SpecError(f"{w}.per", f"covariate {d.per} must be > 0 for subject {s}, got {scale}")
                amt = amt * scale
                rate = rate * scale if rate > 0 else rate  # same duration; a modelled rate stays a code
            cmt = model.compartment_index(d.cmt if d.cmt is not None else model.default_dose_compartment,
                                          where=f"{w}.cmt")
            if rate < 0:    # RATE -1/-2 (NONMEM): the model must supply R<n>/D<n>, n = CMT number
                name = f"{'R' if rate == -1 else 'D'}{cmt + 1}"
                if name not in model.parameter_names:
                    raise SpecError(f"{w}.rate", f"rate {rate:g} takes the infusion "
                                                 f"{'rate' if rate == -1 else 'duration'} from the model "
                                                 f"parameter {name}, which model {model.name!r} does not have; use "
                                                 f"model.with_dose_parameters({name!r})")
            rows.append((d.time, amt, rate, cmt, d.ss + (DoseTable.RESET if d.reset else 0), d.ii))
        per_rows.append(rows)
    e = max(1, max(len(r) for r in per_rows))
    none = (0.0, 0.0, 0.0, model.compartment_index(model.default_dose_compartment), 0, 0.0)
    per_rows = [r or [none] for r in per_rows]
    arr = np.array([r + [_inert(r[-1])] * (e - len(r)) for r in per_rows], dtype=np.float64).reshape(rows_n, e, 6)
    table = DoseTable(time=arr[..., 0], amt=arr[..., 1], rate=arr[..., 2],
                      cmt=arr[..., 3].astype(np.int32), ss=arr[..., 4].astype(np.int32), ii=arr[..., 5])
    return table.broadcast(n)


def _inert(slot: tuple) -> tuple:
    """An inert dose slot after ``slot`` (time, amt, rate, cmt, ss, ii): same time and compartment,
    nothing given."""
    return (slot[0], 0.0, 0.0, slot[3], 0, 0.0)


def event_slots(ss) -> int:
    """Static size of the engine's event work for an ``ss`` array (subjects x dose slots): 0 when
    no dose has an SS code or a reset, else the index of the last slot that has one, plus 1 (the
    engine solves steady states only for those slots; SS on the first dose only gives 1)."""
    ss = np.asarray(ss)
    cols = np.flatnonzero(np.any(ss.reshape(-1, ss.shape[-1]) != 0, axis=0)) if ss.size else []
    return int(cols[-1]) + 1 if len(cols) else 0
