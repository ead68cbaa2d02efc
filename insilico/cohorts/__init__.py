"""Virtual cohorts: covariate distributions, dependencies, derived covariates, criteria and
the parameter model (typical values, covariate effects, BSV, IOV, residual error; its home is
:mod:`insilico.population`), as a NumPyro generative model drawn with deterministic
per-subject randomness.

Typical use::

    from insilico.cohorts import load_cohort_spec, draw_cohort, validation_report, save_cohort
    spec = load_cohort_spec("cohorts/healthy_adults.yaml")
    ds = draw_cohort(spec, n=1000, seed=1)          # xarray.Dataset over `subject`
    save_cohort(ds, "cohort.zarr")                  # or .csv / .parquet
    report = validation_report(draw_cohort(spec, 10_000, 1, apply_criteria=False), spec)

Covariates can also be resampled from a table of real subjects (``resample:`` in the spec,
:class:`ResampleSpec`), a population fit becomes a cohort with :func:`fit_cohort_spec`, and a
population-model file (``population.yaml`` of `insilico fit` / `insilico import nonmem`) joined
with a covariate spec with :func:`load_population_cohort`.
"""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.cohorts._compile import CompiledCohort, compile_spec
from insilico.cohorts._derived import (
    bmi,
    bsa_mosteller,
    crcl_cockcroft_gault,
    egfr_ckd_epi_2021,
    lbw_janmahasatian,
)
from insilico.cohorts._draw import COHORT_STREAM, assign_strata, draw_cohort, subject_key
from insilico.cohorts._fit import fit_cohort_spec, population_from_estimates
from insilico.cohorts._io import load_cohort, save_cohort
from insilico.cohorts._load import load_cohort_spec
from insilico.cohorts._model import cohort_model
from insilico.cohorts._population import (
    PopulationCohort,
    PopulationCohortSpec,
    is_population_model,
    load_population_cohort,
)
from insilico.cohorts._resample import ROW as RESAMPLE_ROW
from insilico.cohorts._resample import ResampleTable, read_resample_table
from insilico.cohorts._spec import (
    CohortSpec,
    CorrelationSpec,
    CovariateSpec,
    CriteriaSpec,
    ResampleSpec,
    StrataSpec,
    StratumLevelSpec,
)
from insilico.cohorts._validate import validation_report
from insilico.population import (  # the parameter model (re-exported: its home is insilico.population)
    RESIDUAL_STREAM,
    BSVSpec,
    EffectSpec,
    IOVSpec,
    ParameterSpec,
    ResidualErrorSpec,
    apply_residual_error,
    cv_percent_to_variance,
    omega_from,
)

__all__ = [
    "COHORT_STREAM",
    "RESAMPLE_ROW",
    "RESIDUAL_STREAM",
    "BSVSpec",
    "CohortSpec",
    "CompiledCohort",
    "CorrelationSpec",
    "CovariateSpec",
    "CriteriaSpec",
    "EffectSpec",
    "IOVSpec",
    "ParameterSpec",
    "PopulationCohort",
    "PopulationCohortSpec",
    "ResampleSpec",
    "ResampleTable",
    "ResidualErrorSpec",
    "StrataSpec",
    "StratumLevelSpec",
    "apply_residual_error",
    "assign_strata",
    "bmi",
    "bsa_mosteller",
    "cohort_model",
    "compile_spec",
    "crcl_cockcroft_gault",
    "cv_percent_to_variance",
    "draw_cohort",
    "egfr_ckd_epi_2021",
    "fit_cohort_spec",
    "is_population_model",
    "lbw_janmahasatian",
    "load_cohort",
    "load_cohort_spec",
    "load_population_cohort",
    "omega_from",
    "population_from_estimates",
    "read_resample_table",
    "save_cohort",
    "subject_key",
    "validation_report",
]
