"""Inter-occasion variability (IOV) downstream of a fit: the VPC simulates the kappas of every
occasion (checked against the analytic covariance of log concentrations), a fit store used as a
trial cohort keeps the fitted IOV (the trial's kappas have the fitted variance and are applied by
occasion), and a trial's replicate uncertainty draws ``OMEGA_IOV(j,j)`` with the other estimates.

One small FOCE-I fit (20 subjects x 2 occasions, 1-cmt IV bolus, exact path, occasions from
``iov.starts``) is shared by every test of the file."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insilico.cohorts import fit_cohort_spec, population_from_estimates
from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.estimation import FOCEI, fit, vpc
from insilico.population import population_quantities
from insilico.store import open_fit, write_fit
from insilico.trials import load_trial_spec, prepare
from insilico.trials._unit import compute_unit, draw_subjects, occasion_params, subject_range

STARTS = [0.0, 24.0]
SAMPLES = np.array([0.5, 1, 2, 4, 8, 12.0])
SPEC = {"model": {"name": "1cmt_iv"}, "parameters": {"CL": {"typical": 1.5}, "V": {"typical": 25.0}},
        "bsv": {"parameters": ["CL", "V"], "variance": [0.2, 0.2]},
        "iov": {"occasions": 2, "variance": {"CL": 0.1}, "starts": STARTS},
        "residual_error": {"type": "proportional", "proportional": 0.2}}


def _data(n: int = 20, seed: int = 11) -> pd.DataFrame:
    """100 mg IV bolus at 0 and 24 h, 6 samples after each; CL_ik = 2 exp(eta_CL + kappa_k) (omega^2
    0.09, omega_IOV^2 0.04), V = 20 exp(eta_V) (0.04), 10 % proportional error; simulated by
    `insilico.engine.simulate` with ``CL_occ`` and occasions [0, 24] h. No OCC column."""
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=(n, 2)) * np.sqrt([0.09, 0.04])
    kappa = rng.normal(size=(n, 2)) * 0.2
    cl = 2.0 * np.exp(eta[:, 0])
    params = {"CL": cl, "V": 20.0 * np.exp(eta[:, 1]), "CL_occ": cl[:, None] * np.exp(kappa)}
    times = np.r_[SAMPLES, 24 + SAMPLES]
    f = simulate("1cmt_iv", params, Regimen((Dose(amt=100.0), Dose(amt=100.0, time=24.0))), times,
                 occasions=STARTS)["conc"].values
    y = f * (1 + 0.1 * rng.normal(size=f.shape))
    rows = []
    for i in range(n):
        rows += [dict(ID=i + 1, TIME=0.0, AMT=100.0, EVID=1, DV="."),
                 dict(ID=i + 1, TIME=24.0, AMT=100.0, EVID=1, DV=".")]
        rows += [dict(ID=i + 1, TIME=t, AMT=0.0, EVID=0, DV=v) for t, v in zip(times, y[i])]
    return pd.DataFrame(rows).sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False], kind="stable")


@pytest.fixture(scope="module")
def iov_fit(tmp_path_factory):
    """(FitResult, data, fit store path) of the one shared FOCE-I fit."""
    df = _data()
    r = fit(SPEC, df, FOCEI(), npde_samples=0)
    assert r.converged and r.covariance is not None, (r.message, r.covariance_message)
    path = write_fit(r.to_dataset(), tmp_path_factory.mktemp("iov") / "fit.zarr")
    return r, df, path


def _fit_like(model: dict) -> xr.Dataset:
    """What `vpc` reads of a fit: the population model at the estimates."""
    return xr.Dataset(attrs={"population_model": json.dumps(model)})


# ---- 1. VPC -------------------------------------------------------------------------------------

def test_vpc_of_an_iov_fit_simulates_the_kappas(iov_fit):
    """The VPC of the fit runs, and its simulated spread (log P95/P5, mean over bins and replicates)
    is larger than that of the same model with Omega_IOV ~ 0 (same seed, so the same normals)."""
    r, df, path = iov_fit
    ds = open_fit(path)
    out = vpc(ds, df, n_sim=50, seed=1)
    assert out.attrs["n_failed"] == 0 and out.sizes["bin"] == 10
    assert np.all(np.isfinite(out["sim_median"].values))
    pm = json.loads(ds.attrs["population_model"])
    assert pm["iov"]["variance"]["CL"] == pytest.approx(r.estimate("OMEGA_IOV(1,1)"))
    pm["iov"]["variance"]["CL"] = 1e-10
    none = vpc(_fit_like(pm), df, n_sim=50, seed=1)

    def spread(v):
        p = v["sim_percentiles"].values
        return float(np.mean(np.log(p[..., 2] / p[..., 0])))
    # measured 0.737 vs 0.690 (fitted omega_IOV^2 0.030 next to omega_CL^2 0.087; late samples:
    # d log C / d kappa = -CL t / V ~ -1.3 at 12 h)
    assert spread(out) > spread(none) + 0.02, (spread(out), spread(none))


def test_vpc_iov_draws_match_the_analytic_covariance():
    """10 subjects, two occasions (OCC column) far apart, one sample 0.05 h (+ 0.002 h x subject
    index, so that each sample has a bin of its own) after each dose: with V = 20 exp(eta + kappa_k),
    log C_k = log(100/20) - eta - kappa_k (the elimination term CL t / V ~ 0.0025 and the 0.1 % error
    are negligible), so Var log C_k = omega^2 + omega_IOV^2 = 0.13, Cov(log C_1, log C_2) = omega^2 =
    0.04 and Var(log C_2 - log C_1) = 2 omega_IOV^2 = 0.18 (a kappa shared by the occasions would give
    0, etas redrawn per occasion 0.26). With one observation per bin a replicate's bin percentile is
    that simulated value: 200 replicates x 10 subjects = 2000 independent pairs. Tolerances: 5
    sampling SEs (mean: sqrt(v/n); variance: v sqrt(2/n); covariance: sqrt((v1 v2 + c^2)/n))."""
    w2, iov2, n_sub, n_sim = 0.04, 0.09, 10, 200
    model = {"model": {"name": "1cmt_iv"}, "parameters": {"CL": {"typical": 1.0}, "V": {"typical": 20.0}},
             "bsv": {"parameters": ["V"], "variance": [w2]}, "iov": {"occasions": 2, "variance": {"V": iov2}},
             "residual_error": {"type": "proportional", "proportional": 0.001}}
    rows = []
    for i in range(n_sub):
        for k, t0 in ((1, 0.0), (2, 1000.0)):
            rows += [dict(ID=i + 1, TIME=t0, AMT=100.0, EVID=1, DV=".", OCC=k),
                     dict(ID=i + 1, TIME=t0 + 0.05 + 0.002 * i, AMT=0.0, EVID=0, DV=5.0, OCC=k)]
    df = pd.DataFrame(rows)
    t = np.sort(df.TIME[df.EVID == 0].to_numpy())
    out = vpc(_fit_like(model), df, n_sim=n_sim, seed=7, bins=np.r_[t[0], (t[1:] + t[:-1]) / 2, t[-1]])
    assert out.sizes["bin"] == 2 * n_sub and np.all(out["n_obs"].values == 1)
    y = np.log(out["sim_percentiles"].values[:, :, 1]) - math.log(5.0)      # (replicate, bin)
    y = np.stack([y[:, :n_sub].ravel(), y[:, n_sub:].ravel()], axis=1)     # bins in time order: occasion 1, 2
    n = y.shape[0]
    c = np.cov(y, rowvar=False)
    v = w2 + iov2
    for k in range(2):
        assert abs(y[:, k].mean()) < 5 * math.sqrt(v / n)
        assert abs(c[k, k] - v) < 5 * v * math.sqrt(2 / n), c
    assert abs(c[0, 1] - w2) < 5 * math.sqrt((v * v + w2 * w2) / n), c
    d = np.var(y[:, 1] - y[:, 0], ddof=1)
    assert abs(d - 2 * iov2) < 5 * 2 * iov2 * math.sqrt(2 / n), d


# ---- 2. the fit store as a trial cohort ---------------------------------------------------------

def _trial(path, n: int, **extra) -> dict:
    spec = {"name": "from_iov_fit", "seed": 3, "n": n, "model": {"name": "1cmt_iv"}, "cohort": str(path),
            "arms": [{"name": "a", "regimen": [{"amt": 100}, {"amt": 100, "time": 24}]}],
            "observations": {"times": [2, 12, 26, 36]}, "execution": {"chunk_size": n}}
    spec.update(extra)
    return spec


def test_fit_cohort_applies_the_fitted_iov(iov_fit):
    """At the estimates (fit_uncertainty false): the cohort has the fitted iov section; over 4000
    subjects x 2 occasions the kappas have mean 0 and variance OMEGA_IOV (within 5 SEs: v sqrt(2/n)),
    CL_occ = CL exp(kappa_k), and the trial simulates occasion k with CL_occ[:, k] (equal to
    `simulate` with occasions [0, 24] h; after 24 h unlike the occasion-1 CL throughout)."""
    r, _, path = iov_fit
    om = r.estimate("OMEGA_IOV(1,1)")
    n = 4000
    ctx = prepare(*load_trial_spec(_trial(path, n, replicates={"fit_uncertainty": False})), screen=False)
    assert ctx.cohort.iov.starts == STARTS and ctx.cohort.iov.variance == {"CL": pytest.approx(om)}
    cohort, params, _, _ = draw_subjects(ctx, 0, subject_range(ctx, 0))
    kappa = cohort["kappa_CL"].values
    assert kappa.shape == (n, 2)
    assert abs(kappa.mean()) < 5 * math.sqrt(om / kappa.size)
    assert abs(kappa.var() - om) < 5 * om * math.sqrt(2 / kappa.size), (kappa.var(), om)
    occ = occasion_params(ctx, cohort, 0)["CL_occ"]
    np.testing.assert_allclose(occ, params["CL"][:, None] * np.exp(kappa), rtol=1e-12)
    # the trial's simulation uses CL_occ by occasion (first 50 subjects)
    small = prepare(*load_trial_spec(_trial(path, 50, replicates={"fit_uncertainty": False})), screen=False)
    arm = compute_unit(small, 0, 0, 0, 2)["arm"]
    cohort, params, _, _ = draw_subjects(small, 0, subject_range(small, 0))
    occ = occasion_params(small, cohort, 0)
    assert (arm["status"] == 0).all()
    reg = small.regimens[0]
    expected = simulate(small.model, {**params, **occ}, reg, small.nominal, occasions=STARTS).conc.values
    np.testing.assert_allclose(arm["conc"], expected, rtol=1e-10)
    first = simulate(small.model, {**params, "CL": occ["CL_occ"][:, 0]}, reg, small.nominal).conc.values
    late = small.nominal > 24
    assert np.max(np.abs(expected[:, late] / first[:, late] - 1)) > 0.05


def test_replicates_draw_omega_iov_from_the_fit(iov_fit):
    """Default fit uncertainty: the drawn quantities are the fit's names (OMEGA_IOV(1,1) among them,
    in `population_quantities` order); 3000 draws of OMEGA_IOV have the estimate's mean and SE (5
    SEs); replicate r's population and kappas have its drawn OMEGA_IOV."""
    r, _, path = iov_fit
    n = 1500
    ctx = prepare(*load_trial_spec(_trial(path, n)), screen=False)
    assert ctx.fit_draws
    names = ctx.fit.names
    pop = ctx.population(0)
    assert names == tuple(r.names) == tuple(q.name for q in population_quantities(pop))
    j = names.index("OMEGA_IOV(1,1)")
    draws = ctx.fit.draws(ctx.spec.seed, range(3000))[:, j]
    est, se = r.estimate("OMEGA_IOV(1,1)"), float(r.se[j])
    assert abs(draws.mean() - est) < 5 * se / math.sqrt(draws.size)
    assert abs(draws.std() / se - 1) < 5 / math.sqrt(2 * draws.size)
    for rep in (0, 1):
        v = ctx.fit.draws(ctx.spec.seed, [rep])[0][j]
        assert ctx.population(rep).iov_sd[0] ** 2 == pytest.approx(v, rel=1e-12)
        kappa = draw_subjects(ctx, rep, subject_range(ctx, 0))[0]["kappa_CL"].values
        assert abs(kappa.var() - v) < 5 * v * math.sqrt(2 / kappa.size), (rep, kappa.var(), v)


def test_population_from_estimates_sets_and_checks_omega_iov(iov_fit):
    r, _, path = iov_fit
    pop = prepare(*load_trial_spec(_trial(path, 10)), screen=False).population(0)
    assert population_from_estimates(pop, {"OMEGA_IOV(1,1)": 0.25}).iov_sd[0] == pytest.approx(0.5)
    for values, words in (({"OMEGA_IOV(1,1)": 0.0}, "must be a variance > 0"),
                          ({"OMEGA_IOV(2,2)": 0.1}, "not quantities of this population model")):
        with pytest.raises(SpecError, match=words) as e:
            population_from_estimates(pop, values)
        assert e.value.field == "population"


def test_fit_with_occ_column_occasions_is_refused_as_a_cohort(iov_fit):
    """A fit whose occasions came from an OCC column has no start times: refused, not IOV dropped."""
    _, _, path = iov_fit
    ds = open_fit(path)
    pm = json.loads(ds.attrs["population_model"])
    del pm["iov"]["starts"]
    ds = ds.copy()
    ds.attrs = {**ds.attrs, "population_model": json.dumps(pm)}
    with pytest.raises(SpecError, match="no occasion start times") as e:
        fit_cohort_spec(ds, path)
    assert e.value.field == "iov.starts"
    assert fit_cohort_spec(open_fit(path), path, units={"CL": "L/h", "V": "L"}).iov.starts == STARTS
