"""One work unit: (replicate, arm, subject chunk) -> arrays for its region of the store."""
from __future__ import annotations

import numpy as np

from insilico.cohorts import apply_residual_error, draw_cohort
from insilico.dosing import dose_table
from insilico.engine import SolverOptions, simulate
from insilico.trials import _design, _titration
from insilico.trials._endpoints import compute_endpoints, endpoint_grid
from insilico.trials._screen import subject_problems, subject_status


def replicate_seed(seed: int, replicate: int) -> int:
    """Cohort seed of a replicate (independent virtual patients in each replicate)."""
    return int(np.random.SeedSequence([seed, replicate]).generate_state(1, dtype=np.uint64)[0] % (2**63))


def subject_range(ctx, chunk: int) -> np.ndarray:
    cs = ctx.spec.execution.chunk_size
    return np.arange(chunk * cs, min(ctx.spec.n, (chunk + 1) * cs))


def draw_subjects(ctx, replicate: int, idx: np.ndarray):
    """Cohort, parameters (with replicate uncertainty: the replicate's draw of a fit's quantities,
    `TrialContext.population`, or the per-parameter factors), allocation and dropout for ``idx``.
    """
    spec = ctx.spec
    cohort = draw_cohort(ctx.cohort, n=len(idx), seed=replicate_seed(spec.seed, replicate), start=int(idx[0]),
                         population=ctx.population(replicate))
    factors = _design.uncertainty_factors(spec.replicates, spec.seed, replicate)
    params = {}
    for name in ctx.model.parameter_names:
        if name in ctx.cohort_params:
            v = cohort[name].values.astype(float)
        elif name in ctx.fixed:
            v = np.full(len(idx), ctx.fixed[name])
        else:
            continue  # model default
        params[name] = v * factors.get(name, 1.0)
    if spec.design == "parallel":
        alloc = _design.allocate(spec.seed, replicate, idx, [a.ratio for a in spec.arms])
    else:
        alloc = np.full(len(idx), -1)
    dropout = _design.dropout_times(spec.dropout, spec.seed, replicate, idx)
    return cohort, params, alloc, dropout


def occasion_params(ctx, cohort, replicate: int) -> dict:
    """``{P_occ: (n, occasions)}`` of the cohort's IOV parameters that the model has, with the replicate's
    uncertainty factor of P (as `draw_subjects` applies it to P); empty without IOV."""
    factors = _design.uncertainty_factors(ctx.spec.replicates, ctx.spec.seed, replicate)
    return {f"{name}_occ": cohort[f"{name}_occ"].transpose("subject", "occasion").values.astype(float)
            * factors.get(name, 1.0)
            for name in ctx.model.parameter_names if name in ctx.cohort_params and f"{name}_occ" in cohort}


def compute_unit(ctx, replicate: int, arm: int, chunk: int, n_doses: int) -> dict:
    """Simulate one unit; returns ``{"arm": {...}, "subject": {...} | None}`` numpy variables.
    The doses given are recorded in ``n_doses`` slots per subject (`dose_record`). Subjects of
    the arm whose own inputs are invalid are not simulated: their status says why
    (`insilico.trials._screen`), their values and doses stay empty. An arm with ``titration`` rules
    adapts each subject's doses first (`insilico.trials._titration.titrate`); the decisions come back
    as ``titration_*`` variables (subjects, decision slots)."""
    spec = ctx.spec
    idx = subject_range(ctx, chunk)
    n, T = len(idx), len(ctx.nominal)
    cohort, params, alloc, dropout = draw_subjects(ctx, replicate, idx)
    sel = np.flatnonzero((alloc == arm) | (alloc < 0))
    arm_vars = {o: np.full((n, T), np.nan) for o in ctx.outputs}
    residual = ctx.residual_error(replicate)
    if residual is not None and "conc" in ctx.outputs:
        arm_vars["conc_obs"] = np.full((n, T), np.nan)
    eps = {e.name: np.full(n, np.nan) for e in spec.endpoints}
    status = np.full(n, -1, np.int8)
    doses = _empty_doses(n, n_doses)
    mask, actual = _design.sampling(spec.observations, spec.seed, replicate, idx, ctx.nominal)
    decisions = {}
    if _titration.has_titration(spec):     # rules checked by `insilico.trials.prepare`
        decisions = _titration.empty_record(ctx, n)

    if sel.size:   # subjects whose own inputs are invalid are flagged, not simulated (`_screen`)
        covs = {k: cohort[k].values[sel] for k in ctx.covariate_names}
        status[sel] = subject_status(subject_problems(ctx, arm, covs, {k: v[sel] for k, v in params.items()}),
                                     sel.size)
        sel = sel[status[sel] == 0]
    if sel.size:
        covs = {k: cohort[k].values[sel] for k in ctx.covariate_names}
        p = {k: v[sel] for k, v in params.items()}
        ex = spec.execution
        solver = SolverOptions(solver=ex.solver, rtol=ex.rtol, atol=ex.atol)
        p_sim = {**p, **{k: v[sel] for k, v in occasion_params(ctx, cohort, replicate).items()}}
        occasions = ctx.cohort.iov.starts if getattr(ctx.cohort, "iov", None) is not None else None
        failed = np.zeros(sel.size, np.int8)
        if spec.arms[arm].titration:     # adapt each subject's later doses to its observations
            def solve(tab, times):
                s = simulate(ctx.model, p_sim, tab, times, method=ex.method, solver=solver, occasions=occasions)
                return {o: s[o].values for o in ctx.model.output_names}, s["status"].values
            planned, taken = planned_doses(spec, ctx.model, ctx.regimens[arm], arm, idx[sel], covs, replicate,
                                           dropout[sel])
            table, rec, failed = _titration.titrate(ctx, replicate, arm, idx[sel], planned, taken, dropout[sel],
                                                    solve)
            for k, v in rec.items():
                decisions[k][sel] = v
        else:
            table = doses_given(spec, ctx.model, ctx.regimens[arm], arm, idx[sel], covs, replicate, dropout[sel])
        for k, v in dose_record(table).items():
            doses[k][sel, :v.shape[1]] = v
        nominal_doses = np.array([d.time for d in ctx.regimens[arm].expanded()])
        grid = endpoint_grid(spec, nominal_doses, ctx.nominal)
        sim = simulate(ctx.model, p_sim, table, grid, method=ex.method, solver=solver, occasions=occasions)
        outs = {o: sim[o].values for o in ctx.model.output_names}
        st = np.where(failed != 0, failed, sim["status"].values)   # an interim failure stays the subject's status
        values = compute_endpoints(spec, grid, outs, nominal_doses, dropout[sel])
        for k, v in values.items():
            eps[k][sel] = np.where(st == 0, v, np.nan)
        status[sel] = st
        if spec.observations.jitter_sd > 0:
            prof = simulate(ctx.model, p_sim, table, actual[sel], method=ex.method, solver=solver,
                            occasions=occasions)
            prof = {o: prof[o].values for o in ctx.outputs}
        else:
            cols = np.searchsorted(grid, ctx.nominal)
            prof = {o: outs[o][:, cols] for o in ctx.outputs}
        seen = mask[sel] & (actual[sel] < dropout[sel, None]) & (st == 0)[:, None]
        for o in ctx.outputs:
            arm_vars[o][sel] = np.where(seen, prof[o], np.nan)
        if "conc_obs" in arm_vars:
            key = _design.subject_keys(spec.seed, "residual", replicate, np.array([arm]))[0]
            noisy = np.asarray(apply_residual_error(prof["conc"], residual, key, idx[sel]))
            arm_vars["conc_obs"][sel] = np.where(seen, noisy, np.nan)

    doses["doses_taken"] = np.isfinite(doses["dose_time"]).sum(axis=1).astype(np.int32)
    result = {"arm": {**arm_vars, **eps, "status": status, **doses, **decisions}, "subject": None}
    if arm == 0:
        subj = {k: cohort[k].values for k in cohort.data_vars
                if cohort[k].dims == ("subject",) and k != "attempt"}
        subj.update({k: v for k, v in params.items()})
        subj.update(occasion_params(ctx, cohort, replicate))
        subj["allocated_arm"] = alloc.astype(np.int16)
        subj["dropout_time"] = dropout
        if spec.observations.jitter_sd > 0:
            subj["obs_time"] = actual
        result["subject"] = subj
    return result


def planned_doses(spec, model, regimen, arm: int, subjects: np.ndarray, covariates: dict, replicate: int,
                  dropout: np.ndarray):
    """(the planned dose table of ``subjects`` (global indices) in ``arm``: the arm's regimen with
    ``per``-covariate scaling; (n, events) 0/1 factor: the dose is taken under ``adherence`` and
    given before the subject's ``dropout`` time (h))."""
    table = dose_table(regimen, model, len(subjects), covariates, where=f"arms.{arm}.regimen")
    n_doses = len(regimen.expanded())
    taken = np.ones(table.amt.shape)
    if n_doses:
        taken[:, :n_doses] *= _design.doses_taken(spec.adherence, spec.seed, replicate, subjects, n_doses)
    taken = np.where(table.time >= dropout[:, None], 0.0, taken)
    return table, taken


def doses_given(spec, model, regimen, arm: int, subjects: np.ndarray, covariates: dict, replicate: int,
                dropout: np.ndarray):
    """The dose table of ``subjects`` (global indices) in ``arm`` as actually given without
    titration rules: the arm's regimen (with ``per``-covariate scaling), doses missed under
    ``adherence`` and doses at or after each subject's ``dropout`` time (h) set to 0 mg. The
    simulation's input; the store records it (`dose_record`)."""
    table, taken = planned_doses(spec, model, regimen, arm, subjects, covariates, replicate, dropout)
    return type(table)(table.time, table.amt * taken, table.rate, table.cmt, table.ss, table.ii)


def _empty_doses(n: int, n_doses: int) -> dict:
    """Dose slots of ``n`` subjects with no dose taken (the store's fill values)."""
    shape = (n, n_doses)
    return {"dose_time": np.full(shape, np.nan), "dose_amt": np.zeros(shape), "dose_rate": np.zeros(shape),
            "dose_cmt": np.zeros(shape, np.int8), "dose_ss": np.zeros(shape, np.int8), "dose_ii": np.zeros(shape)}


def dose_record(table) -> dict:
    """The doses of a `DoseTable` as stored: a dose is taken when its amount is > 0; slots of
    doses not taken get time NaN, amount/rate/ii 0, cmt 0 (else the 1-based state number,
    NONMEM CMT) and ss 0. Arrays (subjects, events)."""
    given = table.amt > 0
    return {"dose_time": np.where(given, table.time, np.nan), "dose_amt": np.where(given, table.amt, 0.0),
            "dose_rate": np.where(given, table.rate, 0.0),
            "dose_cmt": np.where(given, table.cmt + 1, 0).astype(np.int8),
            "dose_ss": np.where(given, table.ss, 0).astype(np.int8),
            "dose_ii": np.where(given & (table.ss > 0), table.ii, 0.0)}
