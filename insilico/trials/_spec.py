"""Trial specification (YAML) validated with pydantic.

A spec names the model, the cohort, the arms and their regimens, the design (parallel or
counterfactual), the observation schedule, dropout and adherence, the endpoints, the analysis
and execution settings. Every error is reported as one `SpecError` with the dotted field path
(``arms.1.regimen.0.amt``) and the problem.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from insilico.config import SpecModel, apply_overrides, as_tuple, read_mapping, validate
from insilico.dosing import check_dose
from insilico.engine import DEFAULT_ATOL, DEFAULT_RTOL
from insilico.errors import SpecError
from insilico.expressions import parse_expr
from insilico.models import ModelRef
from insilico.population import ResidualErrorSpec
from insilico.stats import RULE_KEYS

__all__ = ["TrialSpec", "conditional_probabilities", "cumulative_probabilities", "load_trial_spec"]

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class _Strict(SpecModel):
    """Strict types, finite floats, unknown fields refused (`insilico.config.SpecModel`)."""


class DoseSpec(_Strict):
    """One dosing record (NONMEM semantics); ``n`` doses ``ii`` apart is shorthand for ADDL = n - 1.
    The rules are `insilico.dosing.check_dose`'s (the one home of dose rules)."""

    amt: float
    time: float = 0.0
    cmt: str | int | None = None
    rate: float = 0.0
    duration: float | None = None
    ii: float = 0.0
    addl: int = 0
    n: int | None = None
    ss: int = 0
    per: str | None = None

    @model_validator(mode="after")
    def _check(self):
        check_dose(amt=self.amt, time=self.time, rate=self.rate, duration=self.duration, ii=self.ii,
                   addl=self.addl, n=self.n, ss=self.ss, where="")
        return self


TITRATION_NAMES = ("value", "dose")   # the names a titration condition may read


class ObserveSpec(_Strict):
    """What a titration rule looks at: model ``output`` at ``lag`` h before the decision time (the
    pre-dose value when a dose falls at that time), as an observation with ``error``: ``residual``
    (the cohort's residual error model, drawn from the trial's residual stream; only for ``conc``),
    ``none`` (the model prediction) or a residual error model of its own (``{type: proportional,
    proportional: 0.2}``, `insilico.population.ResidualErrorSpec`). Default: ``residual`` for
    ``conc`` when the cohort has a residual error model, else ``none``."""

    output: Annotated[str, Field(min_length=1)]
    lag: NonNegFloat = 0.0
    error: Literal["residual", "none"] | ResidualErrorSpec | None = None


class TitrationAction(_Strict):
    """What a rule does when its condition holds, to every later dose of the subject (mg, the
    regimen's amount after ``per`` scaling, as changed by earlier decisions): exactly one of
    ``scale`` (multiply), ``add`` (mg, may be negative), ``set`` (mg) — then clipped to
    [``min``, ``max``] mg — or ``hold: true`` (skip the doses until the rule's next decision)."""

    scale: PositiveFloat | None = None
    add: float | None = None
    set: NonNegFloat | None = None
    hold: bool | None = None
    min: NonNegFloat | None = None
    max: NonNegFloat | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("scale", "add", "set", "hold") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of scale, add, set or hold (got {', '.join(given) or 'none'})")
        if self.hold is False:
            raise SpecError("hold", "hold: false does nothing; give hold: true or another action")
        if self.hold and (self.min is not None or self.max is not None):
            raise SpecError("min" if self.min is not None else "max", "bounds apply to scale, add or set, "
                                                                      "not to hold")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise SpecError("max", f"max {self.max:g} mg is below min {self.min:g} mg")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("scale", "add", "set", "hold") if getattr(self, k) is not None)


class TitrationRule(_Strict):
    """A titration or adaptive dosing rule of an arm (`insilico.trials._titration` has the
    semantics). Decision times (h), exactly one of: ``at: [t, ...]``; ``at: doses`` (at each of
    the arm's nominal dose times, before the dose); ``every: Δ`` from ``start`` (default Δ) to
    ``stop`` (default: the arm's last nominal dose time). ``if``: a boolean expression of
    ``value`` (the observation, in the output's units) and ``dose`` (mg, the subject's next
    planned dose); ``then``: a `TitrationAction`."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    at: list[NonNegFloat] | Literal["doses"] | None = None
    every: PositiveFloat | None = None
    start: NonNegFloat | None = None
    stop: NonNegFloat | None = None
    observe: ObserveSpec
    condition: str = Field(alias="if")
    then: TitrationAction

    @field_validator("condition")
    @classmethod
    def _condition(cls, v):
        try:
            expr = parse_expr(v, "if")
        except SpecError as e:     # the field is this one: keep only the message
            raise ValueError(e.message) from None
        unknown = sorted(expr.names - set(TITRATION_NAMES))
        if unknown:
            raise ValueError(f"unknown name(s) {', '.join(unknown)} in {v!r}; a condition may read "
                             f"{', '.join(TITRATION_NAMES)}")
        if not expr.is_bool:
            raise ValueError(f"{v!r} is not a condition (write a comparison, e.g. 'value < 10')")
        return v

    @model_validator(mode="after")
    def _times(self):
        if (self.at is None) == (self.every is None):
            raise ValueError("give exactly one of at (times in h, or 'doses') or every (h)")
        if self.every is None and (self.start is not None or self.stop is not None):
            raise SpecError("start" if self.start is not None else "stop", "start and stop go with every")
        if isinstance(self.at, list):
            if not self.at:
                raise SpecError("at", "no decision times")
            if any(b <= a for a, b in zip(self.at, self.at[1:])):
                raise SpecError("at", "decision times must be strictly increasing")
        if self.start is not None and self.stop is not None and self.stop < self.start:
            raise SpecError("stop", f"stop {self.stop:g} h is before start {self.start:g} h")
        return self


class ArmSpec(_Strict):
    """An arm: ``regimen`` (dosing records) and optional ``titration`` rules that adapt each
    subject's later doses to its simulated observations (`TitrationRule`)."""

    name: Annotated[str, Field(min_length=1)]
    ratio: PositiveFloat = 1.0
    regimen: list[DoseSpec] = []
    titration: list[TitrationRule] = []

    @model_validator(mode="after")
    def _titration(self):
        if self.titration and not self.regimen:
            raise SpecError("titration", "the arm has no regimen to titrate")
        names = [r.name or f"rule{j}" for j, r in enumerate(self.titration)]
        for j, name in enumerate(names):
            if name in names[:j]:
                raise SpecError(f"titration.{j}.name", f"rule name {name!r} is used twice in the arm")
        return self


class TimesRange(_Strict):
    start: NonNegFloat = 0.0
    stop: PositiveFloat
    step: PositiveFloat


class ObservationSpec(_Strict):
    """Nominal sampling times (h). ``per_subject`` draws that many of them per subject (sparse
    design); ``jitter_sd`` (h) perturbs each subject's actual times."""

    times: list[NonNegFloat] | TimesRange
    per_subject: Annotated[int, Field(ge=1)] | None = None
    jitter_sd: NonNegFloat = 0.0
    outputs: list[str] | None = None


class DropoutInterval(_Strict):
    """An interval ending at ``end`` (h) and a ``probability``: conditional on reaching the
    interval (``intervals``), or of having dropped out by ``end`` (``cumulative``)."""

    end: PositiveFloat
    probability: Probability


def conditional_probabilities(cumulative) -> list[float]:
    """Interval dropout probabilities, conditional on being in the trial at each interval's start,
    that give the cumulative probabilities ``cumulative`` (C_1 <= C_2 <= ... of having dropped out
    by the end of intervals 1, 2, ...): q_k = (C_k − C_{k−1}) / (1 − C_{k−1}), C_0 = 0, so that
    1 − prod_{j<=k} (1 − q_j) = C_k. Once C_{k−1} = 1 nobody is left and q_k = 0."""
    out, prev = [], 0.0
    for c in cumulative:
        out.append(0.0 if prev >= 1.0 else (c - prev) / (1.0 - prev))
        prev = c
    return out


def cumulative_probabilities(conditional) -> list[float]:
    """The inverse of `conditional_probabilities`: C_k = 1 − prod_{j<=k} (1 − q_j)."""
    out, remaining = [], 1.0
    for q in conditional:
        remaining *= 1.0 - q
        out.append(1.0 - remaining)
    return out


class DropoutSpec(_Strict):
    """Dropout, exactly one of:

    * ``hazard`` (1/h): a constant hazard, exponential dropout times;
    * ``intervals: [{end, probability}, ...]``: in each interval (from the previous ``end``, or 0,
      to ``end``, h) a subject **still in the trial at the interval's start** drops out with
      ``probability`` (a conditional probability; the cumulative dropout by the end of interval k
      is 1 − prod_{j<=k} (1 − p_j));
    * ``cumulative: [{end, probability}, ...]``: the probability of having dropped out by ``end``
      (h), non-decreasing; converted exactly to the conditional interval probabilities above
      (`conditional_probabilities`).

    Within an interval the dropout time is uniform; after the last ``end`` (or with an empty
    list) nobody drops out.
    """

    hazard: NonNegFloat | None = None
    intervals: list[DropoutInterval] | None = None
    cumulative: list[DropoutInterval] | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("hazard", "intervals", "cumulative") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of hazard, intervals or cumulative (got {', '.join(given) or 'none'})")
        steps = self.intervals if self.intervals is not None else self.cumulative
        if steps is not None:
            ends = [i.end for i in steps]
            if ends != sorted(ends) or len(set(ends)) != len(ends):
                raise ValueError("interval ends must be strictly increasing")
        for k in range(1, len(self.cumulative or [])):
            a, b = self.cumulative[k - 1], self.cumulative[k]
            if b.probability < a.probability:
                raise SpecError(f"cumulative.{k}.probability", f"cumulative dropout probabilities must not decrease: "
                                                               f"{b.probability:g} by {b.end:g} h is below "
                                                               f"{a.probability:g} by {a.end:g} h")
        return self

    def interval_probabilities(self) -> list[tuple[float, float]]:
        """``[(end h, probability conditional on reaching the interval), ...]`` of ``intervals``
        or ``cumulative`` (converted by `conditional_probabilities`); empty for a hazard."""
        if self.intervals is not None:
            return [(i.end, i.probability) for i in self.intervals]
        if self.cumulative is not None:
            q = conditional_probabilities([i.probability for i in self.cumulative])
            return [(i.end, p) for i, p in zip(self.cumulative, q)]
        return []


class AdherenceSpec(_Strict):
    """Each dose is taken with ``probability``; with ``missed_run`` a run of ``length`` missed
    doses starts at each dose with probability ``start_probability``."""

    probability: Probability = 1.0
    missed_run: dict[str, float] | None = None

    @field_validator("missed_run")
    @classmethod
    def _run(cls, v):
        if v is None:
            return v
        if set(v) != {"start_probability", "length"}:
            raise ValueError("missed_run needs exactly start_probability and length")
        if not 0 <= v["start_probability"] <= 1 or v["length"] < 1 or int(v["length"]) != v["length"]:
            raise ValueError("start_probability must be in [0, 1] and length a positive integer")
        return v


ENDPOINT_TYPES = ("cmax", "tmax", "cmin", "trough", "auc", "value", "change_from_baseline",
                  "time_above", "time_below", "fraction_in_window", "fraction_above", "responder")


class EndpointSpec(_Strict):
    """A per-subject endpoint computed from the dense model solution.

    * ``cmax``/``tmax``/``cmin``/``auc`` of ``output`` over ``window`` [t0, t1] h;
    * ``trough``: pre-dose value at dose number ``dose`` (0-based) of the arm's regimen, or at ``at``;
    * ``value``/``change_from_baseline``: value at ``at`` (minus the value at time 0);
    * ``time_above``/``time_below`` (h) and ``fraction_above`` of ``window`` with ``output`` above/below
      ``threshold``; ``fraction_in_window``: fraction of ``window`` with ``low <= output <= high``;
    * ``responder``: 1 when endpoint ``of`` is above (``direction: above``) or below ``threshold``.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    type: Literal[ENDPOINT_TYPES]  # type: ignore[valid-type]
    output: str = "conc"
    window: as_tuple(tuple[NonNegFloat, NonNegFloat]) | None = None
    at: NonNegFloat | None = None
    dose: Annotated[int, Field(ge=0)] | None = None
    threshold: float | None = None
    low: float | None = None
    high: float | None = None
    of: str | None = None
    direction: Literal["above", "below"] = "above"

    @model_validator(mode="after")
    def _needs(self):
        t = self.type
        if self.window is not None and not self.window[1] > self.window[0]:
            raise ValueError("window must be [start, end] with end > start")
        if t in ("cmax", "tmax", "cmin", "auc", "time_above", "time_below", "fraction_above",
                 "fraction_in_window") and self.window is None:
            raise ValueError(f"a {t} endpoint needs window: [start, end] (h)")
        if t in ("value", "change_from_baseline") and self.at is None:
            raise ValueError(f"a {t} endpoint needs at: time (h)")
        if t == "trough" and (self.dose is None) == (self.at is None):
            raise ValueError("a trough endpoint needs exactly one of dose (index) or at (h)")
        if t in ("time_above", "time_below", "fraction_above", "responder") and self.threshold is None:
            raise ValueError(f"a {t} endpoint needs threshold")
        if t == "fraction_in_window" and (self.low is None or self.high is None or self.high < self.low):
            raise ValueError("fraction_in_window needs low <= high")
        if t == "responder" and self.of is None:
            raise ValueError("a responder endpoint needs of: <endpoint name>")
        return self


class SuccessSpec(_Strict):
    endpoint: str
    arm: str | None = None
    p_value_below: Probability | None = None
    estimate_above: float | None = None
    estimate_below: float | None = None
    ci_lower_above: float | None = None
    ci_upper_below: float | None = None

    @model_validator(mode="after")
    def _some_condition(self):
        if not self.rule():
            raise ValueError(f"give at least one condition ({sorted(RULE_KEYS)})")
        return self

    def rule(self) -> dict[str, float]:
        """The success conditions that are set, keyed as `insilico.stats.RULE_KEYS`."""
        return {k: getattr(self, k) for k in RULE_KEYS if getattr(self, k) is not None}


class PTASpec(_Strict):
    endpoint: str
    threshold: float
    direction: Literal["above", "below"] = "above"
    by: list[str] = ["arm"]


class SampleSizeSpec(_Strict):
    n: list[Annotated[int, Field(ge=2)]]
    resamples: Annotated[int, Field(ge=10)] = 500


class AnalysisSpec(_Strict):
    reference: str | None = None
    endpoints: list[str] | None = None
    comparison: Literal["difference", "ratio"] = "difference"
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    success: SuccessSpec | None = None
    pta: PTASpec | None = None
    sample_size: SampleSizeSpec | None = None


class ReplicateSpec(_Strict):
    """``n`` replicate trials; ``uncertainty`` gives a log-scale SD per parameter: each replicate
    multiplies that parameter by exp(N(0, sd²)) for all its subjects (population-parameter
    uncertainty).

    ``fit_uncertainty`` (only with ``cohort:`` a fit store; default true there): each replicate
    draws the fitted quantities (typical values, effects, Omega, sigma) from the fit's
    uncertainty — MVN(estimate, covariance of the estimates), or one posterior draw of a
    Bayesian fit (`insilico.trials._fit`). Not with ``uncertainty``: give one or the other.

    ``covariance`` (a file, relative to the trial spec's folder: e.g. the ``covariance.yaml`` of
    ``insilico import nonmem --cov``): the covariance of the estimates of the cohort's population
    model; each replicate draws them from MVN(the cohort's values, covariance) exactly as from a
    fit's covariance (`insilico.trials._fit.CovarianceSource`). Its names must be the cohort's
    estimated quantities; not with ``uncertainty``, ``fit_uncertainty`` or a fit-store cohort."""

    n: Annotated[int, Field(ge=1)] = 1
    uncertainty: dict[str, NonNegFloat] = {}
    fit_uncertainty: bool | None = None
    covariance: Annotated[str, Field(min_length=1)] | None = None


class ExecutionSpec(_Strict):
    chunk_size: Annotated[int, Field(ge=1)] = 4096
    method: Literal["auto", "exact", "ode"] = "auto"
    solver: Literal["tsit5", "dopri5", "dopri8", "kvaerno3", "kvaerno5"] = "tsit5"
    rtol: PositiveFloat = DEFAULT_RTOL    # the engine's defaults (one source)
    atol: PositiveFloat = DEFAULT_ATOL
    grid_step: PositiveFloat = 0.5
    save_profiles: bool = True


class TrialSpec(_Strict):
    """A trial. ``cohort``: a cohort spec (a file, relative to the trial spec's folder, or written
    inline), or a population fit store (``fit.zarr``, `insilico.fit`): the fitted population
    model with covariates resampled from the fitted subjects; a relative path not found in the
    spec's folder is looked up in the working directory."""

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    seed: Annotated[int, Field(ge=0, lt=2**63)]
    n: Annotated[int, Field(ge=1)]
    model: ModelRef
    cohort: str | dict[str, Any]
    design: Literal["parallel", "counterfactual"] = "parallel"
    arms: Annotated[list[ArmSpec], Field(min_length=1)]
    observations: ObservationSpec
    dropout: DropoutSpec | None = None
    adherence: AdherenceSpec | None = None
    endpoints: list[EndpointSpec] = []
    analysis: AnalysisSpec = AnalysisSpec()
    replicates: ReplicateSpec = ReplicateSpec()
    execution: ExecutionSpec = ExecutionSpec()

    @model_validator(mode="after")
    def _consistent(self):
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        ep = [e.name for e in self.endpoints]
        if len(set(ep)) != len(ep):
            raise ValueError(f"endpoint names must be unique, got {ep}")
        for e in self.endpoints:
            if e.type == "responder" and e.of not in ep[: ep.index(e.name)]:
                raise ValueError(f"endpoint {e.name!r}: `of` must name an earlier endpoint, got {e.of!r}")
        a = self.analysis
        if a.reference is not None and a.reference not in names:
            raise ValueError(f"analysis.reference {a.reference!r} is not an arm ({names})")
        for e in (a.endpoints or []):
            if e not in ep:
                raise ValueError(f"analysis.endpoints: unknown endpoint {e!r}")
        for sub in (a.success, a.pta):
            if sub is not None and sub.endpoint not in ep:
                raise ValueError(f"analysis: unknown endpoint {sub.endpoint!r}")
        if a.success is not None and a.reference is None:
            raise ValueError("analysis.success needs analysis.reference")
        if a.success is not None and a.success.arm is not None and a.success.arm not in names:
            raise ValueError(f"analysis.success.arm {a.success.arm!r} is not an arm")
        if a.sample_size is not None and (a.reference is None or len(self.arms) < 2):
            raise ValueError("analysis.sample_size needs a reference arm and at least two arms")
        if self.design == "counterfactual" and len(self.arms) < 2:
            raise ValueError("a counterfactual design needs at least two arms")
        return self


def load_trial_spec(source, overrides: list[str] | None = None) -> tuple[TrialSpec, Path]:
    """Load and validate a trial spec from a YAML path, YAML text or mapping. Without ``model``, the
    model is the cohort's population-model file's (`_population_model_ref`).

    Returns the spec and the directory relative paths in it are resolved against.
    ``overrides`` are dotted ``key=value`` strings (``arms.0.regimen.0.amt=200``), values parsed as YAML.
    """
    data, base = read_mapping(source, "trial spec")
    data = apply_overrides(data, overrides or [])
    if isinstance(data, dict) and "model" not in data:
        data = {**data, "model": _population_model_ref(data.get("cohort"), base)}
    return validate(TrialSpec, data), base


def _population_model_ref(cohort, base: Path) -> dict:
    """A spec without ``model``: the structural ``model`` of the population-model file its cohort is
    (``cohort: FILE`` or ``cohort: {population: FILE, ...}``; a relative path from the spec's folder,
    else the working directory), its relative ``file`` made relative to that file's folder, its fixed
    ``parameters`` left to the population file (the trial inherits them). Otherwise `SpecError`
    ``model`` (required). A ``model`` that is given must be the population file's (`prepare`)."""
    from insilico.cohorts import is_population_model

    source = cohort.get("population") if isinstance(cohort, dict) else cohort
    path = None
    if isinstance(source, str) and source.strip():
        p = Path(source)
        path = p if p.is_absolute() else (base / p if (base / p).exists() or not p.exists() else p.resolve())
    if path is None or not path.is_file() or not is_population_model(path):
        raise SpecError("model", "required (the model to simulate), unless the cohort is a population-model file "
                                 "(`cohort: {population: FILE}` or `cohort: FILE`), whose model is then taken"
                                 + ("" if path is None else f"; {path} is not a population-model file"))
    ref, _ = read_mapping(path, "population model")
    ref = ref["model"]
    if not isinstance(ref, dict):
        raise SpecError("model", f"{path}: its `model` is not a mapping (got {ref!r})")
    ref = {k: v for k, v in ref.items() if k != "parameters"}
    if isinstance(ref.get("file"), str) and not Path(ref["file"]).is_absolute():
        ref["file"] = str(path.parent / ref["file"])
    return ref
