"""A population fit as a cohort: the fitted population model with covariates resampled from the
fitted subjects, and the population model at other values of the fitted quantities.

Names of the fitted quantities (`insilico.population.population_quantities`): a parameter's typical value by
its name (``CL``), a covariate effect's theta ``CL.WT``, a categorical multiplier
``CL.SEX[female]``, Omega elements ``OMEGA(i,j)`` (1-based, order of ``bsv.parameters``; the
matrix is symmetric, elements not named stay as they are), inter-occasion variances
``OMEGA_IOV(j,j)`` (the diagonal of the Omega_IOV all occasions share, 1-based in the order of the
``iov`` parameters; omega_iov is the square root) and residual variances ``SIGMA(k,k)``
(k = 1 the proportional or only error, k = 2 the additive error of a combined model; the
residual SDs are their square roots).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import equinox as eqx
import numpy as np
import xarray as xr

from insilico.cohorts import _metadata as meta
from insilico.cohorts._load import load_cohort_spec
from insilico.cohorts._spec import CohortSpec
from insilico.errors import SpecError
from insilico.population import SIGMA_FIELDS, PopulationModel, ResidualError, population_quantities

__all__ = ["fit_cohort_spec", "population_from_estimates"]

_OMEGA = re.compile(r"^OMEGA\((\d+),(\d+)\)$")


def _resampled_columns(fit: xr.Dataset, parameters: Mapping) -> tuple[list[str], dict[str, list[str]]]:
    """Columns a fit cohort resamples: every covariate the fitted effects use (categorical ones
    with the fitted multipliers' labels as categories), then the standard continuous covariates
    (``WT``, ``AGE``, ``HT``, ``SCR``, ... with default units) the data holds for every subject."""
    columns, categories = [], {}
    for p in parameters.values():
        for e in p.get("effects", []):
            if e["covariate"] not in columns:
                columns.append(e["covariate"])
            if e["type"] == "categorical":
                categories[e["covariate"]] = [str(k) for k in e["multipliers"]]
    if "covariates" in fit:
        for j, name in enumerate(map(str, fit["covariate"].values)):
            if name in meta.COVARIATES and name != "SEX" and name not in columns and name not in parameters \
                    and np.all(np.isfinite(fit["covariates"].values[:, j])):
                columns.append(name)
    return columns, categories


def fit_cohort_spec(fit: xr.Dataset, store: str | os.PathLike, *, units: Mapping[str, str] | None = None,
                    output: str = "conc") -> CohortSpec:
    """The cohort of the fit ``fit`` (an opened fit store, `insilico.store.open_fit`, read from
    ``store``): its fitted population model (attribute ``population_model``: typical values,
    effects, Omega, residual error at the estimates) and covariates resampled, whole subject
    rows with replacement, from the fitted subjects (:class:`~insilico.cohorts.ResampleSpec` on
    the store; columns: the covariates the effects use, then the standard continuous covariates
    the data holds for every subject), and the fitted inter-occasion variability (``iov``: its
    occasions, fitted variances and ``starts``), which a trial applies by occasion.

    A fit whose occasions came from the data's ``OCC`` column has no occasion start times, which a
    trial needs to place the occasions on its time axis: `SpecError` (field ``iov.starts``) rather
    than a cohort that leaves the fitted IOV out.

    ``units``: units of parameters the fitted model does not state (e.g. from the structural
    model). The residual error is kept only when the fit's DV measured ``output`` (the trial's
    observed output); otherwise it describes another output and is left out."""
    try:
        pm = json.loads(fit.attrs["population_model"])
    except (KeyError, ValueError):
        raise SpecError("cohort", f"{Path(store).name} holds no fitted population model") from None
    units = dict(units or {})
    parameters = {name: ({**p, "units": units[name]} if "units" not in p and name in units else p)
                  for name, p in pm["parameters"].items()}
    columns, categories = _resampled_columns(fit, parameters)
    spec = {"name": f"fit {Path(store).name}",
            "description": f"population model fitted by {fit.attrs.get('method', '?')} with covariates resampled "
                           f"from the {fit.sizes.get('subject', 0)} fitted subjects",
            "parameters": parameters}
    if columns:
        spec["resample"] = {"table": str(Path(store).resolve()), "columns": columns, "categories": categories}
    if pm.get("bsv"):
        spec["bsv"] = pm["bsv"]
    if pm.get("iov"):
        if not pm["iov"].get("starts"):
            column = pm["iov"].get("column", "OCC")
            raise SpecError("iov.starts", (
                f"the fit {Path(store).name} estimated inter-occasion variability ({pm['iov'].get('occasions')} "
                f"occasions from the data's {column} column) but holds no occasion start times, which a trial "
                "needs; write the fitted model (insilico fit --population-out fitted.yaml), add iov.starts: "
                "[h, ...] (one per occasion) and use it as the cohort (cohort: {population: fitted.yaml, "
                "covariates: ...}), or fit with iov.starts instead of an occasion column"))
        spec["iov"] = pm["iov"]
    if pm.get("residual_error") and pm.get("output", "conc") == output:
        spec["residual_error"] = pm["residual_error"]
    return load_cohort_spec(spec)


def population_from_estimates(pop: PopulationModel, values: Mapping[str, float]) -> PopulationModel:
    """``pop`` with the fitted quantities named in ``values`` (module docstring) set to those
    values (natural scale); quantities not named keep ``pop``'s. Omega's Cholesky factor is
    recomputed, omega_iov = sqrt(``OMEGA_IOV(j,j)``); a `SpecError` (field ``population``) names an
    Omega that is not positive definite, an ``OMEGA_IOV`` variance <= 0 or a name ``pop`` does not
    have."""
    values = dict(values)
    used: set[str] = set()

    def take(name, default):
        if name in values:
            used.add(name)
            return float(values[name])
        return default

    typical = tuple(take(n, t) for n, t in zip(pop.names, pop.typical))
    effects = []
    for n, effs in zip(pop.names, pop.effects):
        new = []
        for e in effs:
            if e.type == "categorical":
                table = np.array([take(f"{n}.{e.covariate}[{lab}]", float(m))
                                  for lab, m in zip(e.labels, np.asarray(e.table))])
                new.append(eqx.tree_at(lambda x: x.table, e, table))
            else:
                new.append(eqx.tree_at(lambda x: x.theta, e, take(f"{n}.{e.covariate}", float(e.theta))))
        effects.append(tuple(new))
    omega, chol = pop.omega, pop.omega_chol
    if pop.bsv_names:
        omega = np.array(pop.omega, dtype=float)
        for name in values:
            m = _OMEGA.match(name)
            if m:
                i, j = int(m.group(1)) - 1, int(m.group(2)) - 1
                if max(i, j) < len(pop.bsv_names):
                    omega[i, j] = omega[j, i] = take(name, 0.0)
        try:
            chol = np.linalg.cholesky(omega)
        except np.linalg.LinAlgError:
            raise SpecError("population", f"Omega is not positive definite (smallest eigenvalue "
                                          f"{np.linalg.eigvalsh(omega).min():.3g})") from None
    iov_sd = pop.iov_sd
    if pop.iov_names:
        names = [q.name for q in population_quantities(pop) if q.kind == "omega_iov"]
        variances = [take(n, float(sd) ** 2) for n, sd in zip(names, pop.iov_sd)]
        bad = [n for n, v in zip(names, variances) if not v > 0]
        if bad:
            raise SpecError("population", f"{bad[0]} must be a variance > 0, got {values[bad[0]]:g}")
        iov_sd = tuple(float(np.sqrt(v)) for v in variances)
    residual = pop.residual
    if residual is not None:
        sds = {}
        for k, f in enumerate(SIGMA_FIELDS[residual.type]):
            var = take(f"SIGMA({k + 1},{k + 1})", None)
            sds[f] = float(getattr(residual, f)) if var is None else float(np.sqrt(var))
        residual = ResidualError(residual.type, sds.get("additive", 0.0), sds.get("proportional", 0.0),
                                 sds.get("exponential", 0.0))
    unknown = sorted(set(values) - used)
    if unknown:
        raise SpecError("population", f"not quantities of this population model: {', '.join(unknown)}")
    return PopulationModel(pop.names, pop.units, pop.long_names, typical, tuple(effects), pop.bsv_names, omega,
                           chol, pop.iov_names, iov_sd, pop.occasions, residual)
