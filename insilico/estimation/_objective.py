"""The individual objective, its eta mode (EBE) and the FOCE-I / Laplace population objective.

Conventions (Beal & Sheiner, NONMEM Users Guide Part VII; Wang, J Pharmacokinet Pharmacodyn
2007;34:575, "Derivation of various NONMEM estimation methods"):

* random effects: ``eta`` is a subject's whole random-effect vector; with inter-occasion variability
  it holds the etas and then one kappa block per occasion, with the block-diagonal prior
  ``diag(Omega, Omega_IOV, ..., Omega_IOV)`` (`random_effects_omega`; NONMEM's $OMEGA BLOCK SAME
  convention, NONMEM Users Guide Part VIII), so the kappas are found with the etas by the same
  Newton iterations and enter the Laplace / FOCE-I determinant like any eta
  (`insilico.estimation._problem`);
* individual objective ``O_i(eta) = -2 log p(y_i, eta | theta)``: the eta (and kappa) prior from the one
  log-density `insilico.population.log_density` plus the residual likelihood of
  `insilico.estimation._likelihood` (each record from its own output and residual model; censored
  records by M3), all constants included;
* EBE / conditional mode ``eta_i = argmin O_i`` by Newton's method with the exact Hessian
  (forward-mode AD), eigenvalues floored to keep steps descending, backtracking, vmapped;
* Laplace: ``-2 log L_i ~ O_i(eta_i) - n_eta log 2 pi + log det(H_i / 2)``, ``H_i`` the exact
  Hessian of ``O_i`` at the mode;
* FOCE-I: the same with ``H_i / 2`` replaced by its first-order (expected-information)
  approximation ``Omega^-1 + sum_j g_j g_j' / V_j + 1/2 sum_j h_j h_j' / V_j^2`` where
  ``g = d f/d eta``, ``V`` the residual variance at the individual prediction and
  ``h = dV/d eta`` (the interaction); for the exponential error ``f`` is ``log f``.
  FOCE-I equals Laplace when ``f`` is linear in eta and V does not depend on eta. It has no
  form for censored (M3) records: those need Laplace (as NONMEM's M3 needs LAPLACIAN).
* OFV (NONMEM's scale) = sum_i (-2 log L_i) - n_obs log 2 pi: NONMEM omits the
  ``n_obs log(2 pi)`` constant, and so does this objective; ``n_obs`` counts the uncensored
  records (a censored record's probability has no 2 pi constant).

Outer derivatives by implicit differentiation: the mode found by Newton (no gradient through
its iterations) enters the objective through `_implicit_mode`, a custom JVP whose value is the
mode and whose derivative is the implicit function theorem's
``d eta / d theta = -H^-1 d^2 O / (d eta d theta)`` (H the exact Hessian of O in eta at the mode;
the same rule as optimistix's ``ImplicitAdjoint``). The outer gradient thus needs second
derivatives of O, not the third derivatives of differentiating a Newton step's Hessian; the JVP is
forward mode, so the ODE path (``diffrax.ForwardMode``) works as well as the exact path, and JAX
transposes it for reverse mode on the exact path. (Differentiating one Newton step from the mode
instead gives the same first derivative; it compiled ~35 % slower and each evaluation took 1.5-1.8x as long on
the 1-cmt benchmark.)
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from insilico.estimation._likelihood import log_likelihood, record_log_scale, record_sd
from insilico.population import log_density

__all__ = ["LOG_2PI", "eta_mode", "gaussian_count", "individual_objective", "random_effects_omega", "subject_ofv"]

LOG_2PI = float(jnp.log(2.0 * jnp.pi))
OK, NOT_CONVERGED, SOLVER_FAILED = 0, 1, 2
MAX_STEP = 1.0   # largest change of one eta in one Newton step (log scale: a factor e)


def random_effects_omega(problem, pop):
    """The prior covariance of a subject's random-effect vector (module docstring): Omega, or with
    IOV ``diag(Omega, Omega_IOV, ..., Omega_IOV)`` (Omega_IOV = diag(omega_iov^2), once per occasion)."""
    if not problem.n_kappa:
        return pop.omega
    iov = jnp.tile(jnp.stack([jnp.asarray(sd) ** 2 for sd in pop.iov_sd]), pop.occasions)
    if not problem.n_bsv:
        return jnp.diag(iov)
    b = problem.n_bsv
    return jnp.zeros((problem.n_eta, problem.n_eta)).at[:b, :b].set(pop.omega).at[b:, b:].set(jnp.diag(iov))


def individual_objective(problem, pop, subject, eta):
    """``O_i(eta) = -2 log p(y_i, eta)`` (constants included) and the solver status; with IOV
    ``eta`` is the whole random-effect vector (etas, then kappas occasion by occasion)."""
    f, status = problem.predict(pop, subject, eta)
    return _objective_from_prediction(problem, pop, subject, eta, f), status


def _objective_from_prediction(problem, pop, subject, eta, f):
    """``O_i(eta)`` (`individual_objective`) from the prediction ``f`` at ``eta``."""
    lp = log_likelihood(pop, subject, f)
    if problem.n_kappa:
        e, kappa = problem.split_random_effects(eta)
        lp = lp + log_density(pop, e if problem.n_bsv else None, kappa)
    elif problem.n_eta:
        lp = lp + log_density(pop, eta)
    return -2.0 * lp


def gaussian_count(subject):
    """Number of uncensored fitted records of a subject (those whose density has a 2 pi constant)."""
    mask = subject["mask"]
    return (mask & ~subject["cens"]).sum() if "cens" in subject else mask.sum()


def _value_grad_hess(obj):
    """``eta -> (O, g, H)``: value, gradient and Hessian of ``obj`` in one forward-over-forward
    pass. The gradient is the primal output of the pass that differentiates it and the value the
    primal output of that (each computed once, not per direction), so they cost nothing beside
    the Hessian."""
    def value_aux(eta):
        v = obj(eta)
        return v, v

    def grad_aux(eta):
        g, v = jax.jacfwd(value_aux, has_aux=True)(eta)
        return g, (g, v)

    def value_grad_hess(eta):
        h, (g, v) = jax.jacfwd(grad_aux, has_aux=True)(eta)
        return v, g, h

    return value_grad_hess


def _newton(obj, eta0, max_iter: int, tol: float):
    """Minimise ``obj`` from ``eta0``: Newton with the exact Hessian, eigenvalues floored
    (|lambda| >= 1e-8 max|lambda|, so the step descends), the step capped at ``MAX_STEP`` in
    each eta (a trust region: etas are log-scale deviations), then backtracking (step halved
    until the objective decreases, at most 12 times). Stops when the Newton decrement
    g' H^-1 g < tol or no step length lowers the objective. Returns (eta, converged).
    The gradient and Hessian of the current point are carried in the loop state, so each
    iteration evaluates them once (`_value_grad_hess`), at the point it moves to."""
    vgh = _value_grad_hess(obj)

    def step(state):
        eta, val, it, _, g, h = state
        w, v = jnp.linalg.eigh(0.5 * (h + h.T))
        w = jnp.maximum(jnp.abs(w), 1e-8 * jnp.max(jnp.abs(w)) + 1e-12)
        d = -v @ ((v.T @ g) / w)
        decrement = -g @ d
        d = d * jnp.minimum(1.0, MAX_STEP / jnp.max(jnp.abs(d)))

        def shorter(c):
            a, _ = c
            return a / 2.0, obj(eta + (a / 2.0) * d)

        def worse(c):
            a, trial = c
            return (~(trial < val)) & (a > 0.5 ** 11)

        a, trial = jax.lax.while_loop(worse, shorter, (1.0, obj(eta + d)))
        better = jnp.isfinite(trial) & (trial < val)
        eta = jnp.where(better, eta + a * d, eta)
        _, g, h = vgh(eta)
        done = (decrement < tol) | ~better
        return eta, jnp.where(better, trial, val), it + 1, done, g, h

    def cond(state):
        return (~state[3]) & (state[2] < max_iter)

    val0, g0, h0 = vgh(eta0)
    eta, val, it, done, g, h = jax.lax.while_loop(cond, step, (eta0, val0, 0, jnp.asarray(False), g0, h0))
    decrement = g @ jnp.linalg.solve(h, g)
    converged = jnp.isfinite(val) & (decrement < 10 * tol) & jnp.all(jnp.linalg.eigvalsh(h) > 0)
    return eta, converged


def eta_mode(problem, pop, subject, eta0, max_iter: int = 100, tol: float = 1e-12):
    """The EBE of one subject (no derivative through the iterations) and a status code
    (0 ok, 1 not converged, 2 solver failure at the mode)."""
    if not problem.n_eta:
        return eta0, jnp.asarray(OK)

    def obj(eta):
        v, s = individual_objective(problem, pop, subject, eta)
        return jnp.where(s == 0, v, jnp.inf)

    eta, converged = _newton(obj, jax.lax.stop_gradient(eta0), max_iter, tol)
    _, s = individual_objective(problem, pop, subject, eta)
    code = jnp.where(s != 0, SOLVER_FAILED, jnp.where(converged, OK, NOT_CONVERGED))
    return jax.lax.stop_gradient(eta), code


@eqx.filter_custom_jvp
def _implicit_mode(pop, subject, eta, *, problem):
    """The eta mode ``eta`` (found by `eta_mode`, no derivative through its iterations) as a
    function of the population parameters, differentiable by the implicit function theorem."""
    return eta


@_implicit_mode.def_jvp
def _implicit_mode_jvp(primals, tangents, *, problem):
    """``d eta = -H^-1 (d/d theta dO/d eta) d theta`` at the mode (``dO/d eta = 0`` defines it):
    the derivatives of the individual objective ``O`` in eta by forward mode, their directional
    derivative in the population parameters by one JVP (transposed by JAX for reverse mode)."""
    pop, subject, eta = primals
    t_pop = tangents[0]
    dyn, static = eqx.partition(pop, eqx.is_inexact_array)
    t_dyn = jax.tree.map(lambda d, t: None if d is None else (jnp.zeros_like(d) if t is None else t),
                         dyn, t_pop, is_leaf=lambda v: v is None)

    def obj(p, e):
        return individual_objective(problem, p, subject, e)[0]

    def grad_eta(d):
        return jax.jacfwd(lambda e: obj(eqx.combine(d, static), e))(eta)

    _, dg = jax.jvp(grad_eta, (dyn,), (t_dyn,))
    h = jax.jacfwd(jax.jacfwd(lambda e: obj(pop, e)))(eta)
    return eta, -jnp.linalg.solve(h, dg)


def _focei_half_hessian(problem, pop, subject, eta):
    """Omega^-1 + sum_j g g'/V + 1/2 sum_j h h'/V^2 at ``eta`` (masked observations only; each
    record on its own output's scale, log for the exponential error), and the prediction at
    ``eta`` (the primal output of the same forward pass)."""
    log = record_log_scale(pop, subject)

    def moments(e):
        f, _ = problem.predict(pop, subject, e)
        m = jnp.where(log, jnp.log(jnp.where(subject["mask"] & log, f, 1.0)), f)
        v = record_sd(pop, subject, f) ** 2
        return (m, v), (v, f)

    (g, h), (v, f) = jax.jacfwd(moments, has_aux=True)(eta)
    w = jnp.where(subject["mask"], 1.0, 0.0)
    v = jnp.where(subject["mask"], v, 1.0)
    info = (g * (w / v)[:, None]).T @ g + 0.5 * (h * (w / v ** 2)[:, None]).T @ h
    return jnp.linalg.inv(random_effects_omega(problem, pop)) + info, f


def subject_ofv(problem, pop, subject, eta_hat, method: str):
    """-2 log L_i on NONMEM's scale (without n_obs,i log 2 pi) for ``method`` laplace or focei at
    the mode ``eta_hat``, differentiable in ``pop`` (first derivatives) through the mode's implicit
    dependence on it; also returns the mode."""
    n_obs = gaussian_count(subject)
    if not problem.n_eta:
        o, _ = individual_objective(problem, pop, subject, eta_hat)
        return o - n_obs * LOG_2PI, eta_hat

    def obj(eta):
        return individual_objective(problem, pop, subject, eta)[0]

    eta = _implicit_mode(pop, subject, jax.lax.stop_gradient(eta_hat), problem=problem)
    if method == "laplace":
        o, _, h = _value_grad_hess(obj)(eta)
        half_h = 0.5 * h
    else:
        half_h, f = _focei_half_hessian(problem, pop, subject, eta)
        o = _objective_from_prediction(problem, pop, subject, eta, f)
    _, logdet = jnp.linalg.slogdet(half_h)
    k = eta.shape[-1]
    return o - k * LOG_2PI + logdet - n_obs * LOG_2PI, eta


