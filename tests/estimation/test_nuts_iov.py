"""NUTS with inter-occasion variability: the kappas of every subject and occasion are sampled
(non-centred, `insilico.estimation._nuts`). One simulation-re-estimation fit (one compilation) checks
that (1) the posterior means of the population quantities, an estimated OMEGA_IOV among them, lie
within 3 posterior SDs of the truth, with R-hat and ESS reported for OMEGA_IOV; (2) a fixed OMEGA_IOV
stays at its value in every draw; (3) a kappa of an occasion the subject never visits keeps its prior:
posterior mean 0 and variance E[omega_iov^2 | y] (the posterior mean of OMEGA_IOV), the exact
marginal of ``kappa | omega_iov ~ N(0, omega_iov^2)``; (4) the result has the FOCE-I result's shapes
(kappa EBE-like summaries per subject and occasion, the fit store's kappa variables) and the fit report
renders it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insilico.analysis.fit_report import render_fit_report
from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.estimation import NUTS, fit

TRUTH = {"CL": 2.0, "V": 20.0, "OMEGA(1,1)": 0.09, "OMEGA(2,2)": 0.04, "OMEGA_IOV(1,1)": 0.04,
         "OMEGA_IOV(2,2)": 0.01, "SIGMA(1,1)": 0.01}
SAMPLES = np.array([0.5, 4.0, 12.0])       # h after each occasion's dose
N = 20                                     # the last subject has occasion 1 only
# initial values away from the truth; OMEGA_IOV(2,2) (IOV of V) fixed at its true value
MODEL = {"model": {"name": "1cmt_iv"}, "parameters": {"CL": {"typical": 1.5}, "V": {"typical": 25.0}},
         "bsv": {"parameters": ["CL", "V"], "variance": [0.2, 0.2]},
         "iov": {"occasions": 2, "variance": {"CL": 0.1, "V": TRUTH["OMEGA_IOV(2,2)"]}},
         "residual_error": {"type": "proportional", "proportional": 0.2},
         "estimate": {"fix": ["OMEGA_IOV(2,2)"]}}


def _data(seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """1-cmt IV bolus 100 mg at 0 and 24 h (OCC 1, 2), 3 samples per occasion, proportional error;
    P_ik = TV exp(eta_i + kappa_ik) for CL and V, simulated by `insilico.engine.simulate` with
    ``CL_occ``, ``V_occ`` and occasions [0, 24] h. Returns the data and the true kappas (N, 2, 2)."""
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=(N, 2)) * np.sqrt([TRUTH["OMEGA(1,1)"], TRUTH["OMEGA(2,2)"]])
    kappa = rng.normal(size=(N, 2, 2)) * np.sqrt([TRUTH["OMEGA_IOV(1,1)"], TRUTH["OMEGA_IOV(2,2)"]])
    cl, v = TRUTH["CL"] * np.exp(eta[:, 0]), TRUTH["V"] * np.exp(eta[:, 1])
    params = {"CL": cl, "V": v, "CL_occ": cl[:, None] * np.exp(kappa[..., 0]),
              "V_occ": v[:, None] * np.exp(kappa[..., 1])}
    times = np.r_[SAMPLES, 24 + SAMPLES]
    f = simulate("1cmt_iv", params, Regimen((Dose(amt=100.0), Dose(amt=100.0, time=24.0))), times,
                 occasions=[0.0, 24.0])["conc"].values
    y = f * (1 + np.sqrt(TRUTH["SIGMA(1,1)"]) * rng.normal(size=f.shape))
    rows = []
    for i in range(N):
        for occ, t0 in ((1, 0.0), (2, 24.0))[:1 if i == N - 1 else 2]:
            rows.append(dict(ID=i + 1, TIME=t0, AMT=100.0, EVID=1, DV=".", OCC=occ))
            rows += [dict(ID=i + 1, TIME=t, AMT=0.0, EVID=0, DV=c, OCC=occ)
                     for t, c in zip(times, y[i]) if t0 <= t < t0 + 24]
    return pd.DataFrame(rows), kappa


@pytest.fixture(scope="module")
def bayes():
    df, kappa = _data()
    return fit(MODEL, df, NUTS(chains=4, warmup=200, samples=200, seed=1)), kappa


def _posterior(r, name: str) -> np.ndarray:
    return r.extra["draws"][..., r.names.index(name)]


def test_posterior_means_recover_the_truth_and_omega_iov_is_diagnosed(bayes):
    r, _ = bayes
    assert r.names[-3:] == ("OMEGA_IOV(1,1)", "OMEGA_IOV(2,2)", "SIGMA(1,1)")
    for name, truth in TRUTH.items():
        if name == "OMEGA_IOV(2,2)":
            continue
        sd = _posterior(r, name).std()
        # simulation-re-estimation: the truth within 3 posterior SDs of the posterior mean (7 checks)
        assert abs(r.estimate(name) - truth) < 3.0 * sd, (name, r.estimate(name), sd, truth)
    i = r.names.index("OMEGA_IOV(1,1)")
    assert _posterior(r, "OMEGA_IOV(1,1)").std() < TRUTH["OMEGA_IOV(1,1)"]      # identified: posterior CV < 100 %
    assert np.isfinite(r.extra["rhat"][i]) and r.extra["rhat"][i] < 1.05
    assert r.extra["ess_bulk"][i] > 50 and r.extra["ess_tail"][i] > 50
    ds = r.to_dataset()
    assert ds.posterior.shape == (4, 200, len(r.names))
    assert np.isfinite(ds.rhat.sel(param="OMEGA_IOV(1,1)").item())


def test_fixed_omega_iov_stays_at_its_value(bayes):
    r, _ = bayes
    i = r.names.index("OMEGA_IOV(2,2)")
    assert r.fixed[i] and not r.fixed[r.names.index("OMEGA_IOV(1,1)")]
    draws = _posterior(r, "OMEGA_IOV(2,2)")
    assert np.ptp(draws) == 0.0 and draws[0, 0] == pytest.approx(TRUTH["OMEGA_IOV(2,2)"], rel=1e-12)
    assert np.isnan(r.extra["rhat"][i]) and np.isnan(r.se[i])
    assert r.population_model()["iov"]["variance"]["V"] == pytest.approx(TRUTH["OMEGA_IOV(2,2)"], rel=1e-12)


def test_unvisited_occasion_keeps_the_prior_of_its_kappa(bayes):
    r, _ = bayes
    m = r.kappa[-1, 1, 0]                 # last subject, occasion 2 (never visited), kappa of CL
    var = r.kappa_cov[-1, 1, 0, 0]
    prior_var = r.estimate("OMEGA_IOV(1,1)")      # E[omega_iov^2 | y]
    # Monte Carlo tolerances: 800 draws (4 x 200) of a N(0, omega_iov^2) mixture, ESS taken as >= 400
    assert abs(m) < 4.0 * np.sqrt(prior_var / 400), m
    assert var == pytest.approx(prior_var, rel=0.3)
    # its fixed-SD twin (kappa of V): variance omega_iov(2,2)^2 exactly in law
    assert r.kappa_cov[-1, 1, 1, 1] == pytest.approx(TRUTH["OMEGA_IOV(2,2)"], rel=0.3)


def test_kappa_summaries_have_the_focei_shapes(bayes):
    r, kappa = bayes
    assert r.eta.shape == (N, 2 + 2 * 2) and r.eta_cov.shape == (N, 6, 6)
    assert r.kappa.shape == (N, 2, 2) and r.kappa_cov.shape == (N, 2, 2, 2)
    # posterior means of the estimated-IOV kappas track the simulated ones (visited occasions)
    seen = np.ones((N, 2), bool)
    seen[-1, 1] = False
    assert np.corrcoef(r.kappa[..., 0][seen], kappa[..., 0][seen])[0, 1] > 0.5
    ds = r.to_dataset()
    assert ds["kappa_hat"].dims == ("subject", "occasion", "kappa") and ds["eta_hat"].shape == (N, 2)
    assert ds["kappa_cov"].shape == (N, 2, 2, 2) and ds["kappa_shrinkage"].shape == (2, 2)
    assert list(ds["kappa_parameter"].values) == ["CL", "V"]
    assert "OCC" in r.extra["occasions"]
    page = render_fit_report(ds, plots=False)       # the report's NUTS tables (R-hat, ESS) list OMEGA_IOV
    assert page.count("OMEGA_IOV(1,1)") >= 2 and "R-hat" in page
