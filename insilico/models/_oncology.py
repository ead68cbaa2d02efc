"""Oncology PD blocks: myelosuppression (Friberg 2002) and tumour growth inhibition (Simeoni 2004).

Both are `PDModel` blocks driven by a concentration ``C`` (mg/L) and composed with any PK model
(``1cmt_iv+friberg``, ``2cmt_oral+simeoni``). Time is in h, so rate constants published per day
must be divided by 24.

Myelosuppression — Friberg LE, Henningsson A, Maas H, Nguyen L, Karlsson MO. Model of
chemotherapy-induced myelosuppression with parameter consistency across drugs. J Clin Oncol
2002;20:4713–4721. A proliferating pool, three transit (maturation) compartments and the
circulating cells, all in 10**9/L and initialised at the baseline CIRC0::

    KTR = 4 / MTT
    dProl/dt = KTR · Prol · (1 − EDRUG) · (CIRC0 / Circ)^GAMMA − KTR · Prol
    dMat1/dt = KTR · (Prol − Mat1),  dMat2/dt = KTR · (Mat1 − Mat2),  dMat3/dt = KTR · (Mat2 − Mat3)
    dCirc/dt = KTR · (Mat3 − Circ)
    ANC = Circ

with EDRUG = SLOPE · C (``friberg``) or EDRUG = EMAX · C / (EC50 + C) (``friberg_emax``).

Tumour growth inhibition — Simeoni M, Magni P, Cammia C, et al. Predictive pharmacokinetic-
pharmacodynamic modeling of tumor growth kinetics in xenograft models after administration of
anticancer agents. Cancer Res 2004;64:1094–1101. Proliferating cells x1 and three compartments
of damaged cells x2..x4, tumour weight w = x1 + x2 + x3 + x4 (g)::

    dx1/dt = LAMBDA0 · x1 / (1 + (LAMBDA0 · w / LAMBDA1)^PSI)^(1/PSI) − K2 · C · x1
    dx2/dt = K2 · C · x1 − K1 · x2,  dx3/dt = K1 · (x2 − x3),  dx4/dt = K1 · (x3 − x4)
    x1(0) = W0,  TUMOR = w

Without drug the growth is exponential (rate LAMBDA0) while w ≪ LAMBDA1/LAMBDA0 and linear
(slope LAMBDA1) once w ≫ LAMBDA1/LAMBDA0; PSI = 20 (Simeoni's fixed value) makes the switch sharp.
"""
from __future__ import annotations

import jax.numpy as jnp

from insilico.models._base import Parameter, PDModel

_CELLS = "10**9/L"
_FRIBERG_STATES = ("prol", "mat1", "mat2", "mat3", "circ")
_SIMEONI_STATES = ("prolif", "damaged1", "damaged2", "damaged3")


def _edrug_linear(p, c):
    return p["SLOPE"] * c


def _edrug_emax(p, c):
    return p["EMAX"] * c / (p["EC50"] + c)


def friberg(drug: str = "linear") -> PDModel:
    """Friberg et al. (2002) myelosuppression, drug effect ``"linear"`` (SLOPE, L/mg) or
    ``"emax"`` (EMAX, EC50 in mg/L) on proliferation; output ``ANC`` (10**9/L)."""
    if drug == "linear":
        edrug, drug_params = _edrug_linear, (Parameter.standard("SLOPE", "nonnegative"),)
    elif drug == "emax":
        edrug, drug_params = _edrug_emax, (Parameter.standard("EMAX", "nonnegative"), Parameter.standard("EC50"))
    else:
        raise ValueError(f"drug must be linear or emax, got {drug!r}")
    params = (Parameter.standard("CIRC0"), Parameter.standard("MTT"), Parameter.standard("GAMMA")) + drug_params

    def rhs(t, y, p, c):
        ktr = 4.0 / p["MTT"]
        prol, m1, m2, m3, circ = y[0], y[1], y[2], y[3], y[4]
        feedback = (p["CIRC0"] / circ) ** p["GAMMA"]
        return jnp.stack([ktr * prol * ((1.0 - edrug(p, c)) * feedback - 1.0),
                          ktr * (prol - m1), ktr * (m1 - m2), ktr * (m2 - m3), ktr * (m3 - circ)])

    return PDModel(
        "friberg" if drug == "linear" else "friberg_emax", _FRIBERG_STATES, params,
        (("ANC", _CELLS, "absolute neutrophil count", lambda y, p, c: y[..., 4]),),
        rhs=rhs, initial_state=lambda p: jnp.full(5, 1.0) * p["CIRC0"],
        description=f"myelosuppression (Friberg 2002), {'linear' if drug == 'linear' else 'Emax'} drug effect",
        state_units=(_CELLS,) * 5,
    )


def _simeoni_growth(p, x1, w):
    """Unperturbed growth rate of the proliferating cells (g/h), written so that
    ``(1 + r^PSI)^(1/PSI)`` with ``r = LAMBDA0·w/LAMBDA1`` never overflows: it equals
    ``max(r, 1) · (1 + s^PSI)^(1/PSI)`` with ``s = min(r, 1/r)``."""
    r = p["LAMBDA0"] * w / p["LAMBDA1"]
    big = jnp.maximum(r, 1.0)
    s = jnp.minimum(r, 1.0) / big
    return p["LAMBDA0"] * x1 / (big * (1.0 + s ** p["PSI"]) ** (1.0 / p["PSI"]))


def simeoni() -> PDModel:
    """Simeoni et al. (2004) tumour growth inhibition; output ``TUMOR`` (g)."""
    params = (Parameter.standard("W0"), Parameter.standard("LAMBDA0"), Parameter.standard("LAMBDA1"),
              Parameter.standard("PSI", "positive", 20.0), Parameter.standard("K1"),
              Parameter.standard("K2", "nonnegative"))

    def rhs(t, y, p, c):
        x1, x2, x3, x4 = y[0], y[1], y[2], y[3]
        kill = p["K2"] * c * x1
        return jnp.stack([_simeoni_growth(p, x1, x1 + x2 + x3 + x4) - kill,
                          kill - p["K1"] * x2, p["K1"] * (x2 - x3), p["K1"] * (x3 - x4)])

    return PDModel(
        "simeoni", _SIMEONI_STATES, params,
        (("TUMOR", "g", "tumour weight", lambda y, p, c: jnp.sum(y, axis=-1)),),
        rhs=rhs, initial_state=lambda p: jnp.zeros(4).at[0].set(p["W0"]),
        description="tumour growth inhibition (Simeoni 2004)", state_units=("g",) * 4,
    )
