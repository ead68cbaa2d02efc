"""Models written as text equations (YAML), compiled to the same `Model` the built-ins are.

A modeller who writes mrgsolve ``$ODE`` or NONMEM ``$DES`` blocks declares a model without
Python (``models/1cmt_oral_text.yaml``)::

    name: 1cmt_oral_text
    description: one-compartment, first-order absorption
    states: [depot, central]                 # amounts in mg unless {name: {units: ...}}
    parameters:
      CL: {units: L/h}                       # standard names take units and description from PARAMETER_INFO
      V: {units: L}
      KA: {units: 1/h}
      F: {units: "1", default: 1}
      ALAG: {units: h, default: 0, constraint: nonnegative}
    doses:                                   # dose-able states; the first is the default CMT
      depot: {bioavailability: F, lag: ALAG}
      central: {}
    equations:
      - C = central / V                      # an intermediate assignment (any order; cycles refused)
      - d/dt(depot) = -KA * depot
      - d/dt(central) = KA * depot - CL * C
    outputs:
      conc: {expr: central / V, units: mg/L, description: central concentration}

Sections:

* ``states``: a list of names (amounts in mg, initial value 0) or a mapping
  ``name: {units, initial, description}``; ``initial`` is an expression of the parameters (e.g. an
  indirect-response baseline ``KIN / KOUT``).
* ``parameters``: ``name: {units, description, default, constraint}``; ``constraint`` is
  ``positive`` (the default), ``nonnegative``, ``fraction`` or ``real`` (the `Parameter`
  vocabulary); a standard name (`PARAMETER_INFO`, e.g. CL, V, KA) takes its units and description
  from that table unless given.
* ``doses``: a list of dose-able states or a mapping ``state: {bioavailability: P, lag: P}`` naming
  the parameters that scale the amount (F) and delay the dose (ALAG, h) of doses into that state
  (NONMEM convention, as the built-ins); the first is the default dose compartment. Infusions are
  added by the engine: equations contain no dosing.
* ``equations``: ``d/dt(state) = expression`` (one per state; time in h, so in state units/h) and
  ``name = expression`` (intermediate assignments, evaluated in dependency order). Expressions are
  the safe expression language of `insilico.expressions.parse_expr` (never ``eval``): numbers, states,
  parameters, assigned names, ``t`` (h), ``+ - * / **``, comparisons, ``and/or/not``,
  ``a if cond else b``, ``where(cond, a, b)``, ``exp log log10 sqrt abs min max``.
* ``outputs``: ``name: {expr, units, description}``, expressions of states, parameters and
  assignments that do not use ``t``.

A model whose right-hand side is linear in the states (symbolic check: every derivative is a sum
of terms each a state times a state-free factor, no constant input, no ``t``, no condition on a
state) and whose flows form, between strongly connected groups of states, a tree of exchanges
(mammillary and catenary models, absorption chains, metabolites) is solved on the exact path:
its system matrix is the Jacobian of the right-hand side (``jax.jacfwd``) and its eigenvalues
those of each group's symmetrised block ``sqrt(K_ij K_ji)`` (diagonally similar to the block when
every flow is non-negative, so real), stacked over the groups. Any other model uses the ODE path.

Errors are `SpecError` naming the field (``equations.2``, ``doses.gut``, ``outputs.conc``) and
the symbol: an unknown symbol, ``d/dt`` of something that is not a state, a state without an
equation, an assignment cycle, a dose into something that is not a state.
"""
from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from insilico.config import SpecModel, read_mapping, validate
from insilico.errors import SpecError
from insilico.expressions import FUNCTIONS as EXPRESSION_FUNCTIONS
from insilico.expressions import parse_expr
from insilico.models._base import PARAMETER_INFO, Model, Output, Parameter
from insilico.units import is_valid_units

__all__ = ["TextModelSpec", "describe_text_model", "load_text_model", "text_model"]

TIME = "t"                       # the time symbol (h)
_DERIV = re.compile(r"^d\s*/\s*dt\s*\(\s*([A-Za-z_]\w*)\s*\)\s*=(?!=)(.*)$", re.S)
_ASSIGN = re.compile(r"^([A-Za-z_]\w*)\s*=(?!=)(.*)$", re.S)


class StateDecl(SpecModel):
    """A state: ``units`` (default mg), ``initial`` value at t = 0 (an expression of the
    parameters or a number; default 0) and ``description``."""

    units: str = "mg"
    initial: str | float | None = None
    description: str = ""


class ParameterDecl(SpecModel):
    """A parameter: ``units``, ``description`` (standard names default to `PARAMETER_INFO`),
    ``default`` (used when a cohort or spec does not give it) and ``constraint``."""

    units: str | None = None
    description: str | None = None
    default: float | None = None
    constraint: Literal["positive", "nonnegative", "fraction", "real"] = "positive"


class DoseDecl(SpecModel):
    """Parameters (by name) for the bioavailability (fraction) and lag time (h) of doses into a state."""

    bioavailability: str | None = None
    lag: str | None = None


class OutputDecl(SpecModel):
    """An output: ``expr`` of states, parameters and time-free assignments, its ``units`` and ``description``."""

    expr: str
    units: str
    description: str = ""


class TextModelSpec(SpecModel):
    """A model written as text (module docstring)."""

    name: str = Field("text_model", min_length=1)
    description: str = ""
    states: list[str] | dict[str, StateDecl | None] = Field(min_length=1)
    parameters: dict[str, ParameterDecl | None] = {}
    doses: list[str] | dict[str, DoseDecl | None] = Field(min_length=1)
    equations: list[str] = Field(min_length=1)
    outputs: dict[str, OutputDecl] = Field(min_length=1)


@dataclass(frozen=True)
class _Equation:
    """One parsed line: ``target`` (a state for ``d/dt``, else the assigned name), the compiled
    expression and the symbols it reads."""

    field: str
    source: str
    target: str
    is_derivative: bool
    names: frozenset[str]
    tree: ast.expr
    fn: Callable


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------

def load_text_model(path: str | os.PathLike) -> Model:
    """The `Model` a text model file (YAML) declares; errors name the field inside the file
    (``equations.2``) or ``path`` when the file cannot be read."""
    data, _ = read_mapping(Path(path), "model")
    data.setdefault("name", Path(path).stem)
    return text_model(data)


def text_model(source: Mapping | TextModelSpec) -> Model:
    """The `Model` a text-model mapping (or validated `TextModelSpec`) declares (module docstring)."""
    spec = source if isinstance(source, TextModelSpec) else validate(TextModelSpec, source)
    states = _states(spec)
    parameters = _parameters(spec, states)
    equations = [_parse_equation(line, f"equations.{i}") for i, line in enumerate(spec.equations)]
    order, derivatives = _check_equations(equations, states, parameters)
    return _build(spec, states, parameters, order, derivatives)


def _states(spec: TextModelSpec) -> dict[str, StateDecl]:
    raw = dict.fromkeys(spec.states) if isinstance(spec.states, list) else dict(spec.states)
    if isinstance(spec.states, list) and len(raw) != len(spec.states):
        raise SpecError("states", f"a state is listed twice in {spec.states}")
    out = {}
    for name, decl in raw.items():
        _check_symbol(name, f"states.{name}")
        decl = decl or StateDecl()
        if not is_valid_units(decl.units):
            raise SpecError(f"states.{name}.units", f"invalid units {decl.units!r}")
        out[name] = decl
    return out


def _parameters(spec: TextModelSpec, states) -> tuple[Parameter, ...]:
    out = []
    for name, decl in spec.parameters.items():
        _check_symbol(name, f"parameters.{name}")
        if name in states:
            raise SpecError(f"parameters.{name}", f"{name!r} is also a state")
        decl = decl or ParameterDecl()
        info = PARAMETER_INFO.get(name)
        units = decl.units or (info.units if info else None)
        if units is None:
            raise SpecError(f"parameters.{name}.units", "missing (give the units, e.g. L/h; '1' for none)")
        if not is_valid_units(units):
            raise SpecError(f"parameters.{name}.units", f"invalid units {units!r}")
        description = decl.description if decl.description is not None else (info.long_name if info else "")
        param = Parameter(name, units, description, decl.constraint, decl.default)
        if decl.default is not None:
            param.check(np.asarray(decl.default, dtype=np.float64), f"parameters.{name}.default")
        out.append(param)
    return tuple(out)


def _check_symbol(name: str, where: str) -> None:
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise SpecError(where, f"{name!r} is not a valid symbol (letters, digits and _, not starting with a digit)")
    if name == TIME or name in EXPRESSION_FUNCTIONS:
        raise SpecError(where, f"{name!r} is reserved (time {TIME!r} and the functions "
                               f"{', '.join(sorted(EXPRESSION_FUNCTIONS))})")


def _parse_equation(line: str, where: str) -> _Equation:
    text = line.strip().rstrip(";").strip()
    m = _DERIV.match(text)
    derivative = m is not None
    m = m or _ASSIGN.match(text)
    if m is None:
        raise SpecError(where, f"expected `d/dt(state) = expression` or `name = expression`, got {line!r}")
    target, rhs = m.group(1), m.group(2).strip()
    if not derivative:
        _check_symbol(target, where)
    expr = parse_expr(rhs, where)
    if expr.is_bool:
        raise SpecError(where, f"{line!r} is a condition, not a number; use where(condition, a, b)")
    return _Equation(where, text, target, derivative, expr.names, expr.tree, expr.compile({}))


def _check_equations(equations: list[_Equation], states, parameters):
    """Assignments in dependency order and {state: derivative equation}; SpecError for an unknown
    symbol or state, a missing or repeated equation, an assignment to a state or parameter, a cycle."""
    pnames = [p.name for p in parameters]
    derivatives: dict[str, _Equation] = {}
    assigned: dict[str, _Equation] = {}
    for eq in equations:
        if eq.is_derivative:
            if eq.target not in states:
                raise SpecError(eq.field, f"d/dt({eq.target}): {eq.target!r} is not a state (states: "
                                          f"{', '.join(states)})")
            if eq.target in derivatives:
                raise SpecError(eq.field, f"a second equation for d/dt({eq.target}) (first: "
                                          f"{derivatives[eq.target].field})")
            derivatives[eq.target] = eq
        else:
            if eq.target in states:
                raise SpecError(eq.field, f"cannot assign to state {eq.target!r}; write d/dt({eq.target}) = ...")
            if eq.target in pnames:
                raise SpecError(eq.field, f"cannot assign to parameter {eq.target!r}")
            if eq.target in assigned:
                raise SpecError(eq.field, f"{eq.target!r} is assigned twice (first: {assigned[eq.target].field})")
            assigned[eq.target] = eq
    known = {*states, *pnames, *assigned, TIME}
    for eq in equations:
        unknown = sorted(eq.names - known)
        if unknown:
            raise SpecError(eq.field, f"unknown symbol {unknown[0]!r} in {eq.source!r}; states: "
                                      f"{', '.join(states)}; parameters: {', '.join(pnames) or 'none'}; "
                                      f"assigned: {', '.join(assigned) or 'none'}")
    for s in states:
        if s not in derivatives:
            raise SpecError("equations", f"state {s!r} has no equation: add `d/dt({s}) = ...`")
    return _topological(assigned), [derivatives[s] for s in states]


def _topological(assigned: dict[str, _Equation]) -> list[_Equation]:
    """Assignments so that each comes after those it reads; SpecError naming a cycle."""
    order, done, path = [], set(), []

    def visit(name):
        if name in done:
            return
        if name in path:
            cycle = path[path.index(name):] + [name]
            raise SpecError(assigned[cycle[0]].field, f"cyclic assignment: {' -> '.join(cycle)}")
        path.append(name)
        for dep in sorted(assigned[name].names & assigned.keys()):
            visit(dep)
        path.pop()
        done.add(name)
        order.append(assigned[name])

    for name in assigned:
        visit(name)
    return order


# ------------------------------------------------------------------------------------------------
# building the Model
# ------------------------------------------------------------------------------------------------

def _closure(names: frozenset[str], assigned: dict[str, _Equation]) -> set[str]:
    """``names`` and every assigned name they read, transitively."""
    out, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            if n in assigned:
                todo.extend(assigned[n].names)
    return out


def _environment(p, pnames, states, y, t=None) -> dict:
    env = {n: p[n] for n in pnames}
    env.update({s: y[..., i] for i, s in enumerate(states)})
    if t is not None:
        env[TIME] = t
    return env


def _build(spec: TextModelSpec, states: dict[str, StateDecl], parameters, order, derivatives) -> Model:
    names = tuple(states)
    pnames = tuple(p.name for p in parameters)
    assigned = {eq.target: eq for eq in order}

    def rhs(t, y, p):
        env = _environment(p, pnames, names, y, t)
        for eq in order:
            env[eq.target] = eq.fn(env)
        return jnp.stack([eq.fn(env) for eq in derivatives])

    outputs = tuple(_output(name, decl, assigned, order, names, pnames, parse_expr)
                    for name, decl in spec.outputs.items())
    initial = _initial_state(states, pnames, parse_expr)
    dose_names, bio, lag = _doses(spec, names, pnames)
    linear = _linear_form(rhs, order, derivatives, names, parameters)
    return Model(
        name=spec.name, states=names, parameters=parameters, rhs=rhs, outputs=outputs,
        dose_compartments=dose_names, default_dose_compartment=dose_names[0],
        state_units=tuple(d.units for d in states.values()), initial_state=initial,
        bioavailability=bio, lag=lag,
        system_matrix=linear[0] if linear else None, eigenvalues=linear[1] if linear else None,
        description=spec.description or "model written as text equations",
        meta={"kind": "text", "text": spec},
    )


def _output(name, decl: OutputDecl, assigned, order, states, pnames, parse_expr) -> Output:
    where = f"outputs.{name}"
    if not is_valid_units(decl.units):
        raise SpecError(f"{where}.units", f"invalid units {decl.units!r}")
    expr = parse_expr(decl.expr, f"{where}.expr")
    if expr.is_bool:
        raise SpecError(f"{where}.expr", f"{decl.expr!r} is a condition, not a number; use where(condition, a, b)")
    unknown = sorted(expr.names - {*states, *pnames, *assigned})
    if unknown:
        hint = " (outputs are functions of the state: no t)" if unknown[0] == TIME else ""
        raise SpecError(where, f"unknown symbol {unknown[0]!r} in {decl.expr!r}{hint}")
    needed = _closure(expr.names, assigned)
    if TIME in needed:
        raise SpecError(where, f"{decl.expr!r} depends on time t through an assignment; outputs are "
                               "functions of the state and parameters")
    steps = [eq for eq in order if eq.target in needed]
    fn_expr = expr.compile({})

    def fn(y, p):
        env = _environment(p, pnames, states, y)
        for eq in steps:
            env[eq.target] = eq.fn(env)
        return fn_expr(env) + jnp.zeros(jnp.shape(y)[:-1])
    return Output(name, decl.units, decl.description or name, fn)


def _initial_state(states: dict[str, StateDecl], pnames, parse_expr):
    exprs = {}
    for name, decl in states.items():
        if decl.initial is None:
            continue
        where = f"states.{name}.initial"
        if isinstance(decl.initial, str):
            e = parse_expr(decl.initial, where)
            unknown = sorted(e.names - set(pnames))
            if unknown:
                raise SpecError(where, f"unknown symbol {unknown[0]!r} in {decl.initial!r} (initial values "
                                       "are expressions of the parameters)")
            exprs[name] = e.compile({})
        else:
            value = float(decl.initial)
            exprs[name] = lambda env, v=value: v
    if not exprs:
        return None
    names = tuple(states)

    def initial_state(p):
        env = {n: p[n] for n in pnames}
        return jnp.stack([exprs[s](env) if s in exprs else 0.0 for s in names])
    return initial_state


def _doses(spec: TextModelSpec, states, pnames):
    raw = dict.fromkeys(spec.doses) if isinstance(spec.doses, list) else dict(spec.doses)
    bio, lag = {}, {}
    for name, decl in raw.items():
        if name not in states:
            raise SpecError(f"doses.{name}", f"{name!r} is not a state (states: {', '.join(states)})")
        decl = decl or DoseDecl()
        for key, value, into in (("bioavailability", decl.bioavailability, bio), ("lag", decl.lag, lag)):
            if value is None:
                continue
            if value not in pnames:
                raise SpecError(f"doses.{name}.{key}", f"{value!r} is not a parameter "
                                                       f"(parameters: {', '.join(pnames) or 'none'})")
            into[states.index(name)] = value
    return tuple(raw), _per_state(bio, len(states), 1.0), _per_state(lag, len(states), 0.0)


def _per_state(by_index: dict[int, str], n: int, fill: float):
    """``p -> vector`` with parameter ``by_index[i]`` at state ``i`` and ``fill`` elsewhere (None if empty)."""
    if not by_index:
        return None

    def vector(p):
        v = jnp.full(n, fill)
        for i, name in by_index.items():
            v = v.at[i].set(p[name])
        return v
    return vector


# ------------------------------------------------------------------------------------------------
# linearity: symbolic classification and the exact-path system matrix and eigenvalues
# ------------------------------------------------------------------------------------------------

# classes of an expression with respect to the states: C state-free, L homogeneous linear,
# A affine (linear plus a state-free term), N anything else
_JOIN = {frozenset("C"): "C", frozenset("L"): "L", frozenset("CL"): "A", frozenset("A"): "A",
         frozenset("AC"): "A", frozenset("AL"): "A", frozenset("ACL"): "A"}


def _join(*classes: str) -> str:
    return "N" if "N" in classes else _JOIN[frozenset(classes)]


def _classify(node: ast.expr, env: Mapping[str, str]) -> str:
    """The class (C, L, A or N) of ``node`` given the class of each symbol in ``env``."""
    if isinstance(node, ast.Constant):
        return "C"
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        return _classify(node.operand, env) if not isinstance(node.op, ast.Not) else _state_free(node, env)
    if isinstance(node, ast.BinOp):
        a, b = _classify(node.left, env), _classify(node.right, env)
        if isinstance(node.op, (ast.Add, ast.Sub)):
            return _join(a, b)
        if isinstance(node.op, ast.Mult) and "N" not in (a, b) and "C" in (a, b):
            return b if a == "C" else a
        if isinstance(node.op, ast.Div) and b == "C":
            return a
        return "C" if a == b == "C" else "N"
    if isinstance(node, ast.IfExp) or (isinstance(node, ast.Call) and node.func.id == "where"):
        cond, a, b = (node.test, node.body, node.orelse) if isinstance(node, ast.IfExp) else node.args
        return _join(_classify(a, env), _classify(b, env)) if _state_free(cond, env) == "C" else "N"
    return _state_free(node, env)


def _state_free(node: ast.expr, env: Mapping[str, str]) -> str:
    """C when no symbol under ``node`` depends on a state, else N (functions, comparisons, booleans)."""
    names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in env]
    return "C" if all(env[n] == "C" for n in names) else "N"


def _is_zero(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0


def _linear_structure(order, derivatives, states, pnames) -> np.ndarray | None:
    """The structural nonzero pattern of the system matrix (``dep[i, j]``: d/dt of state i reads state
    j) when the right-hand side is homogeneous linear in the states and free of ``t``; else None."""
    env = {**{p: "C" for p in pnames}, **{s: "L" for s in states}, TIME: "N"}
    assigned = {eq.target: eq for eq in order}
    for eq in order:
        env[eq.target] = _classify(eq.tree, env)
    dep = np.zeros((len(states), len(states)), dtype=bool)
    for i, eq in enumerate(derivatives):
        cls = _classify(eq.tree, env)
        if not (cls == "L" or (cls == "C" and _is_zero(eq.tree))):
            return None
        reads = _closure(eq.names, assigned)
        dep[i] = [s in reads for s in states]
    return dep


def _groups(dep: np.ndarray) -> list[list[int]]:
    """Strongly connected groups of states of the flow graph ``dep`` (reachability closure)."""
    n = dep.shape[0]
    reach = dep | np.eye(n, dtype=bool)
    for k in range(n):
        reach = reach | (reach[:, [k]] & reach[[k], :])
    out, seen = [], set()
    for i in range(n):
        if i not in seen:
            group = [j for j in range(n) if reach[i, j] and reach[j, i]]
            seen.update(group)
            out.append(group)
    return out


def _tree_edges(group: list[int], dep: np.ndarray) -> list[tuple[int, int]] | None:
    """The exchanges of a strongly connected group when they form a tree (each edge both ways), else None."""
    edges = [(a, b) for i, a in enumerate(group) for b in group[i + 1:] if dep[a, b] or dep[b, a]]
    if len(edges) != len(group) - 1 or not all(dep[a, b] and dep[b, a] for a, b in edges):
        return None
    return edges


def _sample_parameters(parameters, seed: int) -> dict:
    """Parameter values for structural checks: defaults, else log-uniform in [0.1, 10] (fractions in (0, 1))."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in parameters:
        if p.default is not None and seed == 0:
            out[p.name] = jnp.asarray(float(p.default))
        elif p.constraint == "fraction":
            out[p.name] = jnp.asarray(rng.uniform(0.05, 0.95))
        else:
            out[p.name] = jnp.asarray(np.exp(rng.uniform(np.log(0.1), np.log(10.0))))
    return out


def _linear_form(rhs, order, derivatives, states, parameters):
    """``(system_matrix, eigenvalues)`` for the exact path, or None (module docstring)."""
    n = len(states)
    dep = _linear_structure(order, derivatives, states, [p.name for p in parameters])
    if dep is None:
        return None
    groups = _groups(dep)
    blocks = []
    for g in groups:
        edges = _tree_edges(g, dep) if len(g) > 1 else []
        if edges is None:
            return None
        blocks.append((g, edges))

    def system_matrix(p):
        return jax.jacfwd(lambda y: rhs(0.0, y, p))(jnp.zeros(n))

    for seed in (0, 1, 2):    # every exchange must be a pair of non-negative flows (real eigenvalues)
        K = np.asarray(system_matrix(_sample_parameters(parameters, seed)))
        if any(K[a, b] * K[b, a] <= 0 for _, edges in blocks for a, b in edges):
            return None

    def eigenvalues(p):
        K = system_matrix(p)
        parts = []
        for g, edges in blocks:
            if len(g) == 1:
                parts.append(K[g[0], g[0]][None])
                continue
            pos = {s: k for k, s in enumerate(g)}
            S = jnp.diag(jnp.stack([K[s, s] for s in g]))
            for a, b in edges:
                w = jnp.sqrt(K[a, b] * K[b, a])
                S = S.at[pos[a], pos[b]].set(w).at[pos[b], pos[a]].set(w)
            parts.append(jnp.linalg.eigvalsh(S))
        return jnp.concatenate(parts)

    return system_matrix, eigenvalues


# ------------------------------------------------------------------------------------------------
# printing
# ------------------------------------------------------------------------------------------------

def describe_text_model(model: Model) -> str:
    """A text model printed back with units: states, parameters, doses, equations (with the units
    of each derivative) and outputs; the path (exact or ODE) it is solved on."""
    spec = model.meta.get("text")
    if not isinstance(spec, TextModelSpec):
        raise SpecError("model", f"{model.name!r} is not a text model; use Model.describe()")
    units = dict(zip(model.states, model.state_units))
    lines = [f"{model.name}: {model.description}",
             f"  solved on the {'exact (linear) path' if model.is_linear else 'ODE path'}",
             "  states: " + ", ".join(f"{s} [{u}]" for s, u in units.items())]
    lines.append("  parameters:")
    for p in model.parameters:
        d = "" if p.default is None else f", default {p.default:g}"
        lines.append(f"    {p.name} [{p.units}] {p.description} ({p.constraint}{d})")
    doses = spec.doses if isinstance(spec.doses, dict) else dict.fromkeys(spec.doses)
    lines.append("  doses: " + ", ".join(
        name + "".join(f" {k}={v}" for k, v in (("F", d.bioavailability), ("ALAG", d.lag)) if d and v)
        for name, d in doses.items()))
    lines.append("  equations:")
    for line in spec.equations:
        m = _DERIV.match(line.strip().rstrip(";").strip())
        lines.append(f"    {line.strip()}" + (f"    [{units[m.group(1)]}/h]" if m else ""))
    lines.append("  outputs:")
    for name, o in spec.outputs.items():
        lines.append(f"    {name} = {o.expr}    [{o.units}] {o.description}".rstrip())
    return "\n".join(lines)
