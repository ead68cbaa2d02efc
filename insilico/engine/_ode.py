"""ODE path: Diffrax integration piecewise between dose events.

Records (dose on/off, see `_records`) are sorted per subject; the time axis is cut into
segments at every record time. At the start of a segment the record's bolus is added to the
state (an exact jump) and its rate step to the infusion input, then the ODE is integrated
across the segment with an adaptive solver — a solver never steps over a discontinuity.
Observations are saved with ``SaveAt(ts=...)`` inside the segment that owns them; nothing else
is saved (no dense output). ``throw=False``: failures become per-subject status codes.

Steady state (SS=1 on the first dose): the pre-dose state is the fixed point of the map
"integrate one dosing interval starting with the dose", iterated to a relative change
< 1e-12 (at most ``ss_max_iter`` intervals), as NONMEM does numerically for general models.
The state is reset to it when the SS dose enters (dose time + ALAG).
"""
from __future__ import annotations

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


def _integrate(model, p, opts, y, rate, t0, t1, ts):
    """Integrate one segment; returns (y at ts, y at t1, status)."""
    solver = _SOLVERS[opts.solver]()
    saveat = diffrax.SaveAt(ts=ts, t1=True) if ts is not None else diffrax.SaveAt(t1=True)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field(model)), solver, t0, t1, dt0=None, y0=y, args=(p, rate),
        saveat=saveat, stepsize_controller=diffrax.PIDController(rtol=opts.rtol, atol=opts.atol),
        max_steps=opts.max_steps, throw=False,
    )
    return (sol.ys[:-1] if ts is not None else None), sol.ys[-1], _code(sol.result)


def _run_records(model, p, opts, y0, t, bolus, drate, t_end, obs_t, obs_after_dose,
                 reset_at=None, y_reset=None):
    """Scan over segments cut at sorted record times. Returns (y at obs, y end, status)."""
    n = y0.shape[0]
    order = jnp.argsort(t, stable=True)
    t, bolus, drate = t[order], bolus[order], drate[order]
    seg_t0 = jnp.concatenate([jnp.zeros(1), t])
    seg_t1 = jnp.concatenate([t, jnp.atleast_1d(t_end)])
    seg_b = jnp.concatenate([jnp.zeros((1, n)), bolus])
    seg_r = jnp.concatenate([jnp.zeros((1, n)), drate])
    is_reset = (jnp.zeros(seg_t0.shape[0], bool) if reset_at is None
                else jnp.concatenate([jnp.zeros(1, bool), order == reset_at]))
    n_seg = seg_t0.shape[0]
    is_last = jnp.arange(n_seg) == n_seg - 1
    is_first = jnp.arange(n_seg) == 0
    out0 = None if obs_t is None else jnp.broadcast_to(y0, (obs_t.shape[0], n))

    def body(carry, xs):
        y, rate, out, status = carry
        t0, t1, b, dr, reset, last, first = xs
        if y_reset is not None:
            y = jnp.where(reset, y_reset, y)
        y = y + b
        rate = rate + dr
        t1 = jnp.maximum(t1, t0)
        ts = None if obs_t is None else jnp.clip(obs_t, t0, t1)
        ys, y1, code = _integrate(model, p, opts, y, rate, t0, t1, ts)
        if obs_t is not None:
            if obs_after_dose:
                mine = (obs_t >= t0) & ((obs_t < t1) | last)
            else:
                mine = ((obs_t > t0) | first) & (obs_t <= t1)
            out = jnp.where(mine[:, None], ys, out)
        return (y1, rate, out, jnp.maximum(status, code)), None

    init = (y0, jnp.zeros(n), out0, jnp.asarray(_status.OK))
    (y_end, _, out, status), _ = jax.lax.scan(
        body, init, (seg_t0, seg_t1, seg_b, seg_r, is_reset, is_last, is_first))
    return out, y_end, status


def _steady_state(model, p, opts, y0, b0, dr0, dur0, ii0, active):
    """Pre-dose steady state for a dose (bolus b0, infusion dr0 for dur0) every ii0 h."""
    t = jnp.stack([0.0, dur0])
    bolus = jnp.stack([b0, jnp.zeros_like(b0)])
    drate = jnp.stack([dr0, -dr0])

    def flow(y):
        _, y1, code = _run_records(model, p, opts, y, t, bolus, drate, ii0, None, False)
        return y1, code

    def cond(state):
        k, y, prev, code = state
        change = jnp.max(jnp.abs(y - prev) / (jnp.abs(y) + opts.atol))
        return active & (k < opts.ss_max_iter) & ((k == 0) | (change > 1e-12)) & (code == 0)

    def body(state):
        k, y, _, code = state
        y1, c = flow(y)
        return k + 1, y1, y, jnp.maximum(code, c)

    k, y, _, code = jax.lax.while_loop(cond, body, (0, y0, y0, jnp.asarray(_status.OK)))
    code = jnp.where(active & (k >= opts.ss_max_iter), _status.MAX_STEPS, code)
    return y, code


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
    t_end = jnp.maximum(obs_t[-1], jnp.max(t_r))
    if not has_ss:
        out, _, status = _run_records(model, p, opts, y0, t_r, bolus, drate, t_end, obs_t, obs_after_dose)
        return out, status
    active = ss[0] > 0
    y_ss, ss_code = _steady_state(model, p, opts, y0, bolus[0], drate[0], dur[0], ii[0], active)
    out, _, status = _run_records(model, p, opts, y0, t_r, bolus, drate, t_end, obs_t,
                                  obs_after_dose, reset_at=jnp.where(active, 0, -1), y_reset=y_ss)
    if not obs_after_dose:  # an observation exactly at the SS dose entry sees the SS trough
        out = jnp.where((active & (obs_t == t_r[0]))[:, None], y_ss, out)
    return out, jnp.maximum(status, jnp.where(active, ss_code, _status.OK))
