"""Shape buckets: a new number of doses or observation times reuses compiled code, and padding is inert.

The reference for "inert" is an unpadded solve: `solve_subject` vmapped and jitted over the exact
input arrays (no padded slots, no padded times): equal bit for bit on the ODE path, to 1e-14
relative on the exact path (a sum over records may round differently when it has more zero terms).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from insilico.batching import bucket_size
from insilico.dosing import Dose, DoseTable, Regimen, dose_table
from insilico.engine import SolverOptions, compile_count, simulate, solve_subject
from insilico.models import get_model

from ._helpers import params_for

FIELDS = ("time", "amt", "rate", "cmt", "ss", "ii")
SOLVER = SolverOptions()


def _unpadded(model, p, table: DoseTable, t, method, obs_after_dose=False):
    """Outputs of every subject solved on exactly the given arrays (no bucket padding)."""
    has_inf, has_ss = bool(np.any(table.rate > 0)), bool(np.any(table.ss > 0))

    def one(pp, dose, tt):
        return solve_subject(model, pp, dose, tt, method, obs_after_dose, SOLVER, has_inf, has_ss)[0]

    shared = np.ndim(t) == 1
    fn = jax.jit(jax.vmap(one, in_axes=(0, 0, None if shared else 0)))
    full = model.validate_params(p, n=table.n_subjects)
    out = fn({k: jnp.asarray(v) for k, v in full.items()},
             tuple(jnp.asarray(getattr(table, f)) for f in FIELDS), jnp.asarray(t))
    return {k: np.asarray(v) for k, v in out.items()}


def test_bucket_rule():
    assert [bucket_size(n, 8) for n in (1, 3, 5, 8, 9, 16, 17)] == [8, 8, 8, 8, 16, 16, 32]
    assert [bucket_size(n, 16, per_octave=4) for n in (10, 13, 16, 17, 21, 169, 256, 257)] == [
        16, 16, 16, 20, 24, 192, 256, 320]
    assert bucket_size(600, 8, 512) == 512
    for n in range(1, 3000):                      # padding within 25 %, a multiple of the octave's step
        b = bucket_size(n, 16, per_octave=4)
        assert n <= b <= max(16, 1.25 * n) + 1e-9
    with pytest.raises(ValueError):
        bucket_size(10, per_octave=3)


@pytest.mark.parametrize("model_name, method", [("1cmt_oral", "exact"), ("1cmt_oral_mm", "ode")])
def test_new_dose_count_and_time_count_do_not_recompile(model_name, method):
    m = get_model(model_name)
    p = params_for(m, n=4, seed=1)
    t10 = np.linspace(0.5, 40.0, 10)
    simulate(m, p, Regimen.repeated(100.0, 12.0, 3), t10, method=method)
    before = compile_count()
    simulate(m, p, Regimen.repeated(100.0, 8.0, 5), t10, method=method)             # 3 -> 5 doses
    simulate(m, p, Regimen.repeated(50.0, 12.0, 3), np.linspace(0.25, 36.0, 13), method=method)  # 10 -> 13 times
    simulate(m, p, [Regimen.repeated(100.0, 12.0, k) for k in (1, 2, 6, 8)], t10, method=method)  # ragged
    assert compile_count() == before
    simulate(m, p, Regimen.repeated(100.0, 12.0, 9), t10, method=method)             # next bucket (16 slots)
    assert compile_count() == before + 1


@pytest.mark.parametrize("model_name, method", [("1cmt_oral", "exact"), ("1cmt_oral_mm", "ode")])
@pytest.mark.parametrize("regimen", [
    Regimen.repeated(100.0, 12.0, 3),
    Regimen((Dose(amt=100.0, ss=1, ii=12.0), Dose(amt=50.0, time=12.0), Dose(amt=50.0, time=24.0))),
    Regimen((Dose(amt=100.0, cmt="depot"), Dose(amt=200.0, time=6.0, duration=2.0, cmt="central"),
             Dose(amt=100.0, time=20.0, duration=1.0, cmt="central"))),
], ids=["bolus", "steady-state", "infusion"])
def test_padding_is_inert(model_name, method, regimen):
    """Padded dose slots (3 -> 8) and times (11 -> 16) leave every number unchanged, with a lag
    time (the padded slot enters with the same ALAG as a real dose) and a pre-dose sample."""
    m = get_model(model_name)
    p = {**params_for(m, n=5, seed=2), "ALAG": 0.4}
    t = np.array([0.5, 2.0, 6.0, 6.4, 9.0, 12.0, 12.4, 20.0, 24.0, 30.0, 47.0])
    got = simulate(m, p, regimen, t, method=method)
    assert got.sizes["time"] == t.size and (got["status"].values == 0).all()
    ref = _unpadded(m, p, dose_table(regimen, m, 5), t, method)
    for name in m.output_names:
        _same(got[name].values, ref[name], method)


def _same(got, ref, method):
    """Bit for bit on the ODE path (padding adds zero-length intervals only); on the exact path
    the steady-state sum over records may round differently with more (zero) terms: 1e-14."""
    if method == "ode":
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-14, atol=0)


@pytest.mark.parametrize("method", ["exact", "ode"])
def test_ragged_schedules_per_subject_times(method):
    """Subjects with 1, 4 and 7 doses and 14 times of their own: each equals its own solo solve
    at its first 3, 9 and 14 times (the shorter rows carry inert slots)."""
    m = get_model("2cmt_oral")
    p = params_for(m, n=3, seed=4)
    regs = [Regimen.single(300.0), Regimen.repeated(100.0, 12.0, 4), Regimen.repeated(80.0, 6.0, 7)]
    lengths = (3, 9, 14)
    rows = [np.linspace(0.5 + i, 50.0, k) for i, k in enumerate(lengths)]
    grid = np.array([np.concatenate([r, r[-1] + np.arange(1, 15 - r.size)]) for r in rows])  # (3, 14)
    got = simulate(m, p, regs, grid, method=method, keep_states=True)
    assert got["amount"].shape == (3, 14, m.n_states)
    for i, (reg, r) in enumerate(zip(regs, rows)):
        solo = _unpadded(m, {k: np.broadcast_to(v, 3)[i:i + 1] for k, v in p.items()}, dose_table(reg, m, 1), r,
                         method)
        # a batch of one is other compiled code than a batch of eight: equal to rounding
        np.testing.assert_allclose(got["conc"].values[i, :r.size], solo["conc"][0], rtol=1e-14, atol=0)


def test_padded_table_slots():
    m = get_model("1cmt_oral")
    table = dose_table([Regimen.repeated(100.0, 12.0, 3), Regimen((Dose(amt=5.0, time=2.0, cmt="central"),))], m)
    assert table.n_events == 3
    # the second subject's short row is filled with inert copies of its last dose
    np.testing.assert_array_equal(table.time[1], [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(table.amt[1], [5.0, 0.0, 0.0])
    np.testing.assert_array_equal(table.cmt[1], [1, 1, 1])
    wide = table.padded(8)
    assert wide.n_events == 8 and wide.padded(8) is wide
    np.testing.assert_array_equal(wide.time[:, 3:], np.repeat(table.time[:, -1:], 5, axis=1))
    np.testing.assert_array_equal(wide.cmt[:, 3:], np.repeat(table.cmt[:, -1:], 5, axis=1))
    for f in ("amt", "rate", "ss", "ii"):
        assert not getattr(wide, f)[:, 3:].any()
        np.testing.assert_array_equal(getattr(wide, f)[:, :3], getattr(table, f))
    assert wide.ss.dtype == table.ss.dtype and wide.cmt.dtype == table.cmt.dtype
    with pytest.raises(ValueError):
        table.padded(2)
