"""A twin's posterior over its random effects eta given its history.

Inter-occasion variability (a prior with ``iov``): the random effects are estimation's vector
``[eta, kappa_1, ..., kappa_K]`` (`insilico.twins._prior`), and everything below is over that
whole vector, the block-diagonal prior ``diag(Omega, Omega_IOV, ..., Omega_IOV)`` included: the
posterior of NONMEM's POSTHOC step with IOV (Abrantes et al. 2019, Br J Clin Pharmacol 85:1326).
The kappas of occasions the history never visits keep their prior: MAP 0, Laplace covariance
Omega_IOV (their rows of the Hessian are the prior's), and in the full posterior they are drawn
from N(0, Omega_IOV) exactly (the likelihood does not depend on them) while importance sampling /
NUTS run over the etas and the visited occasions' kappas. ``n_eta`` in the objective's constant
is then the length of the whole vector.

MAP / Laplace (the default, what every update stores):

* ``O(eta) = -2 log p(y, eta)`` is `insilico.estimation.individual_objective` (prior
  N(0, Omega) of the population model plus the residual log-likelihood, all constants);
* the MAP is its minimiser, found by `insilico.estimation.eta_mode` (damped Newton with the
  exact forward-mode Hessian) started from eta = 0 every time, so a version depends only on the
  prior and the rows (reproducible); it is NONMEM's POSTHOC EBE;
* the Laplace covariance is ``(H / 2)^-1`` with ``H`` the exact Hessian of ``O`` at the MAP
  (``-log p`` has Hessian ``H / 2``);
* the reported ``objective`` is on NONMEM's scale: ``O(MAP) - (n_obs + n_eta) log(2 pi)``
  (NONMEM's objective omits the normal densities' constants).

Status codes: 0 ok, 1 Newton not converged, 2 solver failure at the MAP, 3 Hessian not
positive definite (no Laplace covariance; ``eta_cov`` is NaN). They are reported, never raised.

A fleet is one jitted, vmapped kernel over patients, in chunks of at most ``chunk_size``
patients (512 on CPU), each padded to a power of two (one compiled shape per size).

Full posterior (`sample_posterior`): importance sampling from the Laplace approximation --
as proposal the multivariate Student t with ``PROPOSAL_DOF`` = 5 degrees of freedom centred at the
MAP with the Laplace covariance as scale matrix (heavier tails than the Gaussian keep the weights
bounded; Geweke 1989, Econometrica 57:1317) -- self-normalised weights
``w ~ exp(-O(eta)/2) / q(eta)``, multinomial resampling to equal weights, and Kish's effective sample size
``ESS = (sum w)^2 / sum w^2``; when ``ESS < min_ess_fraction * n`` the proposal is judged
inadequate and NumPyro's NUTS samples ``exp(-O/2)`` instead (4 chains, started at the MAP).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from insilico.batching import bucket_size
from insilico.engine import default_chunk_size
from insilico.estimation import LOG_2PI, eta_mode, individual_objective

__all__ = ["HESSIAN_NOT_PD", "Posterior", "laplace_batch", "sample_posterior"]

HESSIAN_NOT_PD = 3
PROPOSAL_DOF = 5.0
STATUS = {0: "ok", 1: "not converged", 2: "solver failed", 3: "Hessian not positive definite"}


@dataclass(frozen=True)
class Posterior:
    """MAP ``eta`` (k,), Laplace ``eta_cov`` (k, k), ``objective`` (NONMEM scale), ``status``
    code and ``n_obs`` of one patient."""

    eta: np.ndarray
    eta_cov: np.ndarray
    objective: float
    status: int
    n_obs: int

    @property
    def status_text(self) -> str:
        return STATUS.get(self.status, str(self.status))


@functools.lru_cache(maxsize=64)
def _laplace_kernel(tm, has_infusion: bool, has_ss: bool):
    problem = tm.problem_for(has_infusion, has_ss)
    k = tm.n_random

    def one(pop, s):
        eta, code = eta_mode(problem, pop, s, jnp.zeros(k))

        def obj(e):
            return individual_objective(problem, pop, s, e)[0]

        h = jax.jacfwd(jax.jacfwd(obj))(eta) if k else jnp.zeros((0, 0))
        return eta, code, obj(eta), h

    def batch(nat, subjects):
        pop = problem.params.population(nat)
        return jax.vmap(lambda s: one(pop, s))(subjects)

    return jax.jit(batch)


def laplace_batch(tm, build, n: int, chunk_size: int | None = None) -> list[Posterior]:
    """MAP and Laplace covariance of ``n`` patients. ``build(lo, hi, n_pad)`` returns
    (subjects, has_infusion, has_ss) for patients lo..hi-1 padded to ``n_pad`` rows
    (`insilico.twins._data.batch_arrays`)."""
    chunk = int(chunk_size or default_chunk_size())
    out = []
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        n_pad = bucket_size(hi - lo, least=1, most=chunk)
        subjects, inf, ss = build(lo, hi, n_pad)
        eta, code, obj, h = _laplace_kernel(tm, inf, ss)(tm.nat, jax.tree.map(jnp.asarray, subjects))
        eta, code, obj, h = (np.asarray(a) for a in (eta, code, obj, h))
        n_obs = subjects["mask"].sum(1)
        for i in range(hi - lo):
            out.append(_posterior(eta[i], int(code[i]), float(obj[i]), h[i], int(n_obs[i])))
    return out


def _posterior(eta, code, obj, h, n_obs) -> Posterior:
    k = eta.size
    if k:
        hs = 0.5 * (h + h.T)
        ok = np.all(np.isfinite(hs)) and np.linalg.eigvalsh(hs).min() > 0
        cov = np.linalg.inv(0.5 * hs) if ok else np.full((k, k), np.nan)
        if not ok and code == 0:
            code = HESSIAN_NOT_PD
    else:
        cov = np.zeros((0, 0))
    return Posterior(eta, 0.5 * (cov + cov.T), obj - (n_obs + k) * LOG_2PI, code, n_obs)


@functools.lru_cache(maxsize=32)
def _objective_kernel(tm, has_infusion: bool, has_ss: bool, adjoint: str = "forward"):
    problem = tm.problem_for(has_infusion, has_ss)
    problem = replace(problem, solver=replace(problem.solver, adjoint=adjoint))

    def obj(nat, subject, e):
        o, s = individual_objective(problem, problem.params.population(nat), subject, e)
        return jnp.where((s == 0) & jnp.isfinite(o), o, jnp.inf)

    return obj


@functools.lru_cache(maxsize=32)
def _draws_kernel(tm, has_infusion: bool, has_ss: bool, active: tuple):
    """jit(nat, subject, draws (n, len(active))) -> O at each draw, the other random effects at 0:
    compiled once per prior, dosing flags and active set (not once per patient)."""
    full = _objective_kernel(tm, has_infusion, has_ss)
    idx = jnp.asarray(active, dtype=int)

    def many(nat, subject, draws):
        return jax.vmap(lambda e: full(nat, subject, jnp.zeros(tm.n_random).at[idx].set(e)))(draws)

    return jax.jit(many)


def sample_posterior(tm, subject, flags, post: Posterior, n: int = 2000, seed: int = 0,
                     min_ess_fraction: float = 0.25, nuts_warmup: int = 500) -> dict:
    """Draws from the full posterior of one patient (module docstring).

    Returns {"draws": (n, k) draws of the random-effect vector (equally weighted), "method":
    "importance" or "nuts", "ess": effective sample size of the importance weights (Kish),
    "ess_fraction", and for NUTS "divergences"}."""
    if tm.n_random == 0:
        return {"draws": np.zeros((n, 0)), "method": "prior", "ess": float(n), "ess_fraction": 1.0}
    subject = jax.tree.map(jnp.asarray, subject)
    active = _active(tm, subject)
    key = jax.random.PRNGKey(seed)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    fixed = _unvisited_draws(tm, active, n, jax.random.fold_in(key, 5))
    out = _sample_active(tm, subject, flags, post, active, n, (k1, k2, k3, k4), min_ess_fraction, nuts_warmup)
    draws = fixed.copy()
    draws[:, active] = out.pop("draws")
    return {"draws": draws, **out}


def _active(tm, subject) -> np.ndarray:
    """Indices of the random effects the likelihood depends on: every eta and the kappas of the
    occasions in the subject's ``occ`` (all of them without IOV)."""
    if not tm.n_kappa:
        return np.arange(tm.n_random)
    m = len(tm.pop.iov_names)
    occ = np.unique(np.asarray(subject["occ"]))
    return np.r_[np.arange(tm.n_eta), (tm.n_eta + m * occ[:, None] + np.arange(m)).reshape(-1)].astype(int)


def _unvisited_draws(tm, active, n: int, key) -> np.ndarray:
    """(n, n_random) draws of the unvisited occasions' kappas from their prior N(0, Omega_IOV)
    (zeros elsewhere; module docstring)."""
    out = np.zeros((n, tm.n_random))
    if tm.n_kappa:
        sd = np.tile([float(v) for v in tm.pop.iov_sd], tm.occasions)
        out[:, tm.n_eta:] = np.asarray(jax.random.normal(key, (n, tm.n_kappa))) * sd
        out[:, active] = 0.0
    return out


def _sample_active(tm, subject, flags, post: Posterior, active, n, keys, min_ess_fraction, nuts_warmup) -> dict:
    """Importance sampling (NUTS fallback) over the ``active`` random effects (module docstring),
    the others at 0."""
    k = active.size
    k1, k2, k3, k4 = keys
    mean, cov = jnp.asarray(post.eta[active]), jnp.asarray(post.eta_cov[np.ix_(active, active)])
    usable = bool(np.all(np.isfinite(cov)))
    ess = 0.0
    if usable:
        chol = jnp.linalg.cholesky(cov)
        z = jax.random.normal(k1, (n, k))
        u = 2.0 * jax.random.gamma(k2, PROPOSAL_DOF / 2.0, (n,))          # chi-square with PROPOSAL_DOF
        t = z * jnp.sqrt(PROPOSAL_DOF / u)[:, None]
        draws = mean + t @ chol.T
        o = _draws_kernel(tm, *flags, tuple(int(i) for i in active))(tm.nat, subject, draws)
        log_q = -0.5 * (PROPOSAL_DOF + k) * jnp.log1p(jnp.sum(t * t, 1) / PROPOSAL_DOF)   # up to a constant
        log_w = -0.5 * o - log_q
        log_w = jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)
        w = jnp.exp(log_w - jnp.max(log_w))
        w = w / w.sum()
        ess = float(1.0 / jnp.sum(w * w))
        if ess >= min_ess_fraction * n:
            idx = jax.random.choice(k3, n, (n,), p=w)        # multinomial resampling: equal weights
            return {"draws": np.asarray(draws[idx]), "method": "importance", "ess": ess, "ess_fraction": ess / n}
    return {**_nuts(tm, subject, flags, active, np.asarray(post.eta[active]), n, k4, nuts_warmup), "ess": ess,
            "ess_fraction": ess / n}


def _nuts(tm, subject, flags, active, init, n, key, warmup) -> dict:
    from numpyro.infer import MCMC, NUTS, init_to_value

    obj = _objective_kernel(tm, *flags, adjoint="reverse")     # NUTS needs reverse-mode gradients
    zeros = jnp.zeros(tm.n_random)

    def potential(eta):
        return 0.5 * obj(tm.nat, subject, zeros.at[active].set(eta))

    chains = 4
    kernel = NUTS(potential_fn=potential, init_strategy=init_to_value(values=None))
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=-(-n // chains), num_chains=chains,
                chain_method="vectorized", progress_bar=False)
    init = jnp.broadcast_to(jnp.asarray(init), (chains, init.size))
    mcmc.run(key, init_params=init, extra_fields=("diverging",))
    draws = np.asarray(mcmc.get_samples()).reshape(-1, init.shape[-1])[:n]
    div = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return {"draws": draws, "method": "nuts", "divergences": div}
