"""Dose validity rules: one function (`check_dose`) behind `Dose.validate` and the trial spec."""
import math

import numpy as np
import pytest

from insilico.dosing import Dose, Regimen, check_dose
from insilico.errors import SpecError

OK = dict(amt=100.0)

# (keyword arguments, field, words): the words include those the trial spec's pydantic fields and
# validators printed before the rules moved to insilico.dosing (tests/trials/test_malformed.py)
BAD = [
    (dict(amt=-25.0), "amt", "greater than or equal"),
    (dict(amt=-25.0), "amt", ">= 0"),
    (dict(amt=math.nan), "amt", "finite"),
    (dict(amt="100"), "amt", "finite number"),
    (dict(amt=True), "amt", "finite number"),
    (dict(time=-1.0), "time", ">= 0"),
    (dict(time=math.inf), "time", "finite"),
    (dict(rate=-2.0), "rate", "not supported"),
    (dict(rate=-2.0), "rate", "greater than or equal"),
    (dict(duration=0.0), "duration", "zero-length infusion"),
    (dict(duration=0.0), "duration", "greater than"),
    (dict(duration=math.nan), "duration", "finite"),
    (dict(rate=10.0, duration=2.0), "duration", "give either rate or duration, not both"),
    (dict(amt=0.0, rate=10.0), "amt", "an infusion needs an amount > 0"),
    (dict(addl=-1, ii=12.0), "addl", "greater than or equal to 0"),
    (dict(addl=1.5, ii=12.0), "addl", "integer"),
    (dict(n=0), "n", "greater than or equal to 1"),
    (dict(n=3, addl=2, ii=12.0), "n", "give either n (number of doses) or addl, not both"),
    (dict(ss=3, ii=12.0), "ss", "0, 1 or 2"),
    (dict(addl=3), "ii", "ii (dosing interval, h) must be > 0 for repeated or steady-state doses"),
    (dict(n=2), "ii", "must be > 0"),
    (dict(ss=1), "ii", "> 0"),
    (dict(ii=-1.0, ss=1), "ii", "> 0"),
    (dict(ss=1, ii=12.0, duration=13.0), "duration", "within one dosing interval"),
    (dict(ss=1, ii=12.0, rate=5.0), "rate", "within one dosing interval"),   # 100 mg at 5 mg/h: 20 h
]


@pytest.mark.parametrize("kwargs, field, words", BAD, ids=[f"{c[1]}-{c[2][:24]}" for c in BAD])
def test_check_dose_names_field_and_rule(kwargs, field, words):
    with pytest.raises(SpecError) as e:
        check_dose(**{**OK, **kwargs}, where="arms.1.regimen.0")
    assert e.value.field == f"arms.1.regimen.0.{field}"
    assert words in e.value.message


@pytest.mark.parametrize("kwargs", [
    dict(), dict(amt=0.0), dict(rate=50.0), dict(duration=2.0), dict(addl=3, ii=12.0), dict(n=4, ii=24.0),
    dict(n=1), dict(ss=1, ii=12.0), dict(ss=1, ii=12.0, duration=12.0), dict(ss=1, ii=12.0, rate=10.0),
    dict(addl=np.int64(2), ii=np.float64(8.0)), dict(amt=np.float64(5.0), time=3),
])
def test_valid_doses_pass(kwargs):
    check_dose(**{**OK, **kwargs})


def test_empty_where_gives_the_bare_field():
    """The trial spec's pydantic validator calls with ``where=""`` and prefixes the location itself."""
    with pytest.raises(SpecError) as e:
        check_dose(amt=-1.0, where="")
    assert e.value.field == "amt"


@pytest.mark.parametrize("dose, kwargs", [
    (Dose(amt=-5.0), dict(amt=-5.0)),
    (Dose(amt=10.0, duration=20.0, ss=1, ii=12.0), dict(amt=10.0, duration=20.0, ss=1, ii=12.0)),
    (Dose(amt=10.0, addl=2), dict(amt=10.0, addl=2)),
])
def test_dose_validate_is_check_dose(dose, kwargs):
    with pytest.raises(SpecError) as a:
        dose.validate("regimen.doses.0")
    with pytest.raises(SpecError) as b:
        check_dose(**kwargs, where="regimen.doses.0")
    assert (a.value.field, a.value.message) == (b.value.field, b.value.message)


def test_steady_state_on_a_later_dose_is_valid():
    # NONMEM: SS=1/2 may be given on any dose record (the engine solves one steady state per such dose)
    Regimen((Dose(amt=1.0), Dose(amt=1.0, time=5.0, ss=1, ii=12.0))).validate()
