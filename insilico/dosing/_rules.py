"""Validity rules for one dosing record: the single home of every dose rule.

`check_dose` is called by `Dose.validate` (Python API, NONMEM import) and by the trial spec's
pydantic validator, so both report the same rule with the same words. Units: amounts mg, times
and intervals h, rates mg/h. Conventions (NONMEM PREDPP, mrgsolve ``ev()``): ``rate`` > 0 or
``duration`` > 0 makes a zero-order infusion; ``addl`` extra doses (or ``n`` doses in total, a
trial-spec shorthand for ADDL = n − 1) are ``ii`` hours apart; ``ss = 1`` is NONMEM SS=1 (the
system is reset to the pre-dose steady state of the dose repeated every ``ii``), ``ss = 2`` is NONMEM
SS=2 (that steady state is added to the current state, superposition); ``rate = −1`` / ``−2`` are
NONMEM's modelled rate / duration (the infusion rate is the model parameter ``R<cmt>``, the duration
``D<cmt>``; NONMEM Users Guide Part V, "Infusions: modelled rate and duration"), accepted for a `Dose`
(``modelled_rates=True``) and refused in a trial spec, whose cohorts do not draw those parameters.

Messages name the rule in the words pydantic uses for the same bound ("greater than or equal to
0"), so a trial spec reports what it reported before the rules moved here.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

from insilico.errors import SpecError

__all__ = ["MAX_DOSES", "MODELLED_RATES", "check_dose"]

MODELLED_RATES = (-1.0, -2.0)
"""NONMEM RATE codes: -1 the rate is the model parameter ``R<cmt>`` (mg/h), -2 the duration is ``D<cmt>`` (h)."""
MAX_DOSES = 100_000   # doses one record may expand to (addl + 1, or n): more is refused, not allocated


def _field(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _finite(where: str, name: str, v) -> None:
    if not isinstance(v, Real) or isinstance(v, bool) or not math.isfinite(v):
        raise SpecError(_field(where, name), f"must be a finite number, got {v!r}")


def _integer(where: str, name: str, v, low: int, what: str) -> None:
    if not isinstance(v, Integral) or isinstance(v, bool) or v < low:
        raise SpecError(_field(where, name), f"{what} must be an integer >= {low} "
                                             f"(greater than or equal to {low}), got {v!r}")


def check_dose(*, amt, time=0.0, rate=0.0, duration=None, ii=0.0, addl=0, n=None, ss=0,
               where: str = "dose", modelled_rates: bool = False) -> None:
    """Raise `SpecError` naming the field (``f"{where}.{field}"``, or just the field when
    ``where`` is empty) for the first rule the dosing record breaks.

    amt (mg) >= 0, > 0 for an infusion given by rate; time (h) >= 0; rate (mg/h) >= 0 (0 for a bolus),
    or, with ``modelled_rates`` (a `Dose`, whose model supplies ``R<n>``/``D<n>``; not a trial spec,
    whose cohort does not draw them), -1 / -2 (modelled rate / duration; then amt > 0, no duration);
    duration (h) > 0 and not together with rate; addl >= 0 or n >= 1 (not both), at most
    `MAX_DOSES` doses in all; ss 0, 1 or 2;
    ii (h) > 0 for repeated or steady-state doses; a steady-state infusion ends within one
    interval (duration <= ii; both solvers' steady state assumes it). All numbers finite.
    """
    for name, v in (("amt", amt), ("time", time), ("rate", rate), ("ii", ii)):
        _finite(where, name, v)
    if amt < 0:
        raise SpecError(_field(where, "amt"), f"dose amount must be >= 0 mg (greater than or equal to 0), got {amt}")
    if time < 0:
        raise SpecError(_field(where, "time"), f"dose time must be >= 0 h (greater than or equal to 0), got {time}")
    if rate < 0 and not (modelled_rates and rate in MODELLED_RATES):
        codes = ", or -1 / -2 for a modelled rate / duration" if modelled_rates else ""
        note = "" if modelled_rates else " (modelled rate/duration, RATE=-1/-2, is not supported here)"
        raise SpecError(_field(where, "rate"), f"infusion rate must be > 0 (mg/h) or 0 for a bolus (greater than or "
                                               f"equal to 0){codes}, got {rate}{note}")
    if duration is not None:
        _finite(where, "duration", duration)
        if duration <= 0:
            raise SpecError(_field(where, "duration"), f"zero-length infusion: duration must be > 0 h "
                                                       f"(greater than 0), got {duration}")
        if rate != 0:
            raise SpecError(_field(where, "duration"), "give either rate or duration, not both")
    if rate != 0 and amt == 0:
        raise SpecError(_field(where, "amt"), "an infusion needs an amount > 0")
    _integer(where, "addl", addl, 0, "addl (additional doses)")
    if n is not None:
        _integer(where, "n", n, 1, "n (number of doses)")
        if addl:
            raise SpecError(_field(where, "n"), "give either n (number of doses) or addl, not both")
    total = n if n is not None else addl + 1
    if total > MAX_DOSES:
        name = "n" if n is not None else "addl"
        raise SpecError(_field(where, name), f"{total} doses from one record (at most {MAX_DOSES}); "
                                             "a longer regimen cannot be expanded into a dose table")
    if isinstance(ss, bool) or ss not in (0, 1, 2):
        raise SpecError(_field(where, "ss"), f"must be 0, 1 or 2 (NONMEM SS), got {ss!r}")
    if ((n or 1) > 1 or addl > 0 or ss) and not ii > 0:
        raise SpecError(_field(where, "ii"), f"ii (dosing interval, h) must be > 0 for repeated or steady-state "
                                             f"doses, got {ii}")
    infusion_h = duration if duration is not None else (amt / rate if rate > 0 else 0.0)  # modelled: unknown here
    if ss and infusion_h > ii:
        raise SpecError(_field(where, "duration" if duration is not None else "rate"),
                        f"a steady-state infusion must end within one dosing interval: it lasts {infusion_h:g} h "
                        f"but ii is {ii:g} h")
