"""Screening virtual subjects before they are simulated: one failing patient never aborts a trial.

A subject whose own inputs are invalid is not simulated in that arm; its ``status`` says why
(`insilico.engine.status.INPUT_MEANINGS`) and the trial goes on. The checks, in this order
(a subject gets the code of the first that fails):

1. ``INVALID_COVARIATE``: a covariate of the cohort is NaN or infinite (e.g. ``log`` of a
   negative number in an expression);
2. ``INVALID_DOSE_SCALE``: a dose of the arm is given ``per`` a covariate (``{amt: 2, per: WT}``
   is 2 mg/kg) that is not finite and > 0 for the subject;
3. ``INVALID_PARAMETER``: an individual parameter is non-finite or outside the model's
   constraint (``positive`` > 0, ``nonnegative`` >= 0, ``fraction`` in [0, 1]), e.g. a linear
   covariate effect that makes CL <= 0 L/h. These are the rules `insilico.models.Parameter.check`
   and `insilico.dosing.dose_table` apply to a whole batch, applied here subject by subject
   (`parameter_ok` defers to `Parameter.check` for the final word).

When no subject of a screening draw is valid in some arm, the spec itself is wrong:
`check_subjects` raises `SpecError` naming the field, before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insilico.engine import status as codes
from insilico.errors import SpecError


@dataclass(frozen=True)
class Problem:
    """One per-subject check that fails for some subjects: status ``code``, the covariate or
    parameter ``name`` at fault, the spec ``field`` to change, a ``rule`` in words and ``bad``
    (n,) bool, the subjects it fails for."""

    code: int
    name: str
    field: str
    rule: str
    bad: np.ndarray


_CONSTRAINTS = {"positive": (lambda v: v > 0, "must be > 0"), "nonnegative": (lambda v: v >= 0, "must be >= 0"),
                "fraction": (lambda v: (v >= 0) & (v <= 1), "must be between 0 and 1"),
                "real": (lambda v: np.ones(v.shape, bool), "must be finite")}


def _passes(par, value) -> bool:
    try:
        par.check(np.asarray(value, dtype=float), par.name)
    except SpecError:
        return False
    return True


def parameter_ok(par, value) -> np.ndarray:
    """Elementwise validity of values of the model parameter ``par``: finite and within its
    ``constraint`` (``positive`` > 0, ``nonnegative`` >= 0, ``fraction`` in [0, 1], ``real``).
    The values found valid are then checked by the model's own rule (`Parameter.check`); should
    it refuse some (a constraint not known here), every value is checked by it one by one."""
    v = np.asarray(value, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & _CONSTRAINTS.get(par.constraint, _CONSTRAINTS["real"])[0](v)
    if not _passes(par, v[ok]):
        ok = np.array([_passes(par, x) for x in v], dtype=bool)
    return ok


def _covariate_field(cohort, name: str) -> str:
    if name in (cohort.covariates or {}):
        return f"cohort.covariates.{name}"
    derived = list(getattr(cohort, "derived", None) or [])
    return f"cohort.derived.{derived.index(name)}" if name in derived else "cohort"


def _constraint_rule(par) -> str:
    rule = _CONSTRAINTS[par.constraint][1] if par.constraint in _CONSTRAINTS else f"must be {par.constraint}"
    return f"{rule} {par.units}" if par.constraint in ("positive", "nonnegative") else rule


def subject_problems(ctx, arm: int, covariates: dict, params: dict) -> list[Problem]:
    """The checks (module docstring) that fail for some of the subjects whose ``covariates``
    (cohort covariates, name -> (n,)) and ``params`` (the individual model parameters given to
    the simulation, name -> (n,)) are given, for ``arm``; in the order of precedence."""
    out = []
    for name in ctx.covariate_names:
        v = np.asarray(covariates[name])
        if np.issubdtype(v.dtype, np.floating):
            bad = ~np.isfinite(v)
            if bad.any():
                out.append(Problem(codes.INVALID_COVARIATE, name, _covariate_field(ctx.cohort, name),
                                   "must be finite", bad))
    seen = set()
    for j, d in enumerate(ctx.regimens[arm].doses):
        if d.per is None or d.per in seen:
            continue
        seen.add(d.per)
        v = np.asarray(covariates[d.per], dtype=float)
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            out.append(Problem(codes.INVALID_DOSE_SCALE, d.per, f"arms.{arm}.regimen.{j}.per",
                               f"must be > 0 for a dose per {d.per}", bad))
    for name, v in params.items():
        par = ctx.model.parameter(name)
        bad = ~parameter_ok(par, v)
        if bad.any():
            field = f"cohort.parameters.{name}" if name in ctx.cohort_params else f"model.parameters.{name}"
            out.append(Problem(codes.INVALID_PARAMETER, name, field, _constraint_rule(par), bad))
    return out


def subject_status(problems: list[Problem], n: int) -> np.ndarray:
    """(n,) int8 status before simulation: 0 where every check holds, else the code of the first
    problem (in the order of ``problems``) that fails for the subject."""
    status = np.zeros(n, np.int8)
    for p in reversed(problems):
        status[p.bad] = p.code
    return status


def check_subjects(ctx) -> None:
    """Draw the subjects of the first work unit (replicate 0, chunk 0: the first
    ``execution.chunk_size`` subjects, the same draw and compiled shapes as that unit's) and raise
    `SpecError` naming the field when, in some arm, every one of them fails a check: a spec-level
    mistake (a covariate effect that makes CL <= 0 for everyone, a dose per a covariate that is
    never > 0), refused before anything is written."""
    from insilico.trials._unit import draw_subjects, subject_range
    idx = subject_range(ctx, 0)
    cohort, params, _, _ = draw_subjects(ctx, 0, idx)
    covariates = {k: cohort[k].values for k in ctx.covariate_names}
    for arm in range(ctx.n_arms):
        problems = subject_problems(ctx, arm, covariates, params)
        if problems and np.all(subject_status(problems, idx.size) != codes.OK):
            p = max(problems, key=lambda q: int(q.bad.sum()))
            i = int(np.flatnonzero(p.bad)[0])
            v = (covariates[p.name] if p.code != codes.INVALID_PARAMETER else params[p.name])[i]
            raise SpecError(p.field, f"{p.name} {p.rule}, but it is not for {int(p.bad.sum())} of the first "
                                     f"{idx.size} subjects (e.g. subject {i}: {p.name} = {float(v):g}); no subject "
                                     f"of arm {ctx.spec.arms[arm].name!r} could be simulated")
