"""The fit store: one Zarr store per fit (`insilico.estimation.FitResult.to_dataset`), written
whole and atomically (built beside ``--out`` and renamed), marked ``insilico_store: fit``."""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import xarray as xr

from insilico.errors import SpecError
from insilico.store._safety import KIND_ATTR, check_out, replace_owned, writer_lock
from insilico.store._zarr import creating_path

__all__ = ["open_fit", "write_fit", "write_whole"]


def write_whole(ds: xr.Dataset, path, kind: str, *, overwrite: bool = False, option: str = "--out") -> Path:
    """Write ``ds`` whole and atomically as an insilico store of ``kind`` (``fit``, ``crossover``):
    ``--out`` checks, the writer's lock, an existing ``path`` replaced only with ``overwrite`` and
    only when it is a ``kind`` store insilico wrote (`SpecError` otherwise), built beside ``path``
    and renamed into place."""
    path = check_out(path, option=option)
    with writer_lock(path, option=option):
        replace_owned(path, kind, overwrite=overwrite, option=option)
        tmp = creating_path(path)
        if tmp.exists():
            shutil.rmtree(tmp)
        ds = ds.copy()
        ds.attrs = {KIND_ATTR: kind, **ds.attrs}
        with warnings.catch_warnings():   # fixed-length string coordinates/variables: no v3 spec yet
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
            ds.to_zarr(tmp, mode="w", consolidated=False, zarr_format=3)
        os.rename(tmp, path)
    return path


def write_fit(ds: xr.Dataset, path, *, overwrite: bool = False, option: str = "--out") -> Path:
    """Write the fit Dataset ``ds`` to the store ``path`` (`write_whole` with kind ``fit``)."""
    return write_whole(ds, path, "fit", overwrite=overwrite, option=option)


def open_fit(path) -> xr.Dataset:
    """Open a fit store (loaded into memory). `SpecError` if ``path`` is not one."""
    path = Path(path)
    if not path.is_dir():
        raise SpecError("fit", f"{path} is not a fit store (no such folder)")
    try:
        ds = xr.open_zarr(path, consolidated=False).load()
    except Exception as e:
        raise SpecError("fit", f"{path} is not a readable fit store: {type(e).__name__}: {e}") from None
    if ds.attrs.get(KIND_ATTR) != "fit":
        kind = ds.attrs.get(KIND_ATTR) or "not an insilico store"
        raise SpecError("fit", f"{path} is not a fit store (it is {kind})")
    return ds
