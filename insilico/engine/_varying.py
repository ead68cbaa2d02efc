"""Piecewise-constant individual parameters: time-varying covariates and inter-occasion variability.

One subject's parameters are a schedule: ``change_t`` (C,) non-decreasing change times (h) and
``p = {name: (C+1,) values}``; value ``j`` holds between change ``j−1`` and change ``j`` (value 0
before the first change, value C after the last). Repeated times and repeated values are inert, so
a schedule is padded to a static length with copies of its last change (`ParameterSchedule.padded`).

Where a value applies (``nocb``, static):

* **intervals** between events are integrated with the value of their interior: each change time is
  an interval end (an extra record with nothing given), so no step crosses a change;
* **points** — a dose's F, ALAG and modelled rate/duration at the dose record's time, the initial
  state of a reset (EVID 3/4), the outputs at an observation time (``conc = A/V``) — take the value
  at that time: the value starting there (right-continuous, LOCF) by default, the value ending there
  (left-continuous) with ``nocb``. The data-level conventions that produce these schedules are in
  `insilico.engine.ParameterSchedule.from_records`.

Both paths then run the event-to-event scan of `insilico.engine._ode._run_records` with the
parameters of each interval (ADVAN-style: NONMEM's PREDPP advances the state from one event record to
the next with the parameters of the interval):

* **ODE path:** Diffrax integration of each interval with that interval's parameters; steady states
  (SS=1/2) by Newton with the parameters of the SS dose record (`insilico.engine._ode`).
* **exact path:** the closed-form propagator of a linear system with a constant input ``r``
  (infusions in progress) over ``dt``: ``y(t+dt) = Σ_i P_i (e^{λ_i dt} y + (e^{λ_i dt} − 1)/λ_i · r)``
  (Sylvester projectors ``P_i`` and eigenvalues ``λ_i`` of each segment's system matrix, as in
  `insilico.engine._exact`); the pre-dose steady state of a dose every ``ii`` is
  ``Σ_i P_i f / (1 − e^{λ_i ii})``, ``f`` the state one interval after the dose entering a zero state.
  Unlike the time-invariant exact path this is a sequential scan, O(events × states²) per subject.

Everything stays differentiable in the parameter values (the change times are data).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from insilico.engine import _status
from insilico.engine._exact import _MIN_GAP, _min_relative_gap, _projectors
from insilico.engine._ode import _adjoint, _integrate, _run_records, _steady_state
from insilico.engine._records import dose_records, event_records, obs_key


def segment(change_t, t, nocb: bool = False):
    """Index of the parameter value in effect at the point ``t`` (LOCF: changes ``<= t`` counted;
    ``nocb``: changes ``< t``)."""
    return jnp.searchsorted(change_t, t, side="left" if nocb else "right")


def values_at(p, idx):
    """``{name: p[name][idx]}``: the parameter values of segment(s) ``idx``."""
    return {k: v[idx] for k, v in p.items()}


def propagate(lam, P, y, rate, dt):
    """State after ``dt`` h of ``dy/dt = K y + rate`` from ``y`` (exact; ``K = Σ_i λ_i P_i``)."""
    e = jnp.exp(lam * dt)
    zero = lam == 0.0
    safe = jnp.where(zero, 1.0, lam)
    phi = jnp.where(zero, dt, jnp.expm1(safe * dt) / safe)
    return jnp.einsum("m,mnk,k->n", e, P, y) + jnp.einsum("m,mnk,k->n", phi, P, rate)


def _exact_steady_state(lam, P, b0, dr0, dur0, ii0, active):
    """Pre-dose steady state of a dose (bolus vector ``b0``, infusion ``dr0`` for ``dur0`` h) every
    ``ii0`` h: ``Σ_i P_i f / (1 − e^{λ_i ii})`` (module docstring)."""
    ii = jnp.where(active, ii0, 1.0)
    f = propagate(lam, P, propagate(lam, P, b0, dr0, dur0), jnp.zeros_like(b0), ii - dur0)
    g = 1.0 / (-jnp.expm1(lam * ii))
    return jnp.einsum("m,mnk,k->n", g, P, f)


def _dose_records(model, p_dose, dose, has_infusion):
    """`dose_records` with each dose's own parameter values ``p_dose`` ({name: (E,)})."""
    time, amt, rate, cmt = dose[:4]
    rec = jax.vmap(lambda q, t, a, r, c: dose_records(model, q, t[None], a[None], r[None], c[None], has_infusion))(
        p_dose, time, amt, rate, cmt)
    return tuple(jnp.ravel(a.T) for a in rec[:4]) + (rec[4][:, 0],)


def solve_varying(model, p, change_t, dose, obs_t, obs_after_dose: bool, method: str, opts,
                  has_infusion: bool = True, has_ss=True, nocb: bool = False):
    """States ``y[T, n]`` and status for one subject whose parameters ``p`` ({name: (C+1,)}) change at
    ``change_t`` (C,) (module docstring). Event codes (SS=1/2, EVID 3/4) as in `solve_exact` /
    `solve_ode`, with the parameters in effect at each dose record."""
    time = dose[0]
    E, n, C = time.shape[0], model.n_states, change_t.shape[0]
    p_dose = values_at(p, segment(change_t, time, nocb))
    ev = event_records(model, None, dose, has_infusion, records=_dose_records(model, p_dose, dose, has_infusion))
    onehot = jax.nn.one_hot(ev.cmt, n, dtype=jnp.float64)
    bolus, drate = onehot * ev.bolus[:, None], onehot * ev.drate[:, None]
    y0 = model.y0(values_at(p, segment(change_t, jnp.zeros(()), nocb)))
    y0_slot = jax.vmap(model.y0)(p_dose)
    active = ev.mode > 0
    b_on, dr_on = bolus[:E], drate[:E]
    status = jnp.asarray(_status.OK)
    if method == "exact":
        segs = jax.vmap(lambda q: (model.eigenvalues(q), model.system_matrix(q)))(p)
        lam = segs[0]
        P = jax.vmap(_projectors)(segs[1], lam)
        gap = jnp.min(jax.vmap(_min_relative_gap)(lam))
        status = jnp.where(gap < _MIN_GAP, _status.ILL_CONDITIONED, _status.OK)
        k_dose = segment(change_t, time, nocb)
        y_ss = jax.vmap(_exact_steady_state)(lam[k_dose], P[k_dose], b_on, dr_on, ev.dur, ev.ii, active)

        def step(y, rate, t0, t1, k):
            # an empty interval (inert padding slots, repeated change times) is an exact identity:
            # Σ P_i y equals y only to rounding, which would make results depend on the padding
            return jnp.where(t1 > t0, propagate(lam[k], P[k], y, rate, t1 - t0), y), jnp.asarray(_status.OK)
    else:
        adjoint = _adjoint(opts)
        S = 0 if not has_ss else (E if has_ss is True else max(1, min(E, int(has_ss))))
        if S:
            y_ss, codes = jax.lax.map(lambda x: _steady_state(model, x[0], opts, *x[1:]),
                                      (values_at(p_dose, slice(0, S)), y0_slot[:S], b_on[:S], dr_on[:S], ev.dur[:S],
                                       ev.ii[:S], active[:S]))
            status = jnp.max(jnp.where(active[:S], codes, _status.OK))
            y_ss = jnp.concatenate([y_ss, y0_slot[S:]])
        else:
            y_ss = y0_slot

        def step(y, rate, t0, t1, k):
            return _integrate(model, values_at(p, k), opts, y, rate, t0, t1, adjoint)
    slot = ev.slot
    set_val = jnp.where(ev.reset_to_initial[slot][:, None], y0_slot[slot], y_ss[slot])
    add_val = jnp.where(ev.adds[:, None], y_ss[slot] - y0_slot[slot], 0.0)
    zc = jnp.zeros((C, n))
    out, _, run_status = _run_records(
        model, None, opts, y0, jnp.concatenate([ev.t, change_t]), jnp.concatenate([bolus, zc]),
        jnp.concatenate([drate, zc]), obs_t, obs_after_dose,
        events=(jnp.concatenate([ev.key, jnp.zeros(C, ev.key.dtype)]), obs_key(E, obs_after_dose),
                jnp.concatenate([ev.sets, jnp.zeros(C, bool)]), jnp.concatenate([set_val, zc]),
                jnp.concatenate([add_val, zc])),
        step=step, seg=change_t)
    too_long = jnp.any(active & (ev.dur > ev.ii))   # a modelled SS infusion longer than ii (see check_dose)
    return jnp.where(too_long, jnp.nan, out), jnp.maximum(status, run_status)


def outputs_varying(model, y, p, change_t, obs_t, nocb: bool = False):
    """Model outputs at ``obs_t`` (T,) from states ``y`` (T, n), each with the parameter values in effect
    at its time."""
    return jax.vmap(model.evaluate_outputs)(y, values_at(p, segment(change_t, obs_t, nocb)))
