"""Turn a subject's dose table into input records for the solvers (JAX, traceable).

Each dose becomes an ``on`` record and, when the regimen has infusions, an ``off`` record
(NONMEM PREDPP conventions):

* ``on``  at ``time + ALAG[cmt]``: a bolus of ``F[cmt]·amt`` (0 for an infusion) and a rate
  step ``+rate`` into ``cmt``;
* ``off`` at ``on + F[cmt]·amt/rate``: a rate step ``-rate`` (a no-op for a bolus).

F therefore scales bolus amounts and, for infusions given by rate, the infusion duration.
``has_infusion`` is static: bolus-only regimens skip the off records entirely.
"""
from __future__ import annotations

import jax.numpy as jnp


def dose_records(model, p, time, amt, rate, cmt, has_infusion: bool = True):
    """Return (t, bolus, drate, cmt, dur); on records first (in dose order), then off records."""
    F = model.f_vector(p)[cmt]
    lag = model.lag_vector(p)[cmt]
    t_on = time + lag
    if not has_infusion:
        return t_on, F * amt, jnp.zeros_like(amt), cmt, jnp.zeros_like(amt)
    is_inf = rate > 0
    dur = jnp.where(is_inf, F * amt / jnp.where(is_inf, rate, 1.0), 0.0)
    bolus = jnp.where(is_inf, 0.0, F * amt)
    r = jnp.where(is_inf, rate, 0.0)
    t = jnp.concatenate([t_on, t_on + dur])
    b = jnp.concatenate([bolus, jnp.zeros_like(bolus)])
    dr = jnp.concatenate([r, -r])
    c = jnp.concatenate([cmt, cmt])
    return t, b, dr, c, dur
