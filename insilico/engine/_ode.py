"""ODE path: Diffrax integration piecewise between dose events.

Records (dose on/off, see `_records`) and observation times are merged and sorted per
subject; the ODE is integrated with an adaptive solver from each event time to the next, so a
solver never steps over a discontinuity. At a record the bolus is added to the state (an
exact jump) and the rate step to the infusion input; at an observation the state is kept.
Only those states are saved (no dense output, no interpolation). ``throw=False``: failures
become per-subject status codes.

Steady state (SS=1 on the first dose): the pre-dose state is the fixed point of the map
"integrate one dosing interval starting with the dose", iterated to a relative change
< 1e-12 (at most ``ss_max_iter`` intervals), as NONMEM does numerically for general models;
gradients use the implicit function theorem instead of unrolling the iterations.
The state is reset to it when the SS dose enters (dose time + ALAG).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import diffrax
import jax
import jax.numpy as jnp

from insilico.engine import _status
from insilico.engine._records import dose_records

_SOLVERS = {
    "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5, "kvaerno3": diffrax.Kvaerno3,
}


@dataclass(frozen=True)
class SolverOptions:
    """Numerical choices for the ODE path.

    solver : ``tsit5`` (default, explicit), ``dopri5``, ``dopri8``, or a stiff implicit solver
        ``kvaerno3``/``kvaerno5``.
    rtol, atol : PID step-size controller tolerances (atol in state units, mg).
    max_steps : per segment between events; exceeding it gives status ``MAX_STEPS``.
    ss_max_iter : maximum dosing intervals iterated to reach steady state.
    """

    solver: str = "tsit5"
    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 4096
    ss_max_iter: int = 2000

    def __post_init__(self):
        from insilico.errors import SpecError
        if self.solver not in _SOLVERS:
            raise SpecError("solver.solver", f"unknown solver {self.solver!r}; choose from {sorted(_SOLVERS)}")
        for f in ("rtol", "atol"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and v > 0):
                raise SpecError(f"solver.{f}", f"must be > 0, got {v!r}")
        if not (isinstance(self.max_steps, int) and self.max_steps > 0):
            raise SpecError("solver.max_steps", f"must be a positive integer, got {self.max_steps!r}")


def _vector_field(model):
    def vf(t, y, args):
        p, rate = args
        return model.rhs(t, y, p) + rate
    return vf


def _code(result):
    return jnp.where(result == diffrax.RESULTS.successful, _status.OK,
                     jnp.where(result == diffrax.RESULTS.max_steps_reached, _status.MAX_STEPS,
                               _status.SOLVER_FAILED))


def _integrate(model, p, opts, y, rate, t0, t1):
    """Integrate one interval between consecutive events; returns (y(t1), status)."""
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field(model)), _SOLVERS[opts.solver](), t0, t1, dt0=None, y0=y,
        args=(p, rate), saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=opts.rtol, atol=opts.atol),
        max_steps=opts.max_steps, throw=False,
    )
    return sol.ys[-1], _code(sol.result)


def _run_records(model, p, opts, y0, t, bolus, drate, obs_t, obs_after_dose,
                 reset_at=None, y_reset=None):
    """Scan over the merged, time-sorted records and observations.

    Each step integrates from the previous event time to this one, then records the state
    (observation) or applies the record's bolus and rate step. At equal times observations
    come first (pre-dose) unless ``obs_after_dose``. Returns (y at obs, y at the end, status).
    """
    n = y0.shape[0]
    R = t.shape[0]
    T = 0 if obs_t is None else obs_t.shape[0]
    is_reset = jnp.zeros(R, bool) if reset_at is None else jnp.arange(R) == reset_at
    if T:
        times = jnp.concatenate([t, obs_t])
        rank = jnp.concatenate([jnp.full(R, 0 if obs_after_dose else 1), jnp.full(T, 1 if obs_after_dose else 0)])
        order = jnp.lexsort((rank, times))
        zb = jnp.zeros((T, n))
        times, bolus, drate = times[order], jnp.concatenate([bolus, zb])[order], jnp.concatenate([drate, zb])[order]
        is_reset = jnp.concatenate([is_reset, jnp.zeros(T, bool)])[order]
    else:
        order = jnp.argsort(t, stable=True)
        times, bolus, drate, is_reset = t[order], bolus[order], drate[order], is_reset[order]
    prev = jnp.concatenate([jnp.zeros(1), times[:-1]])

    def body(carry, xs):
        y, rate, status = carry
        t0, t1, b, dr, reset = xs
        y, code = _integrate(model, p, opts, y, rate, t0, t1)
        if y_reset is not None:
            y = jnp.where(reset, y_reset, y)
        seen = y  # an observation at t1 sees the state before any record placed after it
        return (y + b, rate + dr, jnp.maximum(status, code)), seen

    (y_end, _, status), ys = jax.lax.scan(
        body, (y0, jnp.zeros(n), jnp.asarray(_status.OK)), (prev, times, bolus, drate, is_reset))
    out = ys[jnp.argsort(order)[R:]] if T else None
    return out, y_end, status


def _one_interval(model, opts, y, theta):
    """State after one dosing interval that starts with the dose entering."""
    p, b0, dr0, dur0, ii0 = theta
    t = jnp.stack([0.0, dur0])
    _, y1, _ = _run_records(model, p, opts, y, t, jnp.stack([b0, jnp.zeros_like(b0)]),
                            jnp.stack([dr0, -dr0]), None, False)
    y1, _ = _integrate(model, p, opts, y1, jnp.zeros_like(y1), dur0, ii0)
    return y1


@functools.lru_cache(maxsize=None)
def _fixed_point_fn(model, opts):
    """Steady state ``y = flow(y)`` by fixed-point iteration, with an implicit-function VJP:
    ``dy*/dθ = (I − ∂flow/∂y)^{-1} ∂flow/∂θ`` (reverse mode only, no unrolled iterations)."""
    flow = functools.partial(_one_interval, model, opts)

    @jax.custom_vjp
    def fixed_point(y0, theta):
        def cond(state):
            k, y, prev = state
            change = jnp.max(jnp.abs(y - prev) / (jnp.abs(y) + opts.atol))
            return (k < opts.ss_max_iter) & ((k == 0) | (change > 1e-12))

        def body(state):
            k, y, _ = state
            return k + 1, flow(y, theta), y

        return jax.lax.while_loop(cond, body, (0, y0, y0))[1]

    def fwd(y0, theta):
        y = fixed_point(y0, theta)
        return y, (y, theta)

    def bwd(res, v):
        y, theta = res
        J = jax.jacrev(lambda yy: flow(yy, theta))(y)
        w = jnp.linalg.solve((jnp.eye(y.shape[0]) - J).T, v)
        _, vjp = jax.vjp(lambda th: flow(y, th), theta)
        return jnp.zeros_like(y), vjp(w)[0]

    fixed_point.defvjp(fwd, bwd)
    return fixed_point


def _steady_state(model, p, opts, y0, b0, dr0, dur0, ii0, active):
    """Pre-dose steady state for a dose (bolus b0, infusion dr0 for dur0) every ii0 h.
    Subjects without an SS dose iterate a dose-free map (converges at once) and keep y0."""
    theta = (p, jnp.where(active, b0, 0.0), jnp.where(active, dr0, 0.0), jnp.where(active, dur0, 0.0),
             jnp.where(active, ii0, 1.0))
    y_ss = _fixed_point_fn(model, opts)(y0, theta)
    resid = _one_interval(model, opts, y_ss, jax.lax.stop_gradient(theta)) - y_ss
    converged = jnp.max(jnp.abs(resid) / (jnp.abs(y_ss) + opts.atol)) < 1e-8
    return y_ss, jnp.where(active & ~converged, _status.MAX_STEPS, _status.OK)


def solve_ode(model, p, dose, obs_t, obs_after_dose: bool = False, opts: SolverOptions = SolverOptions(),
              has_infusion: bool = True, has_ss: bool = True):
    """States ``y[T, n]`` and status for one subject."""
    time, amt, rate, cmt, ss, ii = dose
    n = model.n_states
    t_r, b_r, dr_r, c_r, dur = dose_records(model, p, time, amt, rate, cmt, has_infusion)
    onehot = jax.nn.one_hot(c_r, n, dtype=jnp.float64)
    bolus = onehot * b_r[:, None]
    drate = onehot * dr_r[:, None]
    y0 = model.y0(p)
    if not has_ss:
        out, _, status = _run_records(model, p, opts, y0, t_r, bolus, drate, obs_t, obs_after_dose)
        return out, status
    active = ss[0] > 0
    y_ss, ss_code = _steady_state(model, p, opts, y0, bolus[0], drate[0], dur[0], ii[0], active)
    out, _, status = _run_records(model, p, opts, y0, t_r, bolus, drate, obs_t,
                                  obs_after_dose, reset_at=jnp.where(active, 0, -1), y_reset=y_ss)
    if not obs_after_dose:  # an observation exactly at the SS dose entry sees the SS trough
        out = jnp.where((active & (obs_t == t_r[0]))[:, None], y_ss, out)
    return out, jnp.maximum(status, jnp.where(active, ss_code, _status.OK))
