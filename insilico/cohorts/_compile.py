"""Compilation of a :class:`CohortSpec` into evaluation-ready nodes, with the checks across
sections (one function per section).

The schema (``_spec.py``) has already checked each section by itself; here what needs several
sections is checked and reported as a :class:`~insilico.errors.SpecError` naming the field:
names unique and not reserved, unknown covariates/categories in expressions and effects,
``given`` not categorical, circular dependencies, copula members that are not continuous
distributions, units missing for non-standard names. The parameter model is compiled by
:func:`insilico.population.compile_population`.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from insilico.cohorts import _metadata as meta
from insilico.cohorts._covariates import DerivedNode, DistNode, ExprNode, ParamGetter, StratumNode
from insilico.cohorts._derived import DERIVED_INPUTS
from insilico.cohorts._resample import ROW, ColumnNode, ResampleTable, RowNode, read_resample_table, table_fingerprint
from insilico.cohorts._spec import DIST_PARAMS, CohortSpec, parse_cohort_spec
from insilico.errors import SpecError
from insilico.expressions import parse_expr
from insilico.population import PopulationModel, compile_population

__all__ = ["CompiledCohort", "compile_spec"]

Criteria = tuple[tuple[str, Callable], ...]  # (field, env -> bool)


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
    inclusion: Criteria
    exclusion: Criteria
    stratum: str | None
    stratum_labels: tuple[str, ...]
    stratum_fractions: tuple[float, ...]
    stratum_criteria: tuple[Criteria, ...]      # per level
    population: PopulationModel
    attrs: Mapping[str, dict] = field(default_factory=dict)  # variable -> CF attributes
    table: ResampleTable | None = None          # the resampled covariates (``resample``), if any
    cache_key: str = ""                          # spec JSON + the resample table's fingerprint

    def table_arrays(self) -> dict:
        """The resampled columns as arrays (an argument of the compiled kernel; empty without ``resample``)."""
        return {} if self.table is None else {k: jnp.asarray(v) for k, v in self.table.values.items()}

    def is_integer(self, name: str) -> bool:
        """Whether variable ``name`` holds integers (category codes, the resampled row)."""
        return name in self.categories or (name == ROW and self.table is not None)

    @property
    def has_criteria(self) -> bool:
        return bool(self.inclusion or self.exclusion or any(self.stratum_criteria))

    @property
    def covariates(self) -> tuple[str, ...]:
        return self.order

    @property
    def bsv_names(self) -> tuple[str, ...]:
        return self.population.bsv_names

    @property
    def omega(self) -> np.ndarray | None:
        return self.population.omega

    @property
    def iov_sd(self) -> dict[str, float]:
        return dict(zip(self.population.iov_names, self.population.iov_sd))

    @property
    def occasions(self) -> int:
        return self.population.occasions

    def subject_variables(self) -> dict[str, tuple[np.dtype, dict]]:
        """The per-subject variables (dims ``subject`` only) a draw of this cohort holds —
        covariates, ``eta_*``, parameters — with their dtype and CF attributes, without drawing."""
        pop = self.population
        names = list(self.order) + [f"eta_{n}" for n in pop.bsv_names] + list(pop.names)
        return {n: (np.dtype(np.int64 if self.is_integer(n) else np.float64), dict(self.attrs[n])) for n in names}

    def output_names(self) -> list[str]:
        pop = self.population
        return (list(self.order) + [f"eta_{n}" for n in pop.bsv_names] + [f"kappa_{n}" for n in pop.iov_names]
                + list(pop.names) + [f"{n}_occ" for n in pop.iov_names])


_CACHE: OrderedDict[str, CompiledCohort] = OrderedDict()
_LOCK = threading.Lock()


def compile_spec(spec) -> CompiledCohort:
    """Check and compile ``spec`` (a :class:`CohortSpec`, path, YAML text or mapping).
    Cached by the spec's canonical JSON."""
    if isinstance(spec, CompiledCohort):
        return spec
    spec = parse_cohort_spec(spec)
    key = spec.to_json()
    if spec.resample is not None:   # the table's content is part of the cohort
        key += "\n" + table_fingerprint(spec.resample.table)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    c = _compile(spec, spec.to_json(), key)
    with _LOCK:
        _CACHE[key] = c
        if len(_CACHE) > 64:
            _CACHE.popitem(last=False)
    return c


def _compile(spec: CohortSpec, spec_json: str, cache_key: str) -> CompiledCohort:
    if not spec.covariates and spec.strata is None and not spec.parameters and spec.resample is None:
        raise SpecError("parameters", "a cohort needs at least one covariate or parameter")
    names = _names(spec)
    table = read_resample_table(spec.resample) if spec.resample is not None else None
    categories = _categories(spec, table)
    known = frozenset(names) - frozenset(spec.parameters)
    nodes: dict[str, object] = {}
    stratum, fractions = None, ()
    if spec.strata is not None:
        stratum, fractions = spec.strata.name, tuple(lv.fraction for lv in spec.strata.levels.values())
        nodes[stratum] = StratumNode(stratum, categories[stratum], fractions)
    if table is not None:
        nodes[ROW] = RowNode(ROW, table.rows)
        nodes.update({n: ColumnNode(n, n in table.categories) for n in spec.resample.columns})
    nodes.update(_covariate_nodes(spec, categories, known))
    nodes.update(_derived_nodes(spec, categories, known))
    order = _toposort(nodes, spec)
    copula_r, copula_chol = _copula(spec, nodes, order, known)
    inclusion, exclusion, stratum_criteria = _criteria(spec, categories, known)
    pop = compile_population(spec.parameters, spec.bsv, spec.iov, spec.residual_error,
                             covariates=known, categories=categories)
    return CompiledCohort(
        spec=spec, spec_json=spec_json, order=order, nodes=nodes, categories=categories,
        copula_names=tuple(spec.correlation.covariates) if spec.correlation else (),
        copula_r=copula_r, copula_chol=copula_chol, inclusion=inclusion, exclusion=exclusion,
        stratum=stratum, stratum_labels=categories.get(stratum, ()) if stratum else (),
        stratum_fractions=fractions, stratum_criteria=stratum_criteria, population=pop,
        attrs=_attributes(spec, order, nodes, categories, pop), table=table, cache_key=cache_key)


def _ref(name: str, where: str, known) -> None:
    if name not in known:
        raise SpecError(where, f"unknown covariate {name!r} (defined: {', '.join(sorted(known)) or 'none'})")


def _names(spec: CohortSpec) -> dict[str, str]:
    """Every name the spec defines -> its field; names valid, not reserved, used once."""
    seen: dict[str, str] = {}
    claims = ([(spec.strata.name, "strata.name")] if spec.strata is not None else []) \
        + ([(n, f"resample.columns.{i}") for i, n in enumerate(spec.resample.columns)] if spec.resample else []) \
        + [(n, f"covariates.{n}") for n in spec.covariates] \
        + [(n, f"derived.{i}") for i, n in enumerate(spec.derived)] \
        + [(n, f"parameters.{n}") for n in spec.parameters]
    for name, where in claims:
        if not meta.NAME_RE.match(name):
            raise SpecError(where, f"invalid name {name!r}: use letters, digits and _ (starting with a letter)")
        if name.lower() in meta.RESERVED or name.startswith(("eta_", "kappa_")) or name.endswith("_occ"):
            raise SpecError(where, f"name {name!r} is reserved")
        if name in seen:
            raise SpecError(where, f"name {name!r} is already used by {seen[name]}")
        seen[name] = where
    return seen


def _categories(spec: CohortSpec, table: ResampleTable | None) -> dict[str, tuple[str, ...]]:
    """Categorical covariates (and the stratum) -> their labels, codes 0..K-1 in spec order
    (resampled columns: as read from the table, `read_resample_table`)."""
    categories: dict[str, tuple[str, ...]] = {}
    if spec.strata is not None:
        labels = tuple(spec.strata.levels)
        for lab in labels:
            if not meta.LABEL_RE.match(lab):
                raise SpecError(f"strata.levels.{lab}", "level names must not contain whitespace")
        categories[spec.strata.name] = labels
    for name, labels in (table.categories.items() if table is not None else ()):
        for lab in labels:
            if not meta.LABEL_RE.match(lab):
                where = f"resample.categories.{name}" if name in spec.resample.categories else \
                    f"resample.columns.{spec.resample.columns.index(name)}"
                raise SpecError(where, f"category label {lab!r} of {name} contains whitespace")
        categories[name] = labels
    for name, c in spec.covariates.items():
        if c.dist == "categorical":
            for lab in c.probs:
                if not meta.LABEL_RE.match(lab):
                    raise SpecError(f"covariates.{name}.probs.{lab}", "category labels must not contain whitespace")
            categories[name] = tuple(c.probs)
    return categories


def _covariate_nodes(spec: CohortSpec, categories, known) -> dict[str, object]:
    nodes: dict[str, object] = {}
    for name, c in spec.covariates.items():
        where = f"covariates.{name}"
        if c.expr is None:
            nodes[name] = _dist_node(name, c, where, categories, known)
            continue
        e = parse_expr(c.expr, f"{where}.expr")
        if e.is_bool:
            raise SpecError(f"{where}.expr", "must be numeric, not a comparison")
        for n in sorted(e.names):
            _ref(n, f"{where}.expr", known)
        nodes[name] = ExprNode(name, e.compile(categories), c.expr, frozenset(e.names))
    return nodes


def _dist_node(name, c, where, categories, known) -> DistNode:
    deps = set()
    if c.given is not None:
        _ref(c.given, f"{where}.given", known)
        if c.given not in categories:
            raise SpecError(f"{where}.given", f"{c.given} is not categorical")
        deps.add(c.given)
    if c.dist == "categorical":
        return DistNode(name, "categorical", {}, None, tuple(c.probs), tuple(c.probs.values()), None, frozenset())
    params = {}
    for f in DIST_PARAMS[c.dist]:
        v = getattr(c, f)
        if v is None:  # lognormal: the one of meanlog/median not given
            continue
        fw, log = f"{where}.{f}", f == "median"
        key = "meanlog" if log else f
        if isinstance(v, float):
            params[key] = ParamGetter(const=float(np.log(v)) if log else v)
        elif isinstance(v, dict):
            params[key] = ParamGetter(table=_category_table(v, f, fw, c.given, categories, log), given=c.given)
        else:
            e = parse_expr(v, fw)
            if e.is_bool:
                raise SpecError(fw, "must be numeric, not a comparison")
            for n in sorted(e.names):
                _ref(n, fw, known)
            deps |= e.names
            fn = e.compile(categories)
            params[key] = ParamGetter(fn=(lambda env, fn=fn: jnp.log(fn(env))) if log else fn)
    if c.dist == "truncnormal":
        _check_truncation(params, where, categories.get(c.given, ()))
    return DistNode(name, c.dist, params, c.given, (), (), None, frozenset(deps))


# NumPyro's truncated-normal inverse CDF is exact to ~37 SD (float64 Phi underflows past 37.5)
MAX_TRUNCATION_SD = 35.0


def _check_truncation(params: dict, where: str, labels) -> None:
    """SpecError when a truncnormal's [low, high] lies more than MAX_TRUNCATION_SD standard
    deviations from its mean (no probability mass left to draw from), for each category of
    ``given``; parameters that are expressions are checked when drawn (`check_draw`)."""
    if any(g.fn is not None for g in params.values()):
        return
    rows = range(len(labels)) if any(g.table is not None for g in params.values()) else [None]
    for r in rows:
        v = {k: g.const if g.const is not None else g.table[r] for k, g in params.items()}
        a, b = (v["low"] - v["mean"]) / v["sd"], (v["high"] - v["mean"]) / v["sd"]
        gap = max(a, -b, 0.0)
        if gap > MAX_TRUNCATION_SD:
            at = "" if r is None else f" (category {labels[r]!r})"
            raise SpecError(f"{where}.low" if a > 0 else f"{where}.high",
                            f"truncnormal interval [{v['low']:g}, {v['high']:g}] lies {gap:.3g} SD from the mean "
                            f"{v['mean']:g}{at}: no probability mass left to draw from (at most "
                            f"{MAX_TRUNCATION_SD:g} SD)")


def _category_table(v: dict, f: str, fw: str, given: str, categories, log: bool) -> tuple[float, ...]:
    """A ``{category: value}`` parameter as a table over the codes of ``given``."""
    labels = categories[given]
    for lab in v:
        if lab not in labels:
            raise SpecError(f"{fw}.{lab}", f"not a category of {given} ({', '.join(labels)})")
    for lab in labels:
        if lab not in v:
            raise SpecError(f"{fw}.{lab}", f"missing value for category {lab!r} of {given}")
        if f in ("sd", "sdlog", "median") and not v[lab] > 0:
            raise SpecError(f"{fw}.{lab}", f"must be > 0, got {v[lab]}")
    return tuple(float(np.log(v[lab])) if log else float(v[lab]) for lab in labels)


def _derived_nodes(spec: CohortSpec, categories, known) -> dict[str, DerivedNode]:
    nodes = {}
    for i, name in enumerate(spec.derived):
        where = f"derived.{i}"
        fn, inputs = DERIVED_INPUTS[name]
        sex, fcode, deps = None, None, set()
        for a in inputs:
            if a == "female":
                sex, fcode = "SEX", _female_code(name, where, categories)
                deps.add("SEX")
                continue
            if a not in known:
                raise SpecError(where, f"{name} needs covariate {a} ({meta.COVARIATES[a][0]}), which is not defined")
            if a in categories:
                raise SpecError(where, f"{name} needs a continuous covariate {a}")
            deps.add(a)
        nodes[name] = DerivedNode(name, fn, inputs, sex, fcode, frozenset(deps))
    return nodes


def _female_code(name: str, where: str, categories) -> int:
    if "SEX" not in categories:
        raise SpecError(where, f"{name} needs a categorical covariate SEX with a 'female' category")
    low = [lab.lower() for lab in categories["SEX"]]
    for label in ("female", "f"):
        if label in low:
            return low.index(label)
    raise SpecError(where, f"{name} needs SEX to have a category 'female' (or 'F'); "
                           f"got {', '.join(categories['SEX'])}")


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


def _copula(spec: CohortSpec, nodes: dict, order, known):
    """Gaussian copula: (R in spec order, its Cholesky factor in evaluation order); sets each
    member node's ``copula_index`` (position in evaluation order)."""
    if spec.correlation is None:
        return None, None
    cn = tuple(spec.correlation.covariates)
    for i, n in enumerate(cn):
        _ref(n, f"correlation.covariates.{i}", known)
        if not isinstance(nodes.get(n), DistNode):
            raise SpecError(f"correlation.covariates.{i}",
                            f"{n} is not drawn from a distribution (only dist covariates can be correlated)")
        if nodes[n].categorical:
            raise SpecError(f"correlation.covariates.{i}",
                            f"{n} is categorical (only continuous covariates can be in the copula)")
    r = np.asarray(spec.correlation.matrix, dtype=float)  # checked by CorrelationSpec
    # scores are drawn sequentially in evaluation order: permute, then factorise
    copula_order = tuple(n for n in order if n in cn)
    perm = [cn.index(n) for n in copula_order]
    for j, n in enumerate(copula_order):
        nodes[n] = dataclasses.replace(nodes[n], copula_index=j)
    return r, np.linalg.cholesky(r[np.ix_(perm, perm)])


def _criteria(spec: CohortSpec, categories, known):
    """(inclusion, exclusion, per stratum level) criteria as (field, env -> bool) pairs."""
    def crit(exprs, base) -> Criteria:
        out = []
        for i, s in enumerate(exprs):
            where = f"{base}.{i}"
            e = parse_expr(s, where)
            if not e.is_bool:
                raise SpecError(where, f"a criterion must be a comparison, got {s!r}")
            for n in sorted(e.names):
                _ref(n, where, known)
            out.append((where, e.compile(categories)))
        return tuple(out)

    stratum_criteria = ()
    if spec.strata is not None:
        stratum_criteria = tuple(crit(lv.criteria, f"strata.levels.{lab}.criteria")
                                 for lab, lv in spec.strata.levels.items())
    return (crit(spec.criteria.inclusion, "criteria.inclusion"), crit(spec.criteria.exclusion, "criteria.exclusion"),
            stratum_criteria)


def _resampled_attributes(r, name: str, categorical: bool) -> dict:
    dunits, dlong = meta.COVARIATES.get(name, (None, None))
    units = "1" if categorical else r.units.get(name) or dunits
    if units is None:
        raise SpecError(f"resample.units.{name}", f"required (no default units for {name})")
    return {"units": units, "long_name": r.long_name.get(name) or dlong or name.lower(),
            "role": "covariate (resampled)"}


def _attributes(spec: CohortSpec, order, nodes, categories, pop: PopulationModel) -> dict[str, dict]:
    """CF attributes (units, long_name, role; flag_values/flag_meanings for categories) of every
    output variable."""
    attrs: dict[str, dict] = {}
    for name in order:
        node = nodes[name]
        if isinstance(node, StratumNode):
            attrs[name] = {"units": "1", "long_name": spec.strata.long_name or "stratum", "role": "stratum"}
        elif isinstance(node, RowNode):
            attrs[name] = {"units": "1", "long_name": "row of the resampled table (0-based)", "role": "resampled row"}
        elif isinstance(node, ColumnNode):
            attrs[name] = _resampled_attributes(spec.resample, name, name in categories)
        else:
            c = spec.covariates.get(name)
            dunits, dlong = meta.COVARIATES.get(name, (None, None))
            units = "1" if name in categories else (c.units if c is not None else None) or dunits
            if units is None:
                raise SpecError(f"covariates.{name}.units", f"required (no default units for {name})")
            role = "derived covariate" if isinstance(node, (DerivedNode, ExprNode)) else "covariate"
            attrs[name] = {"units": units, "long_name": (c.long_name if c is not None else None) or dlong
                           or name.lower(), "role": role}
        if name in categories:
            labels = categories[name]
            attrs[name].update(flag_values=list(range(len(labels))), flag_meanings=" ".join(labels))
    for name, units, long_name in zip(pop.names, pop.units, pop.long_names):
        attrs[name] = {"units": units, "long_name": long_name, "role": "parameter"}
    for n in pop.bsv_names:
        attrs[f"eta_{n}"] = {"units": "1", "long_name": f"between-subject random effect of {n} (log scale)",
                             "role": "eta"}
    for n in pop.iov_names:
        attrs[f"kappa_{n}"] = {"units": "1", "long_name": f"inter-occasion random effect of {n} (log scale)",
                               "role": "kappa"}
        attrs[f"{n}_occ"] = {"units": attrs[n]["units"], "long_name": f"{attrs[n]['long_name']} per occasion "
                             f"(including IOV)", "role": "parameter per occasion"}
    return attrs
