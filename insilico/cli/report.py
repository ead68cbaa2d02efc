"""`insilico report RESULTS --out report.html`: one self-contained HTML report of a results store
or of a fit store (`insilico fit ... --out fit.zarr`; ``--data`` adds the VPC)."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import Partial, console, handle_errors, open_store


@handle_errors
def report_command(
    results: Path = typer.Argument(..., help="Results store or fit store (.zarr)."),
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Tables only, no figures."),
    dpi: int = typer.Option(90, "--dpi", min=30, max=600, help="Resolution of the embedded figures."),
    data: Path = typer.Option(None, "--data", help="Fit store only: the fitted data set (CSV); adds the VPC and "
                                                   "prediction-corrected VPC."),
    n_sim: int = typer.Option(200, "--n-sim", min=2, help="Fit store only: simulations of the VPC."),
    seed: int = typer.Option(0, "--seed", min=0, help="Fit store only: seed of the VPC simulations."),
    partial: Partial = False,
):
    """Write an HTML report: of a trial (spec, cohort validation, endpoint tables, PoS/PTA/power,
    figures) or of a fit (estimates, OFV, convergence, shrinkage, goodness-of-fit plots, VPC)."""
    from insilico.errors import SpecError
    from insilico.store import recognise
    if recognise(results) == "fit":
        from insilico.analysis.fit_report import write_fit_report
        from insilico.store import open_fit
        path = write_fit_report(open_fit(results), out, data, overwrite=overwrite, plots=not no_plots, dpi=dpi,
                                n_sim=n_sim, seed=seed)
    else:
        for option, given in (("--data", data is not None), ("--n-sim", n_sim != 200), ("--seed", seed != 0)):
            if given:
                raise SpecError(option, f"applies to fit stores only; {results} is not one")
        ds = open_store(results, partial=partial, verify=True)
        path = ds.insilico.report(out, overwrite=overwrite, plots=not no_plots, dpi=dpi)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
