"""Target-mediated drug disposition (TMDD): the full model and its QSS and MM approximations.

Each variant wraps a compartmental PK model (any disposition and absorption of `pk_model`;
the library names them ``{1,2,3}cmt_{iv,oral,transitN}_tmdd[_qss|_mm]``, e.g. ``1cmt_iv_tmdd``,
``2cmt_iv_tmdd_qss``) and adds binding of the drug in ``central`` to a target that is
synthesised, degraded and internalised with the drug as a complex. Linear clearance CL and
distribution act on the free drug.

Units (drug-mass equivalents): drug amounts are mg and concentrations mg/L as everywhere in
insilico; free target R and complex RC are expressed as the mass of drug they bind, in mg/L
(molar concentration × the drug's molar mass). Hence KON is in L/(mg·h), KSYN in mg/(L·h) and
KD = KOFF/KON, KSS in mg/L. From molar values: KON[L/(mg·h)] = 1000 · KON[1/(nM·h)] / MW[kDa] and
R[mg/L] = R[nM] · MW[kDa] / 1000.

``tmdd`` — full model (Mager DE, Jusko WJ. General pharmacokinetic model for drugs exhibiting
target-mediated drug disposition. J Pharmacokinet Pharmacodyn 2001;28:507–532). States: PK
states (``central`` holds the free drug, mg), ``target`` R and ``complex`` RC (mg/L); C = A/V::

    dA/dt  = PK(A) − V · (KON · C · R − KOFF · RC)
    dR/dt  = KSYN − KDEG · R − KON · C · R + KOFF · RC,          R(0) = R0 = KSYN / KDEG
    dRC/dt = KON · C · R − KOFF · RC − KINT · RC,                RC(0) = 0

``tmdd_qss`` — quasi-steady-state approximation (Gibiansky L, Gibiansky E, Kakkar T, Ma P.
Approximations of the target-mediated drug disposition model and identifiability of model
parameters. J Pharmacokinet Pharmacodyn 2008;35:573–591), valid when binding is fast compared with
elimination, distribution and target turnover. States: PK states (``central`` holds the *total*
drug, free + bound, mg) and ``target_total`` Rtot (mg/L); with Ctot = A/V and KSS =
(KOFF + KINT)/KON (a parameter)::

    C      = ½ · [(Ctot − Rtot − KSS) + √((Ctot − Rtot − KSS)² + 4 · KSS · Ctot)]   (free drug)
    RC     = Rtot · C / (KSS + C)
    dA/dt  = PK evaluated at the free drug − KINT · RC · V
    dRtot/dt = KSYN − KDEG · Rtot − (KINT − KDEG) · RC,            Rtot(0) = KSYN / KDEG

``tmdd_mm`` — Michaelis–Menten approximation (Gibiansky 2008), valid when the bound drug is
negligible and the total target constant (Rtot = R0): the PK model with linear + MM elimination
(the ``_mixed`` model) with VMAX = KINT · R0 · V and KM = KSS; same parameters as ``tmdd_qss``.

Outputs of every variant: ``conc`` (free drug, mg/L), ``target_total`` (R + RC, mg/L) and
``complex`` (RC, mg/L); the full and QSS models also give the free ``target`` (mg/L).
`tmdd_reduced_parameters` maps full-model parameters to those of an approximation.
"""
from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp

from insilico.errors import SpecError
from insilico.models._base import Model, Output, Parameter
from insilico.models._pk import pk_model

APPROXIMATIONS = ("full", "qss", "mm")
_SUFFIX = {"full": "tmdd", "qss": "tmdd_qss", "mm": "tmdd_mm"}
_FULL = ("KON", "KOFF", "KINT", "KSYN", "KDEG")
_REDUCED = ("KSS", "KINT", "KSYN", "KDEG")
_CAN_BE_ZERO = ("KOFF", "KINT")  # irreversible binding, no internalisation


def _params(names) -> tuple[Parameter, ...]:
    return tuple(Parameter.standard(k, "nonnegative" if k in _CAN_BE_ZERO else "positive") for k in names)
_CONC = "mg/L"


def qss_free_concentration(ctot, rtot, kss):
    """Free drug concentration (mg/L) from total drug ``ctot`` and total target ``rtot`` (mg/L)
    under the quasi-steady state: the positive root of C² − (Ctot − Rtot − KSS)·C − KSS·Ctot = 0,
    computed without cancellation (the conjugate form when Ctot − Rtot − KSS < 0)."""
    b = ctot - rtot - kss
    root = jnp.sqrt(b * b + 4.0 * kss * ctot)
    plus = 0.5 * (b + root)
    conj = 2.0 * kss * ctot / jnp.where(b < 0, root - b, 1.0)
    return jnp.where(b < 0, conj, plus)


def tmdd_model(n_cmt: int = 1, absorption: str = "iv", approximation: str = "full", n_transit: int = 3) -> Model:
    """A TMDD model on the PK model ``pk_model(n_cmt, absorption, "linear", n_transit)``.

    ``approximation`` is ``"full"`` (Mager & Jusko 2001), ``"qss"`` or ``"mm"`` (Gibiansky 2008).
    """
    if approximation not in APPROXIMATIONS:
        raise ValueError(f"approximation must be one of {APPROXIMATIONS}, got {approximation!r}")
    pk = pk_model(n_cmt, absorption, "linear", n_transit)
    name = pk.name + "_" + _SUFFIX[approximation]
    if approximation == "full":
        return _full(pk, name)
    if approximation == "qss":
        return _qss(pk, name)
    return _mm(pk, pk_model(n_cmt, absorption, "mixed", n_transit), name)


def tmdd_reduced_parameters(params: Mapping, approximation: str) -> dict:
    """Parameters of the ``"qss"`` or ``"mm"`` variant equivalent to full-model ``params``:
    KON and KOFF are replaced by KSS = (KOFF + KINT)/KON (mg/L); the rest is unchanged."""
    if approximation not in ("qss", "mm"):
        raise ValueError(f"approximation must be qss or mm, got {approximation!r}")
    for k in ("KON", "KOFF", "KINT"):
        if k not in params:
            raise SpecError(f"parameters.{k}", "missing (needed to compute KSS)")
    out = {k: v for k, v in params.items() if k not in ("KON", "KOFF")}
    out["KSS"] = (params["KOFF"] + params["KINT"]) / params["KON"]
    return out


def _parts(pk: Model):
    i_c, vname = pk.meta["central"], pk.meta["volume"]
    return i_c, vname, pk.n_states


def _model(pk: Model, name: str, states, units, params, rhs, y0, outputs, desc: str) -> Model:
    n_extra = len(states)

    def pad(vec_fn, fill):
        return None if vec_fn is None else (lambda p: jnp.concatenate([vec_fn(p), jnp.full(n_extra, fill)]))

    return Model(
        name=name, states=pk.states + states, parameters=tuple(pk.parameters) + params, rhs=rhs,
        outputs=outputs, dose_compartments=pk.dose_compartments,
        default_dose_compartment=pk.default_dose_compartment, state_units=pk.state_units + units,
        initial_state=y0, bioavailability=pad(pk.bioavailability, 1.0), lag=pad(pk.lag, 0.0),
        description=f"{pk.description}; {desc}", meta={**pk.meta, "kind": "tmdd"},
    )


def _full(pk: Model, name: str) -> Model:
    i_c, vname, n = _parts(pk)

    def rhs(t, y, p):
        dy = pk.rhs(t, y[:n], p)
        c, r, rc = y[i_c] / p[vname], y[n], y[n + 1]
        bind = p["KON"] * c * r - p["KOFF"] * rc
        dy = dy.at[i_c].add(-p[vname] * bind)
        return jnp.concatenate([dy, jnp.stack([p["KSYN"] - p["KDEG"] * r - bind, bind - p["KINT"] * rc])])

    def y0(p):
        return jnp.concatenate([jnp.zeros(n), jnp.stack([p["KSYN"] / p["KDEG"], jnp.zeros_like(p["KDEG"])])])

    outputs = (
        Output("conc", _CONC, "free drug concentration", lambda y, p: y[..., i_c] / p[vname]),
        Output("target", _CONC, "free target concentration", lambda y, p: y[..., n]),
        Output("target_total", _CONC, "total target concentration", lambda y, p: y[..., n] + y[..., n + 1]),
        Output("complex", _CONC, "drug-target complex concentration", lambda y, p: y[..., n + 1]),
    )
    return _model(pk, name, ("target", "complex"), (_CONC, _CONC), _params(_FULL),
                  rhs, y0, outputs, "target-mediated disposition (full, Mager & Jusko 2001)")


def _qss(pk: Model, name: str) -> Model:
    i_c, vname, n = _parts(pk)

    def free(y, p):
        return qss_free_concentration(y[..., i_c] / p[vname], y[..., n], p["KSS"])

    def complex_(y, p):
        c = free(y, p)
        return y[..., n] * c / (p["KSS"] + c)

    def rhs(t, y, p):
        v = p[vname]
        c = free(y, p)
        rtot = y[n]
        rc = rtot * c / (p["KSS"] + c)
        dy = pk.rhs(t, y[:n].at[i_c].set(c * v), p)  # transfers act on the free drug
        dy = dy.at[i_c].add(-p["KINT"] * rc * v)
        return jnp.concatenate([dy, jnp.stack([p["KSYN"] - p["KDEG"] * rtot - (p["KINT"] - p["KDEG"]) * rc])])

    def y0(p):
        return jnp.concatenate([jnp.zeros(n), jnp.stack([p["KSYN"] / p["KDEG"]])])

    outputs = (
        Output("conc", _CONC, "free drug concentration", free),
        Output("target", _CONC, "free target concentration", lambda y, p: y[..., n] - complex_(y, p)),
        Output("target_total", _CONC, "total target concentration", lambda y, p: y[..., n]),
        Output("complex", _CONC, "drug-target complex concentration", complex_),
    )
    return _model(pk, name, ("target_total",), (_CONC,), _params(_REDUCED),
                  rhs, y0, outputs, "target-mediated disposition (quasi-steady state, Gibiansky 2008)")


def _mm(pk: Model, mixed: Model, name: str) -> Model:
    """``pk`` with the binding elimination of ``mixed`` (the same PK model with linear + MM
    elimination), VMAX and KM computed from the TMDD parameters."""
    i_c, vname, _ = _parts(pk)

    def r0(p):
        return p["KSYN"] / p["KDEG"]

    def rhs(t, y, p):
        return mixed.rhs(t, y, {**p, "VMAX": p["KINT"] * r0(p) * p[vname], "KM": p["KSS"]})

    def conc(y, p):
        return y[..., i_c] / p[vname]

    outputs = (
        Output("conc", _CONC, "free drug concentration", conc),
        Output("target_total", _CONC, "total target concentration (constant R0)",
               lambda y, p: jnp.zeros_like(y[..., i_c]) + r0(p)),
        Output("complex", _CONC, "drug-target complex concentration",
               lambda y, p: r0(p) * conc(y, p) / (p["KSS"] + conc(y, p))),
    )
    return _model(pk, name, (), (), _params(_REDUCED), rhs, None, outputs,
                  "target-mediated disposition (Michaelis-Menten, Gibiansky 2008)")

