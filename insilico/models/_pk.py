"""Built-in compartmental PK models (amounts in mg, time in h, volumes in L).

Conventions follow NONMEM PREDPP / mrgsolve:

* 1-compartment: CL (L/h), V (L) — ADVAN1/ADVAN2 TRANS2.
* 2-compartment: CL, V1, Q (L/h), V2 — ADVAN3/ADVAN4 TRANS4.
* 3-compartment: CL, V1, Q, V2, Q3, V3 — ADVAN11/ADVAN12 TRANS4.
* First-order absorption: KA (1/h) from ``depot``; bioavailability F (fraction, default 1)
  and lag time ALAG (h, default 0) apply to doses into ``depot``.
* Transit absorption (Savic et al. 2007, discrete form): ``n`` transit compartments with rate
  constant KTR (1/h) feeding ``depot``; mean transit time MTT = (n + 1) / KTR. F and ALAG
  apply to doses into ``transit1``.
* Elimination from ``central``: linear (CL·C), Michaelis–Menten (VMAX·C/(KM + C), VMAX in
  mg/h, KM in mg/L), or both (``mixed``).

Linear models (linear elimination, no transit chain) expose their system matrix and closed
form eigenvalues so the engine solves them exactly (2-cmt: quadratic roots, 3-cmt: the
trigonometric cubic solution used by ADVAN11).
"""
from __future__ import annotations

import jax.numpy as jnp

from insilico.models._base import Model, Output, Parameter

# parameter names; units and long names come from the one table, PARAMETER_INFO
_DISPOSITION = {1: ("CL", "V"), 2: ("CL", "V1", "Q", "V2"), 3: ("CL", "V1", "Q", "V2", "Q3", "V3")}
_MM = ("VMAX", "KM")


def pk_model(n_cmt: int = 1, absorption: str = "iv", elimination: str = "linear",
             n_transit: int = 3) -> Model:
    """Build a compartmental PK model.

    Parameters
    ----------
    n_cmt : number of disposition compartments (1, 2 or 3).
    absorption : ``"iv"`` (dose into central), ``"oral"`` (first-order from depot) or
        ``"transit"`` (``n_transit`` transit compartments, then first-order from depot).
    elimination : ``"linear"``, ``"mm"`` or ``"mixed"`` (linear + Michaelis–Menten).
    """
    if n_cmt not in _DISPOSITION:
        raise ValueError(f"n_cmt must be 1, 2 or 3, got {n_cmt}")
    if absorption not in ("iv", "oral", "transit"):
        raise ValueError(f"absorption must be iv, oral or transit, got {absorption!r}")
    if elimination not in ("linear", "mm", "mixed"):
        raise ValueError(f"elimination must be linear, mm or mixed, got {elimination!r}")
    if absorption == "transit" and not (1 <= int(n_transit) <= 50):
        raise ValueError("n_transit must be between 1 and 50")

    # ---- states ----
    states: list[str] = []
    if absorption == "transit":
        states += [f"transit{i + 1}" for i in range(n_transit)]
    if absorption in ("oral", "transit"):
        states.append("depot")
    i_c = len(states)
    states.append("central")
    periph = [f"periph{i + 1}" for i in range(n_cmt - 1)]
    states += periph
    n = len(states)
    i_d = states.index("depot") if "depot" in states else None

    # ---- parameters ----
    names = [d for d in _DISPOSITION[n_cmt] if not (elimination == "mm" and d == "CL")]
    if elimination in ("mm", "mixed"):
        names += _MM
    if absorption == "transit":
        names.append("KTR")
    params = [Parameter.standard(d) for d in names]
    if absorption in ("oral", "transit"):
        params += [Parameter.standard("KA"), Parameter.standard("F", "positive", 1.0),
                   Parameter.standard("ALAG", "nonnegative", 0.0)]
    vname = "V" if n_cmt == 1 else "V1"
    has_cl = elimination in ("linear", "mixed")

    def kmatrix(p, with_cl: bool = True):
        K = jnp.zeros((n, n))
        if absorption == "transit":
            ktr = p["KTR"]
            for i in range(n_transit):
                K = K.at[i, i].add(-ktr)
                K = K.at[i + 1, i].add(ktr)  # next transit or depot
        if i_d is not None:
            K = K.at[i_d, i_d].add(-p["KA"])
            K = K.at[i_c, i_d].add(p["KA"])
        v1 = p[vname]
        if with_cl and has_cl:
            K = K.at[i_c, i_c].add(-p["CL"] / v1)
        for j, (qn, vn) in enumerate((("Q", "V2"), ("Q3", "V3"))[: n_cmt - 1]):
            i_p = i_c + 1 + j
            K = K.at[i_c, i_c].add(-p[qn] / v1)
            K = K.at[i_p, i_c].add(p[qn] / v1)
            K = K.at[i_c, i_p].add(p[qn] / p[vn])
            K = K.at[i_p, i_p].add(-p[qn] / p[vn])
        return K

    periph_pars = (("Q", "V2"), ("Q3", "V3"))[: n_cmt - 1]

    def rhs(t, y, p):
        # written flow by flow (no matrix assembly per evaluation: the ODE path calls this often)
        d = [None] * n
        carried = 0.0
        if absorption == "transit":
            ktr = p["KTR"]
            for i in range(n_transit):
                out = ktr * y[i]
                d[i] = carried - out
                carried = out
        if i_d is not None:
            absorbed = p["KA"] * y[i_d]
            d[i_d] = carried - absorbed
            carried = absorbed
        v1 = p[vname]
        c = y[i_c] / v1
        dc = carried
        if has_cl:
            dc = dc - p["CL"] * c
        if elimination in ("mm", "mixed"):
            dc = dc - p["VMAX"] * c / (p["KM"] + c)
        for j, (qn, vn) in enumerate(periph_pars):
            flow = p[qn] * (c - y[i_c + 1 + j] / p[vn])
            d[i_c + 1 + j] = flow
            dc = dc - flow
        d[i_c] = dc
        return jnp.stack(d)

    def conc(y, p):
        return y[..., i_c] / p[vname]

    dose_cmt = states[0] if absorption != "iv" else "central"
    dose_cmts = tuple(dict.fromkeys([dose_cmt, "central"]))
    i_dose = states.index(dose_cmt)

    bio = lag = None
    if absorption != "iv":
        def bio(p):
            return jnp.ones(n).at[i_dose].set(p["F"])

        def lag(p):
            return jnp.zeros(n).at[i_dose].set(p["ALAG"])

    system_matrix = eigenvalues = None
    if elimination == "linear" and absorption != "transit":
        system_matrix = kmatrix

        def eigenvalues(p):
            lam = _disposition_eigenvalues(n_cmt, p)
            if i_d is not None:
                lam = jnp.concatenate([-jnp.atleast_1d(p["KA"]), lam])
            return lam

    name = f"{n_cmt}cmt_{absorption}{n_transit if absorption == 'transit' else ''}"
    if elimination != "linear":
        name += f"_{elimination}"
    elim = {"linear": "linear", "mm": "Michaelis-Menten", "mixed": "linear + Michaelis-Menten"}[elimination]
    desc = (f"{n_cmt}-compartment PK, {absorption} "
            f"{'(' + str(n_transit) + ' transit compartments) ' if absorption == 'transit' else ''}"
            f"{elim} elimination")
    return Model(
        name=name, states=tuple(states), parameters=tuple(params), rhs=rhs,
        outputs=(Output("conc", "mg/L", "central concentration", conc),),
        dose_compartments=dose_cmts, default_dose_compartment=dose_cmt,
        bioavailability=bio, lag=lag, system_matrix=system_matrix, eigenvalues=eigenvalues,
        description=desc,
        meta={"central": i_c, "volume": vname, "kind": "pk"},
    )


def _disposition_eigenvalues(n_cmt: int, p):
    """Eigenvalues (negative rates, 1/h) of the central/peripheral block, closed form."""
    v1 = p["V"] if n_cmt == 1 else p["V1"]
    k10 = p["CL"] / v1
    if n_cmt == 1:
        return jnp.stack([-k10])
    k12, k21 = p["Q"] / v1, p["Q"] / p["V2"]
    if n_cmt == 2:
        s = k10 + k12 + k21
        alpha = 0.5 * (s + jnp.sqrt(s * s - 4.0 * k10 * k21))
        beta = k10 * k21 / alpha  # avoids cancellation in (s - sqrt(...)) / 2
        return jnp.stack([-alpha, -beta])
    k13, k31 = p["Q3"] / v1, p["Q3"] / p["V3"]
    a0 = k10 * k21 * k31
    a1 = k10 * k31 + k21 * k31 + k21 * k13 + k10 * k21 + k31 * k12
    a2 = k10 + k12 + k13 + k21 + k31
    pp = a1 - a2 * a2 / 3.0
    q = 2.0 * a2 ** 3 / 27.0 - a1 * a2 / 3.0 + a0
    r1 = jnp.sqrt(-(pp ** 3) / 27.0)
    phi = jnp.arccos(jnp.clip(-q / (2.0 * r1), -1.0, 1.0)) / 3.0
    r2 = 2.0 * jnp.cbrt(r1)
    roots = jnp.stack([jnp.cos(phi + 2.0 * jnp.pi * k / 3.0) * r2 - a2 / 3.0 for k in range(3)])
    return roots  # already negative: these are the roots of the characteristic polynomial
