"""Parent–metabolite models: a metabolite formed from the elimination of any parent PK model.

``add_metabolite(pk, n_cmt)`` (library names ``<parent>+met1`` and ``<parent>+met2``, e.g.
``2cmt_oral+met1``, ``1cmt_iv_mm+met2``) appends the metabolite's states to the parent's. A
fraction FM of everything the parent eliminates (linear and Michaelis–Menten: the parent's
elimination rate is ``−Σ dy/dt`` over its states, whose only loss is elimination) enters the
metabolite's central compartment::

    dM/dt  = FM · E_parent(t) − CLM · M/VM − QM · (M/VM − M2/VM2)
    dM2/dt = QM · (M/VM − M2/VM2)                                    (met2 only)
    conc_met = MWR · M / VM

Molar-mass convention: metabolite amounts M, M2 (states ``metabolite``, ``metabolite_periph``)
are in parent-mass equivalents (mg of parent converted), so FM is a molar fraction and mass
balance holds in parent units. ``conc_met`` is in mg/L of metabolite: the parent-equivalent
concentration times MWR, the metabolite-to-parent molar mass ratio (default 1, i.e. parent
equivalents). Parameters: FM (0..1), CLM (L/h), VM (L), and for 2 compartments QM (L/h), VM2 (L).

The parent's ``conc`` output stays the parent concentration (it drives any PD block composed
after, ``2cmt_oral+met1+emax``). A linear parent gives a linear model (exact path): the
metabolite block is driven by the parent's elimination row and does not feed back, so the
eigenvalues are the parent's and the metabolite disposition's.
"""
from __future__ import annotations

import jax.numpy as jnp

from insilico.errors import SpecError
from insilico.models._base import Model, Output, Parameter
from insilico.models._pk import _disposition_eigenvalues

_MET_STATES = {1: ("metabolite",), 2: ("metabolite", "metabolite_periph")}
_MET_PARAMS = {1: ("CLM", "VM"), 2: ("CLM", "VM", "QM", "VM2")}


def _metabolite_block(n_cmt: int, p):
    """The metabolite disposition matrix (1/h) over its states (amounts)."""
    kel = p["CLM"] / p["VM"]
    if n_cmt == 1:
        return jnp.reshape(-kel, (1, 1))
    k12, k21 = p["QM"] / p["VM"], p["QM"] / p["VM2"]
    return jnp.stack([jnp.stack([-kel - k12, k21]), jnp.stack([k12, -k21])])


def add_metabolite(pk: Model, n_cmt: int = 1) -> Model:
    """``pk`` (a parent PK model of the library) plus a metabolite with ``n_cmt`` (1 or 2)
    disposition compartments; output ``conc_met`` (mg/L)."""
    if n_cmt not in _MET_STATES:
        raise ValueError(f"metabolite compartments must be 1 or 2, got {n_cmt}")
    if pk.meta.get("kind") != "pk" or pk.meta.get("metabolite"):
        raise SpecError("model", f"{pk.name!r} is not a parent PK model; a metabolite (+met1, +met2) follows a "
                                 "compartmental PK model such as 2cmt_oral")
    n = pk.n_states
    met = _MET_STATES[n_cmt]
    params = (tuple(pk.parameters) + (Parameter.standard("FM", "fraction"),)
              + tuple(Parameter.standard(k) for k in _MET_PARAMS[n_cmt])
              + (Parameter.standard("MWR", "positive", 1.0),))

    def rhs(t, y, p):
        dy = pk.rhs(t, y[:n], p)
        formed = -p["FM"] * jnp.sum(dy)
        dm = _metabolite_block(n_cmt, p) @ y[n:]
        return jnp.concatenate([dy, dm.at[0].add(formed)])

    def conc_met(y, p):
        return p["MWR"] * y[..., n] / p["VM"]

    def y0(p):
        return jnp.concatenate([pk.y0(p), jnp.zeros(n_cmt)])

    def pad(vec_fn, fill):
        return None if vec_fn is None else (lambda p: jnp.concatenate([vec_fn(p), jnp.full(n_cmt, fill)]))

    system_matrix = eigenvalues = None
    if pk.is_linear:
        def system_matrix(p):
            K = pk.system_matrix(p)
            K = jnp.pad(K, ((0, n_cmt), (0, n_cmt)))
            K = K.at[n, :n].set(-p["FM"] * jnp.sum(K[:n, :n], axis=0))
            return K.at[n:, n:].set(_metabolite_block(n_cmt, p))

        def eigenvalues(p):
            q = {"CL": p["CLM"], "V": p["VM"], "V1": p["VM"]}
            if n_cmt == 2:
                q.update(Q=p["QM"], V2=p["VM2"])
            return jnp.concatenate([pk.eigenvalues(p), _disposition_eigenvalues(n_cmt, q)])

    return Model(
        name=f"{pk.name}+met{n_cmt}", states=pk.states + met, parameters=params, rhs=rhs,
        outputs=tuple(pk.outputs) + (Output("conc_met", "mg/L", "metabolite concentration", conc_met),),
        dose_compartments=pk.dose_compartments, default_dose_compartment=pk.default_dose_compartment,
        state_units=pk.state_units + ("mg",) * n_cmt, initial_state=y0 if pk.initial_state else None,
        bioavailability=pad(pk.bioavailability, 1.0), lag=pad(pk.lag, 0.0),
        system_matrix=system_matrix, eigenvalues=eigenvalues,
        description=f"{pk.description}; metabolite ({n_cmt}-compartment, formation fraction FM)",
        meta={**pk.meta, "metabolite": True},
    )
