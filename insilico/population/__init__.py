"""The population (parameter) model shared by cohorts, estimation and patient twins: typical
values and covariate effects, between-subject variability (Omega), inter-occasion variability
and residual error (NONMEM conventions).

* spec sections (pydantic): :class:`ParameterSpec`, :class:`EffectSpec`, :class:`BSVSpec`,
  :class:`IOVSpec`, :class:`ResidualErrorSpec`;
* :func:`compile_population` -> :class:`PopulationModel` (immutable pytree);
* one forward map :func:`individual_parameters` (TV exp(eta), TV exp(eta + kappa)) and
  :func:`typical_values`;
* one log-density :func:`log_density` (prior of eta/kappa + residual log-likelihood);
* :func:`sample_parameters` (NumPyro sites), :func:`apply_residual_error` (simulation);
* :func:`population_quantities`: the names of the estimated quantities (``CL``, ``CL.WT``,
  ``V.SEX[F]``, ``OMEGA(i,j)``, ``SIGMA(k,k)``) that estimation, fit stores, trial replicates and
  NONMEM imports share.

Typical use::

    from insilico.population import compile_population, individual_parameters, log_density
    pop = compile_population(spec.parameters, spec.bsv, spec.iov, spec.residual_error,
                             covariates=["WT"])
    p = individual_parameters(pop, {"WT": wt}, eta)          # {"CL": ..., "V": ...}
    lp = log_density(pop, eta, y=y, f=predict(p))
"""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.population._density import log_density, residual_sd
from insilico.population._forward import individual_parameters, typical_values
from insilico.population._model import (
    Effect,
    PopulationModel,
    ResidualError,
    compile_population,
    cv_percent_to_variance,
    omega_from,
)
from insilico.population._quantities import SIGMA_FIELDS, Quantity, omega_blocks, population_quantities
from insilico.population._residual import RESIDUAL_STREAM, apply_residual_error, residual_root_key
from insilico.population._sample import MultivariateNormalRows, sample_parameters
from insilico.population._spec import (
    BSVSpec,
    EffectSpec,
    IOVSpec,
    ParameterSpec,
    ResidualErrorSpec,
    cholesky_factor,
    correlation_matrix,
    required,
    square_matrix,
    units_value,
)

__all__ = [
    "RESIDUAL_STREAM",
    "SIGMA_FIELDS",
    "BSVSpec",
    "Effect",
    "EffectSpec",
    "IOVSpec",
    "MultivariateNormalRows",
    "ParameterSpec",
    "PopulationModel",
    "Quantity",
    "ResidualError",
    "ResidualErrorSpec",
    "apply_residual_error",
    "cholesky_factor",
    "compile_population",
    "correlation_matrix",
    "cv_percent_to_variance",
    "individual_parameters",
    "log_density",
    "omega_blocks",
    "omega_from",
    "population_quantities",
    "required",
    "residual_root_key",
    "residual_sd",
    "sample_parameters",
    "square_matrix",
    "typical_values",
    "units_value",
]
