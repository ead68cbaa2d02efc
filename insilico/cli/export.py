"""`insilico export RESULTS --format nonmem|adam|parquet --out PATH`: export a results store."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import Partial, console, handle_errors, open_store


@handle_errors
def export_command(
    results: Path = typer.Argument(..., help="Results store (.zarr)."),
    format: str = typer.Option(..., "--format", "-f", help="nonmem (CSV file), adam (directory of CSV files) "
                                                           "or parquet (directory of long tables)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (nonmem) or directory (adam, parquet)."),
    replicate: int | None = typer.Option(None, "--replicate", min=0, help="Only this replicate (nonmem: default 0; "
                                                                      "adam/parquet: default all)."),
    dv: str | None = typer.Option(None, "--dv", help="nonmem DV output (default conc_obs if the store has "
                                                        "residual error, else conc)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier insilico export."),
    partial: Partial = False,
):
    """Export simulated data as a NONMEM data set, ADaM-like tables or Parquet tables."""
    ds = open_store(results, partial=partial, verify=True)
    path = ds.insilico.export(format.lower(), out, replicate=replicate, dv=dv, overwrite=overwrite)
    console.print(f"wrote {format.lower()} export to {path}", highlight=False)
