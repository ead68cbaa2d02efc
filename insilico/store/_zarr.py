"""One Zarr store per trial, written region by region.

Layout (all variables carry ``units``/``long_name``):

* dims ``replicate``, ``arm`` (arm names), ``subject`` (global index), ``time`` (nominal
  sampling times, h), ``chunk`` (work-unit index along ``subject``);
* ``(replicate, subject)``: covariates, individual parameters, ``allocated_arm`` (−1 in a
  counterfactual design), ``dropout_time`` (h, inf for completers), ``obs_time`` (actual
  sampling times when jittered);
* ``(replicate, arm, subject)``: endpoints, ``status`` (engine status, −1 = not simulated in
  that arm), ``doses_taken``;
* ``(replicate, arm, subject, time)``: model outputs at the sampling times (NaN where not
  sampled, after dropout or not allocated) and ``<output>_obs`` with residual error;
* ``_done (replicate, arm, chunk)``: completion record, set to 1 by a work unit after its
  region is written; a resumed run only computes units still at 0.

Metadata (shapes, chunking, attributes) is written first with ``compute=False``; each work
unit then writes whole Zarr chunks with ``to_zarr(region=...)``; metadata is consolidated once
at the end. Chunks: 1 replicate × 1 arm × ``chunk_size`` subjects × all times.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from insilico.errors import SpecError


def create_store(path: Path, template: dict, coords: dict, attrs: dict, chunk_size: int) -> None:
    """Write the metadata of an empty store. ``template`` maps name -> (dims, dtype, fill, attrs)."""
    sizes = {k: len(v) if not isinstance(v, tuple) else len(v[1]) for k, v in coords.items()}
    sizes["chunk"] = int(np.ceil(sizes["subject"] / chunk_size))
    chunks_for = {"replicate": 1, "arm": 1, "subject": chunk_size, "chunk": 1}
    data = {}
    encoding = {}
    for name, (dims, dtype, fill, vattrs) in template.items():
        shape = tuple(sizes[d] for d in dims)
        chunks = tuple(chunks_for.get(d, sizes[d]) for d in dims)
        data[name] = (dims, da.full(shape, fill, dtype=dtype, chunks=chunks), vattrs)
        encoding[name] = {"chunks": chunks}
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds.to_zarr(path, mode="w", compute=False, encoding=encoding, consolidated=False, zarr_format=3)


def write_region(path: Path, variables: dict, region: dict) -> None:
    """Write numpy variables ``{name: (dims, array)}`` into ``region`` (whole chunks)."""
    ds = xr.Dataset({k: v for k, v in variables.items()})
    ds.to_zarr(path, mode="r+", region=region, consolidated=False)


def mark_done(path: Path, replicate: int, arm: int, chunk: int) -> None:
    arr = zarr.open_array(str(Path(path) / "_done"), mode="r+")
    arr[replicate, arm, chunk] = 1


def done_units(path: Path) -> np.ndarray:
    return zarr.open_array(str(Path(path) / "_done"), mode="r")[...]


def finalize(path: Path, attrs: dict) -> None:
    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update(attrs)
    with warnings.catch_warnings():   # consolidated metadata is a zarr-python extension for format 3
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


def read_attrs(path: Path) -> dict:
    return dict(zarr.open_group(str(path), mode="r").attrs)


def open_results(path, *, dask: bool = True) -> xr.Dataset:
    """Open a trial's results store as a lazy xarray Dataset: dask-backed, or with ``dask=False``
    lazily indexed Zarr arrays (faster to load whole in one process: no task per chunk)."""
    kw = {} if dask else {"chunks": None}
    path = Path(path)
    if not path.exists():
        raise SpecError("results", f"no results store at {path}")
    try:
        try:
            return xr.open_zarr(path, consolidated=True, **kw)
        except (KeyError, ValueError, FileNotFoundError):  # not consolidated yet (run unfinished)
            return xr.open_zarr(path, consolidated=False, **kw)
    except Exception as e:  # not a zarr store or unreadable
        raise SpecError("results", f"cannot open {path} as a results store: {e}") from None


def remove_store(path: Path) -> None:
    if Path(path).exists():
        shutil.rmtree(path)
