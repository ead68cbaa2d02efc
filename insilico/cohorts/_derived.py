"""Derived covariates (pure ``jax.numpy`` functions, vectorised over subjects).

Inputs use the standard covariate names and units: ``WT`` body weight (kg), ``HT`` height (cm),
``AGE`` (years), ``SCR`` serum creatinine (mg/dL), ``SEX`` categorical with a ``female``
category (``female`` is a boolean array below).

* BMI: body-mass index, WT / (HT/100)^2, kg/m2.
* BSA: body-surface area, Mosteller (1987, N Engl J Med 317:1098): sqrt(HT * WT / 3600), m2.
* LBW: lean body weight, Janmahasatian et al. (2005, Clin Pharmacokinet 44:1051):
  men 9270 WT / (6680 + 216 BMI), women 9270 WT / (8780 + 244 BMI), kg.
* CRCL: creatinine clearance, Cockcroft & Gault (1976, Nephron 16:31), total body weight:
  (140 - AGE) * WT / (72 * SCR), times 0.85 for women, mL/min.
* EGFR: CKD-EPI 2021 race-free creatinine equation (Inker et al. 2021, N Engl J Med
  385:1737): 142 * min(SCR/k, 1)^a * max(SCR/k, 1)^-1.200 * 0.9938^AGE * (1.012 if female),
  k = 0.7 (F) / 0.9 (M), a = -0.241 (F) / -0.302 (M); mL/min/1.73m2.
"""
from __future__ import annotations

import jax.numpy as jnp

__all__ = [
    "DERIVED_INPUTS",
    "bmi",
    "bsa_mosteller",
    "crcl_cockcroft_gault",
    "egfr_ckd_epi_2021",
    "lbw_janmahasatian",
]


def bmi(wt, ht):
    """Body-mass index (kg/m2) from weight (kg) and height (cm)."""
    h = ht / 100.0
    return wt / (h * h)


def bsa_mosteller(wt, ht):
    """Body-surface area (m2), Mosteller 1987: sqrt(HT[cm] * WT[kg] / 3600)."""
    return jnp.sqrt(ht * wt / 3600.0)


def lbw_janmahasatian(wt, ht, female):
    """Lean body weight (kg), Janmahasatian et al. 2005 (``female`` boolean)."""
    b = bmi(wt, ht)
    return jnp.where(female, 9270.0 * wt / (8780.0 + 244.0 * b), 9270.0 * wt / (6680.0 + 216.0 * b))


def crcl_cockcroft_gault(age, wt, scr, female):
    """Creatinine clearance (mL/min), Cockcroft-Gault 1976, total body weight (kg), SCR mg/dL."""
    return (140.0 - age) * wt / (72.0 * scr) * jnp.where(female, 0.85, 1.0)


def egfr_ckd_epi_2021(age, scr, female):
    """eGFR (mL/min/1.73m2), CKD-EPI 2021 race-free creatinine equation (Inker et al. 2021)."""
    kappa = jnp.where(female, 0.7, 0.9)
    alpha = jnp.where(female, -0.241, -0.302)
    r = scr / kappa
    return (142.0 * jnp.minimum(r, 1.0) ** alpha * jnp.maximum(r, 1.0) ** -1.200
            * 0.9938 ** age * jnp.where(female, 1.012, 1.0))


# name -> (function, covariate inputs; "female" means a boolean from SEX)
DERIVED_INPUTS = {
    "BMI": (bmi, ("WT", "HT")),
    "BSA": (bsa_mosteller, ("WT", "HT")),
    "LBW": (lbw_janmahasatian, ("WT", "HT", "female")),
    "CRCL": (crcl_cockcroft_gault, ("AGE", "WT", "SCR", "female")),
    "EGFR": (egfr_ckd_epi_2021, ("AGE", "SCR", "female")),
}
