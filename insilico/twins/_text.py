"""The short texts of the twin commands: regimens, targets, value grids and covariates.

* regimen: ``"<amount> mg [q<interval>h] [x<n>][, <duration> h infusion]"``, e.g.
  ``"1000 mg q12h x6, 1 h infusion"`` (6 doses 12 h apart, each a 1-h zero-order infusion),
  ``"500 mg"`` (one bolus), ``"750 mg q8h"`` (every 8 h until the forecast horizon). Doses go
  into the model's default dose compartment; times are hours from the regimen's start.
* target: ``"<metric> in [<low>, <high>] [<units>]"`` with metric ``trough`` or ``peak``
  (mg/L) or ``auc24`` (mg*h/L), e.g. ``"trough in [10, 20] mg/L"``.
* grid: ``"500:2500:250"`` (start:stop:step, both ends included) or ``"8,12,24"``.
* covariates: ``"WT=72,AGE=64,SEX=female"`` (numbers, or category labels of the model).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from insilico.errors import SpecError

__all__ = ["RegimenText", "Target", "parse_covariates", "parse_grid", "parse_regimen", "parse_target"]

_NUM = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_REGIMEN = re.compile(rf"^\s*(?P<amt>{_NUM})\s*mg\s*(?:q\s*(?P<ii>{_NUM})\s*h)?\s*(?:x\s*(?P<n>\d+))?\s*"
                      rf"(?:,\s*(?P<dur>{_NUM})\s*h\s*infusion)?\s*$", re.IGNORECASE)
_TARGET = re.compile(rf"^\s*(?P<metric>trough|peak|auc24)\s+in\s+\[\s*(?P<lo>{_NUM})\s*,\s*(?P<hi>{_NUM})\s*\]"
                     r"\s*(?P<units>\S.*)?$", re.IGNORECASE)
TARGET_UNITS = {"trough": ("mg/l",), "peak": ("mg/l",), "auc24": ("mg*h/l", "mg·h/l", "mg.h/l", "mgh/l", "mg h/l")}


@dataclass(frozen=True)
class RegimenText:
    """A parsed regimen: ``amount`` (mg), ``interval`` (h; None: one dose), ``n`` doses (None:
    repeated until the horizon), infusion ``duration`` (h; 0 = bolus) and the ``text``."""

    amount: float
    interval: float | None
    n: int | None
    duration: float
    text: str

    def dose_times(self, horizon: float) -> np.ndarray:
        """Dose times (h from the start) of the doses given before ``horizon`` hours."""
        if self.interval is None:
            return np.zeros(1)
        n = self.n if self.n is not None else max(1, math.ceil(horizon / self.interval - 1e-9))
        return self.interval * np.arange(n, dtype=float)

    def label(self) -> str:
        every = f" q{self.interval:g}h" if self.interval else ""
        count = f" x{self.n}" if self.n else ""
        inf = f", {self.duration:g} h infusion" if self.duration > 0 else ""
        return f"{self.amount:g} mg{every}{count}{inf}"


@dataclass(frozen=True)
class Target:
    """A target window ``[low, high]`` for ``metric`` (trough, peak: mg/L; auc24: mg*h/L)."""

    metric: str
    low: float
    high: float

    def label(self) -> str:
        units = "mg*h/L" if self.metric == "auc24" else "mg/L"
        return f"{self.metric} in [{self.low:g}, {self.high:g}] {units}"


def parse_regimen(text: str, option: str = "--regimen") -> RegimenText:
    """Parse a regimen text (module docstring); `SpecError` naming ``option`` otherwise."""
    m = _REGIMEN.match(str(text))
    if not m:
        raise SpecError(option, f"{text!r} is not a regimen; write e.g. \"1000 mg q12h x6, 1 h infusion\", "
                                "\"500 mg\" or \"750 mg q8h\"")
    amt = float(m.group("amt"))
    ii = float(m.group("ii")) if m.group("ii") else None
    n = int(m.group("n")) if m.group("n") else None
    dur = float(m.group("dur")) if m.group("dur") else 0.0
    if not amt > 0:
        raise SpecError(option, f"{text!r}: the amount must be > 0 mg")
    if ii is not None and not ii > 0:
        raise SpecError(option, f"{text!r}: the interval must be > 0 h")
    if n is not None and n < 1:
        raise SpecError(option, f"{text!r}: the number of doses must be >= 1")
    if n is not None and n > 1 and ii is None:
        raise SpecError(option, f"{text!r}: give the interval (q<h>h) for more than one dose")
    if ii is not None and dur > ii:
        raise SpecError(option, f"{text!r}: the infusion ({dur:g} h) is longer than the interval ({ii:g} h)")
    return RegimenText(amt, ii, n, dur, str(text))


def parse_target(text: str, option: str = "--target") -> Target:
    """Parse a target text (module docstring); `SpecError` naming ``option`` otherwise."""
    m = _TARGET.match(str(text))
    if not m:
        raise SpecError(option, f"{text!r} is not a target; write e.g. \"trough in [10, 20] mg/L\" or "
                                "\"auc24 in [400, 600] mg*h/L\"")
    metric = m.group("metric").lower()
    lo, hi = float(m.group("lo")), float(m.group("hi"))
    units = (m.group("units") or "").strip().lower()
    if units and units not in TARGET_UNITS[metric]:
        want = "mg*h/L" if metric == "auc24" else "mg/L"
        raise SpecError(option, f"{text!r}: {metric} is in {want}, not {m.group('units').strip()!r} "
                                "(concentrations are mg/L; convert the window)")
    if not 0 <= lo < hi:
        raise SpecError(option, f"{text!r}: the window needs 0 <= low < high")
    return Target(metric, lo, hi)


def parse_grid(text: str, option: str) -> np.ndarray:
    """``"a:b:step"`` (inclusive) or ``"x,y,z"`` as a sorted array of positive numbers."""
    text = str(text).strip()
    try:
        if ":" in text:
            a, b, step = (float(x) for x in text.split(":"))
            if not (step > 0 and b >= a):
                raise ValueError
            values = a + step * np.arange(int(math.floor((b - a) / step + 1e-9)) + 1)
        else:
            values = np.array([float(x) for x in text.split(",") if x.strip()])
    except ValueError:
        raise SpecError(option, f"{text!r} is not a list (\"8,12,24\") or a range start:stop:step "
                                "(\"500:2500:250\")") from None
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise SpecError(option, f"{text!r}: give one or more numbers > 0")
    return np.unique(values)


def parse_covariates(text: str | dict | None, option: str = "--covariates") -> dict:
    """``"WT=72,SEX=female"`` (or a mapping) as ``{name: float or label}``."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in str(text).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise SpecError(option, f"{part.strip()!r} is not NAME=VALUE")
            k, v = part.split("=", 1)
            items.append((k, v))
    out = {}
    for k, v in items:
        k = str(k).strip()
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
            raise SpecError(option, f"{k!r} is not a covariate name")
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = str(v).strip()
    return out
