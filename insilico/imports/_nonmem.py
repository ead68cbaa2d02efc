"""Translate a NONMEM control stream into an insilico population model (``population.yaml``).

The control stream is parsed by pharmpy-core (``pharmpy.modeling.read_model``); its $PK, $ERROR,
$THETA, $OMEGA and $SIGMA are then mapped onto :mod:`insilico.estimation`'s population-model
file (``PopulationModelSpec``):

* $SUBROUTINE ADVAN1/2 TRANS2, ADVAN3/4/11/12 TRANS4 and ADVAN1/2/3/4/11/12 TRANS1 -> built-ins
  ``1cmt_iv``, ``1cmt_oral``, ``2cmt_iv``, ``2cmt_oral``, ``3cmt_iv``, ``3cmt_oral`` (NONMEM Users
  Guide VI, PREDPP; the table `ADVANS`: ADVAN4 TRANS4's V2/V3 are insilico's V1/V2, ADVAN11's
  Q2/Q3 and ADVAN12's Q3/Q4 are Q/Q3). The scale of the observed compartment (S1 or S2) must equal
  its volume, so that F = amount / volume is insilico's ``conc``; with TRANS1 the scale is the
  volume and the rate constants become clearances (CL = K*V, Q = K12*V, V2 = K12*V/K21), each of
  which must then have the population form below. A stream with no S<k> that computes the
  concentration in $ERROR, ``IPRED = A(k)/V`` (or via ``A2 = A(2)``) with Y built on it, k the central
  compartment, V an expression of $PK variables, is read as the scale S<k> = V (`_implicit_scale`).
* $SUBROUTINE ADVAN3/4 TRANS3 (CL, V, Q, VSS), TRANS5 (AOB, ALPHA, BETA) and TRANS6 (ALPHA, BETA,
  K21 or K32), ADVAN11/12 TRANS6 (ALPHA, BETA, GAMMA, K21/K31 or K32/K42) -> the same built-ins in
  NONMEM's parameters (`insilico.imports._trans`: the model ``insilico.imports:advan3_trans3`` etc.
  converts them to the built-in's by NONMEM Users Guide VI's formulas); each TRANS parameter, and
  for TRANS5/6 the scale (S1, S2 for oral) as the central volume ``V``, must have the population
  form below; for TRANS3 the scale must equal V.
* $SUBROUTINE ADVAN6/13 with $MODEL and $DES -> a text-equation model (`insilico.imports._des`),
  written next to population.yaml and named by ``model: {file: ...}``.
* $PK: each basic PK parameter must be ``TV * EXP(ETA(k))`` with ``TV`` a product of one THETA
  (the typical value) and covariate factors: ``COV`` or ``(COV/ref)**THETA`` (power),
  ``EXP(THETA*(COV-ref))`` (exponential), ``(1 + THETA*(COV-ref))`` (linear) and ``IF`` blocks
  on a covariate (categorical: one multiplier per level of that covariate in the data set).
* $OMEGA (diagonal and BLOCK) -> ``bsv.omega`` in ETA order; $SIGMA and the $ERROR code ->
  ``residual_error``: Var(Y | F) = sum_kl dY/dEPS_k dY/dEPS_l SIGMA(k,l) must be
  ``a + b F**2`` (additive a, proportional b, combined both; the ``W``/``IPRED`` idioms included);
  ``Y = F*EXP(EPS(1))`` is exponential; ``W = THETA(b)*IPRED + THETA(a)``, ``Y = IPRED + W*EPS(1)``
  (SDs adding, Var = SIGMA (a + b F)**2) is ``combined1``.
* Several observed outputs: an $ERROR that selects Y by DVID (``IF (DVID.EQ.1) THEN Y = Y ELSE
  Y = Y_2 END IF`` or one-liners ``IF (DVID.EQ.2) Y = ...``, which pharmpy-core does not read; read
  from the record's text, `insilico.imports._dvid`) -> ``outputs: {DVID: conc | effect}``: the Y
  proportional to the central amount is ``conc``, one other Y that is a direct effect of the
  concentration C, ``E0 + SLOPE*C`` or ``E0 + EMAX*C/(EC50 + C)`` (``E = A(1)*SLOPE/V + E0``), makes
  the model the composed built-in ``<pk>+linear`` / ``<pk>+emax`` with E0, SLOPE / EMAX, EC50 in the
  population form below, and its residual model goes to ``residual_errors.effect`` (SIGMAs numbered
  after the concentration's). Other selections are reported line by line.
* FIX and finite bounds -> ``estimate.fix`` / ``estimate.bounds``.
* ``cov``: NONMEM's ``.cov`` matrix carried onto the translated quantities by the delta method
  (`covariance_of`; written to ``covariance.yaml``).

What cannot be translated is collected line by line (``NonmemImport.untranslated``); when it
is essential (a structural parameter, the residual model) ``NonmemImport.ok`` is False.
NONMEM's names (THETA1…, OMEGA(i,j), SIGMA(i,j), ETA1…) and the comment names pharmpy reads are
kept in ``NonmemImport.names`` (the ``nonmem_names.yaml`` sidecar).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy

from insilico.errors import SpecError
from insilico.imports._dvid import DvidSwitch, dvid_targets, rewrite_dvid_switch
from insilico.imports._iov import IovError, eta_positions, expand_same_repeats, same_chains, split_iov
from insilico.imports._trans import TRANS_MODELS, micro_constants
from insilico.population import SIGMA_FIELDS

__all__ = ["ADVANS", "GENERAL_ADVANS", "NonmemImport", "covariance_of", "import_nonmem", "nonmem_random_effects"]

# (ADVAN, TRANS) -> (built-in, {insilico parameter: expression of NONMEM $PK variables}, scale, the
# insilico parameter the scale must equal). NONMEM Users Guide VI (PREDPP), chapter "ADVAN and TRANS
# routines": ADVAN1 (central 1), ADVAN2 (depot 1, central 2), ADVAN3 (central 1, peripheral 2),
# ADVAN4 (depot 1, central 2, peripheral 3), ADVAN11 (central 1, peripherals 2 and 3), ADVAN12 (depot
# 1, central 2, peripherals 3 and 4). TRANS2/TRANS4 give clearances and volumes; TRANS1 gives the
# rate constants K (elimination), Kij (flow from i to j) and KA, with the scale S of the central
# compartment as its volume: mass balance of the flows, K*A = CL*A/V and Kij*Ai = Q*Ai/Vi,
# Kji*Aj = Q*Aj/Vj, gives CL = K*V, Q = Kij*V, Vj = Kij*V/Kji.
ADVANS = {
    ("ADVAN1", "TRANS2"): ("1cmt_iv", {"CL": "CL", "V": "V"}, "S1", "V"),
    ("ADVAN2", "TRANS2"): ("1cmt_oral", {"CL": "CL", "V": "V", "KA": "KA"}, "S2", "V"),
    ("ADVAN3", "TRANS4"): ("2cmt_iv", {"CL": "CL", "V1": "V1", "Q": "Q", "V2": "V2"}, "S1", "V1"),
    ("ADVAN4", "TRANS4"): ("2cmt_oral", {"CL": "CL", "V1": "V2", "Q": "Q", "V2": "V3", "KA": "KA"}, "S2", "V1"),
    ("ADVAN11", "TRANS4"): ("3cmt_iv", {"CL": "CL", "V1": "V1", "Q": "Q2", "V2": "V2", "Q3": "Q3", "V3": "V3"},
                            "S1", "V1"),
    ("ADVAN12", "TRANS4"): ("3cmt_oral", {"CL": "CL", "V1": "V2", "Q": "Q3", "V2": "V3", "Q3": "Q4", "V3": "V4",
                                          "KA": "KA"}, "S2", "V1"),
    ("ADVAN1", "TRANS1"): ("1cmt_iv", {"CL": "K*S1", "V": "S1"}, "S1", "V"),
    ("ADVAN2", "TRANS1"): ("1cmt_oral", {"CL": "K*S2", "V": "S2", "KA": "KA"}, "S2", "V"),
    ("ADVAN3", "TRANS1"): ("2cmt_iv", {"CL": "K*S1", "V1": "S1", "Q": "K12*S1", "V2": "K12*S1/K21"}, "S1", "V1"),
    ("ADVAN4", "TRANS1"): ("2cmt_oral", {"CL": "K*S2", "V1": "S2", "Q": "K23*S2", "V2": "K23*S2/K32", "KA": "KA"},
                           "S2", "V1"),
    ("ADVAN11", "TRANS1"): ("3cmt_iv", {"CL": "K*S1", "V1": "S1", "Q": "K12*S1", "V2": "K12*S1/K21",
                                        "Q3": "K13*S1", "V3": "K13*S1/K31"}, "S1", "V1"),
    ("ADVAN12", "TRANS1"): ("3cmt_oral", {"CL": "K*S2", "V1": "S2", "Q": "K23*S2", "V2": "K23*S2/K32",
                                          "Q3": "K24*S2", "V3": "K24*S2/K42", "KA": "KA"}, "S2", "V1"),
}
GENERAL_ADVANS = ("ADVAN6", "ADVAN13")      # $DES -> a text-equation model (insilico.imports._des)
_OPTIONAL = {"F": "F1", "ALAG": "ALAG1"}     # oral models: bioavailability and lag of the depot
_HANDLED_RECORDS = {"PROBLEM", "DATA", "INPUT", "SUBROUTINES", "ABBREVIATED", "PK", "ERROR", "THETA", "OMEGA",
                    "SIGMA", "ESTIMATION", "COVARIANCE", "TABLE", "SIZES", "SCATTER", "ETAS", "PHIS"}
_ESSENTIAL_RECORDS = {"PRED", "DES", "MODEL", "MIX", "AES", "INFN"}


class _Untranslatable(Exception):
    """A $PK/$ERROR expression outside the supported forms (message: why)."""


@dataclass
class NonmemImport:
    """Result of :func:`import_nonmem`.

    population : the population-model mapping (``PopulationModelSpec`` fields), or None when an
        essential part could not be translated.
    names : NONMEM names -> insilico names (``thetas``, ``etas``, ``omegas``, ``sigmas``), with the
        comment names of the control stream.
    untranslated : one line per control-stream line or item not translated, with the reason.
    ok : False when an essential part is among ``untranslated``.
    text_model : for ADVAN6/13, the text-equation model (`insilico.models.text_model` mapping) that
        ``population["model"] = {"file": text_model_file}`` names (written next to population.yaml).
    covariance : with a ``.cov`` file, the covariance of the estimates on the translated quantities
        (`covariance_of`).
    """

    population: dict | None
    names: dict
    untranslated: list[str] = field(default_factory=list)
    ok: bool = True
    text_model: dict | None = None
    text_model_file: str | None = None
    covariance: dict | None = None


@dataclass
class _Context:
    """Symbols of the control stream: THETA/ETA/EPS names (pharmpy's), data columns, values."""

    thetas: list[str]
    etas: list[str]
    eps: list[str]
    columns: set[str]
    values: dict[str, float]
    dataset: object
    sigma_matrix: list[list[str]] = field(default_factory=list)
    pk_lines: dict | None = None      # flattened $PK line -> the control stream's (`_read_flattened`)
    iov_chains: list = field(default_factory=list)   # $OMEGA SAME chains (`insilico.imports._iov.same_chains`)

    def eta_label(self, eta: str) -> str:
        """NONMEM's name ``ETA(j)`` of pharmpy's ETA ``eta``."""
        return f"ETA({self.etas.index(eta) + 1})"


# --------------------------------------------------------------------------- expression forms

def _linear_in(term, theta, cov):
    """``ref`` if ``term == theta * (cov - ref)`` identically, else None."""
    t, c = sympy.Symbol(theta), sympy.Symbol(cov)
    e = sympy.expand(term)
    if sympy.simplify(e.diff(t).diff(c) - 1) != 0 or sympy.simplify(e.diff(c, 2)) != 0 \
            or sympy.simplify(e.diff(t, 2)) != 0:
        return None
    rest = sympy.simplify(e - t * c)
    ref = sympy.simplify(-rest / t)
    return float(ref) if ref.is_number and sympy.simplify(rest + ref * t) == 0 else None


def _theta_and_cov(expr, ctx):
    names = {s.name for s in expr.free_symbols}
    th = [n for n in names if n in ctx.thetas]
    cv = [n for n in names if n in ctx.columns]
    if len(th) != 1 or len(cv) != 1 or len(names) != 2:
        raise _Untranslatable(f"`{expr}`: expected one THETA and one covariate")
    return th[0], cv[0]


def _exp_terms(arg, ctx):
    """Split the argument of EXP(...) into the ETA and exponential covariate effects."""
    eta, effects = None, []
    for term in sympy.Add.make_args(sympy.expand(arg)):
        names = {s.name for s in term.free_symbols}
        if names & set(ctx.etas):
            if not (term.is_Symbol and eta is None):
                raise _Untranslatable(f"`EXP({arg})`: an ETA must enter as EXP(ETA) once")
            eta = term.name
    rest = sympy.simplify(arg - (sympy.Symbol(eta) if eta else 0))
    if rest != 0:
        theta, cov = _theta_and_cov(rest, ctx)
        ref = _linear_in(rest, theta, cov)
        if ref is None:
            raise _Untranslatable(f"`EXP({rest})`: expected EXP(THETA*(COV - ref))")
        effects.append({"covariate": cov, "type": "exponential", "ref": ref, "theta": theta})
    return eta, effects


def _power(f, ctx):
    """``COV``, ``COV**e`` or ``(COV/ref)**e`` (e a THETA or a number) as a power effect."""
    base, ex = (f.base, f.exp) if f.is_Pow else (f, sympy.Integer(1))
    covs = [s.name for s in base.free_symbols]
    if len(covs) != 1 or covs[0] not in ctx.columns:
        raise _Untranslatable(f"`{f}`: not a power of a covariate")
    k = sympy.simplify(base / sympy.Symbol(covs[0]))
    if not (k.is_number and k > 0):
        raise _Untranslatable(f"`{f}`: expected (COV/ref)**THETA")
    if ex.is_Symbol and ex.name in ctx.thetas:
        theta = ex.name
    elif ex.is_number:
        theta = float(ex)
    else:
        raise _Untranslatable(f"`{f}`: the exponent must be a THETA or a number")
    return {"covariate": covs[0], "type": "power", "ref": float(1 / k), "theta": theta}


def _categorical(pw, ctx):
    """An ``IF`` on covariates (a sympy Piecewise) -> (default branch, [categorical effects]).

    Each non-default branch must be the default times a factor of THETAs only. With one covariate the
    effect's multipliers are given per level of the covariate in the data set (``relation`` keeps the
    factor per level for the names). Conditions on several covariates (nested IF blocks, ``.AND.``)
    must factor into one multiplier per covariate: with a reference combination of levels whose
    factor is 1, ``f_c(x)`` is the factor with covariate ``c`` at ``x`` and the others at the
    reference, and every combination of levels in the data set must have the factor ``prod_c f_c``
    (else the IF is an interaction, which insilico's covariate effects cannot express)."""
    default = [e for e, c in pw.args if c == sympy.true]
    if len(default) != 1:
        raise _Untranslatable(f"`{pw}`: IF without a default branch")
    default = default[0]
    branches, covs = [], set()
    for e, c in pw.args:
        if c == sympy.true:
            continue
        names = {s.name for s in c.free_symbols}
        if not names or not names <= ctx.columns:
            raise _Untranslatable(f"`IF ({c})`: the condition must test covariates (data columns)")
        covs |= names
        ratio = sympy.simplify(e / default)
        if not {s.name for s in ratio.free_symbols} <= set(ctx.thetas):
            raise _Untranslatable(f"`IF ({c})`: the branch must multiply the typical value by THETAs")
        branches.append((c, ratio))
    covs = sorted(covs)
    missing = [c for c in covs if ctx.dataset is None or c not in getattr(ctx.dataset, "columns", ())]
    if missing:
        raise _Untranslatable(f"IF on {', '.join(missing)}: its levels come from the data set, which could not be read")

    def factor(combo: dict):
        subs = {sympy.Symbol(k): v for k, v in combo.items()}
        return next((r for c, r in branches if bool(c.subs(subs))), sympy.Integer(1))

    if len(covs) == 1:
        cov = covs[0]
        levels = sorted(set(float(v) for v in ctx.dataset[cov].dropna()))
        if len(levels) > 50:
            raise _Untranslatable(f"IF on {cov}: {len(levels)} levels in the data; not a categorical covariate")
        return default, [_level_effect(cov, {lv: factor({cov: lv}) for lv in levels})]
    combos = [dict(zip(covs, map(float, row))) for row in ctx.dataset[covs].dropna().drop_duplicates().to_numpy()]
    for cov in covs:
        n = len({c[cov] for c in combos})
        if n > 50:
            raise _Untranslatable(f"IF on {cov}: {n} levels in the data; not a categorical covariate")
    ref = next((c for c in combos if sympy.simplify(factor(c) - 1) == 0), None)
    if ref is None:
        raise _Untranslatable(f"IF on {' and '.join(covs)}: no combination of levels in the data takes the default "
                              "branch, so the factor per covariate is not defined")
    per: dict[str, dict] = {cov: {} for cov in covs}
    for cov in covs:
        for lv in sorted({c[cov] for c in combos}):
            probe = {**ref, cov: lv}
            if probe not in combos:
                raise _Untranslatable(f"IF on {' and '.join(covs)}: the data have {cov} = {level_label(lv)} only with "
                                      "other levels than the reference's; the factor per covariate is not defined")
            per[cov][lv] = factor(probe)
    for c in combos:
        product = sympy.Mul(*(per[cov][c[cov]] for cov in covs))
        if sympy.simplify(factor(c) - product) != 0:
            where = ", ".join(f"{k} = {level_label(v)}" for k, v in c.items())
            raise _Untranslatable(f"IF on {' and '.join(covs)}: an interaction (at {where} the factor is {factor(c)}, "
                                  f"not the product {product} of the per-covariate factors); insilico's covariate "
                                  "effects multiply one factor per covariate")
    return default, [_level_effect(cov, per[cov]) for cov in covs]


def _level_effect(cov: str, ratios: dict) -> dict:
    """A categorical effect of ``cov`` from {level: factor (sympy, THETAs)}."""
    relation = {level_label(lv): r for lv, r in ratios.items()}
    thetas = sorted({s.name for r in relation.values() for s in r.free_symbols})
    return {"covariate": cov, "type": "categorical", "relation": relation, "thetas": thetas}


def level_label(value: float) -> str:
    """The category label of a numeric covariate level: ``7`` for an integer value (as insilico's
    data reader labels an integer column), else the float's repr (``0.5``)."""
    v = float(value)
    return str(int(v)) if v.is_integer() else repr(v)


def _covariate_factor(f, ctx):
    """A factor of the typical value other than THETA: a covariate effect."""
    names = {s.name for s in f.free_symbols}
    if f.is_Add:
        theta, cov = _theta_and_cov(f - 1, ctx)
        ref = _linear_in(f - 1, theta, cov)
        if ref is None:
            raise _Untranslatable(f"`{f}`: expected 1 + THETA*(COV - ref)")
        return {"covariate": cov, "type": "linear", "ref": ref, "theta": theta}
    if names <= ctx.columns:
        return _power(f, ctx)
    if f.is_Pow and f.exp.is_Symbol and f.exp.name in ctx.thetas:
        return _power(f, ctx)
    raise _Untranslatable(f"`{f}`: not a supported covariate relation")


def parameter_relation(expr, ctx: _Context) -> dict:
    """Decompose a basic PK parameter's full expression ``THETA * effects * EXP(ETA)``.

    Returns ``{typical: theta name, effects: [...], eta: eta name or None}``; effect thetas are
    THETA names or numbers (fixed). Raises `_Untranslatable` for other forms."""
    effects, typical, eta, const = [], None, None, 1.0
    for f in sympy.Mul.make_args(expr):
        if isinstance(f, sympy.Piecewise):
            default, found = _categorical(f, ctx)
            effects.extend(found)
            if default.is_number:           # IF (...) F = THETA(k) ELSE F = 1: the factor alone
                const *= float(default)
                continue
            inner = parameter_relation(default, ctx)
            if (inner["eta"] and eta) or typical:
                raise _Untranslatable(f"`{expr}`: two ETAs or two typical values")
            typical, eta = inner["typical"], eta or inner["eta"]
            effects.extend(inner["effects"])
            continue
        if isinstance(f, sympy.exp):
            e, eff = _exp_terms(f.args[0], ctx)
            if e and eta:
                raise _Untranslatable("two ETAs on one parameter")
            eta = eta or e
            effects.extend(eff)
        elif f.is_Symbol and f.name in ctx.thetas:
            typical = f.name if typical is None else "__twice__"
        elif f.is_number:
            const *= float(f)
        else:
            effects.append(_covariate_factor(f, ctx))
    if typical is None or typical == "__twice__":
        raise _Untranslatable(f"`{expr}`: expected exactly one THETA as the typical value")
    if const != 1.0:
        effects = _absorb_constant(const, effects)
    return {"typical": typical, "effects": effects, "eta": eta}


_IOV = "inter-occasion variability: "     # the start of every IOV failure's reason


def relation_with_iov(expr, ctx: _Context, name: str = "the parameter") -> dict:
    """`parameter_relation` of ``expr`` without its inter-occasion ETAs, with ``iov`` (the occasion
    selection found by `insilico.imports._iov.split_iov`) when ``expr`` carries ETAs of a $OMEGA SAME
    chain. Raises `_Untranslatable`."""
    try:
        base, info = split_iov(expr, ctx.columns, eta_positions(ctx.iov_chains), ctx.dataset, ctx.eta_label, name)
    except IovError as e:
        raise _Untranslatable(f"{_IOV}{e}") from None
    rel = parameter_relation(base, ctx)
    if info is not None:
        rel["iov"] = info
    return rel


def _iov_carriers(model, ctx: _Context) -> set[str]:
    """$PK variables whose own expression names an ETA of a $OMEGA SAME chain (lines to report when
    the IOV is not translated)."""
    iov = {e for chain in ctx.iov_chains for block in chain for e in block}
    return {str(s.symbol) for s in model.statements.before_odes if getattr(s, "symbol", None) is not None
            and {x.name for x in s.expression.free_symbols} & iov}


def _check_iov(relations: dict, model, ctx: _Context) -> tuple[dict[str, str], list[str]]:
    """Checks across the parameters with IOV (one occasion column, every occasion block used, the same
    number of occasions in every chain, one parameter per block position, zero covariances in a block:
    insilico's Omega_IOV is diagonal); returns ({parameter: why}, notes)."""
    failed, notes = {}, []
    with_iov = {p: r["iov"] for p, r in relations.items() if r.get("iov")}
    if not with_iov:
        return failed, notes
    cols = sorted({i["column"] for i in with_iov.values()})
    if len(cols) > 1:
        for p in with_iov:
            failed[p] = _IOV + (f"occasions from several data columns ({', '.join(cols)}); insilico has one "
                                "occasion column")
    sizes = {p: len(ctx.iov_chains[i["chain"]]) for p, i in with_iov.items()}
    if len(set(sizes.values())) > 1:
        for p in with_iov:
            lengths = ", ".join(f"{q}: {k} occasions" for q, k in sizes.items())
            failed[p] = _IOV + f"SAME chains of different lengths ({lengths}); insilico has one number of occasions"
    owner: dict[tuple, str] = {}
    om = _symbol_matrix(model.random_variables.etas)
    for p, info in with_iov.items():
        chain = ctx.iov_chains[info["chain"]]
        missing = [k for k in range(1, len(chain) + 1) if k not in info["occasions"]]
        if missing:
            failed[p] = _IOV + (f"{p}: occasion block(s) {', '.join(map(str, missing))} ("
                         + ", ".join(ctx.eta_label(chain[k - 1][info['position']]) for k in missing)
                         + f") selected by no value of {info['column']}")
        key = (info["chain"], info["position"])
        if key in owner:
            failed[p] = _IOV + (f"{p} and {owner[key]} both carry {ctx.eta_label(chain[0][info['position']])} "
                                "(one ETA per parameter)")
        owner[key] = p
    for c, chain in enumerate(ctx.iov_chains):
        first = [ctx.etas.index(e) for e in chain[0]]
        for a, i in enumerate(first):
            for j in first[:a]:
                sym = om[i][j]
                if sym == "0":
                    continue
                users = [p for p, info in with_iov.items() if info["chain"] == c]
                value = _value(sym, ctx)
                where = f"OMEGA({i + 1},{j + 1})"
                if value != 0:
                    for p in users:
                        failed[p] = _IOV + (f"the IOV block of {p} has the covariance {where} = {value:g}; insilico's "
                                     "Omega_IOV is diagonal")
                else:
                    notes.append(f"$OMEGA {where} = 0 in the IOV block: not estimated (insilico's Omega_IOV is "
                                 "diagonal)")
    return failed, notes


def _absorb_constant(const: float, effects: list[dict]) -> list[dict]:
    """sympy writes ``(WT/70)**0.75`` as ``70**-0.75 * WT**0.75``: fold the constant back into
    the reference of the one power effect with a fixed exponent, ``ref = ref * const**(-1/e)``."""
    fixed = [e for e in effects if e["type"] == "power" and not isinstance(e["theta"], str) and e["theta"] != 0]
    if len(fixed) != 1 or const <= 0:
        raise _Untranslatable(f"constant factor {const:g}: write it into the THETA or a covariate reference")
    e = fixed[0]
    ref = float(f"{e['ref'] * const ** (-1.0 / e['theta']):.12g}")  # 70, not 70.00000000000001
    return [({**x, "ref": ref} if x is e else x) for x in effects]


def residual_relation(y, f_sym, ctx: _Context) -> tuple[str, dict]:
    """The residual model of ``Y`` (in terms of ``F``): its type and ``{component: variance
    expression in THETAs/SIGMAs}`` (``additive``, ``proportional`` or ``exponential``).

    Var(Y | F) = a + b F**2 is ``additive``/``proportional``/``combined``. With one EPS whose
    coefficient is linear in F, ``Y = F + (g0 + g1*F)*EPS`` (NONMEM's ``W = THETA(b)*IPRED + THETA(a)``,
    ``Y = IPRED + W*EPS(1)``), the SDs add: SD = sqrt(SIGMA)*(g0 + g1 F), insilico's ``combined1`` with
    additive**2 = g0**2*SIGMA and proportional**2 = g1**2*SIGMA (g0, g1 of one sign at the values, so
    that it is a + b|F| for F >= 0)."""
    eps = [sympy.Symbol(e) for e in ctx.eps]
    at0 = {e: 0 for e in eps}
    if sympy.simplify(y.subs(at0) - f_sym) != 0:
        raise _Untranslatable(f"`Y = {y}`: Y must equal F (IPRED) when EPS = 0")
    exponential = any(isinstance(a, sympy.exp) and a.free_symbols & set(eps) for a in sympy.preorder_traversal(y))
    grads = [sympy.simplify(y.diff(e).subs(at0)) for e in eps]
    var = sum(grads[i] * grads[j] * sympy.Symbol(_sigma_symbol(ctx, i, j))
              for i in range(len(eps)) for j in range(len(eps)))
    poly = sympy.Poly(sympy.expand(var), f_sym)
    if not exponential and poly.degree() == 2 and sympy.simplify(poly.coeff_monomial(f_sym)) != 0:
        return _sd_additive(y, var, grads, f_sym, ctx)
    if poly.degree() > 2 or sympy.simplify(poly.coeff_monomial(f_sym)) != 0:
        raise _Untranslatable(f"`Y = {y}`: Var(Y) = {var} is not additive + proportional * F**2")
    c0, c2 = sympy.simplify(poly.coeff_monomial(1)), sympy.simplify(poly.coeff_monomial(f_sym ** 2))
    if exponential:
        if c0 != 0:
            raise _Untranslatable(f"`Y = {y}`: exponential error with an additive part")
        return "exponential", {"exponential": c2}
    parts = {k: v for k, v in (("proportional", c2), ("additive", c0)) if v != 0}
    if not parts:
        raise _Untranslatable(f"`Y = {y}`: no residual error")
    return ("combined" if len(parts) == 2 else next(iter(parts))), parts


def _sd_additive(y, var, grads, f_sym, ctx) -> tuple[str, dict]:
    """``combined1`` (`residual_relation`): one EPS, its coefficient g0 + g1*F."""
    used = [i for i, g in enumerate(grads) if g != 0]
    why = f"`Y = {y}`: Var(Y) = {var} is neither additive + proportional * F**2 nor (additive + proportional * F)**2"
    if len(used) != 1:
        raise _Untranslatable(why + " of one EPS")
    g = sympy.Poly(sympy.expand(grads[used[0]]), f_sym)
    g0, g1 = sympy.simplify(g.coeff_monomial(1)), sympy.simplify(g.coeff_monomial(f_sym))
    if g.degree() != 1 or g0 == 0 or f_sym in g0.free_symbols | g1.free_symbols:
        raise _Untranslatable(why)
    if _value(g0, ctx) * _value(g1, ctx) < 0:
        raise _Untranslatable(f"`Y = {y}`: SD = {g0} + ({g1})*F with coefficients of opposite signs is not "
                              "additive + proportional * |F| (combined1)")
    sigma = sympy.Symbol(_sigma_symbol(ctx, used[0], used[0]))
    return "combined1", {"proportional": g1 ** 2 * sigma, "additive": g0 ** 2 * sigma}


def _sigma_symbol(ctx, i, j):
    return ctx.sigma_matrix[max(i, j)][min(i, j)]


# --------------------------------------------------------------------------- control stream

def _code_lines(record) -> list[str]:
    """The record's lines; the first is what follows ``$PK`` on its own line (line 0)."""
    lines = str(record).splitlines()
    return [re.sub(r"^\s*\$\w+", "", lines[0]), *lines[1:]]


_ASSIGN = re.compile(r"^\s*(?:IF\s*\(.*\)\s*)?([A-Za-z_][A-Za-z_0-9]*)\s*=(?!=)", re.I)


def _report_lines(cs, needed: set[str], failed: dict[str, str], pk_lines: dict | None = None) -> list[str]:
    """$PK/$ERROR lines not translated: assignments no translated quantity uses, verbatim code,
    and the lines of quantities that failed (with the reason). ``pk_lines``: the control stream's
    line of each line of a flattened $PK (`_read_flattened`)."""
    out = []
    for name in ("PK", "ERROR"):
        for rec in cs.get_records(name):
            for k, line in enumerate(_code_lines(rec)):
                code = line.split(";")[0].strip()
                if not code:
                    continue
                where = f"${name} line {k}: {code}"
                if name == "PK" and pk_lines is not None:
                    orig = pk_lines.get(k)
                    where = (f"$PK line {orig}: {code}" if orig is not None else
                             f"$PK (a line the flattened nested IF adds): {code}")
                if code.startswith('"'):
                    out.append(f"{where} -- verbatim Fortran is not translated")
                    continue
                m = _ASSIGN.match(code)
                if m is None:
                    if not re.match(r"^(IF\s*\(.*\)\s*THEN|ELSE|ELSE\s*IF.*|END\s*IF)\s*$", code, re.I):
                        out.append(f"{where} -- statement not translated")
                    continue
                var = m.group(1).upper()
                if var in failed:
                    out.append(f"{where} -- {failed[var]}")
                elif var not in needed:
                    out.append(f"{where} -- {var} is not used by the structural or residual model; not translated")
    return out


def _unread_lines(cs, needed: set[str]) -> list[tuple[str, str]]:
    """$ERROR lines that assign a variable the translation uses from a variable of the code that it
    does not use: pharmpy-core did not read them into the model (e.g. an output selection on DVID
    pharmpy-core drops, ``IF (DVID.EQ.1) THEN Y = Y ELSE Y = Y_2 END IF``, when `insilico.imports._dvid`
    did not rewrite it: Y would silently be the first output alone). [(``$ERROR line k: code``, why)]."""
    out = []
    for rec in cs.get_records("ERROR"):
        lines = [ln.split(";")[0].strip() for ln in _code_lines(rec)]
        assigned = {m.group(1).upper() for ln in lines if (m := _ASSIGN.match(ln))}
        for k, code in enumerate(lines):
            m = _ASSIGN.match(code)
            if m is None or m.group(1).upper() not in needed:
                continue
            # names of the right-hand side: numbers (2.2E-16) and operators (.EQ.) removed first
            rhs = re.sub(r"(?<![\w.])(\d+\.?\d*|\.\d+)([EDed][+-]?\d+)?|\.[A-Za-z]+\.", " ", code[m.end():])
            rhs = {n.upper() for n in re.findall(r"[A-Za-z_]\w*", rhs)}
            lost = sorted((rhs & assigned) - needed)
            if lost:
                out.append((f"$ERROR line {k}: {code}", f"{m.group(1)} from {', '.join(lost)}: this assignment "
                            "is not in the model pharmpy-core reads (a second output or an IF it does not "
                            "translate); not translated"))
    return out


def _needed(statements, targets: set[str]) -> set[str]:
    """Names of the assignments the ``targets`` depend on (targets included)."""
    needed = set(targets)
    for s in reversed(list(statements)):
        sym = getattr(s, "symbol", None)
        if sym is not None and str(sym) in needed:
            needed |= {str(x) for x in s.expression.free_symbols}
    return {n.upper() for n in needed}


def _symbol_matrix(dists) -> list[list[str]]:
    m = dists.covariance_matrix
    n = len(dists.names)
    return [[str(m[i, j]) for j in range(n)] for i in range(n)]


def _pk_expression(model, name: str):
    return model.statements.before_odes.full_expression(name)._sympy_()


def _assigned(model, name: str) -> bool:
    return any(str(getattr(s, "symbol", "")) == name for s in model.statements.before_odes)


# --------------------------------------------------------------------------- nested IF blocks

_IF_THEN = re.compile(r"^IF\s*\((.*)\)\s*THEN$", re.I)
_ELSE_IF = re.compile(r"^ELSE\s*IF\s*\((.*)\)\s*THEN$", re.I)
_ELSE = re.compile(r"^ELSE$", re.I)
_END_IF = re.compile(r"^END\s*IF$", re.I)


class _Src(str):
    """A $PK code line that remembers its line number ``k`` in the control stream's record."""

    k: int | None = None


def _src(text: str, k: int | None) -> _Src:
    out = _Src(text)
    out.k = k
    return out


class _Block(list):
    """An IF block: a list of branches ``(condition or None for ELSE, [line or _Block, ...])``."""


def _parse_blocks(lines: list[str]):
    """The code lines as a list of lines and `_Block`s, and the deepest nesting (0 without IF blocks).
    None when the IF/ENDIF structure is unbalanced (left to pharmpy, which reports it)."""
    root: list = []
    stack: list[_Block] = []
    depth = 0

    def body():
        return stack[-1][-1][1] if stack else root

    for k, line in enumerate(lines, start=1):
        code = line.split(";")[0].strip()
        if m := _IF_THEN.match(code):
            blk = _Block([(m.group(1).strip(), [])])
            body().append(blk)
            stack.append(blk)
            depth = max(depth, len(stack))
        elif m := _ELSE_IF.match(code):
            if not stack:
                return None, 0
            stack[-1].append((m.group(1).strip(), []))
        elif _ELSE.match(code):
            if not stack:
                return None, 0
            stack[-1].append((None, []))
        elif _END_IF.match(code):
            if not stack:
                return None, 0
            stack.pop()
        elif code:
            body().append(_src(line.strip(), k))
    return (root, depth) if not stack else (None, 0)


def _assigned_names(items) -> list[str]:
    out = []
    for it in items:
        if isinstance(it, _Block):
            for _, b in it:
                out += _assigned_names(b)
        elif m := _ASSIGN.match(it.split(";")[0]):
            out.append(m.group(1).upper())
    return list(dict.fromkeys(out))


def _leaves(items) -> list[tuple[list[str], list[str]]]:
    """Straight-line paths through ``items``: (conditions that all hold, the lines run)."""
    paths = [([], [])]
    for it in items:
        if not isinstance(it, _Block):
            paths = [(c, [*ls, it]) for c, ls in paths]
            continue
        branches = list(it) + ([] if it[-1][0] is None else [(None, [])])   # no ELSE: nothing runs
        sub = [([*([] if cond is None else [cond]), *c], ls) for cond, b in branches for c, ls in _leaves(b)]
        paths = [([*c1, *c2], [*l1, *l2]) for c1, l1 in paths for c2, l2 in sub]
    return paths


def _flatten_block(block: _Block) -> list[str]:
    """A nested IF block as one IF / ELSE IF / ELSE chain with conjunctions (``.AND.``); in each
    branch the names the block assigns elsewhere keep their value (``X = X``), as in the nested code.
    Branches are in the nested code's order, so the first one that holds is the one NONMEM runs."""
    names = _assigned_names([block])
    leaves = _leaves([block])
    out = []
    for k, (conds, lines) in enumerate(leaves):
        if any(re.search(r"\.OR\.|\.NOT\.", c, re.I) for c in conds) and len(conds) > 1:
            raise _Untranslatable(f"nested IF with .OR./.NOT. in `{' / '.join(conds)}`: write the conditions as one "
                                  "IF/ELSE IF chain")
        cond = ".AND.".join(conds)
        head = "ELSE" if not conds else f"{'IF' if k == 0 else 'ELSE IF'} ({cond}) THEN"
        if not conds and k == 0:
            return lines
        out.append(head)
        mine = set(_assigned_names(lines))
        out += [_src(f"  {ln}", getattr(ln, "k", None)) for ln in lines] + [f"  {n} = {n}" for n in names
                                                                            if n not in mine]
        if not conds:
            break         # an unconditional branch: nothing after it runs
    return [*out, "ENDIF"]


def flatten_nested_ifs(code: list[str]) -> tuple[list[str], list[str]]:
    """$PK code lines with each nested IF block (an IF block inside another) written as one flat
    IF / ELSE IF / ELSE chain (pharmpy-core reads one level of IF blocks and drops the inner ones);
    returns (lines, notes). Code without nested blocks is returned unchanged. `_Untranslatable`
    when a nested condition uses .OR./.NOT. (the conjunction would change its meaning)."""
    items, depth = _parse_blocks(code)
    if items is None or depth < 2:
        return code, []
    out, notes = [], []
    for it in items:
        if isinstance(it, _Block) and _parse_depth(it) >= 2:
            flat = _flatten_block(it)
            notes.append(f"$PK: a nested IF block (IF {it[0][0]} ...) was read as one IF/ELSE IF chain of "
                         f"{sum(1 for ln in flat if ln.startswith(('IF', 'ELSE')))} branches (lines reported "
                         "below keep their numbers in the control stream)")
            out += flat
        elif isinstance(it, _Block):
            out += _write_block(it)
        else:
            out.append(it)
    return out, notes


def _parse_depth(block: _Block) -> int:
    return 1 + max([0, *(_parse_depth(x) for _, b in block for x in b if isinstance(x, _Block))])


def _write_block(block: _Block) -> list[str]:
    out = []
    for k, (cond, body) in enumerate(block):
        out.append("ELSE" if cond is None else f"{'IF' if k == 0 else 'ELSE IF'} ({cond}) THEN")
        out += [_src(f"  {x}", getattr(x, "k", None)) for x in body]
    return [*out, "ENDIF"]


def _read_flattened(path: Path):
    """pharmpy's model of the control stream at ``path``, its $PK's nested IF blocks flattened first
    (`flatten_nested_ifs`) and ``$OMEGA BLOCK(n) SAME(k)`` written as k SAME records
    (`insilico.imports._iov.expand_same_repeats`), the data file then named by its absolute path; (model, notes,
    {line of the flattened $PK: its line in the control stream, None for a line the flattening adds} or None,
    (the $ERROR's DVID selection, `insilico.imports._dvid.rewrite_dvid_switch`, and the record's original text)
    or None)."""
    from pharmpy.modeling import read_model, read_model_from_string

    text, same_notes = expand_same_repeats(path.read_text())
    for name in ("ERROR", "DES", "PRED"):
        for rec in re.finditer(rf"^\${name}\b(.*?)(?=^\$|\Z)", text, re.S | re.M):
            items, depth = _parse_blocks(rec.group(1).splitlines()[1:])
            if depth >= 2:
                raise _Untranslatable(f"${name}: nested IF blocks are not translated (pharmpy-core reads one level); "
                                      "write them as one IF/ELSE IF chain")
    switch, error_text = None, None
    m = re.search(r"^\$ERROR\b(.*?)(?=^\$|\Z)", text, re.S | re.M)
    if m is not None:
        rewritten, switch = rewrite_dvid_switch(m.group(1))
        if switch is not None:
            error_text = "$ERROR" + m.group(1)
            text = text[:m.start(1)] + rewritten + text[m.end(1):]
    m = re.search(r"^\$PK\b(.*?)(?=^\$|\Z)", text, re.S | re.M)
    notes, line_map = [], None
    if m is not None:
        lines = m.group(1).splitlines()
        first, rest = lines[0], lines[1:]
        flat, notes = flatten_nested_ifs(rest)
        if notes:
            line_map = {j: getattr(line, "k", None) for j, line in enumerate(flat, start=1)}
            text = text[:m.start(1)] + "\n".join([first, *flat]) + "\n" + text[m.end(1):]
    notes = same_notes + notes
    if not notes and switch is None:
        return read_model(str(path)), [], None, None

    def absolute(dm):
        name = dm.group(2).strip("'\"")
        full = (path.parent / name).resolve()
        return f"{dm.group(1)}{full}" if " " not in str(full) else dm.group(0)
    text = re.sub(r"^(\$DATA\s+)(\S+)", absolute, text, count=1, flags=re.M)
    return read_model_from_string(text), notes, line_map, (switch, error_text) if switch is not None else None


# --------------------------------------------------------------------------- main

def import_nonmem(path: str | Path, ext: str | Path | None = None, cov: str | Path | None = None) -> NonmemImport:
    """Translate the control stream at ``path`` (values from the control stream, or the final
    estimates of the NONMEM ``.ext`` file ``ext``). ``cov``: NONMEM's ``.cov`` file, carried onto
    the translated quantities (``NonmemImport.covariance``, `covariance_of`). Errors reading the
    files: `SpecError`."""
    from insilico.imports._tables import read_cov, read_ext

    path = Path(path)
    if not path.is_file():
        raise SpecError("model", f"no control stream at {path}")
    try:
        model, flat_notes, pk_lines, switch = _read_flattened(path)
    except _Untranslatable as e:
        return NonmemImport(None, {}, [str(e) if str(e).startswith("$") else f"$PK: {e}"], ok=False)
    except Exception as e:   # pharmpy raises many kinds on a malformed stream
        raise SpecError("model", f"{path}: pharmpy cannot parse the control stream: {e}") from None
    cov_table = read_cov(cov) if cov is not None else None
    cs = model.internals.control_stream
    subs = cs.get_records("SUBROUTINES")
    advan = (subs[0].advan, subs[0].trans) if subs else (None, None)
    general = advan[0] in GENERAL_ADVANS
    handled = _HANDLED_RECORDS | ({"DES", "MODEL"} if general else set())
    untranslated: list[str] = list(flat_notes)
    for rec in cs.records:
        if rec.name not in handled:
            kind = "essential" if rec.name in _ESSENTIAL_RECORDS else "not translated"
            untranslated.append(f"${rec.name}: {str(rec).strip().splitlines()[0]} -- record {kind}")
    if advan not in ADVANS and advan not in TRANS_MODELS and not general:
        untranslated.append(f"$SUBROUTINE {advan[0] or '(none)'} {advan[1] or ''} -- only ADVAN1/2/3/4/11/12 TRANS1, "
                            "ADVAN1/2 TRANS2, ADVAN3/4/11/12 TRANS4, ADVAN3/4 TRANS3/5/6, ADVAN11/12 TRANS6 and "
                            "ADVAN6/13 ($DES) are translated")
        return NonmemImport(None, {}, untranslated, ok=False)

    thetas = list(_theta_names(model))
    etas = list(model.random_variables.etas.names)
    eps = list(model.random_variables.epsilons.names)
    nm_names = _nonmem_names(model, thetas)
    values = {p.name: float(p.init) for p in model.parameters}
    if ext is not None:
        final = read_ext(ext)
        for pname, nm in nm_names.items():
            if nm in final:
                values[pname] = final[nm]
            elif nm.startswith(("OMEGA", "SIGMA")) and _transposed(nm) in final:
                values[pname] = final[_transposed(nm)]
            else:
                raise SpecError("ext", f"{ext}: no final estimate of {nm}")
    try:
        dataset = model.dataset
    except Exception:   # the data file is optional: only IF-categorical relations need it
        dataset = None
    ctx = _Context(thetas, etas, eps, set(model.datainfo.names), values, dataset,
                   _symbol_matrix(model.random_variables.epsilons), pk_lines, same_chains(model))

    if switch is not None and (general or advan not in ADVANS):
        untranslated += [f"{where} -- several observed outputs (IF on DVID) are translated for the built-in ADVANs "
                         "(ADVAN1/2/3/4/11/12 TRANS1/2/4) only" for _, where in switch[0].branches.values()]
        untranslated += switch[0].errors
        return NonmemImport(None, {}, untranslated, ok=False)
    if general:
        return _import_des(model, cs, path, ctx, nm_names, thetas, untranslated, cov_table, cov)

    failed, relations, fixed_model = {}, {}, {}
    builtin, pk_map, scale, volume, model_ref = _structure(advan)
    # several outputs selected by DVID: the concentration's Y and the PD outputs' (`_select_outputs`)
    y_name, conc_dvid, pd_outputs, report_cs = "Y", None, [], cs
    if switch is not None:
        report_cs = _WithErrorText(cs, switch[1])
        for line in switch[0].errors:
            where, why = line.split(" -- ", 1)
            failed[where] = why
            untranslated.append(line)
        if not switch[0].errors:
            try:
                conc_dvid, y_name, pd_outputs, dvid_notes = _select_outputs(model, switch[0], ctx)
                untranslated += dvid_notes
            except _Untranslatable as e:
                where, why = e.args
                failed[where] = why
                untranslated.append(f"{where} -- {why}")
    wanted = {ins: _form(e) for ins, e in pk_map.items()}
    if builtin.endswith("oral"):
        wanted.update({ins: sympy.Symbol(nm) for ins, nm in _OPTIONAL.items() if _assigned(model, nm)})
    # no S<k>, the prediction written as A(k)/V in $ERROR: that V is the scale (`_implicit_scale`)
    implicit = None
    if not _assigned(model, scale):
        try:
            implicit = _implicit_scale(model, scale, ctx, y_name)
        except _Untranslatable as e:
            var, why = e.args
            failed[var] = why
    if implicit is not None:
        divisor, line_var = implicit
        over = f"A({scale[1:]})/" + (str(divisor) if divisor.is_Symbol else f"({divisor})")
        implicit_note = (f"$ERROR {line_var}: no {scale}; {over} read as the scale {scale} = {divisor} (insilico's "
                         "conc, the central amount over its volume)")

    def pk_full(n):
        """The full $PK expression of ``n``; the scale's is its divisor's when it is implicit."""
        if n == scale and implicit is not None:
            d = implicit[0]
            return d.subs({x: _pk_expression(model, x.name) for x in d.free_symbols})
        return _pk_expression(model, n)

    def pk_assigned(n):
        return _assigned(model, n) or (n == scale and implicit is not None)

    nm_targets = set()
    eta_owner: dict[str, str] = {}
    key_of: dict[str, str] = {}

    def relate(par, expr, key, where, what, hint=""):
        """``relations[par]`` from ``expr`` (``key`` names it for IOV), or a ``failed[where]`` reason:
        ``what: error hint`` when it is not THETA*effects*EXP(ETA), or an ETA another parameter carries."""
        try:
            relations[par] = relation_with_iov(expr, ctx, key)
        except _Untranslatable as e:
            failed[where] = f"{what}: {e}{hint}"
            return
        eta = relations[par]["eta"]
        if eta and eta in eta_owner:
            failed[where] = f"{par} and {eta_owner[eta]} both carry {eta} (one ETA per parameter)"
            relations.pop(par)
        elif eta:
            eta_owner[eta] = par
    for ins_par, form in wanted.items():
        needs = sorted(s.name for s in form.free_symbols)
        nm_targets |= set(needs)
        key = needs[0] if len(needs) == 1 else next(n for n in needs if not re.fullmatch(r"S\d", n))
        key_of[ins_par] = key
        missing = [n for n in needs if not pk_assigned(n)]
        if missing:
            why = "is" if len(missing) == 1 else "are"
            failed[key] = (f"{', '.join(missing)} {why} required by {advan[0]} {advan[1]} but not assigned in $PK"
                           + (f" (insilico's {ins_par} = {form}: the scale {scale} is the central volume)"
                              if scale in missing else ""))
            untranslated.append(f"$PK: {failed[key]}")
            continue
        expr = form.subs({sympy.Symbol(n): pk_full(n) for n in needs})
        if len(needs) > 1:
            expr = _simplify_product(expr)
        if expr.is_number and ins_par in _OPTIONAL:
            fixed_model[ins_par] = float(expr)
            continue
        if len(needs) == 1:
            relate(ins_par, expr, key, key, f"{key} = {expr}")
        else:
            relate(ins_par, expr, key, key, f"insilico's {ins_par} = {form} = {expr}",
                   f" ({advan[1]} rate constants must combine with the scale into THETA*effects*EXP(ETA); "
                   "otherwise translate the model as $DES)")
    vol_expr = wanted[volume].subs({sympy.Symbol(n): pk_full(n) for n in
                                    (s.name for s in wanted[volume].free_symbols) if pk_assigned(n)})
    if not pk_assigned(scale) or sympy.simplify(pk_full(scale) - vol_expr) != 0:
        if implicit is not None:
            failed[implicit[1]] = (f"{over} with no {scale}: the divisor must equal {pk_map[volume]} (the central "
                                   "volume, so that it is the concentration)")
        else:
            failed[scale] = f"{scale} must equal {pk_map[volume]} (F = amount / volume is the concentration)"
    extra_residuals, outputs = [], None
    if pd_outputs and pk_assigned(scale) and scale not in failed:
        dvid, name, where = pd_outputs[0]
        try:
            kind, pd_exprs, pd_type, pd_parts, pd_eps = _pd_output(model, name, pk_full(scale), ctx)
        except _Untranslatable as e:
            failed[where] = f"{e}"
        else:
            model_ref = {"name": f"{builtin}+{kind}"}
            outputs = {conc_dvid: "conc", dvid: "effect"}
            extra_residuals.append(("effect", pd_type, pd_parts))
            for par, expr in pd_exprs.items():
                key_of[par] = where
                relate(par, expr, par, where, f"{kind} effect parameter {par} = {expr}")
            conc_eps = {e for e in ctx.eps if model.statements.after_odes.full_expression(y_name)._sympy_().has(
                sympy.Symbol(e))}
            shared = sorted(conc_eps & pd_eps)
            corr = [f"{_sigma_symbol(ctx, ctx.eps.index(a), ctx.eps.index(b))}" for a in conc_eps for b in pd_eps
                    if a != b and _sigma_symbol(ctx, ctx.eps.index(a), ctx.eps.index(b)) != "0"]
            if shared or corr:
                failed[where] = ("the outputs' residual errors are correlated ("
                                 + ", ".join([f"both use {e}" for e in shared] + [f"SIGMA {c}" for c in corr])
                                 + "); insilico's outputs have independent residual errors")
    iov_failed, iov_notes = _check_iov(relations, model, ctx)
    failed.update({key_of[p]: why for p, why in iov_failed.items()})
    _report_iov_carriers(failed, model, ctx, "")
    untranslated += iov_notes
    try:
        res_type, res_parts = _residual(model, scale, ctx, implicit[0] if implicit else None, y_name)
    except _Untranslatable as e:
        failed["Y"] = f"residual model: {e}"
        res_type, res_parts = None, {}

    targets = nm_targets | {scale, "Y", y_name, *(name for _, name, _ in pd_outputs)}
    needed = _needed(model.statements, targets) | ({"Y"} if switch is not None else set())
    for where, why in _unread_lines(report_cs, needed):
        failed[where] = why
        untranslated.append(f"{where} -- {why}")
    untranslated += _report_lines(report_cs, needed, failed, ctx.pk_lines)
    for k, v in failed.items():
        if not any(f"-- {v}" in line for line in untranslated):
            untranslated.append(f"{k} -- {v}" if k.startswith("$ERROR line") else f"{k}: {v}")
    if failed:
        return NonmemImport(None, {}, untranslated, ok=False)

    population, names, notes = _assemble(model, path, model_ref, relations, fixed_model, res_type, res_parts,
                                         ctx, nm_names, thetas, outputs, extra_residuals)
    untranslated += notes + ([implicit_note] if implicit is not None else [])
    if advan in TRANS_MODELS:
        typical = {p: e["typical"] for p, e in population["parameters"].items()}
        micro = micro_constants(advan[0], advan[1], typical)
        bad = [k for k in ("K", "K12", "K21", "K13", "K31", "V2") if k in micro and not micro[k] > 0]
        if bad:
            untranslated.append(f"$SUBROUTINE {advan[0]} {advan[1]}: the typical values give {', '.join(bad)} <= 0 "
                                "(no compartmental model; NONMEM Users Guide VI): predictions at them are NaN")
    result = NonmemImport(population, names, untranslated, ok=True)
    if cov_table is not None:
        result.covariance = covariance_of(cov_table, result, relations, res_parts, model, ctx, nm_names, cov,
                                          extra_residuals)
    return result


def _structure(advan: tuple):
    """(built-in, {insilico parameter: $PK expression}, scale, the parameter the scale must equal, the
    population file's ``model``) of a (ADVAN, TRANS) pair of `ADVANS` or `TRANS_MODELS`."""
    if advan in ADVANS:
        builtin, pk_map, scale, volume = ADVANS[advan]
        return builtin, pk_map, scale, volume, {"name": builtin}
    builtin, names = TRANS_MODELS[advan]
    scale = "S2" if builtin.endswith("oral") else "S1"
    # TRANS3 names V among its parameters (the scale must equal it); TRANS5/6 take V from the scale
    pk_map = {n: (scale if n == "V" and advan[1] != "TRANS3" else n) for n in names}
    return builtin, pk_map, scale, "V", {"import": f"insilico.imports:{advan[0].lower()}_{advan[1].lower()}"}


def _form(text: str):
    """A TRANS expression of $PK names (``K12*S1/K21``) as sympy, every name a Symbol (``Q`` included)."""
    return sympy.sympify(text, locals={n: sympy.Symbol(n) for n in re.findall(r"[A-Z]\w*", text)})


def _simplify_product(expr):
    """A TRANS1 product such as K*S1 with K = CL/V, S1 = V: fold IF branches (Piecewise) and cancel."""
    e = sympy.piecewise_fold(sympy.powsimp(expr, force=True))
    if isinstance(e, sympy.Piecewise):
        branches = [(sympy.simplify(sympy.powsimp(b, force=True)), c) for b, c in e.args]
        e = sympy.Piecewise(*branches)
        if all(sympy.simplify(b - branches[-1][0]) == 0 for b, _ in branches):
            return branches[-1][0]
        return e
    return sympy.simplify(e)


def _import_des(model, cs, path, ctx, nm_names, thetas, untranslated, cov_table, cov) -> NonmemImport:
    """ADVAN6/13: $MODEL + $DES -> a text-equation model (`insilico.imports._des.translate_des`)."""
    from insilico.imports._des import translate_des

    failed = {}
    obs, scale = None, None
    try:
        y = model.statements.after_odes.full_expression("Y")._sympy_()
        amounts = sorted({str(a.func) for a in y.atoms(sympy.Function)
                          if isinstance(a, sympy.core.function.AppliedUndef)})
        if len(amounts) == 1 and amounts[0].startswith("A_"):
            obs = amounts[0][2:]
        f_expr = model.statements.after_odes.full_expression("F")._sympy_() if _assigned_after(model, "F") else None
        if f_expr is not None:
            scales = [s.name for s in f_expr.free_symbols if re.fullmatch(r"S\d+", s.name)]
            scale = scales[0] if len(scales) == 1 else None
    except Exception as e:       # pharmpy could not find Y or F
        failed["Y"] = f"residual model: {e}"
    des = translate_des(model, cs, ctx, lambda e, c: relation_with_iov(e, c), (obs, scale))
    failed.update(des.failed)
    if not des.failed:
        iov_failed, iov_notes = _check_iov(des.relations, model, ctx)
        failed.update({f"$PK {p}": why for p, why in iov_failed.items()})
        untranslated += iov_notes
    _report_iov_carriers(failed, model, ctx, "$PK ")
    res_type, res_parts = None, {}
    if "Y" not in failed:
        try:
            res_type, res_parts = _residual(model, scale, ctx)
        except _Untranslatable as e:
            failed["Y"] = f"residual model: {e}"
    needed = _needed(model.statements, set(des.pk_used) | {"Y"} | ({scale} if scale else set()))
    pk_failed = {k.split()[-1]: v for k, v in failed.items() if k.startswith("$PK ") and " " not in k[4:]}
    untranslated += _report_lines(cs, needed, pk_failed, ctx.pk_lines)
    for k, v in failed.items():
        if not any(f"-- {v}" in line for line in untranslated):
            untranslated.append(f"{k} -- {v}")
    untranslated += des.notes
    if failed or des.text_model is None:
        return NonmemImport(None, {}, untranslated, ok=False)
    name = _problem_name(path)
    text = {**des.text_model, "name": name,
            "description": f"$DES of {path.name} (insilico import nonmem; NONMEM compartments as states)"}
    file = f"{name}_model.yaml"
    population, names, notes = _assemble(model, path, {"file": file}, des.relations, des.fixed, res_type, res_parts,
                                         ctx, nm_names, thetas)
    untranslated += notes
    result = NonmemImport(population, names, untranslated, ok=True, text_model=text, text_model_file=file)
    if cov_table is not None:
        result.covariance = covariance_of(cov_table, result, des.relations, res_parts, model, ctx, nm_names, cov)
    return result


def _report_iov_carriers(failed: dict, model, ctx: _Context, prefix: str):
    """When a failure concerns inter-occasion variability, also list the $PK lines that carry its ETAs
    (keys ``prefix + variable`` of ``failed``)."""
    why = [v for v in failed.values() if _IOV in v]
    if why:
        for var in sorted(_iov_carriers(model, ctx)):
            failed.setdefault(prefix + var, f"carries an ETA of a $OMEGA SAME chain; {why[0].split(_IOV, 1)[1]}")


def _assigned_after(model, name: str) -> bool:
    return any(str(getattr(s, "symbol", "")) == name for s in model.statements.after_odes)


def _theta_names(model):
    from pharmpy.modeling import get_thetas
    return get_thetas(model).names


def _transposed(nm: str) -> str:
    m = re.fullmatch(r"(\w+)\((\d+),(\d+)\)", nm)
    return f"{m.group(1)}({m.group(3)},{m.group(2)})"


def _nonmem_names(model, thetas) -> dict[str, str]:
    """pharmpy parameter name -> NONMEM name (THETA1, OMEGA(i,j), SIGMA(i,j))."""
    out = {t: f"THETA{k}" for k, t in enumerate(thetas, start=1)}
    for kind, dists in (("OMEGA", model.random_variables.etas), ("SIGMA", model.random_variables.epsilons)):
        mat = _symbol_matrix(dists)
        for i, row in enumerate(mat):
            for j, sym in enumerate(row[:i + 1]):
                if sym != "0":
                    out.setdefault(sym, f"{kind}({i + 1},{j + 1})")
    return out


def _residual(model, scale, ctx, divisor=None, y_name="Y"):
    """Y of $ERROR (the variable ``y_name``: the concentration's Y of a DVID selection) in terms of F
    (the amount over the scale, or over ``divisor`` when the scale is implicit: `_implicit_scale`),
    then `residual_relation`."""
    y = model.statements.after_odes.full_expression(y_name)._sympy_()
    f_sym = sympy.Symbol("F")
    amounts = [a for a in y.atoms(sympy.Function) if isinstance(a, sympy.core.function.AppliedUndef)]
    if len({str(a.func) for a in amounts}) != 1:
        raise _Untranslatable("Y must depend on the observed compartment's amount through F only")
    size = divisor if divisor is not None else sympy.Symbol(scale) if scale else None
    y = y.subs(amounts[0], f_sym * size if size is not None else f_sym)
    y = _drop_w_guard(y)
    return residual_relation(sympy.simplify(y), f_sym, ctx)


def _implicit_scale(model, scale: str, ctx: _Context, y_name: str = "Y"):
    """The scale of a stream that writes no ``S<k>`` (``scale``) and computes the concentration in
    $ERROR itself, ``IPRED = A(k)/V`` (also through ``A2 = A(2)``), with Y built on it.

    PREDPP's F is then the unscaled amount A(k), and NONMEM's prediction (Y at EPS = 0) is
    A(k)/D. When A(k) is the central compartment's amount (the one the built-in's ``conc`` reads:
    k = 1 for ADVAN1/3/11, 2 for ADVAN2/4/12; NONMEM Users Guide VI) and D is an expression of
    $PK variables only, A(k)/D is what ``S<k> = D`` would give as F, so D is taken as the scale
    (whose checks follow: it must equal the central volume, or with TRANS1 it is that volume).
    Returns (D, the $ERROR variable that computes the prediction), or None when Y does not read
    a compartment amount or its prediction is F = A(k) itself (no S<k> at all: reported as
    missing). Raises `_Untranslatable(variable, why)` when it reads another compartment's amount
    or divides by something other than $PK variables."""
    after = model.statements.after_odes
    if not _assigned_after(model, y_name):
        return None
    y = after.full_expression(y_name)._sympy_()
    amounts = {a for a in y.atoms(sympy.Function) if isinstance(a, sympy.core.function.AppliedUndef)}
    if not amounts:
        return None
    y0 = sympy.simplify(y.subs({sympy.Symbol(e): 0 for e in ctx.eps}))
    # the $ERROR line whose value is the prediction (IPRED), else Y
    seen, line_var = {}, "Y"
    for st in after:
        sym = getattr(st, "symbol", None)
        if sym is None:
            continue
        val = st.expression._sympy_().subs(seen)
        seen[sym._sympy_()] = val
        at0 = val.subs({sympy.Symbol(e): 0 for e in ctx.eps})
        if str(sym) not in ("F", "Y", y_name) and sympy.simplify(at0 - y0) == 0:
            line_var = str(sym).upper()
            break
    k = scale[1:]
    central = sympy.sympify(model.statements.ode_system.central_compartment.amount)
    if amounts != {central}:
        other = ", ".join(sorted(str(a.func) for a in amounts - {central}))
        raise _Untranslatable(line_var, f"the prediction {y0} reads {other}, not A({k}) (the central compartment, "
                                        f"whose amount over its volume {scale} is insilico's conc)")
    divisor = sympy.simplify(central / y0)
    if divisor == 1:
        return None
    names = {s.name for s in divisor.free_symbols}
    if divisor.has(central) or not names or not all(_assigned(model, n) for n in names):
        raise _Untranslatable(line_var, f"the prediction {y0} with no {scale} is not A({k}) divided by a $PK "
                                        f"volume ({scale} would be that divisor: F = A({k})/{scale})")
    return divisor, line_var


class _WithErrorText:
    """The control stream for the line reports, with the $ERROR record's original text (the DVID
    selection that `insilico.imports._dvid.rewrite_dvid_switch` rewrote before pharmpy read it)."""

    def __init__(self, cs, error_text: str):
        self._cs, self._error = cs, error_text

    def get_records(self, name):
        return [self._error] if name == "ERROR" else self._cs.get_records(name)


def _with_pk(expr, model):
    """An $ERROR expression with each $PK variable replaced by its full $PK expression."""
    return expr.subs({s: _pk_expression(model, s.name) for s in expr.free_symbols if _assigned(model, s.name)})


def _data_dvids(ctx: _Context):
    """The DVID values of the data set's observation records (EVID = 0, else MDV = 0, else AMT = 0), or
    None when the data set could not be read or has no DVID column."""
    data = ctx.dataset
    if data is None or "DVID" not in getattr(data, "columns", ()):
        return None
    for col in ("EVID", "MDV", "AMT"):
        if col in data.columns:
            data = data[data[col] == 0]
            break
    return sorted({float(v) for v in data["DVID"].dropna()})


def _select_outputs(model, sw: DvidSwitch, ctx: _Context):
    """The outputs of a DVID selection: (the concentration's DVID, the variable holding its Y, [(DVID,
    variable, ``$ERROR line k: code``) of the other outputs], notes). The concentration's Y is the one
    whose prediction (Y at EPS = 0) is proportional to the central amount; the other (one) output is
    translated by `_pd_output`. Raises `_Untranslatable(where, why)`."""
    try:
        targets, notes = dvid_targets(sw, _data_dvids(ctx), _assigned_after(model, "Y"))
    except ValueError as e:
        where = next(iter(sw.branches.values()))[1]
        raise _Untranslatable(where, f"output selection (IF on DVID): {e}") from None
    central = sympy.sympify(model.statements.ode_system.central_compartment.amount)
    eps0 = {sympy.Symbol(e): 0 for e in ctx.eps}
    conc, others = [], []
    for dvid, (name, where) in targets.items():
        y0 = _with_pk(model.statements.after_odes.full_expression(name)._sympy_(), model).subs(eps0)
        ratio = sympy.simplify(y0 / central)
        (conc if y0.has(central) and not ratio.has(central) else others).append((dvid, name, where))
    if len(conc) != 1:
        where = (conc or others)[0][2]
        found = ", ".join(f"DVID {d}" for d, _, _ in conc) or "none"
        raise _Untranslatable(where, f"output selection (IF on DVID): exactly one output must be the concentration "
                                     f"(proportional to the central amount; found: {found})")
    if len(others) > 1:
        raise _Untranslatable(others[1][2], "output selection (IF on DVID): one PD output besides the concentration "
                                            "is translated (insilico composes one PD model)")
    return conc[0][0], conc[0][1], others, notes


def _pd_output(model, name: str, size, ctx: _Context):
    """A second output, the $ERROR variable ``name`` (its Y), as a direct effect of the concentration
    C = A/size (A the central amount, ``size`` the full $PK expression of the scale): ``E0 + SLOPE*C``
    (insilico's ``linear``) or ``E0 + EMAX*C/(EC50 + C)`` (``emax``), `insilico.models` PD_MODELS.

    The prediction P(C) (Y at EPS = 0) is linear when d2P/dC2 = 0 (E0 = P(0), SLOPE = dP/dC); it is an
    Emax curve when 1/(P - E0) is linear in u = 1/C: 1/(P - E0) = 1/EMAX + (EC50/EMAX) u. Its residual
    model is `residual_relation` of Y written in F = P (A = size * C(F)). Returns (kind, {parameter:
    full expression}, residual type, residual parts, EPS names Y uses). Raises `_Untranslatable`."""
    y = _drop_w_guard(_with_pk(model.statements.after_odes.full_expression(name)._sympy_(), model))
    central = sympy.sympify(model.statements.ode_system.central_compartment.amount)
    amounts = {a for a in y.atoms(sympy.Function) if isinstance(a, sympy.core.function.AppliedUndef)}
    if amounts != {central}:
        raise _Untranslatable(f"the prediction {y} is not a function of the central amount {central} alone")
    c, u, f_sym = sympy.Dummy("C"), sympy.Dummy("u"), sympy.Symbol("F")
    pred = sympy.simplify(y.subs({sympy.Symbol(e): 0 for e in ctx.eps}).subs(central, c * size))
    e0 = sympy.simplify(pred.subs(c, 0))
    h = sympy.simplify(pred - e0)
    if h == 0:
        raise _Untranslatable(f"the prediction {pred} does not depend on the concentration")
    if sympy.simplify(h.diff(c, 2)) == 0:
        slope = sympy.simplify(h.diff(c))
        kind, params, c_of_f = "linear", {"E0": e0, "SLOPE": slope}, (f_sym - e0) / slope
    else:
        k = sympy.simplify(1 / h.subs(c, 1 / u))
        if sympy.simplify(k.diff(u, 2)) != 0 or k.subs(u, 0) == 0:
            raise _Untranslatable(f"the prediction {pred} of the concentration C = A/{size} is neither "
                                  "E0 + SLOPE*C nor E0 + EMAX*C/(EC50 + C); not translated")
        emax = sympy.simplify(1 / k.subs(u, 0))
        ec50 = sympy.simplify(k.diff(u) * emax)
        kind, params = "emax", {"E0": e0, "EMAX": emax, "EC50": ec50}
        c_of_f = ec50 * (f_sym - e0) / (emax - (f_sym - e0))
    if any(v.has(c) or v.has(u) for v in params.values()):
        raise _Untranslatable(f"the prediction {pred}: its {kind} parameters depend on the concentration")
    res_type, res_parts = residual_relation(sympy.simplify(y.subs(central, c_of_f * size)), f_sym, ctx)
    return kind, params, res_type, res_parts, {e for e in ctx.eps if y.has(sympy.Symbol(e))}


def _drop_w_guard(y):
    """``IF (W.EQ.0) W = 1`` (a guard against W = 0 at F = 0): the Piecewise keeps its
    otherwise-branch (insilico guards the variance itself)."""
    def repl(pw):
        conds = [c for _, c in pw.args if c != sympy.true]
        if all(isinstance(c, sympy.Eq) for c in conds):
            return next(e for e, c in pw.args if c == sympy.true)
        raise _Untranslatable(f"IF in $ERROR: `{pw}`")
    return y.replace(lambda e: isinstance(e, sympy.Piecewise), repl)


def _value(expr, ctx) -> float:
    return float(sympy.sympify(expr).subs({sympy.Symbol(k): v for k, v in ctx.values.items()}))


def _assemble(model, path, model_ref, relations, fixed_model, res_type, res_parts, ctx, nm_names, thetas,
              outputs=None, extra_residuals=()):
    """The population mapping, the names sidecar and notes (bounds not carried). ``outputs``: {DVID:
    output} of several observed outputs, ``extra_residuals``: [(output, type, {component: variance
    expression})] of the outputs other than ``conc``, whose SIGMAs follow the primary's
    (`insilico.estimation`'s convention)."""
    params, fix, bounds, notes = {}, [], {}, []
    theta_map: dict[str, dict] = {}
    pars = {p.name: p for p in model.parameters}

    def theta_entry(theta, ins_name, relation=None):
        e = theta_map.setdefault(nm_names[theta], {"name": ins_name, **_comment(theta)})
        if relation:
            e["relation"] = relation
        if pars[theta].fix:
            fix.append(ins_name)

    def carry_bounds(theta, ins_name, positive):
        p = pars[theta]
        lo, hi = float(p.lower), float(p.upper)
        if p.fix or (not math.isfinite(hi) and (not math.isfinite(lo) or (positive and lo <= 0))):
            return    # fixed, or NONMEM's (0, inf) of a typical value: insilico keeps typical values > 0
        if math.isfinite(lo) and math.isfinite(hi) and lo < hi and (lo > 0 or not positive):
            bounds[ins_name] = [lo, hi]
        else:
            notes.append(f"$THETA {_label(nm_names, theta)}: bound ({lo:g}, {hi:g}) not carried "
                         "(insilico bounds need two finite ends, a typical value's lower one > 0)")

    for ins_par, rel in relations.items():
        typ = _value(rel["typical"], ctx)
        entry = {"typical": typ, "effects": []}
        theta_entry(rel["typical"], ins_par)
        carry_bounds(rel["typical"], ins_par, positive=True)
        for eff in rel["effects"]:
            cov = eff["covariate"]
            if eff["type"] == "categorical":
                mult = {lv: _value(r, ctx) for lv, r in eff["relation"].items()}
                entry["effects"].append({"covariate": cov, "type": "categorical", "multipliers": mult})
                tied = [lv for lv, r in eff["relation"].items() if r.free_symbols]
                for lv, r in eff["relation"].items():
                    if not r.free_symbols:
                        fix.append(f"{ins_par}.{cov}[{lv}]")
                for th in eff["thetas"]:
                    p = pars[th]
                    if not p.fix and (math.isfinite(float(p.lower)) or math.isfinite(float(p.upper))):
                        notes.append(f"$THETA {_label(nm_names, th)}: bound ({float(p.lower):g}, {float(p.upper):g}) "
                                     "not carried to the categorical multipliers (kept > 0 by insilico)")
                    first = f"{ins_par}.{cov}[{tied[0]}]"
                    rel_txt = "; ".join(f"{ins_par}.{cov}[{lv}] = {eff['relation'][lv]}" for lv in tied)
                    theta_entry(th, first, rel_txt.replace(th, nm_names[th]))
                    notes.append(f"$PK IF on {cov} ({nm_names[th]}): mapped to categorical multipliers per {cov} "
                                 f"level ({rel_txt.replace(th, nm_names[th])}); a fit estimates each level's "
                                 "multiplier separately where NONMEM estimates one THETA")
                continue
            name = f"{ins_par}.{cov}"
            th = eff["theta"]
            if isinstance(th, str):
                theta_entry(th, name)
                carry_bounds(th, name, positive=False)
                value = _value(th, ctx)
            else:
                value = th
                fix.append(name)
            entry["effects"].append({"covariate": cov, "type": eff["type"], "ref": eff["ref"], "theta": value})
        if not entry["effects"]:
            del entry["effects"]
        params[ins_par] = entry

    eta_order = [e for e in ctx.etas if any(r["eta"] == e for r in relations.values())]
    eta_par = {r["eta"]: p for p, r in relations.items() if r["eta"]}
    iov, iov_names, iov_etas = _iov_section(relations, model, ctx, nm_names, fix, notes)
    for e in ctx.etas:
        if e not in eta_par and e not in iov_etas:
            notes.append(f"$OMEGA: {e} is used by no translated parameter; not translated")
    om = _symbol_matrix(model.random_variables.etas)
    idx = [ctx.etas.index(e) for e in eta_order]
    omega_names = {}
    omega = [[_value(om[i][j], ctx) if om[i][j] != "0" else 0.0 for j in idx] for i in idx]
    for a, i in enumerate(idx):
        for b, j in enumerate(idx[:a + 1]):
            sym = om[i][j]
            if sym == "0":
                continue
            ins = f"OMEGA({a + 1},{b + 1})"
            omega_names[nm_names[sym]] = {"name": ins, **_comment(sym)}
            if pars[sym].fix:
                fix.append(ins)

    residual = {"type": res_type}
    sigma_names = {}
    slot = {"proportional": "SIGMA(1,1)", "exponential": "SIGMA(1,1)",
            "additive": "SIGMA(2,2)" if res_type in ("combined", "combined1") else "SIGMA(1,1)"}
    for comp, var_expr in res_parts.items():
        residual[comp] = math.sqrt(_value(var_expr, ctx))
        syms = sorted(s.name for s in sympy.sympify(var_expr).free_symbols)
        for s in syms:
            sigma_names.setdefault(nm_names[s], {"name": slot[comp], **_comment(s),
                                                 "relation": f"{comp}**2 = {_rename(var_expr, nm_names)}"})
        if syms and all(pars[s].fix for s in syms):
            fix.append(slot[comp])
    k = len(SIGMA_FIELDS[res_type])
    residual_errors = {}
    for out, rtype, parts in extra_residuals:
        entry = {"type": rtype}
        for comp in SIGMA_FIELDS[rtype]:
            k += 1
            entry[comp] = math.sqrt(_value(parts[comp], ctx))
            syms = sorted(s.name for s in sympy.sympify(parts[comp]).free_symbols)
            for s in syms:
                sigma_names.setdefault(nm_names[s], {"name": f"SIGMA({k},{k})", **_comment(s),
                                                     "relation": f"{out}.{comp}**2 = {_rename(parts[comp], nm_names)}"})
            if syms and all(pars[s].fix for s in syms):
                fix.append(f"SIGMA({k},{k})")
        residual_errors[out] = entry

    population = {"name": _problem_name(path), "description": f"imported from {path.name} by insilico "
                  "import nonmem", "model": {**model_ref, **({"parameters": fixed_model} if fixed_model else {})},
                  "output": "conc", **({"outputs": outputs} if outputs else {}), "parameters": params}
    if eta_order:
        population["bsv"] = {"parameters": [eta_par[e] for e in eta_order], "omega": omega}
    if iov:
        population["iov"] = iov
    # PREDPP advances the system to each event record with that record's PK values: a record's
    # covariates (and occasion) hold back to the previous record (NONMEM Users Guide VI), insilico's nocb
    population["covariate_interpolation"] = "nocb"
    population["residual_error"] = residual
    if residual_errors:
        population["residual_errors"] = residual_errors
    estimate = {}
    if fix:
        estimate["fix"] = list(dict.fromkeys(fix))
    if bounds:
        estimate["bounds"] = bounds
    if estimate:
        population["estimate"] = estimate
    names = {"thetas": dict(sorted(theta_map.items(), key=lambda kv: int(kv[0][5:]))),
             "etas": {f"ETA{ctx.etas.index(e) + 1}": eta_par[e] for e in eta_order},
             "omegas": {**omega_names, **iov_names.pop("omegas", {})}, "sigmas": sigma_names}
    if iov_names:
        names["iov"] = iov_names
    for th in thetas:
        if nm_names[th] not in names["thetas"] and nm_names[th] not in sigma_names:
            notes.append(f"$THETA {_label(nm_names, th)}: used by no translated relation; not translated")
    return population, names, notes


def iov_order(relations: dict) -> list[str]:
    """The parameters with inter-occasion variability in the order of their first block's ETAs (the
    order of the ``iov`` section and of ``OMEGA_IOV(j,j)``)."""
    return sorted((p for p, r in relations.items() if r.get("iov")),
                  key=lambda p: (relations[p]["iov"]["chain"], relations[p]["iov"]["position"]))


def _iov_section(relations, model, ctx, nm_names, fix, notes):
    """(the population file's ``iov``, the names sidecar's ``iov`` (with ``omegas``: NONMEM's OMEGA(i,i)
    of the first block -> ``OMEGA_IOV(j,j)``), the ETAs it uses); appends to ``fix`` and ``notes``."""
    order = iov_order(relations)
    if not order:
        return None, {}, set()
    pars = {p.name: p for p in model.parameters}
    om = _symbol_matrix(model.random_variables.etas)
    variance, omegas, etas, used = {}, {}, {}, set()
    col = relations[order[0]]["iov"]["column"]
    k_total = len(ctx.iov_chains[relations[order[0]]["iov"]["chain"]])
    for j, p in enumerate(order, start=1):
        info = relations[p]["iov"]
        chain = ctx.iov_chains[info["chain"]]
        first = chain[0][info["position"]]
        i = ctx.etas.index(first)
        sym = om[i][i]
        variance[p] = _value(sym, ctx)
        name = f"OMEGA_IOV({j},{j})"
        omegas[nm_names[sym]] = {"name": name, **_comment(sym)}
        if pars[sym].fix:
            fix.append(name)
        for k, block in enumerate(chain, start=1):
            eta = block[info["position"]]
            used.add(eta)
            etas[f"ETA{ctx.etas.index(eta) + 1}"] = {"parameter": p, "occasion": k}
        span = f"{ctx.eta_label(chain[0][0])}-{ctx.eta_label(chain[-1][-1])}"
        notes.append(f"$OMEGA SAME chain {span} ({len(chain)} blocks): inter-occasion variability of {p} "
                     f"({ctx.eta_label(first)}... one per occasion, {nm_names[sym]} = {variance[p]:g}) -> iov, "
                     f"{name}")
        if info["no_iov"]:
            vals = ", ".join(f"{v:g}" for v in info["no_iov"])
            notes.append(f"$PK {p}: at {col} = {vals} NONMEM adds no IOV ETA; insilico's fit needs {col} = 1.."
                         f"{k_total} on every record (records with other values are refused: data.{col})")
    notes.append(f"iov: occasions 1..{k_total} from the data's {col} column (insilico fit), holding back to the "
                 "previous record as in PREDPP (covariate_interpolation: nocb, which applies to time-varying "
                 "covariates too); a trial simulating this population needs iov.starts (occasion start times, h), "
                 "which NONMEM's data do not give")
    names = {"column": col, "occasions": k_total, "parameters": order, "etas": etas, "omegas": omegas}
    section = {"occasions": k_total, "variance": variance, **({} if col.upper() == "OCC" else {"column": col})}
    return section, names, used


def nonmem_random_effects(names: dict, etas) -> np.ndarray:
    """One subject's insilico random-effect vector from NONMEM's ETA values: ``[eta in the bsv order,
    kappa of occasion 1 in the iov order, ..., kappa of occasion K]`` (the vector `insilico.estimation`'s
    problem predicts with, length ``problem.n_eta``).

    names : the names sidecar (`NonmemImport.names`, ``nonmem_names.yaml``): ``etas`` (ETAk -> bsv
        parameter, in bsv order) and ``iov`` (``parameters`` in order, ``etas``: ETAk -> parameter and
        occasion).
    etas : ``{"ETA1": value, ...}`` (``ETA(1)`` also accepted), e.g. a row of `read_phi`.
    A missing ETA: `SpecError` (``phi``)."""
    vals = {re.sub(r"[()]", "", str(k)).upper(): float(v) for k, v in dict(etas).items()}

    def get(nm):
        if nm not in vals:
            raise SpecError("phi", f"no value of {nm} (have {', '.join(sorted(vals)) or 'none'})")
        return vals[nm]
    out = [get(nm) for nm in names.get("etas", {})]
    iov = names.get("iov")
    if iov:
        slot = {(e["occasion"], e["parameter"]): nm for nm, e in iov["etas"].items()}
        out += [get(slot[(k, p)]) for k in range(1, iov["occasions"] + 1) for p in iov["parameters"]]
    return np.asarray(out, dtype=float)


def _comment(pharmpy_name: str) -> dict:
    """``{"comment": name}`` for a name the control stream's comments gave, else {} (pharmpy's
    default names THETA_k, OMEGA_i_j, SIGMA_i_j carry nothing)."""
    return {} if re.fullmatch(r"(THETA|OMEGA|SIGMA|ETA|EPS)_\d+(_\d+)?", pharmpy_name) else {"comment": pharmpy_name}


def _label(nm_names, pharmpy_name) -> str:
    return nm_names[pharmpy_name] + "".join(f" ({c})" for c in _comment(pharmpy_name).values())


def _rename(expr, nm_names) -> str:
    e = sympy.sympify(expr)
    return str(e.subs({sympy.Symbol(k): sympy.Symbol(v) for k, v in nm_names.items()}))


def _problem_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem) or "population"



# --------------------------------------------------------------------------- covariance of the estimates

def covariance_of(cov_table, result: NonmemImport, relations: dict, res_parts: dict, model, ctx: _Context,
                  nm_names: dict, source, extra_residuals=()) -> dict:
    """NONMEM's covariance matrix of the estimates (`read_cov`) carried onto the translated
    quantities, named as insilico names estimated quantities (``CL``, ``CL.WT``,
    ``V.APGR[1]``, ``OMEGA(i,j)`` in ``bsv`` order, ``SIGMA(k,k)``; `insilico.estimation`) on the
    natural scale (typical values and effect thetas as written, Omega elements, residual
    variances).

    Each insilico quantity q is a function g of NONMEM's THETA/OMEGA/SIGMA (the identity for
    most; a categorical multiplier ``1 + THETA3``; a residual variance ``THETA10**2``), so the
    delta method gives Cov(q) = J C J^T with J = dg/d(NONMEM) at the values imported (exact for
    the linear maps). Fixed elements (rows of zeros in the .cov file) stay at zero variance.
    ``extra_residuals``: [(output, type, {component: variance expression})] of the observed outputs
    other than the primary one (a DVID selection), whose ``SIGMA(k,k)`` follow the primary's.
    Returns ``{source, scale, names, nonmem, matrix}``; ``nonmem`` gives each name's expression
    in NONMEM's names. A NONMEM element a quantity needs that the file lacks: `SpecError`."""
    pop = result.population
    quantities: list[tuple[str, sympy.Expr]] = []
    for par in pop["parameters"]:
        rel = relations[par]
        quantities.append((par, sympy.Symbol(rel["typical"])))
        for eff in rel["effects"]:
            if eff["type"] == "categorical":
                quantities += [(f"{par}.{eff['covariate']}[{lv}]", sympy.sympify(r))
                               for lv, r in eff["relation"].items()]
            else:
                th = eff["theta"]
                quantities.append((f"{par}.{eff['covariate']}",
                                   sympy.Symbol(th) if isinstance(th, str) else sympy.Float(th)))
    if pop.get("bsv"):
        om = _symbol_matrix(model.random_variables.etas)
        idx = [ctx.etas.index(relations[p]["eta"]) for p in pop["bsv"]["parameters"]]
        for a, i in enumerate(idx):
            for b, j in enumerate(idx[:a + 1]):
                if om[i][j] != "0":
                    quantities.append((f"OMEGA({a + 1},{b + 1})", sympy.Symbol(om[i][j])))
    if pop.get("iov"):
        om = _symbol_matrix(model.random_variables.etas)
        for j, p in enumerate(iov_order(relations), start=1):
            info = relations[p]["iov"]
            i = ctx.etas.index(ctx.iov_chains[info["chain"]][0][info["position"]])
            quantities.append((f"OMEGA_IOV({j},{j})", sympy.Symbol(om[i][i])))
    res_type = pop["residual_error"]["type"]
    for comp in ("proportional", "exponential", "additive"):
        if comp in res_parts:
            slot = "SIGMA(2,2)" if comp == "additive" and res_type in ("combined", "combined1") else "SIGMA(1,1)"
            quantities.append((slot, sympy.sympify(res_parts[comp])))
    k = len(SIGMA_FIELDS[res_type])
    for _, rtype, parts in extra_residuals:       # several outputs: their SIGMAs follow the primary's
        for comp in SIGMA_FIELDS[rtype]:
            k += 1
            quantities.append((f"SIGMA({k},{k})", sympy.sympify(parts[comp])))

    pars = {p.name: p for p in model.parameters}
    columns = list(cov_table.columns)
    c = cov_table.to_numpy(dtype=float)
    subs = {sympy.Symbol(k): v for k, v in ctx.values.items()}
    jac = np.zeros((len(quantities), len(columns)))
    used = set()
    for r, (name, expr) in enumerate(quantities):
        for sym in sorted(expr.free_symbols, key=str):
            nm = nm_names.get(sym.name)
            col = nm if nm in columns else (_transposed(nm) if nm and nm[0] in "OS" and _transposed(nm) in columns
                                            else None)
            if col is None:
                if sym.name in pars and pars[sym.name].fix:
                    continue
                raise SpecError("cov", f"{source or 'the .cov file'}: no row for {nm or sym.name}, which {name} "
                                       "uses")
            used.add(col)
            jac[r, columns.index(col)] = float(expr.diff(sym).subs(subs))
    out = jac @ c @ jac.T
    notes = [f"--cov: {col} (variance {c[k, k]:.4g}) not carried: no translated quantity uses it"
             for k, col in enumerate(columns) if col not in used and c[k, k] != 0]
    result.untranslated += notes
    nonmem = {name: float(expr) if expr.is_number else _rename(expr, nm_names) for name, expr in quantities}
    return {"source": Path(source).name if source else "cov",
            "scale": "natural: typical values and effect thetas as written, OMEGA(i,j) and SIGMA(k,k) variances",
            "names": [n for n, _ in quantities], "nonmem": nonmem,
            "matrix": [[float(f"{v:.10g}") for v in row] for row in out]}
