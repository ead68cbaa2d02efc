"""$DES (ADVAN6 / ADVAN13, NONMEM's general nonlinear models) -> an insilico text-equation model.

NONMEM Users Guide VI (PREDPP), "General nonlinear models": ``$MODEL`` defines the compartments in
order (``COMP=(NAME attributes)``; unnamed ones are ``COMPn``), ``DEFDOSE`` / ``DEFOBS`` mark the
default dose and observation compartments (compartment 1 when none is marked), ``NODOSE`` one that
takes no dose. ``$DES`` gives ``DADT(n) = ...`` for every compartment from the amounts ``A(n)``,
time ``T``, the ``$PK`` variables and its own intermediate variables.

The translation (`translate_des`):

* compartments -> states named as in ``$MODEL``, in the same order (so the data's ``CMT`` n is state
  n); dose-able compartments -> ``doses`` with the DEFDOSE one first, ``Fn`` / ``ALAGn`` of ``$PK``
  as their bioavailability / lag;
* ``$DES`` lines -> equations: ``DADT(n) = e`` is ``d/dt(state_n) = e``, ``X = e`` an intermediate
  assignment (a variable assigned again gets a new name, ``X_2``: the text model assigns each name
  once), one-line ``IF (c) X = e`` and ``IF (c) THEN / ELSE IF (c) THEN / ELSE / ENDIF`` blocks of
  assignments (not nested) -> ``(e1 if c1 else (e2 if c2 else e_previous))``. Fortran operators
  (``.GT.``, ``.AND.``, ``1.0D-3``) and ``EXP LOG LOG10 SQRT ABS MIN MAX`` map onto the text-model
  expression language; anything else (``CALL``, verbatim code, other functions, data items, THETA or
  ETA written in ``$DES``, nested IF) is listed line by line and makes the import fail;
* the ``$PK`` variables ``$DES`` (and the scale, Fn, ALAGn) read -> model parameters when their full
  expression is a population relation ``THETA * effects * EXP(ETA)`` (`parameter_relation`), a plain
  alias (``V = VC``) or an expression of other ``$PK`` variables (``K = CL/V``) -> an assignment, a
  number -> a fixed model parameter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import sympy
from sympy.printing.str import StrPrinter

from insilico.expressions import parse_expr

__all__ = ["DesTranslation", "model_compartments", "translate_des"]

_FUNCS = {"EXP": "exp", "DEXP": "exp", "LOG": "log", "DLOG": "log", "LOG10": "log10", "DLOG10": "log10",
          "SQRT": "sqrt", "DSQRT": "sqrt", "ABS": "abs", "DABS": "abs", "MIN": "min", "MAX": "max"}
_OPS = [(r"\.EQ\.", " == "), (r"\.NE\.", " != "), (r"\.GE\.", " >= "), (r"\.GT\.", " > "), (r"\.LE\.", " <= "),
        (r"\.LT\.", " < "), (r"\.AND\.", " and "), (r"\.OR\.", " or "), (r"\.NOT\.", " not ")]
_IF_THEN = re.compile(r"^IF\s*\((.*)\)\s*THEN$")
_ELSE_IF = re.compile(r"^ELSE\s*IF\s*\((.*)\)\s*THEN$")
_IF_ONE = re.compile(r"^IF\s*\((.*)\)\s*([A-Z_][A-Z_0-9]*(?:\s*\(\s*\d+\s*\))?\s*=(?!=).*)$")
_ASSIGN = re.compile(r"^([A-Z_][A-Z_0-9]*)(?:\s*\(\s*(\d+)\s*\))?\s*=(?!=)(.*)$")
# units of text-model parameters NONMEM does not state, by NONMEM's naming habits (h, mg, L)
_UNIT_HABITS = [(r"K\w*", "1/h"), (r"(CL|Q)\w*", "L/h"), (r"V\w*|S\d+", "L"), (r"F\d+", "1"), (r"ALAG\d+", "h")]


class Untranslatable(Exception):
    """A $DES line or $PK variable outside the translated forms (message: why)."""


@dataclass
class DesTranslation:
    """The text model (mapping for `insilico.models.text_model`), the population relations of its
    parameters, numbers for the parameters fixed in the model reference, and what failed.

    failed: ``{where: reason}`` of essential items not translated (the import fails);
    notes: other report lines (e.g. units taken from NONMEM's naming habits)."""

    text_model: dict | None
    relations: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    pk_used: set = field(default_factory=set)


def model_compartments(record_text: str) -> tuple[list[str], int, int, list[int]]:
    """($MODEL compartment names, default dose index, default observation index, dose-able indices),
    indices 0-based; compartment 1 is the default where no DEFDOSE / DEFOBS is given (UG VI)."""
    text = re.sub(r";[^\n]*", "", record_text.upper())
    text = re.sub(r"^\s*\$MOD\w*", "", text)
    names, defdose, defobs, dose_ok = [], 0, 0, []
    for m in re.finditer(r"\bCOMP(?:ARTMENT)?\s*=?\s*(\(([^)]*)\)|[A-Z_][A-Z_0-9]*)", text):
        parts = (m.group(2) if m.group(2) is not None else m.group(1)).replace(",", " ").split()
        attrs = {"DEFDOSE", "DEFDOS", "DEFOBS", "DEFOBSERVATION", "NODOSE", "INITIALOFF", "NOOFF", "EQUILIBRIUM",
                 "EXCLUDE"}
        name = next((p.strip("'\"") for p in parts if p not in attrs), f"COMP{len(names) + 1}")
        k = len(names)
        names.append(name)
        if "DEFDOSE" in parts or "DEFDOS" in parts:
            defdose = k
        if "DEFOBS" in parts or "DEFOBSERVATION" in parts:
            defobs = k
        if "NODOSE" not in parts and "EQUILIBRIUM" not in parts:
            dose_ok.append(k)
    return names, defdose, defobs, dose_ok


class _Printer(StrPrinter):
    """sympy -> the text-model expression language (`insilico.expressions`)."""

    def _print_Piecewise(self, e):
        out = None
        for expr, cond in reversed(e.args):
            v = self._print(expr)
            out = v if out is None or cond == sympy.true else f"({v} if {self._print(cond)} else {out})"
        return out

    def _print_Function(self, e):
        name = {"exp": "exp", "log": "log", "Abs": "abs", "sqrt": "sqrt"}.get(type(e).__name__)
        if name is None:
            raise Untranslatable(f"function {type(e).__name__} has no text-model equivalent")
        return f"{name}({', '.join(self._print(a) for a in e.args)})"

    _print_exp = _print_log = _print_Abs = _print_Function

    def _print_Min(self, e):
        return self._minmax("min", e.args)

    def _print_Max(self, e):
        return self._minmax("max", e.args)

    def _minmax(self, f, args):
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{f}({out}, {self._print(a)})"
        return out

    def _print_Exp1(self, e):
        return "exp(1)"

    def _print_Equality(self, e):
        return f"({self._print(e.lhs)} == {self._print(e.rhs)})"

    def _print_Unequality(self, e):
        return f"({self._print(e.lhs)} != {self._print(e.rhs)})"

    def _print_Relational(self, e):
        return f"({self._print(e.lhs)} {e.rel_op} {self._print(e.rhs)})"

    def _print_And(self, e):
        return "(" + " and ".join(self._print(a) for a in e.args) + ")"

    def _print_Or(self, e):
        return "(" + " or ".join(self._print(a) for a in e.args) + ")"

    def _print_Not(self, e):
        return f"(not {self._print(e.args[0])})"


def to_text(expr) -> str:
    """A sympy expression written in the text-model expression language."""
    return _Printer().doprint(expr)


class _Des:
    """State of one $DES translation: the equations in order, the current name of each variable."""

    def __init__(self, states, pk_names, columns):
        self.states = states
        self.pk_names = pk_names
        self.columns = columns
        self.defs: list[tuple[str, str]] = []          # (name, text expression), in order
        self.current: dict[str, str] = {}              # NONMEM variable -> its current name
        self.taken = set(states) | set(pk_names) | set(columns) | {"t"}
        self.pk_used: set[str] = set()
        self.dadt_count: dict[int, int] = {}

    def fresh(self, var: str) -> str:
        base = f"DADT{var[5:-1]}" if var.startswith("DADT(") else var
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def expr(self, src: str, scope: dict[str, str]) -> str:
        """A Fortran expression of $DES in the text-model language (names resolved in ``scope``)."""
        s = re.sub(r"(\d)D([+-]?\d)", r"\1E\2", src)
        for pat, rep in _OPS:
            s = re.sub(pat, rep, s)
        s = s.replace("/=", "!=")

        def amount(m):
            n = int(m.group(1))
            if not 1 <= n <= len(self.states):
                raise Untranslatable(f"A({n}): no compartment {n} in $MODEL")
            return self.states[n - 1]
        s = re.sub(r"\bA\s*\(\s*(\d+)\s*\)", amount, s)

        def name(m):
            word, call = m.group(1), m.group(2)
            if call:
                if word in _FUNCS:
                    return _FUNCS[word] + "("
                raise Untranslatable(f"function {word} has no text-model equivalent")
            if word in self.states or word in ("and", "or", "not") or re.fullmatch(r"\d+E[+-]?\d+", word):
                return word
            if word == "T":
                return "t"
            if word in scope:
                return scope[word]
            if word in self.pk_names:
                self.pk_used.add(word)
                return word
            if word in self.columns:
                raise Untranslatable(f"data item {word} in $DES (a text model reads data only through parameters)")
            if re.fullmatch(r"THETA|ETA|OMEGA|SIGMA", word):
                raise Untranslatable(f"{word} written in $DES (assign it to a variable in $PK)")
            raise Untranslatable(f"{word} is not a $PK or $DES variable")
        s = re.sub(r"(?<![\w.])([A-Za-z_]\w*)(\s*\()?", name, s)
        try:
            parse_expr(s, "$DES")
        except Exception as e:
            raise Untranslatable(str(e).split(": ", 1)[-1]) from None
        return " ".join(s.split())

    def assign(self, var: str, src: str, scope: dict[str, str]) -> str:
        text = self.expr(src, scope)
        name = self.fresh(var)
        self.defs.append((name, text))
        scope[var] = name
        return name


def _des_lines(record_text: str) -> list[tuple[int, str, str]]:
    """(line number, original, upper-case code) of the record's code lines (line 0 follows $DES)."""
    out = []
    for k, line in enumerate(record_text.splitlines()):
        code = line.split(";")[0]
        if k == 0:
            code = re.sub(r"^\s*\$\w+", "", code)
        if code.strip():
            out.append((k, code.strip(), code.strip().upper()))
    return out


def _var(m) -> str:
    return f"{m.group(1)}({int(m.group(2))})" if m.group(2) else m.group(1)


def _des_equations(record_text, states, pk_names, columns, failed):
    """Translate the $DES lines; returns (_Des, {state index: name of its derivative})."""
    des = _Des(states, pk_names, columns)
    block = None     # {"conds": [...], "branches": [[(var, src)]], "else": bool, "start": line}

    def fail(k, code, why):
        failed[f"$DES line {k}: {code}"] = why

    def close_block(k, code):
        scope_before = dict(des.current)
        try:
            conds = [des.expr(c, scope_before) for c in block["conds"]]
            scopes = []
            for branch in block["branches"]:
                sc = dict(scope_before)
                for var, src in branch:
                    des.assign(var, src, sc)
                scopes.append(sc)
            variables = list(dict.fromkeys(v for br in block["branches"] for v, _ in br))
            for var in variables:
                vals = []
                for sc in scopes:
                    if var not in sc:
                        raise Untranslatable(f"{var} has no value on a branch that does not assign it")
                    vals.append(sc[var])
                if not block["else"]:
                    if var not in scope_before:
                        raise Untranslatable(f"{var} has no value when no condition holds (add ELSE)")
                    vals.append(scope_before[var])
                text = vals[-1]
                for c, v in zip(reversed(conds), reversed(vals[:len(conds)])):
                    text = f"({v} if {c} else {text})"
                name = des.fresh(var)
                des.defs.append((name, text))
                des.current[var] = name
        except Untranslatable as e:
            fail(block["start"][0], block["start"][1], f"IF block: {e}")

    for k, code, up in _des_lines(record_text):
        if code.startswith('"'):
            fail(k, code, "verbatim Fortran is not translated")
            continue
        if block is not None:
            m = _ELSE_IF.match(up)
            if m:
                block["conds"].append(m.group(1))
                block["branches"].append([])
                continue
            if re.fullmatch(r"ELSE", up):
                block["else"] = True
                block["branches"].append([])
                continue
            if re.fullmatch(r"END\s*IF", up):
                close_block(k, code)
                block = None
                continue
            m = _ASSIGN.match(up)
            if m and not up.startswith("IF"):
                block["branches"][-1].append((_var(m), m.group(3)))
            else:
                fail(k, code, "only assignments are translated inside an IF block (no nesting, CALL, ...)")
            continue
        m = _IF_THEN.match(up)
        if m:
            block = {"conds": [m.group(1)], "branches": [[]], "else": False, "start": (k, code)}
            continue
        m = _IF_ONE.match(up)
        if m:
            a = _ASSIGN.match(m.group(2).strip())
            block = {"conds": [m.group(1)], "branches": [[(_var(a), a.group(3))]], "else": False, "start": (k, code)}
            close_block(k, code)
            block = None
            continue
        m = _ASSIGN.match(up)
        if m is None:
            fail(k, code, "statement not translated")
            continue
        var = _var(m)
        if m.group(2) and m.group(1) != "DADT":
            fail(k, code, f"assignment to {var} (an array element) is not translated")
            continue
        try:
            des.assign(var, m.group(3), des.current)
        except Untranslatable as e:
            fail(k, code, str(e))
    if block is not None:
        fail(block["start"][0], block["start"][1], "IF block without END IF")
    deriv = {}
    for n in range(len(states)):
        name = des.current.get(f"DADT({n + 1})")
        if name is None:
            failed[f"$DES DADT({n + 1})"] = f"no equation for compartment {n + 1} ({states[n]})"
        else:
            deriv[n] = name
    return des, deriv


def _pk_assigned(pk_text: str) -> list[str]:
    """Names assigned in $PK, in order (``IF (...) X = ...`` included)."""
    out = []
    for line in pk_text.splitlines():
        code = re.sub(r"^\s*\$\w+", "", line.split(";")[0]).strip().upper()
        m = re.match(r"^(?:IF\s*\(.*\)\s*)?([A-Z_][A-Z_0-9]*)\s*=(?!=)", code)
        if m:
            out.append(m.group(1))
    return list(dict.fromkeys(out))


def _units(name: str) -> tuple[str, bool]:
    """(units, guessed) of a text-model parameter named ``name`` (library table first)."""
    from insilico.models import PARAMETER_INFO
    if name in PARAMETER_INFO:
        return PARAMETER_INFO[name].units, False
    for pat, u in _UNIT_HABITS:
        if re.fullmatch(pat, name):
            return u, True
    return "1", True


def translate_des(model, cs, ctx, relation, scale_of_obs: tuple[str, str | None]) -> DesTranslation:
    """The text model of an ADVAN6/13 control stream (module docstring).

    ``relation``: `parameter_relation` (raises on forms outside the population model);
    ``scale_of_obs``: (observed compartment name from $ERROR's F, the scale variable ``Sn`` or None)."""
    failed: dict[str, str] = {}
    notes: list[str] = []
    mrec = cs.get_records("MODEL")
    if not mrec:
        return DesTranslation(None, failed={"$MODEL": "missing (ADVAN6/13 needs $MODEL compartments)"})
    states, defdose, defobs, dose_ok = model_compartments(str(mrec[0]))
    if not states:
        return DesTranslation(None, failed={"$MODEL": "no COMP=(...) found"})
    bad = [s for s in states if not re.fullmatch(r"[A-Za-z_]\w*", s)]
    if bad:
        return DesTranslation(None, failed={"$MODEL": f"compartment names {bad} are not identifiers"})
    pk_text = "\n".join(str(r) for r in cs.get_records("PK"))
    pk_names = _pk_assigned(pk_text)
    columns = set(ctx.columns)
    drecs = cs.get_records("DES")
    if not drecs:
        return DesTranslation(None, failed={"$DES": "missing (ADVAN6/13 needs $DES)"})
    des, deriv = _des_equations("\n".join(str(r) for r in drecs), states, set(pk_names), columns, failed)
    for line in pk_text.splitlines():
        code = re.sub(r"^\s*\$\w+", "", line.split(";")[0]).strip().upper()
        if re.match(r"^A_0\s*\(", code):
            failed[f"$PK: {code}"] = "initial amounts (A_0) are not translated"
        if re.match(r"^(?:IF\s*\(.*\)\s*)?(R|D)\d+\s*=", code):
            failed[f"$PK: {code}"] = "modelled infusion rate / duration (Rn, Dn) is not translated"
        if re.match(r"^(?:IF\s*\(.*\)\s*)?MTIME\s*\(", code):
            failed[f"$PK: {code}"] = "model event times (MTIME) are not translated"

    obs_name, scale = scale_of_obs
    if obs_name is not None and obs_name not in states:
        failed["$ERROR"] = f"F observes {obs_name}, not a $MODEL compartment"
        obs = defobs
    else:
        obs = states.index(obs_name) if obs_name is not None else defobs
    dose_order = [defdose] + [k for k in dose_ok if k != defdose] if defdose in dose_ok else dose_ok
    needed = set(des.pk_used)
    dose_pars = {}
    for k in dose_order:
        for key, nm in (("bioavailability", f"F{k + 1}"), ("lag", f"ALAG{k + 1}")):
            if nm in pk_names:
                dose_pars.setdefault(k, {})[key] = nm
                needed.add(nm)
    if scale is not None:
        needed.add(scale)

    params, equations, fixed = {}, {}, {}
    eta_owner: dict[str, str] = {}
    pk_statements = [s for s in model.statements.before_odes if getattr(s, "symbol", None) is not None]

    def resolve(name: str, stack=()):
        if name in params or name in equations or name in fixed:
            return
        if name in stack:
            raise Untranslatable(f"{name} depends on itself")
        direct = [s for s in pk_statements if str(s.symbol) == name]
        if not direct:
            raise Untranslatable(f"{name} is not assigned in $PK")
        rhs = direct[-1].expression._sympy_()
        full = model.statements.before_odes.full_expression(name)._sympy_()
        if full.is_number:
            fixed[name] = float(full)
            return
        syms = {s.name for s in rhs.free_symbols}
        if rhs.is_Symbol and rhs.name in pk_names:
            equations[name] = rhs.name
            resolve(rhs.name, (*stack, name))
            return
        try:
            rel = relation(full, ctx)
        except Exception as e:    # not a population relation: an expression of other $PK variables?
            if name in syms or not syms <= set(pk_names):
                raise Untranslatable(f"{name} = {full}: {e}") from None
            equations[name] = to_text(rhs)
            for s in sorted(syms):
                resolve(s, (*stack, name))
            return
        if rel["eta"] and rel["eta"] in eta_owner:
            raise Untranslatable(f"{name} and {eta_owner[rel['eta']]} both carry {rel['eta']} (one ETA per "
                                 "parameter; write one in terms of the other)")
        if rel["eta"]:
            eta_owner[rel["eta"]] = name
        params[name] = rel

    for name in sorted(needed):
        try:
            resolve(name)
        except Untranslatable as e:
            failed[f"$PK {name}"] = str(e)
    pk_used = set(params) | set(equations) | set(fixed)
    for d in dose_pars.values():
        for nm in d.values():
            if nm in equations:
                failed[f"$PK {nm}"] = f"{nm} must be a parameter (THETA*EXP(ETA) form or a number), not an expression"
    if failed:
        return DesTranslation(None, failed=failed, notes=notes, pk_used=pk_used)

    text_params, guessed = {}, []
    for name in [*params, *fixed]:
        units, g = _units(name)
        entry = {"units": units}
        if any(name == d.get("bioavailability") for d in dose_pars.values()):
            entry = {"units": "1", "constraint": "fraction"}
        elif any(name == d.get("lag") for d in dose_pars.values()):
            entry = {"units": "h", "constraint": "nonnegative"}
        elif g:
            guessed.append(f"{name} [{units}]")
        text_params[name] = entry
    if guessed:
        notes.append(f"$PK: units of {', '.join(guessed)} taken from NONMEM naming habits (NONMEM states none); "
                     "check the model file")
    eqs = [f"{n} = {e}" for n, e in equations.items()]
    once = {}
    for n, text in des.defs:
        once[n] = text
    direct = {}
    for n, name in deriv.items():
        if name == f"DADT{n + 1}" and not any(re.search(rf"\b{name}\b", t) for _, t in des.defs):
            direct[n] = once.pop(name)
    eqs += [f"{n} = {t}" for n, t in des.defs if n in once]
    eqs += [f"d/dt({states[n]}) = {direct.get(n, deriv[n])}" for n in range(len(states))]
    doses = {states[k]: dose_pars.get(k, {}) for k in dose_order}
    obs_state = states[obs]
    if scale is not None:
        output = {"expr": f"{obs_state} / {scale}", "units": "mg/L",
                  "description": f"amount in {obs_state} over the scale {scale} (NONMEM's F)"}
    else:
        output = {"expr": obs_state, "units": "mg", "description": f"amount in {obs_state} (NONMEM's F, no scale)"}
        notes.append(f"$PK: no scale S{obs + 1}; the output conc is the amount in {obs_state} (F = A({obs + 1}))")
    text = {"name": None, "description": "", "states": list(states), "parameters": text_params, "doses": doses,
            "equations": eqs, "outputs": {"conc": output}}
    return DesTranslation(text, relations=params, fixed=fixed, notes=notes, pk_used=pk_used)
