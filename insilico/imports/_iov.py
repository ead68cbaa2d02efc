"""Inter-occasion variability (IOV) of a NONMEM control stream -> the population file's ``iov`` section.

NONMEM's idiom (NONMEM Users Guide VIII, ``$OMEGA ... BLOCK(n) SAME``; Karlsson & Sheiner, J Pharmacokinet
Biopharm 1993;21:735): one $OMEGA block per occasion, the first with its values, each later one ``SAME``
(the same Omega_IOV, its ETAs independent of the first's), and in $PK occasion indicators that select
the ETA of the record's occasion, e.g.::

    $PK
    OCC1 = 0
    IF (OCC.EQ.1) OCC1 = 1          ; ... one indicator per occasion
    IOV_CL = OCC1*ETA(3) + OCC2*ETA(4) + OCC3*ETA(5)
    CL = THETA(1)*EXP(ETA(1) + IOV_CL)
    $OMEGA BLOCK(1) 0.04            ; occasion 1
    $OMEGA BLOCK(1) SAME            ; occasion 2
    $OMEGA BLOCK(1) SAME            ; occasion 3

Other ways of writing the selection (``IF (OCC.EQ.2) IOV_CL = ETA(4)``, IF/THEN blocks, ``EXP(IOV_CL)``
as a separate factor, ``BLOCK(n) SAME`` with one ETA per parameter, ``SAME(k)`` for k repeated blocks)
are the same function of the data and are recognised by what they compute, not by their text
(`split_iov`): with the occasion column at value v, parameter P must be its value without IOV times
``EXP(ETA)`` of exactly one ETA, the ETA at P's position in the v-th block of one SAME chain.

insilico's ``iov`` (`insilico.population.IOVSpec`): P of subject i on occasion k is
TV_i exp(eta_i + kappa_ik), kappa_ik ~ N(0, omega_iov^2) independent over k, one diagonal Omega_IOV
shared by every occasion; the fit reads each record's occasion 1..K from the data's ``OCC`` column.
So NONMEM's occasion value v must select the v-th block (v = 1..K), and a block's covariances must be 0.
"""
from __future__ import annotations

import re

import sympy

__all__ = ["IovError", "eta_positions", "expand_same_repeats", "same_chains", "split_iov"]


class IovError(Exception):
    """An IOV form outside the translated ones (message: why)."""


def expand_same_repeats(text: str) -> tuple[str, list[str]]:
    """``$OMEGA BLOCK(n) SAME(k)`` (k blocks SAME as the previous one, NONMEM 7.4+) written as k records
    ``$OMEGA BLOCK(n) SAME`` (pharmpy-core reads one); returns (text, notes)."""
    notes = []

    def rep(m):
        k = int(m.group(3))
        notes.append(f"{m.group(0).strip()}: read as {k} records `$OMEGA BLOCK({m.group(2)}) SAME`")
        return "\n".join(f"{m.group(1)} BLOCK({m.group(2)}) SAME{m.group(4)}" for _ in range(k))
    out = re.sub(r"^(\$OME\w*)\s+BLOCK\s*\(\s*(\d+)\s*\)\s*SAME\s*\(\s*(\d+)\s*\)([^\n]*)$", rep, text,
                 flags=re.M | re.I)
    return out, notes


def same_chains(model) -> list[list[tuple[str, ...]]]:
    """The SAME chains of $OMEGA: runs of two or more consecutive blocks with the same (size, Omega
    symbols), as pharmpy-core gives them (a ``SAME`` block repeats the previous block's parameters).
    Each chain is its blocks (occasions 1..K) in order, each block its ETA names (pharmpy's)."""
    chains, cur, prev = [], [], None
    for d in model.random_variables.etas:
        key = (len(d.names), str(d.variance))
        if cur and key == prev:
            cur.append(tuple(d.names))
        else:
            if len(cur) > 1:
                chains.append(cur)
            cur = [tuple(d.names)]
        prev = key
    if len(cur) > 1:
        chains.append(cur)
    return chains


def eta_positions(chains) -> dict[str, tuple[int, int, int]]:
    """ETA name -> (chain index, occasion k (1-based), position in the block (0-based))."""
    return {eta: (c, k, p) for c, chain in enumerate(chains) for k, block in enumerate(chain, start=1)
            for p, eta in enumerate(block)}


def _fold_equal(e):
    """A Piecewise whose branches are all the same expression, replaced by that expression."""
    return e.replace(lambda x: isinstance(x, sympy.Piecewise) and len({a.expr for a in x.args}) == 1,
                     lambda x: x.args[0].expr)


def _number(v: float):
    return sympy.Integer(int(v)) if float(v).is_integer() else sympy.Float(v)


def split_iov(expr, columns: set[str], positions: dict, dataset, label, name: str):
    """Split parameter ``name``'s full $PK expression into (its expression without IOV, info or None).

    ``positions``: `eta_positions` of the SAME chains; ``label``: pharmpy ETA name -> ``ETA(j)``;
    ``dataset``: the data (for the occasion column's values) or None. ``info``: ``{chain, position,
    column, etas (the ETA of occasion 1..K), no_iov (values of the column where no IOV ETA enters)}``.
    The occasion column is the one data column the expression reads only through the IOV ETAs; at each
    value v of it (the numbers the conditions test, and the data's values) the expression must be its
    value without IOV times ``EXP(ETA)`` of the ETA at one position of the v-th block of one chain (or
    carry no IOV ETA). Anything else: `IovError`."""
    present = sorted({s.name for s in expr.free_symbols} & set(positions), key=lambda e: positions[e])
    if not present:
        return expr, None
    etas = ", ".join(label(e) for e in present)
    base = _fold_equal(expr.subs({sympy.Symbol(e): 0 for e in positions}))
    cols = sorted({s.name for s in expr.free_symbols if s.name in columns} - {s.name for s in base.free_symbols})
    if len(cols) != 1:
        raise IovError(f"{name} carries {etas} of a $OMEGA SAME chain (inter-occasion variability) "
                       + ("without an occasion indicator (IF (OCC.EQ.k) on a data column)" if not cols else
                          f"selected by several data columns ({', '.join(cols)}); one occasion column is translated"))
    col = sympy.Symbol(cols[0])
    values = set()
    for rel in expr.atoms(sympy.core.relational.Relational):
        if col in rel.free_symbols:
            values |= {float(side) for side in (rel.lhs, rel.rhs) if side.is_number}
    if dataset is not None and cols[0] in getattr(dataset, "columns", ()):
        values |= {float(v) for v in dataset[cols[0]].dropna().unique()}
    found, no_iov = {}, []
    for v in sorted(values):
        ev = _fold_equal(expr.subs(col, _number(v)))
        here = sorted({s.name for s in ev.free_symbols} & set(positions), key=lambda e: positions[e])
        shown = f"{cols[0]} = {v:g}"
        if not here:
            if sympy.simplify(ev - base) != 0:
                raise IovError(f"{name} at {shown} (no IOV ETA) differs from {name} without IOV")
            no_iov.append(v)
            continue
        if len(here) > 1:
            raise IovError(f"{name} at {shown} carries {', '.join(label(e) for e in here)}: one ETA per occasion")
        eta = here[0]
        if sympy.simplify(sympy.powsimp(ev / base, force=True) - sympy.exp(sympy.Symbol(eta))) != 0:
            raise IovError(f"{name} at {shown} is not {name} without IOV times EXP({label(eta)}) (insilico's IOV is "
                           "TV*EXP(ETA + KAPPA))")
        found[v] = eta
    if not found:
        raise IovError(f"{name} carries {etas} but at no value of {cols[0]} (tested: "
                       f"{', '.join(f'{v:g}' for v in sorted(values)) or 'none'})")
    chain_pos = {positions[e][::2] for e in found.values()}
    if len(chain_pos) != 1:
        raise IovError(f"{name} takes {', '.join(label(e) for e in found.values())}: ETAs of different SAME chains "
                       "or block positions (each occasion's ETA must be the same element of its block)")
    (c, p), = chain_pos
    by_occ = {positions[e][1]: (v, e) for v, e in found.items()}
    wrong = [f"{cols[0]} = {v:g} selects {label(e)} of occasion block {positions[e][1]}"
             for v, e in found.items() if v != positions[e][1]]
    if wrong:
        raise IovError(f"{name}: {'; '.join(wrong)}; insilico's occasion k is {cols[0]} = k (renumber the "
                       "occasions 1..K in the order of the $OMEGA blocks)")
    return base, {"chain": c, "position": p, "column": cols[0], "occasions": by_occ, "no_iov": no_iov}
