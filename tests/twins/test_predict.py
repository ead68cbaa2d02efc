"""Forecast, dose recommendation and risk against independent references: exact attainment and
crossing probabilities of a 1-cmt IV bolus model (the trough is monotone in eta, so its
posterior probability is a difference of normal CDFs), the analytic optimal dose, and the
coverage of 90 % predictive intervals (and uniform posterior ranks) on patients simulated from
the prior."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.stats

from insilico import twins
from tests.twins.conftest import DOSES, LEVELS, OMEGA2, PRIOR, PROP, V_TV, WT, cl_typical, conc, rows


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    store = tmp_path_factory.mktemp("pred") / "twins.zarr"
    twins.create(store, "R1", PRIOR, {"WT": WT})
    twins.update(store, "R1", rows(DOSES, LEVELS))
    s = twins.show(store, "R1")["R1"]
    return store, s["eta"]["ETA1"], np.sqrt(s["eta_cov"][0][0])


def _eta_where(fn, value):
    """eta with fn(eta) = value for fn decreasing in eta."""
    return scipy.optimize.brentq(lambda e: fn(e) - value, -8, 8, xtol=1e-12)


def _exact_probability(metric, lo, hi, m, s):
    e_lo, e_hi = _eta_where(metric, hi), _eta_where(metric, lo)    # metric in [lo, hi] <=> eta in [e_lo, e_hi]
    return scipy.stats.norm.cdf((e_hi - m) / s) - scipy.stats.norm.cdf((e_lo - m) / s)


def test_recommended_dose_is_the_analytic_optimum_and_attainment_matches_the_exact_probability(twin):
    store, m, s = twin
    lo, hi = 4.0, 8.0
    doses = np.arange(200.0, 1601.0, 100.0)
    res = twins.recommend(store, "R1", f"trough in [{lo:g}, {hi:g}] mg/L", doses, [12.0], until=96, n_draws=2000,
                          seed=1)
    assert res["start"] == 24.0                                # the next dose after 0 and 12 h, q12h
    # candidate: history doses at 0, 12 then D every 12 h from 24 up to 120; trough just before 120 h
    times = np.r_[0.0, 12.0, 24 + 12 * np.arange(9)]

    def trough(d):
        return lambda e: float(conc(120.0, cl_typical() * np.exp(e), V_TV, times, np.r_[500, 500, [d] * 9]))

    exact = np.array([_exact_probability(trough(d), lo, hi, m, s) for d in doses])
    got = res["candidates"].set_index("dose")["probability"].reindex(doses).to_numpy()
    np.testing.assert_allclose(got, exact, atol=0.045)        # 4 Monte Carlo SEs at n = 2000
    rec = res["recommendation"]
    assert exact[list(doses).index(rec["dose"])] >= exact.max() - 0.03
    # analytic optimum: the trough is proportional to the dose (history doses' share ~1e-7), log-symmetric
    # around the MAP's, so the best continuous dose centres the window in log: D* = sqrt(lo hi) / trough_1mg(MAP)
    d_star = np.sqrt(lo * hi) / trough(1.0)(m)
    assert abs(rec["dose"] - d_star) <= 100.0
    assert rec["median"] == pytest.approx(trough(rec["dose"])(m), rel=0.03)
    cur = res["current"]                                       # 500 mg q12h continued
    assert cur["dose"] == 500 and cur["interval"] == 12
    assert cur["probability"] == pytest.approx(_exact_probability(trough(500.0), lo, hi, m, s), abs=0.045)
    assert "maximise P(trough in [4, 8] mg/L)" in res["rule"]


def test_risk_of_a_level_below_a_threshold_matches_the_exact_probability(twin):
    store, m, s = twin
    res = twins.risk(store, "R1", "conc", below=3.0, within=48, n_draws=2000, seed=2)
    grid = np.linspace(24 + 1e-7, 72, 241)
    times = np.r_[0.0, 12.0, 24.0, 36.0, 48.0, 60.0]          # current regimen 500 mg q12h from 24 h

    def lowest(e):
        return float(conc(grid, cl_typical() * np.exp(e), V_TV, times, np.full(6, 500.0)).min())

    exact = 1 - scipy.stats.norm.cdf((_eta_where(lowest, 3.0) - m) / s)
    assert res["probability"] == pytest.approx(exact, abs=0.045)
    assert res["regimen"].startswith("current: 500 mg q12h")
    # known outcomes: a concentration never falls below 0 nor stays below the first peak
    assert twins.risk(store, "R1", "conc", below=0.0, within=48, n_draws=200)["probability"] == 0.0
    assert twins.risk(store, "R1", "conc", above=1e-6, within=48, n_draws=200)["probability"] == 1.0


def test_forecast_compares_regimens_side_by_side(twin):
    store, m, _ = twin
    ds = twins.forecast(store, "R1", ["1000 mg q12h x4", "current", "500 mg q24h"], until=48, points=49,
                        n_draws=500)
    assert list(ds.regimen.values) == ["1000 mg q12h x4", "current: 500 mg q12h", "500 mg q24h"]
    t = ds.time.values
    # the MAP prediction against the independent formula, per regimen
    expect = {0: (np.r_[0, 12, 24, 36, 48, 60], np.r_[500, 500, 1000, 1000, 1000, 1000]),
              1: (np.r_[0, 12, 24, 36, 48, 60], np.full(6, 500.0)), 2: (np.r_[0, 12, 24, 48], np.full(4, 500.0))}
    for i, (dt, amt) in expect.items():
        np.testing.assert_allclose(ds.conc_map.values[i], conc(t, cl_typical() * np.exp(m), V_TV, dt, amt),
                                   rtol=1e-9, atol=1e-12)
    assert np.all(ds.conc_lower <= ds.conc_median) and np.all(ds.conc_median <= ds.conc_upper)
    assert np.all(ds.DV_upper - ds.DV_lower >= ds.conc_upper - ds.conc_lower - 1e-9)   # residual error widens


def test_predictive_intervals_cover_simulated_future_levels_and_posterior_ranks_are_uniform(tmp_path):
    n = 48
    rng = np.random.default_rng(11)
    eta = rng.normal(0, np.sqrt(OMEGA2), n)
    cl = cl_typical() * np.exp(eta)
    dose_t, dose_a = np.array(DOSES).T
    t_obs = np.array([11.5, 14.0])
    y = conc(t_obs, cl, V_TV, dose_t, dose_a) * (1 + PROP * rng.normal(size=(n, 2)))
    batch = []
    for i in range(n):
        pid = f"S{i:03d}"
        batch += [dict(ID=pid, TIME=t, AMT=a, EVID=1, DV=".", WT=WT) for t, a in DOSES]
        batch += [dict(ID=pid, TIME=t, AMT=0.0, EVID=0, DV=v, WT=WT) for t, v in zip(t_obs, y[i])]
    store = tmp_path / "fleet.zarr"
    out = twins.update_all(store, pd.DataFrame(batch), prior=PRIOR, chunk_size=16)
    assert len(out) == n and all(v["version"] == 1 for v in out.values())
    # future levels under the current regimen (500 mg q12h from 24 h)
    t_new = np.array([26.0, 35.9, 47.9])
    f_new = conc(t_new, cl, V_TV, np.r_[dose_t, 24.0, 36.0], np.full(4, 500.0))
    y_new = f_new * (1 + PROP * rng.normal(size=f_new.shape))
    hits, ranks = [], []
    for i in range(n):
        pid = f"S{i:03d}"
        ds = twins.forecast(store, pid, "current", until=24, times=t_new, n_draws=400, seed=i)
        hits.append((ds.DV_lower.values[0] <= y_new[i]) & (y_new[i] <= ds.DV_upper.values[0]))
        s = out[pid]
        ranks.append(scipy.stats.norm.cdf((eta[i] - s["eta"]["ETA1"]) / np.sqrt(s["eta_cov"][0][0])))
    coverage = np.mean(hits)
    se = np.sqrt(0.9 * 0.1 / (3 * n))
    assert abs(coverage - 0.9) < 4 * se, coverage            # 4 binomial SEs (levels of a patient correlate a bit)
    assert scipy.stats.kstest(ranks, "uniform").pvalue > 0.001
