"""Drug–drug interaction (DDI) models: a victim drug and a perpetrator drug in one model, and the
static mechanistic AUC-ratio equation of the FDA in-vitro DDI guidance.

Composition
-----------
``ddi_model(victim, perpetrator, mechanisms)`` (library names
``VICTIM+ddi_<mechanisms>(PERPETRATOR)``, e.g. ``1cmt_oral+ddi_competitive(2cmt_oral)``,
``2cmt_oral+ddi_mbi(1cmt_oral)``, ``2cmt_oral+ddi_competitive_mbi_induction(1cmt_iv)``; mechanisms
joined by ``_`` in any order) puts two PK models of the library side by side:

* **states** ``victim.<state>`` and ``perp.<state>`` (e.g. ``victim.depot``, ``victim.central``,
  ``perp.depot``), then ``enzyme`` when a mechanism changes the amount of enzyme. A regimen doses
  each drug by compartment name (``Dose(amt=100, cmt="perp.depot")``); the default dose compartment
  is the victim's;
* **parameters**: the victim's under their standard names (``CL``, ``V1``, ``KA`` …, so a cohort
  drawn for the victim model fits it unchanged), the perpetrator's prefixed with ``PERP_``
  (``PERP_CL``, ``PERP_V``, ``PERP_KA`` …; a parameter name stays an identifier for cohort
  expressions and dotted ``--set`` overrides), then the interaction parameters below;
* **outputs**: the victim's (``conc`` is the victim concentration, the one a trial analyses by
  default), the perpetrator's with the suffix ``_perp`` (``conc_perp``), ``cl_ratio`` (victim
  clearance relative to its value without perpetrator) and, with an enzyme state, ``enzyme``
  (E/E0).

The perpetrator does not depend on the victim (no mutual interaction); the victim's clearance
parameters (``CL`` and, for Michaelis–Menten elimination, ``VMAX``) are multiplied at every instant by

    cl_ratio = (1 − FM_E) + FM_E · A · E/E0,      A = 1 / (1 + I/KI),     I = PERP_FU · conc_perp

where FM_E is the fraction of the victim's clearance through the affected enzyme (fm), I the
unbound perpetrator concentration in the central compartment (mg/L; PERP_FU the fraction unbound
in plasma), A the competitive (reversible) inhibition term and E/E0 the relative amount of active
enzyme, governed by enzyme turnover (Mayhew et al. 2000, *Drug Metab Dispos* 28:1031–1037;
Venkatakrishnan & Obach 2005, *Drug Metab Dispos* 33:845–852; E0 = 1)::

    dE/dt = KDEG_E · (1 + EMAX_IND · I/(EC50_IND + I)) − KDEG_E · E − KINACT · I/(KI_MBI + I) · E

Mechanisms and their parameters (units; all concentrations unbound, mg/L):

* ``competitive``: KI (mg/L), the reversible inhibition constant (A above; A = 1 otherwise);
* ``mbi`` (mechanism-based / time-dependent inactivation): KINACT (1/h), KI_MBI (mg/L) and the
  enzyme's degradation rate constant KDEG_E (1/h);
* ``induction``: EMAX_IND (maximal fold increase of enzyme synthesis above baseline, ≥ 0),
  EC50_IND (mg/L) and KDEG_E (1/h);
* always: FM_E (0–1, default 1) and PERP_FU (0–1, default 1).

With a constant I and the enzyme at its steady state, E/E0 = B·C with the B and C terms of the
static model below, and the victim's AUC ratio (with / without perpetrator; linear victim PK, no gut
interaction: Fg = 1) is exactly `fda_static_auc_ratio`. The model is nonlinear (ODE path): the
victim's clearance depends on the perpetrator's concentration.

Static mechanistic model
------------------------
`fda_static_auc_ratio` is the "mechanistic static model" of the FDA guidance *In Vitro Drug
Interaction Studies — Cytochrome P450 Enzyme- and Transporter-Mediated Drug Interactions*
(January 2020), Table 3 (after Fahmi et al. 2009, *Drug Metab Dispos* 37:1658–1666)::

    AUCR = 1 / ([Ag·Bg·Cg]·(1 − Fg) + Fg) · 1 / ([Ah·Bh·Ch]·fm + (1 − fm))
    A = 1/(1 + [I]/Ki),  B = kdeg/(kdeg + kinact·[I]/([I] + KI)),  C = 1 + d·Emax·[I]/([I] + EC50)

with h (liver) and g (gut) terms at the unbound concentrations [I]h and [I]g. It lives here, next to
the dynamic model whose parameters it mirrors (KI, KINACT, KI_MBI, KDEG_E, EMAX_IND, EC50_IND,
FM_E), rather than in `insilico.stats`, which holds statistical analyses.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from insilico.errors import SpecError
from insilico.models._base import PARAMETER_INFO, Model, Output, Parameter

__all__ = ["DDI_MECHANISMS", "PERPETRATOR_PREFIX", "ddi_model", "fda_static_auc_ratio", "parse_ddi_part"]

DDI_MECHANISMS = ("competitive", "mbi", "induction")
PERPETRATOR_PREFIX = "PERP_"
VICTIM_STATE_PREFIX, PERP_STATE_PREFIX = "victim.", "perp."
_CLEARANCE = ("CL", "VMAX")        # victim parameters scaled by cl_ratio (those the victim has)
_MECH_PARAMS = {"competitive": ("KI",), "mbi": ("KINACT", "KI_MBI", "KDEG_E"),
                "induction": ("EMAX_IND", "EC50_IND", "KDEG_E")}
_PART_RE = re.compile(r"^ddi_([a-z_]+)\(([^()+]+)\)$")


def _mechanisms(mechanisms: str | Sequence[str]) -> tuple[str, ...]:
    items = mechanisms.split("_") if isinstance(mechanisms, str) else list(mechanisms)
    if not items:
        raise SpecError("model", f"give one or more DDI mechanisms from {list(DDI_MECHANISMS)}")
    for m in items:
        if m not in DDI_MECHANISMS:
            raise SpecError("model", f"unknown DDI mechanism {m!r}; choose from {list(DDI_MECHANISMS)}")
    if len(set(items)) != len(items):
        raise SpecError("model", f"DDI mechanism given twice in {items}")
    return tuple(m for m in DDI_MECHANISMS if m in items)


def parse_ddi_part(part: str) -> tuple[tuple[str, ...], str] | None:
    """``"ddi_mbi_induction(1cmt_oral)"`` → (``("mbi", "induction")``, ``"1cmt_oral"``); None when
    ``part`` is not a DDI part of a library name; `SpecError` for an unknown mechanism."""
    if not part.startswith("ddi"):
        return None
    m = _PART_RE.match(part)
    if not m:
        raise SpecError("model", f"malformed DDI part {part!r}; write ddi_<mechanisms>(<perpetrator PK model>), "
                                 "e.g. ddi_competitive(1cmt_oral) or ddi_mbi_induction(2cmt_oral)")
    return _mechanisms(m.group(1)), m.group(2).strip()


def _standard(name: str, constraint: str = "positive", default: float | None = None) -> Parameter:
    return Parameter.standard(name, constraint, default)


def _prefixed(q: Parameter) -> Parameter:
    name = PERPETRATOR_PREFIX + q.name
    info = PARAMETER_INFO.get(name)
    units, long_name = (info.units, info.long_name) if info else (q.units, f"perpetrator {q.description}")
    return Parameter(name, units, long_name, q.constraint, q.default)


def _conc_fn(model: Model, role: str):
    for o in model.outputs:
        if o.name == "conc":
            return o.fn
    raise SpecError("model", f"the {role} model {model.name!r} has no `conc` output (mg/L) to interact through")


def ddi_model(victim: Model, perpetrator: Model, mechanisms: str | Sequence[str]) -> Model:
    """A victim PK model and a perpetrator PK model in one model, interacting by ``mechanisms``
    (``"competitive"``, ``"mbi"``, ``"induction"``, a sequence of them or a ``_``-joined string);
    module docstring for states, parameters, outputs and equations.

    ``victim`` needs a ``conc`` output and a ``CL`` or ``VMAX`` parameter (the clearance scaled by
    the interaction); ``perpetrator`` a ``conc`` output (its central concentration, mg/L). Either may be
    any `Model` of the library (PK, TMDD, metabolite, text) except a DDI model.
    """
    mechs = _mechanisms(mechanisms)
    for role, m in (("victim", victim), ("perpetrator", perpetrator)):
        if not isinstance(m, Model):
            raise SpecError("model", f"the {role} must be a Model, got {type(m).__name__}")
        if m.meta.get("kind") == "ddi":
            raise SpecError("model", f"the {role} {m.name!r} is already a DDI model; one victim and one "
                                     "perpetrator per model")
    _conc_fn(victim, "victim")
    perp_conc = _conc_fn(perpetrator, "perpetrator")
    scaled = tuple(c for c in _CLEARANCE if c in victim.parameter_names)
    if not scaled:
        raise SpecError("model", f"the victim {victim.name!r} has no clearance parameter ({' or '.join(_CLEARANCE)}) "
                                 "for the interaction to scale")
    enzyme = "mbi" in mechs or "induction" in mechs
    inter_names = list(dict.fromkeys(n for m in mechs for n in _MECH_PARAMS[m]))
    interaction = ([_standard("FM_E", "fraction", 1.0), _standard("PERP_FU", "fraction", 1.0)]
                   + [_standard(n, "nonnegative" if n == "EMAX_IND" else "positive") for n in inter_names])
    perp_params = tuple(_prefixed(q) for q in perpetrator.parameters)
    params = tuple(victim.parameters) + perp_params + tuple(interaction)
    names = [q.name for q in params]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise SpecError("model", f"the victim {victim.name!r} has parameters named like the DDI model's own "
                                 f"({clash})")
    perp_names = perpetrator.parameter_names
    nv, npp = victim.n_states, perpetrator.n_states
    ie = nv + npp
    n_total = ie + (1 if enzyme else 0)

    def unprefix(p):
        return {k: p[PERPETRATOR_PREFIX + k] for k in perp_names}

    def unbound(yp, p, pp):
        return p["PERP_FU"] * jnp.maximum(perp_conc(yp, pp), 0.0)

    def ratio(i_u, e, p):
        a = 1.0 / (1.0 + i_u / p["KI"]) if "competitive" in mechs else 1.0
        return (1.0 - p["FM_E"]) + p["FM_E"] * a * e

    def rhs(t, y, p):
        pp = unprefix(p)
        yv, yp = y[:nv], y[nv:ie]
        i_u = unbound(yp, p, pp)
        e = y[ie] if enzyme else 1.0
        factor = ratio(i_u, e, p)
        pv = dict(p)
        for c in scaled:
            pv[c] = p[c] * factor
        parts = [victim.rhs(t, yv, pv), perpetrator.rhs(t, yp, pp)]
        if enzyme:
            synthesis = 1.0
            if "induction" in mechs:
                synthesis = 1.0 + p["EMAX_IND"] * i_u / (p["EC50_IND"] + i_u)
            loss = p["KDEG_E"] * e
            if "mbi" in mechs:
                loss = loss + p["KINACT"] * i_u / (p["KI_MBI"] + i_u) * e
            parts.append(jnp.stack([p["KDEG_E"] * synthesis - loss]))
        return jnp.concatenate(parts)

    def y0(p):
        parts = [victim.y0(p), perpetrator.y0(unprefix(p))]
        if enzyme:
            parts.append(jnp.ones(1))
        return jnp.concatenate(parts)

    def joined(vfn, pfn, fill):
        if vfn is None and pfn is None:
            return None

        def fn(p):
            pp = unprefix(p)
            v = jnp.full(nv, fill) if vfn is None else vfn(p)
            w = jnp.full(npp, fill) if pfn is None else pfn(pp)
            return jnp.concatenate([v, w, jnp.full(n_total - ie, fill)])
        return fn

    def victim_output(fn):
        return lambda y, p: fn(y[..., :nv], p)

    def perp_output(fn):
        return lambda y, p: fn(y[..., nv:ie], unprefix(p))

    def cl_ratio(y, p):
        e = y[..., ie] if enzyme else 1.0
        return ratio(unbound(y[..., nv:ie], p, unprefix(p)), e, p)

    outputs = [Output(o.name, o.units, o.long_name, victim_output(o.fn)) for o in victim.outputs]
    outputs += [Output(f"{o.name}_perp", o.units, f"perpetrator {o.long_name}", perp_output(o.fn))
                for o in perpetrator.outputs]
    outputs.append(Output("cl_ratio", "1", "victim clearance relative to its value without perpetrator", cl_ratio))
    if enzyme:
        outputs.append(Output("enzyme", "1", "active enzyme relative to baseline (E/E0)", lambda y, p: y[..., ie]))
    states = (tuple(VICTIM_STATE_PREFIX + s for s in victim.states) + tuple(PERP_STATE_PREFIX + s for s in
                                                                            perpetrator.states)
              + (("enzyme",) if enzyme else ()))
    dose = (tuple(VICTIM_STATE_PREFIX + c for c in victim.dose_compartments)
            + tuple(PERP_STATE_PREFIX + c for c in perpetrator.dose_compartments))
    default = VICTIM_STATE_PREFIX + victim.default_dose_compartment if victim.default_dose_compartment else None
    has_y0 = enzyme or victim.initial_state is not None or perpetrator.initial_state is not None
    return Model(
        name=f"{victim.name}+ddi_{'_'.join(mechs)}({perpetrator.name})", states=states, parameters=params,
        rhs=rhs, outputs=tuple(outputs), dose_compartments=dose, default_dose_compartment=default,
        state_units=victim.state_units + perpetrator.state_units + (("1",) if enzyme else ()),
        initial_state=y0 if has_y0 else None,
        bioavailability=joined(victim.bioavailability, perpetrator.bioavailability, 1.0),
        lag=joined(victim.lag, perpetrator.lag, 0.0),
        description=(f"DDI: victim {victim.name} ({victim.description}) with perpetrator {perpetrator.name}; "
                     f"{', '.join(mechs)}"),
        meta={"kind": "ddi", "victim": victim.name, "perpetrator": perpetrator.name, "mechanisms": mechs,
              "victim_states": nv, "perpetrator_states": npp},
    )


# ------------------------------------------------------------------------------------------------
# static mechanistic model (FDA 2020)
# ------------------------------------------------------------------------------------------------

def _arg(value, name: str, low: float = 0.0, strict: bool = False, high: float | None = None) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    bad = ~np.isfinite(v) | ((v <= low) if strict else (v < low))
    if high is not None:
        bad |= v > high
    if np.any(bad):
        rng = f"{'>' if strict else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise SpecError(name, f"must be finite and {rng}, got {value!r}")
    return v


def _terms(i, ki, kinact, ki_mbi, kdeg, emax, ec50, d, where: str):
    """A, B, C of the FDA static model at unbound concentration ``i``."""
    i = _arg(i, f"i_{where}")
    a = 1.0 if ki is None else 1.0 / (1.0 + i / _arg(ki, "ki", strict=True))
    b = 1.0
    if kinact is not None:
        kdeg = _arg(kdeg, "kdeg" if where == "h" else "kdeg_g", strict=True)
        b = kdeg / (kdeg + _arg(kinact, "kinact") * i / (i + _arg(ki_mbi, "ki_mbi", strict=True)))
    c = 1.0 if emax is None else 1.0 + d * _arg(emax, "emax") * i / (i + _arg(ec50, "ec50", strict=True))
    return a, b, c


def fda_static_auc_ratio(fm, i_h, *, ki=None, kinact=None, ki_mbi=None, kdeg=None, emax=None, ec50=None,
                         d: float = 1.0, fg=1.0, i_g=None, kdeg_g=None):
    """Predicted victim AUC ratio (with / without perpetrator) by the mechanistic static model of
    the FDA guidance *In Vitro Drug Interaction Studies — Cytochrome P450 Enzyme- and
    Transporter-Mediated Drug Interactions* (2020), Table 3::

        AUCR = 1/([Ag·Bg·Cg]·(1 − fg) + fg) · 1/([Ah·Bh·Ch]·fm + (1 − fm))

    Parameters (arrays broadcast; concentrations unbound, in the units of ``ki``, ``ki_mbi``, ``ec50``,
    e.g. mg/L as the DDI model's KI, KI_MBI, EC50_IND)
    ----------
    fm : fraction of the victim's (hepatic) clearance by the affected enzyme, 0–1 (FM_E).
    i_h : unbound perpetrator concentration at the enzyme in the liver, [I]h (the guidance:
        fu,p·(Imax,b + Fa·Fg·ka·Dose/(Qh·Rb))).
    ki : reversible inhibition constant; omit for no reversible inhibition (A = 1).
    kinact (1/h), ki_mbi, kdeg (1/h): time-dependent (mechanism-based) inactivation; omit
        ``kinact`` for none (B = 1). ``kdeg`` is the hepatic enzyme's degradation rate constant.
    emax, ec50 : induction (maximal fold induction and its EC50); omit ``emax`` for none (C = 1).
    d : induction scaling factor (guidance default 1).
    fg : fraction of the victim escaping gut-wall metabolism, (0, 1] (default 1: no gut term).
    i_g : unbound perpetrator concentration in the enterocytes, [I]g (Fa·ka·Dose/Qen); needed when fg < 1.
    kdeg_g : the intestinal enzyme's degradation rate constant (1/h); needed with ``kinact`` when fg < 1.

    Returns the ratio (float, or an array when an input is one). `SpecError` naming the argument
    for a missing or invalid value.
    """
    fm = _arg(fm, "fm", high=1.0)
    fg = _arg(fg, "fg", strict=True, high=1.0)
    for name, value, needs in (("kinact", kinact, {"ki_mbi": ki_mbi, "kdeg": kdeg}), ("emax", emax, {"ec50": ec50})):
        if value is not None:
            for k, v in needs.items():
                if v is None:
                    raise SpecError(k, f"is needed with {name}")
    a, b, c = _terms(i_h, ki, kinact, ki_mbi, kdeg, emax, ec50, _arg(d, "d"), "h")
    hepatic = 1.0 / (a * b * c * fm + (1.0 - fm))
    gut = 1.0
    if np.any(fg < 1.0):
        if i_g is None:
            raise SpecError("i_g", "the gut term (fg < 1) needs the enterocyte concentration [I]g")
        if kinact is not None and kdeg_g is None:
            raise SpecError("kdeg_g", "the gut term (fg < 1) with inactivation needs the intestinal kdeg")
        ag, bg, cg = _terms(i_g, ki, kinact, ki_mbi, kdeg_g, emax, ec50, _arg(d, "d"), "g")
        gut = 1.0 / (ag * bg * cg * (1.0 - fg) + fg)
    out = gut * hepatic
    return float(out) if np.ndim(out) == 0 else out
