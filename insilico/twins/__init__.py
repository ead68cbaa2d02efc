"""Patient digital twins: one patient = a prior (population model or fit) + covariates + an
append-only history of doses and levels, with a Bayesian posterior over the random effects
updated at every new record, forecasts under candidate regimens, dose recommendation and early
warning. Fleets of twins update in one vmapped, jitted batch.

    from insilico import twins
    twins.create("twins.zarr", "P0001", "vanco.yaml", {"WT": 72, "CRCL": 80})
    twins.update("twins.zarr", "P0001", "new_rows.csv")          # MAP + Laplace, a new version
    ds = twins.forecast("twins.zarr", "P0001", ["1000 mg q12h x6, 1 h infusion", "current"], until=96)
    rec = twins.recommend("twins.zarr", "P0001", "trough in [10, 20] mg/L", doses=range(500, 2501, 250),
                          intervals=[8, 12, 24], durations=[1])
    twins.risk("twins.zarr", "P0001", "conc", above=30, within=48)
    twins.brier_score(p, outcomes); twins.reliability_table(p, outcomes)     # calibration of early warnings

The HTML report of a twin is `insilico.analysis.twin_report.write_twin_report`; the neutropenia
early-warning example (Friberg model) is ``examples/twins/neutropenia.yaml``.

Conventions: times in h from the twin's own time origin, amounts mg, concentrations mg/L; eta
named ETA1, ETA2, ... in the order of the population model's ``bsv.parameters``; with inter-occasion
variability (``iov``) the random effects are ``[eta, kappa_1, ..., kappa_K]`` as `insilico.estimation`
defines them, each row's occasion from the prior's ``iov.column`` (or ``iov.starts``), and
predictions treat the regimen to come as a new occasion (`insilico.twins._data`, `_api`, `_predict`). The posterior,
the store layout and the prediction rules are documented in `insilico.twins._posterior`,
`insilico.store` (twin store) and `insilico.twins._predict`.
"""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.twins._api import (
    TwinState,
    create,
    forecast,
    history,
    laplace_posteriors,
    load_state,
    posterior_sample,
    recommend,
    reproduce,
    risk,
    show,
    update,
    update_all,
)
from insilico.twins._calibration import brier_score, reliability_table, spiegelhalter_z
from insilico.twins._posterior import STATUS, Posterior, sample_posterior
from insilico.twins._prior import TwinModel, load_prior, twin_model
from insilico.twins._text import RegimenText, Target, parse_covariates, parse_grid, parse_regimen, parse_target

__all__ = ["STATUS", "Posterior", "RegimenText", "Target", "TwinModel", "TwinState", "brier_score", "create",
           "forecast", "history", "laplace_posteriors", "load_prior", "load_state", "parse_covariates", "parse_grid",
           "parse_regimen", "parse_target", "posterior_sample", "recommend", "reliability_table", "reproduce",
           "risk", "sample_posterior", "show", "spiegelhalter_z", "twin_model", "update", "update_all"]
