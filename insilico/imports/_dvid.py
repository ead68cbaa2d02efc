"""Several observed outputs in a NONMEM $ERROR: the prediction selected by the data item DVID.

A two-output control stream computes one Y per output and selects it by DVID, as a block::

    Y_2 = E + E*EPS(2)
    IF (DVID.EQ.1) THEN
        Y = Y                 ; the concentration's Y, assigned above
    ELSE
        Y = Y_2
    END IF

or as one-liners ``IF (DVID.EQ.2) Y = E + E*EPS(2)``. pharmpy-core does not read such a selection
(it drops the block above, and Y would silently be the first output alone), so it is read here from the
control stream's text: `rewrite_dvid_switch` writes each DVID's assignment of Y as one of its own,
``YDVID<k> = <expr>`` (``YDVIDX`` for the ELSE branch), on the same line, and blanks the IF/ELSE/END IF
lines, so that pharmpy reads every output's Y and the lines keep their numbers. Which DVID values an
ELSE (or no assignment at all: the Y assigned before) stands for comes from the data set
(`dvid_targets`). What the selection cannot express (another condition, other statements in its
branches, Y assigned again after it) is reported line by line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_DVID = re.compile(r"\bDVID\b", re.I)
_DVID_EQ = re.compile(r"^\s*DVID\s*(?:\.EQ\.|==)\s*(\d+)(?:\.0*)?\s*$", re.I)
_IF_THEN = re.compile(r"^IF\s*\((.*)\)\s*THEN$", re.I)
_ELSE_IF = re.compile(r"^ELSE\s*IF\s*\((.*)\)\s*THEN$", re.I)
_ELSE = re.compile(r"^ELSE$", re.I)
_END_IF = re.compile(r"^END\s*IF$", re.I)
_ONE_LINE_IF = re.compile(r"^IF\s*\(([^()]*)\)\s*(?!THEN\b)(\S.*)$", re.I)
_Y_ASSIGN = re.compile(r"^Y\s*=(?!=)\s*(.+)$", re.I)
_ANY_ASSIGN = re.compile(r"^([A-Za-z_]\w*)\s*=(?!=)")
ELSE_NAME = "YDVIDX"
_BAD = object()      # a condition that is not DVID.EQ.<value> (reported)


def y_name(dvid: int) -> str:
    """The variable the rewritten $ERROR assigns DVID ``dvid``'s Y to."""
    return f"YDVID{dvid}"


@dataclass
class DvidSwitch:
    """The DVID selection of a $ERROR record.

    branches : {DVID value or None (ELSE): (variable assigned in the rewritten code, ``$ERROR line k: code``)}.
    errors : ``$ERROR line k: code -- why`` for each line of the selection that cannot be translated.
    """

    branches: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _code(line: str) -> str:
    return line.split(";")[0].strip()


def rewrite_dvid_switch(record: str) -> tuple[str, DvidSwitch | None]:
    """The text of a $ERROR record (what follows ``$ERROR``; line 0 the rest of its own line) with its
    DVID selection rewritten (module docstring), and the selection; (record, None) without one."""
    lines = record.split("\n")
    if not any(_DVID.search(_code(ln)) for ln in lines):
        return record, None
    sw = DvidSwitch()
    out = list(lines)

    def where(k):
        return f"$ERROR line {k}: {_code(lines[k])}"

    def branch(dvid, k, expr):
        if dvid in sw.branches:
            sw.errors.append(f"{where(k)} -- DVID {dvid if dvid is not None else '(ELSE)'} is selected twice")
            return
        name = y_name(dvid) if dvid is not None else ELSE_NAME
        sw.branches[dvid] = (name, where(k))
        indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
        out[k] = f"{indent}{name} = {expr}"

    def condition(cond, k):
        m = _DVID_EQ.match(cond)
        if m is None:
            sw.errors.append(f"{where(k)} -- an output selection must test DVID.EQ.<value> alone; not translated")
            return _BAD
        return int(m.group(1))

    k, first = 0, None
    while k < len(lines):
        code = _code(lines[k])
        if (m := _IF_THEN.match(code)) and _DVID.search(m.group(1)):
            first = k if first is None else first
            depth, dvid, j, body = 1, condition(m.group(1), k), k + 1, []
            out[k] = ""
            while j < len(lines) and depth:
                c = _code(lines[j])
                if _IF_THEN.match(c):
                    depth += 1
                elif _END_IF.match(c):
                    depth -= 1
                if depth == 1 and (mm := _ELSE_IF.match(c)):
                    dvid, out[j] = condition(mm.group(1), j), ""
                    body = []
                elif depth == 1 and _ELSE.match(c):
                    dvid, out[j], body = None, "", []
                elif depth == 0:
                    out[j] = ""
                elif c:
                    y = _Y_ASSIGN.match(c)
                    if depth > 1 or y is None or body:
                        sw.errors.append(f"{where(j)} -- a branch of an output selection (IF on DVID) must be one "
                                         "line `Y = <prediction>`; not translated")
                    elif dvid is not _BAD:
                        branch(dvid, j, y.group(1))
                    body.append(j)
                j += 1
            if depth:
                sw.errors.append(f"{where(k)} -- IF on DVID without END IF; not translated")
            k = j
            continue
        if (m := _ONE_LINE_IF.match(code)) and _DVID.search(m.group(1)):
            first = k if first is None else first
            y = _Y_ASSIGN.match(m.group(2).strip())
            if y is None:
                sw.errors.append(f"{where(k)} -- only Y (the prediction) may depend on DVID; not translated")
            else:
                dvid = condition(m.group(1), k)
                if dvid is not _BAD:
                    branch(dvid, k, y.group(1))
        elif _DVID.search(code):
            sw.errors.append(f"{where(k)} -- DVID outside an output selection `IF (DVID.EQ.k) Y = ...`; "
                             "not translated")
        elif first is not None and _Y_ASSIGN.match(code):
            sw.errors.append(f"{where(k)} -- Y assigned again after the output selection (IF on DVID); "
                             "not translated")
        k += 1
    return "\n".join(out), sw


def dvid_targets(sw: DvidSwitch, data_dvids, y_assigned: bool) -> tuple[dict[int, tuple[str, str]], list[str]]:
    """{DVID value: (variable holding its Y, ``$ERROR line k: code``)} and notes. ``data_dvids``: the
    DVID values of the data set's records (None when the data set could not be read); ``y_assigned``:
    whether Y is assigned outside the selection (its value then holds for the DVIDs not selected).

    The ELSE branch (or, without one, the Y assigned before the selection) stands for the DVID values of
    the data set that no branch names; without the data set, for the smallest positive integer no branch
    names (said in a note), the Y assigned before only when that integer lies below a named one (``IF
    (DVID.EQ.2) Y = ...``: DVID 1 keeps Y). Raises ValueError (why) when that is not one value."""
    explicit = {d: v for d, v in sw.branches.items() if d is not None}
    default = sw.branches.get(None) or (("Y", "$ERROR Y (assigned before the selection)") if y_assigned else None)
    notes = []
    if data_dvids is None:
        gap = next(d for d in range(1, len(explicit) + 2) if d not in explicit)
        rest = [gap] if default and (None in sw.branches or gap < max(explicit, default=0)) else []
        if rest:
            notes.append(f"{default[1]}: read as the prediction of DVID {rest[0]} (the data set could not be read to "
                         "list its DVID values; records with another DVID are refused by the fit: outputs)")
    else:
        rest = sorted({int(d) for d in data_dvids} - set(explicit))
        if rest and default is None:
            raise ValueError(f"the data have DVID {', '.join(map(str, rest))}, for which no Y is assigned")
        if len(rest) > 1:
            raise ValueError(f"{default[1]} stands for DVID {', '.join(map(str, rest))}: one output per DVID")
        if not rest and sw.branches.get(None):
            notes.append(f"{default[1]}: the ELSE branch selects no DVID of the data set; not translated")
    out = dict(explicit)
    if rest:
        out[rest[0]] = default
    return dict(sorted(out.items())), notes
