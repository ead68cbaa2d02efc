"""`insilico cohort SPEC --out PATH`: draw a virtual cohort and show its validation report."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import console, handle_errors, print_table


@handle_errors
def cohort_command(
    spec: Path = typer.Argument(..., help="Cohort spec (YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .zarr, .csv or .parquet."),
    n: int = typer.Option(1000, "--n", help="Number of subjects."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
):
    """Draw N virtual subjects, save them, and print achieved vs specified marginals."""
    from insilico.cohorts import draw_cohort, load_cohort_spec, save_cohort, validation_report
    from insilico.errors import SpecError
    if out.exists() and not overwrite:
        raise SpecError("--out", f"{out} already exists; use --overwrite to replace it")
    if n < 1:
        raise SpecError("--n", "must be >= 1")
    s = load_cohort_spec(spec)
    ds = draw_cohort(s, n=n, seed=seed)
    report = validation_report(draw_cohort(s, n=n, seed=seed, apply_criteria=False), s)
    save_cohort(ds, out)
    print_table(report, f"{s.name}: achieved vs specified (unconstrained draw, N = {n})")
    console.print(f"acceptance rate of criteria: {float(ds.attrs.get('acceptance_rate', 1.0)):.3f}; saved {out}")
