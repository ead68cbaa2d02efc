"""Crossover / bioequivalence trial specs (YAML) and their run into a results store.

A crossover spec has ``design: crossover`` and a ``crossover`` section instead of ``arms``::

    name: be_2x2
    seed: 2026
    n: 24
    model: {name: 2cmt_oral, parameters: {F: 1.0}}     # fixed values of parameters the cohort lacks
    cohort: ../cohorts/healthy_adults.yaml
    design: crossover
    crossover:
      sequences: [[T, R], [R, T]]
      formulations: {T: {multipliers: {F: 0.97, KA: 1.2}}, R: {}}
      dose: 100                 # mg
      times: [0, 0.5, 1, 2, 4, 8, 12, 24, 48, 72]      # h after each period's dose
      washout: 168              # h between the doses of consecutive periods
      bov: {F: 0.05}            # log-normal SD per period (CL and KA vary by the cohort's IOV)
    analysis: {metrics: [AUClast, AUCinf, Cmax], method: abe, power: {n_grid: [12, 24], n_studies: 100}}

`run_crossover` draws the cohort (`insilico.cohorts.draw_cohort`, seed and n of the spec), runs
`insilico.trials.simulate_crossover` and `insilico.stats.be_table`, and writes one Zarr store.
A cohort with inter-occasion variability (``iov``: ``P_occ``) gives each period its occasion's
value (occasion k = period k, whatever the cohort's ``iov.starts``, which place occasions on the
time axis of a parallel trial; a cohort needs at least as many occasions as periods), and the
design's ``bov`` may then not repeat those parameters. The store holds
``conc`` (subject, period, time), the endpoints (subject, period), ``treatment`` (subject, period),
``sequence`` (subject), the BE table over ``metric`` and, when asked, the power curve over ``n``;
the resolved spec in the attributes. `open_crossover` reads the store back and `be_summary`
gives its BE table as a DataFrame.
A fixed-sequence drug–drug interaction study (see `trials/ddi_study.yaml`) is one sequence, e.g.
``sequences: [[A, B]]``, with a DDI model (``model: {name: 2cmt_oral+ddi_mbi(1cmt_oral)}``) and the
perpetrator's doses added to a formulation: ``B: {doses: [{amt: 100, cmt: perp.depot, time: -336,
ii: 24, addl: 19}]}`` (times in h relative to the period's victim dose; `insilico.trials.CrossoverDesign`).
Period and treatment are confounded in it, so ``analysis.method: paired`` is required: the
geometric-mean ratio B/A with its CI from within-subject log differences
(`insilico.trials._crossover.paired_ratio_table`; ``bioequivalent`` then means the interval lies
within the no-effect ``limits``).
Power uses the cohort's typical parameter values with the log-normal ``power.iiv`` SDs
(`insilico.trials.be_power`), not the cohort draw. The endpoints are computed from observed
samples: the predictions plus the cohort's residual error (when it has one; stored as
``conc_obs``), with ``analysis.lloq`` (mg/L) as the NCA's limit of quantification when given.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import Field, model_validator

from insilico.cohorts import draw_cohort, load_cohort_spec
from insilico.config import SpecModel, apply_overrides, read_mapping, validate
from insilico.dosing import Dose, check_dose
from insilico.errors import SpecError
from insilico.models import ModelRef, resolve_model
from insilico.stats import be_table
from insilico.store import KIND_ATTR, write_whole
from insilico.trials._crossover import (
    ENDPOINTS,
    CrossoverDesign,
    Formulation,
    be_power,
    paired_ratio_table,
    simulate_crossover,
)

__all__ = ["CrossoverTrialSpec", "be_summary", "check_crossover", "is_crossover_spec", "load_crossover_spec",
           "open_crossover", "run_crossover"]

BE_COLUMNS = ("gmr_pct", "ci_lower_pct", "ci_upper_pct", "cv_within_pct", "swr", "df", "n_subjects", "n_dropped",
              "decided_by", "bioequivalent")   # the columns of `insilico.stats.be_table`, in its order
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1)]


class CoDoseSpec(SpecModel):
    """A co-administered dose of a formulation (e.g. a perpetrator's): NONMEM semantics as
    `insilico.dosing.Dose`, ``cmt`` required, ``time`` in h relative to the period's dose (negative:
    before it); ``n`` doses ``ii`` apart is shorthand for ADDL = n − 1."""

    amt: float
    cmt: str | int
    time: float = 0.0
    rate: float = 0.0
    duration: float | None = None
    ii: float = 0.0
    addl: int = 0
    n: int | None = None
    ss: int = 0

    @model_validator(mode="after")
    def _check(self):
        check_dose(amt=self.amt, time=0.0, rate=self.rate, duration=self.duration, ii=self.ii, addl=self.addl,
                   n=self.n, ss=self.ss, where="")     # time: any finite value (relative to the period's dose)
        return self

    def dose(self) -> Dose:
        return Dose(amt=self.amt, time=self.time, cmt=self.cmt, rate=self.rate, duration=self.duration, ii=self.ii,
                    addl=self.addl if self.n is None else self.n - 1, ss=self.ss)


class FormulationSpec(SpecModel):
    multipliers: dict[str, PositiveFloat] = {}
    overrides: dict[str, float] = {}
    dose: PositiveFloat | None = None
    doses: list[CoDoseSpec] = []


class CrossoverSpec(SpecModel):
    sequences: Annotated[list[Annotated[list[Name], Field(min_length=2)]], Field(min_length=1)]
    formulations: dict[str, FormulationSpec]
    dose: PositiveFloat
    times: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(min_length=3)]
    washout: PositiveFloat
    bov: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}
    period_multipliers: dict[str, list[PositiveFloat]] = {}
    output: str = "conc"

    def design(self) -> CrossoverDesign:
        return CrossoverDesign(
            sequences=[list(s) for s in self.sequences], dose=self.dose, times=list(self.times),
            washout=self.washout, bov=dict(self.bov), output=self.output,
            period_multipliers={k: list(v) for k, v in self.period_multipliers.items()},
            formulations={k: Formulation(dict(f.multipliers), dict(f.overrides), f.dose,
                                         tuple(d.dose() for d in f.doses))
                          for k, f in self.formulations.items()})


class PowerSpec(SpecModel):
    n_grid: Annotated[list[Annotated[int, Field(ge=2)]], Field(min_length=1)]
    n_studies: Annotated[int, Field(ge=1)] = 100
    iiv: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}


class BEAnalysisSpec(SpecModel):
    metrics: Annotated[list[Literal["AUClast", "AUCinf", "Cmax"]], Field(min_length=1)] = ["AUClast", "AUCinf",
                                                                                           "Cmax"]
    method: Literal["abe", "rsabe", "paired"] = "abe"
    test: Name = "T"
    reference: Name = "R"
    lloq: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    ci_level: Annotated[float, Field(gt=0, lt=1)] = 0.90
    limits: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] = [0.80, 1.25]
    power: PowerSpec | None = None


class CrossoverTrialSpec(SpecModel):
    """A crossover (BE) trial (module docstring)."""

    name: Name
    description: str = ""
    seed: Annotated[int, Field(ge=0, lt=2**63)]
    n: Annotated[int, Field(ge=2)]
    model: ModelRef
    cohort: str | dict[str, Any]
    design: Literal["crossover"]
    crossover: CrossoverSpec
    analysis: BEAnalysisSpec = BEAnalysisSpec()

    @model_validator(mode="after")
    def _consistent(self):
        used = {f for s in self.crossover.sequences for f in s}
        a = self.analysis
        for label in (a.test, a.reference):
            if label not in used:
                raise ValueError(f"analysis: formulation {label!r} is in no sequence ({sorted(used)})")
        if len(self.crossover.sequences) == 1 and a.method != "paired":
            raise ValueError("analysis.method: a fixed-sequence design (one sequence) confounds period and "
                             "treatment; analyse it with method: paired")
        if a.method == "paired" and a.power is not None:
            raise ValueError("analysis.power: power by simulation is available for methods abe and rsabe, not paired")
        return self


def load_crossover_spec(source, overrides: list[str] | None = None) -> tuple[CrossoverTrialSpec, Path]:
    """Load and validate a crossover spec (path, YAML text or mapping) with dotted ``overrides``;
    returns the spec and the folder its relative paths are resolved against."""
    data, base = read_mapping(source, "trial spec")
    return validate(CrossoverTrialSpec, apply_overrides(data, overrides or [])), base


def is_crossover_spec(source) -> bool:
    """True when the trial spec ``source`` (path, YAML text or mapping) declares ``design: crossover``
    (for a runner choosing between `run_crossover` and `insilico.trials.run`)."""
    data, _ = read_mapping(source, "trial spec")
    return data.get("design") == "crossover"


def _cohort(spec: CrossoverTrialSpec, base: Path):
    source = spec.cohort
    if isinstance(source, str):
        path = Path(source) if Path(source).is_absolute() else base / source
        if not path.exists():
            raise SpecError("cohort", f"cohort spec {str(path)!r} not found")
        return load_cohort_spec(path)
    return load_cohort_spec(source, base)


def _parameters(spec: CrossoverTrialSpec, cohort: xr.Dataset, model) -> dict[str, np.ndarray]:
    drawn = {k: cohort[k].values for k in model.parameter_names if k in cohort.data_vars}
    for k in spec.model.parameters:
        if k in drawn:
            raise SpecError(f"model.parameters.{k}", "is drawn by the cohort's parameter model")
    return model.validate_params(drawn | dict(spec.model.parameters), spec.n, where="model.parameters")


def _occasions(cohort: xr.Dataset, model, design: CrossoverDesign) -> dict[str, np.ndarray]:
    """The cohort's per-occasion parameters ``P_occ`` (inter-occasion variability), occasion k used
    in period k; `SpecError` when the cohort has fewer occasions than the design has periods."""
    occ = {p: cohort[f"{p}_occ"].transpose("subject", ...).values for p in model.parameter_names
           if f"{p}_occ" in cohort.data_vars}
    for p, v in occ.items():
        if v.shape[1] < design.n_periods:
            raise SpecError("cohort", f"the cohort's inter-occasion variability has {v.shape[1]} occasions "
                                      f"({p}_occ); the crossover has {design.n_periods} periods, one occasion each")
    return occ


@contextlib.contextmanager
def _spec_fields():
    """`CrossoverDesign` names its fields ``design.*``; in a spec they live under ``crossover``."""
    try:
        yield
    except SpecError as e:
        if e.field.startswith("design."):
            raise SpecError("crossover." + e.field[len("design."):], e.message) from None
        raise


def check_crossover(spec: CrossoverTrialSpec, base: Path):
    """The model and `CrossoverDesign` of a loaded crossover spec, checked against each other
    (`SpecError` naming the ``crossover.*`` or ``model.*`` field)."""
    model = resolve_model(spec.model, base)
    with _spec_fields():
        design = spec.crossover.design()
        design.validate(model)
    return model, design


def run_crossover(source, out=None, *, overwrite: bool = False, overrides: list[str] | None = None) -> xr.Dataset:
    """Run a crossover spec into a Zarr store (default ``results/<name>.zarr``) and return the
    dataset (module docstring for its layout)."""
    spec, base = load_crossover_spec(source, overrides)
    model, design = check_crossover(spec, base)
    cohort_spec = _cohort(spec, base)
    cohort = draw_cohort(cohort_spec, n=spec.n, seed=spec.seed)
    params = _parameters(spec, cohort, model)
    with _spec_fields():
        result = simulate_crossover(model, params, design, seed=spec.seed,
                                    occasions=_occasions(cohort, model, design),
                                    residual_error=cohort_spec.residual_error, lloq=spec.analysis.lloq)
    a = spec.analysis
    options = dict(test=a.test, reference=a.reference, method=a.method, ci_level=a.ci_level, limits=tuple(a.limits))
    if a.method == "paired":
        table = paired_ratio_table(result.endpoints, list(a.metrics), test=a.test, reference=a.reference,
                                   ci_level=a.ci_level, limits=tuple(a.limits))
    else:
        table = be_table(result.endpoints, list(a.metrics), **options)
    ds = _dataset(spec, result, table)
    if a.power is not None:
        typical = {k: float(np.exp(np.mean(np.log(v)))) for k, v in params.items() if np.all(v > 0)}
        typical |= {k: float(v[0]) for k, v in params.items() if k not in typical}
        power = be_power(model, typical, dict(a.power.iiv), design, a.power.n_grid, n_studies=a.power.n_studies,
                         seed=spec.seed, metrics=list(a.metrics), **options)
        ds = ds.assign(**{f"power_{c}": ("n", power[c].to_numpy(), {"long_name": f"BE power: {c}"})
                          for c in ("power", "ci_lower", "ci_upper")}).assign_coords(n=power.index.to_numpy())
    path = _write(ds, Path(out) if out is not None else Path("results") / f"{spec.name}.zarr", overwrite)
    ds.encoding["source"] = str(path)
    return ds


def _write(ds: xr.Dataset, path: Path, overwrite: bool) -> Path:
    """Write ``ds`` as a crossover store under the store's data-safety rules (`insilico.store.write_whole`)."""
    return write_whole(ds, path, "crossover", overwrite=overwrite)


def open_crossover(path) -> xr.Dataset:
    """Open a crossover results store (loaded). `SpecError` if ``path`` is not one."""
    path = Path(path)
    if not path.is_dir():
        raise SpecError("store", f"{path} is not a crossover results store (no such folder)")
    ds = xr.open_zarr(path, consolidated=False).load()
    if ds.attrs.get(KIND_ATTR) != "crossover":
        raise SpecError("store", f"{path} is not a crossover results store")
    return ds


def _dataset(spec: CrossoverTrialSpec, result, table: pd.DataFrame) -> xr.Dataset:
    e = result.endpoints
    n, P = result.conc.shape[:2]
    grid = {"dims": ("subject", "period")}
    data = {"conc": result.conc, **({} if result.observed is None else {"conc_obs": result.observed}),
            "treatment": (grid["dims"], e.treatment.to_numpy(str).reshape(n, P), {"long_name": "formulation given"}),
            "sequence": ("subject", e.sequence.to_numpy(str)[::P], {"long_name": "sequence"}),
            "residual_fraction": (grid["dims"], result.residual_fraction,
                                  {"units": "1", "long_name": "carry-over at the period's start / period Cmax"}),
            "status": (grid["dims"], result.status, {"long_name": "simulation status (0 = ok)"})}
    for name, (_, units, long_name) in ENDPOINTS.items():
        data[name] = (grid["dims"], e[name].to_numpy(float).reshape(n, P), {"units": units, "long_name": long_name})
    units = {"gmr_pct": "%", "ci_lower_pct": "%", "ci_upper_pct": "%", "cv_within_pct": "%", "swr": "1"}
    for col in table.columns:
        values = table[col].to_numpy()
        values = values.astype(str) if values.dtype == object and col == "decided_by" else values
        data[f"be_{col}"] = ("metric", values, {"long_name": f"bioequivalence: {col}", "units": units.get(col, "1")})
    ds = xr.Dataset(data, coords={"metric": table.index.to_numpy(str)})
    ds["be_bioequivalent"] = ds["be_bioequivalent"].astype(bool)
    ds.attrs.update({KIND_ATTR: "crossover"}, title=f"insilico crossover trial {spec.name}",
                    spec=spec.model_dump_json(), seed=spec.seed, ci_level=spec.analysis.ci_level,
                    method=spec.analysis.method)
    return ds


def be_summary(ds: xr.Dataset) -> pd.DataFrame:
    """The BE table of a crossover results store (one row per metric)."""
    if ds.attrs.get(KIND_ATTR) != "crossover":
        raise SpecError("store", "not a crossover results store")
    cols = [c for c in BE_COLUMNS if f"be_{c}" in ds]
    frame = pd.DataFrame({c: ds[f"be_{c}"].values for c in cols}, index=pd.Index(ds["metric"].values, name="metric"))
    frame.attrs["spec"] = json.loads(ds.attrs["spec"])
    return frame
