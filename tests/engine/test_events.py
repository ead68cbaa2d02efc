"""NONMEM event semantics on both paths: EVID 3/4 resets, SS=1/2 on any dose, RATE=-1/-2.

Each rule is checked against a hand-built equivalent event history (a fresh subject, many explicit
doses, superposition, an explicit rate or duration) solved by the same path, so the reference uses
none of the code under test; the two paths are also compared with each other.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from insilico.dosing import Dose, Regimen, dose_table
from insilico.engine import simulate, solve_subject, status
from insilico.errors import SpecError
from insilico.models import get_model

from ._helpers import TIGHT, params_for, rel_err

FIELDS = ("time", "amt", "rate", "cmt", "ss", "ii")
METHODS = ["exact", "ode"]


def _conc(model, p, regimen, t, method):
    ds = simulate(model, p, regimen, np.asarray(t, float), method=method, solver=TIGHT)
    assert int(ds["status"][0]) == status.OK
    return ds["conc"].values[0]


@functools.cache
def _kernel(model, method, has_ss):
    """A jitted one-subject solve with infusion records on (modelled rates need them)."""
    return jax.jit(lambda p, dose, t: solve_subject(model, p, dose, t, method, solver=TIGHT, has_infusion=True,
                                                    has_ss=has_ss))


def _solve(model, p, regimen, t, method):
    table = dose_table(regimen, model)
    dose = tuple(jnp.asarray(getattr(table, f)[0]) for f in FIELDS)
    outs, _, st = _kernel(model, method, bool(np.any(table.ss > 0)))(
        {k: jnp.asarray(v, float) for k, v in p.items()}, dose, jnp.asarray(t, float))
    assert int(st) == status.OK
    return np.asarray(outs["conc"])


# ---- EVID 3 / 4 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_evid4_equals_a_fresh_subject(method):
    """Reset and dose at 20 h (ALAG 0.5 h, an infusion still running at the reset): from then on the
    subject is a fresh subject dosed at 0, shifted by 20 h; before it, the history without the reset."""
    m = get_model("2cmt_oral")
    p = {**params_for(m), "ALAG": 0.5}
    history = Regimen((Dose(amt=100.0, time=0.0), Dose(amt=60.0, time=16.0, duration=6.0, cmt="central")))
    fresh = Regimen((Dose(amt=80.0, time=0.0, ii=12.0, addl=1),))
    reset = history + Regimen((Dose(amt=80.0, time=20.0, ii=12.0, addl=1, reset=True),))
    before = np.array([0.0, 1.0, 10.0, 16.0, 19.0, 20.0])          # 20 h: pre-dose, before the reset
    after = np.array([20.25, 20.5, 21.0, 25.0, 32.0, 33.0, 50.0])
    got = _conc(m, p, reset, np.r_[before, after], method)
    ref_before = _conc(m, p, history, before, method)
    ref_after = _conc(m, p, fresh, after - 20.0, method)
    assert rel_err(got, np.r_[ref_before, ref_after], floor=1e-9) <= 1e-8
    assert got[len(before)] == 0.0   # reset, dose still in its lag time: nothing in central


@pytest.mark.parametrize("method", METHODS)
def test_evid3_resets_to_the_initial_state_and_stops_infusions(method):
    """A reset at 10 h during an infusion: zero amounts until the next dose (a PK model starts empty),
    which then acts as in a fresh subject."""
    m = get_model("1cmt_iv")
    p = params_for(m)
    reg = Regimen((Dose(amt=100.0, duration=20.0), Dose(amt=0.0, time=10.0, reset=True), Dose(amt=50.0, time=30.0)))
    t = np.array([5.0, 10.0, 10.5, 20.0, 29.0, 30.0, 31.0, 40.0])
    got = _conc(m, p, reg, t, method)
    np.testing.assert_array_equal(got[2:6], 0.0)
    assert rel_err(got[:2], _conc(m, p, Regimen.single(100.0, duration=20.0), t[:2], method)) <= 1e-8
    assert rel_err(got[6:], _conc(m, p, Regimen.single(50.0), t[6:] - 30.0, method)) <= 1e-8


# ---- SS on any record, SS=2 ---------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name, dose_kw, extra", [
    ("2cmt_oral", {}, {"ALAG": 0.5}),                                   # bolus with lag
    ("1cmt_oral", {}, {"ALAG": 15.0}),                                  # lag longer than the interval
    ("2cmt_iv", {"rate": 25.0}, {}),                                    # infusion, 4 h of a 12 h interval
])
def test_ss1_on_a_later_record_equals_many_explicit_doses(method, name, dose_kw, extra):
    """SS=1 with II and ADDL on a later record (the earlier dose is replaced) equals 62 explicit doses
    12 h apart (slowest half-life ~15 h: the first doses' remainder after 708 h is < 1e-13), from the
    SS dose's entry (time + ALAG) on."""
    m = get_model(name)
    p = {**params_for(m), **extra}
    ii, t_ss = 12.0, 59 * 12.0
    ss = Regimen((Dose(amt=40.0, time=0.0), Dose(amt=100.0, time=t_ss, ii=ii, addl=2, ss=1, **dose_kw)))
    many = Regimen.repeated(100.0, ii, 62, **dose_kw)
    t = t_ss + extra.get("ALAG", 0.0) + np.array([0.0, 0.25, 0.5, 1.0, 3.0, 6.0, 11.9, 12.0, 12.5, 20.0, 30.0, 40.0])
    assert rel_err(_conc(m, p, ss, t, method), _conc(m, p, many, t, method), floor=1e-9) <= 1e-8


@pytest.mark.parametrize("method", METHODS)
def test_ss2_is_the_current_state_plus_an_ss1_profile(method):
    """SS=2 at 10 h on top of a 200 mg dose at 0 (superposition), bolus and infusion."""
    m = get_model("2cmt_oral")
    p = params_for(m)
    t = np.array([1.0, 9.0, 10.0, 10.5, 12.0, 21.9, 22.0, 30.0])
    first = Regimen.single(200.0)
    for kw in ({}, {"duration": 2.0, "cmt": "central"}):
        both = first + Regimen.single(100.0, 10.0, ii=12.0, ss=2, **kw)
        ss1 = Regimen.single(100.0, 10.0, ii=12.0, ss=1, **kw)
        ref = _conc(m, p, first, t, method) + _conc(m, p, ss1, t, method)
        assert rel_err(_conc(m, p, both, t, method), ref, floor=1e-9) <= 1e-8


def test_events_agree_between_paths():
    """A history with every event code (EVID 4, SS=1 and SS=2 on later records, lag): exact == ODE."""
    m = get_model("2cmt_oral")
    p = {**params_for(m), "ALAG": 0.3}
    reg = Regimen((Dose(amt=100.0, ii=12.0, addl=3), Dose(amt=50.0, time=30.0, ii=8.0, ss=2),
                   Dose(amt=80.0, time=60.0, reset=True), Dose(amt=70.0, time=90.0, ii=24.0, ss=1, addl=1)))
    t = np.linspace(0.0, 150.0, 61)
    assert rel_err(_conc(m, p, reg, t, "ode"), _conc(m, p, reg, t, "exact"), floor=1e-9) <= 1e-7


# ---- RATE = -1 / -2 -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_modelled_duration_and_rate_equal_explicit_infusions(method):
    """RATE=-2 with D2 = 2.5 h equals an explicit 2.5 h infusion, RATE=-1 with R2 = 30 mg/h an explicit
    30 mg/h infusion (into central, number 2 of 2cmt_oral), also at steady state."""
    m = get_model("2cmt_oral").with_dose_parameters("D2", "R2")
    p = {**params_for(get_model("2cmt_oral")), "D2": 2.5, "R2": 30.0}
    t = np.array([0.5, 2.0, 2.5, 3.0, 4.0, 12.0, 13.0, 30.0])
    for ss in (0, 1):
        kw = dict(cmt="central", ii=12.0, addl=2, ss=ss)
        assert rel_err(_solve(m, p, Regimen.single(100.0, rate=-2.0, **kw), t, method),
                       _solve(m, p, Regimen.single(100.0, duration=2.5, **kw), t, method), floor=1e-9) <= 1e-10
        assert rel_err(_solve(m, p, Regimen.single(100.0, rate=-1.0, **kw), t, method),
                       _solve(m, p, Regimen.single(100.0, rate=30.0, **kw), t, method), floor=1e-9) <= 1e-10


@pytest.mark.parametrize("method", METHODS)
def test_modelled_duration_with_bioavailability_scales_the_rate(method):
    """NONMEM: with RATE=-2, F scales the rate (F·AMT/D1), the duration is D1; so a depot dose of 100 mg
    with F = 0.8 and D1 = 2.5 h is an explicit 32 mg/h infusion (F·AMT/rate = 2.5 h)."""
    m = get_model("1cmt_oral").with_dose_parameters("D1")
    p = {**params_for(get_model("1cmt_oral")), "F": 0.8, "D1": 2.5}
    t = np.array([0.5, 2.5, 3.0, 8.0])
    assert rel_err(_solve(m, p, Regimen.single(100.0, rate=-2.0), t, method),
                   _solve(m, p, Regimen.single(100.0, rate=32.0), t, method), floor=1e-9) <= 1e-10


def test_missing_modelled_parameter_is_a_nonfinite_status_not_a_bolus():
    """A RATE=-2 dose for a model without D1 (a table built by hand) never runs as something else."""
    m = get_model("1cmt_iv")
    with pytest.raises(SpecError, match="D1"):       # dose_table refuses it, naming the missing parameter
        dose_table(Regimen.single(100.0, rate=-2.0), m)
    dose = tuple(jnp.asarray(a) for a in ([0.0], [100.0], [-2.0], [0], [0], [0.0]))
    for has_infusion in (True, False):
        _, _, st = solve_subject(m, {"CL": 4.0, "V": 30.0}, dose, jnp.array([1.0]), "exact",
                                 has_infusion=has_infusion, has_ss=False)
        assert int(st) == status.NONFINITE
