"""Results storage: one Zarr store per trial, region writes, completion records."""
from insilico.store._zarr import (create_store, done_units, finalize, mark_done, open_results, read_attrs,
                                  remove_store, write_region)

__all__ = ["create_store", "write_region", "mark_done", "done_units", "finalize", "open_results",
           "read_attrs", "remove_store"]
