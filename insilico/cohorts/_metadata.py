"""Default units and long names (CF-style ``units``/``long_name`` attributes).

Covariates: AGE years, WT kg, HT cm, SCR mg/dL, CRCL mL/min, EGFR mL/min/1.73m2, BMI kg/m2,
BSA m2, LBW kg. Parameters: clearances L/h, volumes L, rate constants 1/h (insilico's
time-in-hours convention). A spec may override any of them (``units:``, ``long_name:``).
"""
from __future__ import annotations

import re

COVARIATES: dict[str, tuple[str, str]] = {
    "AGE": ("years", "age"),
    "SEX": ("1", "sex"),
    "WT": ("kg", "body weight"),
    "HT": ("cm", "height"),
    "SCR": ("mg/dL", "serum creatinine"),
    "BMI": ("kg/m2", "body-mass index"),
    "BSA": ("m2", "body-surface area (Mosteller 1987)"),
    "LBW": ("kg", "lean body weight (Janmahasatian 2005)"),
    "CRCL": ("mL/min", "creatinine clearance (Cockcroft-Gault 1976)"),
    "EGFR": ("mL/min/1.73m2", "estimated GFR (CKD-EPI 2021 creatinine, race-free)"),
    "ALB": ("g/dL", "serum albumin"),
}

PARAMETERS: dict[str, tuple[str, str]] = {
    "CL": ("L/h", "clearance"),
    "V": ("L", "volume of distribution"),
    "V1": ("L", "central volume"),
    "V2": ("L", "peripheral volume"),
    "V3": ("L", "peripheral volume 2"),
    "Q": ("L/h", "intercompartmental clearance"),
    "Q3": ("L/h", "intercompartmental clearance 2"),
    "KA": ("1/h", "first-order absorption rate constant"),
    "KTR": ("1/h", "transit rate constant"),
    "F": ("1", "bioavailability"),
    "ALAG": ("h", "absorption lag time"),
    "VMAX": ("mg/h", "maximum elimination rate"),
    "KM": ("mg/L", "Michaelis-Menten constant"),
    "KE": ("1/h", "elimination rate constant"),
    "EC50": ("mg/L", "concentration at half-maximal effect"),
    "EMAX": ("1", "maximal effect"),
}

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
LABEL_RE = re.compile(r"^[^\s]+$")
RESERVED = {"subject", "occasion", "attempt", "eta", "kappa", "copula_z"}
