"""The cohort is a NumPyro model: plate, sites, Predictive, conditioning, log density."""
import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_density
from scipy import stats

from insilico.cohorts import cohort_model


def test_sites_inside_subject_plate(healthy):
    model = cohort_model(healthy)
    sites = {}

    def run(key):  # abstract evaluation only (no compilation)
        tr = handlers.trace(handlers.seed(model, key)).get_trace(8)
        for n, s in tr.items():
            kind = type(getattr(s["fn"], "base_dist", s["fn"])).__name__ if s["type"] == "sample" else None
            sites[n] = (s["type"], [f.name for f in s.get("cond_indep_stack", [])], kind)
        return {n: s["value"] for n, s in tr.items() if s["type"] in ("sample", "deterministic")}

    shapes = jax.eval_shape(run, jax.random.PRNGKey(0))
    samples = {n for n, s in sites.items() if s[0] == "sample"}
    assert samples == {"AGE", "SEX", "HT", "BMI", "SCR", "eta", "kappa_CL", "kappa_KA"}
    for n in samples:
        assert sites[n][1] == ["subject"], n
    assert sites["SEX"][2].startswith("Categorical") and sites["HT"][2] == "Normal"
    assert sites["eta"][2] == "MultivariateNormalRows"  # a MultivariateNormal with a batch-size-stable sample
    assert sites["WT"][0] == "deterministic" and sites["CRCL"][0] == "deterministic"
    assert shapes["CL"].shape == (8,) and shapes["CL_occ"].shape == (8, 2) and shapes["eta"].shape == (8, 3)


def test_predictive(specs):
    model = cohort_model(specs["paediatric"])
    out = Predictive(model, num_samples=3)(jax.random.PRNGKey(1), n_subjects=5)
    assert out["CL"].shape == (3, 5) and out["WT"].shape == (3, 5)


def test_conditioned_copula_density_is_gaussian_copula(healthy):
    """Condition on observed covariates; the density of the copula members (AGE truncated
    normal, BMI and SCR log-normal given SEX) equals the Gaussian-copula density computed
    independently with scipy: MVN(z; 0, R) / prod phi(z_i) * prod f_i(x_i)."""
    data = {"SEX": jnp.array([0, 1, 0]), "AGE": jnp.array([25.0, 47.0, 70.0]),
            "BMI": jnp.array([21.0, 30.0, 25.0]), "SCR": jnp.array([1.1, 0.6, 0.9])}
    model = handlers.condition(cohort_model(healthy), data=data)

    @jax.jit
    def run(key):
        tr = handlers.trace(handlers.seed(model, key)).get_trace(3)
        lp = sum(tr[k]["fn"].log_prob(tr[k]["value"]) for k in ("AGE", "BMI", "SCR"))
        latent = {k: v["value"] for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]}
        values = {k: tr[k]["value"] for k in data}
        observed = {k: tr[k]["is_observed"] for k in data}
        total, _ = log_density(cohort_model(healthy), (3,), {}, {**latent, **data})
        return lp, values, observed, total

    lp, values, observed, total = run(jax.random.PRNGKey(2))
    for k, v in data.items():
        np.testing.assert_array_equal(values[k], v)
        assert observed[k]

    age = stats.truncnorm((18 - 38) / 13, (80 - 38) / 13, loc=38, scale=13)
    bmi = stats.lognorm(0.15, scale=24.5)
    scr_med = np.where(np.asarray(data["SEX"]) == 0, 0.95, 0.75)
    x = {k: np.asarray(v) for k, v in data.items()}
    z = np.stack([stats.norm.ppf(age.cdf(x["AGE"])), stats.norm.ppf(bmi.cdf(x["BMI"])),
                  stats.norm.ppf(stats.lognorm(0.18, scale=scr_med).cdf(x["SCR"]))], axis=1)
    r = np.array([[1.0, 0.25, 0.15], [0.25, 1.0, 0.0], [0.15, 0.0, 1.0]])
    expected = (stats.multivariate_normal(np.zeros(3), r).logpdf(z) - stats.norm.logpdf(z).sum(1)
                + age.logpdf(x["AGE"]) + bmi.logpdf(x["BMI"]) + stats.lognorm(0.18, scale=scr_med).logpdf(x["SCR"]))
    np.testing.assert_allclose(lp, expected, rtol=1e-9)
    # and the whole model's log density is finite given all latent values
    assert np.isfinite(float(total))
