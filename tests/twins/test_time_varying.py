"""Twins with time-varying covariates (CRCL changing mid-history, LOCF) against independent
references: a dense grid of the exact posterior of a one-eta 1-cmt IV bolus model whose CL
switches at the change time (closed form), the estimation machinery's individual objective on
the same NONMEM data minimised by a second optimiser (SciPy), the closed-form forecast after
the change, and per-patient updates for a fleet update with mixed constant/varying patients."""
from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest
import scipy.optimize

from insilico import twins
from insilico.errors import SpecError
from insilico.estimation import build_problem, individual_objective, load_population_model
from insilico.store import read_twin_versions
from tests.twins.conftest import PRIOR

CL_TV, V_TV, OMEGA2, PROP, REF, THETA = 4.0, 30.0, 0.2, 0.15, 80.0, 0.75
PRIOR_CRCL = {"model": {"name": "1cmt_iv"},
              "parameters": {"CL": {"typical": CL_TV, "effects": [{"covariate": "CRCL", "type": "power", "ref": REF,
                                                                    "theta": THETA}]},
                             "V": {"typical": V_TV}},
              "bsv": {"parameters": ["CL"], "variance": [OMEGA2]},
              "residual_error": {"type": "proportional", "proportional": PROP}}
CHANGE = 12.0                  # h: CRCL drops from 80 to 40 mL/min with the second dose (LOCF)
DOSES = [(0.0, 500.0), (12.0, 500.0)]
LEVELS = [(6.0, 9.5), (18.0, 14.0), (23.5, 11.0)]


def cl_of(crcl):
    return CL_TV * (np.asarray(crcl, float) / REF) ** THETA


def conc(t, eta, switches, doses=DOSES):
    """C(t) (mg/L) of 1-cmt IV boluses with CL piecewise constant: ``switches`` [(from time,
    CRCL)], the first from -inf; an observation at a dose time is pre-dose. Closed form:
    C = sum_d D/V exp(-(K(t) - K(t_d))), K(t) = int_0^t CL(s)/V ds."""
    t = np.asarray(t, float)
    eta = np.asarray(eta, float)[..., None]
    starts = np.array([s for s, _ in switches], float)
    ks = cl_of([c for _, c in switches]) / V_TV

    def big_k(x):
        x = np.asarray(x, float)[..., None]
        lo = np.r_[0.0, starts[1:]]
        hi = np.r_[starts[1:], np.inf]
        return np.sum(ks * np.clip(np.minimum(x, hi) - lo, 0.0, None), -1)

    out = 0.0
    for td, amt in doses:
        after = t > td
        out = out + np.where(after, amt / V_TV * np.exp(-np.exp(eta) * (big_k(t) - big_k(td))), 0.0)
    return out


SWITCHES = [(0.0, 80.0), (CHANGE, 40.0)]


def objective(eta, switches=SWITCHES, levels=LEVELS, doses=DOSES):
    """-2 log p(y, eta), NONMEM scale (no 2 pi constants), ``eta`` of any shape."""
    t, y = np.array(levels).T
    f = conc(t, eta, switches, doses)
    sd = PROP * f
    eta = np.asarray(eta, float)
    return eta ** 2 / OMEGA2 + np.log(OMEGA2) + np.sum(((y - f) / sd) ** 2 + np.log(sd ** 2), -1)


def grid_mode(fun):
    grid = np.linspace(-2.0, 2.0, 400_001)
    o = fun(grid)
    i = int(np.argmin(o))
    a, b, _ = np.polyfit(grid[i - 5:i + 6] - grid[i], o[i - 5:i + 6], 2)
    return grid[i] - b / (2 * a), grid, o


def rows_frame(crcl_at_change=40.0) -> pd.DataFrame:
    """The update's rows, CRCL given on the first dose and changed on the second; '.' elsewhere."""
    r = [dict(TIME=0.0, AMT=500.0, EVID=1, DV=".", CRCL=80.0), dict(TIME=6.0, AMT=0.0, EVID=0, DV=9.5, CRCL="."),
         dict(TIME=12.0, AMT=500.0, EVID=1, DV=".", CRCL=crcl_at_change),
         dict(TIME=18.0, AMT=0.0, EVID=0, DV=14.0, CRCL="."), dict(TIME=23.5, AMT=0.0, EVID=0, DV=11.0, CRCL=".")]
    return pd.DataFrame(r)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """One store: V1 (one update with the change), V2 (the same rows in two updates, from CSV)."""
    d = tmp_path_factory.mktemp("tv")
    store = d / "twins.zarr"
    twins.create(store, "V1", PRIOR_CRCL, {"CRCL": 80})
    twins.update(store, "V1", rows_frame())
    twins.create(store, "V2", PRIOR_CRCL, "CRCL=80")
    df = rows_frame()
    df.iloc[:2].drop(columns=["CRCL"]).to_csv(d / "first.csv", index=False)      # baseline in force
    df.iloc[2:].to_csv(d / "second.csv", index=False)
    twins.update(store, "V2", d / "first.csv")
    twins.update(store, "V2", d / "second.csv")
    return store


def test_map_with_a_covariate_change_equals_the_dense_grid_mode_of_the_exact_posterior(fleet):
    s = twins.show(fleet, "V1")["V1"]
    mode, _, _ = grid_mode(objective)
    assert s["eta"]["ETA1"] == pytest.approx(mode, abs=1e-6)
    assert s["objective"] == pytest.approx(float(objective(mode)), abs=1e-8)
    # the change matters: the mode with CRCL held at 80 is far away
    assert abs(grid_mode(lambda e: objective(e, [(0.0, 80.0)]))[0] - mode) > 0.1
    # reported parameters and covariates are those in force after the last row
    assert s["covariates"] == {"CRCL": 40.0}
    assert s["parameters"]["CL"] == pytest.approx(float(cl_of(40.0) * np.exp(mode)), rel=1e-5)


def test_map_equals_the_estimation_objectives_minimum_on_the_same_nonmem_data(fleet):
    df = rows_frame().assign(ID=1, DV=[np.nan, 9.5, np.nan, 14.0, 11.0])
    df["CRCL"] = [80.0, 80.0, 40.0, 40.0, 40.0]          # estimation needs the value on every record
    spec, base = load_population_model(PRIOR_CRCL)
    problem = build_problem(spec, df, base=base)
    assert problem.change_t is not None                  # estimation's own time-varying path
    pop = problem.params.population(np.asarray(problem.params.initial))
    subject = jax.tree.map(lambda a: a[0], problem.subjects())

    f = jax.jit(lambda e: individual_objective(problem, pop, subject, e[None])[0])

    def o(e):
        return float(f(e))

    res = scipy.optimize.minimize_scalar(o, bracket=(-1.0, 0.0, 1.0), tol=1e-12)
    s = twins.show(fleet, "V1")["V1"]
    assert s["eta"]["ETA1"] == pytest.approx(res.x, abs=1e-5)
    n_obs = len(LEVELS)
    assert s["objective"] == pytest.approx(res.fun - (n_obs + 1) * np.log(2 * np.pi), abs=1e-8)


def test_history_stores_the_row_covariates_and_reproduces_every_version(fleet):
    versions = read_twin_versions(fleet, "V2")
    assert "row_covariates" not in versions[1]                       # the first CSV had no CRCL column
    assert versions[2]["row_covariates"] == {"CRCL": [40.0, None, None]}
    assert versions[1]["covariates"] == {"CRCL": 80.0} and versions[2]["covariates"] == {"CRCL": 40.0}
    for v in (1, 2):
        r = twins.reproduce(fleet, "V2", v)
        assert r["max_abs_diff"] < 1e-12 and r["objective_diff"] < 1e-9
    # two updates hold the same history as one: the same posterior
    a, b = twins.show(fleet, "V1")["V1"], twins.show(fleet, "V2")["V2"]
    assert b["eta"]["ETA1"] == pytest.approx(a["eta"]["ETA1"], abs=1e-10)
    assert b["eta_cov"][0][0] == pytest.approx(a["eta_cov"][0][0], rel=1e-9)
    # version 1 (before the change): the grid mode of its own data with CRCL 80 throughout
    s1 = twins.show(fleet, "V2", version=1)["V2"]
    mode1, _, _ = grid_mode(lambda e: objective(e, [(0.0, 80.0)], LEVELS[:1], DOSES[:1]))
    assert s1["eta"]["ETA1"] == pytest.approx(mode1, abs=1e-6)
    state = twins.load_state(fleet, "V2", 1)
    assert state.covariates == {"CRCL": 80.0} and state.baseline == {"CRCL": 80.0}


def test_forecast_after_the_change_uses_the_new_value_and_future_covariates(fleet):
    s = twins.show(fleet, "V1")["V1"]
    eta = s["eta"]["ETA1"]
    times = np.array([24.5, 30.0, 36.0, 47.0])
    ds = twins.forecast(fleet, "V1", "500 mg q12h x2", until=24, times=times, n_draws=16)
    assert ds.attrs["start"] == 24.0
    doses = DOSES + [(24.0, 500.0), (36.0, 500.0)]
    expect = conc(times, eta, SWITCHES, doses)
    np.testing.assert_allclose(ds["conc_map"].values[0], expect, rtol=1e-7)
    held = conc(times, eta, [(0.0, 80.0)], doses)       # as if CRCL had stayed 80: clearly different
    assert np.all(np.abs(ds["conc_map"].values[0] / held - 1) > 0.1)
    # future covariates: CRCL 120 from the start (24 h) on
    ds = twins.forecast(fleet, "V1", "500 mg q12h x2", until=24, times=times, n_draws=16, covariates={"CRCL": 120})
    expect = conc(times, eta, SWITCHES + [(24.0, 120.0)], doses)
    np.testing.assert_allclose(ds["conc_map"].values[0], expect, rtol=1e-7)
    with pytest.raises(SpecError) as e:
        twins.forecast(fleet, "V1", "500 mg q12h x2", until=24, n_draws=16, covariates="WT=70")
    assert e.value.field == "covariates.WT"


def test_full_posterior_by_importance_sampling_matches_the_grid_moments(fleet):
    out = twins.posterior_sample(fleet, "V1", n=4000, seed=3)
    assert out["method"] == "importance"
    _, grid, o = grid_mode(objective)
    w = np.exp(-0.5 * (o - o.min()))
    mean = np.sum(w * grid) / w.sum()
    sd = np.sqrt(np.sum(w * (grid - mean) ** 2) / w.sum())
    draws = out["draws"][:, 0]
    assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(out["ess"])
    assert draws.std() == pytest.approx(sd, rel=0.08)


def test_update_all_with_constant_and_varying_patients_equals_per_patient_updates(tmp_path):
    batch = {"A": rows_frame(),                                        # changes at 12 h
             "B": rows_frame(crcl_at_change=80.0)}                     # the column, constant (or '.')
    one, many = tmp_path / "one.zarr", tmp_path / "many.zarr"
    for pid in batch:
        twins.create(one, pid, PRIOR_CRCL, {"CRCL": 80})
        twins.create(many, pid, PRIOR_CRCL, {"CRCL": 80})
        twins.update(one, pid, batch[pid])
    twins.create(one, "N", PRIOR_CRCL, {"CRCL": 80})                  # created by update_all in `many`
    twins.update(one, "N", rows_frame(crcl_at_change=30.0))
    df = pd.concat([f.assign(ID=pid) for pid, f in {**batch, "N": rows_frame(crcl_at_change=30.0)}.items()])
    got = twins.update_all(many, df, prior=PRIOR_CRCL)
    for pid in ("A", "B", "N"):
        ref = twins.show(one, pid)[pid]
        assert got[pid]["eta"]["ETA1"] == pytest.approx(ref["eta"]["ETA1"], abs=1e-9), pid
        assert got[pid]["eta_cov"][0][0] == pytest.approx(ref["eta_cov"][0][0], rel=1e-8), pid
        assert got[pid]["objective"] == pytest.approx(ref["objective"], abs=1e-8), pid
        assert got[pid]["covariates"] == ref["covariates"], pid
    assert got["A"]["covariates"] == {"CRCL": 40.0} and got["N"]["covariates"] == {"CRCL": 30.0}
    assert got["A"]["eta"] != got["B"]["eta"]
    # the fleet's posteriors without a store, covariates per row
    post = twins.laplace_posteriors(PRIOR_CRCL, df, {pid: {"CRCL": 80} for pid in ("A", "B", "N")})
    assert post["A"].eta[0] == pytest.approx(got["A"]["eta"]["ETA1"], abs=1e-9)


def test_bad_covariate_values_name_the_row_and_column_and_change_nothing(fleet, tmp_path):
    n0 = len(read_twin_versions(fleet, "V1"))
    nan = pd.DataFrame([dict(TIME=30.0, AMT=0.0, EVID=0, DV=5.0, CRCL=50.0),
                        dict(TIME=31.0, AMT=0.0, EVID=0, DV=4.0, CRCL=np.nan)])
    cases = [(nan, "data.CRCL", "row 2"),
             (nan.assign(CRCL=[50.0, -1.0]), "data.CRCL", "row 2"),                   # power effect: > 0
             (nan.assign(CRCL=["50", "high"]), "data.CRCL", "row 2"),
             (nan.assign(CRCL=50.0, WT=70.0), "data.WT", "unknown column")]           # not the prior's
    for df, field, text in cases:
        with pytest.raises(SpecError) as e:
            twins.update(fleet, "V1", df)
        assert e.value.field == field and text in str(e.value), str(e.value)
    assert len(read_twin_versions(fleet, "V1")) == n0
    # a fleet batch: a column another twin's prior uses, given for a twin whose prior does not
    store = tmp_path / "mixed.zarr"
    twins.create(store, "W", PRIOR, {"WT": 80})
    twins.create(store, "K", PRIOR_CRCL, {"CRCL": 80})
    df = pd.concat([rows_frame().assign(ID="K", WT="."), rows_frame().assign(ID="W", CRCL=".", WT=80.0)])
    df.iloc[3, df.columns.get_loc("WT")] = 70.0                          # row 4: K gets a WT
    with pytest.raises(SpecError) as e:
        twins.update_all(store, df.reset_index(drop=True))
    assert e.value.field == "data.WT" and "row 4" in str(e.value) and "K" in str(e.value)
    assert [len(read_twin_versions(store, p)) for p in ("W", "K")] == [1, 1]
