"""Steady state (NONMEM SS=1): Newton root of the one-interval map, implicit gradients, status codes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from insilico.dosing import Dose, Regimen, dose_table
from insilico.engine import SolverOptions, simulate, solve_subject, status
from insilico.models import get_model

from ._helpers import TIGHT, params_for, rel_err

FIELDS = ("time", "amt", "rate", "cmt", "ss", "ii")


def _dose(model, regimen):
    table = dose_table(regimen, model)
    return tuple(jnp.asarray(getattr(table, f)[0]) for f in FIELDS)


@pytest.mark.parametrize("name, amt, ii, n_doses, extra", [
    ("2cmt_oral", 100.0, 12.0, 200, {}),                      # slowest half-life ~14 h: 200 doses ≈ 1e-70 left
    ("2cmt_oral_mm", 150.0, 24.0, 200, {"VMAX": 20.0}),       # capacity 480 mg/day > 120 mg/day absorbed
    ("1cmt_iv_mm", 900.0, 12.0, 300, {"V": 25.0, "VMAX": 100.0, "KM": 3.0}),  # 75 % of capacity
])
def test_ss_equals_many_explicit_doses(name, amt, ii, n_doses, extra):
    """Pre-dose SS state, and the interval after it, equal dose ``n_doses`` of an explicit regimen
    (the non-steady remainder is far below the tolerance); both on the ODE path at rtol 1e-10."""
    m = get_model(name)
    p = {**params_for(m), **extra}
    t = np.array([0.0, 0.5, 2.0, 6.0, ii - 1e-3])
    ss = simulate(m, p, Regimen((Dose(amt=amt, ss=1, ii=ii),)), t, method="ode", solver=TIGHT, keep_states=True)
    many = simulate(m, p, Regimen.repeated(amt, ii, n_doses), t + (n_doses - 1) * ii, method="ode", solver=TIGHT,
                    keep_states=True)
    assert int(ss["status"][0]) == status.OK and int(many["status"][0]) == status.OK
    assert rel_err(ss["amount"].values, many["amount"].values, floor=1e-9) <= 1e-7


def test_ss_ode_equals_exact_with_lag_and_infusion():
    """Both paths: SS entry at dose time + ALAG, pre-entry observations see the state before it."""
    m = get_model("2cmt_oral")
    p = {**params_for(m), "ALAG": 0.75}
    t = np.array([0.0, 0.5, 0.75, 1.0, 3.0, 11.0, 12.0])
    for reg in (Regimen((Dose(amt=100.0, ss=1, ii=12.0),)),
                Regimen((Dose(amt=100.0, ss=1, ii=12.0, duration=3.0, cmt="central"),))):
        ode = simulate(m, p, reg, t, method="ode", solver=TIGHT)["conc"].values
        exact = simulate(m, p, reg, t, method="exact")["conc"].values
        assert rel_err(ode, exact, floor=1e-9) <= 1e-7


@pytest.mark.parametrize("method", ["exact", "ode"])
def test_grad_of_ss_trough_is_analytic(method):
    """1-cmt IV bolus: C_ss,trough = D/V · e/(1 − e), e = exp(−k τ), k = CL/V, so
    dC/dCL = −(D/V) τ e / (1 − e)² / V."""
    m = get_model("1cmt_iv")
    D, V, tau, CL = 100.0, 25.0, 12.0, 3.0
    dose = _dose(m, Regimen((Dose(amt=D, ss=1, ii=tau),)))

    def trough(cl):
        outs, _, st = solve_subject(m, {"CL": cl, "V": V}, dose, jnp.array([0.0, 12.0]), method=method,
                                    solver=TIGHT, has_infusion=False)
        return outs["conc"][0], st

    (c, st), g = jax.jit(jax.value_and_grad(trough, has_aux=True))(CL)
    e = np.exp(-CL / V * tau)
    assert int(st) == status.OK
    assert rel_err(c, D / V * e / (1 - e)) <= 1e-9
    assert rel_err(g, -(D / V) * tau * e / (1 - e) ** 2 / V) <= 1e-7


def test_grad_of_ss_trough_mm_matches_central_differences():
    m = get_model("2cmt_oral_mm")
    p0 = {**params_for(m), "VMAX": 20.0}
    dose = _dose(m, Regimen((Dose(amt=150.0, ss=1, ii=24.0),)))

    def trough(log_vmax, log_ka):
        p = {**p0, "VMAX": jnp.exp(log_vmax), "KA": jnp.exp(log_ka)}
        outs, _, _ = solve_subject(m, p, dose, jnp.array([0.0, 4.0]), method="ode", solver=TIGHT,
                                   has_infusion=False)
        return outs["conc"][0]

    x = (jnp.log(20.0), jnp.log(p0["KA"]))
    g = jax.jit(jax.grad(trough, argnums=(0, 1)))(*x)
    f = jax.jit(trough)
    h = 1e-4
    fd = [(f(x[0] + h, x[1]) - f(x[0] - h, x[1])) / (2 * h), (f(x[0], x[1] + h) - f(x[0], x[1] - h)) / (2 * h)]
    # truncation O(h²) ~ 1e-8 relative; solver noise at rtol 1e-10 divided by h ~ 1e-6
    np.testing.assert_allclose(np.array(g), np.array(fd), rtol=1e-5)


def test_no_steady_state_is_a_status_not_an_exception():
    """1-cmt Michaelis–Menten: 1300 mg every 12 h exceeds VMAX·τ = 1200 mg, so amounts grow without
    bound and no steady state exists; the neighbour below capacity is unaffected."""
    p = {"V": 25.0, "VMAX": 100.0, "KM": 3.0}
    regs = [Regimen((Dose(amt=a, ss=1, ii=12.0),)) for a in (1300.0, 900.0)]
    ds = simulate("1cmt_iv_mm", p, regs, np.array([0.0, 6.0]), solver=TIGHT)
    assert int(ds["status"][0]) != status.OK
    assert int(ds["status"][1]) == status.OK
    ref = simulate("1cmt_iv_mm", p, regs[1], np.array([0.0, 6.0]), solver=TIGHT)
    assert rel_err(ds["conc"].values[1], ref["conc"].values[0]) <= 1e-12


def test_newton_step_budget_gives_max_steps():
    m = get_model("1cmt_iv_mm")
    reg = Regimen((Dose(amt=900.0, ss=1, ii=12.0),))
    p = {"V": 25.0, "VMAX": 100.0, "KM": 3.0}
    ds = simulate(m, p, reg, np.array([1.0]), solver=SolverOptions(ss_max_iter=1))
    assert int(ds["status"][0]) == status.MAX_STEPS
    assert int(simulate(m, p, reg, np.array([1.0]))["status"][0]) == status.OK


def test_subjects_without_ss_dose_in_an_ss_batch_are_untouched():
    m = get_model("1cmt_oral_mm+irm1")
    p = params_for(m)
    regs = [Regimen((Dose(amt=100.0, ss=1, ii=24.0),)), Regimen.single(100.0)]
    t = np.array([0.0, 2.0, 10.0])
    ds = simulate(m, p, regs, t, solver=TIGHT)
    alone = simulate(m, p, regs[1], t, solver=TIGHT)
    assert list(ds["status"].values) == [status.OK, status.OK]
    assert rel_err(ds["response"].values[1], alone["response"].values[0]) <= 1e-12
    assert ds["response"].values[0, 0] != alone["response"].values[0, 0]   # SS subject starts elsewhere


def test_exact_steady_state_with_a_dose_long_after_an_observation_matches_the_ode_path():
    # a record 1000 h after an observation: exp(-lambda * dt) overflowed (NaN) before the mask
    from insilico.dosing import Dose, Regimen
    from insilico.engine import simulate
    r = Regimen((Dose(amt=100.0, time=0.0, ss=1, ii=12.0), Dose(amt=100.0, time=1000.0)))
    times = [0.0, 6.0, 1001.0]
    a = simulate("1cmt_iv", {"CL": 10.0, "V": 10.0}, r, times, method="exact")
    b = simulate("1cmt_iv", {"CL": 10.0, "V": 10.0}, r, times, method="ode", solver=TIGHT)
    assert int(a.status.values[0]) == 0
    # analytic: SS trough 100/V e^{-k ii}/(1 - e^{-k ii}) with k = 1/h, then a fresh bolus at 1000 h
    k, ii = 1.0, 12.0
    ref = [10 * np.exp(-k * ii) / (1 - np.exp(-k * ii)), 10 * np.exp(-k * 6) / (1 - np.exp(-k * ii)),
           10 * np.exp(-k * 1.0)]
    np.testing.assert_allclose(a.conc.values[0], ref, rtol=1e-9)
    np.testing.assert_allclose(b.conc.values[0], ref, rtol=1e-6)
