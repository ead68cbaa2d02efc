"""MAP and Laplace covariance of a twin against independent references: a dense grid of the
exact posterior (one eta), a second optimiser (two etas), the inverse of a finite-difference
Hessian, and the full posterior's moments by quadrature."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from insilico import twins
from tests.twins.conftest import (
    DOSES,
    LEVELS,
    OMEGA2,
    PRIOR,
    PRIOR2,
    PROP,
    V_TV,
    cl_typical,
    conc,
    fd_hessian,
    rows,
)


def objective_1eta(eta):
    """-2 log p(y, eta) of the one-eta prior, NONMEM scale (no 2 pi constants): independent NumPy;
    ``eta`` of any shape."""
    eta = np.asarray(eta, float)
    t, y = np.array(LEVELS).T
    f = conc(t, cl_typical() * np.exp(eta), V_TV, *np.array(DOSES).T)
    sd = PROP * f
    return eta ** 2 / OMEGA2 + np.log(OMEGA2) + np.sum(((y - f) / sd) ** 2 + np.log(sd ** 2), -1)


def objective_2eta(e):
    t, y = np.array(LEVELS).T
    f = conc(t, 4.0 * np.exp(e[0]), V_TV * np.exp(e[1]), *np.array(DOSES).T)
    var = (0.1 * f) ** 2 + 0.25
    return e[0] ** 2 / 0.2 + e[1] ** 2 / 0.1 + np.log(0.2 * 0.1) + np.sum((y - f) ** 2 / var + np.log(var))


@pytest.fixture(scope="module")
def one_eta(tmp_path_factory):
    store = tmp_path_factory.mktemp("post") / "twins.zarr"
    twins.create(store, "A1", PRIOR, {"WT": 80})
    twins.update(store, "A1", rows(DOSES, LEVELS))
    return store


def test_map_equals_the_mode_of_a_dense_grid_of_the_exact_posterior(one_eta):
    s = twins.show(one_eta, "A1")["A1"]
    grid = np.linspace(-2.0, 2.0, 400_001)                      # step 1e-5
    o = objective_1eta(grid)
    i = np.argmin(o)
    a, b, c = np.polyfit(grid[i - 5:i + 6] - grid[i], o[i - 5:i + 6], 2)   # vertex of the local parabola
    mode = grid[i] - b / (2 * a)
    assert s["eta"]["ETA1"] == pytest.approx(mode, abs=1e-6)
    assert s["status"] == "ok" and s["n_obs"] == 2
    # objective on NONMEM's scale equals the independent one at the mode
    assert s["objective"] == pytest.approx(float(objective_1eta(mode)), abs=1e-8)
    assert s["parameters"]["CL"] == pytest.approx(cl_typical() * np.exp(mode), rel=1e-6)


def test_laplace_variance_is_the_inverse_of_half_the_finite_difference_hessian(one_eta):
    s = twins.show(one_eta, "A1")["A1"]
    h = fd_hessian(lambda e: float(objective_1eta(e[0])), s["eta"]["ETA1"])
    assert s["eta_cov"][0][0] == pytest.approx(float(np.linalg.inv(h / 2)[0, 0]), rel=1e-5)


def test_full_posterior_by_importance_sampling_matches_quadrature_moments(one_eta):
    grid = np.linspace(-3, 3, 60_001)
    o = objective_1eta(grid)
    p = np.exp(-(o - o.min()) / 2)
    p /= p.sum()
    mean = np.sum(grid * p)
    sd = np.sqrt(np.sum((grid - mean) ** 2 * p))
    res = twins.posterior_sample(one_eta, "A1", n=4000, seed=3)
    assert res["method"] == "importance" and res["ess_fraction"] > 0.5
    draws = res["draws"][:, 0]
    # equal-weight resampled draws: mean within 4 Monte Carlo SEs (ESS-based, resampling adds < 2x)
    se = sd / np.sqrt(res["ess"] / 2)
    assert abs(draws.mean() - mean) < 4 * se
    assert draws.std() == pytest.approx(sd, rel=0.08)


def test_two_eta_map_and_laplace_covariance_against_a_second_optimiser_and_fd_hessian(tmp_path):
    store = tmp_path / "t.zarr"
    twins.create(store, "B1", PRIOR2, "")
    s = twins.update(store, "B1", rows(DOSES, LEVELS))["B1"]
    ref = scipy.optimize.minimize(objective_2eta, np.zeros(2), method="Nelder-Mead",
                                  options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000})
    eta = np.array([s["eta"]["ETA1"], s["eta"]["ETA2"]])
    np.testing.assert_allclose(eta, ref.x, atol=1e-6)
    cov = np.linalg.inv(fd_hessian(objective_2eta, eta) / 2)
    np.testing.assert_allclose(np.array(s["eta_cov"]), cov, rtol=1e-5, atol=1e-9)
    assert s["objective"] == pytest.approx(objective_2eta(eta), abs=1e-8)


def test_no_data_is_the_prior(store):
    s = twins.create(store, "C1", PRIOR, "WT=80")["C1"]
    assert s["eta"] == {"ETA1": 0.0} and s["eta_cov"] == [[pytest.approx(OMEGA2, rel=1e-12)]]
    s = twins.update(store, "C1", rows([(0.0, 500.0)], []))["C1"]      # a dose, no level: still the prior
    assert s["version"] == 1 and s["eta"]["ETA1"] == pytest.approx(0.0, abs=1e-12)
    assert s["eta_cov"][0][0] == pytest.approx(OMEGA2, rel=1e-9)
