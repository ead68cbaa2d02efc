"""insilico.population: forward map, log-density (vs scipy), gradients, and the cohort's draws
being the forward map of its own etas."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from insilico.cohorts import cohort_model, draw_cohort, load_cohort_spec
from insilico.errors import SpecError
from insilico.population import (
    BSVSpec,
    EffectSpec,
    IOVSpec,
    ParameterSpec,
    ResidualErrorSpec,
    compile_population,
    individual_parameters,
    log_density,
    typical_values,
)
from tests.cohorts.conftest import COHORTS

PARAMS = {
    "CL": ParameterSpec(typical=5.0, effects=[
        EffectSpec(covariate="WT", type="power", ref=70, theta=0.75),
        EffectSpec(covariate="CRCL", type="linear", ref=100, theta=0.0075),
        EffectSpec(covariate="SEX", type="categorical", multipliers={"female": 0.8})]),
    "V": ParameterSpec(typical=40.0, effects=[EffectSpec(covariate="AGE", type="exponential", ref=50, theta=0.004)]),
    "KA": ParameterSpec(typical=1.2),
}
OMEGA = [[0.09, 0.02], [0.02, 0.04]]
COVS = {"WT": np.array([55.0, 70.0, 98.0]), "CRCL": np.array([40.0, 100.0, 130.0]),
        "SEX": np.array([0, 1, 1]), "AGE": np.array([25.0, 50.0, 81.0])}


def _pop(residual=None, iov=None):
    return compile_population(PARAMS, BSVSpec(parameters=["CL", "V"], omega=OMEGA), iov, residual,
                              covariates=list(COVS), categories={"SEX": ("male", "female")})


def test_forward_map_matches_formula():
    pop = _pop(iov=IOVSpec(occasions=3, variance={"CL": 0.01}))
    eta = np.array([[0.1, -0.2], [0.0, 0.3], [-0.4, 0.05]])
    kappa = np.array([[[0.1], [-0.1], [0.0]]] * 3)  # (subject, occasion, iov parameter)
    out = individual_parameters(pop, COVS, eta, kappa)
    wt, crcl, sex, age = COVS["WT"], COVS["CRCL"], COVS["SEX"], COVS["AGE"]
    tv_cl = 5.0 * (wt / 70) ** 0.75 * (1 + 0.0075 * (crcl - 100)) * np.where(sex == 1, 0.8, 1.0)
    tv_v = 40.0 * np.exp(0.004 * (age - 50))
    np.testing.assert_allclose(out["CL"], tv_cl * np.exp(eta[:, 0]), rtol=1e-14)
    np.testing.assert_allclose(out["V"], tv_v * np.exp(eta[:, 1]), rtol=1e-14)
    assert float(out["KA"]) == 1.2  # no effects, no BSV
    np.testing.assert_allclose(out["CL_occ"], tv_cl[:, None] * np.exp(eta[:, :1] + kappa[..., 0]), rtol=1e-14)
    tv = typical_values(pop, COVS)
    np.testing.assert_allclose(tv["CL"], tv_cl, rtol=1e-14)


def test_forward_map_is_vmappable_and_jittable():
    pop = _pop()
    eta = jnp.array([[0.1, -0.2], [0.0, 0.3], [-0.4, 0.05]])
    one = jax.jit(jax.vmap(lambda c, e: individual_parameters(pop, c, e)["CL"]))(COVS, eta)
    np.testing.assert_allclose(one, individual_parameters(pop, COVS, eta)["CL"], rtol=1e-15)


@pytest.mark.parametrize("residual, sd", [
    (ResidualErrorSpec(type="additive", additive=0.3), lambda f: np.full_like(f, 0.3)),
    (ResidualErrorSpec(type="proportional", proportional=0.15), lambda f: 0.15 * f),
    (ResidualErrorSpec(type="combined", additive=0.05, proportional=0.2),
     lambda f: np.sqrt((0.2 * f) ** 2 + 0.05 ** 2)),
])
def test_log_density_vs_scipy(residual, sd):
    pop = _pop(residual)
    eta = np.array([0.2, -0.1])
    f = np.array([0.4, 2.0, 7.5, 3.1])
    y = np.array([0.5, 1.7, 8.2, 3.0])
    expected = (stats.multivariate_normal(np.zeros(2), OMEGA).logpdf(eta)
                + stats.norm.logpdf(y, loc=f, scale=sd(f)).sum())
    assert float(log_density(pop, eta, y=y, f=f)) == pytest.approx(expected, rel=1e-13)


def test_exponential_error_is_normal_on_log_scale():
    pop = _pop(ResidualErrorSpec(type="exponential", exponential=0.25))
    eta = np.array([-0.3, 0.15])
    f, y = np.array([1.0, 4.0, 0.2]), np.array([1.3, 3.1, 0.25])
    expected = (stats.multivariate_normal(np.zeros(2), OMEGA).logpdf(eta)
                + stats.norm.logpdf(np.log(y), loc=np.log(f), scale=0.25).sum())
    assert float(log_density(pop, eta, y=y, f=f)) == pytest.approx(expected, rel=1e-13)


def test_iov_prior_and_mask():
    pop = _pop(ResidualErrorSpec(type="additive", additive=0.5), IOVSpec(occasions=2, cv_percent={"CL": 10, "V": 20}))
    eta, kappa = np.array([0.1, 0.2]), np.array([[0.05, -0.1], [-0.02, 0.3]])  # (occasion, iov parameter)
    sd = np.sqrt(np.log1p(np.array([0.1, 0.2]) ** 2))
    f, y = np.array([1.0, 2.0, 3.0]), np.array([1.2, 99.0, 2.5])
    mask = np.array([True, False, True])  # the second observation is padding
    expected = (stats.multivariate_normal(np.zeros(2), OMEGA).logpdf(eta) + stats.norm.logpdf(kappa, scale=sd).sum()
                + stats.norm.logpdf(y[mask], loc=f[mask], scale=0.5).sum())
    assert float(log_density(pop, eta, kappa, y=y, f=f, mask=mask)) == pytest.approx(expected, rel=1e-13)
    # batched over subjects
    batch = log_density(pop, np.stack([eta, -eta]), np.stack([kappa, kappa]))
    assert batch.shape == (2,)


def _objective(pop, cov, t, y):
    """log density of eta for a 1-compartment IV bolus (100 mg): f = D/V exp(-CL/V t)."""
    def fn(eta):
        p = individual_parameters(pop, cov, eta)
        f = 100.0 / p["V"] * jnp.exp(-p["CL"] / p["V"] * t)
        return log_density(pop, eta, y=y, f=f)
    return fn


def test_gradient_wrt_eta_matches_central_differences():
    pop = _pop(ResidualErrorSpec(type="combined", additive=0.05, proportional=0.1))
    cov = {k: v[1] for k, v in COVS.items()}
    t = jnp.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    y = jnp.array([2.3, 2.1, 1.9, 1.4, 0.95, 0.6])
    fn = _objective(pop, cov, t, y)
    eta = jnp.array([0.15, -0.2])
    g = np.asarray(jax.grad(fn)(eta))
    assert np.all(np.isfinite(g))
    h = 1e-5
    fd = [(float(fn(eta.at[j].add(h))) - float(fn(eta.at[j].add(-h)))) / (2 * h) for j in range(2)]
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-8)


def test_cohort_parameters_are_the_forward_map_of_its_etas():
    """A drawn cohort's CL, V1, ..., CL_occ equal individual_parameters(covariates, eta_*, kappa_*)."""
    spec = load_cohort_spec(COHORTS / "healthy_adults.yaml")
    ds = draw_cohort(spec, 200, seed=3)
    pop = cohort_model(spec).compiled.population
    covs = {n: ds[n].values for n in pop.covariates}
    eta = np.stack([ds[f"eta_{n}"].values for n in pop.bsv_names], axis=-1)
    kappa = np.stack([ds[f"kappa_{n}"].values for n in pop.iov_names], axis=-1)
    out = individual_parameters(pop, covs, eta, kappa)
    for name in list(pop.names) + [f"{n}_occ" for n in pop.iov_names]:
        np.testing.assert_allclose(np.broadcast_to(out[name], ds[name].shape), ds[name].values, rtol=1e-14,
                                   err_msg=name)
    # and the etas have the spec's Omega (cv 30/25/50 %, corr(CL, V1) 0.4), within 5 SE
    w = np.log1p(np.array([0.3, 0.25, 0.5]) ** 2)
    assert np.allclose(np.diag(pop.omega), w) and pop.omega[0, 1] == pytest.approx(0.4 * math.sqrt(w[0] * w[1]))


@pytest.mark.parametrize("kw, field, words", [
    ({"parameters": {"X": ParameterSpec(typical=1.0)}}, "parameters.X.units", "no default units"),
    ({"bsv": BSVSpec(parameters=["CL", "Q"], variance=[0.1, 0.1])}, "bsv.parameters.1", "unknown parameter"),
    ({"iov": IOVSpec(occasions=2, variance={"Q": 0.1})}, "iov.variance.Q", "unknown parameter"),
    ({"parameters": {"CL": ParameterSpec(typical=1.0, effects=[EffectSpec(covariate="WT", type="categorical",
                                                                          multipliers={"a": 2.0})])}},
     "parameters.CL.effects.0.covariate", "not categorical"),
])
def test_compile_errors_name_the_field(kw, field, words):
    args = {"parameters": {"CL": ParameterSpec(typical=1.0)}, **kw}
    with pytest.raises(SpecError) as e:
        compile_population(args["parameters"], args.get("bsv"), args.get("iov"), covariates=["WT"], categories={})
    assert e.value.field == field and words in e.value.message
