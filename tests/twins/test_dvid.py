"""Twins of a prior with several observed outputs (NONMEM DVID): a 1-cmt IV bolus + direct Emax
PK/PD model whose concentration (DVID 1, proportional error) and effect (DVID 2, additive error)
are both measured. References: estimation's individual objective on the same NONMEM data
minimised by a second optimiser (SciPy BFGS) and its exact Hessian; a 2-D quadrature of the exact
posterior for the importance-sampling mean; the residual-error variance of new measurements of
each output. Also: two updates equal one, the fleet path equals the single-patient one, every
version reproduces, the record holds (and its digest covers) the DVIDs, and bad DVID input is
refused naming the row and column with nothing written."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.optimize

from insilico import twins
from insilico.errors import SpecError
from insilico.estimation import build_problem, individual_objective, load_population_model
from insilico.store import digest, read_twin_versions
from tests.twins.conftest import PRIOR

PROP, ADD = 0.1, 2.0
PRIOR_PKPD = {"model": {"name": "1cmt_iv+emax"}, "output": "conc", "outputs": {1: "conc", 2: "effect"},
              "parameters": {"CL": {"typical": 2.0}, "V": {"typical": 20.0}, "E0": {"typical": 10.0},
                             "EMAX": {"typical": 50.0}, "EC50": {"typical": 2.0}},
              "bsv": {"parameters": ["CL", "EC50"], "variance": [0.09, 0.16]},
              "residual_error": {"type": "proportional", "proportional": PROP},
              "residual_errors": {"effect": {"type": "additive", "additive": ADD}}}
DOSE = (0.0, 100.0)
PK = [(1.0, 4.1), (6.0, 2.9), (12.0, 1.6)]                 # conc (mg/L), DVID 1
PD = [(0.0, 11.0), (1.0, 38.0), (6.0, 30.0), (12.0, 22.0)]   # effect, DVID 2; the first before the dose


def all_rows() -> pd.DataFrame:
    """Every row, sorted by time (PK before PD at a shared time, as two updates would add them)."""
    r = [dict(TIME=DOSE[0], AMT=DOSE[1], EVID=1, DV=np.nan, DVID=np.nan)]
    r += [dict(TIME=t, AMT=0.0, EVID=0, DV=y, DVID=1.0) for t, y in PK]
    r += [dict(TIME=t, AMT=0.0, EVID=0, DV=y, DVID=2.0) for t, y in PD]
    return pd.DataFrame(r).sort_values("TIME", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A: one update with every row; B: the dose and two PK levels without a DVID column (CSV),
    then the rest with DVIDs; C: created and updated by `update_all` from the same rows."""
    d = tmp_path_factory.mktemp("dvid")
    store = d / "twins.zarr"
    twins.create(store, "A", PRIOR_PKPD, {})
    twins.update(store, "A", all_rows())
    twins.create(store, "B", PRIOR_PKPD, {})
    first = pd.DataFrame([dict(TIME=DOSE[0], AMT=DOSE[1], EVID=1, DV=".")]
                         + [dict(TIME=t, AMT=0, EVID=0, DV=y) for t, y in PK[:2]])
    first.to_csv(d / "first.csv", index=False)
    twins.update(store, "B", d / "first.csv")
    second = pd.DataFrame([dict(TIME=PK[2][0], EVID=0, DV=PK[2][1], DVID=1)]
                          + [dict(TIME=t, EVID=0, DV=y, DVID=2) for t, y in PD])
    twins.update(store, "B", second)
    twins.update_all(store, all_rows().assign(ID="C"), prior=PRIOR_PKPD)
    return store


@pytest.fixture(scope="module")
def reference():
    """Estimation's problem on the same NONMEM data: (problem, pop, subject, objective, gradient)."""
    df = all_rows().assign(ID=1)
    df["DVID"] = df["DVID"].fillna(0)
    spec, base = load_population_model(PRIOR_PKPD)
    problem = build_problem(spec, df, base=base)
    assert problem.outputs == ("conc", "effect") and "out" in problem.records
    pop = problem.params.population(np.asarray(problem.params.initial))
    subject = jax.tree.map(lambda a: a[0], problem.subjects())
    f = jax.jit(lambda e: individual_objective(problem, pop, subject, e)[0])
    return problem, pop, subject, f, jax.jit(jax.grad(f))


def test_map_equals_the_minimum_of_estimations_objective_by_scipy(fleet, reference):
    _, _, _, f, g = reference
    res = scipy.optimize.minimize(lambda e: float(f(jnp.asarray(e))), np.zeros(2),
                                  jac=lambda e: np.asarray(g(jnp.asarray(e))), method="BFGS",
                                  options={"gtol": 1e-10})
    assert res.success
    s = twins.show(fleet, "A")["A"]
    eta = np.array([s["eta"]["ETA1"], s["eta"]["ETA2"]])
    np.testing.assert_allclose(eta, res.x, atol=1e-5)
    n_obs = len(PK) + len(PD)
    assert s["n_obs"] == n_obs
    assert s["objective"] == pytest.approx(res.fun - (n_obs + 2) * np.log(2 * np.pi), abs=1e-8)
    # Laplace covariance = (H / 2)^-1 of the reference objective at its minimum
    h = np.asarray(jax.hessian(f)(jnp.asarray(res.x)))
    np.testing.assert_allclose(np.array(s["eta_cov"]), np.linalg.inv(0.5 * h), rtol=1e-4)
    assert abs(eta[1]) > 0.2           # EC50's eta: informed only by the effect levels (prior mode 0)


def test_two_updates_equal_one_and_the_fleet_path(fleet):
    a = twins.show(fleet, "A")["A"]
    for other in ("B", "C"):
        b = twins.show(fleet, other)[other]
        for k in ("ETA1", "ETA2"):
            assert b["eta"][k] == pytest.approx(a["eta"][k], abs=1e-10)
        np.testing.assert_allclose(b["eta_cov"], a["eta_cov"], rtol=1e-9)
        assert b["objective"] == pytest.approx(a["objective"], abs=1e-9)
    free, = twins.laplace_posteriors(PRIOR_PKPD, all_rows().assign(ID="X"), {"X": {}}).values()   # no store
    np.testing.assert_allclose(free.eta, [a["eta"]["ETA1"], a["eta"]["ETA2"]], atol=1e-10)


def test_history_stores_the_dvids_and_reproduces_every_version(fleet):
    v = read_twin_versions(fleet, "B")
    assert "row_dvid" not in v[1] and v[1].row_dvid is None      # no DVID column: levels of the primary output
    assert v[2].row_dvid == [1, 2, 2, 2, 2]
    assert read_twin_versions(fleet, "A")[1].row_dvid == [None, 2, 1, 2, 1, 2, 1, 2]
    assert v[2]["n_obs"] == len(PK) + len(PD) and v[1]["n_obs"] == 2
    # the record digest covers the DVIDs
    rec = {k: x for k, x in v[2].items() if k not in ("rows", "eta", "eta_cov", "record_sha256")}
    assert digest(json.dumps(rec, sort_keys=True)) == v[2]["record_sha256"]
    assert digest(json.dumps({**rec, "row_dvid": [1, 2, 2, 2, 1]}, sort_keys=True)) != v[2]["record_sha256"]
    for pid, n in (("A", 1), ("B", 2), ("C", 1)):
        for version in range(1, n + 1):
            r = twins.reproduce(fleet, pid, version)
            assert r["max_abs_diff"] < 1e-12 and r["objective_diff"] < 1e-9, (pid, version)
    state = twins.load_state(fleet, "B")
    assert list(state.hist["DVID"].fillna(0)) == [0, 2, 0, 2, 0, 2, 1, 2]
    subject = state.subject()                  # each level's output index (0 conc, 1 effect), padding 0
    assert subject["out"].tolist() == [1, 0, 1, 0, 1, 0, 1, 0] and subject["mask"].sum() == 7


@pytest.fixture(scope="module")
def quadrature(fleet, reference):
    """Posterior mean and SD of eta by a 141 x 141 grid over +-7 Laplace SDs of exp(-O / 2), O the
    estimation objective (the exact posterior up to its normalising constant)."""
    _, _, _, f, _ = reference
    s = twins.show(fleet, "A")["A"]
    mode = np.array([s["eta"]["ETA1"], s["eta"]["ETA2"]])
    sd = np.sqrt(np.diag(np.array(s["eta_cov"])))
    axes = [np.linspace(m - 7 * v, m + 7 * v, 141) for m, v in zip(mode, sd)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    o = np.asarray(jax.jit(jax.vmap(f))(jnp.asarray(grid)))
    w = np.exp(-0.5 * (o - o.min()))
    mean = (w[:, None] * grid).sum(0) / w.sum()
    return mean, np.sqrt((w[:, None] * (grid - mean) ** 2).sum(0) / w.sum())


def test_importance_sampling_agrees_with_quadrature_of_the_exact_posterior(fleet, quadrature):
    mean, sd = quadrature
    post = twins.posterior_sample(fleet, "A", n=4000, seed=3)
    assert post["method"] == "importance" and post["ess_fraction"] > 0.5
    se = post["draws"].std(0) / np.sqrt(post["ess"])
    assert np.all(np.abs(post["draws"].mean(0) - mean) < 4 * se + 1e-4), (post["draws"].mean(0), mean, se)
    np.testing.assert_allclose(post["draws"].std(0), sd, rtol=0.1)


def test_forecast_draws_new_measurements_of_each_output_with_its_residual_error(fleet):
    ds = twins.forecast(fleet, "A", "100 mg q24h x1", until=24, n_draws=4000, points=7, level=0.9)
    assert ds.attrs["outputs"] == ["conc", "effect"]
    z = 1.6448536269514722
    sel = ds.isel(regimen=0, time=slice(1, None))
    for name, prefix, sd in (("effect", "DV_effect", lambda f: ADD), ("conc", "DV", lambda f: PROP * f)):
        s_true = (sel[f"{name}_upper"] - sel[f"{name}_lower"]).values / (2 * z)
        s_new = (sel[f"{prefix}_upper"] - sel[f"{prefix}_lower"]).values / (2 * z)
        expected = np.sqrt(s_true ** 2 + sd(sel[f"{name}_median"].values) ** 2)
        # normal approximation of both intervals; 4000 draws: quantile SE ~ 3 %
        np.testing.assert_allclose(s_new, expected, rtol=0.1)
    assert "DV_conc_median" not in ds           # the primary output keeps DV_*


def _versions(store, pid):
    return len(read_twin_versions(store, pid))


@pytest.mark.parametrize("change, column, row", [
    (dict(DVID=3.0), "data.DVID", 2),                                  # not mapped to an output
    (dict(DVID=1.5), "data.DVID", 2),                                  # not an integer
    (dict(EVID=1, AMT=50.0, DVID=2.0), "data.DV", 2),                  # a DV with its DVID on a dose row
])
def test_bad_dvid_input_names_row_and_column_and_writes_nothing(fleet, change, column, row):
    rows = pd.DataFrame([dict(TIME=24.0, AMT=100.0, EVID=1, DV=np.nan, DVID=np.nan),
                         dict(TIME=30.0, AMT=0.0, EVID=0, DV=20.0, DVID=2.0)])
    for k, v in change.items():
        rows.loc[1, k] = v
    n = _versions(fleet, "A"), _versions(fleet, "C")
    with pytest.raises(SpecError, match=f"row {row}") as e:
        twins.update(fleet, "A", rows)
    assert e.value.field == column
    with pytest.raises(SpecError, match=f"row {row}") as e:          # fleet: a good patient's row first
        twins.update_all(fleet, pd.concat([rows.iloc[:1].assign(ID="A"), rows.iloc[1:].assign(ID="C")],
                                          ignore_index=True))
    assert e.value.field == column
    assert (_versions(fleet, "A"), _versions(fleet, "C")) == n


def test_a_dvid_alone_on_a_dose_row_and_duplicate_times_per_output(fleet):
    n = _versions(fleet, "A")
    dose = pd.DataFrame([dict(TIME=24.0, AMT=100.0, EVID=1, DVID=2)])
    with pytest.raises(SpecError, match="row 1") as e:
        twins.update(fleet, "A", dose)
    assert e.value.field == "data.DVID"
    # a second effect level at 6 h (one is stored) is refused; one PK and one PD level at a time are fine
    with pytest.raises(SpecError, match="'effect' at the same time") as e:
        twins.update(fleet, "A", pd.DataFrame([dict(TIME=6.0, EVID=0, DV=31.0, DVID=2)]))
    assert e.value.field == "data.TIME"
    assert _versions(fleet, "A") == n


def test_a_prior_with_one_output_takes_one_dvid_value_as_estimation_does(tmp_path):
    store = tmp_path / "one.zarr"
    twins.create(store, "P", PRIOR, {"WT": 80})
    ok = pd.DataFrame([dict(TIME=0.0, AMT=500.0, EVID=1, DV=".", DVID=0), dict(TIME=2.0, EVID=0, DV=14.0, DVID=1)])
    twins.update(store, "P", ok)
    twins.create(store, "Q", PRIOR, {"WT": 80})
    twins.update(store, "Q", ok.drop(columns="DVID"))
    assert twins.show(store, "P")["P"]["eta"] == twins.show(store, "Q")["Q"]["eta"]
    assert read_twin_versions(store, "P")[1].row_dvid == [None, 1]
    with pytest.raises(SpecError, match="row 1.*DVID 2") as e:
        twins.update(store, "P", pd.DataFrame([dict(TIME=4.0, EVID=0, DV=9.0, DVID=2)]))
    assert e.value.field == "data.DVID"
    assert _versions(store, "P") == 2
