"""Exact solution of linear models: modal superposition propagated event to event.

For ``dy/dt = K y + u(t)`` with distinct eigenvalues ``λ_i`` of ``K``, Sylvester's formula
gives ``exp(K t) = Σ_i e^{λ_i t} P_i`` with ``P_i = Π_{j≠i} (K − λ_j I)/(λ_i − λ_j)``. Hence
``y(t) = Σ_i z_i(t) + c(t)`` where each modal component ``z_i`` (an n-vector) obeys

    z_i(s_k) = e^{λ_i (s_k − s_{k−1})} z_i(s_{k−1}) + u_{i,k}

across the time-sorted dose records ``s_k``: a bolus ``A`` into compartment ``c`` injects
``u_i = A P_i e_c``; a rate step ``R`` injects ``(R/λ_i) P_i e_c`` into ``z_i`` and
``−(R/λ_i) P_i e_c`` into the constant part ``c``. An infusion is an on-step plus an
off-step. An observation at ``t`` after record ``k`` is ``Σ_i e^{λ_i (t − s_k)} z_i(s_k) + c_k``.
This is NONMEM's ADVAN1–4/11–12 closed form written generically: the record recurrence uses
``jax.lax.associative_scan`` and observations are independent of each other, so the work is
O((records + observations) × states²) per subject with no time stepping; it vectorises over
subjects, runs on GPU and is exactly differentiable.

Event codes (``has_ss``; `insilico.engine._records.event_records`, NONMEM Users Guide Part V/VI):
a reset (EVID 3/4, or SS=1 at the dose entry) restarts the recurrence from ``P_i y0`` (the
multiplier of the scan is 0 there) and the constant part from 0. Steady state (SS=1/2 on any
dose, interval ``ii``): the infinitely many earlier doses add
``Σ_{k≥1} e^{λ_i (t−s+k·ii)} = e^{λ_i (t−s)} (g_i − 1)``, ``g_i = 1/(1 − e^{λ_i ii})``, to the
exponential part (past infusion constants cancel pairwise, so each past infusion must end
within one interval). The past doses are visible from the SS dose entry on until the next
reset, including a pre-dose observation at that time, which therefore sees the steady-state
trough; SS=1 replaces the state there, SS=2 adds to it (superposition).

Ordering at equal times: observations come before dose records (pre-dose) unless
``obs_after_dose``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from insilico.engine import _status
from insilico.engine._records import dose_records, event_records, obs_key

# relative eigenvalue gap below which Sylvester's formula loses more than ~5 digits
_MIN_GAP = 1e-5


def _projectors(K, lam):
    n = K.shape[0]
    eye = jnp.eye(n)
    out = []
    for i in range(n):
        P = eye
        for j in range(n):
            if j != i:
                P = P @ ((K - lam[j] * eye) / (lam[i] - lam[j]))
        out.append(P)
    return jnp.stack(out)  # (m, n, n)


def _min_relative_gap(lam):
    n = lam.shape[0]
    if n < 2:
        return jnp.inf
    d = jnp.abs(lam[:, None] - lam[None, :]) / jnp.maximum(jnp.abs(lam[:, None]), jnp.abs(lam[None, :]))
    return jnp.min(d + jnp.eye(n) * jnp.inf)


def _combine(left, right):
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2[..., None] * b1 + b2


def solve_exact(model, p, dose, obs_t, obs_after_dose: bool = False,
                has_infusion: bool = True, has_ss: bool = True):
    """States ``y[T, n]`` and status for one subject (see module docstring)."""
    K = model.system_matrix(p)
    lam = model.eigenvalues(p)
    P = _projectors(K, lam)
    status = jnp.where(_min_relative_gap(lam) < _MIN_GAP, _status.ILL_CONDITIONED, _status.OK)
    if has_ss:
        return _solve_events(model, p, dose, obs_t, obs_after_dose, has_infusion, lam, P), status
    time, amt, rate, cmt, _, _ = dose
    m, n = lam.shape[0], K.shape[0]
    t_r, b_r, dr_r, c_r, _ = dose_records(model, p, time, amt, rate, cmt, has_infusion)

    Pc = jnp.moveaxis(P[:, :, c_r], 2, 0)                 # (R, m, n) = P_i e_{c_r}
    coef = b_r[:, None] + dr_r[:, None] / lam[None, :]    # (R, m) exponential amplitude
    order = jnp.argsort(t_r, stable=True)
    s = jnp.concatenate([jnp.zeros(1), t_r[order]])       # record 0: the initial state at t = 0
    u = jnp.concatenate([(P @ model.y0(p))[None], (coef[..., None] * Pc)[order]])
    w = jnp.concatenate([jnp.zeros((1, m, n)), ((-dr_r[:, None] / lam[None, :])[..., None] * Pc)[order]])

    # modal state just after each record, propagated record to record
    a = jnp.exp(lam[None, :] * jnp.diff(s, prepend=0.0)[:, None])          # (R+1, m)
    _, Z = jax.lax.associative_scan(_combine, (a, u))                        # (R+1, m, n)
    C = jnp.cumsum(w, axis=0)
    # last record applied before each observation (pre-dose at equal times unless obs_after_dose)
    k = jnp.searchsorted(s[1:], obs_t, side="right" if obs_after_dose else "left")
    E = jnp.exp(lam[None, :] * (obs_t - s[k])[:, None])                      # (T, m), exponent <= 0
    y = jnp.einsum("tm,tmn->tn", E, Z[k]) + jnp.sum(C[k], axis=1)
    return y, status


def _solve_events(model, p, dose, obs_t, obs_after_dose, has_infusion, lam, P):
    """States ``y[T, n]`` with event codes: steady states (SS=1/2 on any dose), resets (EVID 3/4);
    see the module docstring and `insilico.engine._records.event_records`."""
    ev = event_records(model, p, dose, has_infusion)
    E, R = dose[0].shape[0], ev.t.shape[0]
    m, n = P.shape[0], P.shape[1]
    Pc = jnp.moveaxis(P[:, :, ev.cmt], 2, 0)                                  # (R, m, n)
    coef = ev.bolus[:, None] + ev.drate[:, None] / lam[None, :]
    order = jnp.lexsort((ev.key, ev.t))
    ts, sets = ev.t[order], ev.sets[order]
    s = jnp.concatenate([jnp.zeros(1), ts])
    Py0 = P @ model.y0(p)
    keep = jnp.concatenate([jnp.ones(1), jnp.where(sets, 0.0, 1.0)])[:, None] * jnp.ones((1, m))
    u = jnp.concatenate([Py0[None], jnp.where(sets[:, None, None], Py0[None], (coef[..., None] * Pc)[order])])
    w = jnp.concatenate([jnp.zeros((1, m, n)), ((-ev.drate[:, None] / lam[None, :])[..., None] * Pc)[order]])
    a = jnp.exp(lam[None, :] * jnp.diff(s, prepend=0.0)[:, None]) * keep
    _, Z = jax.lax.associative_scan(_combine, (a, u))                          # a reset restarts from P y0
    _, C = jax.lax.associative_scan(_combine, (keep, w))
    key_o = obs_key(E, obs_after_dose)
    before = (ts[None, :] < obs_t[:, None]) | ((ts[None, :] == obs_t[:, None]) & (ev.key[order][None, :] < key_o))
    k = jnp.sum(before, axis=1)                                               # records applied before each obs
    y = jnp.einsum("tm,tmn->tn", jnp.exp(lam[None, :] * (obs_t - s[k])[:, None]), Z[k]) + jnp.sum(C[k], axis=1)

    # infinitely many earlier doses of each SS slot: for on/off record r with entry t_r, the past doses
    # add sum_{k>=1} e^{lam (t - t_r + k ii)} = e^{lam (t - t_r)} (g - 1), g = 1/(1 - e^{lam ii}), visible from the
    # slot's entry on while no reset intervened (past infusion constants cancel pairwise: duration <= ii)
    slot = ev.slot
    dose_rec = jnp.arange(R) < R - E
    mode_r = jnp.where(dose_rec, ev.mode[slot], 0)
    dr_on = ev.drate[:E][slot]
    dr_full = jnp.where(dose_rec, jnp.where(jnp.arange(R) < E, dr_on, -dr_on), 0.0)   # off records before the drop
    coef_full = ev.bolus[:, None] + dr_full[:, None] / lam[None, :]
    g = 1.0 / (-jnp.expm1(lam[None, :] * jnp.where(mode_r > 0, ev.ii[slot], 1.0)[:, None]))
    past = jnp.where((mode_r > 0)[:, None], g - 1.0, 0.0) * coef_full                  # (R, m)
    ep_obs = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(sets)])[k]
    ok = ((obs_t[:, None] >= ev.t_on[slot][None, :]) & (ep_obs[:, None] == ev.epoch[:E][slot][None, :])
          & (mode_r > 0)[None, :])
    # masked before the exponential, which would overflow for a record long after the observation
    dt = jnp.where(ok, obs_t[:, None] - ev.t[None, :], 0.0)
    Ep = jnp.where(ok[..., None], jnp.exp(lam[None, None, :] * dt[..., None]), 0.0)
    y = y + jnp.einsum("trm,rm,rmn->tn", Ep, past, Pc)
    too_long = jnp.any((ev.mode > 0) & (ev.dur > ev.ii))   # a modelled SS infusion longer than ii (see check_dose)
    return jnp.where(too_long, jnp.nan, y)
