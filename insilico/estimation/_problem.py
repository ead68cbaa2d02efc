"""An estimation problem: population model + structural model + data, as padded arrays.

`build_problem` checks the data against the model (covariates the effects use, doses into
existing compartments, observations of the fitted output) and turns them into per-subject
arrays (subjects x doses, subjects x observation times) that the vmapped objective reads.
Subjects that cannot be evaluated for a reason of their own (a missing or invalid covariate
value) are excluded and listed in ``problem.excluded`` with the reason; they never abort a fit.

Records: an observation is fitted when EVID = 0, MDV = 0 and DV is a number. With a ``DVID``
column each record measures the output ``outputs[DVID]`` of the population model. A record is
below the limit of quantification (BLQ) when ``BLQ`` = 1 or ``DV < LLOQ``; its limit is the
record's ``LLOQ``, or its DV when the data have no LLOQ value for it (so a BLQ record needs a
DV: the limit, or any value below a given LLOQ). ``estimate.blq`` m1 drops BLQ records, m3 keeps
them as censored (`insilico.estimation._likelihood`).

Time-varying covariates: a covariate the effects use whose value changes within an ID (any record,
EVID 0 to 4) drives the individual parameters between records. Each subject's covariate values
become a piecewise-constant schedule (``covariate_interpolation`` of the population model, as in
`insilico.engine.ParameterSchedule`):

* ``locf`` (the default; last observation carried forward): a record's value holds from that
  record's time until the next record's; a dose or an observation exactly at a record's time takes
  that record's value;
* ``nocb`` (next observation carried backward): a record's value holds back to the previous record,
  which is how NONMEM's PREDPP advances the system (it evaluates PK with each event record and
  advances to that record's time with those values; NONMEM Users Guide Part VI) and mrgsolve's
  default ``nocb = TRUE``.

The individual parameters of each interval come from the same forward map with the subject's one
eta (`insilico.population.individual_parameters`), and the solve is piecewise with the change times
as interval ends (`insilico.engine.solve_subject` with ``change_t``). Only times where a value
changes are kept. A subject whose time-varying covariate is missing or invalid on any record is
excluded, naming the record. When no covariate the effects use changes within an ID the problem
holds one value per subject and the solve is the time-invariant one (the same numbers as without
this feature); when one does, every subject of the problem takes the piecewise solve (a subject
whose values are constant then agrees with the time-invariant solve to rounding, not bit for bit).

Inter-occasion variability (IOV; Karlsson & Sheiner, J Pharmacokinet Biopharm 1993;21:735): the random
effects of a subject are one vector, NONMEM's way: ``[eta (n_bsv), kappa_1 (n_iov), ..., kappa_K
(n_iov)]``, the kappas of occasion k in the order of the ``iov`` parameters, with the block-diagonal
prior ``diag(Omega, Omega_IOV, ..., Omega_IOV)`` (one Omega_IOV repeated for every occasion: NONMEM's
``$OMEGA BLOCK(n) SAME``; `random_effects_omega`). Parameter P with IOV is ``TV exp(eta + kappa_k)``
in occasion k (`insilico.population.individual_parameters`, its ``P_occ``). Occasions are intervals of
the piecewise solve, like covariate changes: from the data's ``OCC`` column (an integer 1..K on every
record of a fitted subject, else a `SpecError` naming the row; its value between records follows
``covariate_interpolation``) or, without an OCC column, from ``iov.starts`` (occasion k from
``starts[k]`` h on the data's TIME clock; the first also before its start; a point exactly at a start
belongs to the new occasion, unless time-varying covariates with ``nocb`` set that convention for every
change). A problem with IOV always takes the piecewise solve; ``problem.occ`` (N, C+1) holds the
occasion index (0-based) of each interval. A subject's kappas of occasions it never visits stay at 0
and add exactly 0 to its Laplace / FOCE-I objective (their integral is 1).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

from insilico.dosing import NonmemData, event_slots, read_nonmem
from insilico.engine import SolverOptions, solve_subject
from insilico.errors import SpecError
from insilico.estimation._params import ParameterVector
from insilico.estimation._spec import PopulationModelSpec
from insilico.models import resolve_model
from insilico.population import compile_population, individual_parameters

__all__ = ["Problem", "build_problem", "resolve"]


@dataclass(frozen=True)
class Problem:
    """Everything the objective needs. Arrays are over the included subjects.

    ids : subject IDs (N,); ``excluded``: {ID: reason} of subjects left out.
    data_covariates : every covariate column of the data (first value per subject), indexed by ID.
    covariates : {name: (N,) float or int codes} for the covariates the effects use.
    dose : (time, amt, rate, cmt, ss, ii), each (N, E).
    times, y, mask : (N, T) observation times (h), DV and True where DV is a fitted observation
        (a censored record's y is its limit).
    fixed : model parameters not in the population model ({name: value}).
    change_t : (N, C) covariate change times (h) of every subject when a covariate the effects use
        changes within an ID; then each ``covariates`` array is (N, C+1), value ``j`` in effect from
        change ``j-1`` to change ``j`` (module docstring). None otherwise. ``nocb``: the convention
        (static) for a point exactly at a change.
    occ : (N, C+1) int occasion index (0-based) of each interval of ``change_t`` with inter-occasion
        variability, else None; ``occasion_source``: where the occasions came from (``OCC`` column or
        ``iov.starts``).
    outputs : the observed model outputs (the primary first; `PopulationModelSpec.fitted_outputs`).
    records : per-record arrays (N, T), present only when needed: ``out`` (index into
        ``outputs``, several outputs), ``cens`` and ``lloq`` (censored records: none under M1, so
        that M1 and M3 fits of one data set share their compiled functions).
    blq : the BLQ handling, ``m1``, ``m3`` or ``""`` (no BLQ information in the data);
        ``n_blq``: the number of BLQ records (dropped under m1, censored under m3).
    """

    spec: PopulationModelSpec
    model: object
    params: ParameterVector
    ids: np.ndarray
    covariates: dict
    dose: tuple
    times: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    fixed: dict
    method: str
    solver: SolverOptions
    has_infusion: bool
    has_ss: int    # static: `insilico.dosing.event_slots` of the dose table (0: no SS, no reset)
    data_sha256: str = ""
    excluded: dict = field(default_factory=dict)
    data_covariates: pd.DataFrame | None = None    # every covariate column of the data, one row per subject
    outputs: tuple = ()
    records: dict = field(default_factory=dict)
    blq: str = ""
    n_blq: int = 0
    change_t: np.ndarray | None = None
    nocb: bool = False
    occ: np.ndarray | None = None
    occasion_source: str = ""

    @property
    def n_subjects(self) -> int:
        return int(self.ids.size)

    @property
    def n_observations(self) -> int:
        return int(self.mask.sum())

    @property
    def n_bsv(self) -> int:
        """Number of etas (between-subject random effects)."""
        return len(self.params.template.bsv_names)

    @property
    def n_kappa(self) -> int:
        """Number of kappas of a subject: occasions x IOV parameters (0 without IOV)."""
        t = self.params.template
        return t.occasions * len(t.iov_names)

    @property
    def n_eta(self) -> int:
        """Length of a subject's random-effect vector: etas, then the kappas occasion by occasion
        (module docstring); without IOV the number of etas."""
        return self.n_bsv + self.n_kappa

    def split_random_effects(self, eta):
        """``(eta (..., n_bsv), kappa (..., K, n_iov) or None)`` of a random-effect vector (..., n_eta)."""
        t = self.params.template
        if eta.shape[-1] != self.n_eta:
            raise SpecError("iov" if t.iov_names else "bsv",
                            f"the random-effect vector has {eta.shape[-1]} values, the population model "
                            f"{self.n_eta} ({self.n_bsv} etas" + (f" + {t.occasions} occasions x {len(t.iov_names)} "
                                                                 f"kappas ({', '.join(t.iov_names)}))"
                                                                 if t.iov_names else ")")
                            + (": inter-occasion variability is estimated by insilico.fit (FOCE-I, Laplace, NUTS)"
                               if t.iov_names else ""))
        if not t.iov_names:
            return eta, None
        b = self.n_bsv
        return eta[..., :b], eta[..., b:].reshape(eta.shape[:-1] + (t.occasions, len(t.iov_names)))

    def subjects(self):
        """The per-subject arrays as one pytree with a leading subject axis. With time-varying
        covariates it also holds ``change_t``: ``{"locf": (N, C)}`` or ``{"nocb": (N, C)}`` (the key
        carries the static convention, so compiled functions that close over another problem
        retrace rather than reuse the other convention)."""
        out = {"cov": {k: jnp.asarray(v) for k, v in self.covariates.items()},
               "dose": tuple(jnp.asarray(a) for a in self.dose),
               "t": jnp.asarray(self.times), "y": jnp.asarray(self.y), "mask": jnp.asarray(self.mask),
               **{k: jnp.asarray(v) for k, v in self.records.items()}}
        if self.change_t is not None:
            out["change_t"] = {"nocb" if self.nocb else "locf": jnp.asarray(self.change_t)}
        if self.occ is not None:
            out["occ"] = jnp.asarray(self.occ)
        return out

    def select(self, keep: np.ndarray, excluded: dict | None = None) -> Problem:
        """The problem restricted to the subjects where ``keep`` (N,) is True."""
        return replace(self, ids=self.ids[keep], covariates={k: v[keep] for k, v in self.covariates.items()},
                       dose=tuple(a[keep] for a in self.dose), times=self.times[keep], y=self.y[keep],
                       mask=self.mask[keep], records={k: v[keep] for k, v in self.records.items()},
                       excluded=self.excluded if excluded is None else excluded,
                       data_covariates=None if self.data_covariates is None else self.data_covariates[keep],
                       change_t=None if self.change_t is None else self.change_t[keep],
                       occ=None if self.occ is None else self.occ[keep])

    def record_notes(self) -> dict:
        """What was done with BLQ records (``{"blq": "m1: 12 BLQ records dropped"}``) and the observed
        outputs when there are several (``{"outputs": "conc, effect"}``); empty when neither applies."""
        out = {}
        if self.blq:
            what = "dropped" if self.blq == "m1" else "censored (likelihood Phi((LLOQ - IPRED) / SD))"
            out["blq"] = f"{self.blq}: {self.n_blq} BLQ records {what}"
        if len(self.outputs) > 1:
            out["outputs"] = ", ".join(self.outputs)
        if self.occ is not None:
            out["occasions"] = self.occasion_source
        return out

    def predict_outputs(self, pop, subject, eta):
        """Every model output at the subject's times (``{name: (T,)}``) and the solver status.

        With ``subject["change_t"]`` (time-varying covariates, occasions; module docstring) the
        covariates are (C+1,) values per interval: the individual parameters are computed for each
        interval with the same ``eta`` and the solve is piecewise, each change time an interval end.
        With IOV ``eta`` is the whole random-effect vector (etas and kappas) and a parameter with IOV
        takes, in each interval, its ``P_occ`` of the interval's occasion ``subject["occ"]``."""
        eta, kappa = self.split_random_effects(eta)
        p = individual_parameters(pop, subject["cov"], eta, kappa)
        if kappa is not None:
            if "occ" not in subject or "change_t" not in subject:
                raise SpecError("iov", "inter-occasion variability needs each record's occasion (build the "
                                       "problem with insilico.estimation.build_problem from data with occasions)")
            occ = subject["occ"]
            for name in pop.iov_names:
                per_occ = jnp.broadcast_to(p.pop(f"{name}_occ"), occ.shape + (pop.occasions,))
                p[name] = jnp.take_along_axis(per_occ, occ[:, None], axis=-1)[:, 0]
        full = {**self.fixed, **p}
        if "change_t" not in subject:
            outs, _, status = solve_subject(self.model, full, subject["dose"], subject["t"], self.method,
                                            solver=self.solver, has_infusion=self.has_infusion, has_ss=self.has_ss)
            return outs, status
        (convention, change_t), = subject["change_t"].items()
        shape = (change_t.shape[-1] + 1,)
        full = {k: jnp.broadcast_to(jnp.asarray(v, dtype=jnp.float64), shape) for k, v in full.items()}
        outs, _, status = solve_subject(self.model, full, subject["dose"], subject["t"], self.method,
                                        solver=self.solver, has_infusion=self.has_infusion, has_ss=self.has_ss,
                                        change_t=change_t, nocb=convention == "nocb")
        return outs, status

    def predict(self, pop, subject, eta):
        """Prediction of each record (T,), from the output it measures, and the solver status."""
        outs, status = self.predict_outputs(pop, subject, eta)
        names = self.outputs or (self.spec.output,)
        if len(names) == 1 or "out" not in subject:
            return outs[names[0]], status
        stack = jnp.stack([outs[o] for o in names])
        return jnp.take_along_axis(stack, subject["out"][None, :], axis=0)[0], status


def resolve(spec: PopulationModelSpec, base: Path | None = None):
    """The structural model a population model names (`insilico.models.resolve_model`: built-in,
    ``import``, text model ``file`` or inline ``text``)."""
    return resolve_model(spec.model, base)


def _with_model_units(spec: PopulationModelSpec, model) -> PopulationModelSpec:
    """Parameters without ``units`` take the structural model's declared units."""
    params = {name: (p if p.units else p.model_copy(update={"units": model.parameter(name).units}))
              for name, p in spec.parameters.items()}
    return spec.model_copy(update={"parameters": params})


def _label(v) -> str:
    """A category's label: integer-valued numbers as integers (7 and 7.0 both read "7")."""
    if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _convert(spec, c: str, col: pd.Series, categorical) -> tuple[np.ndarray, list]:
    """Values of covariate ``c`` in ``col`` (floats, or integer codes of a categorical covariate) and,
    per entry, why it cannot be used ("" when it can); unusable entries hold a harmless 1.0 / code 0."""
    if c in categorical:
        labels = categorical[c]
        codes = np.array([labels.index(t) if t in labels else -1 for t in (_label(v) for v in col)], dtype=int)
        why = [f"{c} = {v!r} is not a category with a multiplier" if k < 0 else "" for v, k in zip(col, codes)]
        return np.maximum(codes, 0), why
    vals = pd.to_numeric(col, errors="coerce").to_numpy(float)
    power = any(e.covariate == c and e.type == "power" for p in spec.parameters.values() for e in p.effects)
    why = [f"{c} is missing or not a number" if not np.isfinite(v)
           else (f"{c} = {v:g} must be > 0 for a power effect" if power and v <= 0 else "") for v in vals]
    return np.where(np.isfinite(vals), vals, 1.0), why


def _covariate_arrays(spec, data: NonmemData, pop_covariates, categorical):
    """Per-subject covariate arrays (each subject's first value) and {ID: reason} for subjects with
    unusable values."""
    cov = data.covariates
    out, bad = {}, {}
    for c in pop_covariates:
        if c not in cov.columns:
            raise SpecError(f"data.{c}", f"column missing: the population model's effects use covariate {c}")
        out[c], why = _convert(spec, c, cov[c], categorical)
        for sid, w in zip(cov.index, why):
            if w:
                bad.setdefault(sid, w)
    return out, bad


def _covariate_schedule(spec, data: NonmemData, varying, categorical, nocb: bool, first: dict, bad: dict,
                        extra: dict | None = None):
    """Time-varying covariates (module docstring): (change_t (N, C), {name: (N, C+1)} values per
    interval for every covariate in ``first`` and every column of ``extra`` ({name: per-record values
    of ``data.covariate_records``, already checked}: the occasion index)). Only times where some
    value of ``varying`` or ``extra`` changes are kept; rows are padded to C = max(1, most changes)
    with copies of their last change (inert). Adds to ``bad`` the subjects with an unusable value on
    some record."""
    extra = dict(extra or {})
    rec = data.covariate_records
    if rec is None:
        raise SpecError("data", f"the covariates {list(varying)} change within an ID but the data carry no "
                                "per-record values (NonmemData.covariate_records); read the data with "
                                "insilico.dosing.read_nonmem")
    subject = pd.Index(data.ids).get_indexer(rec["ID"])
    t = rec["TIME"].to_numpy(float)
    vals = {}
    for c in varying:
        vals[c], why = _convert(spec, c, rec[c], categorical)
        for i, w in enumerate(why):
            if w and subject[i] >= 0:
                bad.setdefault(data.ids[subject[i]], f"{w} on the record at TIME {t[i]:g} h (data row {i + 1}); a "
                                                     "time-varying covariate needs a value on every record")
    vals.update(extra)
    x = np.stack([np.asarray(vals[c], float) for c in [*varying, *extra]], axis=1)
    per = []
    for s in range(len(data.ids)):
        rows = np.flatnonzero(subject == s)
        rows = rows[np.argsort(t[rows], kind="stable")]
        if data.ids[s] in bad:      # excluded: no changes (they would only widen the others' padding)
            rows = rows[:1]
        j = np.flatnonzero(np.any(x[rows[1:]] != x[rows[:-1]], axis=1))   # record j+1 differs from record j
        # LOCF: the new value starts at record j+1; NOCB: it holds back to record j (from just after t_j)
        per.append((t[rows[j]] if nocb else t[rows[j + 1]], rows[np.r_[0, j + 1]], t[rows[0]]))
    n_changes = max(1, max(ct.size for ct, _, _ in per))
    change_t = np.empty((len(per), n_changes))
    idx = np.empty((len(per), n_changes + 1), dtype=int)
    for s, (ct, seg_rows, t0) in enumerate(per):
        pad = n_changes - ct.size
        change_t[s] = np.r_[ct, np.full(pad, ct[-1] if ct.size else t0)]
        idx[s] = np.r_[seg_rows, np.full(pad, seg_rows[-1])]
    values = {c: (vals[c][idx] if c in vals else np.repeat(np.asarray(v)[:, None], n_changes + 1, axis=1))
              for c, v in first.items()}
    values.update({c: np.asarray(vals[c])[idx] for c in extra})
    return change_t, values


def _occ_column(data: NonmemData, occasions: int, column: str = "OCC") -> tuple[str, np.ndarray] | None:
    """(name, 0-based occasion index of every record of ``data.covariate_records``) from the data's
    occasion column ``column`` (``iov.column``, default ``OCC``; name matched case-insensitively), or
    None without one. `SpecError` ``data.<column>`` naming the row of a record of a subject whose
    occasion is not an integer 1..``occasions``."""
    rec = data.covariate_records
    if rec is None:
        return None
    field = f"data.{column}"
    cols = [c for c in rec.columns if str(c).strip().upper() == column.upper()]
    if len(cols) > 1:
        raise SpecError(field, f"the data have {len(cols)} {column} columns {cols}; keep one")
    if not cols:
        return None
    v = pd.to_numeric(rec[cols[0]], errors="coerce").to_numpy(float)
    bad = ~(np.isfinite(v) & (v == np.round(v)) & (v >= 1) & (v <= occasions))
    bad &= pd.Index(data.ids).get_indexer(rec["ID"]) >= 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SpecError(field, f"row {i + 1}: {column} {rec[cols[0]].iloc[i]!r} is not an occasion of the population "
                               f"model: give an integer 1..{occasions} (iov.occasions) on every record")
    return cols[0], np.where(bad, 0, np.nan_to_num(v, nan=1.0) - 1).astype(int)


def _with_starts(n: int, change_t, values: dict, starts) -> tuple[np.ndarray, dict, np.ndarray]:
    """Occasions by start times (module docstring) merged into the covariate schedule ``change_t``
    (N, C) with ``values`` {name: (N, C+1)}, or, when ``change_t`` is None, into constant covariates
    {name: (N,)}: (change_t (N, C'), values (N, C'+1), occasion index (N, C'+1)). The merged change
    times are the union of both; interval j takes each schedule's value in effect at its left end."""
    later = np.asarray(starts, float)[1:]
    per = []
    for s in range(n):
        own = change_t[s] if change_t is not None else np.zeros(0)
        merged = np.unique(np.r_[own, later])
        left = np.r_[-np.inf, merged]
        per.append((merged, np.searchsorted(own, left, side="right"), np.searchsorted(later, left, side="right")))
    c = max(1, max(m.size for m, _, _ in per))
    out_t = np.zeros((n, c))
    cov_idx = np.zeros((n, c + 1), dtype=int)
    occ = np.zeros((n, c + 1), dtype=int)
    for s, (m, ci, oi) in enumerate(per):
        pad = c - m.size
        out_t[s] = np.r_[m, np.full(pad, m[-1] if m.size else 0.0)]
        cov_idx[s] = np.r_[ci, np.full(pad, ci[-1])]
        occ[s] = np.r_[oi, np.full(pad, oi[-1])]
    rows = np.arange(n)[:, None]
    new = {k: (np.asarray(v)[rows, cov_idx] if change_t is not None else np.repeat(np.asarray(v)[:, None], c + 1, 1))
           for k, v in values.items()}
    return out_t, new, occ


def build_problem(spec: PopulationModelSpec, data, *, base: Path | None = None, model=None,
                  solver: SolverOptions | None = None, require_observations: bool = True) -> Problem:
    """Check ``data`` (a NONMEM CSV path, DataFrame or `NonmemData`) against ``spec`` and build
    the :class:`Problem`. Errors name the field or the data row and column (`SpecError`).
    ``require_observations=False`` accepts data without any observation (predictions from the
    prior, candidate regimens)."""
    model = model if model is not None else resolve(spec, base)
    for o in spec.fitted_outputs:
        if o not in model.output_names:
            raise SpecError("output" if o == spec.output else "outputs",
                            f"model {model.name!r} has no output {o!r} (outputs: {', '.join(model.output_names)})")
    for name in spec.parameters:
        if name not in model.parameter_names:
            raise SpecError(f"parameters.{name}", f"not a parameter of model {model.name!r} "
                                                  f"({', '.join(model.parameter_names)})")
    spec = _with_model_units(spec, model)
    digest = ""
    if isinstance(data, (str, Path)):
        digest = hashlib.sha256(Path(data).read_bytes()).hexdigest() if Path(data).is_file() else ""
    nm = data if isinstance(data, NonmemData) else read_nonmem(data, model)
    categorical = {}
    for p in spec.parameters.values():
        for e in p.effects:
            if e.type == "categorical":
                categorical[e.covariate] = tuple(e.multipliers)
    covariates = list(dict.fromkeys(e.covariate for p in spec.parameters.values() for e in p.effects))
    cov, bad = _covariate_arrays(spec, nm, covariates, categorical)
    nocb = spec.covariate_interpolation == "nocb"
    varying = [c for c in covariates if c in nm.varying]
    template = compile_population(spec.parameters, spec.bsv, spec.iov, spec.residual_error,
                                  covariates=covariates, categories=categorical)
    occ_column = _occ_column(nm, spec.iov.occasions, spec.iov.column) if spec.iov is not None else None
    if spec.iov is not None and occ_column is None and not spec.iov.starts:
        raise SpecError("iov", f"inter-occasion variability ({spec.iov.occasions} occasions of "
                               f"{', '.join(template.iov_names)}) needs each record's occasion: an "
                               f"{spec.iov.column} column in the data (occasion 1..K on every record; another "
                               "name: iov.column) or iov.starts (occasion start times, h)")
    change_t, occ, source = None, None, ""
    if varying or occ_column is not None:
        extra = {"__occ__": occ_column[1]} if occ_column is not None else None
        change_t, cov = _covariate_schedule(spec, nm, varying, categorical, nocb, cov, bad, extra)
        occ = cov.pop("__occ__", None)
    if spec.iov is not None and occ_column is None:
        change_t, cov, occ = _with_starts(len(nm.ids), change_t, cov, spec.iov.starts)
        nocb = nocb and bool(varying)      # a start is in the new occasion unless nocb covariates say otherwise
        source = f"iov.starts {list(spec.iov.starts)} h (the data have no {spec.iov.column} column)"
    elif occ_column is not None:
        source = f"the data's {occ_column[0]} column" + (" (iov.starts, used by simulations, not by this fit)"
                                                         if spec.iov.starts else "")
    extra = {o: compile_population(spec.parameters, residual_error=spec.residual_errors[o]).residual
             for o in spec.fitted_outputs[1:]}
    pv = ParameterVector(template, spec.estimate.fix, spec.estimate.bounds, extra)
    fixed = {}
    for par in model.parameters:
        if par.name in spec.parameters:
            continue
        if par.name in spec.model.parameters:
            fixed[par.name] = float(spec.model.parameters[par.name])
        elif par.default is not None:
            fixed[par.name] = float(par.default)
        else:
            raise SpecError("parameters", f"model {model.name!r} needs {par.name} ({par.units}): add it to "
                                          "parameters (estimated) or to model.parameters (fixed)")
    mask = nm.observed & np.isfinite(nm.dv)
    records = {}
    out = _output_index(spec, nm, mask)
    if out is not None:
        records["out"] = out
    blq, cens, limit = _censoring(spec, nm, mask)
    n_blq = int(cens.sum())
    if blq:
        if blq == "m1":
            mask, cens = mask & ~cens, np.zeros_like(cens)
        records["cens"], records["lloq"] = cens, np.where(cens, limit, 1.0)
    y = np.where(cens, limit, nm.dv)
    keep = np.array([sid not in bad for sid in nm.ids])
    if occ is None and change_t is not None and all(np.all(v[keep] == v[keep][:, :1]) for v in cov.values()):
        # only excluded subjects changed (a missing value on a record): the time-invariant problem
        change_t, cov = None, {k: v[:, 0] for k, v in cov.items()}
    if not keep.any():
        raise SpecError("data", "no subject can be fitted: " + "; ".join(f"ID {k}: {v}" for k, v in bad.items()))
    if require_observations and not mask[keep].any():
        raise SpecError("data.DV", "no observations to fit (every DV is missing, MDV=1 or EVID=2)")
    table = nm.doses
    dose = tuple(np.asarray(getattr(table, f))[keep] for f in ("time", "amt", "rate", "cmt", "ss", "ii"))
    return Problem(spec, model, pv, nm.ids[keep], {k: v[keep] for k, v in cov.items()}, dose,
                   nm.times[keep], np.where(mask, y, 0.0)[keep], mask[keep], fixed,
                   "exact" if model.is_linear else "ode",
                   replace(solver or SolverOptions(), adjoint="forward"), bool(np.any(table.rate != 0)),
                   event_slots(table.ss), digest, bad, nm.covariates.loc[nm.ids[keep]], spec.fitted_outputs,
                   {k: v[keep] for k, v in records.items()}, blq, n_blq,
                   None if change_t is None else change_t[keep], nocb, None if occ is None else occ[keep], source)


def _output_index(spec: PopulationModelSpec, nm: NonmemData, mask: np.ndarray) -> np.ndarray | None:
    """Each record's index into ``spec.fitted_outputs`` (N, T), or None when every record measures
    ``spec.output``. SpecError naming the data row for a fitted record whose DVID is not mapped."""
    dvid = nm.records.get("DVID")
    if dvid is None:
        if len(spec.fitted_outputs) > 1:
            raise SpecError("data.DVID", "column missing: `outputs` maps several model outputs, and the DVID "
                                         "column says which one each record measures")
        return None
    if not spec.outputs:
        if np.unique(dvid[mask]).size > 1:
            raise SpecError("outputs", "the data's DVID column has the values "
                                       f"{', '.join(f'{v:g}' for v in np.unique(dvid[mask]))}: map each to a model "
                                       "output (outputs: {1: conc, 2: effect})")
        return None
    unmapped = mask & ~np.isin(dvid, list(spec.outputs))
    if unmapped.any():
        i, j = np.argwhere(unmapped)[0]
        raise SpecError("data.DVID", f"row {int(nm.records['ROW'][i, j])}: DVID {dvid[i, j]:g} is not mapped to a "
                                     f"model output (outputs: {spec.outputs})")
    names = spec.fitted_outputs
    table = {k: names.index(v) for k, v in spec.outputs.items()}
    return np.vectorize(lambda v: table.get(v, 0), otypes=[int])(np.where(mask, dvid, next(iter(table))))


def _censoring(spec: PopulationModelSpec, nm: NonmemData, mask: np.ndarray):
    """(BLQ handling, censored (N, T), limit (N, T)) of the fitted records (module docstring).
    SpecError naming the data row for a BLQ record without a positive limit."""
    blq_col, lloq_col = nm.records.get("BLQ"), nm.records.get("LLOQ")
    none = np.zeros(mask.shape, bool)
    if blq_col is None and lloq_col is None:
        return spec.estimate.blq or "", none, np.zeros(mask.shape)
    lloq = lloq_col if lloq_col is not None else np.full(mask.shape, np.nan)
    dv = np.where(mask, nm.dv, np.inf)
    flagged = (blq_col == 1) if blq_col is not None else none
    cens = mask & (flagged | (np.isfinite(lloq) & (dv < lloq)))
    limit = np.where(np.isfinite(lloq), lloq, dv)
    bad = cens & ~(limit > 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        column = "LLOQ" if np.isfinite(lloq[i, j]) else "DV"
        raise SpecError(f"data.{column}", f"row {int(nm.records['ROW'][i, j])}: a BLQ record needs a limit > 0 "
                                          f"(its LLOQ, or its DV without an LLOQ column), got {limit[i, j]:g}")
    return spec.estimate.blq or "m1", cens, np.where(cens, limit, 0.0)
