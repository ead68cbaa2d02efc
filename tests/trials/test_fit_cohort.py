"""A population fit as a trial's cohort (``cohort: fit.zarr``): the fitted population model with
covariates resampled from the fitted subjects, and the fit's uncertainty (covariance of the
estimates, or posterior draws) as the replicates' population-parameter uncertainty.

The fit stores are written by the real `FitResult.to_dataset` / `write_fit` from chosen numbers
(estimates, covariance, posterior), so the expected values are known exactly."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from insilico.errors import SpecError
from insilico.estimation import FitResult
from insilico.store import open_fit, write_fit
from insilico.trials import FitSource, load_trial_spec, prepare, run

NAMES = ("CL", "CL.WT", "V", "V.SEX[F]", "V.SEX[M]", "KA", "OMEGA(1,1)", "OMEGA(2,1)", "OMEGA(2,2)", "OMEGA(3,3)",
         "SIGMA(1,1)")
KINDS = ("typical", "effect", "typical", "multiplier", "multiplier", "typical", "omega", "omega", "omega", "omega",
         "sigma")
ESTIMATE = np.array([3.0, 0.75, 30.0, 0.8, 1.0, 1.2, 0.09, 0.02, 0.04, 0.16, 0.01])
FIXED = np.array([n in ("CL.WT", "V.SEX[M]") for n in NAMES])
SE = np.array([0.1, 1.0, 0.03, 0.08, 0.015, 0.008, 0.008, 0.03, 0.001])     # of the 9 free quantities
N_FIT = 40


def _covariance(se=SE) -> np.ndarray:
    r = np.eye(se.size)
    r[0, 1] = r[1, 0] = 0.3        # CL, V
    r[4, 5] = r[5, 4] = 0.2        # OMEGA(1,1), OMEGA(2,1)
    r[1, 2] = r[2, 1] = -0.25      # V, V.SEX[F]
    return r * np.outer(se, se)


def _spec() -> dict:
    return {"name": "synthetic", "description": "", "model": {"name": "1cmt_oral", "parameters": {}}, "output": "conc",
            "parameters": {
                "CL": {"typical": 2.0, "effects": [{"covariate": "WT", "type": "power", "theta": 0.75, "ref": 70.0}]},
                "V": {"typical": 20.0, "effects": [{"covariate": "SEX", "type": "categorical",
                                                    "multipliers": {"F": 1.0, "M": 1.0}}]},
                "KA": {"typical": 1.0, "effects": []}},
            "bsv": {"parameters": ["CL", "V", "KA"], "omega": [[0.1, 0.01, 0], [0.01, 0.1, 0], [0, 0, 0.1]]},
            "residual_error": {"type": "proportional", "proportional": 0.2},
            "estimate": {"fix": ["CL.WT", "V.SEX[M]"], "bounds": {}, "max_iter": 500}}


def covariates() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ids = np.arange(1, N_FIT + 1)
    return pd.DataFrame({"WT": np.round(rng.uniform(50, 100, N_FIT), 1), "SEX": rng.choice(["F", "M"], N_FIT)},
                        index=pd.Index(ids, name="ID"))


def write_synthetic_fit(path, *, estimate=ESTIMATE, covariance="default", posterior=None):
    """A fit store with the given numbers (covariance over the free quantities, None: no covariance
    step; posterior: (chains, draws, p) draws of a Bayesian fit)."""
    cov = _covariance() if isinstance(covariance, str) else covariance
    k, T = 3, 1
    result = FitResult(
        method="nuts" if posterior is not None else "focei", names=NAMES, kinds=KINDS, estimates=np.asarray(estimate),
        fixed=FIXED, covariance=cov, ofv=0.0, converged=True, message="synthetic",
        covariance_message="synthetic" if cov is not None else "R matrix not positive definite", iterations=1,
        seconds=0.0, ids=np.arange(1, N_FIT + 1), bsv_names=("CL", "V", "KA"), eta=np.zeros((N_FIT, k)),
        eta_cov=np.zeros((N_FIT, k, k)), eta_status=np.zeros(N_FIT, np.int64), ofv_subject=np.zeros(N_FIT),
        times=np.ones((N_FIT, T)), dv=np.ones((N_FIT, T)), residuals={}, eta_shrinkage=np.zeros(k),
        eps_shrinkage=0.0, n_observations=N_FIT * T, spec=_spec(), covariates=covariates(),
        extra={} if posterior is None else {"draws": posterior})
    write_fit(result.to_dataset(), path, overwrite=True)
    return path


@pytest.fixture(scope="module")
def fit_store(tmp_path_factory):
    return write_synthetic_fit(tmp_path_factory.mktemp("fit") / "fit.zarr")


def _source(path) -> FitSource:
    return FitSource.from_dataset(open_fit(path), path)


def trial(cohort, **extra) -> dict:
    spec = {"name": "from_fit", "seed": 11, "n": 50, "model": {"name": "1cmt_oral"}, "cohort": str(cohort),
            "arms": [{"name": "a", "regimen": [{"amt": 100}]}], "observations": {"times": [1, 4, 12]},
            "endpoints": [{"name": "cmax", "type": "cmax", "window": [0, 24]}]}
    spec.update(extra)
    return spec


# -- the replicates' draws --------------------------------------------------------------------------------------------

def test_covariance_draws_have_the_fit_mean_and_covariance(fit_store):
    """4000 replicates: whitened draws L^-1 (theta - estimate) have mean 0 (each within 4.5/sqrt(n))
    and covariance I (diagonal within 5 sqrt(2/n), off-diagonal within 5/sqrt(n)); fixed ones stay."""
    src = _source(fit_store)
    assert src.uncertainty == "covariance"
    n = 4000
    draws = src.draws(3, range(n))
    np.testing.assert_array_equal(draws[:, FIXED], np.tile(ESTIMATE[FIXED], (n, 1)))
    w = np.linalg.solve(np.linalg.cholesky(_covariance()), (draws[:, ~FIXED] - ESTIMATE[~FIXED]).T).T
    assert np.all(np.abs(w.mean(0)) < 4.5 / math.sqrt(n)), w.mean(0)
    c = np.cov(w, rowvar=False)
    assert np.all(np.abs(np.diag(c) - 1) < 5 * math.sqrt(2 / n)), np.diag(c)
    off = c[~np.eye(c.shape[0], dtype=bool)]
    assert np.all(np.abs(off) < 5 / math.sqrt(n)), off
    # a replicate's draw depends only on (seed, replicate)
    np.testing.assert_array_equal(src.draws(3, [17])[0], draws[17])
    assert not np.array_equal(src.draws(4, [17])[0], draws[17])


def test_invalid_draws_are_redrawn(tmp_path):
    """KA = 0.5 with SE 0.5 (independent of the rest): redrawing the draws with KA <= 0 gives
    the normal truncated to KA > 0 (scipy's truncnorm: mean and SD within 5 SE)."""
    se = SE.copy()
    se[3] = 0.5
    est = ESTIMATE.copy()
    est[NAMES.index("KA")] = 0.5
    path = write_synthetic_fit(tmp_path / "wide.zarr", estimate=est, covariance=np.diag(se ** 2))
    n = 6000
    ka = _source(path).draws(1, range(n))[:, NAMES.index("KA")]
    assert ka.min() > 0
    ref = stats.truncnorm(-1.0, np.inf, loc=0.5, scale=0.5)
    assert abs(ka.mean() - ref.mean()) < 5 * ref.std() / math.sqrt(n)
    assert abs(ka.std() - ref.std()) < 5 * ref.std() / math.sqrt(2 * n)


def test_posterior_draws_one_per_replicate(tmp_path):
    """A Bayesian fit: each replicate takes one posterior draw, uniformly among the 2 x 50 draws
    (chi-square(99) below its 0.9999 quantile over 5000 replicates), deterministic per replicate."""
    rng = np.random.default_rng(2)
    post = ESTIMATE * np.exp(0.05 * rng.normal(size=(2, 50, ESTIMATE.size)))
    post[..., FIXED] = ESTIMATE[FIXED]
    path = write_synthetic_fit(tmp_path / "nuts.zarr", posterior=post)
    src = _source(path)
    assert src.uncertainty == "posterior"
    n = 5000
    draws = src.draws(5, range(n))
    flat = post.reshape(-1, ESTIMATE.size)
    which = np.array([np.flatnonzero(np.all(flat == d, axis=1))[0] for d in draws])
    counts = np.bincount(which, minlength=100)
    chi2 = float(np.sum((counts - n / 100) ** 2 / (n / 100)))
    assert chi2 < stats.chi2.ppf(0.9999, 99), chi2
    np.testing.assert_array_equal(src.draws(5, [123])[0], draws[123])


# -- trials ---------------------------------------------------------------------------------------------------------

def test_trial_at_the_estimates_has_the_fitted_parameters(fit_store, tmp_path, client):
    """fit_uncertainty false: one replicate of 3000 subjects. Covariates are the fitted subjects'
    (whole rows); log CL - log(3.0 (WT/70)^0.75) ~ N(0, 0.09), log V - log(30 x 0.8 if F) ~ N(0, 0.04),
    corr(eta_CL, eta_V) = 0.02 / sqrt(0.09 x 0.04); tolerances 4-5 sampling SEs."""
    n = 3000
    spec = trial(fit_store, n=n, replicates={"n": 1, "fit_uncertainty": False},
                 execution={"chunk_size": 1500, "save_profiles": False})
    ds = run(spec, tmp_path / "t.zarr", cluster=client).isel(replicate=0).load()
    cov = covariates()
    row = ds["resample_row"].values
    np.testing.assert_array_equal(ds.WT.values, cov.WT.values[row])
    sex = np.array(ds.SEX.attrs["flag_meanings"].split())[ds.SEX.values]
    np.testing.assert_array_equal(sex, cov.SEX.values[row])
    e_cl = np.log(ds.CL.values) - np.log(3.0 * (ds.WT.values / 70) ** 0.75)
    e_v = np.log(ds.V.values) - np.log(30.0 * np.where(sex == "F", 0.8, 1.0))
    for e, om in ((e_cl, 0.09), (e_v, 0.04)):
        assert abs(e.mean()) < 4 * math.sqrt(om / n)
        assert abs(e.var() - om) < 5 * om * math.sqrt(2 / n)
    np.testing.assert_allclose(e_cl, ds.eta_CL.values, atol=1e-12)
    r = 0.02 / math.sqrt(0.09 * 0.04)
    assert abs(np.corrcoef(e_cl, e_v)[0, 1] - r) < 5 * (1 - r * r) / math.sqrt(n)
    # median CL of the replicate = estimate x covariate effect (log-normal median SE ~ 1.25 omega / sqrt(n))
    med = np.median(ds.CL.values / (ds.WT.values / 70) ** 0.75)
    assert abs(math.log(med / 3.0)) < 4 * 1.2533 * 0.3 / math.sqrt(n)
    stored = json.loads(ds.attrs["replicate_population"])
    assert stored["source"] == "estimate" and stored["values"][0] == pytest.approx(list(ESTIMATE))


def test_trial_replicates_draw_from_the_fit_uncertainty(fit_store, tmp_path, client):
    """Default for a fit cohort: replicate r simulates with draw r of the fit's uncertainty (stored
    in ``replicate_population``): its subjects' typical CL, eta variance and residual SD are the draw's."""
    n, reps = 1500, 3
    spec = trial(fit_store, n=n, replicates={"n": reps}, execution={"chunk_size": 1500})
    ds = run(spec, tmp_path / "u.zarr", cluster=client).load()
    stored = json.loads(ds.attrs["replicate_population"])
    expected = _source(fit_store).draws(11, range(reps))
    assert stored["source"] == "covariance"
    np.testing.assert_array_equal(np.array(stored["values"]), expected)
    for r in range(reps):
        d = ds.isel(replicate=r)
        v = dict(zip(NAMES, expected[r]))
        e_cl = np.log(d.CL.values) - np.log(v["CL"] * (d.WT.values / 70) ** 0.75)
        assert abs(e_cl.mean()) < 4 * math.sqrt(v["OMEGA(1,1)"] / n), (r, e_cl.mean())
        assert abs(e_cl.var() - v["OMEGA(1,1)"]) < 5 * v["OMEGA(1,1)"] * math.sqrt(2 / n)
        # residual error: conc_obs = conc (1 + sd eps), sd = sqrt(SIGMA(1,1)) of the replicate
        rel = (d.conc_obs / d.conc - 1).values.ravel()
        rel = rel[np.isfinite(rel)]
        assert abs(rel.std() / math.sqrt(v["SIGMA(1,1)"]) - 1) < 5 / math.sqrt(2 * rel.size)
    assert not np.allclose(expected[0], ESTIMATE)


# -- spec checks ----------------------------------------------------------------------------------------------------

def _prepare(spec, overrides=None):
    return prepare(*load_trial_spec(spec, overrides), screen=False)


def test_fit_cohort_context(fit_store):
    ctx = _prepare(trial(fit_store))
    assert ctx.fit_draws and ctx.fit is not None
    assert list(ctx.cohort.resample.columns) == ["WT", "SEX"]
    assert ctx.cohort.resample.categories == {"SEX": ["F", "M"]}
    pop = ctx.population(0)
    assert pop.typical[0] == pytest.approx(_source(fit_store).draws(11, [0])[0][0])
    assert ctx.residual_error(0)["proportional"] == pytest.approx(math.sqrt(_source(fit_store).draws(11, [0])[0][-1]))
    assert _prepare(trial(fit_store, replicates={"fit_uncertainty": False})).population(0) is None


@pytest.mark.parametrize("extra, field", [
    ({"replicates": {"uncertainty": {"CL": 0.1}}}, "replicates.uncertainty"),
    ({"model": {"name": "2cmt_iv"}}, "model.name"),
])
def test_refused_with_a_fit(fit_store, extra, field):
    with pytest.raises(SpecError) as e:
        _prepare(trial(fit_store, **extra))
    assert e.value.field == field, str(e.value)


def test_log_sds_allowed_at_the_estimates(fit_store):
    ctx = _prepare(trial(fit_store, replicates={"uncertainty": {"CL": 0.1}, "fit_uncertainty": False}))
    assert not ctx.fit_draws


def test_fit_without_uncertainty(tmp_path):
    path = write_synthetic_fit(tmp_path / "nocov.zarr", covariance=None)
    with pytest.raises(SpecError, match="no covariance") as e:
        _prepare(trial(path))
    assert e.value.field == "replicates.fit_uncertainty"
    assert _prepare(trial(path, replicates={"fit_uncertainty": False})).fit.uncertainty is None


def test_fit_uncertainty_needs_a_fit_and_a_folder_must_be_a_fit(tmp_path):
    from pathlib import Path
    cohort = Path(__file__).resolve().parents[2] / "cohorts/healthy_adults.yaml"
    with pytest.raises(SpecError) as e:
        _prepare(trial(cohort, replicates={"fit_uncertainty": True}))
    assert e.value.field == "replicates.fit_uncertainty"
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(SpecError, match="not a cohort spec file or a fit store") as e:
        _prepare(trial(tmp_path / "empty.zarr"))
    assert e.value.field == "cohort.path"


def test_set_cohort_to_a_fit_in_the_working_directory(fit_store, tmp_path, monkeypatch):
    """``--set cohort=fit.zarr``: a relative path not in the spec's folder is found in the working
    directory and recorded as absolute (workers may run elsewhere)."""
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / "t.yaml").write_text(json.dumps(trial("placeholder.yaml")))
    monkeypatch.chdir(fit_store.parent)
    ctx = _prepare(tmp_path / "trials" / "t.yaml", ["cohort=fit.zarr"])
    assert ctx.fit is not None and ctx.spec.cohort == str(fit_store.resolve())
