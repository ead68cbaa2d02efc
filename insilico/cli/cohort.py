"""`insilico cohort SPEC --out PATH`: draw a virtual cohort and show its validation report."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import console, handle_errors, print_table


@handle_errors
def cohort_command(
    spec: Path = typer.Argument(..., help="Cohort spec (YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .zarr, .csv or .parquet."),
    n: int = typer.Option(1000, "--n", min=1, help="Number of subjects."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a cohort insilico saved there."),
):
    """Draw N virtual subjects, save them, and print achieved vs specified marginals."""
    from insilico.cohorts import draw_cohort, load_cohort_spec, save_cohort, validation_report
    from insilico.store import check_out, replace_owned
    check_out(out, folder=str(out).rstrip("/").lower().endswith(".zarr"))
    if out.exists() and not overwrite:
        replace_owned(out, "cohort", overwrite=False)       # refuses: already exists
    s = load_cohort_spec(spec)
    ds = draw_cohort(s, n=n, seed=seed)
    report = validation_report(draw_cohort(s, n=n, seed=seed, apply_criteria=False), s)
    save_cohort(ds, out, overwrite=overwrite)
    print_table(report, f"{s.name}: achieved vs specified (unconstrained draw, N = {n})")
    console.print(f"acceptance rate of criteria: {float(ds.attrs.get('acceptance_rate', 1.0)):.3f}; saved {out}")
