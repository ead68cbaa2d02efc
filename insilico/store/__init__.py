"""Results storage: the trial-store layout, one Zarr store per trial written region by region,
completion records, reading helpers, the ``ds.insilico`` xarray accessor (registered on import), and
the data-safety rules every writer follows (ownership markers, ``--out`` checks, the writer's lock,
input digests: `insilico.store._safety`)."""
from insilico.store import _accessor  # noqa: F401  (registers ds.insilico)
from insilico.store._fit import open_fit, write_fit, write_whole
from insilico.store._layout import EVERY_ARM, NOT_ALLOCATED, NOT_SIMULATED, Endpoint, Layout, Variable, trial_layout
from insilico.store._results import (
                                     analysis_tables,
                                     arm_values,
                                     covariate_names,
                                     endpoint_names,
                                     flagged_counts,
                                     flagged_subjects,
                                     is_complete,
                                     observed_names,
                                     output_names,
                                     parameter_names,
                                     simulated_pairs,
                                     status_meanings,
                                     stored_json,
                                     subject_variable_names,
)
from insilico.store._safety import (
                                     KIND_ATTR,
                                     MANIFEST,
                                     DamagedStore,
                                     IncompleteResults,
                                     changed_inputs,
                                     check_out,
                                     clear_owned_files,
                                     digest,
                                     lock_path,
                                     recognise,
                                     replace_owned,
                                     write_manifest,
                                     writer_lock,
)
from insilico.store._zarr import (
                                     create_store,
                                     creating_path,
                                     damaged_chunks,
                                     done_units,
                                     finalize,
                                     mark_done,
                                     open_results,
                                     read_attrs,
                                     remove_store,
                                     reset_units,
                                     write_region,
)

__all__ = [
    "EVERY_ARM", "NOT_ALLOCATED", "NOT_SIMULATED", "Endpoint", "Layout", "Variable", "trial_layout",
    "analysis_tables", "arm_values", "covariate_names", "endpoint_names", "flagged_counts", "flagged_subjects",
    "is_complete", "observed_names", "output_names", "parameter_names", "simulated_pairs", "status_meanings",
    "stored_json", "subject_variable_names",
    "create_store", "write_region", "mark_done", "done_units", "finalize", "open_results", "read_attrs",
    "remove_store", "creating_path", "damaged_chunks", "reset_units",
    "KIND_ATTR", "MANIFEST", "DamagedStore", "IncompleteResults", "changed_inputs", "check_out",
    "clear_owned_files", "digest", "lock_path", "recognise", "replace_owned", "write_manifest", "writer_lock",
    "open_fit", "write_fit", "write_whole",
]
from insilico.store._twin import (  # the twin store
                                     ROW_COLUMNS,
                                     TWIN_FORMAT,
                                     TwinVersion,
                                     append_twin_versions,
                                     check_patient_id,
                                     create_twin,
                                     open_twin_store,
                                     read_twin,
                                     read_twin_versions,
                                     rows_digest,
                                     twin_ids,
)

__all__ += ["ROW_COLUMNS", "TWIN_FORMAT", "TwinVersion", "append_twin_versions", "check_patient_id", "create_twin",
            "open_twin_store", "read_twin", "read_twin_versions", "rows_digest", "twin_ids"]
