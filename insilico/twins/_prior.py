"""The prior of a twin: a population model (the YAML ``insilico fit`` reads, or the estimates of
a fit store) frozen into the twin at creation, and the compiled pieces every computation needs.

The prior is stored in the twin as JSON (the mapping the YAML holds, or the fit store's
``population_model`` attribute), so a twin recomputes identically even when the file changes;
``prior_sha256`` is the SHA-256 of its canonical JSON (sorted keys).

Inter-occasion variability (a prior with ``iov``; Karlsson & Sheiner 1993): a twin's random-effect
vector is estimation's (`insilico.estimation.Problem.split_random_effects`): ``[eta (n_eta), kappa_1
(n_iov), ..., kappa_K (n_iov)]`` with K = ``iov.occasions``, the most occasions a history may hold;
``n_random`` is its length. Predictions add one occasion, K + 1, for the regimen to come
(``problem_for(..., future=True)``; `insilico.twins._predict`).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from insilico.config import read_mapping
from insilico.errors import SpecError
from insilico.estimation import build_problem, load_population_model
from insilico.population import individual_parameters
from insilico.store import digest, open_fit, recognise

__all__ = ["NEW_OCCASION_STREAM", "TwinModel", "load_prior", "twin_model"]

NEW_OCCASION_STREAM = 1000   # the key's stream of new-occasion kappas (residual draws take 1 + output index)


@dataclass(frozen=True, eq=False)
class TwinModel:
    """A prior, compiled: ``spec`` (`PopulationModelSpec`), ``problem`` (an estimation
    `Problem` whose structure, not data, the twin uses: model, parameter vector, fixed model
    parameters, solver path), ``nat`` (the prior's numbers, natural scale), ``pop`` (the
    `PopulationModel`), ``covariates`` the effects use with ``categories`` ({name: labels}),
    ``baseline``: whether the fitted output is nonzero before any dose (PD), ``sha256``;
    ``outputs``: the observed outputs (`PopulationModelSpec.fitted_outputs`: ``output`` first,
    then the others of ``outputs`` in DVID order) and ``baselines`` the same flag for each."""

    spec: object
    mapping: dict
    sha256: str
    problem: object
    nat: jnp.ndarray
    pop: object
    covariates: tuple
    categories: dict
    baseline: bool
    outputs: tuple = ()
    baselines: tuple = ()
    future_problem: object = None

    @property
    def model(self):
        return self.problem.model

    def problem_for(self, has_infusion: bool, has_ss: int, future: bool = False):
        """The prior's `Problem` with the static dosing flags of a batch (infusions present, and
        `insilico.dosing.event_slots` of its dose table) -- one compiled kernel per flag pair.
        ``future``: with IOV, the problem of predictions, K + 1 occasions (module docstring)."""
        problem = self.future_problem if future and self.future_problem is not None else self.problem
        return replace(problem, has_infusion=bool(has_infusion), has_ss=int(has_ss))

    @property
    def output(self) -> str:
        return self.spec.output

    @property
    def several(self) -> bool:
        """Whether the prior observes several outputs (its records carry an output index)."""
        return len(self.outputs) > 1

    @property
    def dvids(self) -> dict:
        """{DVID: output name}: the population model's ``outputs`` (empty: one observed output)."""
        return dict(self.spec.outputs)

    def residual(self, output: str):
        """The residual-error model of observed output ``output`` (the prior's ``residual_error``
        for the primary one, its ``residual_errors`` entry for the others)."""
        residuals = getattr(self.pop, "residuals", ()) or (self.pop.residual,)
        return residuals[self.outputs.index(output)] if self.several else self.pop.residual

    def output_index(self, dvid) -> np.ndarray:
        """Each record's index into ``outputs`` from its DVID (NaN: none given, the primary
        output ``output``), by the population model's ``outputs`` map as `insilico.estimation`
        reads it; values must have been checked (`insilico.twins._data.dvid_rows`)."""
        dvid = np.asarray(dvid, float)
        if not self.several:
            return np.zeros(dvid.shape, dtype=np.int32)
        table = {float(k): self.outputs.index(v) for k, v in self.spec.outputs.items()}
        return np.array([table.get(float(v), 0) if np.isfinite(v) else 0 for v in dvid.reshape(-1)],
                        dtype=np.int32).reshape(dvid.shape)

    @property
    def eta_names(self) -> tuple:
        """``ETA1``, ``ETA2``, ... in the order of the population model's ``bsv.parameters``."""
        return tuple(f"ETA{i + 1}" for i in range(len(self.pop.bsv_names)))

    @property
    def n_eta(self) -> int:
        """Number of between-subject etas."""
        return len(self.pop.bsv_names)

    @property
    def n_kappa(self) -> int:
        """Number of kappas: ``occasions`` x IOV parameters (0 without IOV)."""
        return self.problem.n_kappa

    @property
    def n_random(self) -> int:
        """Length of the random-effect vector: etas, then the kappas occasion by occasion."""
        return self.problem.n_eta

    @property
    def occasions(self) -> int:
        """``iov.occasions`` (K, the most occasions of a history); 0 without IOV."""
        return self.spec.iov.occasions if self.n_kappa else 0

    @property
    def kappa_names(self) -> tuple:
        """``KAPPA1``, ``KAPPA2``, ... in the order of the population model's ``iov`` parameters."""
        return tuple(f"KAPPA{i + 1}" for i in range(len(self.pop.iov_names))) if self.n_kappa else ()

    def kappas(self, effects) -> np.ndarray:
        """(K, n_iov) kappas of a random-effect vector (n_random,)."""
        return np.asarray(effects)[self.n_eta:].reshape(self.occasions, len(self.pop.iov_names))

    def with_new_occasion(self, effects, seed: int | None = None) -> np.ndarray:
        """Random-effect vectors (D, n_random) with the kappa of the new occasion K + 1 appended
        (D, n_random + n_iov): drawn from its prior N(0, Omega_IOV) (``seed``: stream
        `NEW_OCCASION_STREAM` of the key), or 0 (``seed`` None: the MAP line). Unchanged without IOV."""
        effects = np.atleast_2d(np.asarray(effects, float))
        if not self.n_kappa:
            return effects
        shape = (effects.shape[0], len(self.pop.iov_names))
        if seed is None:
            return np.hstack([effects, np.zeros(shape)])
        z = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), NEW_OCCASION_STREAM), shape))
        return np.hstack([effects, z * np.asarray([float(sd) for sd in self.pop.iov_sd])])

    def covariate_arrays(self, values: list[dict]) -> dict:
        """{name: (N,) array} for ``values`` (one {name: value} per patient): floats, or
        integer codes of categorical labels."""
        out = {}
        for c in self.covariates:
            if c in self.categories:
                out[c] = np.array([self.categories[c].index(_label(v[c])) for v in values], dtype=np.int32)
            else:
                out[c] = np.array([float(v[c]) for v in values])
        return out

    def check_covariates(self, given: dict, option: str = "--covariates") -> dict:
        """The covariates the prior uses, checked (`SpecError` naming ``option.NAME``); names the
        prior does not use are dropped (the twin stores only what it needs)."""
        out = {}
        for c in self.covariates:
            if c not in given:
                raise SpecError(f"{option}.{c}", f"missing: the prior's covariate effects use {c}")
            out[c] = self.check_value(c, given[c], f"{option}.{c}")
        return out

    def check_value(self, c: str, v, field: str, where: str = ""):
        """One value of covariate ``c``, checked: a category label (str) of a categorical effect,
        else a finite number (> 0 for a power effect). `SpecError` ``field`` (message prefixed
        with ``where``, e.g. ``"row 3: "``) otherwise."""
        if c in self.categories:
            label = _label(v)
            if label not in self.categories[c]:
                raise SpecError(field, f"{where}{v!r} is not one of {', '.join(self.categories[c])}")
            return label
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise SpecError(field, f"{where}{v!r} is not a number") from None
        power = any(e.covariate == c and e.type == "power" for p in self.spec.parameters.values()
                    for e in p.effects)
        if not np.isfinite(x) or (power and x <= 0):
            raise SpecError(field, f"{where}{v!r} must be a finite number{' > 0' if power else ''}")
        return x

    def code(self, c: str, v) -> float:
        """A checked value of ``c`` as the number the kernels read: the value, or a categorical
        label's index among the prior's categories."""
        return float(self.categories[c].index(v)) if c in self.categories else float(v)

    def value(self, c: str, x: float):
        """Inverse of `code`: the value (float) or category label (str)."""
        return self.categories[c][int(x)] if c in self.categories else float(x)

    def parameters(self, covariates: dict, eta, occasion: int | None = None) -> dict:
        """Individual parameters {name: float} for one patient's covariates and ``eta`` (the etas,
        or the whole random-effect vector); with IOV and ``occasion`` (1-based) the parameters
        with IOV take that occasion's kappa (``TV exp(eta + kappa)``), else kappa = 0."""
        cov = {k: jnp.asarray(v[0]) for k, v in self.covariate_arrays([covariates]).items()}
        eta = np.asarray(eta, float)
        kappa = jnp.asarray(self.kappas(eta)) if occasion is not None and eta.size == self.n_random \
            and self.n_kappa else None
        p = individual_parameters(self.pop, cov, jnp.asarray(eta[:self.n_eta]) if self.n_eta else None, kappa)
        if kappa is not None:
            p.update({n: p.pop(f"{n}_occ")[occasion - 1] for n in self.pop.iov_names})
        return {k: float(v) for k, v in p.items()}


def _label(v) -> str:
    """A category label: integer-valued numbers as integers (7 and 7.0 both read "7"), as the
    estimation data reader does."""
    if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def load_prior(source) -> tuple[dict, str]:
    """The prior mapping of ``source`` (a population-model YAML path, YAML text, mapping, or a fit
    store) and its kind (``population_model`` or ``fit``). `SpecError` ``prior`` otherwise."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        if recognise(source) != "fit":
            raise SpecError("prior", f"{source} is a folder but not a fit store (give a population-model YAML "
                                     "or a fit store)")
        mapping = json.loads(open_fit(source).attrs["population_model"])
        kind = "fit"
    else:
        mapping, _ = read_mapping(source, "population model")
        kind = "population_model"
    mapping = json.loads(json.dumps(mapping))
    load_population_model(mapping)      # validate now: SpecError naming the field
    return mapping, kind


def prior_sha256(mapping: dict) -> str:
    return digest(json.dumps(mapping, sort_keys=True))


@functools.lru_cache(maxsize=32)
def _compiled(text: str) -> TwinModel:
    mapping = json.loads(text)
    spec, base = load_population_model(mapping)
    categories = {e.covariate: tuple(e.multipliers) for p in spec.parameters.values() for e in p.effects
                  if e.type == "categorical"}
    covariates = tuple(dict.fromkeys(e.covariate for p in spec.parameters.values() for e in p.effects))
    # the prior's structure (model, parameter vector, fixed parameters, solver path) from the smallest
    # NONMEM data set: one EVID 2 record with reference covariates; patients' arrays come from `batch_arrays`
    row = {c: (categories[c][0] if c in categories else 1.0) for c in covariates}
    # (several observed outputs: a DVID column, the primary output's DVID)
    record = dict(ID=1, TIME=0.0, EVID=2, AMT=0.0, DV=np.nan, **row)
    if spec.outputs:
        record["DVID"] = next(k for k, v in spec.outputs.items() if v == spec.output)
    if spec.iov is not None:
        record[spec.iov.column] = 1      # (IOV: the structure needs an occasion; twins give theirs per row)
    problem = build_problem(spec, pd.DataFrame([record]), base=base, require_observations=False)
    nat = jnp.asarray(problem.params.initial)
    pop = problem.params.population(nat)
    outputs = tuple(spec.fitted_outputs)
    tm = TwinModel(spec, mapping, prior_sha256(mapping), problem, nat, pop, covariates, categories, False, outputs)
    p = {**problem.fixed, **tm.parameters(row, np.zeros(tm.n_eta))}
    p = {k: jnp.asarray(v) for k, v in p.items()}
    model = problem.model
    y0 = model.evaluate_outputs(model.y0(p), p)
    values = [float(np.asarray(y0[o])) for o in outputs]
    baselines = tuple(bool(np.isfinite(v) and v != 0.0) for v in values)
    return replace(tm, baseline=baselines[0], baselines=baselines, future_problem=_future_problem(spec, base, record))


def _future_problem(spec, base, record: dict):
    """With IOV, the `Problem` of predictions: K + 1 occasions (occasion K + 1: the regimen to come),
    the same parameter vector; None without IOV."""
    if spec.iov is None:
        return None
    iov = spec.iov.model_copy(update={"occasions": spec.iov.occasions + 1, "starts": None})
    return build_problem(spec.model_copy(update={"iov": iov}), pd.DataFrame([record]), base=base,
                         require_observations=False)


def twin_model(mapping: dict) -> TwinModel:
    """The compiled prior of ``mapping`` (cached by content)."""
    return _compiled(json.dumps(mapping, sort_keys=True))
