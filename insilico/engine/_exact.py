"""Exact solution of linear models by superposition of modal responses.

For ``dy/dt = K y + u(t)`` with distinct eigenvalues ``λ_i`` of ``K``, Sylvester's formula
gives ``exp(K t) = Σ_i exp(λ_i t) P_i`` with ``P_i = Π_{j≠i} (K − λ_j I)/(λ_i − λ_j)``.
A bolus ``A`` into compartment ``c`` at ``s`` then contributes ``A Σ_i e^{λ_i (t−s)} P_i e_c``
and a rate step ``R`` at ``s`` contributes ``R Σ_i (e^{λ_i (t−s)} − 1)/λ_i P_i e_c`` for
``t ≥ s``; an infusion is an on-step plus an off-step. This is the closed-form approach of
NONMEM's ADVAN1–4/11–12 written generically, with no time stepping and no sequential loop,
so it vectorises over observations, doses and subjects and is exactly differentiable.

Steady state (SS=1 on the first dose, interval ``ii``): the infinitely many earlier doses
add the geometric series ``Σ_{k≥1} e^{λ_i (t−s+k·ii)} = e^{λ_i (t−s)} (g_i − 1)`` with
``g_i = 1/(1 − e^{λ_i ii})``; their infusion constants cancel pairwise (each past infusion
must end within one interval). Cost is O(observations × doses × states) per subject.
"""
from __future__ import annotations

import jax.numpy as jnp

from insilico.engine import _status
from insilico.engine._records import dose_records

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
    return jnp.stack(out)  # (n_eig, n, n)


def _min_relative_gap(lam):
    n = lam.shape[0]
    if n < 2:
        return jnp.inf
    d = jnp.abs(lam[:, None] - lam[None, :]) / jnp.maximum(jnp.abs(lam[:, None]), jnp.abs(lam[None, :]))
    return jnp.min(d + jnp.eye(n) * jnp.inf)


def solve_exact(model, p, dose, obs_t, obs_after_dose: bool = False):
    """States ``y[T, n]`` and status for one subject (see module docstring)."""
    time, amt, rate, cmt, ss, ii = dose
    K = model.system_matrix(p)
    lam = model.eigenvalues(p)
    P = _projectors(K, lam)
    t_r, b_r, dr_r, c_r, _ = dose_records(model, p, time, amt, rate, cmt)
    ss_r = jnp.concatenate([ss, ss]) > 0
    ii_r = jnp.concatenate([ii, ii])

    dt = obs_t[:, None] - t_r[None, :]                       # (T, R)
    started = dt >= 0
    current = (dt > 0) if not obs_after_dose else started    # obs at a dose time: pre-dose
    E = jnp.exp(lam[None, None, :] * jnp.where(started, dt, 0.0)[..., None])   # (T, R, m)
    coef = b_r[:, None] + dr_r[:, None] / lam[None, :]       # (R, m)
    const = dr_r[:, None] / lam[None, :]
    g = 1.0 / (-jnp.expm1(lam[None, :] * jnp.where(ss_r, ii_r, 1.0)[:, None]))
    past = jnp.where(ss_r[:, None], g - 1.0, 0.0)            # (R, m)
    term = (current[..., None] * (coef * E - const)
            + started[..., None] * (past * coef) * E)        # (T, R, m)
    Pcol = jnp.moveaxis(P[:, :, c_r], 2, 0)                  # (R, m, n): P_i[:, c_r]
    y = jnp.einsum("trm,rmn->tn", term, Pcol)
    if model.initial_state is not None:
        y0 = model.y0(p)
        y = y + jnp.einsum("tm,mn->tn", jnp.exp(lam[None, :] * obs_t[:, None]), P @ y0)
    status = jnp.where(_min_relative_gap(lam) < _MIN_GAP, _status.ILL_CONDITIONED, _status.OK)
    return y, status
