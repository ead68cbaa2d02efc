"""Built-in model names and lookup.

A name is ``PK[+metN][+ke0][+PD]`` or ``PK[+metN]+ddi_<mechanisms>(<PK>)``:

* ``PK`` = ``{1,2,3}cmt_{iv,oral,transitN}`` with an optional elimination suffix: ``_mm`` or
  ``_mixed`` (Michaelis–Menten, linear + MM), or target-mediated disposition ``_tmdd`` (full),
  ``_tmdd_qss`` (quasi-steady state) or ``_tmdd_mm`` (Michaelis–Menten approximation);
* ``+met1`` / ``+met2``: a metabolite with 1 or 2 compartments formed from the parent (not after
  a TMDD model);
* ``+ddi_<mechanisms>(<PK>)``: a perpetrator drug (a PK name as above, without ``+`` parts)
  interacting with the victim named before it, mechanisms ``competitive``, ``mbi``, ``induction``
  joined by ``_`` (`insilico.models.ddi_model`); last in a name (no PD part after it);
* ``+ke0``: an effect compartment;
* ``+PD`` with PD in linear, emax, sigmoid_emax, irm1..irm4, friberg, friberg_emax, simeoni.

Examples: ``2cmt_oral``, ``1cmt_iv_mm``, ``1cmt_transit4``, ``2cmt_oral+ke0+sigmoid_emax``,
``1cmt_oral_mm+irm1``, ``1cmt_iv_tmdd_qss``, ``2cmt_oral+met1``, ``1cmt_iv+friberg``,
``1cmt_oral+ddi_competitive(2cmt_oral)``, ``2cmt_oral+ddi_mbi_induction(1cmt_oral)``.
"""
from __future__ import annotations

import functools
import re

from insilico.errors import SpecError
from insilico.models._base import Model
from insilico.models._ddi import ddi_model, parse_ddi_part
from insilico.models._metabolite import add_metabolite
from insilico.models._pd import PD_MODELS, compose
from insilico.models._pk import pk_model
from insilico.models._tmdd import tmdd_model

_PK_RE = re.compile(r"^([123])cmt_(iv|oral|transit(\d+)?)(?:_(mm|mixed|tmdd|tmdd_qss|tmdd_mm))?$")
_TMDD = {"tmdd": "full", "tmdd_qss": "qss", "tmdd_mm": "mm"}
_MET = {"met1": 1, "met2": 2}


def _base_model(part: str, name: str) -> Model:
    m = _PK_RE.match(part)
    if not m:
        raise SpecError("model", f"unknown model {name!r}; see `insilico models` for built-ins "
                                 "(e.g. 2cmt_oral, 1cmt_iv_mm, 2cmt_oral+emax, 1cmt_iv_tmdd, 2cmt_oral+met1)")
    absorption = "transit" if m.group(2).startswith("transit") else m.group(2)
    n_cmt, n_transit, elim = int(m.group(1)), int(m.group(3) or 3), m.group(4) or "linear"
    if elim in _TMDD:
        return tmdd_model(n_cmt, absorption, _TMDD[elim], n_transit=n_transit)
    return pk_model(n_cmt, absorption, elim, n_transit=n_transit)


@functools.cache
def get_model(name: str) -> Model:
    """Return the built-in model called ``name`` (cached: same name -> same object)."""
    parts = name.strip().split("+")
    model = _base_model(parts[0], name)
    rest = parts[1:]
    if rest and rest[0] in _MET:
        model = add_metabolite(model, _MET[rest[0]])
        rest = rest[1:]
    ddi = parse_ddi_part(rest[0]) if rest else None
    if ddi is not None:
        if len(rest) > 1:
            raise SpecError("model", f"nothing may follow the DDI part of {name!r} (PD blocks are not composed "
                                     "with a DDI model)")
        return ddi_model(model, _base_model(ddi[1], name), ddi[0])
    if not rest:
        return model
    effect = rest[0] == "ke0"
    if effect:
        rest = rest[1:]
    if len(rest) != 1 or rest[0] not in PD_MODELS:
        raise SpecError("model", f"unknown PD part in {name!r}; expected PK[+met1|+met2][+ke0][+PD] with PD in "
                                 f"{sorted(PD_MODELS)}")
    return compose(model, PD_MODELS[rest[0]](), effect_compartment=effect)


def builtin_model_names() -> list[str]:
    """A representative list of built-in names (every PK model, TMDD and metabolite variants,
    and PK+PD examples)."""
    pk = [f"{n}cmt_{a}{s}" for n in (1, 2, 3) for a in ("iv", "oral", "transit3")
          for s in ("", "_mm", "_mixed")]
    tmdd = ["1cmt_iv_tmdd", "1cmt_iv_tmdd_qss"]
    met = ["2cmt_oral+met1"]
    pd = [f"1cmt_oral+{d}" for d in PD_MODELS] + ["2cmt_oral+ke0+sigmoid_emax", "1cmt_iv+ke0+emax"]
    return pk + tmdd + met + pd
