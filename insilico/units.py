"""Units: one grammar for every ``units`` attribute insilico writes.

A units string is a product of unit symbols with ``*``, quotients with ``/``, integer powers
with ``**``, parentheses and numeric factors (``mL/min/(1.73*m**2)``), or ``1`` for a
dimensionless quantity (CF convention). Every such string parses with pint
(``pint.UnitRegistry().parse_expression``) and UDUNITS-style readers: no ``·``, no ``m2``, no
lists. Symbols follow insilico's conventions: time ``h``, amount ``mg``, volume ``L``,
clearance ``L/h``, concentration ``mg/L``.
"""
from __future__ import annotations

import re

__all__ = ["DIMENSIONLESS", "check_units", "is_valid_units", "multiply"]

DIMENSIONLESS = "1"

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<sym>[A-Za-z]+)|(?P<op>\*\*|[*/()]))")


def is_valid_units(units: str) -> bool:
    """True if ``units`` follows the grammar (symbols, numbers, ``*``, ``/``, ``**int``, parentheses)."""
    if not isinstance(units, str) or not units.strip():
        return False
    pos, depth, prev = 0, 0, "op"
    s = units.strip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if m is None:
            return False
        pos = m.end()
        if m.group("op") == "(":
            if prev not in ("op",):
                return False
            depth += 1
            prev = "op"
        elif m.group("op") == ")":
            depth -= 1
            if depth < 0 or prev == "op":
                return False
            prev = "term"
        elif m.group("op") == "**":
            if prev != "term":
                return False
            m2 = re.compile(r"\s*-?\d+").match(s, pos)
            if m2 is None:
                return False
            pos, prev = m2.end(), "term"
        elif m.group("op"):
            if prev != "term":
                return False
            prev = "op"
        else:
            if prev == "term":   # two terms side by side ("mg L", "1.73m2")
                return False
            prev = "term"
    return depth == 0 and prev == "term"


def check_units(units: str, where: str = "units") -> str:
    """Return ``units`` if it follows the grammar, else raise ``SpecError(where, ...)``."""
    if not is_valid_units(units):
        from insilico.errors import SpecError
        raise SpecError(where, f"invalid units {units!r}: write products with '*', quotients with '/', "
                               f"powers with '**' (e.g. 'mg*h/L', 'kg/m**2'), '1' if dimensionless")
    return units


def multiply(a: str, b: str) -> str:
    """Units of a product, e.g. ``multiply("mg/L", "h") == "mg*h/L"`` (AUC of a concentration)."""
    if a == DIMENSIONLESS:
        return b
    if b == DIMENSIONLESS:
        return a
    if "/" in a and "(" not in a:
        num, den = a.split("/", 1)
        num = b if num == DIMENSIONLESS else f"{num}*{b}"
        return f"{num}/{den}"
    return f"({a})*{b}" if "/" in a else f"{a}*{b}"
