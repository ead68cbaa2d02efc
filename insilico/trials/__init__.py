"""Trials: spec schema, design randomness, endpoints, execution on Dask, analysis."""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.trials._analysis import analyse
from insilico.trials._be_spec import (
    CrossoverTrialSpec,
    be_summary,
    check_crossover,
    is_crossover_spec,
    load_crossover_spec,
    open_crossover,
    run_crossover,
)
from insilico.trials._crossover import (
    CrossoverDesign,
    CrossoverResult,
    Formulation,
    be_power,
    simulate_crossover,
    williams_sequences,
)
from insilico.trials._fit import FitSource
from insilico.trials._prepare import prepare
from insilico.trials._run import run
from insilico.trials._spec import TrialSpec, conditional_probabilities, cumulative_probabilities, load_trial_spec

__all__ = ["CrossoverDesign", "CrossoverResult", "CrossoverTrialSpec", "FitSource", "Formulation", "TrialSpec",
           "analyse", "be_power", "be_summary", "check_crossover", "conditional_probabilities",
           "cumulative_probabilities", "is_crossover_spec", "load_crossover_spec", "load_trial_spec", "open_crossover",
           "prepare", "run", "run_crossover", "simulate_crossover", "williams_sequences"]
