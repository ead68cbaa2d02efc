"""`insilico summary RESULTS`: endpoint and comparison tables per arm, and the subjects flagged
without results (invalid inputs, solver failures)."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import Partial, console, handle_errors, open_store, print_table

COLUMNS = {
    "summary": ["arm", "n", "n_missing", "mean", "sd", "median", "q05", "q95", "responders", "proportion",
                "ci_lower", "ci_upper"],
    "comparisons": ["arm", "n", "n_ref", "estimate", "ci_lower", "ci_upper", "p_value"],
    "probability_of_success": ["arm", "estimate", "successes", "n_replicates", "ci_lower", "ci_upper"],
    "pta": ["group", "n", "n_attained", "pta", "ci_lower", "ci_upper"],
    "power": ["arm", "reference", "n", "power", "mc_se", "ci_lower", "ci_upper"],
}


def _cols(df, kind: str):
    return df[[c for c in COLUMNS[kind] if c in df.columns]]


LISTED = 20   # flagged subjects listed one by one (all of them: ds.insilico.flagged)


def show_flagged(ds) -> None:
    """Print how many simulated subject–arm pairs have no results (status > 0) by arm and reason,
    and list the first `LISTED` of them (replicate, arm, subject, reason, detail)."""
    from insilico.store import flagged_counts, simulated_pairs
    flagged = ds.insilico.flagged
    if flagged.empty:
        return
    name = ds.attrs.get("trial", "trial")
    total = int(simulated_pairs(ds).sum())
    console.print(f"{name}: {len(flagged)} of {total} simulated subject–arm pairs flagged (no results; "
                  "missing from the tables above)", highlight=False)
    print_table(flagged_counts(flagged).drop(columns="status"), f"{name}: flagged subjects by arm and reason")
    shown = flagged.drop(columns="status").head(LISTED)
    more = len(flagged) - len(shown)
    print_table(shown, f"{name}: flagged subjects" + (f" (first {LISTED}; {more} more: ds.insilico.flagged)"
                                                       if more else ""))


def show_summary(ds) -> None:
    """Print the analysis tables of results store ``ds`` (`ds.insilico.analysis`) and the
    subjects flagged without results (`show_flagged`)."""
    import insilico.store  # noqa: F401  (registers ds.insilico)
    tables = ds.insilico.analysis
    name = ds.attrs.get("trial", "trial")
    for ep, df in tables.get("summary", {}).items():
        print_table(_cols(df, "summary"), f"{name}: {ep} by arm")
    for ep, df in tables.get("comparisons", {}).items():
        if "replicate" in df and df["replicate"].nunique() > 1:
            df = df[df["replicate"] == 0]
            title = f"{name}: {ep} vs reference (replicate 0)"
        else:
            title = f"{name}: {ep} vs reference"
        measure = df["measure"].iloc[0] if "measure" in df and len(df) else ""
        print_table(_cols(df, "comparisons"), f"{title}: {measure}")
    for key, title in (("probability_of_success", "probability of success"),
                       ("pta", "probability of target attainment"), ("power", "power vs N per arm")):
        if key in tables:
            print_table(_cols(tables[key], key), f"{name}: {title}")
    show_flagged(ds)


def show_crossover_summary(ds) -> None:
    """Print the bioequivalence table of a crossover results store, its power vs N when simulated,
    and how many subject-periods failed to simulate."""
    import pandas as pd

    from insilico.trials import be_summary
    name = ds.attrs.get("title", "crossover trial").removeprefix("insilico crossover trial ")
    table = be_summary(ds).reset_index()
    cols = ["metric", "gmr_pct", "ci_lower_pct", "ci_upper_pct", "cv_within_pct", "n_subjects", "bioequivalent"]
    if ds.attrs.get("method") == "rsabe":
        cols[5:5] = ["swr", "decided_by"]
    level = f"{100 * float(ds.attrs.get('ci_level', 0.9)):g} % CI"
    if ds.attrs.get("method") == "paired":     # a fixed-sequence study (e.g. drug interaction): no-effect limits
        table = table.rename(columns={"bioequivalent": "no_effect"})
        cols[-1] = "no_effect"
        title = f"{name}: geometric-mean ratio (paired, {level}; no effect: CI within the limits)"
    else:
        title = f"{name}: bioequivalence ({ds.attrs.get('method', 'abe')}, {level} of the test/reference ratio)"
    print_table(table[[c for c in cols if c in table.columns]], title)
    if "power_power" in ds:
        power = pd.DataFrame({"n": ds["n"].values, "power": ds["power_power"].values,
                              "ci_lower": ds["power_ci_lower"].values, "ci_upper": ds["power_ci_upper"].values})
        print_table(power, f"{name}: probability of concluding BE vs N")
    failed = int((ds["status"].values != 0).sum()) if "status" in ds else 0
    if failed:
        console.print(f"{name}: {failed} subject-periods failed to simulate (status > 0) and are left out of the "
                      "analysis", highlight=False)


@handle_errors
def summary_command(results: Path = typer.Argument(..., help="Results store (.zarr)."), partial: Partial = False):
    """Print per-arm endpoint summaries, comparisons, PoS, PTA and power from a results store, and
    the subjects flagged without results (status > 0) with the reason; for a crossover store, its
    bioequivalence table (and power vs N)."""
    from insilico.store import recognise
    if recognise(results) == "crossover":
        from insilico.trials import open_crossover
        show_crossover_summary(open_crossover(results))
        return
    show_summary(open_store(results, partial=partial))
