"""The short texts of the twin commands: regimens, targets, value grids and covariates.

* regimen: ``"<amount> mg [q<interval>h] [x<n>][, <duration> h infusion]"``, e.g.
  ``"1000 mg q12h x6, 1 h infusion"`` (6 doses 12 h apart, each a 1-h zero-order infusion),
  ``"500 mg"`` (one bolus), ``"750 mg q8h"`` (every 8 h until the forecast horizon). Doses go
  into the model's default dose compartment; times are hours from the regimen's start.
* target: ``"<metric> [of <output>] in [<low>, <high>] [<units>]"``; metric ``trough`` or ``peak``
  (in the output's units: mg/L for ``conc``), ``auc24`` (its units x h: mg*h/L) or
  ``t>mic(<MIC> [<units>])``, the fraction of the dosing interval during which the output is above
  the MIC (``%T>MIC`` of the antimicrobial PK/PD literature, as a fraction: window in [0, 1], or in
  percent with ``%``); ``of <output>`` names the model output (default: the prior's primary
  output). E.g. ``"trough in [10, 20] mg/L"``, ``"auc24 in [400, 600] mg*h/L"``,
  ``"t>mic(2 mg/L) in [0.5, 1]"`` (= ``"t>mic(2) in [50, 100] %"``), ``"trough of ANC in [1.5, 4]"``.
  ``fT>MIC`` (the free concentration) is refused: with unbound fraction fu, free > MIC <=> total >
  MIC / fu, so write ``t>mic(<MIC / fu>)`` on the total concentration (or name a free output).
  Units, when given, must be the output's (checked by `Target.resolve`).
* grid: ``"500:2500:250"`` (start:stop:step, both ends included) or ``"8,12,24"``.
* covariates: ``"WT=72,AGE=64,SEX=female"`` (numbers, or category labels of the model).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from insilico.errors import SpecError
from insilico.units import multiply

__all__ = ["RegimenText", "Target", "parse_covariates", "parse_grid", "parse_regimen", "parse_target"]

_NUM = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_REGIMEN = re.compile(rf"^\s*(?P<amt>{_NUM})\s*mg\s*(?:q\s*(?P<ii>{_NUM})\s*h)?\s*(?:x\s*(?P<n>\d+))?\s*"
                      rf"(?:,\s*(?P<dur>{_NUM})\s*h\s*infusion)?\s*$", re.IGNORECASE)
_TARGET = re.compile(rf"^\s*(?P<metric>trough|peak|auc24|(?P<free>f?)t\s*>\s*mic\s*\(\s*(?P<mic>{_NUM})\s*"
                     r"(?P<mic_units>[^)]*?)\s*\))(?:\s+of\s+(?P<output>[A-Za-z_][A-Za-z0-9_]*))?"
                     rf"(?:(?<=\))\s*|\s+)in\s*\[\s*(?P<lo>{_NUM})\s*,\s*(?P<hi>{_NUM})\s*\]\s*(?P<units>\S.*)?$",
                     re.IGNORECASE)


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


def _same_units(a: str, b: str) -> bool:
    """Units equal up to case, spacing and the product sign (``*``, ``·``, ``.``, ``^`` for ``**``)."""
    def norm(u):
        return re.sub(r"[\s*·.]", "", u.lower().replace("^", "**"))
    return norm(a) == norm(b)


@dataclass(frozen=True)
class Target:
    """A target window ``[low, high]`` for ``metric`` of ``output`` (None: the prior's primary output).

    trough, peak: in the output's units; auc24: its units x h; ``t>mic``: a fraction of the dosing
    interval (dimensionless), ``mic`` in the output's units. ``units``/``mic_units``: as written
    (empty: the output's), filled in by `resolve`."""

    metric: str
    low: float
    high: float
    output: str | None = None
    mic: float | None = None
    units: str = ""
    mic_units: str = ""

    def label(self) -> str:
        of, window = f" of {self.output}" if self.output else "", f"[{self.low:g}, {self.high:g}]"
        if self.metric == "t>mic":
            return f"t>mic({self.mic:g}{' ' + self.mic_units if self.mic_units else ''}){of} in {window}"
        return f"{self.metric}{of} in {window}" + (f" {self.units}" if self.units not in ("", "1") else "")

    def resolve(self, outputs: dict, primary: str, option: str = "--target") -> tuple[Target, str]:
        """(this target with its units filled in, the output it is computed on) for a model with
        ``outputs`` {name: units}; `SpecError` naming ``option`` for an unknown output or units
        other than the output's."""
        name = self.output or primary
        if name not in outputs:
            raise SpecError(option, f"{self.label()!r}: the model has no output {name!r} "
                                    f"(outputs: {', '.join(outputs)})")
        u = outputs[name]
        want = multiply(u, "h") if self.metric == "auc24" else u
        given = self.mic_units if self.metric == "t>mic" else self.units
        ok = [want] + ([multiply("h", u)] if self.metric == "auc24" else [])
        if given and not any(_same_units(given, w) for w in ok):
            what = "the MIC" if self.metric == "t>mic" else self.metric
            raise SpecError(option, f"{self.label()!r}: {what} of {name} is in {want}, not {given!r} "
                                    "(convert the window)")
        if self.metric == "t>mic":
            return replace(self, mic_units=u), name
        return replace(self, units=want), name

    def evaluate(self, f: np.ndarray, t: np.ndarray, tau: float) -> np.ndarray:
        """The metric of predictions ``f`` (..., T) at times ``t`` (T,) covering one dosing interval
        of ``tau`` h (``t[0]`` just after its dose, ``t[-1]`` its end): trough = ``f[..., -1]``; peak
        = the maximum; auc24 = 24 / tau x the trapezoidal AUC; t>mic = the time above ``mic`` over
        ``t[-1] - t[0]``, each grid segment's share above found by linear interpolation of the
        crossing (exact for piecewise-linear curves; O(h^2) otherwise)."""
        if self.metric == "trough":
            return f[..., -1]
        if self.metric == "peak":
            return f.max(-1)
        if self.metric == "auc24":
            return np.trapezoid(f, t, axis=-1) * 24.0 / tau
        a, b = f[..., :-1] - self.mic, f[..., 1:] - self.mic
        cross = (a > 0) != (b > 0)
        s = np.divide(a, a - b, out=np.zeros(np.broadcast(a, b).shape), where=cross)   # crossing, share of segment
        share = np.where(cross, np.where(a > 0, s, 1.0 - s), (a > 0).astype(float))
        return share @ np.diff(t) / (t[-1] - t[0])


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
        raise SpecError(option, f"{text!r} is not a target; write e.g. \"trough in [10, 20] mg/L\", "
                                "\"auc24 in [400, 600] mg*h/L\", \"t>mic(2 mg/L) in [0.5, 1]\" or "
                                "\"trough of ANC in [1.5, 4]\"")
    if m.group("free"):
        raise SpecError(option, f"{text!r}: fT>MIC is for the free concentration; the twin computes the time above "
                                "the MIC of a model output: with unbound fraction fu write t>mic(<MIC / fu>) on the "
                                "total concentration, or name a free-concentration output with 'of <output>'")
    lo, hi = float(m.group("lo")), float(m.group("hi"))
    units = (m.group("units") or "").strip()
    if m.group("mic") is None:
        if not 0 <= lo < hi:
            raise SpecError(option, f"{text!r}: the window needs 0 <= low < high")
        return Target(m.group("metric").lower(), lo, hi, m.group("output"), units=units)
    mic = float(m.group("mic"))
    if not mic > 0:
        raise SpecError(option, f"{text!r}: the MIC must be > 0")
    if units == "%":
        lo, hi = lo / 100.0, hi / 100.0
    elif units:
        raise SpecError(option, f"{text!r}: t>mic is a fraction of the dosing interval; give the window as "
                                f"fractions ([0.5, 1]) or in percent ([50, 100] %), not in {units!r}")
    if not 0 <= lo < hi <= 1:
        raise SpecError(option, f"{text!r}: the window of a fraction of the interval needs 0 <= low < high <= 1 "
                                "(100 %)")
    return Target("t>mic", lo, hi, m.group("output"), mic=mic, mic_units=m.group("mic_units").strip())


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
