"""Below-limit-of-quantification (BLQ) handling for NCA.

A sample is BLQ when its concentration is finite and strictly below ``lloq`` (so a sample equal to
the LLOQ is measurable). Samples with a missing (NaN) concentration are never BLQ; they are simply
excluded. Without an ``lloq`` nothing is BLQ and concentrations (zeros included) are used as given,
which is what exact simulated profiles want.

Each BLQ sample is classified by its position relative to the *measurable* samples of the same
profile (PKNCA's ``clean.conc.blq`` convention):

``first``  before the first measurable sample (all BLQ samples when none is measurable);
``middle`` between the first and the last measurable sample;
``last``   after the last measurable sample.

and each class is replaced by an action: ``"zero"`` (set to 0), ``"drop"`` (exclude the sample),
``"half-lloq"`` (set to LLOQ/2), ``"lloq"`` (set to the LLOQ) or a number (set to that value).

Named rules
-----------
``"zero-then-drop"`` (default)
    first -> 0, middle -> drop, last -> drop. The common regulatory/Phoenix-style default:
    pre-absorption BLQ samples are true zeros, BLQ after the first measurable one is unknown and
    excluded, so AUClast ends at the last measurable concentration and λz never sees a BLQ value.
``"pknca"``
    first -> 0, middle -> drop, last -> 0 (PKNCA's ``PKNCA.options("conc.blq")`` default). For
    single-dose parameters this equals the default (trailing zeros do not change Tlast, AUClast or
    λz); it matters for Cmin at steady state.
``"zero"``       every BLQ sample -> 0.
``"drop"``       every BLQ sample excluded.
``"half-lloq"``  first -> 0, middle and last -> LLOQ/2 (the "M6-like" substitution).

A :class:`BLQRule` or a mapping ``{"first": ..., "middle": ..., "last": ...}`` gives full control.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real

import numpy as np

from insilico.errors import SpecError

from ._nca_input import first_true, last_true

_ACTIONS = ("zero", "drop", "half-lloq", "lloq")


def _check_action(field: str, a):
    if isinstance(a, bool) or not (isinstance(a, Real) or a in _ACTIONS):
        raise SpecError(f"blq_rule.{field}", f"expected one of {_ACTIONS} or a number, got {a!r}")
    return float(a) if isinstance(a, Real) else a


@dataclass(frozen=True)
class BLQRule:
    """What to do with BLQ samples before the first, between, and after the last measurable one."""

    first: str | float = "zero"
    middle: str | float = "drop"
    last: str | float = "drop"

    def __post_init__(self):
        for f in ("first", "middle", "last"):
            object.__setattr__(self, f, _check_action(f, getattr(self, f)))

    @classmethod
    def resolve(cls, rule) -> BLQRule:
        """Accept a :class:`BLQRule`, a preset name or a ``{"first", "middle", "last"}`` mapping."""
        if isinstance(rule, BLQRule):
            return rule
        if rule is None:
            return BLQ_PRESETS["zero-then-drop"]
        if isinstance(rule, str):
            if rule not in BLQ_PRESETS:
                raise SpecError("blq_rule", f"unknown rule {rule!r}; choose one of {sorted(BLQ_PRESETS)}")
            return BLQ_PRESETS[rule]
        if isinstance(rule, Mapping):
            extra = set(rule) - {"first", "middle", "last"}
            if extra:
                raise SpecError("blq_rule", f"unknown keys {sorted(extra)}; use first/middle/last")
            return cls(**rule)
        raise SpecError("blq_rule", f"expected a preset name, a mapping or a BLQRule, got {type(rule).__name__}")


BLQ_PRESETS: dict[str, BLQRule] = {
    "zero-then-drop": BLQRule("zero", "drop", "drop"),
    "pknca": BLQRule("zero", "drop", "zero"),
    "zero": BLQRule("zero", "zero", "zero"),
    "drop": BLQRule("drop", "drop", "drop"),
    "half-lloq": BLQRule("zero", "half-lloq", "half-lloq"),
}


def _value(action, lloq_col: np.ndarray) -> np.ndarray:
    if action == "zero":
        return np.zeros_like(lloq_col)
    if action == "drop":
        return np.full_like(lloq_col, np.nan)
    if action == "half-lloq":
        return lloq_col / 2.0
    if action == "lloq":
        return lloq_col.copy()
    return np.full_like(lloq_col, float(action))


def apply_blq(C: np.ndarray, lloq: np.ndarray, rule: BLQRule) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``rule`` to time-sorted rows ``C`` with per-row ``lloq`` (NaN = no LLOQ for that row).

    Returns the cleaned concentrations (dropped samples are NaN) and the number of BLQ samples
    per row.
    """
    lq = lloq[:, None]
    with np.errstate(invalid="ignore"):
        blq = np.isfinite(C) & np.isfinite(lq) & (C < lq)
    measurable = np.isfinite(C) & ~blq
    j = np.arange(C.shape[1])[None, :]
    i_first, has = first_true(measurable)
    i_last, _ = last_true(measurable)
    first = blq & (~has[:, None] | (j < i_first[:, None]))
    last = blq & has[:, None] & (j > i_last[:, None])
    middle = blq & ~first & ~last
    out = C.copy()
    lq_b = np.broadcast_to(lq, C.shape)
    for cls_mask, action in ((first, rule.first), (middle, rule.middle), (last, rule.last)):
        out = np.where(cls_mask, _value(action, lq_b), out)
    return out, blq.sum(axis=1)
