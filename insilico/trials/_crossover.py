"""Crossover studies: the same virtual patient in every period, formulations as parameter changes,
between-occasion variability, period effects, carry-over, NCA endpoints and BE power.

Timeline and parameters
-----------------------
Period k (k = 0 … P−1) doses at ``k · washout`` h; ``washout`` is the time between the doses of
consecutive periods (sampling window + washout) and every sampling time (h after that period's
dose) lies in ``[0, washout)``. In period k subject i (base parameters p_i, e.g. a cohort's
individual parameters) receives the formulation named by its sequence, with parameters

    p_ik = (override or p_i) · multiplier · exp(κ_ik) · period_multiplier_k

applied in that order, per parameter (p_i may itself differ by period: ``occasions``, e.g. a
cohort's ``P_occ`` with inter-occasion variability, occasion k = period k): a formulation's
``overrides`` replace a value, its ``multipliers`` scale it (e.g. ``F``, ``KA``), κ_ik ~ N(0, ω²)
is the between-occasion
variability (``bov = {name: ω}``, log-normal), and ``period_multipliers = {name: [one per
period]}`` is a period effect. A formulation may also change the dose (mg; single dose into the
model's default dose compartment).

Randomness: κ_ik of parameter ``name`` comes from the key
``fold_in(fold_in(fold_in(fold_in(fold_in(PRNGKey(seed), OCCASION), replicate), i), k), crc32(name))``,
so a subject's occasions do not depend on N, on other parameters' ω or on the order of the
``bov`` mapping. Subject i follows sequence ``i mod n_sequences`` unless ``sequence_of`` is given.

Carry-over
----------
Each period is simulated from a drug-free state with its own parameters. For a linear model the
residual of earlier periods is added by superposition: the concentration in period k is
C_k(τ) + Σ_{j<k} C_j(τ + (k − j)·washout), where C_j is period j's single-dose profile with period
j's parameters. This is exact when the parameters do not change between periods; otherwise it
approximates the residual drug (which in reality is eliminated with period k's clearance) by its
elimination under period j's parameters — an error of the order of the residual itself. For a
nonlinear model superposition does not hold: each period is simulated alone, and a `SpecError`
naming ``design.washout`` is raised when the residual (computed as above) at the start of a
period exceeds 1 % of that period's Cmax. The residual fraction is returned in both cases.

Co-administered doses (drug–drug interaction studies)
-----------------------------------------------------
A formulation may add doses (``Formulation.doses``, `insilico.dosing.Dose` records naming their
compartment, e.g. ``perp.depot`` of a DDI model, `insilico.models.ddi_model`) with times in h
relative to the period's own dose: negative times give a pre-treatment (a perpetrator dosed to
steady state before the victim), ADDL/II continue it through the sampling window. They may start
no earlier than the previous period's last sample (``time >= −(washout − last sampling time)``).
A fixed-sequence DDI study is one sequence, e.g. ``[["A", "B"]]`` (victim alone, then victim +
perpetrator). Every period is still simulated from the model's initial state; the simulation of a
period with co-administered doses starts ``L`` h before its dose (``L`` = the earliest co-administered
dose time before it, over all formulations), sampling times unchanged. For a linear model
superposition carries every earlier period over as above (the co-administered doses included).
For a nonlinear model, which is simulated one period at a time, a `SpecError` naming
``design.washout`` is also raised when, after a period with co-administered doses, a state of the
model (a perpetrator amount, an enzyme level) has not returned to its initial value at the start of
a later period: |y − y0| > 1 % of max(|y0|, the state's largest value).

Endpoints (insilico.analysis.nca, linear-up/log-down): AUC0-t (``AUClast``, mg·h/L), AUCinf
(``AUCinf``, observed Clast extrapolation, mg·h/L) and ``Cmax`` (mg/L) per subject × period, in a
long table ready for `insilico.stats.average_be`, or `paired_ratio_table` for a fixed-sequence
design (period and treatment confounded).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import jax
import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from insilico.analysis.nca import nca
from insilico.batching import bucket_size
from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.models import Model, get_model
from insilico.population import apply_residual_error, residual_root_key
from insilico.stats import average_be, wilson_ci
from insilico.streams import OCCASION, POPULATION

__all__ = ["MAX_RESIDUAL_FRACTION", "CrossoverDesign", "CrossoverResult", "Formulation",
           "be_power", "occasion_kappa", "paired_ratio_table", "period_parameters", "population_parameters",
           "simulate_crossover", "williams_sequences"]

MAX_RESIDUAL_FRACTION = 0.01   # nonlinear models: largest residual at a period's start, as a fraction of its Cmax
ENDPOINTS = {"AUClast": ("auclast", "mg*h/L", "AUC from dose to the last sample"),
             "AUCinf": ("aucinf_obs", "mg*h/L", "AUC extrapolated to infinity (observed Clast)"),
             "Cmax": ("cmax", "mg/L", "maximum observed concentration")}


@dataclass(frozen=True)
class Formulation:
    """A treatment of a crossover: changes to the patient's parameters and, optionally, the dose.

    multipliers : ``{parameter: factor}`` (e.g. ``{"F": 0.95, "KA": 1.3}``).
    overrides : ``{parameter: value}`` in the parameter's units, replacing the patient's value.
    dose : mg; ``None`` uses the design's dose.
    doses : co-administered `insilico.dosing.Dose` records (e.g. a perpetrator's), each naming its
        compartment; times in h relative to the period's dose, negative before it (module docstring).
    """

    multipliers: Mapping[str, float] = field(default_factory=dict)
    overrides: Mapping[str, float] = field(default_factory=dict)
    dose: float | None = None
    doses: Sequence[Dose] = ()


@dataclass(frozen=True)
class CrossoverDesign:
    """A crossover design (module docstring for the conventions).

    sequences : formulation names per period for each sequence, e.g. ``[["T", "R"], ["R", "T"]]``
        (2×2), ``[["T", "R", "T", "R"], ["R", "T", "R", "T"]]`` (full replicate), or a Williams design.
    formulations : ``{name: Formulation}`` for every name used in ``sequences``.
    dose : mg per period (a formulation may override it).
    times : sampling times in h after each period's dose, strictly increasing, within ``[0, washout)``.
    washout : h between the doses of consecutive periods.
    bov : ``{parameter: ω}`` log-normal between-occasion SD (default none).
    period_multipliers : ``{parameter: [factor per period]}`` (default none).
    output : model output analysed (default ``"conc"``, mg/L).
    """

    sequences: Sequence[Sequence[str]]
    formulations: Mapping[str, Formulation]
    dose: float
    times: Sequence[float]
    washout: float
    bov: Mapping[str, float] = field(default_factory=dict)
    period_multipliers: Mapping[str, Sequence[float]] = field(default_factory=dict)
    output: str = "conc"

    @property
    def n_periods(self) -> int:
        return len(self.sequences[0])

    @property
    def lead_time(self) -> float:
        """h simulated before each period's dose: the earliest co-administered dose time before it (0 if none)."""
        return max([0.0] + [-float(d.time) for f in self.formulations.values() for d in f.doses])

    @property
    def has_coadministered(self) -> bool:
        return any(f.doses for f in self.formulations.values())

    @property
    def sequence_labels(self) -> list[str]:
        sep = "" if all(len(f) == 1 for f in self.formulations) else "-"
        return [sep.join(s) for s in self.sequences]

    def validate(self, model: Model) -> None:
        """Raise `SpecError` naming the ``design.*`` field of the first problem."""
        if not self.sequences or any(len(s) != len(self.sequences[0]) for s in self.sequences):
            raise SpecError("design.sequences", "give one or more sequences, all with the same number of periods")
        for i, seq in enumerate(self.sequences):
            for k, name in enumerate(seq):
                if name not in self.formulations:
                    raise SpecError(f"design.sequences.{i}.{k}", f"formulation {name!r} is not defined "
                                                                 f"(known: {sorted(self.formulations)})")
        for name, f in self.formulations.items():
            for what in ("multipliers", "overrides"):
                for p, v in getattr(f, what).items():
                    _check_parameter(model, p, f"design.formulations.{name}.{what}.{p}")
                    if not (np.isfinite(v) and (v > 0 or what == "overrides")):
                        need = "a finite number > 0" if what == "multipliers" else "a finite number"
                        raise SpecError(f"design.formulations.{name}.{what}.{p}", f"must be {need}, got {v!r}")
            if f.dose is not None and not (np.isfinite(f.dose) and f.dose > 0):
                raise SpecError(f"design.formulations.{name}.dose", f"must be > 0 mg, got {f.dose!r}")
        if not (np.isfinite(self.dose) and self.dose > 0):
            raise SpecError("design.dose", f"must be > 0 mg, got {self.dose!r}")
        if not (np.isfinite(self.washout) and self.washout > 0):
            raise SpecError("design.washout", f"must be > 0 h, got {self.washout!r}")
        t = np.asarray(self.times, dtype=float)
        if t.ndim != 1 or t.size < 3 or np.any(np.diff(t) <= 0) or t[0] < 0:
            raise SpecError("design.times", "need at least 3 strictly increasing sampling times >= 0 h")
        if t[-1] >= self.washout:
            raise SpecError("design.washout", f"the last sample ({t[-1]:g} h) must come before the next period's "
                                              f"dose ({self.washout:g} h after this one)")
        for name, f in self.formulations.items():
            for j, d in enumerate(f.doses):
                _check_coadministered(model, d, f"design.formulations.{name}.doses.{j}", -(self.washout - t[-1]))
        for p, w in self.bov.items():
            _check_parameter(model, p, f"design.bov.{p}")
            if not (np.isfinite(w) and w >= 0):
                raise SpecError(f"design.bov.{p}", f"must be an SD >= 0 (log scale), got {w!r}")
        for p, m in self.period_multipliers.items():
            _check_parameter(model, p, f"design.period_multipliers.{p}")
            m = np.asarray(m, dtype=float)
            if m.shape != (self.n_periods,) or not np.all(np.isfinite(m) & (m > 0)):
                raise SpecError(f"design.period_multipliers.{p}", f"need {self.n_periods} factors > 0, one per period")
        if self.output not in model.output_names:
            raise SpecError("design.output", f"model {model.name!r} has outputs {list(model.output_names)}")


def _check_coadministered(model: Model, d, where: str, earliest: float) -> None:
    """A co-administered dose: a `Dose` naming a dose-able compartment, in mg (no ``per``), no reset,
    starting after the previous period's last sample (``time >= earliest``)."""
    if not isinstance(d, Dose):
        raise SpecError(where, f"must be an insilico.dosing.Dose, got {type(d).__name__}")
    if not np.isfinite(d.time):
        raise SpecError(f"{where}.time", f"must be a finite number of h, got {d.time!r}")
    replace(d, time=0.0).validate(where)    # every dose rule but the time's sign (relative to the period's dose)
    if d.cmt is None:
        raise SpecError(f"{where}.cmt", "name the compartment dosed (e.g. 'perp.depot'); the period's own dose goes "
                                        "to the model's default dose compartment")
    model.compartment_index(d.cmt, f"{where}.cmt")
    if d.per is not None:
        raise SpecError(f"{where}.per", "co-administered doses are in mg: a crossover has no covariates to scale by")
    if d.reset:
        raise SpecError(f"{where}.reset", "a reset would also clear the period's own dose; not allowed here")
    if d.time < earliest:
        raise SpecError(f"{where}.time", f"starts {d.time:g} h from the period's dose, before the previous period's "
                                         f"last sample; the earliest allowed is {earliest:g} h (−(washout − last "
                                         "sampling time)): lengthen the washout or start later")


def _check_parameter(model: Model, name: str, where: str) -> None:
    if name not in model.parameter_names:
        raise SpecError(where, f"unknown parameter of model {model.name!r} (known: {list(model.parameter_names)})")


def williams_sequences(treatments: Sequence[str]) -> list[list[str]]:
    """Sequences of a Williams design for ``treatments`` (Williams 1949, *Aust J Sci Res* 2:149):
    every treatment once per period and per sequence, and every ordered pair of different
    treatments adjacent equally often (balanced for first-order carry-over). k sequences for an
    even number k of treatments, 2k (the square and its mirror image) for an odd k; k = 2 gives
    the 2×2 (TR/RT). First row 0, 1, k−1, 2, k−2, …; row i adds i modulo k."""
    k = len(treatments)
    if k < 2 or len(set(treatments)) != k:
        raise SpecError("treatments", f"need two or more distinct treatments, got {list(treatments)}")
    first = [0]
    lo, hi = 1, k - 1
    while len(first) < k:
        first.append(lo)
        lo += 1
        if len(first) < k:
            first.append(hi)
            hi -= 1
    rows = [[(j + i) % k for j in first] for i in range(k)]
    if k % 2:
        rows += [row[::-1] for row in rows]
    return [[treatments[j] for j in row] for row in rows]


@dataclass(frozen=True)
class CrossoverResult:
    """conc : DataArray (subject, period, time) of the analysed output (the model's prediction),
    carry-over included for linear models; observed : the same with residual error when one was
    given (else None): the endpoints are computed from it; endpoints : long DataFrame (subject,
    sequence, period, treatment, AUClast, AUCinf, Cmax); residual_fraction : (subject, period)
    residual at the period's start / Cmax; status : (subject, period) engine status (0 = ok;
    endpoints NaN otherwise)."""

    conc: xr.DataArray
    endpoints: pd.DataFrame
    residual_fraction: np.ndarray
    status: np.ndarray
    observed: xr.DataArray | None = None


# ------------------------------------------------------------------------------------------------
# parameters per subject × period
# ------------------------------------------------------------------------------------------------

@jax.jit
def _keyed_normals_padded(key, folds):
    def one(row):
        k = key
        for j in range(folds.shape[1]):
            k = jax.random.fold_in(k, row[j])
        return jax.random.normal(k)

    return jax.vmap(one)(folds)


def _keyed_normals(key, folds: np.ndarray) -> np.ndarray:
    """One standard normal per row of ``folds`` (n, m) uint32: ``key`` folded with the row's values
    in order. Rows are padded to a bucket size so that few shapes are compiled."""
    n = folds.shape[0]
    padded = np.zeros((bucket_size(n, 64), folds.shape[1]), dtype=np.uint32)
    padded[:n] = folds
    return np.asarray(_keyed_normals_padded(key, padded))[:n]


def _tag(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def occasion_kappa(seed: int, replicate, subjects: np.ndarray, period: int, name: str, omega: float) -> np.ndarray:
    """κ (n,) of parameter ``name`` in ``period`` for the subject indices ``subjects`` of
    ``replicate`` (scalar or (n,)), SD ``omega`` (module docstring for the keys)."""
    subjects = np.asarray(subjects, dtype=np.uint32)
    folds = np.stack([np.broadcast_to(np.asarray(replicate, dtype=np.uint32), subjects.shape), subjects,
                      np.full(subjects.shape, period, dtype=np.uint32),
                      np.full(subjects.shape, _tag(name), dtype=np.uint32)], axis=1)
    stream = jax.random.fold_in(jax.random.PRNGKey(seed), OCCASION)
    return omega * np.asarray(_keyed_normals(stream, folds))


def period_parameters(base: Mapping[str, np.ndarray], design: CrossoverDesign, formulation: str, period: int,
                      key_index: np.ndarray, *, seed: int = 0, replicate=0) -> dict[str, np.ndarray]:
    """Parameters in ``period`` under ``formulation`` of the subjects whose base values are
    ``base`` (arrays (n,)) and whose κ key indices are ``key_index`` (n,): override, multiplier,
    exp(κ), period multiplier (module docstring)."""
    f = design.formulations[formulation]
    out = {}
    for name, value in base.items():
        v = np.full(len(key_index), f.overrides[name], dtype=float) if name in f.overrides else np.array(value, float)
        v = v * f.multipliers.get(name, 1.0)
        if design.bov.get(name, 0.0) > 0:
            v = v * np.exp(occasion_kappa(seed, replicate, key_index, period, name, design.bov[name]))
        if name in design.period_multipliers:
            v = v * float(design.period_multipliers[name][period])
        out[name] = v
    return out


def _grid(times: np.ndarray, washout: float, n_periods: int):
    """Simulation grid covering every period's samples shifted by 0 … P−1 washouts and the later
    periods' dose times; index arrays into it (shift m → positions of ``times + m·washout``)."""
    shifted = [times + m * washout for m in range(n_periods)]
    starts = np.arange(1, n_periods) * washout
    grid = np.unique(np.concatenate(shifted + [starts]))
    return grid, [np.searchsorted(grid, s) for s in shifted], np.searchsorted(grid, starts)


# ------------------------------------------------------------------------------------------------
# simulation
# ------------------------------------------------------------------------------------------------

def simulate_crossover(model: Model | str, params, design: CrossoverDesign, *, seed: int = 0, replicate=0,
                       sequence_of: Sequence[int] | None = None, subject_index: Sequence[int] | None = None,
                       occasions: Mapping[str, np.ndarray] | None = None,
                       chunk_size: int | None = None, residual_error=None, lloq: float | None = None
                       ) -> CrossoverResult:
    """Simulate a crossover study (module docstring for the conventions).

    Parameters
    ----------
    model : a `Model` or a built-in name.
    params : ``{name: scalar or (N,) array}`` or an xarray Dataset over ``subject`` (a cohort): the
        virtual patients' parameters, the same patient in every period.
    design : `CrossoverDesign`.
    seed, replicate : fold into the between-occasion keys; ``replicate`` may be one per subject
        (several simulated studies in one engine call).
    sequence_of : sequence index per subject (default ``i mod n_sequences``).
    subject_index : the subjects' indices for the κ keys (default 0..N−1); pass global indices when
        simulating a subset so each patient keeps its occasions.
    occasions : ``{parameter: (N, ≥ P) array}``, the patient's value in each period (e.g. a cohort's
        ``P_occ`` with inter-occasion variability: occasion k = period k); it replaces ``params``'
        value of that parameter and excludes ``design.bov`` on it.
    chunk_size : passed to `insilico.engine.simulate`.
    residual_error : a residual error model (`insilico.population.ResidualErrorSpec` or its mapping,
        e.g. a cohort's ``residual_error``): the samples the endpoints are computed from are the
        predictions plus this error, drawn per (replicate, subject, sample) from the residual stream
        (`insilico.population.apply_residual_error`; sample index = period · T + time index).
    lloq : lower limit of quantification (mg/L) of the observed samples; BLQ samples follow NCA's
        default rule (`insilico.analysis.nca`, "zero-then-drop"). Without it every value is used.
    """
    model = get_model(model) if isinstance(model, str) else model
    design.validate(model)
    base = _base_parameters(model, params)
    n, P = len(next(iter(base.values()))), design.n_periods
    seq_of = np.arange(n) % len(design.sequences) if sequence_of is None else np.asarray(sequence_of, dtype=int)
    if seq_of.shape != (n,) or np.any((seq_of < 0) | (seq_of >= len(design.sequences))):
        raise SpecError("sequence_of", f"need {n} sequence indices in 0..{len(design.sequences) - 1}")
    idx = np.arange(n) if subject_index is None else np.asarray(subject_index, dtype=int)
    if idx.shape != (n,):
        raise SpecError("subject_index", f"need {n} subject indices")
    per_period = _occasion_values(model, occasions or {}, design, n)

    times = np.asarray(design.times, dtype=float)
    grid, at_shift, at_start = _grid(times, float(design.washout), P)
    reps = np.broadcast_to(np.asarray(replicate, dtype=int), (n,))
    check_states = design.has_coadministered and not model.is_linear
    profile, status, states = _simulate_periods(model, base, per_period, design, seq_of, idx, grid, seed, reps,
                                                chunk_size, check_states)  # (n, P, G)
    if check_states:
        _refuse_state_carry_over(model, states, at_start, design, seq_of)
    conc, carried, residual = _superpose(profile, at_shift, at_start)
    cmax = np.nanmax(conc + carried, axis=2) if model.is_linear else np.nanmax(conc, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = residual / cmax
    if model.is_linear:
        conc = conc + carried
    else:
        _refuse_carry_over(fraction, design)
    conc[status != 0] = np.nan
    da = xr.DataArray(conc, dims=("subject", "period", "time"),
                      coords={"subject": idx, "period": np.arange(1, P + 1), "time": times},
                      attrs={"units": _output_units(model, design.output), "long_name": f"{design.output} in period",
                             "comment": "time in h after each period's dose"})
    da["time"].attrs.update(units="h", long_name="time after the period's dose")
    observed = None
    if residual_error is not None:
        observed = da.copy(data=_observe(conc, residual_error, seed, reps, idx))
        observed.attrs["long_name"] = f"observed {design.output} in period (with residual error)"
    analysed = da if observed is None else observed
    return CrossoverResult(conc=da, endpoints=_endpoints(analysed, design, seq_of, lloq),
                           residual_fraction=fraction, status=status, observed=observed)


def _observe(conc: np.ndarray, error, seed: int, reps: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``conc`` (n, P, T) plus residual error, keyed by (seed, replicate) and then (subject, sample)."""
    n, P, T = conc.shape
    out = np.full(conc.shape, np.nan)
    ok = np.isfinite(conc)
    for r in np.unique(reps):
        rows = np.flatnonzero(reps == r)
        key = jax.random.fold_in(residual_root_key(seed), int(r))
        noisy = apply_residual_error(np.where(ok[rows], conc[rows], 0.0).reshape(len(rows), P * T), error, key,
                                     idx[rows])
        out[rows] = np.asarray(noisy).reshape(len(rows), P, T)
    return np.where(ok, out, np.nan)


def _superpose(profile: np.ndarray, at_shift: list[np.ndarray], at_start: np.ndarray):
    """From single-dose profiles (n, P, G) on the grid of `_grid`: each period's own profile at its
    sampling times (n, P, T), the sum of earlier periods' profiles at those times (n, P, T) and at
    the period's dose time (n, P)."""
    n, P, _ = profile.shape
    own = np.stack([profile[:, k, at_shift[0]] for k in range(P)], axis=1)
    carried = np.zeros_like(own)
    residual = np.zeros((n, P))
    for k in range(1, P):
        for j in range(k):
            carried[:, k] += profile[:, j, at_shift[k - j]]
            residual[:, k] += profile[:, j, at_start[k - j - 1]]
    return own, carried, residual


def _output_units(model: Model, name: str) -> str:
    return next(o.units for o in model.outputs if o.name == name)


def _base_parameters(model: Model, params) -> dict[str, np.ndarray]:
    if isinstance(params, xr.Dataset):
        params = {k: params[k].values for k in model.parameter_names if k in params}
    if not isinstance(params, Mapping):
        raise SpecError("parameters", "give a mapping {name: values} or a cohort Dataset")
    sizes = {np.size(v) for v in params.values() if np.ndim(v) == 1}
    if len(sizes) > 1:
        raise SpecError("parameters", f"parameter arrays of different lengths {sorted(sizes)}")
    return model.validate_params(params, sizes.pop() if sizes else 1)


def _occasion_values(model: Model, occasions: Mapping, design: CrossoverDesign, n: int) -> dict[str, np.ndarray]:
    """Checked ``occasions`` as {parameter: (n, P) float array}."""
    out = {}
    for name, values in occasions.items():
        _check_parameter(model, name, f"occasions.{name}")
        v = np.asarray(values, dtype=float)
        if v.ndim != 2 or v.shape[0] != n or v.shape[1] < design.n_periods:
            raise SpecError(f"occasions.{name}", f"need (subjects, occasions) values with {n} subjects and at least "
                                                 f"{design.n_periods} occasions (one per period), got {v.shape}")
        if design.bov.get(name, 0.0) > 0:
            raise SpecError(f"design.bov.{name}", "the patients' per-occasion values already vary between periods; "
                                                  "drop the design's between-occasion SD of this parameter")
        model.parameter(name).check(v, f"occasions.{name}")
        out[name] = v[:, :design.n_periods]
    return out


def _simulate_periods(model, base, per_period, design, seq_of, idx, grid, seed, replicate, chunk_size,
                      keep_states=False):
    """Single-dose profiles (n, P, G) on ``grid`` (h after each period's dose) of every subject ×
    period (one engine call over subject-major rows), the engine status (n, P) and, with
    ``keep_states``, the states (n, P, G, S) and initial states (n, P, S) (else None)."""
    n, P = len(seq_of), design.n_periods
    rows = {name: np.empty((n, P)) for name in base}
    for k in range(P):
        for s, seq in enumerate(design.sequences):
            mine = np.flatnonzero(seq_of == s)
            values = {name: (per_period[name][mine, k] if name in per_period else v[mine]) for name, v in base.items()}
            p = period_parameters(values, design, seq[k], k, idx[mine], seed=seed, replicate=replicate[mine])
            for name in base:
                rows[name][mine, k] = p[name]
    doses = _doses(design, seq_of)
    flat = {name: v.reshape(-1) for name, v in rows.items()}
    amounts = np.unique(doses)
    lead = design.lead_time
    if design.has_coadministered:
        regimen = [Regimen.single(float(doses[i, k]), lead)
                   + Regimen(tuple(replace(d, time=d.time + lead)
                                   for d in design.formulations[design.sequences[seq_of[i]][k]].doses))
                   for i in range(n) for k in range(P)]
    elif amounts.size == 1:
        regimen = Regimen.single(float(amounts[0]))
    else:
        regimen = [Regimen.single(float(a)) for a in doses.reshape(-1)]
    ds = simulate(model, flat, regimen, grid + lead, chunk_size=chunk_size, keep_states=keep_states)
    states = None
    if keep_states:
        y0 = np.asarray(jax.vmap(model.y0)(model.validate_params(flat, n * P)))
        states = (ds["amount"].transpose("subject", "time", "state").values.reshape(n, P, len(grid), -1),
                  y0.reshape(n, P, -1))
    return ds[design.output].values.reshape(n, P, -1), ds["status"].values.reshape(n, P), states


def _doses(design: CrossoverDesign, seq_of: np.ndarray) -> np.ndarray:
    """Dose (mg) of every subject × period: the formulation's, else the design's."""
    per_sequence = np.array([[design.dose if design.formulations[f].dose is None else design.formulations[f].dose
                              for f in seq] for seq in design.sequences], dtype=float)
    return per_sequence[seq_of]


def _refuse_state_carry_over(model: Model, states, at_start: np.ndarray, design: CrossoverDesign,
                             seq_of: np.ndarray) -> None:
    """`SpecError` on ``design.washout`` when, after a period with co-administered doses, a state has
    not returned to its initial value at a later period's start (module docstring)."""
    y, y0 = states                                                   # (n, P, G, S), (n, P, S)
    P = y.shape[1]
    scale = np.maximum(np.abs(y0), np.nan_to_num(np.abs(y)).max(axis=2))     # (n, P, S)
    for j in range(P - 1):
        for s, seq in enumerate(design.sequences):
            rows = np.flatnonzero(seq_of == s)
            if not design.formulations[seq[j]].doses or rows.size == 0:
                continue
            for k in range(j + 1, P):
                with np.errstate(invalid="ignore", divide="ignore"):
                    dev = np.abs(y[rows, j, at_start[k - j - 1]] - y0[rows, j]) / scale[rows, j]
                dev = np.where(np.isfinite(dev), dev, 0.0)
                if dev.max() > MAX_RESIDUAL_FRACTION:
                    r, st = np.unravel_index(np.argmax(dev), dev.shape)
                    raise SpecError("design.washout", f"after the co-administered doses of period {j + 1} "
                                                      f"({seq[j]!r}), state {model.states[st]!r} of subject "
                                                      f"{rows[r]} is {100 * dev.max():.3g} % away from its initial "
                                                      f"value at the start of period {k + 1} (limit "
                                                      f"{100 * MAX_RESIDUAL_FRACTION:g} %); each period is simulated"
                                                      f" from the initial state: lengthen the washout "
                                                      f"({design.washout:g} h) or stop those doses earlier")


def _refuse_carry_over(fraction: np.ndarray, design: CrossoverDesign) -> None:
    worst = np.nanmax(fraction) if np.isfinite(fraction).any() else 0.0
    if worst > MAX_RESIDUAL_FRACTION:
        s, k = np.unravel_index(np.nanargmax(fraction), fraction.shape)
        raise SpecError("design.washout", f"the model is nonlinear, so carry-over cannot be superposed, and subject "
                                          f"{s} starts period {k + 1} with {100 * worst:.3g} % of that period's Cmax "
                                          f"(limit {100 * MAX_RESIDUAL_FRACTION:g} %); lengthen the washout "
                                          f"({design.washout:g} h)")


def _endpoints(conc: xr.DataArray, design: CrossoverDesign, seq_of: np.ndarray, lloq: float | None = None
               ) -> pd.DataFrame:
    """NCA per subject × period in the long layout of `insilico.stats.average_be`."""
    n, P, _ = conc.shape
    res = nca(conc["time"].values, conc.values.reshape(n * P, -1), _doses(design, seq_of).reshape(-1), lloq=lloq)
    labels = design.sequence_labels
    table = pd.DataFrame({
        "subject": np.repeat(conc["subject"].values, P),
        "sequence": np.repeat([labels[s] for s in seq_of], P),
        "period": np.tile(np.arange(1, P + 1), n),
        "treatment": [design.sequences[s][k] for s in seq_of for k in range(P)],
    })
    for name, (column, _, _) in ENDPOINTS.items():
        table[name] = res[column].to_numpy(float)
    table.attrs["units"] = {name: u for name, (_, u, _) in ENDPOINTS.items()}
    table.attrs["long_name"] = {name: ln for name, (_, _, ln) in ENDPOINTS.items()}
    return table


# ------------------------------------------------------------------------------------------------
# fixed-sequence analysis
# ------------------------------------------------------------------------------------------------

def paired_ratio_table(data: pd.DataFrame, metrics: Sequence[str] = ("AUClast", "AUCinf", "Cmax"), *,
                       test: str = "T", reference: str = "R", ci_level: float = 0.90,
                       limits: tuple[float, float] = (0.80, 1.25)) -> pd.DataFrame:
    """Geometric-mean ratio test/reference of each metric with its ``ci_level`` interval from the
    within-subject differences of ln(metric): the analysis of a fixed-sequence study (a DDI study:
    victim alone, then victim + perpetrator, in every subject), where period and treatment are
    confounded so the crossover ANOVA of `insilico.stats.average_be` cannot separate them.

    d_i = mean ln(metric) on ``test`` − mean ln(metric) on ``reference`` of subject i (subjects with
    both; others counted in ``n_dropped``); ln GMR = mean d, SE = SD(d)/√n, df = n − 1, interval
    exp(mean d ± t_{df, (1 + ci_level)/2}·SE) (paired t; FDA guidance *Clinical Drug Interaction
    Studies* (2020): the AUC and Cmax ratios with their 90 % CIs, compared with no-effect
    boundaries, default 80–125 %). ``cv_within_pct`` = 100·sqrt(exp(SD(d)²/2) − 1) (equal within-subject
    variances); ``bioequivalent`` = the interval lies within ``limits`` (no effect). Columns and
    index as `insilico.stats.be_table` (``swr`` NaN, ``decided_by`` ``"paired"``).
    """
    if not 0.0 < ci_level < 1.0:
        raise SpecError("ci_level", f"must be within (0, 1), got {ci_level!r}")
    if not 0.0 < limits[0] < 1.0 < limits[1]:
        raise SpecError("limits", f"must be (lower < 1 < upper) ratios, got {limits!r}")
    rows = []
    for metric in metrics:
        if metric not in data.columns:
            raise SpecError("metric", f"column {metric!r} not in the data")
        values = pd.to_numeric(data[metric], errors="coerce").to_numpy(float)
        if np.any(values[np.isfinite(values)] <= 0) or np.any(np.isinf(values)):
            raise SpecError(metric, "must be > 0 and finite (NaN marks a missing observation)")
        frame = pd.DataFrame({"subject": data["subject"].to_numpy(), "treatment": data["treatment"].astype(str),
                              "y": np.log(values)}).dropna()
        means = frame.groupby(["subject", "treatment"])["y"].mean().unstack()
        for label, role in ((test, "test"), (reference, "reference")):
            if str(label) not in means.columns:
                raise SpecError(role, f"no observation has treatment {label!r}")
        d = (means[str(test)] - means[str(reference)]).dropna().to_numpy(float)
        n_all = data["subject"].nunique()
        if d.size < 2:
            raise SpecError(metric, f"need 2 or more subjects with both {test!r} and {reference!r}, got {d.size}")
        est, sd = float(d.mean()), float(d.std(ddof=1))
        q = float(special.stdtrit(d.size - 1, 0.5 + ci_level / 2.0))
        lo, hi = math.exp(est - q * sd / math.sqrt(d.size)), math.exp(est + q * sd / math.sqrt(d.size))
        rows.append({"metric": metric, "gmr_pct": 100 * math.exp(est), "ci_lower_pct": 100 * lo,
                     "ci_upper_pct": 100 * hi, "cv_within_pct": 100 * math.sqrt(math.expm1(sd * sd / 2.0)),
                     "swr": math.nan, "df": float(d.size - 1), "n_subjects": int(d.size),
                     "n_dropped": int(n_all - d.size), "decided_by": "paired",
                     "bioequivalent": bool(limits[0] <= lo and hi <= limits[1])})
    return pd.DataFrame(rows).set_index("metric")


# ------------------------------------------------------------------------------------------------
# power by simulation
# ------------------------------------------------------------------------------------------------

def population_parameters(typical: Mapping[str, float], iiv: Mapping[str, float], n: int, *, seed: int = 0,
                          replicate: int = 0) -> dict[str, np.ndarray]:
    """``n`` virtual patients: p = typical · exp(η), η ~ N(0, ω²) per parameter in ``iiv`` (SD on the
    log scale), η of patient i from
    ``fold_in(fold_in(fold_in(fold_in(PRNGKey(seed), POPULATION), replicate), i), crc32(name))``."""
    stream = jax.random.fold_in(jax.random.PRNGKey(seed), POPULATION)
    out = {k: np.full(n, float(v)) for k, v in typical.items()}
    for name, omega in iiv.items():
        if name not in typical:
            raise SpecError(f"iiv.{name}", "has no typical value")
        folds = np.stack([np.full(n, replicate, dtype=np.uint32), np.arange(n, dtype=np.uint32),
                          np.full(n, _tag(name), dtype=np.uint32)], axis=1)
        out[name] = out[name] * np.exp(float(omega) * np.asarray(_keyed_normals(stream, folds)))
    return out


def be_power(model: Model | str, typical: Mapping[str, float], iiv: Mapping[str, float], design: CrossoverDesign,
             n_grid: Sequence[int], *, n_studies: int = 200, seed: int = 0,
             metrics: Sequence[str] = ("AUClast", "Cmax"),
             test: str = "T", reference: str = "R", method: str = "abe", ci_level: float = 0.90,
             limits: tuple[float, float] = (0.80, 1.25), alpha: float = 0.05) -> pd.DataFrame:
    """Power of a BE study vs N: the fraction of ``n_studies`` simulated studies concluding BE on
    every metric in ``metrics``, with its Wilson (1 − ``alpha``) interval. ``typical`` and ``iiv``:
    see `population_parameters`; ``test`` … ``limits``: the BE analysis (`insilico.stats.average_be`).

    Study r draws max(n_grid) virtual patients (`population_parameters`, replicate r) and their
    occasions; the study of size n uses its first n patients (nested, so power curves are smooth in
    n). Returns a DataFrame indexed by ``n``: ``n_be``, ``power``, ``ci_lower``, ``ci_upper``.
    """
    model = get_model(model) if isinstance(model, str) else model
    n_grid = [int(n) for n in n_grid]
    if not n_grid or min(n_grid) < 2 * len(design.sequences):
        raise SpecError("n_grid", f"need sizes of at least {2 * len(design.sequences)} (two per sequence)")
    if int(n_studies) < 1:
        raise SpecError("n_studies", "must be >= 1")
    n_max, n_studies = max(n_grid), int(n_studies)
    studies = [population_parameters(typical, iiv, n_max, seed=seed, replicate=r) for r in range(n_studies)]
    params = {k: np.concatenate([p[k] for p in studies]) for k in studies[0]}
    result = simulate_crossover(model, params, design, seed=seed, replicate=np.repeat(np.arange(n_studies), n_max),
                                sequence_of=np.tile(np.arange(n_max) % len(design.sequences), n_studies),
                                subject_index=np.tile(np.arange(n_max), n_studies))
    table = result.endpoints.assign(replicate=np.repeat(np.arange(n_studies), n_max * design.n_periods))
    wins = np.zeros(len(n_grid), dtype=int)
    for _, study in table.groupby("replicate"):
        for g, n in enumerate(n_grid):
            sub = study[study.subject < n]
            wins[g] += all(average_be(sub, m, test=test, reference=reference, method=method, ci_level=ci_level,
                                      limits=limits).bioequivalent for m in metrics)
    lo, hi = wilson_ci(wins, np.full(len(n_grid), n_studies), alpha=alpha)
    return pd.DataFrame({"n": n_grid, "n_be": wins, "power": wins / n_studies, "ci_lower": lo, "ci_upper": hi}
                        ).set_index("n")
