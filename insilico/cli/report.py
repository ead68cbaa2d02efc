"""`insilico report RESULTS --out report.html`: one self-contained HTML report of a results store."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import Partial, console, handle_errors, open_store


@handle_errors
def report_command(
    results: Path = typer.Argument(..., help="Results store (.zarr)."),
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Tables only, no figures."),
    dpi: int = typer.Option(90, "--dpi", min=30, max=600, help="Resolution of the embedded figures."),
    partial: Partial = False,
):
    """Write an HTML report (spec, cohort validation, endpoint tables, PoS/PTA/power, figures)."""
    ds = open_store(results, partial=partial, verify=True)
    path = ds.insilico.report(out, overwrite=overwrite, plots=not no_plots, dpi=dpi)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
