"""`insilico plot RESULTS --out DIR`: write the standard figures of a results store as PNGs."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import Partial, console, handle_errors, open_store


@handle_errors
def plot_command(
    results: Path = typer.Argument(..., help="Results store (.zarr)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the PNG files (created if needed)."),
    dpi: int = typer.Option(110, "--dpi", min=30, max=600, help="Resolution of the PNG files."),
    individuals: int = typer.Option(20, "--individuals", min=0, help="Individual curves per arm in profile plots."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for choosing the individual curves."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace PNG files of an earlier `insilico plot`."),
    partial: Partial = False,
):
    """Plot profiles, endpoint distributions, exposure-response, PTA and power (PNG files)."""
    paths = open_store(results, partial=partial, verify=True).insilico.plot.all(
        out, dpi=dpi, n_individual=individuals, seed=seed, overwrite=overwrite)
    for p in paths:
        console.print(str(p), highlight=False, soft_wrap=True)
