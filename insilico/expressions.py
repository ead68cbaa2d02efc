"""The safe expression language: arithmetic/boolean expressions over named values — covariates in
cohort specs (``"BMI * (HT / 100) ** 2"``, ``"18 <= AGE <= 65"``, ``"SEX == 'female' and CRCL < 30"``),
states and parameters in text models (`insilico.models.text_model`).

Expressions are parsed with :mod:`ast` and compiled to a closure over ``jax.numpy``; only
numbers, covariate names, ``+ - * / **``, comparisons (chained allowed), ``and/or/not`` and
the functions in :data:`FUNCTIONS` (with the number of arguments in :data:`ARITY`) are
accepted. A string literal may only be compared with a
categorical covariate and is replaced by that category's integer code. An expression is at most
:data:`MAX_CHARS` characters, :data:`MAX_NODES` syntax-tree nodes and :data:`MAX_DEPTH` levels
of nesting (a pathological expression is a spec error, not a recursion error).
"""
from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jax.numpy as jnp

from insilico.errors import SpecError

__all__ = ["ARITY", "FUNCTIONS", "MAX_CHARS", "MAX_DEPTH", "MAX_NODES", "Expr", "parse_expr"]

MAX_CHARS = 2000    # characters of one expression
MAX_NODES = 500     # syntax-tree nodes of one expression
MAX_DEPTH = 100     # nesting levels of one expression's syntax tree (a chain a + b + ... nests per term)

FUNCTIONS: dict[str, Callable] = {
    "exp": jnp.exp, "log": jnp.log, "log10": jnp.log10, "sqrt": jnp.sqrt, "abs": jnp.abs,
    "min": jnp.minimum, "max": jnp.maximum, "where": jnp.where,
}
# number of arguments of each function (checked when the expression is parsed)
ARITY: dict[str, int] = {"exp": 1, "log": 1, "log10": 1, "sqrt": 1, "abs": 1, "min": 2, "max": 2, "where": 3}
_BINOPS = {ast.Add: jnp.add, ast.Sub: jnp.subtract, ast.Mult: jnp.multiply,
           ast.Div: jnp.true_divide, ast.Pow: jnp.power}
_CMPOPS = {ast.Lt: jnp.less, ast.LtE: jnp.less_equal, ast.Gt: jnp.greater,
           ast.GtE: jnp.greater_equal, ast.Eq: jnp.equal, ast.NotEq: jnp.not_equal}
_BOOLISH = (ast.Compare, ast.BoolOp)


@dataclass(frozen=True)
class Expr:
    """A parsed expression: ``source``, the covariate ``names`` it reads, and ``is_bool``
    (its top level is a comparison or a boolean combination)."""

    source: str
    field: str
    tree: ast.expr = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()
    is_bool: bool = False

    def compile(self, categories: Mapping[str, list[str]]) -> Callable[[Mapping], jnp.ndarray]:
        """Closure ``env -> array``; ``categories`` maps categorical covariates to labels."""
        return _compile(self.tree, self.field, self.source, categories)


def parse_expr(source: str, field_: str) -> Expr:
    """Parse ``source``; raise :class:`SpecError` naming ``field_`` on anything not allowed."""
    if not isinstance(source, str) or not source.strip():
        raise SpecError(field_, "expression must be a non-empty string")
    if len(source) > MAX_CHARS:
        raise SpecError(field_, f"expression of {len(source)} characters (at most {MAX_CHARS})")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as e:
        raise SpecError(field_, f"invalid expression {source!r}: {e.msg}") from None
    except (RecursionError, MemoryError):
        raise SpecError(field_, f"expression nested too deeply (at most {MAX_DEPTH} levels)") from None
    _check_size(tree, field_)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
                fn = getattr(node.func, "id", ast.unparse(node.func))
                raise SpecError(field_, f"unknown function {fn!r} in {source!r}; "
                                        f"allowed: {', '.join(sorted(FUNCTIONS))}")
            n_args = ARITY[node.func.id]
            if len(node.args) != n_args:
                raise SpecError(field_, f"{node.func.id} takes {n_args} argument{'s' if n_args > 1 else ''}, "
                                        f"got {len(node.args)} in {source!r}")
        elif isinstance(node, ast.Name):
            if node.id not in FUNCTIONS:
                names.add(node.id)
        elif not isinstance(node, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp,
                                   ast.Load, ast.operator, ast.unaryop, ast.cmpop, ast.boolop,
                                   ast.IfExp)):
            raise SpecError(field_, f"unsupported syntax {type(node).__name__} in {source!r}")
        if isinstance(node, ast.BinOp) and type(node.op) not in _BINOPS:
            raise SpecError(field_, f"unsupported operator in {source!r}")
        if isinstance(node, ast.Compare) and any(type(o) not in _CMPOPS for o in node.ops):
            raise SpecError(field_, f"unsupported comparison in {source!r}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str)) \
                or isinstance(node, ast.Constant) and isinstance(node.value, bool):
            raise SpecError(field_, f"unsupported constant {node.value!r} in {source!r}")
    is_bool = isinstance(tree, _BOOLISH) or (isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.Not))
    return Expr(source, field_, tree, frozenset(names), is_bool)


def _check_size(tree: ast.expr, field_: str) -> None:
    """SpecError when ``tree`` has more than MAX_NODES nodes or MAX_DEPTH levels (iterative walk)."""
    todo, count = [(tree, 1)], 0
    while todo:
        node, depth = todo.pop()
        count += 1
        if count > MAX_NODES:
            raise SpecError(field_, f"expression too large (more than {MAX_NODES} syntax nodes)")
        if depth > MAX_DEPTH:
            raise SpecError(field_, f"expression nested too deeply (more than {MAX_DEPTH} levels)")
        todo.extend((c, depth + 1) for c in ast.iter_child_nodes(node))


def _compile(node: ast.expr, fld: str, src: str, cats: Mapping[str, list[str]]) -> Callable:
    def rec(n: ast.expr) -> Callable:
        return _compile(n, fld, src, cats)

    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            raise SpecError(fld, f"string {node.value!r} can only be compared with a categorical "
                                 f"covariate in {src!r}")
        v = float(node.value)
        return lambda env: v
    if isinstance(node, ast.Name):
        name = node.id
        return lambda env: env[name]
    if isinstance(node, ast.BinOp):
        op, a, b = _BINOPS[type(node.op)], rec(node.left), rec(node.right)
        return lambda env: op(a(env), b(env))
    if isinstance(node, ast.UnaryOp):
        a = rec(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda env: jnp.negative(a(env))
        if isinstance(node.op, ast.UAdd):
            return a
        if isinstance(node.op, ast.Not):
            return lambda env: jnp.logical_not(a(env))
        raise SpecError(fld, f"unsupported operator in {src!r}")
    if isinstance(node, ast.BoolOp):
        parts = [rec(v) for v in node.values]
        op = jnp.logical_and if isinstance(node.op, ast.And) else jnp.logical_or

        def boolop(env):
            out = parts[0](env)
            for p in parts[1:]:
                out = op(out, p(env))
            return out
        return boolop
    if isinstance(node, ast.IfExp):
        c, a, b = rec(node.test), rec(node.body), rec(node.orelse)
        return lambda env: jnp.where(c(env), a(env), b(env))
    if isinstance(node, ast.Call):
        fn = FUNCTIONS[node.func.id]
        args = [rec(a) for a in node.args]
        return lambda env: fn(*(a(env) for a in args))
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        funcs = []
        for i, op in enumerate(node.ops):
            left, right = operands[i], operands[i + 1]
            funcs.append((_CMPOPS[type(op)], *_category_pair(left, right, fld, src, cats, rec)))

        def compare(env):
            out = None
            for op, a, b in funcs:
                r = op(a(env), b(env))
                out = r if out is None else jnp.logical_and(out, r)
            return out
        return compare
    raise SpecError(fld, f"unsupported syntax {type(node).__name__} in {src!r}")


def _category_pair(left, right, fld, src, cats, rec):
    """Compile a comparison's operands, turning ``SEX == 'female'`` into a code comparison."""
    ls, rs = _is_str(left), _is_str(right)
    if not (ls or rs):
        return rec(left), rec(right)
    if ls and rs:
        raise SpecError(fld, f"comparison of two strings in {src!r}")
    name_node, str_node = (right, left) if ls else (left, right)
    if not isinstance(name_node, ast.Name) or name_node.id not in cats:
        raise SpecError(fld, f"string {str_node.value!r} compared with something that is not a "
                             f"categorical covariate in {src!r}")
    labels = cats[name_node.id]
    if str_node.value not in labels:
        raise SpecError(fld, f"{str_node.value!r} is not a category of {name_node.id} "
                             f"(categories: {', '.join(labels)})")
    code = labels.index(str_node.value)
    name = name_node.id
    a = (lambda env: env[name])
    b = (lambda env: code)
    return (b, a) if ls else (a, b)


def _is_str(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)
