"""Trials: spec schema, design randomness, endpoints, execution on Dask, analysis."""
from insilico.trials._run import run
from insilico.trials._spec import TrialSpec, load_trial_spec

__all__ = ["run", "load_trial_spec", "TrialSpec"]
