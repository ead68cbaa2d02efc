"""Semantic checks and compilation of a :class:`CohortSpec` into evaluation-ready nodes.

Everything a user can get wrong beyond the schema is checked here and reported as a
:class:`~insilico.errors.SpecError` naming the field: unknown covariates/categories/functions
in expressions, ``given`` not categorical, circular dependencies, probabilities not summing
to 1, correlation/Omega matrices not symmetric or not positive definite, missing units, ...
"""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from insilico.cohorts import _metadata as meta
from insilico.cohorts._covariates import DerivedNode, DistNode, ExprNode, ParamGetter, StratumNode
from insilico.cohorts._derived import DERIVED_INPUTS
from insilico.cohorts._expr import parse_expr
from insilico.cohorts._parameters import Effect, ParamNode, cv_percent_to_variance, omega_from
from insilico.cohorts._spec import CohortSpec
from insilico.errors import SpecError

__all__ = ["CompiledCohort", "compile_spec"]

_DIST_PARAMS = {
    "normal": ("mean", "sd"),
    "lognormal": ("meanlog", "sdlog"),  # or median instead of meanlog
    "truncnormal": ("mean", "sd", "low", "high"),
    "uniform": ("low", "high"),
    "categorical": (),
}
_ALL_DIST_FIELDS = ("mean", "sd", "median", "meanlog", "sdlog", "low", "high", "probs")


@dataclass(frozen=True)
class CompiledCohort:
    spec: CohortSpec
    spec_json: str
    order: tuple[str, ...]                      # covariates in evaluation order
    nodes: Mapping[str, object]
    categories: Mapping[str, tuple[str, ...]]   # categorical covariate -> labels (codes 0..K-1)
    copula_names: tuple[str, ...]               # as in the spec
    copula_r: np.ndarray | None                  # correlation of the scores (spec order)
    copula_chol: np.ndarray | None               # Cholesky factor in evaluation order
    inclusion: tuple[tuple[str, Callable], ...]  # (field, env -> bool)
    exclusion: tuple[tuple[str, Callable], ...]
    stratum: str | None
    stratum_labels: tuple[str, ...]
    stratum_fractions: tuple[float, ...]
    stratum_criteria: tuple[tuple[tuple[str, Callable], ...], ...]  # per level
    params: tuple[ParamNode, ...]
    bsv_names: tuple[str, ...]
    omega: np.ndarray | None
    omega_chol: np.ndarray | None
    iov_sd: Mapping[str, float]
    occasions: int
    attrs: Mapping[str, dict] = field(default_factory=dict)  # variable -> CF attributes

    @property
    def has_criteria(self) -> bool:
        return bool(self.inclusion or self.exclusion or any(self.stratum_criteria))

    @property
    def covariates(self) -> tuple[str, ...]:
        return self.order

    def output_names(self) -> list[str]:
        names = list(self.order)
        names += [f"eta_{n}" for n in self.bsv_names]
        names += [f"kappa_{n}" for n in self.iov_sd]
        names += [p.name for p in self.params]
        names += [f"{n}_occ" for n in self.iov_sd]
        return names


_CACHE: OrderedDict[str, CompiledCohort] = OrderedDict()
_LOCK = threading.Lock()


def compile_spec(spec) -> CompiledCohort:
    """Check and compile ``spec`` (a :class:`CohortSpec`, path, YAML text or mapping).
    Cached by the spec's canonical JSON."""
    if isinstance(spec, CompiledCohort):
        return spec
    if not isinstance(spec, CohortSpec):
        from insilico.cohorts._spec import load_cohort_spec
        spec = load_cohort_spec(spec)
    key = spec.to_json()
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    c = _compile(spec, key)
    with _LOCK:
        _CACHE[key] = c
        if len(_CACHE) > 64:
            _CACHE.popitem(last=False)
    return c


def _check_name(name: str, where: str) -> None:
    if not meta.NAME_RE.match(name):
        raise SpecError(where, f"invalid name {name!r}: use letters, digits and _ (starting with a letter)")
    if name.lower() in meta.RESERVED or name.startswith(("eta_", "kappa_")) or name.endswith("_occ"):
        raise SpecError(where, f"name {name!r} is reserved")


def _matrix(m, n: int, where: str, what: str) -> np.ndarray:
    a = np.asarray(m, dtype=float) if all(len(r) == n for r in m) and len(m) == n else None
    if a is None:
        raise SpecError(where, f"{what} must be {n}x{n}")
    if not np.all(np.isfinite(a)):
        raise SpecError(where, f"{what} must be finite")
    if not np.allclose(a, a.T, atol=1e-10, rtol=0):
        raise SpecError(where, f"{what} must be symmetric")
    return a


def _chol(a: np.ndarray, where: str, what: str) -> np.ndarray:
    try:
        lo = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        lo = None
    if lo is None or not np.all(np.isfinite(lo)):
        ev = np.linalg.eigvalsh(a).min()
        raise SpecError(where, f"{what} is not positive definite (smallest eigenvalue {ev:.3g})")
    return lo


def _correlation(m, n: int, where: str) -> np.ndarray:
    r = _matrix(m, n, where, "correlation matrix")
    if not np.allclose(np.diag(r), 1.0, atol=1e-12):
        raise SpecError(where, "correlation matrix must have 1 on the diagonal")
    if np.any(np.abs(r) > 1):
        raise SpecError(where, "correlations must lie in [-1, 1]")
    return r


def _compile(spec: CohortSpec, spec_json: str) -> CompiledCohort:
    covs = spec.covariates
    if not covs and spec.strata is None:
        raise SpecError("covariates", "at least one covariate is required")

    # ---- names -----------------------------------------------------------------------
    seen: dict[str, str] = {}

    def claim(name: str, where: str):
        _check_name(name, where)
        if name in seen:
            raise SpecError(where, f"name {name!r} is already used by {seen[name]}")
        seen[name] = where

    if spec.strata is not None:
        claim(spec.strata.name, "strata.name")
    for name in covs:
        claim(name, f"covariates.{name}")
    for i, name in enumerate(spec.derived):
        claim(name, f"derived.{i}")
    for name in spec.parameters:
        claim(name, f"parameters.{name}")

    # ---- categories --------------------------------------------------------------------
    categories: dict[str, tuple[str, ...]] = {}
    if spec.strata is not None:
        labels = tuple(spec.strata.levels)
        if not labels:
            raise SpecError("strata.levels", "at least one level is required")
        for lab in labels:
            if not meta.LABEL_RE.match(lab):
                raise SpecError(f"strata.levels.{lab}", "level names must not contain whitespace")
        categories[spec.strata.name] = labels
    for name, c in covs.items():
        if c.dist == "categorical":
            if not c.probs:
                raise SpecError(f"covariates.{name}.probs", "categorical needs probs {label: probability}")
            for lab, p in c.probs.items():
                if not meta.LABEL_RE.match(lab):
                    raise SpecError(f"covariates.{name}.probs.{lab}", "category labels must not contain whitespace")
                if not (0 <= p <= 1):
                    raise SpecError(f"covariates.{name}.probs.{lab}", f"probability must be in [0, 1], got {p}")
            s = sum(c.probs.values())
            if abs(s - 1) > 1e-6:
                raise SpecError(f"covariates.{name}.probs", f"probabilities must sum to 1, got {s:.6g}")
            categories[name] = tuple(c.probs)

    known = set(seen) - set(spec.parameters)
    nodes: dict[str, object] = {}

    # ---- strata ------------------------------------------------------------------------
    stratum = None
    fractions: tuple[float, ...] = ()
    if spec.strata is not None:
        stratum = spec.strata.name
        fractions = tuple(lv.fraction for lv in spec.strata.levels.values())
        if abs(sum(fractions) - 1) > 1e-6:
            raise SpecError("strata.levels", f"fractions must sum to 1, got {sum(fractions):.6g}")
        nodes[stratum] = StratumNode(stratum, categories[stratum], fractions)

    def ref(name: str, where: str):
        if name not in known:
            raise SpecError(where, f"unknown covariate {name!r} (defined: {', '.join(sorted(known)) or 'none'})")

    # ---- covariates ----------------------------------------------------------------------
    copula_names = tuple(spec.correlation.covariates) if spec.correlation else ()
    for name, c in covs.items():
        where = f"covariates.{name}"
        if (c.dist is None) == (c.expr is None):
            raise SpecError(where, "give exactly one of dist (a distribution) or expr (an expression)")
        if c.expr is not None:
            for f in _ALL_DIST_FIELDS + ("given",):
                if getattr(c, f) is not None:
                    raise SpecError(f"{where}.{f}", "not allowed with expr")
            e = parse_expr(c.expr, f"{where}.expr")
            if e.is_bool:
                raise SpecError(f"{where}.expr", "must be numeric, not a comparison")
            for n in sorted(e.names):
                ref(n, f"{where}.expr")
            nodes[name] = ExprNode(name, e.compile(categories), c.expr, frozenset(e.names))
            continue
        nodes[name] = _dist_node(name, c, where, categories, ref, None)

    # ---- derived -------------------------------------------------------------------------
    for i, name in enumerate(spec.derived):
        where = f"derived.{i}"
        fn, inputs = DERIVED_INPUTS[name]
        sex, fcode = None, None
        deps = set()
        for a in inputs:
            if a == "female":
                sex = "SEX"
                if "SEX" not in categories:
                    raise SpecError(where, f"{name} needs a categorical covariate SEX with a 'female' category")
                low = [lab.lower() for lab in categories["SEX"]]
                if "female" in low:
                    fcode = low.index("female")
                elif "f" in low:
                    fcode = low.index("f")
                else:
                    raise SpecError(where, f"{name} needs SEX to have a category 'female' (or 'F'); "
                                           f"got {', '.join(categories['SEX'])}")
                deps.add("SEX")
            else:
                if a not in known:
                    raise SpecError(where, f"{name} needs covariate {a} ({meta.COVARIATES[a][0]}), "
                                           f"which is not defined")
                if a in categories:
                    raise SpecError(where, f"{name} needs a continuous covariate {a}")
                deps.add(a)
        nodes[name] = DerivedNode(name, fn, inputs, sex, fcode, frozenset(deps))

    order = _toposort(nodes, spec)

    # ---- copula --------------------------------------------------------------------------
    copula_chol = copula_r = None
    if spec.correlation is not None:
        cn = copula_names
        if len(cn) < 2:
            raise SpecError("correlation.covariates", "list at least two covariates")
        if len(set(cn)) != len(cn):
            raise SpecError("correlation.covariates", "covariates must be distinct")
        for i, n in enumerate(cn):
            if n not in known:
                ref(n, f"correlation.covariates.{i}")
            if not isinstance(nodes.get(n), DistNode):
                raise SpecError(f"correlation.covariates.{i}",
                                f"{n} is not drawn from a distribution (only dist covariates can be correlated)")
            if nodes[n].categorical:
                raise SpecError(f"correlation.covariates.{i}",
                                f"{n} is categorical (only continuous covariates can be in the copula)")
        copula_r = _correlation(spec.correlation.matrix, len(cn), "correlation.matrix")
        _chol(copula_r, "correlation.matrix", "correlation matrix")
        # scores are drawn sequentially in evaluation order: permute, then factorise
        copula_order = tuple(n for n in order if n in cn)
        perm = [cn.index(n) for n in copula_order]
        copula_chol = np.linalg.cholesky(copula_r[np.ix_(perm, perm)])
        for j, n in enumerate(copula_order):
            nodes[n] = dataclasses.replace(nodes[n], copula_index=j)

    # ---- criteria ------------------------------------------------------------------------
    def crit(exprs, base):
        out = []
        for i, s in enumerate(exprs):
            where = f"{base}.{i}"
            e = parse_expr(s, where)
            if not e.is_bool:
                raise SpecError(where, f"a criterion must be a comparison, got {s!r}")
            for n in sorted(e.names):
                ref(n, where)
            out.append((where, e.compile(categories)))
        return tuple(out)

    inclusion = crit(spec.criteria.inclusion, "criteria.inclusion")
    exclusion = crit(spec.criteria.exclusion, "criteria.exclusion")
    stratum_criteria = ()
    if spec.strata is not None:
        stratum_criteria = tuple(crit(lv.criteria, f"strata.levels.{lab}.criteria")
                                 for lab, lv in spec.strata.levels.items())

    # ---- parameters ------------------------------------------------------------------------
    params = []
    attrs: dict[str, dict] = {}
    for name, p in spec.parameters.items():
        where = f"parameters.{name}"
        effects = []
        for j, e in enumerate(p.effects):
            w = f"{where}.effects.{j}"
            ref(e.covariate, f"{w}.covariate")
            if e.type == "categorical":
                if e.covariate not in categories:
                    raise SpecError(f"{w}.covariate", f"{e.covariate} is not categorical")
                if not e.multipliers:
                    raise SpecError(f"{w}.multipliers", "categorical effect needs multipliers {category: factor}")
                for f in ("theta", "ref"):
                    if getattr(e, f) is not None:
                        raise SpecError(f"{w}.{f}", "not used by a categorical effect (use multipliers)")
                labels = categories[e.covariate]
                for lab, m in e.multipliers.items():
                    if lab not in labels:
                        raise SpecError(f"{w}.multipliers.{lab}",
                                        f"not a category of {e.covariate} ({', '.join(labels)})")
                    if not m > 0:
                        raise SpecError(f"{w}.multipliers.{lab}", f"multiplier must be > 0, got {m}")
                table = tuple(float(e.multipliers.get(lab, 1.0)) for lab in labels)
                effects.append(Effect(e.covariate, "categorical", table=table))
            else:
                if e.covariate in categories:
                    raise SpecError(f"{w}.covariate", f"{e.covariate} is categorical: use type categorical")
                if e.multipliers is not None:
                    raise SpecError(f"{w}.multipliers", f"not used by a {e.type} effect")
                for f in ("theta", "ref"):
                    if getattr(e, f) is None:
                        raise SpecError(f"{w}.{f}", f"required for a {e.type} effect")
                if e.type == "power" and not e.ref > 0:
                    raise SpecError(f"{w}.ref", f"must be > 0 for a power effect, got {e.ref}")
                effects.append(Effect(e.covariate, e.type, float(e.theta), float(e.ref)))
        units = p.units or meta.PARAMETERS.get(name, (None, None))[0]
        if units is None:
            raise SpecError(f"{where}.units", f"required (no default units for {name})")
        long_name = p.long_name or meta.PARAMETERS.get(name, (None, name))[1]
        params.append(ParamNode(name, float(p.typical), tuple(effects)))
        attrs[name] = {"units": units, "long_name": long_name, "role": "parameter"}

    # ---- BSV -------------------------------------------------------------------------------
    bsv_names: tuple[str, ...] = ()
    omega = omega_chol = None
    if spec.bsv is not None:
        b = spec.bsv
        bsv_names = tuple(b.parameters)
        k = len(bsv_names)
        if k == 0:
            raise SpecError("bsv.parameters", "list at least one parameter")
        for i, n in enumerate(bsv_names):
            if n not in spec.parameters:
                raise SpecError(f"bsv.parameters.{i}", f"unknown parameter {n!r}")
        if len(set(bsv_names)) != k:
            raise SpecError("bsv.parameters", "parameters must be distinct")
        given = [f for f in ("omega", "variance", "cv_percent") if getattr(b, f) is not None]
        if len(given) != 1:
            raise SpecError("bsv", "give exactly one of omega (matrix), variance or cv_percent")
        if b.omega is not None:
            if b.correlation is not None:
                raise SpecError("bsv.correlation", "not used with a full omega matrix")
            omega = _matrix(b.omega, k, "bsv.omega", "omega")
            if np.any(np.diag(omega) <= 0):
                raise SpecError("bsv.omega", "variances (diagonal) must be > 0")
            omega_chol = _chol(omega, "bsv.omega", "omega")
        else:
            f = given[0]
            vals = getattr(b, f)
            if len(vals) != k:
                raise SpecError(f"bsv.{f}", f"needs {k} values (one per parameter), got {len(vals)}")
            for i, v in enumerate(vals):
                if not v > 0:
                    raise SpecError(f"bsv.{f}.{i}", f"must be > 0, got {v}")
            var = cv_percent_to_variance(vals) if f == "cv_percent" else np.asarray(vals, dtype=float)
            r = None if b.correlation is None else _correlation(b.correlation, k, "bsv.correlation")
            omega = omega_from(var, r)
            omega_chol = _chol(omega, "bsv.correlation", "omega (from correlation)")

    # ---- IOV -------------------------------------------------------------------------------
    iov_sd: dict[str, float] = {}
    occasions = 0
    if spec.iov is not None:
        v = spec.iov
        occasions = v.occasions
        given = [f for f in ("variance", "cv_percent") if getattr(v, f) is not None]
        if len(given) != 1:
            raise SpecError("iov", "give exactly one of variance or cv_percent")
        vals = getattr(v, given[0])
        if not vals:
            raise SpecError(f"iov.{given[0]}", "list at least one parameter")
        for n, x in vals.items():
            if n not in spec.parameters:
                raise SpecError(f"iov.{given[0]}.{n}", f"unknown parameter {n!r}")
            if not x > 0:
                raise SpecError(f"iov.{given[0]}.{n}", f"must be > 0, got {x}")
            var = float(cv_percent_to_variance(x)) if given[0] == "cv_percent" else float(x)
            iov_sd[n] = float(np.sqrt(var))

    # ---- residual error ---------------------------------------------------------------------
    if spec.residual_error is not None:
        check_residual(spec.residual_error, "residual_error")

    # ---- attributes --------------------------------------------------------------------------
    for name in order:
        node = nodes[name]
        if isinstance(node, StratumNode):
            attrs[name] = {"units": "1", "long_name": spec.strata.long_name or "stratum", "role": "stratum"}
        else:
            c = covs.get(name)
            dunits, dlong = meta.COVARIATES.get(name, (None, None))
            units = (c.units if c is not None else None) or dunits
            if name in categories:
                units = "1"
            if units is None:
                raise SpecError(f"covariates.{name}.units", f"required (no default units for {name})")
            role = "derived covariate" if isinstance(node, (DerivedNode, ExprNode)) else "covariate"
            attrs[name] = {"units": units, "long_name": (c.long_name if c is not None else None) or dlong
                           or name.lower(), "role": role}
        if name in categories:
            labels = categories[name]
            attrs[name].update(flag_values=list(range(len(labels))), flag_meanings=" ".join(labels))
    for n in bsv_names:
        attrs[f"eta_{n}"] = {"units": "1", "long_name": f"between-subject random effect of {n} (log scale)",
                             "role": "eta"}
    for n in iov_sd:
        attrs[f"kappa_{n}"] = {"units": "1", "long_name": f"inter-occasion random effect of {n} (log scale)",
                               "role": "kappa"}
        attrs[f"{n}_occ"] = {"units": attrs[n]["units"], "long_name": f"{attrs[n]['long_name']} per occasion "
                             f"(including IOV)", "role": "parameter per occasion"}

    return CompiledCohort(
        spec=spec, spec_json=spec_json, order=order, nodes=nodes,
        categories=categories, copula_names=copula_names, copula_r=copula_r, copula_chol=copula_chol,
        inclusion=inclusion, exclusion=exclusion, stratum=stratum,
        stratum_labels=categories.get(stratum, ()) if stratum else (), stratum_fractions=fractions,
        stratum_criteria=stratum_criteria, params=tuple(params), bsv_names=bsv_names, omega=omega,
        omega_chol=omega_chol, iov_sd=iov_sd, occasions=occasions, attrs=attrs)


def check_residual(r, where: str) -> None:
    """Required/unused fields per residual error type."""
    need = {"additive": ("additive",), "proportional": ("proportional",),
            "combined": ("additive", "proportional"), "exponential": ("exponential",)}[r.type]
    for f in ("additive", "proportional", "exponential"):
        v = getattr(r, f)
        if f in need and v is None:
            raise SpecError(f"{where}.{f}", f"required for {r.type} error")
        if f not in need and v is not None:
            raise SpecError(f"{where}.{f}", f"not used by {r.type} error")


def _dist_node(name, c, where, categories, ref, copula_index) -> DistNode:
    allowed = set(_DIST_PARAMS[c.dist])
    if c.dist == "lognormal":
        allowed |= {"median"}
    if c.dist == "categorical":
        allowed |= {"probs"}
        if c.given is not None:
            raise SpecError(f"{where}.given", "a categorical covariate cannot be conditional (not supported)")
    for f in _ALL_DIST_FIELDS:
        if getattr(c, f) is not None and f not in allowed:
            raise SpecError(f"{where}.{f}", f"not a parameter of {c.dist} "
                                            f"(expected {', '.join(sorted(allowed))})")
    deps = set()
    if c.given is not None:
        ref(c.given, f"{where}.given")
        if c.given not in categories:
            raise SpecError(f"{where}.given", f"{c.given} is not categorical")
        deps.add(c.given)
    if c.dist == "categorical":
        return DistNode(name, "categorical", {}, None, tuple(c.probs), tuple(c.probs.values()),
                        copula_index, frozenset())
    raw = {}
    for f in _DIST_PARAMS[c.dist]:
        v = getattr(c, f)
        if c.dist == "lognormal" and f == "meanlog":
            if (c.meanlog is None) == (c.median is None):
                raise SpecError(f"{where}.median", "lognormal needs exactly one of median or meanlog")
            if c.median is not None:
                raw["meanlog"] = ("median", c.median)
                continue
        if v is None:
            raise SpecError(f"{where}.{f}", f"required for {c.dist}")
        raw[f] = (f, v)
    params = {}
    consts = {}
    for key, (f, v) in raw.items():
        fw = f"{where}.{f}"
        log = f == "median"
        if isinstance(v, float):
            consts[f] = v
            params[key] = ParamGetter(const=float(np.log(v)) if log else v)
            _positive(f, v, fw)
        elif isinstance(v, dict):
            if c.given is None:
                raise SpecError(fw, "a {category: value} mapping needs `given` (a categorical covariate)")
            labels = categories[c.given]
            for lab in v:
                if lab not in labels:
                    raise SpecError(f"{fw}.{lab}", f"not a category of {c.given} ({', '.join(labels)})")
            for lab in labels:
                if lab not in v:
                    raise SpecError(f"{fw}.{lab}", f"missing value for category {lab!r} of {c.given}")
                _positive(f, v[lab], f"{fw}.{lab}")
            table = tuple(float(np.log(v[lab])) if log else float(v[lab]) for lab in labels)
            params[key] = ParamGetter(table=table, given=c.given)
        else:
            e = parse_expr(v, fw)
            if e.is_bool:
                raise SpecError(fw, "must be numeric, not a comparison")
            for n in sorted(e.names):
                ref(n, fw)
            deps |= e.names
            fn = e.compile(categories)
            if log:
                import jax.numpy as jnp
                params[key] = ParamGetter(fn=lambda env, fn=fn: jnp.log(fn(env)))
            else:
                params[key] = ParamGetter(fn=fn)
    if "low" in consts and "high" in consts and not consts["low"] < consts["high"]:
        raise SpecError(f"{where}.high", f"must be > low ({consts['low']}), got {consts['high']}")
    return DistNode(name, c.dist, params, c.given, (), (), copula_index, frozenset(deps))


def _positive(f, v, where):
    if f in ("sd", "sdlog", "median") and not v > 0:
        raise SpecError(where, f"must be > 0, got {v}")


def _toposort(nodes: Mapping[str, object], spec: CohortSpec) -> tuple[str, ...]:
    """Evaluation order (dependencies first, otherwise spec order); cycles -> SpecError."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def field_of(n):
        return f"covariates.{n}" if n in spec.covariates else (
            f"derived.{spec.derived.index(n)}" if n in spec.derived else "strata.name")

    def visit(n, path):
        s = state.get(n)
        if s == 2:
            return
        if s == 1:
            cyc = path[path.index(n):] + [n]
            raise SpecError(field_of(n), f"circular dependency: {' -> '.join(cyc)}")
        state[n] = 1
        for d in sorted(nodes[n].deps):
            visit(d, path + [n])
        state[n] = 2
        order.append(n)

    for n in nodes:
        visit(n, [])
    return tuple(order)

