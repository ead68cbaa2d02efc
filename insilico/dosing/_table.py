"""Per-subject dose tables padded to a common shape (the engine's dosing input).

`DoseTable` holds NumPy arrays of shape ``(n_subjects, n_events)``: time (h), amt (mg, after
``per``-covariate scaling), rate (mg/h, 0 for bolus), cmt (0-based state index), ss (0/1) and
ii (h). Subjects with fewer doses are padded with zero-amount boluses at time 0, which have
no effect on the solution.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from insilico.dosing._regimen import Regimen
from insilico.errors import SpecError

__all__ = ["DoseTable", "dose_table"]

FIELDS = ("time", "amt", "rate", "cmt", "ss", "ii")


@dataclass(frozen=True)
class DoseTable:
    time: np.ndarray
    amt: np.ndarray
    rate: np.ndarray
    cmt: np.ndarray
    ss: np.ndarray
    ii: np.ndarray

    @property
    def n_subjects(self) -> int:
        return self.time.shape[0]

    @property
    def n_events(self) -> int:
        return self.time.shape[1]

    def take(self, idx) -> DoseTable:
        """Rows ``idx`` (an index array or slice)."""
        return DoseTable(*(getattr(self, f)[idx] for f in FIELDS))

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
                amt, rate = amt * scale, rate * scale  # same duration
            cmt = model.compartment_index(d.cmt if d.cmt is not None else model.default_dose_compartment,
                                          where=f"{w}.cmt")
            rows.append((d.time, amt, rate, cmt, d.ss, d.ii))
        per_rows.append(rows)
    e = max(1, max(len(r) for r in per_rows))
    pad = (0.0, 0.0, 0.0, model.compartment_index(model.default_dose_compartment), 0, 0.0)
    arr = np.array([r + [pad] * (e - len(r)) for r in per_rows], dtype=np.float64).reshape(rows_n, e, 6)
    table = DoseTable(time=arr[..., 0], amt=arr[..., 1], rate=arr[..., 2],
                      cmt=arr[..., 3].astype(np.int32), ss=arr[..., 4].astype(np.int32), ii=arr[..., 5])
    return table.broadcast(n)
