"""Twins with inter-occasion variability (IOV): the posterior over the etas and the kappas of the
visited occasions against an independent NumPy/SciPy reference (1-cmt IV bolus, BSV on CL and V,
IOV on CL), the new-occasion forecast (Abrantes et al. 2019), bad occasion input, fleets."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from insilico import twins
from insilico.errors import SpecError
from tests.twins.conftest import fd_hessian

CL_TV, V_TV, OM_CL, OM_V, OM_IOV, PROP, K = 4.0, 30.0, 0.2, 0.1, 0.05, 0.1, 3
PRIOR = {"model": {"name": "1cmt_iv"},
         "parameters": {"CL": {"typical": CL_TV}, "V": {"typical": V_TV}},
         "bsv": {"parameters": ["CL", "V"], "variance": [OM_CL, OM_V]},
         "iov": {"occasions": K, "variance": {"CL": OM_IOV}, "starts": [0.0, 40.0, 100.0]},
         "residual_error": {"type": "proportional", "proportional": PROP}}
# (the OCC column, when given, defines the occasions; iov.starts serve histories without it)
NO_STARTS = {**PRIOR, "iov": {"occasions": K, "variance": {"CL": OM_IOV}}}
DOSES = [(0.0, 500.0, 1), (48.0, 500.0, 2)]                       # (time h, amount mg, occasion)
LEVELS = [(2.0, 14.0, 1), (10.0, 7.5, 1), (52.0, 19.0, 2), (58.0, 14.5, 2)]    # (time h, DV mg/L, occasion)


def rows(doses=DOSES, levels=LEVELS, occ=True) -> pd.DataFrame:
    r = [dict(TIME=t, AMT=a, EVID=1, DV=".", OCC=o) for t, a, o in doses] + \
        [dict(TIME=t, AMT=0.0, EVID=0, DV=y, OCC=o) for t, y, o in levels]
    df = pd.DataFrame(r)
    return df if occ else df.drop(columns="OCC")


def conc(t, dose_times, amts, v, cl_segments):
    """Concentration (mg/L) at ``t``: bolus doses, V (L), CL piecewise constant: ``cl_segments``
    [(from h, CL L/h)] sorted (each CL in force from its time until the next one's); V and the CLs
    may be arrays (draws)."""
    ends = [s for s, _ in cl_segments[1:]] + [np.inf]
    total = 0.0
    for td, d in zip(dose_times, amts):
        if td < t:                # int_td^t CL(s) ds, segment by segment
            area = sum(cl * max(0.0, min(t, end) - max(td, s)) for (s, cl), end in zip(cl_segments, ends))
            total = total + d / v * np.exp(-area / v)
    return total


def cl_segments(eta_cl, kappas, new=None):
    """CL of occasion 1 from 0 h, occasion 2 from the dose at 48 h (LOCF: the row at 48 h carries
    OCC 2), and with ``new`` = (start, kappa) the new occasion from the forecast's start."""
    seg = [(0.0, CL_TV * np.exp(eta_cl + kappas[0])), (48.0, CL_TV * np.exp(eta_cl + kappas[1]))]
    return seg + ([(new[0], CL_TV * np.exp(eta_cl + new[1]))] if new else [])


def objective(x):
    """-2 log p(y, eta, kappa_1, kappa_2, kappa_3 = 0), every constant included, written out;
    ``x`` = (eta_CL, eta_V, kappa_1, kappa_2), (4,) or (4, n) for n points."""
    e_cl, e_v, k1, k2 = x
    v = V_TV * np.exp(e_v)
    f = np.array([conc(t, [d[0] for d in DOSES], [d[1] for d in DOSES], v, cl_segments(e_cl, (k1, k2)))
                  for t, _, _ in LEVELS])
    y = np.array([dv for _, dv, _ in LEVELS]).reshape((-1,) + (1,) * (f.ndim - 1))
    sd = PROP * f
    o = np.sum(np.log(2 * np.pi * sd ** 2) + ((y - f) / sd) ** 2, axis=0)
    o += e_cl ** 2 / OM_CL + e_v ** 2 / OM_V + np.log((2 * np.pi) ** 2 * OM_CL * OM_V)
    return o + (k1 ** 2 + k2 ** 2) / OM_IOV + K * np.log(2 * np.pi * OM_IOV)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("iov") / "twins.zarr"
    twins.create(path, "P1", PRIOR, {})
    twins.update(path, "P1", rows())
    return path


@pytest.fixture(scope="module")
def reference():
    fit = optimize.minimize(objective, np.zeros(4), method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000})
    assert fit.success
    return fit.x, fd_hessian(objective, fit.x)


def test_map_and_laplace_equal_the_independent_reference(store, reference):
    x, h = reference
    state = twins.load_state(store, "P1")
    post = state.post
    assert post.eta.shape == (2 + K,) and post.status == 0
    # MAP (eta_CL, eta_V, kappa_1, kappa_2) = the reference minimiser; kappa_3 (unvisited) stays 0
    np.testing.assert_allclose(post.eta[:4], x, atol=2e-5)
    assert post.eta[4] == 0.0
    # Laplace covariance (H/2)^-1 vs the finite-difference Hessian; the unvisited kappa keeps its prior
    cov = np.linalg.inv(h / 2)
    np.testing.assert_allclose(post.eta_cov[:4, :4], cov, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(post.eta_cov[4], [0, 0, 0, 0, OM_IOV], atol=1e-10)
    # NONMEM-scale objective: O(MAP) - (n_obs + n_random) log 2 pi
    assert post.objective == pytest.approx(objective(x) - (4 + 2 + K) * np.log(2 * np.pi), abs=1e-6)
    summary = twins.show(store, "P1")["P1"]
    assert list(summary["eta"]) == ["ETA1", "ETA2"]
    np.testing.assert_allclose(list(summary["eta"].values()), x[:2], atol=2e-5)
    np.testing.assert_allclose(summary["eta_cov"], cov[:2, :2], rtol=1e-4)
    assert summary["kappa"].keys() == {"1", "2"} and list(summary["kappa"]["1"]) == ["KAPPA1"]
    np.testing.assert_allclose([summary["kappa"][o]["KAPPA1"] for o in "12"], x[2:], atol=2e-5)
    assert summary["latest_occasion"] == 2
    # parameters: the latest occasion's (CL = TV exp(eta + kappa_2))
    assert summary["parameters"]["CL"] == pytest.approx(CL_TV * np.exp(x[0] + x[3]), rel=1e-4)
    assert summary["parameters"]["V"] == pytest.approx(V_TV * np.exp(x[1]), rel=1e-4)
    assert twins.reproduce(store, "P1")["max_abs_diff"] < 1e-10


def test_forecast_draws_the_new_occasion_kappa_and_the_map_line_uses_zero(store):
    start, times = 72.0, np.array([73.0, 90.0])
    ds = twins.forecast(store, "P1", ["500 mg q24h x2"], until=48, start=start, times=times, n_draws=2000, seed=3)
    post = twins.load_state(store, "P1").post
    e_cl, e_v, k1, k2 = post.eta[:4]
    dose_t, amts = [0.0, 48.0, 72.0, 96.0], [500.0] * 4
    # the MAP line: MAP etas and kappas, kappa = 0 in the new occasion (from the start)
    expect = [conc(t, dose_t, amts, V_TV * np.exp(e_v), cl_segments(e_cl, (k1, k2), (start, 0.0))) for t in times]
    np.testing.assert_allclose(ds["conc_map"].values[0], expect, rtol=1e-7)
    # the interval: Monte Carlo reference from the same Laplace posterior, new kappa ~ N(0, OM_IOV)
    rng = np.random.default_rng(0)
    n = 20000
    draws = rng.multivariate_normal(post.eta[:4], post.eta_cov[:4, :4], n)
    new = rng.normal(0.0, np.sqrt(OM_IOV), n)

    def ref(with_new):
        return np.stack([conc(t, dose_t, amts, V_TV * np.exp(draws[:, 1]),
                              cl_segments(draws[:, 0], draws[:, 2:].T, (start, new if with_new else 0.0)))
                         for t in times], axis=1)
    c_new, c_zero = ref(True), ref(False)
    se = 4 * np.sqrt(0.05 * 0.95 / 2000)          # 4 SE of a 5 % quantile's coverage with 2000 draws
    for j in range(times.size):
        lo, hi = ds["conc_lower"].values[0, j], ds["conc_upper"].values[0, j]
        assert abs(np.mean(c_new[:, j] < lo) - 0.05) < se + 0.005
        assert abs(np.mean(c_new[:, j] > hi) - 0.05) < se + 0.005
    # without the new kappa the same interval would hold clearly more than 90 % at the later time
    lo, hi = ds["conc_lower"].values[0, 1], ds["conc_upper"].values[0, 1]
    assert np.mean((c_zero[:, 1] >= lo) & (c_zero[:, 1] <= hi)) > 0.90 + se + 0.02


def test_full_posterior_over_the_visited_occasions(store, reference):
    """Importance sampling over (eta, kappa_1, kappa_2) vs a NumPy importance-sampling reference
    (20000 draws); the unvisited kappa_3 is drawn from its prior N(0, OM_IOV)."""
    x, h = reference
    cov = np.linalg.inv(h / 2)
    rng = np.random.default_rng(1)
    z = rng.multivariate_normal(x, cov, 20000)
    log_w = -0.5 * objective(z.T) - stats.multivariate_normal(x, cov).logpdf(z)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = w @ z
    sd = np.sqrt(w @ (z - mean) ** 2)
    out = twins.posterior_sample(store, "P1", n=2000, seed=0)
    assert out["method"] == "importance" and out["draws"].shape == (2000, 2 + K)
    d = out["draws"]
    # 5 SE of a mean over the effective sample (resampling adds little at ESS ~ n)
    np.testing.assert_array_less(np.abs(d[:, :4].mean(0) - mean), 5 * sd / np.sqrt(out["ess"]))
    np.testing.assert_allclose(d[:, :4].std(0), sd, rtol=0.1)
    assert abs(d[:, 4].mean()) < 5 * np.sqrt(OM_IOV / 2000)
    assert d[:, 4].std() == pytest.approx(np.sqrt(OM_IOV), rel=0.1)


def test_rows_without_occasions_are_refused_naming_the_column(store):
    with pytest.raises(SpecError) as e:         # a prior with IOV and no iov.starts
        twins.laplace_posteriors(NO_STARTS, rows(occ=False).assign(ID="X"), {"X": {}})
    assert e.value.field == "data.OCC" and "column missing" in str(e.value)
    with pytest.raises(SpecError) as e:         # iov.starts, but the history's occasions came from OCC
        twins.update(store, "P1", rows([(72.0, 500.0, 3)], [], occ=False))
    assert e.value.field == "data.OCC" and "column missing" in str(e.value)
    with pytest.raises(SpecError) as e:
        twins.update(store, "P1", rows([(72.0, 500.0, K + 1)], []))
    assert e.value.field == "data.OCC" and "row 1" in str(e.value) and f"1..{K}" in str(e.value)
    bad = rows([(72.0, 500.0, 3)], [(80.0, 9.0, 3)])
    bad["OCC"] = ["3", "."]                  # an empty occasion (NONMEM's null) on the level
    with pytest.raises(SpecError) as e:
        twins.update(store, "P1", bad)
    assert e.value.field == "data.OCC" and "row 2" in str(e.value)
    assert twins.show(store, "P1")["P1"]["version"] == 1          # nothing written


def test_fleet_with_one_and_two_occasions_equals_single_updates(store, tmp_path):
    one = rows(DOSES[:1], LEVELS[:2])
    path = tmp_path / "fleet.zarr"
    for pid in ("A", "B", "C"):
        twins.create(path, pid, PRIOR, {})
    twins.update(path, "C", one)
    batch = pd.concat([rows().assign(ID="A"), one.assign(ID="B")], ignore_index=True)
    out = twins.update_all(path, batch)
    assert out["B"]["kappa"].keys() == {"1"} and out["A"]["kappa"].keys() == {"1", "2"}
    for pid, single in (("A", twins.load_state(store, "P1")), ("B", twins.load_state(path, "C"))):
        post = twins.load_state(path, pid).post
        np.testing.assert_allclose(post.eta, single.post.eta, atol=1e-8)
        np.testing.assert_allclose(post.eta_cov, single.post.eta_cov, atol=1e-8)
        assert post.objective == pytest.approx(single.post.objective, abs=1e-8)


def test_occasions_from_iov_starts_change_at_the_start_time(tmp_path):
    """Without an OCC column the prior's iov.starts place the occasions: occasion 2 from 40 h, before
    the dose at 48 h (estimation's rule), checked on the MAP line of a forecast from 72 h."""
    path = tmp_path / "starts.zarr"
    twins.create(path, "S", PRIOR, {})
    twins.update(path, "S", rows(occ=False))
    state = twins.load_state(path, "S")
    e_cl, e_v, k1, k2 = state.post.eta[:4]
    ds = twins.forecast(path, "S", ["500 mg q24h x1"], until=24, start=72.0, times=[60.0, 80.0], n_draws=10)
    seg = [(0.0, CL_TV * np.exp(e_cl + k1)), (40.0, CL_TV * np.exp(e_cl + k2)), (72.0, CL_TV * np.exp(e_cl))]
    expect = [conc(t, [0.0, 48.0, 72.0], [500.0] * 3, V_TV * np.exp(e_v), seg) for t in (60.0, 80.0)]
    np.testing.assert_allclose(ds["conc_map"].values[0], expect, rtol=1e-7)
    assert twins.show(path, "S")["S"]["kappa"].keys() == {"1", "2"}
    with pytest.raises(SpecError) as e:      # one source of occasions per history
        twins.update(path, "S", rows([(72.0, 500.0, 3)], []))
    assert e.value.field == "data.OCC"


def test_cli_show_json_reports_kappas(store):
    from typer.testing import CliRunner

    from insilico.cli import app
    res = CliRunner().invoke(app, ["twin", "show", str(store), "P1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)["P1"]
    assert set(out["kappa"]) == {"1", "2"} and list(out["eta"]) == ["ETA1", "ETA2"]


def test_report_lists_the_kappas_and_the_latest_occasions_parameters(store, reference):
    from insilico.analysis.twin_report import render_twin_report
    x, h = reference
    page = render_twin_report(store, "P1", n_draws=200)
    kappa = page[page.index("Inter-occasion variability"):]
    sd = np.sqrt(np.diag(np.linalg.inv(h / 2)))
    for j in (2, 3):          # MAP and Laplace SD of the kappas of occasions 1 and 2
        assert f"{x[j]:.4g}"[:5] in kappa and f"{sd[j]:.4g}"[:5] in kappa
    assert "Individual parameters at the MAP (occasion 2)" in page
    assert f"{CL_TV * np.exp(x[0] + x[3]):.4g}"[:5] in page[page.index("(occasion 2)"):]
