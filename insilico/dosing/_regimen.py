"""Dosing regimens with NONMEM event semantics.

A `Dose` is one dosing record as in a NONMEM data set (Beal & Sheiner, NONMEM Users Guide
Part V; mrgsolve ``ev()``):

* ``amt`` (mg) into compartment ``cmt`` at ``time`` (h);
* ``rate`` > 0 (mg/h) or ``duration`` > 0 (h) makes it a zero-order infusion
  (``rate = amt / duration``), otherwise it is a bolus; ``rate = -1`` takes the rate from the
  model parameter ``R<n>`` and ``rate = -2`` the duration from ``D<n>``, ``n`` the NONMEM number
  of the dosed compartment (NONMEM RATE=-1/-2; the model needs those parameters,
  `insilico.models.Model.with_dose_parameters`);
* ``addl`` additional identical doses ``ii`` hours apart (so ``addl + 1`` doses in total);
* ``ss = 1``: the dose is given at steady state, i.e. the system is reset to the periodic
  steady state reached after infinitely many doses ``ii`` apart (NONMEM SS=1); ``ss = 2``: that
  steady state is added to the current state instead (NONMEM SS=2, superposition: exact for
  linear models). Any dose may carry SS; with ADDL the SS applies to the first of the doses;
* ``reset``: the system is reset to the model's initial state at ``time``, before this dose
  (NONMEM EVID=4; with ``amt = 0`` a pure reset, EVID=3): every state returns to its initial
  value and infusions in progress stop;
* ``per``: the amount is per unit of a covariate (e.g. ``amt=2, per="WT"`` is 2 mg/kg), and
  is multiplied by that covariate for each subject.

A `Regimen` is an ordered collection of doses; ``+`` concatenates (loading + maintenance),
``shift(t)`` moves a phase in time (sequential phases).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from insilico.dosing._rules import check_dose
from insilico.errors import SpecError

__all__ = ["Dose", "Regimen"]


@dataclass(frozen=True)
class Dose:
    amt: float
    time: float = 0.0
    cmt: str | int | None = None
    rate: float = 0.0
    duration: float | None = None
    ii: float = 0.0
    addl: int = 0
    ss: int = 0
    per: str | None = None
    reset: bool = False

    def validate(self, where: str = "dose") -> None:
        """Raise `SpecError` for the first broken dose rule (see `check_dose`)."""
        check_dose(amt=self.amt, time=self.time, rate=self.rate, duration=self.duration, ii=self.ii,
                   addl=self.addl, ss=self.ss, where=where, modelled_rates=True)
        if not isinstance(self.reset, bool):
            raise SpecError(f"{where}.reset", f"must be True or False, got {self.reset!r}")

    @property
    def infusion_rate(self) -> float:
        """mg/h (0 for a bolus; the code -1 / -2 for a modelled rate / duration)."""
        if self.duration is not None:
            return self.amt / self.duration
        return float(self.rate)

    def expand(self) -> list[Dose]:
        """The ``addl + 1`` individual doses (ADDL expansion); SS and reset stay on the first."""
        return [replace(self, time=self.time + k * self.ii, addl=0, ss=self.ss if k == 0 else 0,
                        reset=self.reset if k == 0 else False)
                for k in range(self.addl + 1)]


@dataclass(frozen=True)
class Regimen:
    doses: tuple[Dose, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "doses", tuple(self.doses))

    def __add__(self, other: Regimen) -> Regimen:
        return Regimen(self.doses + other.doses)

    def __len__(self) -> int:
        return len(self.doses)

    def shift(self, dt: float) -> Regimen:
        """The same regimen started ``dt`` hours later (a sequential phase)."""
        return Regimen(tuple(replace(d, time=d.time + dt) for d in self.doses))

    def validate(self, where: str = "regimen") -> None:
        for i, d in enumerate(self.doses):
            d.validate(f"{where}.doses.{i}")

    def expanded(self) -> list[Dose]:
        """All individual doses, ADDL expanded, sorted by time (stable)."""
        out = [e for d in self.doses for e in d.expand()]
        return sorted(out, key=lambda d: d.time)

    # -- constructors --------------------------------------------------------------
    @classmethod
    def single(cls, amt: float, time: float = 0.0, **kw) -> Regimen:
        return cls((Dose(amt=amt, time=time, **kw),))

    @classmethod
    def repeated(cls, amt: float, ii: float, n: int, start: float = 0.0, **kw) -> Regimen:
        """``n`` doses every ``ii`` hours from ``start`` (NONMEM ADDL = n - 1)."""
        if not isinstance(n, int) or n < 1:
            raise SpecError("regimen.n", f"number of doses must be a positive integer, got {n!r}")
        return cls((Dose(amt=amt, time=start, ii=ii, addl=n - 1, **kw),))

    @classmethod
    def loading_maintenance(cls, loading: float, maintenance: float, ii: float, n: int,
                            start: float = 0.0, **kw) -> Regimen:
        """A loading dose at ``start`` then ``n`` maintenance doses from ``start + ii``."""
        return cls.single(loading, start, **kw) + cls.repeated(maintenance, ii, n, start + ii, **kw)

