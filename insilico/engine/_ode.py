"""ODE path: Diffrax integration piecewise between dose events.

Records (dose on/off, see `_records`) and observation times are merged and sorted per
subject; the ODE is integrated with an adaptive solver from each event time to the next, so a
solver never steps over a discontinuity. At a record the bolus is added to the state (an
exact jump) and the rate step to the infusion input; at an observation the state is kept.
Only those states are saved (no dense output, no interpolation). ``throw=False``: failures
become per-subject status codes.

Steady state (SS=1/2 on any dose; NONMEM Users Guide: the pre-dose state after infinitely many
identical doses ``ii`` apart): the root of ``flow(y) − y``, flow being "dose, then integrate one
interval", found by Newton's method (``optimistix.root_find``), as NONMEM does numerically for
general models; gradients by the implicit function theorem (``optimistix.ImplicitAdjoint``)
instead of unrolling iterations. When the SS dose enters (dose time + ALAG) the state is reset
to it (SS=1) or ``y_ss − y0`` is added (SS=2, superposition: exact for linear models); see
`_steady_state`. EVID 3/4 reset the state to ``y0`` and stop infusions
(`insilico.engine._records.event_records`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import diffrax
import jax
import jax.numpy as jnp
import optimistix as optx

from insilico.engine import _status
from insilico.engine._records import dose_records, event_records, obs_key

_SOLVERS = {
    "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5, "kvaerno3": diffrax.Kvaerno3,
}


DEFAULT_RTOL = 1e-8
"""Default relative tolerance of the ODE path (step-size control and steady-state Newton test)."""
DEFAULT_ATOL = 1e-10
"""Default absolute tolerance of the ODE path, in state units (mg for amounts)."""


@dataclass(frozen=True)
class SolverOptions:
    """Numerical choices for the ODE path.

    solver : ``tsit5`` (default, explicit), ``dopri5``, ``dopri8``, or a stiff implicit solver
        ``kvaerno3``/``kvaerno5``.
    rtol, atol : PID step-size controller tolerances (atol in state units, mg).
        The steady-state Newton iteration stops when ``|flow(y) − y| < atol + rtol·|y|``.
    max_steps : per segment between events; exceeding it gives status ``MAX_STEPS``.
    ss_max_iter : maximum Newton steps for a steady state (SS=1); typically 2–5 are taken.
        Exceeding it gives status ``MAX_STEPS``.
    adjoint : how derivatives pass through the ODE solve. ``reverse`` (default,
        ``diffrax.RecursiveCheckpointAdjoint``): ``jax.grad``/``jax.jacrev``, cheapest for many
        parameters. ``forward`` (``diffrax.ForwardMode``): ``jax.jvp``/``jax.jacfwd`` and so
        ``jax.hessian`` and higher derivatives, cheapest for few parameters (sensitivities,
        the per-subject eta Hessians of estimation and twins). A derivative of the other mode
        raises JAX's error for that adjoint.
    """

    solver: str = "tsit5"
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    max_steps: int = 4096
    ss_max_iter: int = 64
    adjoint: str = "reverse"

    def __post_init__(self):
        from insilico.errors import SpecError
        if self.solver not in _SOLVERS:
            raise SpecError("solver.solver", f"unknown solver {self.solver!r}; choose from {sorted(_SOLVERS)}")
        for f in ("rtol", "atol"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and v > 0):
                raise SpecError(f"solver.{f}", f"must be > 0, got {v!r}")
        if self.adjoint not in ("reverse", "forward"):
            raise SpecError("solver.adjoint", f"must be 'reverse' or 'forward', got {self.adjoint!r}")
        for f in ("max_steps", "ss_max_iter"):
            v = getattr(self, f)
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise SpecError(f"solver.{f}", f"must be a positive integer, got {v!r}")


def _adjoint(opts: SolverOptions):
    return diffrax.ForwardMode() if opts.adjoint == "forward" else diffrax.RecursiveCheckpointAdjoint()


def _vector_field(model):
    def vf(t, y, args):
        p, rate = args
        return model.rhs(t, y, p) + rate
    return vf


def _code(result):
    return jnp.where(result == diffrax.RESULTS.successful, _status.OK,
                     jnp.where(result == diffrax.RESULTS.max_steps_reached, _status.MAX_STEPS,
                               _status.SOLVER_FAILED))


def _integrate(model, p, opts, y, rate, t0, t1, adjoint=diffrax.RecursiveCheckpointAdjoint()):
    """Integrate one interval between consecutive events; returns (y(t1), status)."""
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field(model)), _SOLVERS[opts.solver](), t0, t1, dt0=None, y0=y,
        args=(p, rate), saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=opts.rtol, atol=opts.atol),
        max_steps=opts.max_steps, throw=False, adjoint=adjoint,
    )
    return sol.ys[-1], _code(sol.result)


def _run_records(model, p, opts, y0, t, bolus, drate, obs_t, obs_after_dose,
                 adjoint=diffrax.RecursiveCheckpointAdjoint(), events=None, step=None, seg=None):
    """Scan over the merged, time-sorted records and observations.

    Each step integrates from the previous event time to this one, then records the state
    (observation) or applies the record's bolus and rate step. At equal times observations
    come first (pre-dose) unless ``obs_after_dose``. ``events`` = (key, obs_key, sets, set_val,
    add_val) orders records and observations at equal times by key instead (`_records.event_records`)
    and, where ``sets``, replaces the state by ``set_val`` and stops the infusions, else adds
    ``add_val`` (SS=2). ``step(y, rate, t0, t1, k) -> (y(t1), status)`` with ``seg`` (C,) sorted
    parameter change times (which must be among ``t``) replaces the integration of one interval with
    parameters ``p``: ``k`` is the number of change times ``<= t0``, the parameter segment of the
    interval (`insilico.engine._varying`). Returns (y at obs, y at the end, status).
    """
    n = y0.shape[0]
    R = t.shape[0]
    T = 0 if obs_t is None else obs_t.shape[0]
    if events is None:
        rec_rank, obs_rank = jnp.full(R, 0 if obs_after_dose else 1), 1 if obs_after_dose else 0
        sets, set_val, add_val = jnp.zeros(R, bool), jnp.zeros((R, n)), jnp.zeros((R, n))
    else:
        rec_rank, obs_rank, sets, set_val, add_val = events
    if T:
        times = jnp.concatenate([t, obs_t])
        rank = jnp.concatenate([rec_rank, jnp.full(T, obs_rank)])
        order = jnp.lexsort((rank, times))
        zb = jnp.zeros((T, n))
        times, bolus, drate = times[order], jnp.concatenate([bolus, zb])[order], jnp.concatenate([drate, zb])[order]
        sets = jnp.concatenate([sets, jnp.zeros(T, bool)])[order]
        set_val, add_val = jnp.concatenate([set_val, zb])[order], jnp.concatenate([add_val, zb])[order]
    else:
        order = jnp.lexsort((rec_rank, t))
        times, bolus, drate, sets, set_val, add_val = (a[order] for a in (t, bolus, drate, sets, set_val, add_val))
    prev = jnp.concatenate([jnp.zeros(1), times[:-1]])
    xs = (prev, times, bolus, drate, sets, set_val, add_val)
    if seg is not None:
        xs = xs + (jnp.searchsorted(seg, prev, side="right"),)

    def body(carry, xs):
        y, rate, status = carry
        t0, t1, b, dr, st, sv, av = xs[:7]
        if step is None:
            y, code = _integrate(model, p, opts, y, rate, t0, t1, adjoint)
        else:
            y, code = step(y, rate, t0, t1, xs[7])
        if events is not None:
            y = jnp.where(st, sv, y + av)
            rate = jnp.where(st, 0.0, rate)
        seen = y  # an observation at t1 sees the state before any record placed after it
        return (y + b, rate + dr, jnp.maximum(status, code)), seen

    (y_end, _, status), ys = jax.lax.scan(body, (y0, jnp.zeros(n), jnp.asarray(_status.OK)), xs)
    out = ys[jnp.argsort(order)[R:]] if T else None
    return out, y_end, status


def _one_interval(model, opts, adjoint, y, theta):
    """State at the end of one dosing interval [0, ii] that starts with the dose entering at 0
    (bolus ``b0``, or infusion ``dr0`` for ``dur0`` h), and the worst integration status."""
    p, b0, dr0, dur0, ii0 = theta
    t = jnp.stack([0.0, dur0])
    _, y1, code = _run_records(model, p, opts, y, t, jnp.stack([b0, jnp.zeros_like(b0)]),
                               jnp.stack([dr0, -dr0]), None, False, adjoint=adjoint)
    y1, code1 = _integrate(model, p, opts, y1, jnp.zeros_like(y1), dur0, ii0, adjoint)
    return y1, jnp.maximum(code, code1)


def _ss_residual(model, opts, y, args):
    """Weighted residual ``w · g(y)``, ``g(y) = flow(y; θ) − y``, whose root is the pre-dose steady state.

    Written as the first-order expansion about ``ȳ = stop_gradient(y)``:
    ``g(y) = flow(ȳ; θ) + Φ(ȳ)(y − ȳ) − y`` with ``Φ = ∂flow/∂y`` — equal to ``flow(y) − y`` in
    value and in first derivatives. ``Φ`` comes from forward-mode AD through the interval
    (``diffrax.ForwardMode``) and the θ-dependence from the adjoint ``opts.adjoint`` selects
    (``RecursiveCheckpointAdjoint`` by default). Newton linearises ``g`` in ``y`` (forward mode) and the
    implicit adjoint both materialises and transposes ``∂g/∂y`` (forward and reverse mode); in this
    form ``y`` enters linearly, so every mode works, whereas no diffrax adjoint supports both cheaply
    (``DirectAdjoint`` runs ``max_steps`` steps under ``vmap``). Second derivatives through the
    steady state are therefore not available.

    ``w = atol / (atol + rtol·|ȳ|)`` measures the residual in units of the ODE tolerance, so that
    Newton's absolute test ``|w·g| < atol`` reads ``|g| < atol + rtol·|y|``; a positive diagonal
    factor changes neither the root nor ``dy*/dθ``. Subjects without an SS dose solve
    ``y_init − y = 0`` instead (root ``y_init``).
    """
    theta, y_init, active = args
    sg = jax.lax.stop_gradient
    y_bar, theta_bar = sg(y), sg(theta)
    phi = jax.jacfwd(lambda yy: _one_interval(model, opts, diffrax.ForwardMode(), yy, theta_bar)[0])(y_bar)
    flow, code = _one_interval(model, opts, _adjoint(opts), y_bar, theta)
    g = jnp.where(active, flow + phi @ (y - y_bar) - y, y_init - y)
    w = opts.atol / (opts.atol + opts.rtol * jnp.abs(y_bar))
    return w * g, (jnp.where(active, code, _status.OK), phi)


def _attracting(phi, squarings: int = 40, margin: float = 1e-9):
    """True when the fixed point attracts repeated dosing: spectral radius ``ρ(Φ) < 1 − margin``
    for the one-interval Jacobian ``Φ``, estimated as ``‖Φ^N‖^(1/N)`` with ``N = 2^40 ≈ 1e12``
    (repeated squaring, rescaled at each step against overflow; no eigenvalue routine, so it
    also runs on GPU). ``‖Φ^N‖ ≈ C ρ^N`` so the estimate is off by ``|log C|/N`` (< 1e-10 for any
    reasonable C), well inside the margin; a steady state with ``ρ > 1 − 1e-9`` would take over
    1e9 intervals to approach. A root of ``flow(y) = y`` that repeated doses do not approach is no
    NONMEM steady state: beyond the elimination capacity of a Michaelis–Menten model Newton
    either lands on an unstable negative root (ρ > 1) or runs off to amounts so large that the
    elimination is saturated and the relative test passes (ρ = 1 to machine precision)."""
    log_norm = jnp.zeros(())
    for _ in range(squarings):
        phi = phi @ phi
        s = jnp.max(jnp.abs(phi))
        phi = phi / jnp.where(s > 0, s, 1.0)
        log_norm = 2.0 * log_norm + jnp.log(s)
    return log_norm / 2.0 ** squarings < jnp.log1p(-margin)


def _newton_code(result):
    return jnp.where(result == optx.RESULTS.successful, _status.OK,
                     jnp.where(result == optx.RESULTS.nonlinear_max_steps_reached, _status.MAX_STEPS,
                               _status.SOLVER_FAILED))


def _steady_state(model, p, opts, y0, b0, dr0, dur0, ii0, active):
    """Pre-dose steady state for a dose (bolus b0, infusion dr0 for dur0 h) every ii0 h.

    NONMEM SS=1: the state just before the dose, after infinitely many identical doses ii0 apart,
    i.e. the root of ``g(y) = flow(y) − y`` (flow: dose, then integrate one interval). Found by
    ``optimistix.root_find`` with ``optimistix.Newton`` (at most ``opts.ss_max_iter`` steps) from
    the model's initial state ``y0``, a point from which the interval map is well defined; for
    linear models Newton lands on the root in one step. Gradients: ``optimistix.ImplicitAdjoint``
    (implicit function theorem, ``dy*/dθ = −(∂g/∂y)^{-1} ∂g/∂θ``), no unrolled iterations.
    Non-convergence or an integration failure inside an interval become a status code, never
    an exception (``throw=False``): MAX_STEPS when Newton ran out of steps, else SOLVER_FAILED.
    Subjects without an SS dose (``active`` False) get ``y0`` and status OK.
    """
    theta = (p, jnp.where(active, b0, 0.0), jnp.where(active, dr0, 0.0), jnp.where(active, dur0, 0.0),
             jnp.where(active, ii0, 1.0))
    sol = optx.root_find(functools.partial(_ss_residual, model, opts), optx.Newton(rtol=opts.rtol, atol=opts.atol),
                         y0, (theta, y0, active), has_aux=True, max_steps=opts.ss_max_iter, throw=False)
    code, phi = sol.aux
    code = jnp.maximum(code, _newton_code(sol.result))
    code = jnp.where((code == _status.OK) & ~_attracting(phi), _status.SOLVER_FAILED, code)
    return sol.value, jnp.where(active, code, _status.OK)


def solve_ode(model, p, dose, obs_t, obs_after_dose: bool = False, opts: SolverOptions = SolverOptions(),
              has_infusion: bool = True, has_ss: bool = True):
    """States ``y[T, n]`` and status for one subject."""
    if has_ss:
        return _solve_events(model, p, dose, obs_t, obs_after_dose, opts, has_infusion, has_ss)
    time, amt, rate, cmt, _, _ = dose
    n = model.n_states
    t_r, b_r, dr_r, c_r, _ = dose_records(model, p, time, amt, rate, cmt, has_infusion)
    onehot = jax.nn.one_hot(c_r, n, dtype=jnp.float64)
    bolus = onehot * b_r[:, None]
    drate = onehot * dr_r[:, None]
    out, _, status = _run_records(model, p, opts, model.y0(p), t_r, bolus, drate, obs_t, obs_after_dose,
                                  adjoint=_adjoint(opts))
    return out, status


def _solve_events(model, p, dose, obs_t, obs_after_dose, opts, has_infusion, has_ss=True):
    """States ``y[T, n]`` and status with event codes (SS=1/2 on any dose, EVID 3/4 resets): one
    steady state per SS dose slot (Newton solves mapped over the slots), set (SS=1, reset to ``y0``) or added
    (SS=2: ``y_ss − y0``, superposition) at the slot's event record; `_records.event_records`."""
    ev = event_records(model, p, dose, has_infusion)
    E, n = dose[0].shape[0], model.n_states
    onehot = jax.nn.one_hot(ev.cmt, n, dtype=jnp.float64)
    bolus, drate = onehot * ev.bolus[:, None], onehot * ev.drate[:, None]
    y0 = model.y0(p)
    active = ev.mode > 0
    # steady states only for the first S slots, the last one with an event code in any subject
    # (`insilico.dosing.event_slots`, static); the others have none: y0 and status OK
    S = E if has_ss is True else max(1, min(E, int(has_ss)))
    y_ss, codes = jax.lax.map(lambda x: _steady_state(model, p, opts, y0, *x),
                              (bolus[:S], drate[:S], ev.dur[:S], ev.ii[:S], active[:S]))
    if S < E:
        y_ss = jnp.concatenate([y_ss, jnp.broadcast_to(y0, (E - S, n))])
        codes = jnp.concatenate([codes, jnp.full((E - S,), _status.OK, codes.dtype)])
    slot = ev.slot
    set_val = jnp.where(ev.reset_to_initial[slot][:, None], y0[None], y_ss[slot])
    add_val = jnp.where(ev.adds[:, None], y_ss[slot] - y0[None], 0.0)
    out, _, status = _run_records(model, p, opts, y0, ev.t, bolus, drate, obs_t, obs_after_dose,
                                  adjoint=_adjoint(opts),
                                  events=(ev.key, obs_key(E, obs_after_dose), ev.sets, set_val, add_val))
    too_long = jnp.any(active & (ev.dur > ev.ii))   # a modelled SS infusion longer than ii (see check_dose)
    out = jnp.where(too_long, jnp.nan, out)
    return out, jnp.maximum(status, jnp.max(jnp.where(active, codes, _status.OK)))
