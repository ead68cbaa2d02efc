"""Time-varying covariates in estimation: a covariate that changes within an ID drives the individual
parameters between records (LOCF by default, NOCB selectable).

References are independent of the estimation code: the 1-cmt oral model propagated in closed form
between breakpoints (NumPy, below) for the exact path, and `insilico.engine.simulate` given the
time-varying parameters directly (a ``TIME`` parameter table) for the ODE path. The simulation -
re-estimation check (FOCE-I recovers a CL ~ WT^0.75 exponent from weights that change mid-study) is
``benchmarks/bench_time_varying_covariates.py``, on `reestimation_data` below.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.estimation import build_problem, load_population_model

SPEC = """
model: {name: 1cmt_oral}
parameters:
  CL: {typical: 3.0, effects: [{covariate: WT, type: power, ref: 70, theta: 0.75}]}
  V: {typical: 30}
  KA: {typical: 1.2}
bsv: {parameters: [CL, V, KA], variance: [0.1, 0.1, 0.1]}
residual_error: {type: proportional, proportional: 0.1}
"""
ODE_SPEC = SPEC.replace("{name: 1cmt_oral}", "{name: 1cmt_oral_mixed, parameters: {VMAX: 2.0, KM: 5.0}}")
OBS = np.array([1.0, 4, 12, 26, 30, 36, 48])
DOSES = (0.0, 24.0)
ETA = np.array([0.2, -0.1, 0.15])


def _rows(sid, wt_before, wt_after, missing_at=None):
    """100 mg oral at 0 and 24 h, levels at OBS; WT ``wt_before`` up to the 12 h level and ``wt_after``
    from the 24 h dose on (LOCF: the change is at 24 h; NOCB: at 12 h)."""
    rows = []
    for t in sorted({*DOSES, *OBS}):
        wt = wt_before if t < 24 else wt_after
        dose = t in DOSES
        rows.append(dict(ID=sid, TIME=t, AMT=100.0 if dose else 0.0, EVID=1 if dose else 0, CMT=1 if dose else 2,
                         DV="." if dose else 1.0, WT="." if t == missing_at else wt))
    return rows


def _oral_reference(cl_segments, v, ka, times):
    """Concentration of the 1-cmt oral model (depot -> central, elimination CL/V) at ``times``: the two
    amounts carried in closed form across each interval between breakpoints (doses, CL changes,
    levels). ``cl_segments``: [(start h, CL)], CL holding from its start until the next one."""
    starts = np.array([s for s, _ in cl_segments])
    edges = sorted({0.0, *DOSES, *starts.tolist(), *times.tolist()})
    a = c = 0.0
    out = {}
    for t0, t1 in zip(edges[:-1], edges[1:]):
        if t0 in DOSES:
            a += 100.0
        out.setdefault(t0, c / v)
        k = cl_segments[int(np.searchsorted(starts, 0.5 * (t0 + t1), side="right")) - 1][1] / v
        tau = t1 - t0
        a, c = a * np.exp(-ka * tau), c * np.exp(-k * tau) + a * ka / (ka - k) * (np.exp(-k * tau) - np.exp(-ka * tau))
    out[edges[-1]] = c / v
    return np.array([out[t] for t in times])


def _cl(wt):
    return 3.0 * (wt / 70.0) ** 0.75 * np.exp(ETA[0])


def _predictions(problem):
    pop = problem.params.population(jnp.asarray(problem.params.initial))
    eta = jnp.broadcast_to(jnp.asarray(ETA), (problem.n_subjects, 3))
    outs, status = jax.jit(jax.vmap(lambda s, e: problem.predict_outputs(pop, s, e)))(problem.subjects(), eta)
    assert np.all(np.asarray(status) == 0)
    return np.asarray(outs["conc"])


@pytest.fixture(scope="module")
def data():
    return pd.DataFrame(_rows(1, 60.0, 90.0) + _rows(2, 75.0, 75.0))


@pytest.mark.parametrize("interpolation, change", [("locf", 24.0), ("nocb", 12.0)])
def test_exact_path_predictions_equal_the_closed_form_piecewise_solution(data, interpolation, change):
    spec, _ = load_population_model(SPEC, [f"covariate_interpolation={interpolation}"])
    problem = build_problem(spec, data)
    assert problem.method == "exact" and problem.nocb == (interpolation == "nocb")
    np.testing.assert_array_equal(problem.change_t[0], [change])      # only the one real change is kept
    pred = _predictions(problem)
    v, ka = 30.0 * np.exp(ETA[1]), 1.2 * np.exp(ETA[2])
    varying = _oral_reference([(0.0, _cl(60.0)), (change, _cl(90.0))], v, ka, OBS)
    constant = _oral_reference([(0.0, _cl(75.0))], v, ka, OBS)
    np.testing.assert_allclose(pred[0, :OBS.size], varying, rtol=1e-8)
    np.testing.assert_allclose(pred[1, :OBS.size], constant, rtol=1e-8)
    # the change matters: a constant WT of 60 would predict clearly higher levels after it
    assert np.max(np.abs(pred[0, 3:OBS.size] / _oral_reference([(0.0, _cl(60.0))], v, ka, OBS)[3:] - 1)) > 0.05


def test_ode_path_predictions_equal_simulate_with_time_varying_parameters(data):
    spec, _ = load_population_model(ODE_SPEC)
    problem = build_problem(spec, data)
    assert problem.method == "ode"
    pred = _predictions(problem)
    v, ka = 30.0 * np.exp(ETA[1]), 1.2 * np.exp(ETA[2])
    table = pd.DataFrame({"ID": [1, 1, 2], "TIME": [0.0, 24.0, 0.0], "CL": [_cl(60.0), _cl(90.0), _cl(75.0)],
                          "V": v, "KA": ka, "VMAX": 2.0, "KM": 5.0})
    regimen = Regimen(tuple(Dose(amt=100.0, time=t) for t in DOSES))
    ref = simulate("1cmt_oral_mixed", table, regimen, OBS, method="ode")["conc"].values
    np.testing.assert_allclose(pred[:, :OBS.size], ref, rtol=1e-8)


def test_constant_covariates_keep_the_time_invariant_problem():
    df = pd.DataFrame(_rows(1, 60.0, 60.0) + _rows(2, 75.0, 75.0))
    df["SEX"] = [0] * 9 + [1] * 9           # changes between IDs, not within: not time-varying
    problem = build_problem(load_population_model(SPEC)[0], df)
    assert problem.change_t is None and "change_t" not in problem.subjects()
    assert problem.covariates["WT"].shape == (2,)
    np.testing.assert_array_equal(problem.covariates["WT"], [60.0, 75.0])


def test_a_subject_missing_its_time_varying_covariate_on_a_record_is_excluded_naming_the_record():
    df = pd.DataFrame(_rows(1, 60.0, 90.0, missing_at=26.0) + _rows(2, 75.0, 80.0))
    problem = build_problem(load_population_model(SPEC)[0], df)
    assert list(problem.ids) == [2]
    assert "WT is missing" in problem.excluded[1] and "TIME 26 h (data row 6)" in problem.excluded[1]
    assert problem.change_t.shape == (1, 1)
    # when only the excluded subject's values change, the others keep the time-invariant problem
    df = pd.DataFrame(_rows(1, 60.0, 60.0, missing_at=26.0) + _rows(2, 75.0, 75.0))
    problem = build_problem(load_population_model(SPEC)[0], df)
    assert list(problem.ids) == [2] and problem.change_t is None
    np.testing.assert_array_equal(problem.covariates["WT"], [75.0])


def test_a_categorical_covariate_may_change_within_an_id():
    spec = SPEC.replace("{covariate: WT, type: power, ref: 70, theta: 0.75}",
                        "{covariate: RENAL, type: categorical, multipliers: {normal: 1.0, impaired: 0.5}}")
    df = pd.DataFrame(_rows(1, 0, 0) + _rows(2, 0, 0)).rename(columns={"WT": "RENAL"})
    df["RENAL"] = np.where((df.ID == 1) & (df.TIME >= 24), "impaired", "normal")
    problem = build_problem(load_population_model(spec)[0], df)
    np.testing.assert_array_equal(problem.change_t, [[24.0], [0.0]])      # ID 2: one inert change at its start
    np.testing.assert_array_equal(problem.covariates["RENAL"], [[0, 1], [0, 0]])     # codes of normal, impaired


def test_covariate_interpolation_is_checked():
    with pytest.raises(SpecError, match="covariate_interpolation"):
        load_population_model(SPEC, ["covariate_interpolation=linear"])

