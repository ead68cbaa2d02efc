"""Inter-occasion variability (IOV) in FOCE-I / Laplace: the kappas of every occasion are random
effects of the subject (NONMEM's $OMEGA BLOCK SAME), so (1) for a model linear in eta and kappa the
objective equals the exact Gaussian marginal likelihood; (2) simulation (insilico's `simulate` with
per-occasion parameters) and re-estimation recover Omega_IOV within its standard error; (3) a model
with IOV but no occasions is refused, as are malformed OCC values."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.estimation import FOCEI, LOG_2PI, build_problem, eta_mode, fit, load_population_model, subject_ofv
from insilico.models import Model, Output, Parameter


def _log_baseline() -> Model:
    """Output log(E): with E = TV exp(eta + kappa) the prediction log TV + eta + kappa is linear in
    the random effects (one undosed state on the exact path; the output ignores it)."""
    return Model(name="log_baseline_iov", states=("a",), parameters=(Parameter("E", "1", "baseline"),),
                 rhs=lambda t, y, p: -y,
                 outputs=(Output("logE", "1", "log baseline", lambda y, p: jnp.log(p["E"]) + 0.0 * y[..., 0]),),
                 dose_compartments=("a",), system_matrix=lambda p: -jnp.eye(1), eigenvalues=lambda p: -jnp.ones(1))


TV, W2, IOV2, S = 4.0, 0.16, 0.05, 0.25
# (subject, records as (TIME, occasion)); subject 3 never visits occasion 2 (its kappa_2 must add 0)
DESIGN = [[(1, 1), (2, 1), (11, 2), (12, 2), (21, 3)],
          [(1, 1), (11, 2), (13, 2), (22, 3), (23, 3), (24, 3)],
          [(2, 1), (3, 1), (25, 3)],
          [(12, 2)]]


def _linear_data(with_occ: bool) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for i, recs in enumerate(DESIGN):
        eta, kappa = rng.normal(0, np.sqrt(W2)), rng.normal(0, np.sqrt(IOV2), 3)
        for t, k in recs:
            row = dict(ID=i + 1, TIME=float(t), DV=np.log(5.0) + eta + kappa[k - 1] + rng.normal(0, S))
            rows.append({**row, "OCC": k} if with_occ else row)
    return pd.DataFrame(rows)


def _exact_nonmem_ofv(y: np.ndarray, occ: np.ndarray, w2: float) -> float:
    """-2 log N(y; log TV 1, w2 11' + IOV2 Z Z' + S^2 I) without n log(2 pi) (NONMEM's OFV), Z the
    occasion indicator matrix: the marginal likelihood built by hand."""
    z = (occ[:, None] == np.arange(1, 4)[None, :]).astype(float)
    n = y.size
    cov = w2 * np.ones((n, n)) + IOV2 * z @ z.T + S * S * np.eye(n)
    return -2 * multivariate_normal(np.full(n, np.log(TV)), cov).logpdf(y) - n * LOG_2PI


@pytest.mark.parametrize("source", ["OCC", "starts"])
def test_laplace_and_focei_equal_the_exact_marginal_likelihood_with_iov(source):
    """OCC column with BSV + IOV; occasions by iov.starts with IOV alone (no bsv section)."""
    df = _linear_data(with_occ=source == "OCC")
    spec = {"model": {"name": "log_baseline_iov"}, "output": "logE", "parameters": {"E": {"typical": TV}},
            "iov": {"occasions": 3, "variance": {"E": IOV2}},
            "residual_error": {"type": "additive", "additive": S}}
    if source == "OCC":
        spec["bsv"] = {"parameters": ["E"], "variance": [W2]}
    else:
        spec["iov"]["starts"] = [0.0, 10.0, 20.0]      # TIME 1-3: occasion 1, 11-13: 2, 21-25: 3
    spec, _ = load_population_model(spec)
    problem = build_problem(spec, df, model=_log_baseline())
    assert problem.n_eta == (1 if source == "OCC" else 0) + 3
    assert problem.params.names[-2:] == ("OMEGA_IOV(1,1)", "SIGMA(1,1)")
    pop = problem.params.population(jnp.asarray(problem.params.initial))

    @jax.jit
    @jax.vmap
    def per_subject(subj):
        eta_hat, code = eta_mode(problem, pop, subj, jnp.zeros(problem.n_eta))
        return (eta_hat, code, subject_ofv(problem, pop, subj, eta_hat, "laplace")[0],
                subject_ofv(problem, pop, subj, eta_hat, "focei")[0])

    eta_hat, code, laplace, focei = (np.asarray(a) for a in per_subject(problem.subjects()))
    assert np.all(code == 0)
    occ_of = {t: k for recs in DESIGN for t, k in recs}
    for i in range(len(DESIGN)):
        rows = df[df.ID == i + 1]
        exact = _exact_nonmem_ofv(rows.DV.to_numpy(), np.array([occ_of[t] for t in rows.TIME]),
                                  W2 if source == "OCC" else 0.0)
        assert laplace[i] == pytest.approx(exact, abs=1e-6), i
        assert focei[i] == pytest.approx(exact, abs=1e-6), i
    assert abs(eta_hat[2, -2]) < 1e-10     # subject 3 never in occasion 2: its kappa stays at the prior mode


# ---- simulation and re-estimation ---------------------------------------------------------------
TRUTH = {"CL": 2.0, "V": 20.0, "OMEGA(1,1)": 0.09, "OMEGA(2,2)": 0.04, "OMEGA_IOV(1,1)": 0.04, "SIGMA(1,1)": 0.01}
SAMPLES = np.array([0.5, 1, 2, 4, 8, 12.0])
IOV_MODEL = {"model": {"name": "1cmt_iv"}, "parameters": {"CL": {"typical": 1.5}, "V": {"typical": 25.0}},
             "bsv": {"parameters": ["CL", "V"], "variance": [0.2, 0.2]},
             "iov": {"occasions": 2, "variance": {"CL": 0.1}},
             "residual_error": {"type": "proportional", "proportional": 0.2}}


def _iov_data(n: int = 30, seed: int = 11):
    """1-cmt IV bolus 100 mg at 0 and 24 h, one occasion each (OCC 1, 2), 6 samples per occasion;
    CL_ik = CL exp(eta_CL + kappa_k), simulated by `insilico.engine.simulate` with ``CL_occ`` and
    occasions [0, 24] h. Returns the data and the true kappas (n, 2)."""
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=(n, 2)) * np.sqrt([TRUTH["OMEGA(1,1)"], TRUTH["OMEGA(2,2)"]])
    kappa = rng.normal(size=(n, 2)) * np.sqrt(TRUTH["OMEGA_IOV(1,1)"])
    cl = TRUTH["CL"] * np.exp(eta[:, 0])
    params = {"CL": cl, "V": TRUTH["V"] * np.exp(eta[:, 1]), "CL_occ": cl[:, None] * np.exp(kappa)}
    times = np.r_[SAMPLES, 24 + SAMPLES]
    f = simulate("1cmt_iv", params, Regimen((Dose(amt=100.0), Dose(amt=100.0, time=24.0))), times,
                 occasions=[0.0, 24.0])["conc"].values
    y = f * (1 + np.sqrt(TRUTH["SIGMA(1,1)"]) * rng.normal(size=f.shape))
    rows = []
    for i in range(n):
        for occ, t0 in ((1, 0.0), (2, 24.0)):
            rows.append(dict(ID=i + 1, TIME=t0, AMT=100.0, EVID=1, DV=".", OCC=occ))
            rows += [dict(ID=i + 1, TIME=t, AMT=0.0, EVID=0, DV=v, OCC=occ)
                     for t, v in zip(times, y[i]) if t0 <= t < t0 + 24]
    return pd.DataFrame(rows), kappa


@pytest.fixture(scope="module")
def iov_fit():
    df, kappa = _iov_data()
    return fit(IOV_MODEL, df, FOCEI(), npde_samples=0), kappa


def test_simulation_reestimation_recovers_omega_iov(iov_fit):
    r, kappa = iov_fit
    assert r.converged, r.message
    assert r.covariance is not None, r.covariance_message
    for name, truth in TRUTH.items():
        est, se = r.estimate(name), float(r.se[r.names.index(name)])
        assert abs(est - truth) < 3.0 * se, (name, est, se, truth)      # within 3 SE of the truth
    assert float(r.se[r.names.index("OMEGA_IOV(1,1)")]) < TRUTH["OMEGA_IOV(1,1)"]    # identified (RSE < 100 %)
    # the kappa EBEs, one per subject and occasion, track the simulated kappas
    assert r.kappa.shape == (30, 2, 1)
    assert np.corrcoef(r.kappa[..., 0].ravel(), kappa.ravel())[0, 1] > 0.7     # measured 0.78
    ds = r.to_dataset()
    assert ds["kappa_hat"].dims == ("subject", "occasion", "kappa") and ds["eta_hat"].shape == (30, 2)
    assert list(ds["kappa_parameter"].values) == ["CL"]
    pm = r.population_model()
    assert pm["iov"]["variance"]["CL"] == pytest.approx(r.estimate("OMEGA_IOV(1,1)"))
    assert "OCC" in r.extra["occasions"]


# ---- refusals -----------------------------------------------------------------------------------
def _small_data(occ=None) -> pd.DataFrame:
    rows = [dict(ID=1, TIME=0.0, AMT=100.0, EVID=1, DV="."), dict(ID=1, TIME=1.0, AMT=0.0, EVID=0, DV=4.0),
            dict(ID=1, TIME=25.0, AMT=0.0, EVID=0, DV=1.0)]
    df = pd.DataFrame(rows)
    if occ is not None:
        df["OCC"] = occ
    return df


def test_iov_without_occasions_is_refused():
    with pytest.raises(SpecError) as e:
        fit(IOV_MODEL, _small_data(), "focei")
    assert e.value.field == "iov" and "OCC column" in e.value.message and "iov.starts" in e.value.message


def test_bad_occ_value_names_the_row():
    with pytest.raises(SpecError) as e:
        fit(IOV_MODEL, _small_data(occ=[1, 1, 3]), "focei")
    assert e.value.field == "data.OCC" and e.value.message.startswith("row 3:")
