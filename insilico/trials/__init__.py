"""Trials: spec schema, design randomness, endpoints, execution on Dask, analysis."""
from insilico.trials._run import dask_client, run
from insilico.trials._spec import TrialSpec, apply_overrides, load_trial_spec

__all__ = ["run", "load_trial_spec", "apply_overrides", "TrialSpec", "dask_client"]
