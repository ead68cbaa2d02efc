"""The built-in exact two- and three-compartment models in NONMEM's other parameterisations (PREDPP
TRANS3, TRANS5, TRANS6), for control streams imported by `import_nonmem`.

Each model is the built-in (``2cmt_iv``, ``2cmt_oral``, ``3cmt_iv``, ``3cmt_oral``: same states,
doses, outputs, exact solution) whose parameters are the TRANS's; the built-in's parameters
(CL, V1, Q, V2[, Q3, V3]) are computed from them by the conversions of NONMEM Users Guide VI
(PREDPP), "ADVAN3", "ADVAN4", "ADVAN11", "ADVAN12" and their TRANS routines. Notation: K = K10 the
elimination rate constant, Kij the flow from compartment i to j (1/h), V the central volume (L; the
scale S1, S2 for the oral models), and for insilico CL = K*V, Q = K12*V, V2 = K12*V/K21 (as for TRANS1):

* TRANS3 (ADVAN3/4): CL (L/h), V (L), Q (L/h), VSS (L, the volume at steady state = V + V2):
  K = CL/V, K12 = Q/V, K21 = Q/(VSS - V); so V1 = V and V2 = VSS - V (needs VSS > V).
* TRANS5 (ADVAN3/4): AOB (the ratio A/B of the coefficients of the bolus disposition
  C(t) = A e^(-ALPHA t) + B e^(-BETA t), dimensionless), ALPHA, BETA (1/h, ALPHA > BETA > 0), V (the
  scale): K21 = (AOB*BETA + ALPHA)/(AOB + 1), K = ALPHA*BETA/K21, K12 = ALPHA + BETA - K21 - K.
* TRANS6 (ADVAN3/4): ALPHA, BETA, K21 (K32 for ADVAN4, the peripheral-to-central rate constant;
  BETA < K21 < ALPHA), V: K = ALPHA*BETA/K21, K12 = ALPHA + BETA - K21 - K.
* TRANS6 (ADVAN11/12): ALPHA, BETA, GAMMA (1/h, the three disposition rates), K21, K31 (K32, K42 for
  ADVAN12), V: from the characteristic polynomial of the three-compartment system,
  ALPHA + BETA + GAMMA = E1 + K21 + K31 (E1 = K + K12 + K13), the sum of the pairwise products
  = E1 (K21 + K31) + K21 K31 - K12 K21 - K13 K31 and ALPHA BETA GAMMA = K K21 K31, so
  K = ALPHA BETA GAMMA / (K21 K31), K12 + K13 = E1 - K, K12 = (K21 K31 + E1 (K21 + K31) - S2 -
  (E1 - K) K31) / (K21 - K31) and K13 = E1 - K - K12 (S2 the sum of the pairwise products; K21 != K31).

KA (1/h), F and ALAG of the oral models are the built-in's. Each TRANS parameter must be > 0 (the
model's constraint, checked by `validate_params`); values that give no valid micro-constants (VSS <= V,
K21 outside (BETA, ALPHA), any of K, K12, K21, K13, K31 <= 0) make the built-in's parameters NaN, so
that subject's predictions are NaN (never a silently wrong number). The check is not in
`validate_params` because callers validate other parameters with placeholder values of 1.
Referenced from ``population.yaml`` as ``model: {import: "insilico.imports:advan3_trans3"}`` and so on.
"""
from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp

from insilico.errors import SpecError
from insilico.models import Model, Output, Parameter, get_model

__all__ = ["TRANS_MODELS", "advan3_trans3", "advan3_trans5", "advan3_trans6", "advan4_trans3", "advan4_trans5",
           "advan4_trans6", "advan11_trans6", "advan12_trans6", "micro_constants", "trans_model"]

_RATE = ("1/h", "first-order rate constant")
_POSITIVE = ("K", "K12", "K21", "K13", "K31", "V2")   # a valid TRANS gives these > 0
_UNITS = {"CL": ("L/h", "clearance"), "V": ("L", "central volume (the scale of the observed compartment)"),
          "Q": ("L/h", "intercompartmental clearance"), "VSS": ("L", "volume of distribution at steady state"),
          "AOB": ("1", "ratio A/B of the bolus disposition coefficients"),
          "ALPHA": ("1/h", "fastest disposition rate constant"), "BETA": ("1/h", "second disposition rate constant"),
          "GAMMA": ("1/h", "slowest disposition rate constant (3 compartments)")}

# (ADVAN, TRANS) -> (built-in, the TRANS's parameters in NONMEM's order (KA added for oral models))
TRANS_MODELS = {
    ("ADVAN3", "TRANS3"): ("2cmt_iv", ("CL", "V", "Q", "VSS")),
    ("ADVAN4", "TRANS3"): ("2cmt_oral", ("CL", "V", "Q", "VSS", "KA")),
    ("ADVAN3", "TRANS5"): ("2cmt_iv", ("AOB", "ALPHA", "BETA", "V")),
    ("ADVAN4", "TRANS5"): ("2cmt_oral", ("AOB", "ALPHA", "BETA", "V", "KA")),
    ("ADVAN3", "TRANS6"): ("2cmt_iv", ("ALPHA", "BETA", "K21", "V")),
    ("ADVAN4", "TRANS6"): ("2cmt_oral", ("ALPHA", "BETA", "K32", "V", "KA")),
    ("ADVAN11", "TRANS6"): ("3cmt_iv", ("ALPHA", "BETA", "GAMMA", "K21", "K31", "V")),
    ("ADVAN12", "TRANS6"): ("3cmt_oral", ("ALPHA", "BETA", "GAMMA", "K32", "K42", "V", "KA")),
}


def micro_constants(advan: str, trans: str, p: Mapping) -> dict:
    """The built-in's disposition parameters (CL, V1, Q, V2[, Q3, V3]) from the TRANS parameters ``p``
    (module docstring; arrays broadcast, NumPy or JAX), plus ``K``, ``K12``, ``K21`` (and ``K13``,
    ``K31``) in 1/h. ADVAN4/12's K23/K32 (K24/K42) are given as K12/K21 (K13/K31) here."""
    v = p["V"]
    if trans == "TRANS3":
        k, k12, k21 = p["CL"] / v, p["Q"] / v, p["Q"] / (p["VSS"] - v)
        return {"CL": p["CL"], "V1": v, "Q": p["Q"], "V2": p["VSS"] - v, "K": k, "K12": k12, "K21": k21}
    if advan in ("ADVAN3", "ADVAN4"):
        a, b = p["ALPHA"], p["BETA"]
        if trans == "TRANS5":
            k21 = (p["AOB"] * b + a) / (p["AOB"] + 1.0)
        else:
            k21 = p["K21"] if advan == "ADVAN3" else p["K32"]
        k = a * b / k21
        k12 = a + b - k21 - k
        return {"CL": k * v, "V1": v, "Q": k12 * v, "V2": k12 * v / k21, "K": k, "K12": k12, "K21": k21}
    a, b, g = p["ALPHA"], p["BETA"], p["GAMMA"]
    k21, k31 = (p["K21"], p["K31"]) if advan == "ADVAN11" else (p["K32"], p["K42"])
    s1, s2, s3 = a + b + g, a * b + a * g + b * g, a * b * g
    e1 = s1 - k21 - k31
    k = s3 / (k21 * k31)
    k12 = (k21 * k31 + e1 * (k21 + k31) - s2 - (e1 - k) * k31) / (k21 - k31)
    k13 = e1 - k - k12
    return {"CL": k * v, "V1": v, "Q": k12 * v, "V2": k12 * v / k21, "Q3": k13 * v, "V3": k13 * v / k31,
            "K": k, "K12": k12, "K21": k21, "K13": k13, "K31": k31}


def trans_model(advan: str, trans: str) -> Model:
    """The built-in model of ``advan`` with the parameters of ``trans`` (module docstring)."""
    key = (str(advan).upper(), str(trans).upper())
    if key not in TRANS_MODELS:
        raise SpecError("model", f"{advan} {trans}: no TRANS model (have {sorted(' '.join(k) for k in TRANS_MODELS)})")
    builtin, names = TRANS_MODELS[key]
    base = get_model(builtin)
    own = {p.name: p for p in base.parameters}

    def par(name):
        if name in own and name != "V":
            return own[name]
        units, desc = _UNITS.get(name, _RATE)
        return Parameter(name, units, desc + ("" if name in _UNITS else f" {name} (NONMEM {key[1]})"))

    params = tuple(par(n) for n in names) + tuple(p for p in base.parameters if p.name in ("F", "ALAG"))

    def conv(p):
        m = micro_constants(key[0], key[1], p)
        ok = True                                  # element by element (a subject's values)
        for k in _POSITIVE:
            if k in m:
                ok = ok & (jnp.asarray(m[k]) > 0)
        out = {k: jnp.where(ok, m[k], jnp.nan) for k in base.parameter_names if k in m}
        out.update({k: p[k] for k in ("KA", "F", "ALAG") if k in p})
        return out

    outputs = tuple(Output(o.name, o.units, o.long_name, (lambda fn: lambda y, p: fn(y, conv(p)))(o.fn))
                    for o in base.outputs)
    return Model(
        name=f"{builtin}_{key[1].lower()}", states=base.states, parameters=params,
        rhs=lambda t, y, p: base.rhs(t, y, conv(p)), outputs=outputs, dose_compartments=base.dose_compartments,
        default_dose_compartment=base.default_dose_compartment, state_units=base.state_units,
        bioavailability=None if base.bioavailability is None else (lambda p: base.bioavailability(conv(p))),
        lag=None if base.lag is None else (lambda p: base.lag(conv(p))),
        system_matrix=lambda p, *a, **kw: base.system_matrix(conv(p), *a, **kw),
        eigenvalues=lambda p: base.eigenvalues(conv(p)),
        description=f"{base.description}, NONMEM {key[0]} {key[1]} parameters ({', '.join(names)})",
        meta={**base.meta, "volume": "V", "advan": key[0], "trans": key[1], "builtin": builtin})


def advan3_trans3() -> Model:
    """``2cmt_iv`` with CL, V, Q, VSS (ADVAN3 TRANS3)."""
    return trans_model("ADVAN3", "TRANS3")


def advan4_trans3() -> Model:
    """``2cmt_oral`` with CL, V, Q, VSS, KA (ADVAN4 TRANS3)."""
    return trans_model("ADVAN4", "TRANS3")


def advan3_trans5() -> Model:
    """``2cmt_iv`` with AOB, ALPHA, BETA, V (ADVAN3 TRANS5)."""
    return trans_model("ADVAN3", "TRANS5")


def advan4_trans5() -> Model:
    """``2cmt_oral`` with AOB, ALPHA, BETA, V, KA (ADVAN4 TRANS5)."""
    return trans_model("ADVAN4", "TRANS5")


def advan3_trans6() -> Model:
    """``2cmt_iv`` with ALPHA, BETA, K21, V (ADVAN3 TRANS6)."""
    return trans_model("ADVAN3", "TRANS6")


def advan4_trans6() -> Model:
    """``2cmt_oral`` with ALPHA, BETA, K32, V, KA (ADVAN4 TRANS6)."""
    return trans_model("ADVAN4", "TRANS6")


def advan11_trans6() -> Model:
    """``3cmt_iv`` with ALPHA, BETA, GAMMA, K21, K31, V (ADVAN11 TRANS6)."""
    return trans_model("ADVAN11", "TRANS6")


def advan12_trans6() -> Model:
    """``3cmt_oral`` with ALPHA, BETA, GAMMA, K32, K42, V, KA (ADVAN12 TRANS6)."""
    return trans_model("ADVAN12", "TRANS6")
