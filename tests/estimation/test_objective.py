"""The FOCE-I / Laplace objective against independent references: the exact Gaussian marginal
likelihood of a model linear in eta, and adaptive Gauss-Hermite quadrature of a nonlinear one,
with Gaussian and with censored (BLQ, M3) records."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from scipy.stats import multivariate_normal

from insilico.estimation import (
    LOG_2PI,
    build_problem,
    eta_mode,
    individual_objective,
    load_population_model,
    subject_ofv,
)
from insilico.models import Model, Output, Parameter


def _baseline_model() -> Model:
    """Output log(E): with E = TV exp(eta) the prediction log TV + eta is linear in eta."""
    # one undosed state decaying at rate 1 (linear: the exact path, no ODE solve); the output ignores it
    return Model(name="log_baseline", states=("a",), parameters=(Parameter("E", "1", "baseline"),),
                 rhs=lambda t, y, p: -y,
                 outputs=(Output("logE", "1", "log baseline", lambda y, p: jnp.log(p["E"]) + 0.0 * y[..., 0]),),
                 dose_compartments=("a",), system_matrix=lambda p: -jnp.eye(1), eigenvalues=lambda p: -jnp.ones(1))


def _subject(problem, i):
    return jax.tree.map(lambda a: a[i], problem.subjects())


def test_focei_and_laplace_equal_the_exact_marginal_likelihood_of_a_model_linear_in_eta():
    # y_ij = log TV + eta_i + eps_ij, eta ~ N(0, w2), eps ~ N(0, s2): y_i ~ MVN(log TV 1, w2 11' + s2 I)
    rng = np.random.default_rng(3)
    rows = []
    for i in range(4):
        eta = rng.normal(0, 0.3)
        rows += [dict(ID=i + 1, TIME=float(t), DV=np.log(5.0) + eta + rng.normal(0, 0.2)) for t in range(1, 2 + i)]
    df = pd.DataFrame(rows)
    tv, w2, s = 4.0, 0.16, 0.25
    spec, _ = load_population_model({
        "model": {"name": "log_baseline"}, "output": "logE", "parameters": {"E": {"typical": tv}},
        "bsv": {"parameters": ["E"], "variance": [w2]},
        "residual_error": {"type": "additive", "additive": s}})
    problem = build_problem(spec, df, model=_baseline_model())
    pop = problem.params.population(jnp.asarray(problem.params.initial))
    for i in range(4):
        subj = _subject(problem, i)
        eta_hat, code = eta_mode(problem, pop, subj, jnp.zeros(1))
        assert int(code) == 0
        y = df[df.ID == i + 1].DV.to_numpy()
        n = y.size
        exact = -2 * multivariate_normal(np.full(n, np.log(tv)), w2 * np.ones((n, n)) + s * s * np.eye(n)).logpdf(y)
        nonmem = exact - n * LOG_2PI     # NONMEM's OFV omits n log(2 pi)
        for method in ("laplace", "focei"):
            ofv, _ = subject_ofv(problem, pop, subj, eta_hat, method)
            assert float(ofv) == pytest.approx(nonmem, abs=1e-9), method


ORAL_IV = {
    "model": {"name": "1cmt_iv"}, "parameters": {"CL": {"typical": 2.0}, "V": {"typical": 20.0}},
    "bsv": {"parameters": ["CL"], "variance": [0.3]},
    "residual_error": {"type": "proportional", "proportional": 0.15}}


def _quadrature_m2ll(obj, eta_hat, h, nodes: int = 80) -> float:
    """-2 log of the integral of exp(-O(eta)/2) over eta by adaptive Gauss-Hermite quadrature
    (Liu & Pierce 1994): eta = mode + sqrt(2) sd x with sd = sqrt(2 / O''), the posterior SD."""
    x, w = np.polynomial.hermite.hermgauss(nodes)
    sd = np.sqrt(2.0 / h)
    vals = np.array([float(obj(jnp.array([eta_hat + np.sqrt(2.0) * sd * xi]))) for xi in x])
    m = vals.min()
    integral = np.sqrt(2.0) * sd * np.sum(w * np.exp(x ** 2) * np.exp(-(vals - m) / 2.0))
    return m - 2.0 * np.log(integral)


@pytest.mark.parametrize("n_obs", [2, 8])
def test_laplace_equals_adaptive_gauss_hermite_quadrature_to_the_laplace_error(n_obs):
    times = np.linspace(0.5, 12.0, n_obs)
    rng = np.random.default_rng(n_obs)
    conc = 100 / 20 * np.exp(-2.6 / 20 * times) * (1 + 0.15 * rng.normal(size=n_obs))
    df = pd.DataFrame([dict(ID=1, TIME=0.0, AMT=100.0, EVID=1, DV=".")]
                      + [dict(ID=1, TIME=t, AMT=0.0, EVID=0, DV=c) for t, c in zip(times, conc)])
    spec, _ = load_population_model(ORAL_IV)
    problem = build_problem(spec, df)
    pop = problem.params.population(jnp.asarray(problem.params.initial))
    subj = _subject(problem, 0)
    eta_hat, code = eta_mode(problem, pop, subj, jnp.zeros(1))
    assert int(code) == 0

    def obj(e):
        return individual_objective(problem, pop, subj, e)[0]

    def o1(x):
        return obj(jnp.array([x]))

    e = float(eta_hat[0])
    d2, d3, d4 = (float(jax.grad(jax.grad(o1))(e)), float(jax.grad(jax.grad(jax.grad(o1)))(e)),
                  float(jax.grad(jax.grad(jax.grad(jax.grad(o1))))(e)))
    quad = _quadrature_m2ll(obj, e, d2) - n_obs * LOG_2PI
    laplace = float(subject_ofv(problem, pop, subj, eta_hat, "laplace")[0])
    # next term of the Laplace expansion for integral exp(-g), g = O/2 (e.g. Tierney & Kadane 1986):
    # log I = Laplace + (5/24) g'''^2 / g''^3 - (1/8) g'''' / g''^2 + ...
    g2, g3, g4 = d2 / 2, d3 / 2, d4 / 2
    correction = -2.0 * (5.0 / 24.0 * g3 ** 2 / g2 ** 3 - g4 / (8.0 * g2 ** 2))
    error = quad - laplace
    assert 1e-4 < abs(error) < 0.15          # Laplace is an approximation here (2 obs: 0.099, 8 obs: smaller) ...
    assert abs(error - correction) < 0.2 * abs(error)   # ... whose error is the expected leading term


def test_m3_objective_and_laplace_against_scipy_and_quadrature():
    # 8 samples, the 3 lowest below an LLOQ: censored (M3) records contribute log Phi((LLOQ - f) / sd)
    times = np.linspace(0.5, 12.0, 8)
    rng = np.random.default_rng(8)
    conc = 100 / 20 * np.exp(-2.6 / 20 * times) * (1 + 0.15 * rng.normal(size=8))
    lloq = np.sort(conc)[2:4].mean()
    cens = conc < lloq
    df = pd.DataFrame([dict(ID=1, TIME=0.0, AMT=100.0, EVID=1, DV=".", LLOQ=lloq)]
                      + [dict(ID=1, TIME=t, AMT=0.0, EVID=0, DV=c, LLOQ=lloq) for t, c in zip(times, conc)])
    spec, _ = load_population_model({**ORAL_IV, "estimate": {"blq": "m3"}})
    problem = build_problem(spec, df)
    assert (problem.n_blq, int(problem.mask.sum())) == (3, 8)
    pop = problem.params.population(jnp.asarray(problem.params.initial))
    subj = _subject(problem, 0)

    def reference(e):     # -2 log p(y, eta) by scipy, the 1-cmt IV bolus solution written out
        f = 100 / 20 * np.exp(-2.0 * np.exp(e) / 20 * times)
        sd = 0.15 * f
        return -2 * (stats.norm.logpdf(e, 0, np.sqrt(0.3)) + stats.norm.logpdf(conc[~cens], f[~cens], sd[~cens]).sum()
                     + stats.norm.logcdf((lloq - f[cens]) / sd[cens]).sum())

    def obj(e):
        return individual_objective(problem, pop, subj, e)[0]

    for e in (-0.4, 0.0, 0.3):
        assert float(obj(jnp.array([e]))) == pytest.approx(reference(e), rel=1e-12, abs=1e-10)
    eta_hat, code = eta_mode(problem, pop, subj, jnp.zeros(1))
    assert int(code) == 0
    e = float(eta_hat[0])

    def o1(x):
        return obj(jnp.array([x]))

    d2, d3, d4 = (float(jax.grad(jax.grad(o1))(e)), float(jax.grad(jax.grad(jax.grad(o1)))(e)),
                  float(jax.grad(jax.grad(jax.grad(jax.grad(o1))))(e)))
    m = reference(e)
    integral, _ = integrate.quad(lambda x: np.exp(-(reference(x) - m) / 2), -6, 6, points=[e], epsabs=1e-14,
                                 epsrel=1e-12)
    adaptive = m - 2 * np.log(integral)
    assert _quadrature_m2ll(obj, e, d2) == pytest.approx(adaptive, abs=1e-8)   # two quadratures agree
    laplace = float(subject_ofv(problem, pop, subj, eta_hat, "laplace")[0])
    error = adaptive - 5 * LOG_2PI - laplace          # NONMEM scale: 2 pi only for the 5 uncensored records
    g2, g3, g4 = d2 / 2, d3 / 2, d4 / 2
    leading = -2.0 * (5.0 / 24.0 * g3 ** 2 / g2 ** 3 - g4 / (8.0 * g2 ** 2))
    # Laplace is within the size of its leading error term (measured: error 3.0e-4, leading term 3.6e-3)
    assert 0 < abs(error) <= abs(leading) < 0.05


TWO_ETA = {
    "model": {"name": "1cmt_oral"},
    "parameters": {"CL": {"typical": 2.0}, "V": {"typical": 20.0}, "KA": {"typical": 1.2}},
    "bsv": {"parameters": ["CL", "V"], "variance": [0.2, 0.1]},
    "residual_error": {"type": "combined", "additive": 0.05, "proportional": 0.12}}


@pytest.mark.parametrize("method, mode", [("focei", "reverse"), ("laplace", "forward")])
def test_outer_gradient_through_the_mode_equals_central_differences(method, mode):
    """d OFV_i / d theta by AD through the eta mode (implicit function theorem; reverse mode is the
    exact path's outer gradient, forward mode the ODE path's) equals central differences of the
    OFV with the mode re-found at each point (step 1e-4 relative: truncation ~1e-8 relative; the
    modes' own error, Newton decrement < 1e-12, is far below): to 1e-5 relative."""
    times = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    conc = np.array([1.9, 3.0, 3.6, 3.1, 2.0, 1.2])
    df = pd.DataFrame([dict(ID=1, TIME=0.0, AMT=100.0, EVID=1, DV=".")]
                      + [dict(ID=1, TIME=t, AMT=0.0, EVID=0, DV=c) for t, c in zip(times, conc)])
    spec, _ = load_population_model(TWO_ETA)
    problem = build_problem(spec, df)
    pv, subj = problem.params, _subject(problem, 0)
    nat0 = jnp.asarray(pv.initial)

    def ofv_at_mode(nat):          # the mode found without derivatives, then the differentiable OFV
        pop = pv.population(nat)
        eta_hat, code = eta_mode(problem, pop, subj, jnp.zeros(2))
        v = subject_ofv(problem, pop, subj, eta_hat, method)[0]
        return v, (v, code)

    # one compiled function gives the OFV (for the differences) and its AD gradient
    if mode == "reverse":
        vg = jax.jit(jax.value_and_grad(ofv_at_mode, has_aux=True))

        def evaluate(nat):
            (_, (v, code)), g = vg(nat)
            return float(v), int(code), np.asarray(g)
    else:
        gv = jax.jit(jax.jacfwd(ofv_at_mode, has_aux=True))

        def evaluate(nat):
            g, (v, code) = gv(nat)
            return float(v), int(code), np.asarray(g)

    _, code, ad = evaluate(nat0)
    assert code == 0
    fd = np.empty(nat0.size)
    for j in range(nat0.size):
        h = 1e-4 * abs(float(nat0[j]))
        (up, c1, _), (down, c2, _) = evaluate(nat0.at[j].add(h)), evaluate(nat0.at[j].add(-h))
        assert c1 == c2 == 0
        fd[j] = (up - down) / (2 * h)
    assert np.all(np.abs(fd) > 1e-3)                      # every parameter moves this subject's OFV
    np.testing.assert_allclose(ad, fd, rtol=1e-5)
