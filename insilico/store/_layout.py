"""Layout of a trial results store: variables, dimensions, dtypes, fill values, CF attributes.

`trial_layout` builds it from plain inputs (names, units, sizes), so the store knows nothing
about trial, model or cohort objects. Dimensions:

* ``replicate``, ``arm`` (arm names), ``subject`` (global index), ``time`` (nominal sampling
  times, h), ``dose`` (dose slot: the arm's doses in schedule order, ADDL expanded), ``chunk``
  (work-unit index along ``subject``);
* ``(replicate, subject)``: covariates, random effects, individual parameters,
  ``allocated_arm``, ``dropout_time``, ``obs_time`` (actual sampling times when jittered);
* ``(replicate, arm, subject)``: endpoints, ``status`` (−1 not simulated in this arm, 0 ok, > 0 the
  reason a subject has no results: a solver failure or an invalid input of that subject),
  ``doses_taken``;
* ``(replicate, arm, subject, time)``: model outputs (and their ``*_obs`` residual-error copies);
* ``(replicate, arm, subject, dose)``: the doses actually given: ``dose_time``, ``dose_amt``,
  ``dose_cmt``, and ``dose_rate`` (trials with an infusion) / ``dose_ss``, ``dose_ii``
  (trials with a steady-state dose);
* ``(replicate, arm, subject, decision)`` (trials with titration rules): ``titration_time``,
  ``titration_rule``, ``titration_fired``, ``titration_dose`` and ``titration_<output>`` (the
  observed value the decision used);
* ``_done (replicate, arm, chunk)``: the completion record.

Conventions (CF 1.10): every variable and coordinate has ``units`` (the `insilico.units`
grammar, ``1`` for dimensionless numbers, indices, counts and codes) and ``long_name``; coded
variables carry ``flag_values`` and ``flag_meanings`` (blank-separated words); ``role`` says what a
variable is (``parameter``, ``output``, ``observed output``, ``endpoint``, ``design``, ``dose``,
``status``, ``record``, ``titration``; covariates keep the cohort's ``covariate`` / ``derived covariate`` /
``eta``). The fill value is also the Zarr ``fill_value``, so a unit that never ran reads as
NaN / "not simulated" / "not allocated" / "not done".
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from insilico.units import DIMENSIONLESS, check_units

__all__ = ["Endpoint", "Layout", "Variable", "trial_layout", "NOT_SIMULATED", "NOT_ALLOCATED", "EVERY_ARM"]

NOT_SIMULATED = -1   # status of a subject not simulated in an arm
NOT_ALLOCATED = -2   # allocated_arm of a subject whose unit has not run
EVERY_ARM = -1       # allocated_arm in a counterfactual design


@dataclass(frozen=True)
class Variable:
    """One stored variable: dimensions, dtype, fill value and attributes."""

    dims: tuple[str, ...]
    dtype: np.dtype
    fill: object
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """An endpoint column: ``type`` (cmax, auc, responder, …), ``units``, ``long_name``."""

    name: str
    type: str
    units: str
    long_name: str


@dataclass(frozen=True)
class Layout:
    """Variables and coordinates (``name -> (dims, values, attrs)``) of a store, and the number of
    subjects per work unit (one Zarr chunk along ``subject``)."""

    variables: dict[str, Variable]
    coords: dict[str, tuple]
    chunk_size: int

    @property
    def sizes(self) -> dict[str, int]:
        return {k: len(v[1]) for k, v in self.coords.items()}

    def chunks(self, name: str) -> tuple[int, ...]:
        """Zarr chunk shape of ``name``: one replicate × one arm × ``chunk_size`` subjects × the rest."""
        one = {"replicate": 1, "arm": 1, "chunk": 1, "subject": self.chunk_size}
        sizes = self.sizes
        return tuple(min(one.get(d, sizes[d]), sizes[d]) for d in self.variables[name].dims)


def _word(s: str) -> str:
    """A CF flag meaning: one word of letters, digits and underscores."""
    return re.sub(r"\W+", "_", str(s)).strip("_") or "_"


def _flags(values: Sequence[int], meanings: Sequence[str], dtype) -> dict:
    return {"flag_values": np.asarray(values, dtype=dtype).tolist(),
            "flag_meanings": " ".join(_word(m) for m in meanings)}


def _attrs(units: str, long_name: str, role: str, where: str = "units", **extra) -> dict:
    return {"units": check_units(units, where), "long_name": long_name, "role": role, **extra}


def trial_layout(*, arms: Sequence[str], n_subjects: int, n_replicates: int, times, chunk_size: int,
                 subject_variables: Mapping[str, tuple[np.dtype, dict]],
                 parameters: Mapping[str, tuple[str, str]],
                 outputs: Mapping[str, tuple[str, str]],
                 observed: Mapping[str, tuple[str, str]],
                 endpoints: Sequence[Endpoint],
                 status_meanings: Mapping[int, str],
                 states: Sequence[str],
                 n_doses: int,
                 infusions: bool = False,
                 steady_state: bool = False,
                 jittered: bool = False,
                 occasion_parameters: Mapping[str, tuple[str, str]] | None = None,
                 occasion_starts: Sequence[float] = (),
                 titration: Mapping | None = None,
                 time_units: str = "h",
                 amount_units: str = "mg") -> Layout:
    """The layout of a trial results store.

    ``subject_variables``: cohort variables (covariates, random effects) ``name -> (dtype, attrs)``,
    stored as given; ``parameters``: ``name -> (units, long_name[, constraint])`` (the model's
    ``positive`` / ``nonnegative`` / ``real``, stored as the attribute ``constraint``);
    ``outputs`` (saved profiles; empty when profiles are not saved) and ``observed``
    (residual-error copies): ``name -> (units, long_name)``; ``status_meanings``: the status
    codes (``0`` ok, the engine's and the trial's, `insilico.engine.status.TRIAL_MEANINGS`) and
    their meanings, stored as ``flag_values`` / ``flag_meanings``; ``states``: the model's state
    names in order (``dose_cmt`` is the 1-based state number, NONMEM CMT); ``n_doses``: dose
    slots per subject (the most doses of any arm); ``infusions`` / ``steady_state``: whether any
    dose is an infusion / a steady-state dose (then ``dose_rate`` / ``dose_ss`` and ``dose_ii``
    are stored); ``occasion_parameters``: parameters with inter-occasion variability, ``P_occ:
    (units, long_name)``, stored over (replicate, subject, occasion), occasion k applying from
    ``occasion_starts[k]``; ``titration``: ``{"rules": [names], "n_decisions": slots, "outputs":
    {output: (units, long_name)}}`` of a trial with titration rules (variables ``titration_*``,
    stored over (replicate, arm, subject, decision)). Raises `insilico.errors.SpecError` for
    units outside the `insilico.units` grammar.
    """
    t, a, one = time_units, amount_units, DIMENSIONLESS
    rs, ras, rast = ("replicate", "subject"), ("replicate", "arm", "subject"), ("replicate", "arm", "subject", "time")
    rasd = ("replicate", "arm", "subject", "dose")
    v: dict[str, Variable] = {}
    for k, (dtype, attrs) in subject_variables.items():
        dtype = np.dtype(dtype)
        fill = np.nan if np.issubdtype(dtype, np.floating) else -1
        v[k] = Variable(rs, dtype, fill, dict(attrs))
    for k, (units, long_name, *constraint) in parameters.items():
        extra = {"constraint": constraint[0]} if constraint else {}
        v[k] = Variable(rs, np.dtype(np.float64), np.nan,
                        _attrs(units, long_name, "parameter", f"parameters.{k}", **extra))
    for k, (units, long_name) in (occasion_parameters or {}).items():
        v[k] = Variable(rs + ("occasion",), np.dtype(np.float64), np.nan,
                        _attrs(units, long_name, "parameter per occasion", "cohort.iov"))
    arm_codes = [NOT_ALLOCATED, EVERY_ARM, *range(len(arms))]
    v["allocated_arm"] = Variable(rs, np.dtype(np.int16), NOT_ALLOCATED, _attrs(
        one, "allocated arm index", "design",
        **_flags(arm_codes, ["not_allocated", "every_arm", *(f"arm_{_word(x)}" for x in arms)], np.int16)))
    v["dropout_time"] = Variable(rs, np.dtype(np.float64), np.nan,
                                 _attrs(t, "dropout time (inf: completed)", "design", "dropout_time"))
    if jittered:
        v["obs_time"] = Variable(rs + ("time",), np.dtype(np.float64), np.nan,
                                 _attrs(t, "actual sampling time", "design", "obs_time"))
    for k, (units, long_name) in outputs.items():
        v[k] = Variable(rast, np.dtype(np.float64), np.nan, _attrs(units, long_name, "output", f"outputs.{k}"))
    for k, (units, long_name) in observed.items():
        v[k] = Variable(rast, np.dtype(np.float64), np.nan,
                        _attrs(units, long_name, "observed output", f"outputs.{k}"))
    for e in endpoints:
        v[e.name] = Variable(ras, np.dtype(np.float64), np.nan,
                             _attrs(e.units, e.long_name, "endpoint", f"endpoints.{e.name}", endpoint_type=e.type))
    codes = {NOT_SIMULATED: "not simulated in this arm", **dict(sorted(status_meanings.items()))}
    v["status"] = Variable(ras, np.dtype(np.int8), NOT_SIMULATED, _attrs(
        one, "simulation status", "status", **_flags(list(codes), list(codes.values()), np.int8)))
    v["doses_taken"] = Variable(ras, np.dtype(np.int32), 0, _attrs(one, "number of doses taken", "dose"))
    v["dose_time"] = Variable(rasd, np.dtype(np.float64), np.nan,
                              _attrs(t, "time of the dose (NaN: not taken)", "dose", "dose_time"))
    v["dose_amt"] = Variable(rasd, np.dtype(np.float64), 0.0,
                             _attrs(a, "amount given (0: not taken)", "dose", "dose_amt"))
    v["dose_cmt"] = Variable(rasd, np.dtype(np.int8), 0, _attrs(
        one, "dosed compartment (NONMEM CMT: 1-based state number; 0: not taken)", "dose",
        **_flags(range(len(states) + 1), ["none", *states], np.int8)))
    if infusions:
        v["dose_rate"] = Variable(rasd, np.dtype(np.float64), 0.0,
                                  _attrs(f"{a}/{t}", "infusion rate (0: bolus)", "dose", "dose_rate"))
    if steady_state:
        v["dose_ss"] = Variable(rasd, np.dtype(np.int8), 0, _attrs(
            one, "steady-state dose (NONMEM SS)", "dose",
            **_flags([0, 1], ["not_steady_state", "steady_state"], np.int8)))
        v["dose_ii"] = Variable(rasd, np.dtype(np.float64), 0.0,
                                _attrs(t, "interdose interval of a steady-state dose (NONMEM II)", "dose", "dose_ii"))
    if titration is not None:
        rasx = ("replicate", "arm", "subject", "decision")
        rules = list(titration["rules"])
        v["titration_time"] = Variable(rasx, np.dtype(np.float64), np.nan,
                                       _attrs(t, "time of the titration decision (NaN: none)", "titration"))
        v["titration_rule"] = Variable(rasx, np.dtype(np.int8), -1, _attrs(
            one, "titration rule deciding", "titration", **_flags([-1, *range(len(rules))], ["none", *rules],
                                                                  np.int8)))
        v["titration_fired"] = Variable(rasx, np.dtype(np.int8), -1, _attrs(
            one, "titration rule condition met", "titration",
            **_flags([-1, 0, 1], ["no_decision", "condition_not_met", "condition_met"], np.int8)))
        v["titration_dose"] = Variable(rasx, np.dtype(np.float64), np.nan, _attrs(
            a, "next planned dose after the decision (0: held; NaN: none left)", "titration"))
        for k, (units, long_name) in titration["outputs"].items():
            v[f"titration_{k}"] = Variable(rasx, np.dtype(np.float64), np.nan,
                                           _attrs(units, long_name, "titration", f"outputs.{k}"))
    v["_done"] = Variable(("replicate", "arm", "chunk"), np.dtype(np.int8), 0, _attrs(
        one, "work unit completed", "record", **_flags([0, 1], ["pending", "done"], np.int8)))
    n_chunks = int(np.ceil(n_subjects / chunk_size))
    coords = {
        "replicate": (("replicate",), np.arange(n_replicates), {"units": one, "long_name": "replicate trial"}),
        "arm": (("arm",), np.array(list(arms), dtype=object), {"units": one, "long_name": "arm"}),
        "subject": (("subject",), np.arange(n_subjects), {"units": one, "long_name": "virtual subject index"}),
        "time": (("time",), np.asarray(times, float), {"units": check_units(t, "time"),
                                                       "long_name": "nominal sampling time"}),
        "dose": (("dose",), np.arange(max(int(n_doses), 1)),
                 {"units": one, "long_name": "dose slot (0-based, schedule order)"}),
        "chunk": (("chunk",), np.arange(n_chunks), {"units": one, "long_name": "work unit along subject"}),
    }
    if titration is not None:
        coords["decision"] = (("decision",), np.arange(max(int(titration["n_decisions"]), 1)),
                              {"units": one, "long_name": "titration decision slot (0-based, by time then rule)"})
    if occasion_parameters:
        coords["occasion"] = (("occasion",), np.arange(1, len(occasion_starts) + 1),
                              {"units": one, "long_name": "occasion (1-based)"})
        coords["occasion_start"] = (("occasion",), np.asarray(occasion_starts, float),
                                    {"units": check_units(t, "time"), "long_name": "time the occasion starts"})
    return Layout(v, coords, int(chunk_size))
