"""Formatting of numbers in result tables (CLI tables, HTML report): one rule everywhere."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["format_value"]


def format_value(v) -> str:
    """A table cell as text: missing (None, NA, NaN) ``–``; ±inf ``∞``/``−∞``; booleans yes/no;
    floats with 4 significant digits (``%.4g``), or 3 in exponent form (``%.3g``) when the
    magnitude is below 1e-3 or at least 1e6 (0 stays ``0``); anything else ``str(v)``."""
    if v is None or v is pd.NA:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "–" if math.isnan(v) else ("∞" if v > 0 else "−∞")
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)
