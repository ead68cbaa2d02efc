"""Per-observation and per-subject diagnostics of a fit.

* PRED = f(eta = 0), IPRED = f(EBE); RES = DV - PRED; IRES = DV - IPRED;
  IWRES = IRES / sd(IPRED) (the residual SD at the individual prediction; on the log scale
  for the exponential error).
* CWRES (Hooker, Staatz & Karlsson, Pharm Res 2007;24:2187, FOCE conditional weighted residuals):
  with G = df/deta and V = residual variances at the EBE, E = f(EBE) - G EBE and
  C = G Omega G' + diag(V), CWRES = C^-1/2 (DV - E) (Cholesky factor).
* NPDE (Brendel et al., Pharm Res 2006;23:2036; Comets et al. 2008): K data sets simulated from
  the model on each subject's design, observations and simulations decorrelated with the
  Cholesky factor of the simulated covariance, pde = fraction of decorrelated simulations below
  the decorrelated observation (ties at 1/(2K) and 1 - 1/(2K)), npde = Phi^-1(pde).
* EBE conditional covariance = (H/2)^-1 with H the Hessian of -2 log p(y, eta) at the mode
  (NONMEM's ETC/phc); ETA shrinkage 1 - SD(EBE_k)/omega_k and EPS shrinkage 1 - SD(IWRES)
  (NONMEM's SD-based definitions).
* Inter-occasion variability: ``eta`` is the whole random-effect vector (etas, then kappas occasion
  by occasion) and Omega its block-diagonal prior covariance (`random_effects_omega`), in CWRES, the
  conditional covariance, shrinkage (a kappa's: 1 - SD(EBE)/omega_iov, per occasion) and NPDE
  simulations (which draw kappas too).
* Several outputs: each record's prediction, residual SD and scale from its own output. Censored
  (M3) records have PRED and IPRED but no residuals and no NPDE (NaN): their DV is a limit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri

from insilico.estimation._likelihood import record_log_scale, record_sd
from insilico.estimation._objective import individual_objective, random_effects_omega

__all__ = ["diagnostics", "npde"]


def diagnostics(problem, pop, eta_hat) -> dict:
    """``{name: array}``: PRED, IPRED, RES, IRES, IWRES, CWRES (N, T; NaN where no observation),
    ``eta_cov`` (N, k, k), ``eta_shrinkage`` (k,), ``eps_shrinkage`` (scalar)."""
    k = problem.n_eta
    f0, fi, iwres, cwres, eta_cov = _per_subject(problem)(pop, problem.subjects(), jnp.asarray(eta_hat))
    mask = problem.mask
    nan = np.where(mask, 1.0, np.nan)
    measured = np.where(mask & ~problem.records.get("cens", np.zeros_like(mask)), 1.0, np.nan)
    y = problem.y * measured
    out = {"PRED": np.asarray(f0) * nan, "IPRED": np.asarray(fi) * nan, "RES": y - np.asarray(f0),
           "IRES": y - np.asarray(fi), "IWRES": np.asarray(iwres) * measured, "CWRES": np.asarray(cwres) * measured,
           "eta_cov": np.asarray(eta_cov)}
    omega_sd = np.sqrt(np.diag(np.asarray(random_effects_omega(problem, pop)))) if k else np.zeros(0)
    eta_hat = np.asarray(eta_hat)
    out["eta_shrinkage"] = 1.0 - eta_hat.std(axis=0, ddof=1) / omega_sd if k and eta_hat.shape[0] > 1 \
        else np.full(k, np.nan)
    out["eps_shrinkage"] = float(1.0 - np.nanstd(out["IWRES"], ddof=1))
    return out


_COMPILED: dict = {}


def _per_subject(problem):
    """The jitted, vmapped per-subject diagnostics ``(pop, subjects, eta) -> arrays``, one per
    structure (model, output, fixed parameters, solver, residual type, number of etas)."""
    key = (id(problem.model), problem.outputs, tuple(sorted(problem.fixed.items())), problem.method,
           problem.solver, problem.has_infusion, problem.has_ss, problem.params.residual_types, problem.n_eta,
           problem.params.template.iov_names)
    if key not in _COMPILED:
        _COMPILED[key] = (problem.model, jax.jit(jax.vmap(_diagnose(problem), in_axes=(None, 0, 0))))
    return _COMPILED[key][1]


def _diagnose(problem):
    k = problem.n_eta

    def one(pop, subject, eta):
        f0, _ = problem.predict(pop, subject, jnp.zeros(k))
        fi, _ = problem.predict(pop, subject, eta)
        y, mask = subject["y"], subject["mask"]
        sd = record_sd(pop, subject, fi)
        yt = _transformed(pop, subject, y)
        ft = _transformed(pop, subject, fi)
        iwres = (yt - ft) / jnp.where(mask, sd, 1.0)
        if k:
            g = jax.jacfwd(lambda e: _transformed(pop, subject, problem.predict(pop, subject, e)[0]))(eta)
            c = g @ random_effects_omega(problem, pop) @ g.T + jnp.diag(jnp.where(mask, sd ** 2, 1.0))
            c = jnp.where(mask[:, None] & mask[None, :], c, jnp.eye(c.shape[0]))
            e = ft - g @ eta
            cwres = jax.scipy.linalg.solve_triangular(jnp.linalg.cholesky(c), jnp.where(mask, yt - e, 0.0),
                                                      lower=True)
            h = jax.jacfwd(jax.jacfwd(lambda e: individual_objective(problem, pop, subject, e)[0]))(eta)
            eta_cov = jnp.linalg.inv(0.5 * h)
        else:
            cwres = iwres
            eta_cov = jnp.zeros((0, 0))
        return f0, fi, iwres, cwres, eta_cov

    return one


def _transformed(pop, subject, v):
    """Values ``v`` (T,) of a subject's records on their residual scale (log for the exponential error)."""
    log = record_log_scale(pop, subject) & subject["mask"]
    return jnp.where(log, jnp.log(jnp.where(log, v, 1.0)), v)


def npde(problem, pop, seed: int = 0, n_sim: int = 1000) -> np.ndarray:
    """NPDE (N, T; NaN where no observation) from ``n_sim`` simulated data sets per subject
    (random effects and residual error drawn with ``jax.random`` from ``seed``)."""
    k = problem.n_eta

    def simulate(subject, key):
        """One simulated data set on the residual scale: transformed prediction + SD x N(0, 1)."""
        ke, k1 = jax.random.split(key)
        eta = chol @ jax.random.normal(ke, (k,)) if k else jnp.zeros(0)
        f, _ = problem.predict(pop, subject, eta)
        return _transformed(pop, subject, f) + record_sd(pop, subject, f) * jax.random.normal(k1, f.shape)

    chol = (pop.omega_chol if not problem.n_kappa else jnp.linalg.cholesky(random_effects_omega(problem, pop))) \
        if k else None
    keys = jax.random.split(jax.random.PRNGKey(seed), problem.n_subjects * n_sim)
    keys = keys.reshape(problem.n_subjects, n_sim, *keys.shape[1:])
    sims = jax.jit(jax.vmap(lambda s, ks: jax.vmap(lambda kk: simulate(s, kk))(ks)))(problem.subjects(), keys)
    sims = np.asarray(sims)
    observed = np.asarray(jax.vmap(lambda s: _transformed(pop, s, s["y"]))(problem.subjects()))
    out = np.full(problem.y.shape, np.nan)
    for i in range(problem.n_subjects):
        m = problem.mask[i] & ~problem.records.get("cens", np.zeros_like(problem.mask))[i]
        if not m.any():
            continue
        obs = observed[i, m]
        s = sims[i][:, m]
        mean = s.mean(0)
        cov = np.atleast_2d(np.cov(s, rowvar=False))
        try:
            low = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            low = np.diag(np.sqrt(np.maximum(np.diag(cov), 1e-300)))
        dec_obs = np.linalg.solve(low, obs - mean)
        dec_sim = np.linalg.solve(low, (s - mean).T).T
        pde = (dec_sim < dec_obs).mean(0)
        pde = np.clip(pde, 1.0 / (2 * n_sim), 1.0 - 1.0 / (2 * n_sim))
        out[i, m] = ndtri(pde)
    return out
