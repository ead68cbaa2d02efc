"""Compilation reuse, gradients, per-subject status, user models, stiff solver, NONMEM import."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from insilico.dosing import Regimen, dose_table
from insilico.engine import SolverOptions, compile_count, simulate, solve_subject, status
from insilico.models import Model, Output, Parameter, get_model

from ._helpers import TIGHT, params_for, rel_err

T = np.linspace(0.5, 24, 12)


@pytest.mark.parametrize("method", ["exact", "ode"])
def test_new_parameters_and_n_do_not_recompile(method):
    m = get_model("2cmt_oral")
    reg = Regimen.repeated(100.0, 12.0, 2)
    simulate(m, params_for(m, n=5), reg, T, method=method)
    before = compile_count()
    simulate(m, params_for(m, n=7, seed=3), reg, T, method=method)   # same bucket (8)
    simulate(m, params_for(m, n=3, seed=4), reg, T, method=method)
    assert compile_count() == before
    big = params_for(m, n=1500, seed=5)                                 # several full chunks
    simulate(m, big, reg, T, method=method, chunk_size=64)
    after_first_big = compile_count()
    simulate(m, params_for(m, n=1000, seed=6), reg, T, method=method, chunk_size=64)
    assert compile_count() == after_first_big


@pytest.mark.parametrize("method", ["exact", "ode"])
def test_gradient_matches_finite_differences(method):
    m = get_model("2cmt_oral")
    p0 = params_for(m)
    dose = tuple(jnp.asarray(getattr(dose_table(Regimen.repeated(100.0, 12.0, 2), m), f)[0])
                 for f in ("time", "amt", "rate", "cmt", "ss", "ii"))
    t = jnp.array([1.0, 6.0, 18.0])

    def conc_at_18(logcl, logka):
        p = {**p0, "CL": jnp.exp(logcl), "KA": jnp.exp(logka)}
        outs, _, _ = solve_subject(m, p, dose, t, method=method, solver=TIGHT,
                                   has_infusion=False, has_ss=False)
        return outs["conc"][2]

    x = (jnp.log(p0["CL"]), jnp.log(p0["KA"]))
    g = jax.jit(jax.grad(conc_at_18, argnums=(0, 1)))(*x)
    conc_at_18 = jax.jit(conc_at_18)
    h = 1e-5
    fd = [(conc_at_18(x[0] + h, x[1]) - conc_at_18(x[0] - h, x[1])) / (2 * h),
          (conc_at_18(x[0], x[1] + h) - conc_at_18(x[0], x[1] - h)) / (2 * h)]
    # central differences: truncation O(h^2) ~ 1e-10 relative; solver noise at rtol 1e-10
    np.testing.assert_allclose(np.array(g), np.array(fd), rtol=1e-5)


def test_one_failing_subject_does_not_abort_the_batch():
    m = get_model("1cmt_oral")
    p = {"CL": np.array([3.0, 3.0, 3.0]), "V": 25.0, "KA": np.array([1.0, 5e4, 1.2])}
    ds = simulate(m, p, Regimen.single(100.0), T, method="ode",
                  solver=SolverOptions(rtol=1e-8, atol=1e-10, max_steps=64))
    assert list(ds["status"].values) == [status.OK, status.MAX_STEPS, status.OK]
    ref = simulate(m, {**p, "KA": np.array([1.0, 1.0, 1.2])}, Regimen.single(100.0), T, method="exact")
    assert rel_err(ds["conc"].values[[0, 2]], ref["conc"].values[[0, 2]]) <= 1e-6


def test_user_defined_model_equals_builtin():
    def rhs(t, y, p):
        gut, cent = y
        return jnp.stack([-p["KA"] * gut, p["KA"] * gut - p["CL"] / p["V"] * cent])

    user = Model(
        name="my_oral", states=("gut", "cent"),
        parameters=(Parameter("CL", "L/h", "clearance"), Parameter("V", "L", "volume"),
                    Parameter("KA", "1/h", "absorption rate")),
        rhs=rhs, outputs=(Output("cp", "mg/L", "plasma concentration", lambda y, p: y[..., 1] / p["V"]),),
        dose_compartments=("gut", "cent"),
    )
    p = dict(CL=3.0, V=25.0, KA=0.9)
    got = simulate(user, p, Regimen.repeated(100.0, 8.0, 3), T, solver=TIGHT)
    ref = simulate("1cmt_oral", p, Regimen.repeated(100.0, 8.0, 3), T)
    assert got.attrs["method"] == "ode"
    assert rel_err(got["cp"].values, ref["conc"].values) <= 1e-6
    assert got["cp"].attrs["units"] == "mg/L"


def test_stiff_solver_agrees():
    m = get_model("1cmt_oral_mm+irm1")
    p = params_for(m, n=2)
    a = simulate(m, p, Regimen.repeated(100.0, 24.0, 3), T, solver=TIGHT)
    b = simulate(m, p, Regimen.repeated(100.0, 24.0, 3), T,
                 solver=SolverOptions(solver="kvaerno5", rtol=1e-10, atol=1e-12))
    for o in ("conc", "response"):
        assert rel_err(b[o].values, a[o].values, floor=1e-9) <= 1e-6


def test_indirect_response_baseline_is_kin_over_kout():
    m = get_model("1cmt_oral+irm3")
    p = params_for(m)
    ds = simulate(m, p, Regimen.single(0.0), T)
    np.testing.assert_allclose(ds["response"].values, p["KIN"] / p["KOUT"], rtol=1e-10)


def test_dataset_layout_and_units():
    ds = simulate("2cmt_oral+emax", params_for(get_model("2cmt_oral+emax"), n=4), Regimen.single(100.0),
                  T, keep_states=True)
    assert ds["conc"].dims == ("subject", "time")
    assert ds["conc"].attrs["units"] == "mg/L" and ds["time"].attrs["units"] == "h"
    assert ds["amount"].dims == ("subject", "time", "state")
    assert list(ds["state"].values) == ["depot", "central", "periph1"]
    assert ds["status"].dtype == np.int8


def test_per_subject_times_and_regimens():
    m = get_model("1cmt_iv")
    times = np.array([[1.0, 2.0, 3.0], [0.5, 5.0, 10.0]])
    regs = [Regimen.single(100.0), Regimen.single(50.0, 1.0)]
    ds = simulate(m, dict(CL=3.0, V=25.0), regs, times)
    k = 3.0 / 25.0
    np.testing.assert_allclose(ds["conc"].values[0], 4 * np.exp(-k * times[0]), rtol=1e-10)
    np.testing.assert_allclose(ds["conc"].values[1], np.where(times[1] > 1, 2 * np.exp(-k * (times[1] - 1)), 0),
                               rtol=1e-10)
    assert ds["time"].dims == ("subject", "obs")
