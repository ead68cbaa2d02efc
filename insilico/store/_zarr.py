"""One Zarr store per trial, written region by region (layout: `insilico.store._layout`).

Metadata (shapes, chunking, attributes, Zarr fill values) is written first with
``compute=False``; each work unit then writes whole Zarr chunks with ``to_zarr(region=...)`` and
sets its entry of the completion record ``_done``; metadata is consolidated once at the end.
A chunk no unit has written reads as the variable's fill value (NaN, −1 "not simulated",
−2 "not allocated", 0 "not done").
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
from insilico.store._layout import Layout


def create_store(path: Path, layout: Layout, attrs: dict) -> None:
    """Write the metadata of an empty store with ``layout`` and dataset attributes ``attrs``.
    Each variable's Zarr ``fill_value`` is its layout fill, so unwritten chunks read as missing."""
    sizes = layout.sizes
    data, encoding = {}, {}
    for name, var in layout.variables.items():
        shape = tuple(sizes[d] for d in var.dims)
        chunks = layout.chunks(name)
        data[name] = (var.dims, da.full(shape, var.fill, dtype=var.dtype, chunks=chunks), var.attrs)
        encoding[name] = {"chunks": chunks, "fill_value": var.dtype.type(var.fill)}
    ds = xr.Dataset(data, coords=layout.coords, attrs=attrs)
    ds.to_zarr(path, mode="w", compute=False, encoding=encoding, consolidated=False, zarr_format=3)


def write_region(path: Path, variables: dict, region: dict) -> None:
    """Write numpy variables ``{name: (dims, array)}`` into ``region`` (whole chunks)."""
    ds = xr.Dataset({k: v for k, v in variables.items()})
    ds.to_zarr(path, mode="r+", region=region, consolidated=False)


def mark_done(path: Path, replicate: int, arm: int, chunk: int) -> None:
    """Record work unit (replicate, arm, chunk) as completed (after its regions are written)."""
    arr = zarr.open_array(str(Path(path) / "_done"), mode="r+")
    arr[replicate, arm, chunk] = 1


def done_units(path: Path) -> np.ndarray:
    """The completion record, (replicate, arm, chunk) of 0/1."""
    return zarr.open_array(str(Path(path) / "_done"), mode="r")[...]


def finalize(path: Path, attrs: dict) -> None:
    """Add dataset attributes ``attrs`` and consolidate the metadata (once, at the end of a run)."""
    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update(attrs)
    with warnings.catch_warnings():   # consolidated metadata is a zarr-python extension for format 3
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


def read_attrs(path: Path) -> dict:
    """The dataset attributes of the store at ``path``."""
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
