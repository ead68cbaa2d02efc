"""Turn a subject's dose table into input records for the solvers (JAX, traceable).

Each dose becomes an ``on`` record and, when the regimen has infusions, an ``off`` record
(NONMEM PREDPP conventions):

* ``on``  at ``time + ALAG[cmt]``: a bolus of ``F[cmt]·amt`` (0 for an infusion) and a rate
  step ``+rate`` into ``cmt``;
* ``off`` at ``on + duration``: a rate step ``-rate`` (a no-op for a bolus).

Infusion rate and duration (NONMEM Users Guide Part V, "Infusions"; Part VI, PREDPP): a rate
given in the data (RATE > 0) lasts ``F·amt/rate`` h, so F scales the duration; RATE = −1 takes the
rate from the model parameter ``R<n>`` (duration ``F·amt/R<n>``); RATE = −2 takes the duration from
``D<n>`` (rate ``F·amt/D<n>``, so F scales the rate); ``n`` is the NONMEM number (1-based state
index) of the dosed compartment. A modelled rate or duration whose parameter the model lacks gives
NaN (status NONFINITE), never a silent bolus. ``has_infusion`` is static: bolus-only regimens skip
the off records entirely.

`event_records` adds one ``event`` record per dose slot for the event codes of the dose table's
``ss`` column (`insilico.dosing.DoseTable`): NONMEM SS=1 resets the system to the steady state
and SS=2 adds the steady state to the current state, both when the dose enters (dose time +
ALAG, before observations at that time, which therefore see the steady-state trough); EVID 3/4
resets to the model's initial state at the record's time (unlagged), before the dose. A reset also
stops infusions in progress (their off records are dropped).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from insilico.dosing import DoseTable


def _modelled(model, p, letter: str):
    """Per-state vector of the parameters ``<letter>1..<letter>n`` (NaN where the model has none)."""
    return jnp.stack([jnp.asarray(p[f"{letter}{i + 1}"], dtype=jnp.float64) if f"{letter}{i + 1}" in p
                      else jnp.asarray(jnp.nan) for i in range(model.n_states)])


def infusion(model, p, amt, rate, cmt):
    """Per dose: (F·amt in mg, infusion rate in mg/h (0 for a bolus), duration in h), resolving
    RATE = −1 / −2 from the parameters ``R<n>`` / ``D<n>`` (module docstring)."""
    famt = model.f_vector(p)[cmt] * amt
    by_r, by_d = rate == -1.0, rate == -2.0
    r_par = jnp.where(by_r, _modelled(model, p, "R")[cmt], 1.0)
    d_par = jnp.where(by_d, _modelled(model, p, "D")[cmt], 1.0)
    r = jnp.where(by_r, r_par, jnp.where(by_d, famt / d_par, jnp.maximum(rate, 0.0)))
    is_inf = r != 0.0
    dur = jnp.where(by_d, d_par, jnp.where(is_inf, famt / jnp.where(is_inf, r, 1.0), 0.0))
    return famt, r, dur


def dose_records(model, p, time, amt, rate, cmt, has_infusion: bool = True):
    """Return (t, bolus, drate, cmt, dur); on records first (in dose order), then off records."""
    lag = model.lag_vector(p)[cmt]
    t_on = time + lag
    if not has_infusion:
        famt = model.f_vector(p)[cmt] * amt
        return t_on, jnp.where(rate < 0, jnp.nan, famt), jnp.zeros_like(amt), cmt, jnp.zeros_like(amt)
    famt, r, dur = infusion(model, p, amt, rate, cmt)
    bolus = jnp.where(r != 0.0, 0.0, famt)
    t = jnp.concatenate([t_on, t_on + dur])
    b = jnp.concatenate([bolus, jnp.zeros_like(bolus)])
    dr = jnp.concatenate([r, -r])
    c = jnp.concatenate([cmt, cmt])
    return t, b, dr, c, dur


class Events(NamedTuple):
    """Records of one subject with event codes (E dose slots, R records: on, [off], event).

    ``t, bolus, drate, cmt`` (R,) as in `dose_records`, the off records of infusions stopped by a
    reset already dropped; ``key`` (R,) orders records at equal times (`OBS_BEFORE`/`OBS_AFTER`
    place observations among them); ``sets`` (R,) True where the state is replaced (a reset, or
    SS=1); ``adds`` (R,) True where the steady state is added (SS=2); ``epoch`` (R,) the number of
    replacing records up to and including each record in time order; ``slot`` (R,) the dose
    slot; per slot (E,): ``mode`` (SS value), ``t_on`` (entry time), ``dur`` (h), ``ii`` (h),
    ``reset_to`` (bool: the event record sets the initial state rather than the steady state).
    """

    t: jnp.ndarray
    bolus: jnp.ndarray
    drate: jnp.ndarray
    cmt: jnp.ndarray
    key: jnp.ndarray
    sets: jnp.ndarray
    adds: jnp.ndarray
    epoch: jnp.ndarray
    slot: jnp.ndarray
    mode: jnp.ndarray
    t_on: jnp.ndarray
    dur: jnp.ndarray
    ii: jnp.ndarray
    reset_to_initial: jnp.ndarray


def obs_key(n_slots: int, obs_after_dose: bool) -> int:
    """Ordering key of an observation among records at the same time (see `event_records`)."""
    return 5 * n_slots if obs_after_dose else n_slots


def event_records(model, p, dose, has_infusion: bool = True, records=None) -> Events:
    """All records of one subject with event codes (module docstring). Records at equal times are
    ordered by ``key``: steady-state event records (0..E−1), then pre-dose observations
    (`obs_key`, E), then in data order each slot's reset (EVID 3/4) and on record (2E..4E−1), then
    off records (4E..5E−1), then post-dose observations (5E). ``records``: the `dose_records` of
    ``dose`` when already computed (with parameters that vary by dose, `insilico.engine._varying`);
    ``p`` is then unused."""
    time, amt, rate, cmt, code, ii = dose
    E = time.shape[0]
    t_r, b_r, dr_r, c_r, dur = records if records is not None else dose_records(model, p, time, amt, rate, cmt,
                                                                                has_infusion)
    t_on = t_r[:E]
    mode = code & DoseTable.SS_MASK
    reset = (code & DoseTable.RESET) > 0
    to_initial = reset & (mode == 0)
    sets = (mode == 1) | reset                    # EVID 4 with SS=2: reset then add = SS=1
    adds = (mode == 2) & ~reset
    j = jnp.arange(E)
    t_ev = jnp.where(to_initial, time, t_on)
    key_ev = jnp.where(mode > 0, j, 2 * E + 2 * j)
    n_dose = t_r.shape[0]
    key_dose = jnp.concatenate([2 * E + 2 * j + 1, 4 * E + j])[:n_dose]
    t = jnp.concatenate([t_r, t_ev])
    key = jnp.concatenate([key_dose, key_ev])
    set_r = jnp.concatenate([jnp.zeros(n_dose, bool), sets])
    order = jnp.lexsort((key, t))
    epoch = jnp.zeros(t.shape[0], jnp.int32).at[order].set(jnp.cumsum(set_r[order]).astype(jnp.int32))
    drate = jnp.concatenate([dr_r, jnp.zeros(E)])
    if has_infusion:   # an infusion stopped by a reset: its off record is dropped
        stopped = epoch[E:2 * E] != epoch[:E]
        drate = drate.at[E:2 * E].set(jnp.where(stopped, 0.0, drate[E:2 * E]))
    return Events(t=t, bolus=jnp.concatenate([b_r, jnp.zeros(E)]), drate=drate,
                  cmt=jnp.concatenate([c_r, cmt]), key=key, sets=set_r,
                  adds=jnp.concatenate([jnp.zeros(n_dose, bool), adds]), epoch=epoch,
                  slot=jnp.concatenate([j, j, j])[:t.shape[0]], mode=mode, t_on=t_on, dur=dur, ii=ii,
                  reset_to_initial=to_initial)
