"""Resolve and cross-check a validated spec before anything is written.

`TrialContext` holds everything a work unit needs (model, cohort spec, regimens, nominal
times, parameter sources). It is rebuilt from the spec's JSON on every worker, so work units
are pure functions of (spec, replicate, arm, chunk).

The cohort (``cohort:``) is resolved to one cohort spec from: a cohort spec (a file or inline);
a fit store (`_fit_cohort`: the fitted population model, covariates resampled from the fitted
subjects); or a population-model file, ``cohort: {population: FILE, covariates: COHORT}`` or
``cohort: FILE`` (`_population_cohort`, `insilico.cohorts.load_population_cohort`: its parameter
model with the covariates of a cohort spec). A fit or population file brings its structural model,
which must be the trial's ``model``, and its fixed ``model.parameters``, which the trial inherits.

`prepare` refuses, before any store exists: names that clash with the store's own variables and
coordinates (`reserved_names`) or with each other; a dose ``per`` a covariate the cohort lacks or
that is categorical; designs that leave an arm without subjects; specs whose memory would exceed
the machine (`estimate_resources`, `check_resources`: the peak memory of one work unit's dense
endpoint grid, the arrays the analysis holds) — each with the estimate and the field to change;
and specs under which no subject of the first work unit can be simulated in some arm
(`insilico.trials._screen.check_subjects`). Subjects invalid one by one are flagged, not refused
(`insilico.trials._screen`).
"""
from __future__ import annotations

import functools
import json
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from insilico import store
from insilico.cohorts import (
    compile_spec,
    fit_cohort_spec,
    is_population_model,
    load_cohort_spec,
    load_population_cohort,
    population_from_estimates,
)
from insilico.dosing import MAX_DOSES, Dose, Regimen
from insilico.errors import SpecError
from insilico.models import resolve_model
from insilico.trials._design import allocate, allocation_block
from insilico.trials._endpoints import POST_DOSE_OFFSETS
from insilico.trials._fit import CovarianceSource, FitSource
from insilico.trials._screen import check_subjects
from insilico.trials._spec import TrialSpec
from insilico.trials._titration import check_titration

MAX_TIMES = 1_000_000        # nominal sampling times of a trial
MAX_SUBJECTS = 2**32         # subject indices are uint32 in the random streams
MEMORY_FRACTION = 0.5        # a work unit or the analysis may use at most this fraction of the RAM


@dataclass
class TrialContext:
    spec: TrialSpec
    base: Path
    model: object
    cohort: object
    regimens: list
    nominal: np.ndarray
    outputs: list
    fixed: dict
    cohort_params: list
    covariate_names: tuple = ()     # the cohort's covariates (drawn, derived, stratum), evaluation order
    fit: FitSource | None = None    # the fit store the cohort comes from (``cohort: fit.zarr``)
    fit_draws: bool = False         # replicates draw the fitted quantities from the fit's uncertainty
    covariance: CovarianceSource | None = None   # ``replicates.covariance``: the replicates draw from it

    @property
    def n_arms(self) -> int:
        return len(self.spec.arms)

    @property
    def n_chunks(self) -> int:
        return int(np.ceil(self.spec.n / self.spec.execution.chunk_size))

    def spec_json(self) -> str:
        return self.spec.model_dump_json(by_alias=True)

    @property
    def uncertainty_source(self) -> FitSource | CovarianceSource | None:
        """What the replicates draw their population values from (`insilico.trials._fit`): the
        fit (``fit_draws``), the covariance file (``replicates.covariance``), or None."""
        return self.fit if self.fit_draws else self.covariance

    def population(self, replicate: int):
        """The parameter model (`insilico.population.PopulationModel`) of ``replicate`` when it
        draws the estimated quantities from the fit's uncertainty or ``replicates.covariance``
        (`insilico.trials._fit`); None otherwise (the cohort spec's own numbers)."""
        source = self.uncertainty_source
        if source is None:
            return None
        row = source.draws(self.spec.seed, [replicate])[0]
        return population_from_estimates(compile_spec(self.cohort).population, source.values(row))

    def residual_error(self, replicate: int):
        """The residual error of ``replicate``: the cohort's, with the replicate's SDs when it
        draws from the fit's uncertainty or ``replicates.covariance``."""
        spec = getattr(self.cohort, "residual_error", None)
        pop = self.population(replicate) if spec is not None else None
        if pop is None:
            return spec
        r = pop.residual
        return {"type": r.type, **{k: float(getattr(r, k)) for k in ("additive", "proportional", "exponential")
                                   if getattr(spec, k) is not None}}


def _regimen(arm, i) -> Regimen:
    total = sum(d.n if d.n is not None else d.addl + 1 for d in arm.regimen)
    if total > MAX_DOSES:
        raise SpecError(f"arms.{i}.regimen", f"{total} doses in the arm (at most {MAX_DOSES})")
    doses = []
    for d in arm.regimen:
        addl = (d.n - 1) if d.n is not None else d.addl
        doses.append(Dose(amt=d.amt, time=d.time, cmt=d.cmt, rate=d.rate, duration=d.duration, ii=d.ii,
                          addl=addl, ss=d.ss, per=d.per))
    reg = Regimen(tuple(doses))
    reg.validate(f"arms.{i}.regimen")
    return reg


def nominal_times(spec: TrialSpec) -> np.ndarray:
    t = spec.observations.times
    if isinstance(t, list):
        arr = np.asarray(t, float)
    else:
        if t.stop <= t.start:
            raise SpecError("observations.times.stop", "must be greater than start")
        count = math.floor((t.stop - t.start) / t.step) + 1
        if count > MAX_TIMES:
            raise SpecError("observations.times.step", f"{count} sampling times from {t.start:g} to {t.stop:g} h "
                                                       f"every {t.step:g} h (at most {MAX_TIMES})")
        arr = np.arange(t.start, t.stop + 1e-9 * t.step, t.step)
    if arr.size == 0:
        raise SpecError("observations.times", "no sampling times")
    if np.any(np.diff(arr) <= 0):
        raise SpecError("observations.times", "sampling times must be strictly increasing")
    return arr


def prepare(spec: TrialSpec, base: Path, *, screen: bool = True) -> TrialContext:
    """Resolve model and cohort and check that they fit together (raises SpecError). With
    ``screen``, also draw the first subjects and refuse a spec that leaves an arm with no valid
    subject (`insilico.trials._screen.check_subjects`)."""
    if spec.n > MAX_SUBJECTS:
        raise SpecError("n", f"at most {MAX_SUBJECTS} subjects (subject indices are 32-bit), got {spec.n}")
    model = resolve_model(spec.model, base)
    fit = None
    inherited: dict = {}    # fixed model parameters of the fit or population file the cohort comes from
    _check_covariance_field(spec)
    if isinstance(spec.cohort, str):
        cpath = _cohort_path(spec.cohort, base)
        if cpath != base / spec.cohort and not Path(spec.cohort).is_absolute():
            spec = spec.model_copy(update={"cohort": str(cpath)})   # found in the working directory
        if cpath.is_dir():
            fit, cohort = _fit_cohort(cpath, spec, model)
            inherited = fit.model.get("parameters") or {}
        elif is_population_model(cpath):
            cohort, inherited = _population_cohort(str(cpath), spec, base, model)
        else:
            cohort = _cohort_spec(cpath, base)
    elif "population" in spec.cohort:
        spec = _population_paths(spec, base)
        cohort, inherited = _population_cohort(spec.cohort, spec, base, model)
    else:
        cohort = _cohort_spec(spec.cohort, base)
    fit_draws = _replicate_source(spec, fit)
    model_parameters = {**inherited, **spec.model.parameters}
    cohort_params = [p for p in cohort.parameters if p in model.parameter_names]
    for k in spec.model.parameters:
        if k in cohort_params:
            raise SpecError(f"model.parameters.{k}", "is drawn by the cohort's parameter model; set its "
                                                     "typical value there instead")
        if k not in model.parameter_names:
            raise SpecError(f"model.parameters.{k}", f"unknown parameter for model {model.name!r}; "
                                                     f"known: {list(model.parameter_names)}")
    fixed = model.validate_params({k: v for k, v in model_parameters.items() if k not in cohort_params}
                                  | {k: 1.0 for k in cohort_params}, where="model.parameters")
    fixed = {k: float(v) for k, v in fixed.items() if k not in cohort_params}
    for k in spec.replicates.uncertainty:
        if k not in model.parameter_names:
            raise SpecError(f"replicates.uncertainty.{k}", f"unknown parameter for model {model.name!r}")
    regimens = []
    compiled = compile_spec(cohort)
    covariance = _covariance_source(spec, base, fit, compiled.population)
    cov_names = set(compiled.covariates)
    for i, arm in enumerate(spec.arms):
        reg = _regimen(arm, i)
        for j, d in enumerate(reg.doses):
            if d.per is not None and d.per not in cov_names:
                raise SpecError(f"arms.{i}.regimen.{j}.per", f"covariate {d.per!r} is not in the cohort")
            if d.per is not None and d.per in compiled.categories:
                raise SpecError(f"arms.{i}.regimen.{j}.per", f"covariate {d.per!r} is categorical "
                                                             f"({', '.join(compiled.categories[d.per])}); a dose "
                                                             "can only be per a continuous covariate (mg/kg: WT)")
            model.compartment_index(d.cmt if d.cmt is not None else model.default_dose_compartment,
                                    where=f"arms.{i}.regimen.{j}.cmt")
        regimens.append(reg)
    nominal = nominal_times(spec)
    outputs = spec.observations.outputs or list(model.output_names)
    for o in outputs:
        if o not in model.output_names:
            raise SpecError("observations.outputs", f"unknown output {o!r}; model outputs: {list(model.output_names)}")
    reserved = set(outputs) | set(model.parameter_names) | cov_names | {"status", "doses_taken", "dropout_time"}
    for i, e in enumerate(spec.endpoints):
        if e.type != "responder" and e.output not in model.output_names:
            raise SpecError(f"endpoints.{i}.output", f"unknown output {e.output!r}; model outputs: "
                                                     f"{list(model.output_names)}")
        if e.name in reserved:
            raise SpecError(f"endpoints.{i}.name", f"{e.name!r} clashes with an output, parameter or covariate")
        if e.window is not None and e.window[1] - e.window[0] > MAX_TIMES * spec.execution.grid_step:
            raise SpecError(f"endpoints.{i}.window", f"window of {e.window[1] - e.window[0]:g} h at grid_step "
                                                     f"{spec.execution.grid_step:g} h needs more than {MAX_TIMES} "
                                                     "grid points; raise execution.grid_step or shorten the window")
        if e.type == "trough" and e.dose is not None:
            for a, reg in enumerate(regimens):
                if e.dose >= len(reg.expanded()) and reg.doses:
                    raise SpecError(f"endpoints.{i}.dose", f"arm {spec.arms[a].name!r} has only "
                                                           f"{len(reg.expanded())} doses")
    check_occasions(cohort)
    ctx = TrialContext(spec, base, model, cohort, regimens, nominal, outputs, fixed, cohort_params,
                       tuple(compiled.covariates), fit, fit_draws, covariance)
    check_names(ctx)
    check_titration(ctx)
    check_allocation(spec)
    check_resources(ctx)
    if screen:
        check_subjects(ctx)
    return ctx


def check_occasions(cohort) -> None:
    """A cohort with inter-occasion variability must say when its occasions start (``iov.starts``):
    the trial applies ``P_occ`` by occasion and would otherwise have to ignore it."""
    iov = getattr(cohort, "iov", None)
    if iov is not None and iov.starts is None:
        raise SpecError("cohort.iov.starts", f"the cohort has inter-occasion variability ({iov.occasions} occasions) "
                                             "but no occasion start times; add starts: [h, ...] (one per occasion, "
                                             "e.g. [0, 168]) to its iov section, or remove the iov section")


def _cohort_path(cohort: str, base: Path, field: str = "cohort",
                 what: str = "cohort spec file, population-model file or fit store") -> Path:
    """The cohort file or fit store a spec names: absolute, or relative to the spec's folder, else
    to the working directory (``--set cohort=fit.zarr`` next to where the fit was written)."""
    p = Path(cohort)
    if p.is_absolute():
        found = p
    elif (base / p).exists() or not p.exists():
        found = base / p
    else:
        found = p.resolve()
    if not found.exists():
        raise SpecError(field, f"{what} not found: {base / p}")
    return found


def _population_paths(spec: TrialSpec, base: Path) -> TrialSpec:
    """``spec`` with the files of ``cohort: {population: FILE, covariates: FILE}`` found as
    `_cohort_path` finds a cohort: a relative path found only in the working directory is written
    absolute (so workers, which resolve against the spec's folder, find it too)."""
    cohort = dict(spec.cohort)
    for key, what in (("population", "population-model file"), ("covariates", "covariate (cohort) spec file")):
        given = cohort.get(key)
        if isinstance(given, str) and given:
            found = _cohort_path(given, base, f"cohort.{key}", what)
            if found != base / given and not Path(given).is_absolute():
                cohort[key] = str(found)
    return spec.model_copy(update={"cohort": cohort}) if cohort != spec.cohort else spec


def _population_cohort(source, spec: TrialSpec, base: Path, model) -> tuple[object, dict]:
    """The cohort of a population-model file (``cohort: population.yaml`` or ``cohort: {population:
    FILE, covariates: COHORT}``, `insilico.cohorts.load_population_cohort`) and the model parameters
    the file fixes (its ``model.parameters``). The trial must simulate the population's structural
    model (`_check_population_model`) and may not give a fixed parameter another value."""
    checked: list[SpecError] = []

    def units(ref, folder: Path) -> dict:
        try:
            _check_population_model(ref, folder, spec, base)
        except SpecError as e:
            checked.append(e)
            raise
        return {p.name: p.units for p in model.parameters}

    try:
        pc = load_population_cohort(source, base, units=units)
    except SpecError as e:
        if checked and e is checked[0]:
            raise
        raise SpecError(f"cohort.{e.field}" if e.field else "cohort", e.message) from None
    fixed = dict(pc.model.parameters)
    for k, v in spec.model.parameters.items():
        if k in fixed and float(v) != float(fixed[k]):
            raise SpecError(f"model.parameters.{k}", f"the population model {pc.population.name} fixes {k} = "
                                                     f"{fixed[k]:g}; the trial simulates its population model as "
                                                     "estimated (remove it here, or change the population file)")
    return pc.spec, fixed


def _check_population_model(ref, folder: Path, spec: TrialSpec, base: Path) -> None:
    """The trial's ``model`` must be the population file's structural ``model`` (``ref``, whose
    relative file is in ``folder``): the same built-in ``name``, ``import`` target or inline ``text``,
    or a ``file`` that is the same file or has the same bytes; else `SpecError` ``model.<key>``."""
    given = spec.model
    for key, attr in (("name", "name"), ("import", "import_"), ("text", "text")):
        want = getattr(ref, attr)
        if want is not None and getattr(given, attr) != want:
            raise SpecError(f"model.{key}", f"the cohort's population model is of model {ref.label!r}; the trial must "
                                            f"simulate that model (got {given.label!r})")
    if ref.file is not None:
        want = Path(ref.file) if Path(ref.file).is_absolute() else folder / ref.file
        got = None if given.file is None else (Path(given.file) if Path(given.file).is_absolute()
                                               else base / given.file)
        same = got is not None and (got.resolve() == want.resolve()
                                    or (got.is_file() and want.is_file() and got.read_bytes() == want.read_bytes()))
        if not same:
            raise SpecError("model.file", f"the cohort's population model is of the text model file {want}; the "
                                          f"trial must simulate that model (got {given.label!r})")


def _cohort_spec(source, base: Path):
    """A cohort spec (file or mapping) loaded and compiled; errors name ``cohort.<field>``."""
    try:
        return load_cohort_spec(source, base)
    except SpecError as e:
        raise SpecError(f"cohort.{e.field}" if e.field else "cohort", e.message) from None


def _fit_cohort(path: Path, spec: TrialSpec, model) -> tuple[FitSource, object]:
    """The fit store at ``path`` and its cohort (`insilico.cohorts.fit_cohort_spec`); the trial must
    simulate the model that was fitted."""
    from insilico.store import open_fit, recognise
    if recognise(path) != "fit":
        raise SpecError("cohort.path", f"{path} is a directory, not a cohort spec file or a fit store (written by "
                                       "`insilico fit --out`)")
    try:
        ds = open_fit(path)
    except SpecError as e:
        raise SpecError("cohort", e.message) from None
    fit = FitSource.from_dataset(ds, path)
    for key, given in (("name", spec.model.name), ("import", spec.model.import_), ("text", spec.model.text)):
        fitted = fit.model.get(key)
        if fitted is not None and given != fitted:
            raise SpecError(f"model.{key}", f"the fit {path.name} is of model {fitted!r}; the trial must simulate "
                                            f"the fitted model (got {given!r})")
    units = {p.name: p.units for p in model.parameters}
    try:
        cohort = fit_cohort_spec(ds, path, units=units)
    except SpecError as e:
        raise SpecError(f"cohort.{e.field}" if e.field != "cohort" else "cohort", e.message) from None
    return fit, cohort


def _replicate_source(spec: TrialSpec, fit: FitSource | None) -> bool:
    """Whether the replicates draw the fitted quantities from the fit's uncertainty; refuses
    ``replicates.fit_uncertainty`` without a fit, both it and ``replicates.uncertainty``, and a
    fit with neither a covariance of the estimates nor posterior draws."""
    r = spec.replicates
    if fit is None:
        if r.fit_uncertainty:
            raise SpecError("replicates.fit_uncertainty", "needs `cohort:` a fit store (insilico fit --out fit.zarr)")
        return False
    if r.fit_uncertainty is False:
        return False
    if r.uncertainty:
        raise SpecError("replicates.uncertainty", "the cohort is a fit store: the replicates' population-parameter "
                                                  "uncertainty is the fit's (covariance of the estimates or posterior "
                                                  "draws); remove replicates.uncertainty, or set "
                                                  "replicates.fit_uncertainty: false to use these log-scale SDs "
                                                  "around the estimates instead")
    if fit.uncertainty is None:
        raise SpecError("replicates.fit_uncertainty", f"the fit {fit.path.name} has no covariance of the estimates "
                                                      f"({fit.covariance_step or 'no covariance step'}) and no "
                                                      "posterior draws; set replicates.fit_uncertainty: false to "
                                                      "simulate every replicate at the estimates")
    return True


def _check_covariance_field(spec: TrialSpec) -> None:
    """``replicates.covariance`` is one source of the replicates' population-parameter
    uncertainty: refused together with ``replicates.uncertainty`` or ``replicates.fit_uncertainty``."""
    r = spec.replicates
    if r.covariance is None:
        return
    for other, given in (("uncertainty", bool(r.uncertainty)), ("fit_uncertainty", r.fit_uncertainty is not None)):
        if given:
            raise SpecError("replicates.covariance", f"give either replicates.covariance (a covariance of the "
                                                     f"estimates) or replicates.{other}, not both")


def _covariance_source(spec: TrialSpec, base: Path, fit: FitSource | None, population) -> CovarianceSource | None:
    """The covariance file ``replicates.covariance`` names (relative to the spec's folder), read
    against the cohort's population model (`CovarianceSource.from_file`); refused with a fit
    store as the cohort (its uncertainty is the fit's)."""
    given = spec.replicates.covariance
    if given is None:
        return None
    if fit is not None:
        raise SpecError("replicates.covariance", f"the cohort is the fit store {fit.path.name}, whose uncertainty "
                                                 "is the fit's (replicates.fit_uncertainty); remove "
                                                 "replicates.covariance")
    path = Path(given) if Path(given).is_absolute() else base / given
    if not path.is_file():
        raise SpecError("replicates.covariance", f"covariance file not found: {path}")
    if not population.names:
        raise SpecError("replicates.covariance", "the cohort has no parameter model (typical values, bsv, "
                                                 "residual error) whose estimates the covariance could vary")
    return CovarianceSource.from_file(path, population)


@functools.lru_cache(maxsize=1)
def reserved_names() -> frozenset[str]:
    """Names of the results store's own variables and coordinates (``time``, ``status``, ``_done``,
    ``dose_amt``, …), read from `insilico.store.trial_layout` with every optional variable on; no
    covariate, parameter, output or endpoint may take one."""
    layout = store.trial_layout(arms=["a"], n_subjects=1, n_replicates=1, times=[0.0], chunk_size=1,
                                subject_variables={}, parameters={}, outputs={}, observed={}, endpoints=[],
                                status_meanings={0: "ok"}, states=["x"], n_doses=1, infusions=True,
                                steady_state=True, jittered=True,
                                titration={"rules": ["r"], "n_decisions": 1, "outputs": {}})
    return frozenset(layout.variables) | frozenset(layout.coords)


def check_names(ctx: TrialContext) -> None:
    """SpecError when a name the trial stores (cohort variable, parameter, output, endpoint) is one
    of `reserved_names` or is used by two different things."""
    reserved = reserved_names()
    owner: dict[str, str] = {}

    def claim(name: str, field: str, what: str) -> None:
        if name in reserved:
            raise SpecError(field, f"{what} name {name!r} is reserved by the results store (reserved: "
                                   f"{', '.join(sorted(reserved))})")
        if name in owner and owner[name] != what:
            raise SpecError(field, f"{what} name {name!r} is also a {owner[name]}; names must be distinct")
        owner[name] = what

    params = set(ctx.model.parameter_names)
    for name in compile_spec(ctx.cohort).subject_variables():
        claim(name, "model.parameters" if name in params else f"cohort.covariates.{name}",
              "parameter" if name in params else "cohort variable")
    for name in ctx.model.parameter_names:
        claim(name, "model", "parameter")
    for name in ctx.outputs:
        claim(name, "observations.outputs", "output")
        claim(f"{name}_obs", "observations.outputs", "output")
    for i, e in enumerate(ctx.spec.endpoints):
        claim(e.name, f"endpoints.{i}.name", "endpoint")


def check_allocation(spec: TrialSpec) -> None:
    """Refuse a parallel design that leaves an arm without subjects (ratios that round to 0, fewer
    subjects than arms, an arm empty in some replicate when N is below one randomisation block);
    warn when the block's integer ratios differ from the spec's by more than 1 %."""
    if spec.design != "parallel":
        return
    ratios = [a.ratio for a in spec.arms]
    block = allocation_block(ratios)
    counts = np.bincount(block, minlength=len(ratios))
    achieved = counts / counts.sum()
    wanted = np.array(ratios) / sum(ratios)
    if np.any(np.abs(achieved / wanted - 1) > 0.01):
        warnings.warn(f"arms.*.ratio: ratios {ratios} are allocated as {counts.tolist()} per block of "
                      f"{len(block)} (fractions {np.round(achieved, 4).tolist()} instead of "
                      f"{np.round(wanted, 4).tolist()})", UserWarning, stacklevel=2)
    if spec.n < len(ratios):
        raise SpecError("n", f"{spec.n} subject(s) cannot fill {len(ratios)} arms in a parallel design")
    if spec.n >= len(block):
        return
    for r in range(spec.replicates.n):
        got = np.bincount(allocate(spec.seed, r, np.arange(spec.n), ratios), minlength=len(ratios))
        if np.any(got == 0):
            a = int(np.flatnonzero(got == 0)[0])
            raise SpecError("n", f"arm {spec.arms[a].name!r} gets no subjects in replicate {r}: n = {spec.n} is "
                                 f"less than one randomisation block ({len(block)} subjects for ratios "
                                 f"{[str(Fraction(x).limit_denominator(100)) for x in ratios]})")


@dataclass(frozen=True)
class Resources:
    """Estimated sizes (bytes) of a trial: ``store`` (uncompressed results store), ``unit`` (peak
    working memory of one work unit: dense endpoint grid and profiles), ``analysis`` (per-subject
    arrays the analysis holds in memory); ``grid_points`` of the densest arm's endpoint grid."""

    store: int
    unit: int
    analysis: int
    grid_points: int


def _grid_points(spec: TrialSpec, dose_times: np.ndarray, n_times: int) -> tuple[int, int]:
    """(upper bound of the points of `endpoint_grid` for doses at ``dose_times`` (h), of which from
    endpoint windows), counted without building it."""
    windowed = 0
    for e in spec.endpoints:
        if e.window is not None:
            w0, w1 = e.window
            windowed += math.ceil((w1 - w0) / spec.execution.grid_step) + 2
            near = np.count_nonzero((dose_times >= w0 - POST_DOSE_OFFSETS[-1]) & (dose_times <= w1))
            windowed += near * (1 + len(POST_DOSE_OFFSETS))
    fixed = n_times + 2 + len(dose_times) + len(spec.endpoints)
    return 2 * (fixed + windowed), 2 * windowed


def _densest(ctx: TrialContext) -> tuple[int, int]:
    """`_grid_points` of the arm with the largest endpoint grid."""
    return max(_grid_points(ctx.spec, np.array([d.time for d in reg.expanded()], float), len(ctx.nominal))
               for reg in ctx.regimens)


def estimate_resources(ctx: TrialContext) -> Resources:
    """Sizes of the trial's store, work unit and analysis (`Resources`), from the spec alone."""
    spec, model = ctx.spec, ctx.model
    R, A, N, T = spec.replicates.n, ctx.n_arms, spec.n, len(ctx.nominal)
    D = max(len(reg.expanded()) for reg in ctx.regimens)
    E = len(spec.endpoints)
    n_out = len(ctx.outputs) * (2 if getattr(ctx.cohort, "residual_error", None) is not None else 1)
    S = len(compile_spec(ctx.cohort).subject_variables()) + len(ctx.fixed) + 2
    per_arm = (T * n_out * 8 if spec.execution.save_profiles else 0) + D * 35 + E * 8 + 5
    per_subject = S * 8 + (T * 8 if spec.observations.jitter_sd > 0 else 0)
    store_bytes = R * N * (A * per_arm + per_subject)
    G, _ = _densest(ctx)
    rows = min(spec.execution.chunk_size, N)
    width = len(model.states) + len(model.output_names) + E
    unit = rows * (3 * G * width + 4 * T * n_out + 4 * D) * 8
    analysis = R * A * N * (E + 2) * 8
    return Resources(int(store_bytes), int(unit), int(analysis), int(G))


def _gib(b: float) -> str:
    return f"{b / 2**30:.3g} GiB"


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63


def check_resources(ctx: TrialContext, out: Path | None = None, *, memory: int | None = None,
                    disk: int | None = None) -> Resources:
    """`estimate_resources` and a SpecError naming the field to change when one work unit or the
    analysis needs more than MEMORY_FRACTION of the RAM (``memory`` bytes, default this machine's),
    or, with ``out``, when the uncompressed store exceeds the free disk space there (``disk``)."""
    res = estimate_resources(ctx)
    spec = ctx.spec
    memory = _memory_bytes() if memory is None else memory
    limit = MEMORY_FRACTION * memory
    if res.unit > limit:
        _, windowed = _densest(ctx)
        field = "execution.grid_step" if windowed > len(ctx.nominal) else "observations.times"
        raise SpecError(field, f"one work unit needs about {_gib(res.unit)} of memory ({res.grid_points} grid "
                               f"points x {min(spec.execution.chunk_size, spec.n)} subjects); this machine allows "
                               f"{_gib(limit)}: coarsen {field} or lower execution.chunk_size")
    if res.analysis > limit:
        field = "replicates.n" if spec.replicates.n > spec.n else "n"
        raise SpecError(field, f"the analysis needs about {_gib(res.analysis)} of memory for "
                               f"{spec.replicates.n} replicate(s) x {ctx.n_arms} arm(s) x {spec.n} subjects; this "
                               f"machine allows {_gib(limit)}")
    if out is not None:
        where = Path(out).resolve()
        while not where.exists():
            where = where.parent
        free = shutil.disk_usage(where).free if disk is None else disk
        if res.store > free:
            raise SpecError("n", f"the results store may need up to {_gib(res.store)} (uncompressed) but "
                                 f"{where} has {_gib(free)} free")
    return res


def context_from_json(spec_json: str, base: str) -> TrialContext:
    """The context of a spec already prepared (and screened) by the run, rebuilt on a worker."""
    return prepare(TrialSpec.model_validate(json.loads(spec_json)), Path(base), screen=False)
