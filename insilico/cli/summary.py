"""`insilico summary RESULTS`: endpoint and comparison tables per arm."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer

from insilico.cli._common import console, handle_errors, print_table


def show_summary(ds) -> None:
    analysis = ds.attrs.get("analysis")
    if analysis is None:
        from insilico.trials._analysis import analyse
        from insilico.trials._spec import TrialSpec
        analysis = analyse(ds, TrialSpec.model_validate_json(ds.attrs["spec"]))
    elif isinstance(analysis, str):
        analysis = json.loads(analysis)
    name = ds.attrs.get("trial", "trial")
    for ep, rows in analysis.get("summary", {}).items():
        print_table(pd.DataFrame(rows), f"{name}: {ep} by arm")
    for ep, rows in analysis.get("comparisons", {}).items():
        df = pd.DataFrame(rows)
        if "replicate" in df and df["replicate"].nunique() > 1:
            df = df[df["replicate"] == 0]
            title = f"{name}: {ep} vs reference (replicate 0)"
        else:
            title = f"{name}: {ep} vs reference"
        print_table(df, title)
    for key, title in (("probability_of_success", "probability of success"),
                       ("pta", "probability of target attainment"), ("power", "power vs N per arm")):
        if analysis.get(key):
            print_table(pd.DataFrame(analysis[key]), f"{name}: {title}")


@handle_errors
def summary_command(results: Path = typer.Argument(..., help="Results store (.zarr).")):
    """Print per-arm endpoint summaries, comparisons, PoS, PTA and power from a results store."""
    from insilico.store import open_results
    show_summary(open_results(results))
