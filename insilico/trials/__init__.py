"""Trials: spec schema, design randomness, endpoints, execution on Dask, analysis."""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.trials._analysis import analyse
from insilico.trials._fit import FitSource
from insilico.trials._prepare import prepare
from insilico.trials._run import run
from insilico.trials._spec import TrialSpec, conditional_probabilities, cumulative_probabilities, load_trial_spec

__all__ = ["FitSource", "TrialSpec", "analyse", "conditional_probabilities", "cumulative_probabilities",
           "load_trial_spec", "prepare", "run"]
