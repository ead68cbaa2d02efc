"""Maximum-likelihood fit (FOCE-I, Laplace): outer L-BFGS-B over the transformed parameters
with exact gradients, eta modes warm-started between evaluations, and NONMEM's covariance step.

One compiled call per evaluation finds the eta modes and returns the OFV with the per-subject
gradients: by one reverse-mode pass on the exact (closed-form) path, by forward mode over the
parameters on the ODE path (whose forward-mode adjoint has no reverse mode); `_pick_gradient`.

Covariance step (NONMEM $COVARIANCE default, MATRIX unspecified): with ``R`` the Hessian of the
OFV and ``S = sum_i g_i g_i'`` (``g_i`` the gradient of subject i's OFV contribution), both with
respect to the estimated quantities on the natural scale (THETA, OMEGA, SIGMA elements), the
covariance of the estimates is ``R^-1 S R^-1`` (the OFV is -2 log L, so the factors of 2 cancel).
If R is not positive definite the step fails with a warning (as NONMEM's "R MATRIX
ALGORITHMICALLY NON-POSITIVE-SEMIDEFINITE") and the SEs are NaN.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from insilico.estimation._objective import eta_mode, subject_ofv

__all__ = ["MLFit", "fit_ml", "screen_subjects"]


@dataclass(frozen=True)
class MLFit:
    """Raw outcome of a maximum-likelihood fit (natural-scale vectors over ``params.entries``)."""

    estimates: np.ndarray
    ofv: float
    converged: bool
    message: str
    iterations: int
    evaluations: int
    eta: np.ndarray
    eta_status: np.ndarray
    ofv_subject: np.ndarray
    covariance: np.ndarray | None
    covariance_message: str
    seconds: float


_COMPILED: dict = {}     # structure key -> (model kept alive, jitted functions): reused by every fit of that structure


def _structure_key(problem, method: str, inner_max_iter: int, inner_tol: float) -> tuple:
    """What the traced objective depends on besides its array arguments: the structural model,
    the fitted output, the fixed model parameters, the solver, the parameter model's structure and
    which entries are free. Fits that share it (e.g. the same model on new data or from new initial
    values) reuse the compiled functions."""
    pv = problem.params
    t = pv.template
    effects = tuple(tuple((e.covariate, e.type, e.ref, e.labels) for e in es) for es in t.effects)
    return (id(problem.model), problem.outputs, tuple(sorted(problem.fixed.items())), problem.method,
            problem.solver, problem.has_infusion, problem.has_ss, t.names, effects, t.bsv_names,
            tuple(map(tuple, pv.blocks)), pv.residual_types, tuple(pv.free.tolist()), method, inner_max_iter,
            inner_tol, t.iov_names, t.occasions)


def _build(problem, method: str, inner_max_iter: int, inner_tol: float) -> dict:
    pv = problem.params
    free = jnp.asarray(pv.free)

    def nat_of_x(x, tr0):
        return pv.to_natural(tr0.at[free].set(x))

    def x_of_nat(y, nat0):
        return pv.to_transformed(nat0.at[free].set(y))[free]

    def modes(nat, subjects, eta0):
        pop = pv.population(nat)
        return jax.vmap(lambda s, e: eta_mode(problem, pop, s, e, inner_max_iter, inner_tol))(subjects, eta0)

    def per_subject(x, tr0, subjects, eta_hat):
        pop = pv.population(nat_of_x(x, tr0))
        o = jax.vmap(lambda s, e: subject_ofv(problem, pop, s, e, method)[0])(subjects, eta_hat)
        return o, o

    def value_grad_forward(x, tr0, subjects, eta0):
        """OFV, the per-subject gradients in x (N, p; forward mode gives the Jacobian of the
        per-subject vector at the cost of the gradient of its sum), the eta modes (warm-started
        at eta0), their status codes, the per-subject OFV contributions and the gradient (p,)."""
        eta_hat, codes = modes(nat_of_x(x, tr0), subjects, eta0)
        g, o = jax.jacfwd(per_subject, has_aux=True)(x, tr0, subjects, eta_hat)
        return o.sum(), g, eta_hat, codes, o, g.sum(0)

    def tiled(xs, tr0, subjects, eta_hat):
        """Per-subject OFV with subject i's contribution evaluated at its own copy ``xs[i]`` of x."""
        o = jax.vmap(lambda xi, s, e: subject_ofv(problem, pv.population(nat_of_x(xi, tr0)), s, e, method)[0])(
            xs, subjects, eta_hat)
        return o.sum(), o

    def value_grad_reverse(x, tr0, subjects, eta0):
        """As ``value_grad_forward`` by one reverse pass: the gradient of the summed OFV with respect
        to per-subject copies of x is the matrix of per-subject gradients (subject i's contribution
        depends on its copy only), at a few times the cost of the OFV whatever the number of
        parameters (forward mode costs one pass per parameter)."""
        eta_hat, codes = modes(nat_of_x(x, tr0), subjects, eta0)
        xs = jnp.broadcast_to(x, (eta_hat.shape[0],) + x.shape)
        (_, o), g = jax.value_and_grad(tiled, has_aux=True)(xs, tr0, subjects, eta_hat)
        return o.sum(), g, eta_hat, codes, o, g.sum(0)

    def chain(y, nat0):
        """dx/dy and d2x/dy2 of the map natural -> transformed (free entries)."""
        return jax.jacfwd(x_of_nat)(y, nat0), jax.jacfwd(jax.jacfwd(x_of_nat))(y, nat0)

    return {"nat_of_x": jax.jit(nat_of_x), "chain": jax.jit(chain), "to_transformed": jax.jit(pv.to_transformed),
            "value_grad_forward": jax.jit(value_grad_forward),
            "value_grad_reverse": jax.jit(value_grad_reverse) if problem.method == "exact" else None}


def _pick_gradient(fns: dict, args) -> None:
    """Choose reverse mode for the outer gradient when the solve supports it (the exact path; it is
    traced once here to check), else forward mode (the ODE path: diffrax's forward-mode adjoint).
    Both give the same gradients to rounding; reverse mode is ~5x cheaper on the 1-cmt benchmark."""
    if "value_grad" in fns:
        return
    rev = fns["value_grad_reverse"]
    if rev is not None:
        try:
            jax.eval_shape(rev, *args)
        except Exception:     # a primitive without a transpose rule (e.g. a while loop): forward mode
            rev = None
    fns["value_grad"] = rev or fns["value_grad_forward"]


def _functions(problem, method: str, inner_max_iter: int, inner_tol: float) -> dict:
    """The jitted objective functions of ``problem`` with its initial values bound."""
    key = _structure_key(problem, method, inner_max_iter, inner_tol)
    if key not in _COMPILED:
        _COMPILED[key] = (problem.model, _build(problem, method, inner_max_iter, inner_tol))
    fns = _COMPILED[key][1]
    pv = problem.params
    nat0 = jnp.asarray(pv.initial)
    tr0 = fns["to_transformed"](nat0)

    def value_grad(x, subjects, eta0):
        _pick_gradient(fns, (x, tr0, subjects, eta0))
        return fns["value_grad"](x, tr0, subjects, eta0)

    return {"nat_of_x": lambda x: fns["nat_of_x"](x, tr0), "value_grad": value_grad,
            "chain": lambda y: fns["chain"](y, nat0), "x0": np.asarray(tr0)[pv.free]}


def fit_ml(problem, options, first=None) -> MLFit:
    """Minimise the FOCE-I or Laplace OFV of ``problem``; see the module docstring. ``first``: the
    evaluation at the initial values from eta = 0 (`screen_subjects`), reused as the first step."""
    start = time.perf_counter()
    pv = problem.params
    fns = _functions(problem, options.name, options.inner_max_iter, options.inner_tol)
    subjects = problem.subjects()
    k = problem.n_eta
    eta_warm = jnp.zeros((problem.n_subjects, k))
    x0 = fns["x0"]
    state = {"eta": eta_warm, "n": 0, "best": np.inf}

    def fun(x):
        nonlocal first
        state["n"] += 1
        if first is not None and np.array_equal(x, x0):    # the screen's evaluation at x0 from eta = 0
            out = first
        else:
            out = fns["value_grad"](jnp.asarray(x), subjects, state["eta"])
        first = None
        val, _, eta_hat, _, _, g = out
        val = float(val)
        if not np.isfinite(val) or not np.all(np.isfinite(np.asarray(g))):
            return 1e300, np.zeros_like(x)
        state["eta"] = eta_hat
        state["last"] = (np.array(x), out)
        return val, np.asarray(g, dtype=float)

    if pv.free.size:
        res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=pv.transformed_bounds(),
                                      options={"maxiter": options.max_iter, "maxcor": 20, "ftol": 1e-12,
                                               "gtol": 1e-5})
        x, converged, message, iters = res.x, bool(res.success), str(res.message), int(res.nit)
    else:
        x, converged, message, iters = x0, True, "nothing to estimate (every quantity fixed)", 0
    nat = fns["nat_of_x"](jnp.asarray(x))
    last = state.get("last")
    if last is not None and np.array_equal(last[0], x):
        _, g_i, eta_hat, codes, ofv_i, _ = last[1]      # L-BFGS-B's last evaluation is usually at its result
    else:
        _, g_i, eta_hat, codes, ofv_i, _ = fns["value_grad"](jnp.asarray(x), subjects, state["eta"])
    ofv_i = np.asarray(ofv_i)
    ofv = float(ofv_i.sum())
    if not np.isfinite(ofv):
        converged, message = False, "objective not finite at the final estimates"
    cov, cov_msg = None, "not requested"
    if options.covariance and pv.free.size and np.isfinite(ofv):
        cov, cov_msg = _covariance(fns, np.asarray(x), nat, pv.free, subjects, eta_hat, np.asarray(g_i),
                                   options.matrix)
    return MLFit(np.asarray(nat), ofv, converged, message, iters, state["n"], np.asarray(eta_hat),
                 np.asarray(codes), ofv_i, cov, cov_msg, time.perf_counter() - start)


def _covariance(fns, x, nat, free, subjects, eta_hat, g_subjects, matrix: str = "sandwich", rel_step: float = 1e-5):
    """``R^-1 S R^-1`` (``matrix="sandwich"``), ``2 R^-1`` (``"R"``) or ``4 S^-1`` (``"S"``) on the
    natural scale (NONMEM $COV MATRIX=R/S; see module docstring).

    ``S`` from the exact per-subject gradients. ``R``: forward differences of the exact (AD)
    gradient in the transformed parameters x (step ``rel_step`` (1 + |x|) from the fit's final
    gradient, eta modes re-found at each point: p gradient evaluations), symmetrised, then carried
    to the natural scale y by the chain rule ``R_y = J' R_x J + sum_k g_k d2x_k/dy2`` (J = dx/dy,
    exact). NONMEM, too, obtains R by finite differences; differencing the exact gradient instead
    of the objective keeps the truncation error at O(step) ~ 1e-5 relative, and the gradient's own
    error (second order in the inner tolerance's eta error, through the refined mode) stays far below
    it (central differences, 2p evaluations, changed the benchmark SEs by < 1e-4 relative). (The fully
    nested forward-mode Hessian is exact but took minutes to compile; evaluating the
    points as one vmapped call took ~40 s CPU more to compile on the 1-cmt benchmark and was not
    faster, since the vmapped Newton iterations run until the slowest point's converge.) ``g_subjects``:
    the per-subject gradients (N, p) at ``x``, from the fit's last evaluation."""
    def gradient(xx):
        _, g, _, _, _, _ = fns["value_grad"](jnp.asarray(xx), subjects, eta_hat)
        return np.asarray(g)

    p = x.size
    g = g_subjects.sum(0)
    r_x = np.empty((p, p))
    for j in range(p):
        up = x.copy()
        up[j] += rel_step * (1.0 + abs(x[j]))
        r_x[:, j] = (gradient(up).sum(0) - g) / (up[j] - x[j])
    r_x = 0.5 * (r_x + r_x.T)
    jac, hess = (np.asarray(a) for a in fns["chain"](nat[jnp.asarray(free)]))
    r = jac.T @ r_x @ jac + np.einsum("k,kij->ij", g, hess)
    s = jac.T @ (g_subjects.T @ g_subjects) @ jac
    r = 0.5 * (r + r.T)
    if not np.all(np.isfinite(r)) or np.linalg.eigvalsh(r).min() <= 0:
        warnings.warn("covariance step failed: the R matrix (Hessian of the OFV) is not positive definite; "
                      "standard errors are not available", RuntimeWarning, stacklevel=3)
        return None, "R matrix not positive definite"
    r_inv = np.linalg.inv(r)
    if matrix == "R":
        return 2.0 * r_inv, "ok (2 R^-1)"
    if matrix == "S":
        return 4.0 * np.linalg.inv(s), "ok (4 S^-1)"
    return r_inv @ s @ r_inv, "ok (R^-1 S R^-1)"


def screen_subjects(problem, options):
    """(``problem`` without the subjects whose OFV contribution or gradient is not finite at the
    initial estimates (a solve that fails, an eta mode that cannot be found), listed in ``excluded``
    with the reason; the evaluation at the initial values when no subject was dropped, else None:
    `fit_ml`'s first step). Every subject failing is a `SpecError`."""
    from insilico.errors import SpecError
    fns = _functions(problem, options.name, options.inner_max_iter, options.inner_tol)
    out = fns["value_grad"](jnp.asarray(fns["x0"]), problem.subjects(),
                            jnp.zeros((problem.n_subjects, problem.n_eta)))
    _, g, _, codes, o, _ = out
    ok = np.isfinite(np.asarray(o)) & np.all(np.isfinite(np.asarray(g)), axis=1)
    if ok.all():
        return problem, out
    if not ok.any():
        raise SpecError("data", "no subject can be evaluated at the initial estimates (every solve failed); "
                                "check the initial values and the units of the data")
    excluded = dict(problem.excluded)
    for i in np.flatnonzero(~ok):
        excluded[problem.ids[i]] = ("the model could not be solved at the initial estimates" if int(codes[i]) == 2
                                    else "objective not finite at the initial estimates")
    return problem.select(ok, excluded), None
