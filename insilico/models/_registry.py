"""Built-in model names and lookup.

Names: ``{1,2,3}cmt_{iv,oral,transitN}[_mm|_mixed]`` for PK models, optionally followed by
``+ke0`` (effect compartment) and ``+<pd>`` with ``<pd>`` in linear, emax, sigmoid_emax,
irm1..irm4. Examples: ``2cmt_oral``, ``1cmt_iv_mm``, ``1cmt_transit4``,
``2cmt_oral+ke0+sigmoid_emax``, ``1cmt_oral_mm+irm1``.
"""
from __future__ import annotations

import functools
import re

from insilico.errors import SpecError
from insilico.models._base import Model
from insilico.models._pd import PD_MODELS, compose
from insilico.models._pk import pk_model

_PK_RE = re.compile(r"^([123])cmt_(iv|oral|transit(\d+)?)(?:_(mm|mixed))?$")


@functools.cache
def get_model(name: str) -> Model:
    """Return the built-in model called ``name`` (cached: same name -> same object)."""
    parts = name.strip().split("+")
    m = _PK_RE.match(parts[0])
    if not m:
        raise SpecError("model", f"unknown model {name!r}; see `insilico models` for built-ins "
                                 "(e.g. 2cmt_oral, 1cmt_iv_mm, 2cmt_oral+emax)")
    absorption = "transit" if m.group(2).startswith("transit") else m.group(2)
    pk = pk_model(int(m.group(1)), absorption, m.group(4) or "linear",
                  n_transit=int(m.group(3) or 3))
    rest = parts[1:]
    if not rest:
        return pk
    effect = rest[0] == "ke0"
    if effect:
        rest = rest[1:]
    if len(rest) != 1 or rest[0] not in PD_MODELS:
        raise SpecError("model", f"unknown PD part in {name!r}; PD models: {sorted(PD_MODELS)}")
    return compose(pk, PD_MODELS[rest[0]](), effect_compartment=effect)


def builtin_model_names() -> list[str]:
    """A representative list of built-in names (every PK model, and PK+PD examples)."""
    pk = [f"{n}cmt_{a}{s}" for n in (1, 2, 3) for a in ("iv", "oral", "transit3")
          for s in ("", "_mm", "_mixed")]
    pd = [f"1cmt_oral+{d}" for d in PD_MODELS] + ["2cmt_oral+ke0+sigmoid_emax", "1cmt_iv+ke0+emax"]
    return pk + pd
