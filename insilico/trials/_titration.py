"""Titration and adaptive dosing rules (``arms.<i>.titration``), evaluated on simulated observations.

A rule (`insilico.trials._spec.TitrationRule`)::

    titration:
      - name: escalate
        at: [168, 336]                          # decision times, h (or at: doses, or every: 168)
        observe: {output: conc}                 # pre-dose conc at the decision time, with residual error
        if: "value < 10"                        # value: the observation; dose: next planned dose (mg)
        then: {scale: 1.5, max: 800}            # or add: 50, set: 200 (mg), hold: true

Semantics (the convention this module follows, stated once):

* **Decision times** (h): ``at: [t, ...]``; ``at: doses`` — each of the arm's nominal dose times
  (a held dose is still a decision time, so dosing can resume); ``every: Δ`` — ``start``
  (default Δ), ``start + Δ``, ... up to ``stop`` (default: the arm's last nominal dose time).
* **Observation**: ``observe.output`` at ``t − observe.lag``; at a dose time it is the pre-dose
  value (the engine's convention, `insilico.engine.simulate` ``obs_after_dose=False``), so a
  decision at a dose time sees the trough before that dose. ``observe.error``: ``residual`` — the
  cohort's residual error model drawn from the trial's residual stream with the observation
  index of the nominal sampling time when ``t − lag`` is one (then the decision uses exactly the
  value stored in ``conc_obs``; without sampling-time jitter), else index T + slot (T nominal
  times, slot the decision's index in the arm); ``none`` — the model prediction; a residual error
  model of the rule's own — drawn from the residual stream keyed by arm ``2**31 + arm``
  (independent of ``conc_obs``), observation index slot. Default: ``residual`` for ``conc`` when
  the cohort has a residual error model, else ``none``.
* **Condition** ``if``: an expression of the safe language (`insilico.expressions`) of ``value``
  and ``dose`` (mg: the subject's next dose at or after t as planned so far, before holds and
  adherence; NaN when none is left). A missing observation (NaN) never meets a condition.
* **Actions**, for the subjects meeting the condition: ``scale``/``add``/``set`` change the
  planned amount a of every dose at or after t to a·scale, a + add or set, then clip to
  [``min``, ``max``] mg; the changes accumulate over decisions. A dose given with ``duration``
  keeps its duration (its rate follows the amount); one given with ``rate`` keeps its rate.
  ``hold: true`` skips every dose from t up to, not including, the rule's next decision time
  (after its last decision: to the end of the regimen) — "hold while ANC < 1" is a hold rule at
  every dose, and dosing resumes at the first decision whose condition is false.
* Rules deciding at the same time act in the order listed, on observations of one trajectory
  (a decision at t changes only doses at or after t, which cannot change a value observed at or
  before t). Adherence (missed doses) and dropout apply to the titrated amounts: a dose is given
  when it is not held, taken and before dropout.
* A subject takes no decision at or after its dropout time; a subject whose interim simulation
  fails takes no further decision and keeps that failure as its status (the trial goes on).

Algorithm: sequential over the distinct decision times t_1 < ... < t_K of the arm: simulate the
work unit's subjects at that group's observation times with the dose tables as titrated so far,
evaluate the rules per subject, rewrite each subject's later doses; the trial's simulation then
uses the final tables. Every random draw depends on (seed, replicate, arm, subject index,
observation index) only, so results are the same whatever the chunking.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insilico.cohorts import apply_residual_error, compile_spec
from insilico.errors import SpecError
from insilico.expressions import parse_expr
from insilico.trials import _design

__all__ = ["MAX_DECISIONS", "Slot", "arm_slots", "check_titration", "has_titration", "layout_entry", "n_decisions",
           "rule_names", "titrate"]

MAX_DECISIONS = 4096          # decision slots of one arm (rules x decision times)
OWN_ERROR_ARM = 2**31         # residual-stream arm offset of rules with an error model of their own
FIRED_MEANINGS = {-1: "no decision", 0: "condition not met", 1: "condition met"}


@dataclass(frozen=True)
class Slot:
    """One decision of an arm: ``time`` (h), ``rule`` (index in the arm's rules), ``obs_time``
    (h, time observed), ``until`` (h, end of a hold's window: the rule's next decision time)."""

    time: float
    rule: int
    obs_time: float
    until: float


def rule_name(rule, j: int) -> str:
    """The rule's ``name``, or ``rule<j>`` (j its index in the arm)."""
    return rule.name or f"rule{j}"


def rule_names(spec) -> list[str]:
    """The distinct rule names of the trial, in order of first appearance (codes of ``titration_rule``)."""
    out: list[str] = []
    for arm in spec.arms:
        for j, r in enumerate(arm.titration):
            if rule_name(r, j) not in out:
                out.append(rule_name(r, j))
    return out


def has_titration(spec) -> bool:
    return any(arm.titration for arm in spec.arms)


def decision_times(rule, dose_times: np.ndarray, where: str) -> np.ndarray:
    """Decision times (h) of ``rule`` in an arm with nominal ``dose_times`` (h)."""
    if rule.at == "doses":
        t = np.unique(dose_times)
    elif rule.at is not None:
        t = np.asarray(rule.at, float)
    else:
        start = rule.every if rule.start is None else rule.start
        stop = float(np.max(dose_times)) if rule.stop is None else rule.stop
        t = np.arange(start, stop + 1e-9 * rule.every, rule.every) if stop >= start else np.zeros(0)
        if t.size > MAX_DECISIONS:
            raise SpecError(f"{where}.every", f"{t.size} decision times (at most {MAX_DECISIONS})")
    if t.size == 0:
        raise SpecError(f"{where}.every", f"no decision time from start {start:g} h to stop {stop:g} h")
    if t[0] - rule.observe.lag < 0:
        raise SpecError(f"{where}.observe.lag", f"observing {rule.observe.lag:g} h before the decision at "
                                                f"{t[0]:g} h is before time 0")
    return t


def arm_slots(arm_spec, dose_times: np.ndarray, where: str) -> list[Slot]:
    """The decision slots of an arm, by time then rule order."""
    slots = []
    for j, r in enumerate(arm_spec.titration):
        t = decision_times(r, np.asarray(dose_times, float), f"{where}.{j}")
        until = np.append(t[1:], np.inf)
        slots += [Slot(float(a), j, float(a) - r.observe.lag, float(b)) for a, b in zip(t, until)]
    if len(slots) > MAX_DECISIONS:
        raise SpecError(where, f"{len(slots)} decisions in the arm (at most {MAX_DECISIONS})")
    return sorted(slots, key=lambda s: (s.time, s.rule))


def _dose_times(regimen) -> np.ndarray:
    return np.array([d.time for d in regimen.expanded()], float)


def error_mode(rule, cohort, where: str):
    """``"none"``, ``"residual"`` or the rule's own `ResidualErrorSpec` (module docstring)."""
    err = rule.observe.error
    has_residual = getattr(cohort, "residual_error", None) is not None
    if err is None:
        return "residual" if rule.observe.output == "conc" and has_residual else "none"
    if err == "residual":
        if rule.observe.output != "conc":
            raise SpecError(f"{where}.observe.error", f"the cohort's residual error model is for conc, not "
                                                      f"{rule.observe.output!r}; give none or an error model "
                                                      "of the rule's own ({type: proportional, proportional: 0.2})")
        if not has_residual:
            raise SpecError(f"{where}.observe.error", "the cohort has no residual_error; give none or an error "
                                                      "model of the rule's own")
    return err


def check_titration(ctx) -> None:
    """Refuse (SpecError naming the field) rules the trial could not apply as written: an output the
    model lacks, an error model that does not fit, decision times that observe before time 0 or
    are too many; and an endpoint or cohort variable named like a decision variable (``titration_*``).
    Called by `insilico.trials.prepare`, before anything is written."""
    model = ctx.model
    for i, arm in enumerate(ctx.spec.arms):
        where = f"arms.{i}.titration"
        for j, r in enumerate(arm.titration):
            if r.observe.output not in model.output_names:
                raise SpecError(f"{where}.{j}.observe.output", f"unknown output {r.observe.output!r}; model "
                                                               f"outputs: {list(model.output_names)}")
            error_mode(r, ctx.cohort, f"{where}.{j}")
        if arm.titration:
            arm_slots(arm, _dose_times(ctx.regimens[i]), where)
    if has_titration(ctx.spec):
        taken = set(empty_record(ctx, 0))
        for i, e in enumerate(ctx.spec.endpoints):
            if e.name in taken:
                raise SpecError(f"endpoints.{i}.name", f"{e.name!r} is a titration decision variable of the "
                                                       f"results store ({', '.join(sorted(taken))})")
        for name in compile_spec(ctx.cohort).subject_variables():
            if name in taken:
                raise SpecError(f"cohort.covariates.{name}", f"{name!r} is a titration decision variable of the "
                                                             "results store")


def n_decisions(ctx) -> int:
    """Decision slots per subject in the store: the most of any arm (0 without rules)."""
    return max((len(arm_slots(a, _dose_times(reg), f"arms.{i}.titration"))
                for i, (a, reg) in enumerate(zip(ctx.spec.arms, ctx.regimens)) if a.titration), default=0)


def layout_entry(ctx) -> dict | None:
    """The ``titration`` argument of `insilico.store.trial_layout` (None without rules): rule
    names, decision slots, and the observed outputs with their units and long names."""
    if not has_titration(ctx.spec):
        return None
    outs = {o.name: o for o in ctx.model.outputs}
    observed = sorted({r.observe.output for a in ctx.spec.arms for r in a.titration})
    return {"rules": rule_names(ctx.spec), "n_decisions": n_decisions(ctx),
            "outputs": {o: (outs[o].units, f"{o} observed at the titration decision") for o in observed}}


def empty_record(ctx, n: int) -> dict:
    """Decision arrays of ``n`` subjects with no decision (the store's fill values)."""
    S = max(n_decisions(ctx), 1)
    rec = {"titration_time": np.full((n, S), np.nan), "titration_rule": np.full((n, S), -1, np.int8),
           "titration_fired": np.full((n, S), -1, np.int8), "titration_dose": np.full((n, S), np.nan)}
    for o in sorted({r.observe.output for a in ctx.spec.arms for r in a.titration}):
        rec[f"titration_{o}"] = np.full((n, S), np.nan)
    return rec


def _observe(pred, mode, ctx, replicate: int, arm: int, subjects: np.ndarray, obs_index: int):
    if mode == "none":
        return pred
    if mode == "residual":
        error = ctx.residual_error(replicate)
        key = _design.subject_keys(ctx.spec.seed, "residual", replicate, np.array([arm]))[0]
    else:
        error = mode
        key = _design.subject_keys(ctx.spec.seed, "residual", replicate, np.array([OWN_ERROR_ARM + arm]))[0]
    return np.asarray(apply_residual_error(pred[:, None], error, key, subjects,
                                           obs_index=np.array([obs_index])))[:, 0]


def titrate(ctx, replicate: int, arm: int, subjects: np.ndarray, table, taken: np.ndarray, dropout: np.ndarray,
            solve):
    """Apply the arm's rules to ``subjects`` (global indices).

    ``table``: their planned `DoseTable` (the regimen, ``per``-scaled); ``taken``: (n, events) 0/1,
    doses taken (adherence) and before ``dropout`` (h, (n,)); ``solve(table, times) -> ({output:
    (n, len(times))}, status (n,))`` simulates them. Returns (the dose table as given, decision
    record ``{titration_*: (n, slots)}``, status (n,) int8: 0, or the failure of an interim
    simulation)."""
    spec, regimen = ctx.spec, ctx.regimens[arm]
    rules = spec.arms[arm].titration
    where = f"arms.{arm}.titration"
    nominal_doses = _dose_times(regimen)
    slots = arm_slots(spec.arms[arm], nominal_doses, where)
    n, E = table.amt.shape
    rec = empty_record(ctx, n)
    codes = rule_names(spec)
    conds = [parse_expr(r.condition, f"{where}.{j}.if").compile({}) for j, r in enumerate(rules)]
    modes = [error_mode(r, ctx.cohort, f"{where}.{j}") for j, r in enumerate(rules)]
    amt = table.amt.astype(float).copy()
    held = np.zeros((n, E), bool)
    fail = np.zeros(n, np.int8)
    durations = np.full(E, np.nan)
    for k, d in enumerate(regimen.expanded()[:E]):
        if d.duration is not None:
            durations[k] = d.duration
    fixed_duration = np.isfinite(durations)

    def current(amounts):
        rate = np.where(fixed_duration[None, :], amt / np.where(fixed_duration, durations, 1.0)[None, :], table.rate)
        return type(table)(table.time, amounts, rate, table.cmt, table.ss, table.ii)

    T = len(ctx.nominal)
    for t in sorted({s.time for s in slots}):
        group = [(i, s) for i, s in enumerate(slots) if s.time == t]
        active = (t < dropout) & (fail == 0)
        if not active.any():
            continue
        times = np.unique([s.obs_time for _, s in group])
        outs, st = solve(current(amt * taken * ~held), times)
        st = np.asarray(st)
        newly = active & (st != 0)
        fail[newly] = st[newly]
        active &= st == 0
        later = table.time >= t                     # (n, E): doses this decision changes
        nxt = np.where(later.any(axis=1), later.argmax(axis=1), -1)
        rows = np.arange(n)
        for i, s in group:
            r = rules[s.rule]
            pred = np.asarray(outs[r.observe.output])[:, int(np.searchsorted(times, s.obs_time))]
            j_nominal = np.flatnonzero(np.abs(ctx.nominal - s.obs_time) <= 1e-9 * max(1.0, abs(s.obs_time)))
            obs_index = int(j_nominal[0]) if modes[s.rule] == "residual" and j_nominal.size else T + i
            value = np.where(active, _observe(pred, modes[s.rule], ctx, replicate, arm, subjects, obs_index), np.nan)
            dose = np.where(nxt >= 0, amt[rows, np.maximum(nxt, 0)], np.nan)
            with np.errstate(invalid="ignore"):
                met = np.asarray(conds[s.rule]({"value": value, "dose": dose}), bool) & np.isfinite(value) & active
            a = r.then
            if a.kind == "hold":
                window = (table.time >= t) & (table.time < s.until)
                held |= met[:, None] & window
            else:
                new = amt * a.scale if a.kind == "scale" else amt + a.add if a.kind == "add" else \
                    np.full_like(amt, a.set)
                new = np.clip(new, a.min if a.min is not None else 0.0, a.max if a.max is not None else np.inf)
                amt = np.where(met[:, None] & later, new, amt)
            rec["titration_time"][active, i] = t
            rec["titration_rule"][active, i] = codes.index(rule_name(r, s.rule))
            rec["titration_fired"][active, i] = met[active].astype(np.int8)
            rec[f"titration_{r.observe.output}"][:, i] = value
            after = np.where(nxt >= 0, amt[rows, np.maximum(nxt, 0)] * ~held[rows, np.maximum(nxt, 0)], np.nan)
            rec["titration_dose"][active, i] = after[active]
    return current(amt * taken * ~held), rec, fail
