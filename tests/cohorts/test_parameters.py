"""Parameter model: covariate effects, Omega from CV%, IOV."""
import math

import numpy as np
import pytest

from insilico.cohorts import cv_percent_to_variance, omega_from
from insilico.cohorts._compile import compile_spec


def test_cv_percent_to_variance():
    assert cv_percent_to_variance(30) == pytest.approx(math.log(1 + 0.3 ** 2), rel=1e-15)
    np.testing.assert_allclose(cv_percent_to_variance([10, 50]), [math.log(1.01), math.log(1.25)], rtol=1e-15)


def test_omega_from_cv_and_correlation(healthy):
    c = compile_spec(healthy)  # cv_percent [30, 25, 50], corr(CL, V1) = 0.4
    w = np.log1p(np.array([0.3, 0.25, 0.5]) ** 2)
    expected = np.diag(w)
    expected[0, 1] = expected[1, 0] = 0.4 * math.sqrt(w[0] * w[1])
    np.testing.assert_allclose(c.omega, expected, rtol=1e-14, atol=0)
    np.testing.assert_allclose(omega_from(w, [[1, 0.4, 0], [0.4, 1, 0], [0, 0, 1]]), expected, rtol=1e-14)
    # IOV cv 10 % -> sd sqrt(log 1.01)
    assert c.iov_sd["CL"] == pytest.approx(math.sqrt(math.log(1.01)))


def test_individual_parameters_from_effects(constrained):
    """renal example: CL linear in CRCL x allometric WT; V allometric x exp(AGE); KA by SEX."""
    ds = constrained["renal_impairment"]
    cl = 6.0 * (1 + 0.0075 * (ds.CRCL - 100)) * (ds.WT / 70) ** 0.75 * np.exp(ds.eta_CL)
    v = 45.0 * (ds.WT / 70) ** 1.0 * np.exp(0.004 * (ds.AGE - 50)) * np.exp(ds.eta_V)
    female = ds.SEX.attrs["flag_meanings"].split().index("female")
    ka = 0.9 * np.where(ds.SEX == female, 1.1, 1.0) * np.exp(ds.eta_KA)
    np.testing.assert_allclose(ds.CL.values, cl.values, rtol=1e-12)
    np.testing.assert_allclose(ds.V.values, v.values, rtol=1e-12)
    np.testing.assert_allclose(ds.KA.values, ka, rtol=1e-12)
    assert ds.CL.attrs["units"] == "L/h" and ds.V.attrs["units"] == "L" and ds.KA.attrs["units"] == "1/h"


def test_allometric_and_iov(healthy_100):
    ds = healthy_100
    np.testing.assert_allclose(ds.Q.values, 8.0 * (ds.WT.values / 70) ** 0.75, rtol=1e-12)  # no BSV on Q
    np.testing.assert_allclose(ds.V2.values, 60.0 * ds.WT.values / 70, rtol=1e-12)
    assert ds.CL_occ.dims == ("subject", "occasion") and list(ds.occasion.values) == [1, 2]
    np.testing.assert_allclose(ds.CL_occ.values, ds.CL.values[:, None] * np.exp(ds.kappa_CL.values), rtol=1e-12)
    assert "kappa_V1" not in ds and "V1_occ" not in ds


def test_eta_statistics_full_omega(unconstrained, specs):
    """renal example gives Omega directly: sample covariance within 5 SE."""
    ds = unconstrained["renal_impairment"]
    om = np.asarray(specs["renal_impairment"].bsv.omega)
    eta = np.stack([ds.eta_CL.values, ds.eta_V.values, ds.eta_KA.values])
    n = eta.shape[1]
    cov = np.cov(eta)
    for j in range(3):
        for k in range(3):
            # Var of a sample covariance of normals: (S_jk^2 + S_jj S_kk) / n
            se = math.sqrt((om[j, k] ** 2 + om[j, j] * om[k, k]) / n)
            assert abs(cov[j, k] - om[j, k]) < 5 * se, (j, k)


BSV_ONLY = {"name": "bsv_only", "parameters": {"CL": {"typical": 5.0}, "V": {"typical": 40.0}, "KA": {"typical": 1.2}},
            "bsv": {"parameters": ["CL", "V"], "cv_percent": [30, 20], "correlation": [[1, 0.5], [0.5, 1]]}}


def test_covariate_free_cohort_draws_parameters_with_bsv_only():
    """No covariates: P = TV exp(eta), eta ~ MVN(0, Omega); moments within 5 SE of Omega (N = 20,000)."""
    from insilico.cohorts import draw_cohort
    n = 20_000
    ds = draw_cohort(BSV_ONLY, n=n, seed=11)
    assert [k for k in ds.data_vars if ds[k].attrs.get("role") in ("covariate", "derived covariate")] == []
    np.testing.assert_allclose(ds.CL.values, 5.0 * np.exp(ds.eta_CL.values), rtol=1e-14)
    np.testing.assert_allclose(ds.V.values, 40.0 * np.exp(ds.eta_V.values), rtol=1e-14)
    assert np.all(ds.KA.values == 1.2)
    w = np.log1p(np.array([0.3, 0.2]) ** 2)
    for name, var in zip(("eta_CL", "eta_V"), w):
        x = ds[name].values
        assert abs(x.mean()) <= 5 * math.sqrt(var / n)
        assert abs(x.var() / var - 1) <= 5 * math.sqrt(2 / (n - 1))        # SE of a sample variance ratio
    r = np.corrcoef(ds.eta_CL.values, ds.eta_V.values)[0, 1]
    assert abs(r - 0.5) <= 5 * (1 - 0.5 ** 2) / math.sqrt(n)
    # the same subject whatever N or start (keyed by subject index)
    part = draw_cohort(BSV_ONLY, n=10, seed=11, start=100)
    np.testing.assert_array_equal(part.CL.values, ds.CL.values[100:110])


def test_a_cohort_with_nothing_to_draw_is_refused():
    from insilico.cohorts import load_cohort_spec
    from insilico.errors import SpecError
    with pytest.raises(SpecError) as e:
        load_cohort_spec({"name": "empty"})
    assert e.value.field == "parameters" and "at least one covariate or parameter" in e.value.message
