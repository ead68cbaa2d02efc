"""Parameters that change over time: time-varying parameters (LOCF/NOCB) and inter-occasion variability.

References: the analytic piecewise 1-cmt solution, the other engine path, occasion-by-occasion
simulations with the state carried over by hand, and central finite differences.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm

from insilico.dosing import Dose, Regimen, dose_table, read_nonmem
from insilico.engine import SolverOptions, compile_count, simulate, solve_subject
from insilico.errors import SpecError
from insilico.models import get_model

from ._helpers import TIGHT, rel_err

D, V1, V2, CL1, CL2, TC = 100.0, 20.0, 25.0, 2.0, 6.0, 5.0
OBS = np.array([0.5, 2.0, 5.0, 7.0, 12.0, 24.0])


def _piecewise_1cmt(t, doses_at_0=D, cl1=CL1, cl2=CL2, tc=TC, v_before=V1, v_after=V1, v_at=None):
    """Analytic 1-cmt IV bolus with CL (and V) changing at tc: A(t) = D e^{-CL1/V1 t} before tc, then
    A(tc) e^{-CL2/V2 (t - tc)}; concentration A/V with the V in effect at t (LOCF: the new V at tc)."""
    t = np.asarray(t, float)
    a_tc = doses_at_0 * np.exp(-cl1 / v_before * tc)
    amount = np.where(t < tc, doses_at_0 * np.exp(-cl1 / v_before * t), a_tc * np.exp(-cl2 / v_after * (t - tc)))
    return amount / np.where(t < tc, v_before, v_after)


@pytest.mark.parametrize("method, tol", [("exact", 1e-10), ("ode", 1e-6)])
def test_clearance_and_volume_change_match_the_analytic_piecewise_solution(method, tol):
    table = pd.DataFrame({"TIME": [0.0, TC], "CL": [CL1, CL2], "V": [V1, V2]})
    ds = simulate("1cmt_iv", table, Regimen((Dose(amt=D, time=0.0),)), OBS, method=method, solver=TIGHT)
    assert int(ds.status[0]) == 0
    assert rel_err(ds.conc.values[0], _piecewise_1cmt(OBS, v_after=V2)) < tol


BASE_2CMT = dict(V1=30.0, Q=8.0, V2=60.0, F=0.8, ALAG=0.0)
TABLE_2CMT = pd.DataFrame({"ID": [1, 1, 1, 2, 2, 2], "TIME": [0.0, 10.0, 30.0, 0.0, 6.0, 40.0],
                           "CL": [4.0, 8.0, 3.0, 5.0, 2.5, 7.0], "KA": [1.3, 0.7, 0.7, 1.0, 1.0, 2.0], **BASE_2CMT})


def test_exact_equals_ode_for_two_cmt_oral_with_two_changes():
    """Oral doses every 12 h and an infusion running across the change at 40 h (subject 2)."""
    reg = Regimen((Dose(amt=100.0, time=0.0, ii=12.0, addl=4), Dose(amt=50.0, time=36.0, cmt="central", rate=10.0)))
    t = np.linspace(0.0, 60.0, 16)
    ex = simulate("2cmt_oral", TABLE_2CMT, reg, t, method="exact")
    ode = simulate("2cmt_oral", TABLE_2CMT, reg, t, method="ode", solver=TIGHT)
    assert (ex.status.values == 0).all() and (ode.status.values == 0).all()
    assert rel_err(ex.conc.values, ode.conc.values, floor=1e-6) < 1e-6


def test_steady_state_dose_uses_the_parameters_in_effect_at_its_time():
    """Exact path: SS=1 at 0 h then a change at 10 h; before the change the subject equals a constant one
    (the time-invariant exact path's steady state), after it the state is carried with the new parameters."""
    reg = Regimen((Dose(amt=100.0, time=0.0, ss=1, ii=12.0), Dose(amt=100.0, time=12.0, ii=12.0, addl=2)))
    t = np.linspace(0.0, 9.0, 10)
    ex = simulate("2cmt_oral", TABLE_2CMT.iloc[:3], reg, np.r_[t, 11.0], method="exact", keep_states=True)
    const = simulate("2cmt_oral", {"CL": 4.0, "KA": 1.3, **BASE_2CMT}, reg, np.r_[t, 10.0], method="exact",
                     keep_states=True)
    assert rel_err(ex.conc.values[0, :-1], const.conc.values[0, :-1]) < 1e-12
    k_after = np.asarray(get_model("2cmt_oral").system_matrix({"CL": 8.0, "KA": 0.7, **BASE_2CMT}))
    expected = expm(k_after * 1.0) @ const.amount.values[0, -1]     # no dose between 10 and 11 h
    assert rel_err(ex.amount.values[0, -1], expected) < 1e-10


def _nonmem_table(cl_column):
    return pd.DataFrame({"ID": 1, "TIME": [0.0, 4.0, 8.0, 12.0], "AMT": [D, 0, 0, 0], "EVID": [1, 0, 0, 0],
                         "DV": [0.0, 1.0, 1.0, 1.0], "CL": cl_column, "V": V1})


@pytest.mark.parametrize("interpolation, change", [("locf", 8.0), ("nocb", 4.0)])
def test_locf_and_nocb_on_a_nonmem_table(interpolation, change):
    """CL is 2 on the records at 0 and 4 h, 6 on those at 8 and 12 h. LOCF: CL = 6 from 8 h on; NOCB (NONMEM's
    advance with the values of the record ending the interval): CL = 6 over (4, 8] already."""
    data = read_nonmem(_nonmem_table([CL1, CL1, CL2, CL2]), "1cmt_iv")
    assert data.varying == ("CL",)
    ds = simulate("1cmt_iv", {"CL": 99.0, "V": V1}, data, method="exact", covariate_interpolation=interpolation)
    assert rel_err(ds.conc.values[0], _piecewise_1cmt(data.times[0], tc=change)) < 1e-10


def test_nocb_point_values_are_the_records_own():
    """A V change: under NOCB the observation at 4 h (V = 20 on its record) uses V = 20, under LOCF too; at
    8 h NOCB uses the 8 h record's V, LOCF as well — the conventions differ only between records."""
    frame = pd.DataFrame({"TIME": [0.0, 4.0, 8.0], "CL": CL1, "V": [V1, V1, V2]})
    reg = Regimen((Dose(amt=D, time=0.0),))
    t = np.array([4.0, 6.0, 8.0])
    locf = simulate("1cmt_iv", frame, reg, t, method="exact", covariate_interpolation="locf").conc.values[0]
    nocb = simulate("1cmt_iv", frame, reg, t, method="exact", covariate_interpolation="nocb").conc.values[0]
    k1, k2 = CL1 / V1, CL1 / V2
    a4 = D * np.exp(-k1 * 4.0)
    np.testing.assert_allclose(locf, [a4 / V1, a4 * np.exp(-2 * k1) / V1, a4 * np.exp(-4 * k1) / V2], rtol=1e-12)
    np.testing.assert_allclose(nocb, [a4 / V1, a4 * np.exp(-2 * k2) / V2, a4 * np.exp(-4 * k2) / V2], rtol=1e-12)


def test_bad_interpolation_and_unsorted_times_are_refused():
    reg = Regimen((Dose(amt=D, time=0.0),))
    frame = pd.DataFrame({"ID": [1, 1], "TIME": [5.0, 0.0], "CL": [CL1, CL2], "V": V1})
    with pytest.raises(SpecError) as e:
        simulate("1cmt_iv", frame, reg, OBS)
    assert e.value.field == "parameters.TIME"
    with pytest.raises(SpecError) as e:
        simulate("1cmt_iv", frame.iloc[::-1], reg, OBS, covariate_interpolation="linear")
    assert e.value.field == "covariate_interpolation"


# ------------------------------------------------------------------------------------------------
# inter-occasion variability
# ------------------------------------------------------------------------------------------------

OCC_START = 48.0
CL_OCC = np.array([[4.0, 9.0], [6.0, 2.0]])      # subjects x occasions


def _by_occasion(m, reg_doses, t):
    """Reference: occasion 1 simulated with CL_occ[:, 0], occasion 2 as a fresh simulation with CL_occ[:, 1]
    started from the carried amounts (boluses into depot and central at its start) and the later doses."""
    out = np.empty((2, t.size))
    for s in range(2):
        p1 = {"CL": CL_OCC[s, 0], "V": 30.0, "KA": 1.1}
        first = t < OCC_START
        ds1 = simulate(m, p1, Regimen(tuple(reg_doses)), np.r_[t[first], OCC_START], method="exact",
                       keep_states=True)
        out[s, first] = ds1.conc.values[0, :-1]
        amount = ds1.amount.values[0, -1]
        later = tuple(Dose(amt=d.amt, time=d.time - OCC_START) for d in reg_doses if d.time >= OCC_START)
        carried = (Dose(amt=float(amount[0]), time=0.0, cmt="depot"), Dose(amt=float(amount[1]), time=0.0,
                                                                           cmt="central"))
        ds2 = simulate(m, {**p1, "CL": CL_OCC[s, 1]}, Regimen(carried + later), t[~first] - OCC_START,
                       method="exact", obs_after_dose=True)
        out[s, ~first] = ds2.conc.values[0]
    return out


def test_occasion_k_uses_p_occ_k_by_start_times_and_by_occ_column():
    m = get_model("1cmt_oral")
    doses = [Dose(amt=100.0, time=24.0 * k) for k in range(4)]
    t = np.array([1.0, 12.0, 30.0, 47.0, 50.0, 60.0, 80.0])
    ref = _by_occasion(m, doses, t)
    params = {"CL": np.array([5.0, 5.0]), "V": 30.0, "KA": 1.1, "CL_occ": CL_OCC}
    ds = simulate(m, params, [Regimen(tuple(doses))] * 2, t, occasions=[0.0, OCC_START])
    assert rel_err(ds.conc.values, ref) < 1e-10
    rows = [dict(ID=s + 1, TIME=24.0 * k, AMT=100.0, EVID=1, OCC=1 + (24.0 * k >= OCC_START))
            for s in range(2) for k in range(4)]
    rows += [dict(ID=s + 1, TIME=x, AMT=0.0, EVID=0, OCC=1 + (x >= OCC_START)) for s in range(2) for x in t]
    rows = pd.DataFrame(rows).sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False], kind="stable")
    data = read_nonmem(rows.reset_index(drop=True), m)
    by_occ = simulate(m, params, data, method="exact")
    assert rel_err(by_occ.conc.values, ref) < 1e-10


@pytest.mark.parametrize("occasions, field", [([0.0, 48.0, 24.0], "occasions"), ([0.0, 24.0, 48.0], "occasions")])
def test_bad_occasions_are_refused(occasions, field):
    """Not increasing; more occasions than occasion values (CL_occ has 2)."""
    with pytest.raises(SpecError) as e:
        simulate("1cmt_iv", {"CL": 2.0, "V": V1, "CL_occ": CL_OCC}, Regimen((Dose(amt=D, time=0.0),)), OBS,
                 occasions=occasions)
    assert e.value.field == field


def test_per_occasion_values_without_occasions_are_refused():
    with pytest.raises(SpecError, match="no occasions are defined") as e:
        simulate("1cmt_iv", {"CL": 2.0, "V": V1, "CL_occ": CL_OCC}, Regimen((Dose(amt=D, time=0.0),)), OBS)
    assert e.value.field == "occasions"


# ------------------------------------------------------------------------------------------------
# compilation and gradients
# ------------------------------------------------------------------------------------------------

def test_changed_number_of_changes_within_a_bucket_does_not_recompile():
    reg = Regimen((Dose(amt=D, time=0.0),))

    def run(change_times):
        n = len(change_times) + 1
        frame = pd.DataFrame({"TIME": [0.0, *change_times], "CL": np.linspace(1.0, 3.0, n), "V": V1})
        return simulate("1cmt_iv", frame, reg, OBS, method="exact")

    run([5.0])
    before = compile_count()
    three = run([2.0, 5.0, 9.0])       # 1 and 3 changes share the bucket of 4
    assert compile_count() == before
    assert rel_err(three.conc.values[0, :2], _piecewise_1cmt(OBS[:2], cl1=1.0, tc=2.0)) < 1e-12


def test_subjects_without_changes_take_the_plain_path():
    """In a batch where one subject's parameters change, the constant subject equals a plain simulation
    bit for bit (it is solved by the time-invariant code path)."""
    frame = pd.DataFrame({"ID": [1, 1, 2, 2], "TIME": [0.0, TC, 0.0, TC], "CL": [CL1, CL2, CL1, CL1], "V": V1})
    reg = Regimen((Dose(amt=D, time=0.0),))
    mixed = simulate("1cmt_iv", frame, reg, OBS, method="exact")
    plain = simulate("1cmt_iv", {"CL": CL1, "V": V1}, reg, OBS, method="exact")
    np.testing.assert_array_equal(mixed.conc.values[1], plain.conc.values[0])
    assert rel_err(mixed.conc.values[0], _piecewise_1cmt(OBS)) < 1e-10


@pytest.mark.parametrize("method", ["exact", "ode"])
def test_gradient_through_a_change_matches_finite_differences(method):
    m = get_model("1cmt_iv")
    dose = tuple(jnp.asarray(getattr(dose_table(Regimen.repeated(100.0, 12.0, 2), m), f)[0])
                 for f in ("time", "amt", "rate", "cmt", "ss", "ii"))
    t, change = jnp.array([3.0, 9.0, 20.0]), jnp.array([TC])
    solver = SolverOptions(rtol=1e-10, atol=1e-12)

    @jax.jit
    def conc(log_cl):   # CL before and after the change
        p = {"CL": jnp.exp(log_cl), "V": jnp.full(2, V1)}
        return solve_subject(m, p, dose, t, method, solver=solver, has_infusion=False, has_ss=0,
                             change_t=change)[0]["conc"][-1]

    x = jnp.log(jnp.array([CL1, CL2]))
    g = jax.jit(jax.grad(conc))(x)
    h = 1e-5
    fd = np.array([(conc(x.at[i].add(h)) - conc(x.at[i].add(-h))) / (2 * h) for i in range(2)])
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.abs(np.asarray(g)) > 1e-3)
    assert rel_err(g, fd) < 1e-6



def test_time_varying_data_column_and_occasions_combine():
    """NONMEM data whose V changes at 8 h and whose OCC changes at 4 h, with CL by occasion: equal to one
    hand-merged TIME table (CL changes at 4 h, V at 8 h)."""
    data = read_nonmem(pd.DataFrame({"ID": 1, "TIME": [0.0, 4.0, 8.0, 12.0], "AMT": [D, 0, 0, 0],
                                     "EVID": [1, 0, 0, 0], "DV": 1.0, "OCC": [1, 2, 2, 2], "V": [V1, V1, V2, V2]}),
                       "1cmt_iv")
    ds = simulate("1cmt_iv", {"CL": CL1, "CL_occ": np.array([[CL1, CL2]])}, data, method="exact")
    merged = pd.DataFrame({"TIME": [0.0, 4.0, 8.0], "CL": [CL1, CL2, CL2], "V": [V1, V1, V2]})
    by_hand = simulate("1cmt_iv", merged, Regimen((Dose(amt=D, time=0.0),)), data.times[0], method="exact")
    np.testing.assert_allclose(ds.conc.values, by_hand.conc.values, rtol=1e-13)
    a12 = D * np.exp(-CL1 / V1 * 4.0 - CL2 / V1 * 4.0 - CL2 / V2 * 4.0)     # analytic, three intervals
    assert rel_err(ds.conc.values[0, -1], a12 / V2) < 1e-12
