"""`fit`: a population model + NONMEM-format data -> `FitResult`."""
from __future__ import annotations

import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from insilico.errors import SpecError
from insilico.estimation._diagnostics import diagnostics, npde
from insilico.estimation._methods import NUTS, method_from
from insilico.estimation._problem import build_problem
from insilico.estimation._result import FitResult
from insilico.estimation._spec import load_population_model
from insilico.jax_config import relieve_map_pressure

__all__ = ["fit"]


def fit(model, data, method="focei", *, overrides: list[str] | None = None, npde_samples: int = 1000,
        seed: int = 0, solver=None) -> FitResult:
    """Fit a population model to data.

    Parameters
    ----------
    model : population-model file (YAML path or text), mapping or `PopulationModelSpec`.
    data : NONMEM-format data set (CSV path, DataFrame or `insilico.dosing.NonmemData`).
    method : ``"focei"``, ``"laplace"``, ``"nuts"`` or an option object (`FOCEI`, `Laplace`, `NUTS`).
    overrides : dotted ``key=value`` changes to the population model (``--set``).
    npde_samples : simulated data sets per subject for NPDE (0: skip NPDE).
    seed : seed of the NPDE simulations (and of NUTS unless its options give one).

    Records below the limit of quantification (``BLQ``/``LLOQ`` columns) are dropped (M1, the
    default) or censored (``estimate: {blq: m3}``; needs ``laplace`` or ``nuts``, a `SpecError` with
    ``focei``); ``result.extra["blq"]`` says which and how many records.

    Subjects that cannot be evaluated (a missing covariate; a solve that fails at the initial
    estimates) are left out and listed in ``result.excluded``; a fit that does not converge is
    returned with ``converged`` False and the optimiser's message.
    """
    relieve_map_pressure()     # a long session's compiled programs must not exhaust the process's mappings
    options = method_from(method)
    spec, base = load_population_model(model, overrides)
    problem = build_problem(spec, data, base=base if isinstance(model, (str, Path)) else None, solver=solver)
    if problem.blq == "m3" and problem.n_blq and options.name == "focei":
        raise SpecError("estimate.blq", f"M3 ({problem.n_blq} censored BLQ records) needs method laplace (or "
                                        "nuts): FOCE-I has no form for a censored likelihood (NONMEM, too, needs "
                                        "LAPLACIAN for M3); or use blq: m1")
    if isinstance(options, NUTS):
        from insilico.estimation._nuts import fit_nuts
        return fit_nuts(problem, options)
    from insilico.estimation._ml import fit_ml, screen_subjects
    problem, first = screen_subjects(problem, options)
    raw = fit_ml(problem, options, first)
    pv = problem.params
    pop = pv.population(jnp.asarray(raw.estimates))
    diag = diagnostics(problem, pop, raw.eta)
    residuals = {k: diag[k] for k in ("PRED", "IPRED", "RES", "IRES", "IWRES", "CWRES")}
    if npde_samples:
        residuals["NPDE"] = npde(problem, pop, seed, npde_samples)
    bad = raw.eta_status != 0
    if bad.any():
        warnings.warn(f"{int(bad.sum())} subject(s) without a converged EBE at the final estimates "
                      f"(IDs {', '.join(map(str, problem.ids[bad][:10]))})", RuntimeWarning, stacklevel=2)
    return FitResult(
        method=options.name, names=pv.names, kinds=tuple(e.kind for e in pv.entries), estimates=raw.estimates,
        fixed=np.array([e.fixed for e in pv.entries]), covariance=raw.covariance, ofv=raw.ofv,
        converged=raw.converged, message=raw.message, covariance_message=raw.covariance_message,
        iterations=raw.iterations, seconds=raw.seconds, ids=problem.ids, bsv_names=pv.template.bsv_names,
        eta=raw.eta, eta_cov=diag["eta_cov"], eta_status=raw.eta_status, ofv_subject=raw.ofv_subject,
        times=np.where(problem.mask, problem.times, np.nan), dv=np.where(problem.mask, problem.y, np.nan),
        residuals=residuals, eta_shrinkage=diag["eta_shrinkage"], eps_shrinkage=diag["eps_shrinkage"],
        n_observations=problem.n_observations, spec=spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        excluded=problem.excluded, data_sha256=problem.data_sha256,
        covariates=problem.data_covariates, extra=problem.record_notes())

