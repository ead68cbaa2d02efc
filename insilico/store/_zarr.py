"""One Zarr store per trial, written region by region (layout: `insilico.store._layout`).

Metadata (shapes, chunking, attributes, Zarr fill values) is written first with
``compute=False``; each work unit then writes whole Zarr chunks with ``to_zarr(region=...)`` and
sets its entry of the completion record ``_done``; metadata is consolidated once at the end.
A chunk no unit has written reads as the variable's fill value (NaN, −1 "not simulated",
−2 "not allocated", 0 "not done"). Units write every chunk of their region, even one equal to
the fill value, so a done unit whose chunk file is missing is recognisably damaged
(`damaged_chunks`); variables over (replicate, subject) are written by the arm-0 unit.

A store is created whole or not at all: its metadata is written in a hidden sibling folder
(``.<name>.creating``) that is renamed to ``path`` once complete, so a run killed while creating
leaves no store (``--resume`` then starts it afresh). A run killed at its end, while the analysis
attributes and the consolidated metadata are written, leaves every unit done: the store reads as
complete (unconsolidated, its analysis then computed from the values) and ``--resume`` writes the
rest; zarr writes each file through a temporary ``*.partial`` file renamed into place, and
`finalize` removes those a kill left. A write that fails for lack of space (ENOSPC, EFBIG) raises
an `OSError` naming the store when the system names no file.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from insilico.errors import SpecError
from insilico.store._layout import Layout
from insilico.store._safety import KIND_ATTR, DamagedStore, IncompleteResults


@contextmanager
def _writing(path):
    """Re-raise an `OSError` that names no file (a failed ``write()``: ENOSPC, EFBIG, EDQUOT) with
    the store's ``path`` as its filename, so the error says where the write failed."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def creating_path(path: Path) -> Path:
    """The hidden sibling a store at ``path`` is created in before it is renamed into place."""
    path = Path(path)
    return path.with_name(f".{path.name}.creating")


def create_store(path: Path, layout: Layout, attrs: dict, *, kind: str = "trial") -> None:
    """Write the metadata of an empty store with ``layout`` and dataset attributes ``attrs``
    (plus the ownership marker ``insilico_store: kind``), atomically: built in `creating_path`
    and renamed to ``path`` (which must not exist). Each variable's Zarr ``fill_value`` is its
    layout fill, so unwritten chunks read as missing."""
    path = Path(path)
    tmp = creating_path(path)
    if tmp.exists():
        shutil.rmtree(tmp)                     # left by a run killed while creating
    attrs = {KIND_ATTR: kind, **attrs}
    sizes = layout.sizes
    data, encoding = {}, {}
    for name, var in layout.variables.items():
        shape = tuple(sizes[d] for d in var.dims)
        chunks = layout.chunks(name)
        data[name] = (var.dims, da.broadcast_to(np.asarray(var.fill, dtype=var.dtype), shape, chunks=chunks),
                      var.attrs)   # a lazy placeholder: compute=False writes metadata only
        encoding[name] = {"chunks": chunks, "fill_value": var.dtype.type(var.fill)}
    ds = xr.Dataset(data, coords=layout.coords, attrs=attrs)
    with _writing(path):
        ds.to_zarr(tmp, mode="w", compute=False, encoding=encoding, consolidated=False, zarr_format=3)
    os.rename(tmp, path)


def write_region(path: Path, variables: dict, region: dict) -> None:
    """Write numpy variables ``{name: (dims, array)}`` into ``region`` (``{dim: slice}``, whole
    chunks; dims not named are written whole). Every chunk is written, also one equal to the fill
    value, so a missing chunk of a finished unit means damage. The variables are written
    concurrently through zarr's asynchronous API: the same chunk files as
    ``Dataset.to_zarr(region=...)`` (the layout's variables are plain numeric arrays, no CF
    encoding), at about half the cost per work unit."""
    from zarr.core.sync import sync

    with _writing(path):
        sync(_write_region(str(path), variables, region))


async def _write_region(path: str, variables: dict, region: dict) -> None:
    import asyncio

    import zarr.api.asynchronous as za

    async def one(name, dims, values):
        arr = (await za.open_array(store=path, path=name, mode="r+")).with_config({"write_empty_chunks": True})
        await arr.setitem(tuple(region.get(d, slice(None)) for d in dims), np.asarray(values))

    await asyncio.gather(*(one(k, dims, v) for k, (dims, v) in variables.items()))


def mark_done(path: Path, replicate: int, arm: int, chunk: int) -> None:
    """Record work unit (replicate, arm, chunk) as completed (after its regions are written)."""
    with _writing(path):
        arr = zarr.open_array(str(Path(path) / "_done"), mode="r+")
        arr[replicate, arm, chunk] = 1


def done_units(path: Path, *, tolerant: bool = False) -> np.ndarray:
    """The completion record, (replicate, arm, chunk) of 0/1. ``tolerant``: an entry whose chunk
    cannot be read counts as not done (instead of raising), so a resume recomputes that unit."""
    arr = zarr.open_array(str(Path(path) / "_done"), mode="r")
    try:
        return arr[...]
    except Exception:
        if not tolerant:
            raise
    out = np.zeros(arr.shape, np.int8)
    for idx in np.ndindex(*arr.shape):      # one unit per chunk
        try:
            out[idx] = arr[idx]
        except Exception:
            out[idx] = 0
    return out


_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")


def remove_partial_writes(path: Path) -> int:
    """Remove the temporary files of writes a killed process left in the store at ``path`` (zarr
    writes each file as ``<name>.<32 hex digits>.partial`` and renames it into place; a kill
    between the two leaves it, and zarr then warns about it on every open). Call only while
    holding the writer's lock. Returns how many were removed."""
    stale = [p for p in Path(path).rglob("*.partial") if _PARTIAL.search(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def finalize(path: Path, attrs: dict) -> None:
    """Add dataset attributes ``attrs`` and consolidate the metadata (once, at the end of a run,
    after removing what writes interrupted by a kill left: `remove_partial_writes`)."""
    remove_partial_writes(path)
    with _writing(path):
        group = zarr.open_group(str(path), mode="r+")
        group.attrs.update(attrs)
        with warnings.catch_warnings():   # consolidated metadata is a zarr-python extension for format 3
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(path))


def read_attrs(path: Path) -> dict:
    """The dataset attributes of the store at ``path``."""
    return dict(zarr.open_group(str(path), mode="r").attrs)


def open_results(path, *, dask: bool = True, partial: bool = False, verify: bool = False) -> xr.Dataset:
    """Open a trial's results store as a lazy xarray Dataset: dask-backed, or with ``dask=False``
    lazily indexed Zarr arrays (faster to load whole in one process: no task per chunk).

    A store whose run did not finish raises `IncompleteResults` (a `SpecError`: units done /
    total and how to resume) unless ``partial=True``; then ``ds.insilico.complete`` is False and
    units not run read as missing. ``verify=True`` also reads every chunk of the done units and
    raises `DamagedStore` naming the variables and chunks that are missing or unreadable."""
    kw = {} if dask else {"chunks": None}
    path = Path(path)
    if not path.exists():
        raise SpecError("results", f"no results store at {path}")
    try:
        try:
            ds = xr.open_zarr(path, consolidated=True, **kw)
        except (KeyError, ValueError, FileNotFoundError):  # not consolidated yet (run unfinished)
            ds = xr.open_zarr(path, consolidated=False, **kw)
    except Exception as e:  # not a zarr store or unreadable
        raise SpecError("results", f"cannot open {path} as a results store: {e}") from None
    if "_done" in ds.variables and not partial:
        try:
            done = done_units(path)
        except Exception as e:
            raise DamagedStore(path, [("_done", (), None)]) from e
        if not done.all():
            raise IncompleteResults(path, int(done.sum()), done.size)
    if verify:
        damage = damaged_chunks(path)
        if damage:
            raise DamagedStore(path, damage)
    return ds


def _chunk_ranges(arr, dims, unit) -> list[tuple[int, ...]] | None:
    """Chunk indices of array ``arr`` (dimension names ``dims``) written by ``unit`` = (replicate,
    arm, chunk); None when the unit writes none of it (subject variables: only the arm-0 unit)."""
    r, a, k = unit
    if "arm" not in dims and a != 0:
        return None
    fixed = {"replicate": r, "arm": a, "subject": k, "chunk": k}
    axes = [[fixed[d]] if d in fixed else range(n) for d, n in zip(dims, arr.cdata_shape)]
    return list(itertools.product(*axes))


def damaged_chunks(path: Path, units=None) -> list[tuple[str, tuple[int, ...], tuple[int, int, int]]]:
    """Chunks of the done work units (or of ``units``) that are missing or cannot be decoded:
    ``(variable, chunk index, unit)``. Reads every such chunk once."""
    group = zarr.open_group(str(path), mode="r")
    if units is None:
        units = [tuple(int(i) for i in u) for u in np.argwhere(done_units(path, tolerant=True) == 1)]
    out = []
    for name, arr in group.arrays():
        dims = tuple(arr.metadata.dimension_names or ())
        if name == "_done" or not {"replicate", "subject"} <= set(dims):
            continue
        for unit in units:
            for c in _chunk_ranges(arr, dims, unit) or []:
                key = "/".join(["c", *map(str, c)])
                if not (Path(path) / name / key).is_file():
                    out.append((name, c, unit))
                    continue
                try:
                    arr.blocks[c]
                except Exception:   # any codec/decompression error: the chunk is unreadable
                    out.append((name, c, unit))
    return out


def reset_units(path: Path, units) -> None:
    """Mark work units (replicate, arm, chunk) as not done, so a resume recomputes them."""
    arr = zarr.open_array(str(Path(path) / "_done"), mode="r+")
    for r, a, k in units:
        arr[r, a, k] = 0


def remove_store(path: Path) -> None:
    """Delete the store at ``path`` (no check of what it is: see `insilico.store.replace_owned`)."""
    if Path(path).exists():
        shutil.rmtree(path)
