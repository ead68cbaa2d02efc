"""Full Bayes: NumPyro's NUTS on the hierarchical population model.

Model: for each block of Omega, SDs ``omega_k`` and an LKJ Cholesky factor of the correlation;
eta non-centred (``eta_i = L z_i``, ``z_i ~ N(0, I)``; Papaspiliopoulos et al. 2007) or centred
(hierarchical centring, Gelfand, Sahu & Carlin 1995: the sampled quantity is ``u_i = log TV + eta_i``,
``u_i ~ MVN(log TV, Omega)`` with TV the typical values of the BSV parameters, and ``eta_i = u_i - log TV``;
a shift with unit Jacobian, so the posterior is that of ``eta_i ~ MVN(0, Omega)``, but with informative
individual data ``u_i`` is nearly independent of TV where ``eta_i`` is strongly correlated with it),
chosen by `NUTS.parameterization` (default: by how informative each subject's data are). Inter-occasion
variability (IOV; `insilico.estimation._problem`): the kappas are always non-centred,
``kappa_ikj = omega_iov_j z_ikj`` with ``z_ikj ~ N(0, 1)`` for every subject i, occasion k and IOV
parameter j, also under the centred eta (an occasion holds fewer of a subject's data than its eta has,
so the kappa is the weakly identified effect, where centring would leave a funnel in omega_iov); the
kappas of an occasion a subject never visits are sampled too, from their prior (no data touch them),
so the joint posterior is exact: their posterior mean is ~0 and variance E[omega_iov^2 | y], as the
FOCE-I EBE (0) and conditional covariance say. Observations
through the one
log-density's residual part (`insilico.estimation._likelihood`: each record from its own output,
censored M3 records by their probability). Fixed quantities stay at their values.

Default priors, weakly informative and centred on the population model's values (documented in
the README; write the population model's values as your prior guess):

* typical values and categorical multipliers: log-normal, median = the value, log-SD 2 (a factor
  e^2 ~ 7.4 either way at one SD);
* other effect thetas: normal, mean = the value, SD 2;
* BSV SDs (sqrt of Omega's diagonal) and IOV SDs (sqrt of ``OMEGA_IOV(j,j)``): half-normal with
  scale 1 (CV up to ~100 %+); correlations within a block: LKJ(2) (mildly favouring 0);
* residual SDs: half-normal with scale 5 x the initial SD.

Chains start at the prior medians (NumPyro ``init_to_median``: the population model's values,
eta = kappa = 0), each from its own draws. The result's ``eta`` is the posterior mean of each subject's
whole random-effect vector (etas, then the kappas occasion by occasion, as FOCE-I's EBEs) and
``eta_cov`` its posterior covariance; the draws of every quantity, OMEGA_IOV among them, are stored
over (chain, draw) with their R-hat and ESS. Diagnostics: split R-hat (Gelman et al., BDA3), bulk ESS
(NumPyro's estimator on the draws) and tail ESS (Vehtari et al. 2021: the smaller ESS of the
indicators of the 5 % and 95 % quantiles), divergent transitions counted and reported.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC, init_to_median
from numpyro.infer import NUTS as NumPyroNUTS

from insilico.estimation._diagnostics import diagnostics
from insilico.estimation._likelihood import log_likelihood
from insilico.estimation._result import FitResult

__all__ = ["fit_nuts", "tail_ess"]


def _model(problem, subjects, centred=False):
    pv = problem.params
    nat = jnp.asarray(pv.initial)
    for i, e in enumerate(pv.entries):
        if e.fixed or e.kind in ("omega", "sigma"):
            continue
        if e.kind in ("typical", "multiplier"):
            v = numpyro.sample(e.name, dist.LogNormal(np.log(e.initial), 2.0))
        else:
            v = numpyro.sample(e.name, dist.Normal(e.initial, 2.0))
        nat = nat.at[i].set(v)
    names = list(pv.names)
    for b, block in enumerate(pv.blocks):
        labels = [f"OMEGA({i + 1},{j + 1})" for a, i in enumerate(block) for j in block[:a + 1]]
        if pv.entries[names.index(labels[0])].fixed:
            continue
        m = len(block)
        sd = numpyro.sample(f"omega_sd_{b}", dist.HalfNormal(jnp.ones(m)).to_event(1))
        if m > 1:
            corr_l = numpyro.sample(f"omega_corr_{b}", dist.LKJCholesky(m, 2.0))
            low = sd[:, None] * corr_l
        else:
            low = jnp.diag(sd)
        om = low @ low.T
        rows, cols = np.tril_indices(m)
        for lab, r, c in zip(labels, rows, cols):
            nat = nat.at[names.index(lab)].set(om[r, c])
    iov = [i for i, e in enumerate(pv.entries) if e.kind == "omega_iov" and not e.fixed]
    if iov:
        sd = numpyro.sample("omega_iov_sd", dist.HalfNormal(jnp.ones(len(iov))).to_event(1))
        nat = nat.at[np.asarray(iov)].set(sd * sd)
    for k in range(len(pv.sigma_fields)):
        i = names.index(f"SIGMA({k + 1},{k + 1})")
        if pv.entries[i].fixed:
            continue
        sd = numpyro.sample(f"sigma_sd_{k + 1}", dist.HalfNormal(5.0 * np.sqrt(pv.entries[i].initial)))
        nat = nat.at[i].set(sd * sd)
    numpyro.deterministic("natural", nat)
    pop = pv.population(nat)
    n = problem.n_subjects
    parts = []
    if problem.n_bsv and centred:
        # hierarchical centring (module docstring): sample log P_i - log(covariate part) = log TV + eta_i
        loc = jnp.log(jnp.stack([jnp.asarray(pop.typical[pop.names.index(b)]) for b in pop.bsv_names]))
        with numpyro.plate("subject", n):
            u = numpyro.sample("log_individual", dist.MultivariateNormal(loc, scale_tril=pop.omega_chol))
        parts.append(u - loc)
    elif problem.n_bsv:
        with numpyro.plate("subject", n):
            z = numpyro.sample("z", dist.Normal(jnp.zeros(problem.n_bsv), 1.0).to_event(1))
        parts.append(z @ pop.omega_chol.T)
    if problem.n_kappa:     # non-centred kappas of every occasion (module docstring), occasion by occasion
        shape = (pop.occasions, len(pop.iov_names))
        with numpyro.plate("subject", n):
            z = numpyro.sample("z_kappa", dist.Normal(jnp.zeros(shape), 1.0).to_event(2))
        parts.append((z * jnp.stack([jnp.asarray(sd) for sd in pop.iov_sd])).reshape(n, problem.n_kappa))
    etas = numpyro.deterministic("eta", jnp.concatenate(parts, axis=1)) if parts else jnp.zeros((n, 0))

    def loglik(pop, subject, e):
        f, status = problem.predict(pop, subject, e)
        ll = log_likelihood(pop, subject, f)
        return jnp.where((status == 0) & jnp.isfinite(ll), ll, -jnp.inf)

    # jitted: NumPyro runs the model once eagerly (its prototype trace), which would otherwise compile
    # every operation of the vmapped solve on its own; under the sampler's trace it is inlined
    numpyro.factor("y", jax.jit(lambda p, s, e: jax.vmap(loglik, in_axes=(None, 0, 0))(p, s, e).sum())(
        pop, subjects, etas))


def tail_ess(x: np.ndarray) -> float:
    """Tail ESS of draws ``x`` (chains, draws): min ESS of I(x <= q05) and I(x >= q95)."""
    q05, q95 = np.quantile(x, [0.05, 0.95])
    return float(min(effective_sample_size((x <= q05).astype(float)),
                     effective_sample_size((x >= q95).astype(float))))


def fit_nuts(problem, options) -> FitResult:
    """Sample the posterior with NUTS; the result holds the draws and their summaries."""
    start = time.perf_counter()
    problem = replace(problem, solver=replace(problem.solver, adjoint="reverse"))
    pv = problem.params
    centred = options.parameterization == "centred" or (
        options.parameterization == "auto" and np.median(problem.mask.sum(axis=1)) >= 4)
    dense = (not centred) if options.dense_mass is None else bool(options.dense_mass)
    kernel = NumPyroNUTS(_model, target_accept_prob=options.target_accept, max_tree_depth=options.max_tree_depth,
                         init_strategy=init_to_median(num_samples=15), dense_mass=dense)
    mcmc = MCMC(kernel, num_warmup=options.warmup, num_samples=options.samples, num_chains=options.chains,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(options.seed), problem, problem.subjects(), bool(centred), extra_fields=("diverging",))
    samples = mcmc.get_samples(group_by_chain=True)
    draws = np.asarray(samples["natural"])                          # (chains, draws, p)
    divergences = int(np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"]).sum())
    free = np.flatnonzero([not e.fixed for e in pv.entries])
    flat = draws.reshape(-1, draws.shape[-1])
    mean = flat.mean(0)
    cov = np.cov(flat[:, free], rowvar=False).reshape(free.size, free.size) if free.size else None
    rhat = np.full(len(pv.names), np.nan)
    ess_bulk = np.full(len(pv.names), np.nan)
    ess_tail = np.full(len(pv.names), np.nan)
    for i in free:
        x = draws[..., i]
        if options.chains > 1:
            rhat[i] = float(split_gelman_rubin(x))
        ess_bulk[i] = float(effective_sample_size(x))
        ess_tail[i] = tail_ess(x)
    eta_draws = np.asarray(samples["eta"]) if problem.n_eta else np.zeros(draws.shape[:2] + (problem.n_subjects, 0))
    eta_mean = eta_draws.reshape(-1, problem.n_subjects, problem.n_eta).mean(0)
    eta_cov = np.stack([np.atleast_2d(np.cov(eta_draws[..., i, :].reshape(-1, problem.n_eta), rowvar=False))
                        for i in range(problem.n_subjects)]) if problem.n_eta else np.zeros((problem.n_subjects, 0, 0))
    pop = pv.population(jnp.asarray(mean))
    diag = diagnostics(problem, pop, eta_mean)
    worst = np.nanmax(rhat) if options.chains > 1 else np.nan
    converged = bool(divergences == 0 and (options.chains == 1 or worst <= 1.01))
    reasons = []
    if divergences:
        reasons.append(f"{divergences} divergent transitions")
    if options.chains > 1 and worst > 1.01:
        reasons.append(f"max R-hat {worst:.3f} > 1.01")
    message = "; ".join(reasons) or "R-hat <= 1.01, no divergences"
    if reasons:
        warnings.warn(f"NUTS: {message}", RuntimeWarning, stacklevel=3)
    extra_info = {"parameterization": "centred" if centred else "noncentred",
                  "mass_matrix": "dense" if dense else "diagonal"}
    return FitResult(
        method="nuts", names=pv.names, kinds=tuple(e.kind for e in pv.entries), estimates=mean,
        fixed=np.array([e.fixed for e in pv.entries]), covariance=cov, ofv=float("nan"), converged=converged,
        message=message, covariance_message="posterior covariance of the draws", iterations=options.samples,
        seconds=time.perf_counter() - start, ids=problem.ids, bsv_names=pv.template.bsv_names, eta=eta_mean,
        eta_cov=eta_cov, eta_status=np.zeros(problem.n_subjects, int), ofv_subject=np.full(problem.n_subjects, np.nan),
        times=np.where(problem.mask, problem.times, np.nan), dv=np.where(problem.mask, problem.y, np.nan),
        residuals={k: diag[k] for k in ("PRED", "IPRED", "RES", "IRES", "IWRES", "CWRES")},
        eta_shrinkage=diag["eta_shrinkage"], eps_shrinkage=diag["eps_shrinkage"],
        n_observations=problem.n_observations,
        spec=problem.spec.model_dump(mode="json", by_alias=True, exclude_none=True), excluded=problem.excluded,
        data_sha256=problem.data_sha256, covariates=problem.data_covariates,
        extra={"draws": draws, "rhat": rhat, "ess_bulk": ess_bulk, "ess_tail": ess_tail, "divergences": divergences,
               "chains": options.chains, "warmup": options.warmup, "samples": options.samples, **extra_info,
               **problem.record_notes()})
