"""Results storage: the trial-store layout, one Zarr store per trial written region by region,
completion records, reading helpers and the ``ds.insilico`` xarray accessor (registered on import)."""
from insilico.store import _accessor  # noqa: F401  (registers ds.insilico)
from insilico.store._layout import EVERY_ARM, NOT_ALLOCATED, NOT_SIMULATED, Endpoint, Layout, Variable, trial_layout
from insilico.store._results import (
                                     analysis_tables,
                                     arm_values,
                                     covariate_names,
                                     endpoint_names,
                                     is_complete,
                                     observed_names,
                                     output_names,
                                     parameter_names,
                                     simulated_pairs,
                                     stored_json,
                                     subject_variable_names,
)
from insilico.store._zarr import (
                                     create_store,
                                     done_units,
                                     finalize,
                                     mark_done,
                                     open_results,
                                     read_attrs,
                                     remove_store,
                                     write_region,
)

__all__ = [
    "EVERY_ARM", "NOT_ALLOCATED", "NOT_SIMULATED", "Endpoint", "Layout", "Variable", "trial_layout",
    "analysis_tables", "arm_values", "covariate_names", "endpoint_names", "is_complete", "observed_names",
    "output_names", "parameter_names", "simulated_pairs", "stored_json", "subject_variable_names",
    "create_store", "write_region", "mark_done", "done_units", "finalize", "open_results", "read_attrs",
    "remove_store",
]
