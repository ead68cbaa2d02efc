"""One battery over the built-in models: mass balance (every PK model), exact vs ODE (every linear
model), vmap vs loop and chunking (one model per engine path)."""
import jax.numpy as jnp
import numpy as np
import pytest

from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.models import Model, builtin_model_names, get_model

from ._helpers import TIGHT, params_for, rel_err

ALL = builtin_model_names()
LINEAR = [n for n in ALL if get_model(n).is_linear]
PK = [n for n in ALL if "+" not in n]
T = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 13.0, 24.0, 36.0])
REG = Regimen((Dose(amt=100.0, time=0.0), Dose(amt=50.0, time=12.0)))


def with_elimination_accumulator(m: Model) -> Model:
    """The model plus a state collecting everything that leaves the body."""
    def rhs(t, y, p):
        dy = m.rhs(t, y[:-1], p)
        return jnp.concatenate([dy, -jnp.sum(dy, keepdims=True)])
    return Model(name=m.name + "+acc", states=m.states + ("eliminated",), parameters=m.parameters,
                 rhs=rhs, outputs=m.outputs, dose_compartments=m.dose_compartments,
                 default_dose_compartment=m.default_dose_compartment,
                 bioavailability=None if m.bioavailability is None else
                 (lambda p: jnp.concatenate([m.bioavailability(p), jnp.ones(1)])),
                 lag=None if m.lag is None else (lambda p: jnp.concatenate([m.lag(p), jnp.zeros(1)])))


@pytest.mark.parametrize("name", PK)
def test_mass_balance(name):
    m = get_model(name)
    p = params_for(m)
    ds = simulate(with_elimination_accumulator(m), p, REG, T, method="ode", solver=TIGHT, keep_states=True)
    total = ds["amount"].values[0].sum(axis=-1)
    dosed = np.where(T <= 12.0, 100.0, 150.0) * p.get("F", 1.0)  # the 12 h sample is pre-dose
    assert int(ds["status"][0]) == 0
    assert rel_err(total, dosed) <= 1e-8


@pytest.mark.parametrize("name", LINEAR)
def test_exact_matches_ode(name):
    m = get_model(name)
    p = params_for(m, n=3)
    ex = simulate(m, p, REG, T, method="exact")
    od = simulate(m, p, REG, T, method="ode", solver=TIGHT)
    for o in m.output_names:
        scale = np.abs(od[o].values).max()
        assert np.max(np.abs(ex[o].values - od[o].values)) <= 1e-6 * scale, o
    assert (ex["status"] == 0).all() and (od["status"] == 0).all()


# vmap vs loop and chunking are properties of the engine's batching, not of a model's equations:
# one model per engine path (exact linear, ODE nonlinear, mixed elimination, transit absorption,
# TMDD, metabolite, PD compositions with states and with an effect compartment); every model's
# equations are checked above (mass balance, exact vs ODE) and in tests/models.
ENGINE_PATHS = ["2cmt_oral", "3cmt_iv", "1cmt_oral_mm", "2cmt_iv_mixed", "1cmt_transit3", "1cmt_iv_tmdd",
                "2cmt_oral+met1", "1cmt_oral+friberg", "1cmt_oral+irm2", "2cmt_oral+ke0+sigmoid_emax"]


def test_engine_paths_cover_the_library():
    assert set(ENGINE_PATHS) <= set(ALL)
    assert {get_model(n).is_linear for n in ENGINE_PATHS} == {True, False}


@pytest.mark.parametrize("name", ENGINE_PATHS)
def test_vmap_equals_loop_and_chunking(name):
    m = get_model(name)
    p = params_for(m, n=5, seed=1)
    batch = simulate(m, p, REG, T)
    assert (batch["status"] == 0).all()
    for i in (0, 3):
        one = simulate(m, {k: (v[i] if np.ndim(v) else v) for k, v in p.items()}, REG, T)
        for o in m.output_names:
            np.testing.assert_allclose(one[o].values[0], batch[o].values[i], rtol=1e-12, atol=1e-14)
    chunked = simulate(m, p, REG, T, chunk_size=2)
    for o in m.output_names:
        np.testing.assert_allclose(chunked[o].values, batch[o].values, rtol=1e-12, atol=1e-14)
