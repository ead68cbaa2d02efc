"""Default units and long names of covariates (CF-style ``units``/``long_name`` attributes),
and the naming rules of a cohort spec.

Units follow :mod:`insilico.units` (pint-parseable). Parameters take theirs from
``insilico.models.PARAMETER_INFO``. A spec may override any of them (``units:``, ``long_name:``).
"""
from __future__ import annotations

import re

COVARIATES: dict[str, tuple[str, str]] = {
    "AGE": ("years", "age"),
    "SEX": ("1", "sex"),
    "WT": ("kg", "body weight"),
    "HT": ("cm", "height"),
    "SCR": ("mg/dL", "serum creatinine"),
    "BMI": ("kg/m**2", "body-mass index"),
    "BSA": ("m**2", "body-surface area (Mosteller 1987)"),
    "LBW": ("kg", "lean body weight (Janmahasatian 2005)"),
    "CRCL": ("mL/min", "creatinine clearance (Cockcroft-Gault 1976)"),
    "EGFR": ("mL/min/(1.73*m**2)", "estimated GFR (CKD-EPI 2021 creatinine, race-free)"),
    "ALB": ("g/dL", "serum albumin"),
}

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
LABEL_RE = re.compile(r"^[^\s]+$")
RESERVED = {"subject", "occasion", "attempt", "eta", "kappa", "copula_z", "resample_row"}
