"""Built-in pharmacodynamic models and their composition with PK models.

PD models are driven by a concentration ``C`` (mg/L): the central concentration of the PK
model, or the effect-site concentration ``Ce`` when an effect compartment is added
(dCe/dt = KE0 · (C − Ce), Sheiner et al. 1979).

Direct models (output ``effect``, in the units of E0):
  * ``linear``:        E = E0 + SLOPE · C
  * ``emax``:          E = E0 + EMAX · C / (EC50 + C)
  * ``sigmoid_emax``:  E = E0 + EMAX · C^GAMMA / (EC50^GAMMA + C^GAMMA)  (Hill)

Indirect response models (Dayneka, Garg & Jusko 1993; output ``response``, R(0) = KIN/KOUT):
  * ``irm1``: dR/dt = KIN · (1 − IMAX·C/(IC50 + C)) − KOUT · R   (inhibition of production)
  * ``irm2``: dR/dt = KIN − KOUT · (1 − IMAX·C/(IC50 + C)) · R   (inhibition of loss)
  * ``irm3``: dR/dt = KIN · (1 + EMAX·C/(EC50 + C)) − KOUT · R   (stimulation of production)
  * ``irm4``: dR/dt = KIN − KOUT · (1 + EMAX·C/(EC50 + C)) · R   (stimulation of loss)

Oncology (see `insilico.models._oncology`): ``friberg`` / ``friberg_emax`` myelosuppression
(Friberg et al. 2002, output ``ANC``) and ``simeoni`` tumour growth inhibition (Simeoni et al.
2004, output ``TUMOR``).

The driving concentration is the PK model's ``conc`` output, so target-mediated (TMDD) models,
whose ``conc`` is the free drug, drive PD blocks too.
"""
from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from insilico.errors import SpecError
from insilico.models._base import Model, Output, Parameter, PDModel
from insilico.models._oncology import friberg, simeoni

_E0 = Parameter.standard("E0", "real")
_EMAX = Parameter.standard("EMAX", "real")
_EC50 = Parameter.standard("EC50")


def _drug_effect_stim(p, c):
    return p["EMAX"] * c / (p["EC50"] + c)


def _drug_effect_inh(p, c):
    return p["IMAX"] * c / (p["IC50"] + c)


def _direct(name, params, fn, desc):
    return PDModel(name, (), params, (("effect", "1", "drug effect", lambda y, p, c: fn(p, c)),),
                   description=desc)


def _irm(kind: int) -> PDModel:
    inhib = kind in (1, 2)
    params = [Parameter.standard("KIN"), Parameter.standard("KOUT")]
    if inhib:
        params += [Parameter.standard("IMAX"), Parameter.standard("IC50")]
        drug = _drug_effect_inh
    else:
        params += [Parameter.standard("EMAX"), _EC50]
        drug = _drug_effect_stim

    def rhs(t, y, p, c):
        r = y[0]
        d = drug(p, c)
        if kind == 1:
            return jnp.stack([p["KIN"] * (1.0 - d) - p["KOUT"] * r])
        if kind == 2:
            return jnp.stack([p["KIN"] - p["KOUT"] * (1.0 - d) * r])
        if kind == 3:
            return jnp.stack([p["KIN"] * (1.0 + d) - p["KOUT"] * r])
        return jnp.stack([p["KIN"] - p["KOUT"] * (1.0 + d) * r])

    return PDModel(
        f"irm{kind}", ("response",), tuple(params),
        (("response", "1", "indirect response", lambda y, p, c: y[..., 0]),),
        rhs=rhs, initial_state=lambda p: jnp.stack([p["KIN"] / p["KOUT"]]),
        description=f"indirect response type {'I II III IV'.split()[kind - 1]}",
    )


PD_MODELS: dict[str, Callable[[], PDModel]] = {
    "linear": lambda: _direct("linear", (_E0, Parameter.standard("SLOPE", "real")),
                              lambda p, c: p["E0"] + p["SLOPE"] * c, "direct linear effect"),
    "emax": lambda: _direct("emax", (_E0, _EMAX, _EC50),
                            lambda p, c: p["E0"] + _drug_effect_stim(p, c), "direct Emax effect"),
    "sigmoid_emax": lambda: _direct(
        "sigmoid_emax", (_E0, _EMAX, _EC50, Parameter.standard("GAMMA")),
        lambda p, c: p["E0"] + p["EMAX"] * c ** p["GAMMA"] / (p["EC50"] ** p["GAMMA"] + c ** p["GAMMA"]),
        "direct sigmoid Emax (Hill) effect"),
    **{f"irm{k}": (lambda k=k: _irm(k)) for k in (1, 2, 3, 4)},
    "friberg": lambda: friberg("linear"),
    "friberg_emax": lambda: friberg("emax"),
    "simeoni": simeoni,
}


def compose(pk: Model, pd: PDModel, effect_compartment: bool = False) -> Model:
    """Compose a PK model with a PD block driven by central or effect-site concentration.

    The central concentration is the PK model's ``conc`` output (mg/L). The result is an
    ordinary `Model`: states = PK states (+ ``effect_site``) + PD states. It stays linear (exact
    path) when the PK model is linear and the PD block has no states.
    """
    if pk.meta.get("kind") not in ("pk", "tmdd"):
        raise SpecError("model", f"{pk.name!r} is not a PK model and cannot drive a PD model")
    pk_names = set(pk.parameter_names)
    extra = [Parameter.standard("KE0")] if effect_compartment else []
    pd_params = [q for q in pd.parameters if q.name not in pk_names]
    params = tuple(pk.parameters) + tuple(extra) + tuple(pd_params)
    n_pk = pk.n_states
    i_c, vname = pk.meta["central"], pk.meta["volume"]
    i_e = n_pk if effect_compartment else None
    n_pd0 = n_pk + (1 if effect_compartment else 0)
    states = pk.states + (("effect_site",) if effect_compartment else ()) + pd.states
    pd_units = pd.state_units or ("1",) * len(pd.states)
    units = pk.state_units + (("mg/L",) if effect_compartment else ()) + tuple(pd_units)
    conc = next(o.fn for o in pk.outputs if o.name == "conc")

    def driver(y, p):
        return y[..., i_e] if effect_compartment else conc(y[..., :n_pk], p)

    def rhs(t, y, p):
        dy_pk = pk.rhs(t, y[:n_pk], p)
        parts = [dy_pk]
        if effect_compartment:
            parts.append(jnp.stack([p["KE0"] * (conc(y[:n_pk], p) - y[i_e])]))
        if pd.states:
            parts.append(pd.rhs(t, y[n_pd0:], p, driver(y, p)))
        return jnp.concatenate(parts)

    def y0(p):
        parts = [pk.y0(p)]
        if effect_compartment:
            parts.append(jnp.zeros(1))
        if pd.states:
            parts.append(jnp.asarray(pd.initial_state(p)) if pd.initial_state else jnp.zeros(len(pd.states)))
        return jnp.concatenate(parts)

    def pad(vec_fn, fill):
        if vec_fn is None:
            return None
        return lambda p: jnp.concatenate([vec_fn(p), jnp.full(len(states) - n_pk, fill)])

    outputs = list(pk.outputs)
    if effect_compartment:
        outputs.append(Output("ce", "mg/L", "effect-site concentration", lambda y, p: y[..., i_e]))
    def pd_output(ofn):
        return lambda y, p: ofn(y[..., n_pd0:], p, driver(y, p))

    for (oname, ounits, olong, ofn) in pd.outputs:
        outputs.append(Output(oname, ounits, olong, pd_output(ofn)))

    system_matrix = eigenvalues = None
    if pk.is_linear and not pd.states:
        def system_matrix(p):
            K = pk.system_matrix(p)
            if not effect_compartment:
                return K
            K = jnp.pad(K, ((0, 1), (0, 1)))
            K = K.at[i_e, i_c].set(p["KE0"] / p[vname])
            return K.at[i_e, i_e].set(-p["KE0"])

        def eigenvalues(p):
            lam = pk.eigenvalues(p)
            return jnp.concatenate([lam, -jnp.atleast_1d(p["KE0"])]) if effect_compartment else lam

    name = pk.name + ("+ke0" if effect_compartment else "") + "+" + pd.name
    return Model(
        name=name, states=states, parameters=params, rhs=rhs, outputs=tuple(outputs),
        dose_compartments=pk.dose_compartments, default_dose_compartment=pk.default_dose_compartment,
        state_units=units, initial_state=y0 if (pd.initial_state or pk.initial_state) else None,
        bioavailability=pad(pk.bioavailability, 1.0), lag=pad(pk.lag, 0.0),
        system_matrix=system_matrix, eigenvalues=eigenvalues,
        description=f"{pk.description}; {'effect compartment; ' if effect_compartment else ''}{pd.description}",
        meta={**pk.meta, "kind": "pkpd"},
    )
