"""`insilico fit POPMODEL DATA --method focei --out fit.zarr`: estimate a population model."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from insilico.cli._common import console, handle_errors, print_table


@handle_errors
def fit_command(
    model: Path = typer.Argument(..., help="Population model (YAML): model, parameters, bsv, residual_error."),
    data: Path = typer.Argument(..., help="NONMEM-format data set (CSV)."),
    method: str = typer.Option("focei", "--method", "-m", help="focei, laplace or nuts."),
    out: Path = typer.Option(None, "--out", "-o", help="Fit store to write (.zarr)."),
    ext: Path = typer.Option(None, "--ext", help="Also write NONMEM's .ext table of final estimates and SEs."),
    population_out: Path = typer.Option(None, "--population-out",
                                        help="Also write the population model with the estimates (YAML)."),
    sets: list[str] = typer.Option([], "--set", help="Override a population-model field: key=value."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of NPDE simulations and NUTS."),
    chains: int = typer.Option(4, "--chains", min=1, help="NUTS: chains."),
    warmup: int = typer.Option(500, "--warmup", min=1, help="NUTS: warm-up iterations per chain."),
    samples: int = typer.Option(500, "--samples", min=1, help="NUTS: draws per chain."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs insilico wrote there."),
):
    """Fit a population model to data by FOCE-I, Laplace or NUTS; print the estimates."""
    from insilico.errors import SpecError
    from insilico.estimation import NUTS, fit, method_from
    from insilico.store import check_out, replace_owned, write_fit
    m = method_from(method)
    if isinstance(m, NUTS):
        m = NUTS(chains=chains, warmup=warmup, samples=samples, seed=seed)
    elif (chains, warmup, samples) != (4, 500, 500):
        raise SpecError("--chains", "--chains, --warmup and --samples apply to --method nuts only")
    if out is not None:
        check_out(out)
        if out.exists():
            replace_owned(out, "fit", overwrite=overwrite)          # refuses early: nothing computed yet
    for opt, path in (("--ext", ext), ("--population-out", population_out)):
        if path is not None:
            check_out(path, option=opt, folder=False)
            if path.exists() and not overwrite:
                raise SpecError(opt, f"{path} already exists; use --overwrite to replace it")
    result = fit(model, data, m, overrides=list(sets), seed=seed)
    if out is not None:
        write_fit(result.to_dataset(), out, overwrite=overwrite)
    if ext is not None:
        result.write_ext(ext)
    if population_out is not None:
        import yaml
        population_out.write_text(yaml.safe_dump(result.population_model(), sort_keys=False))
    if as_json:
        typer.echo(json.dumps(result.summary()))
        return
    _print(result, out)


def _print(result, out) -> None:
    import pandas as pd
    ds = result.to_dataset()
    table = pd.DataFrame({"name": list(result.names), "estimate": ds.estimate.values, "SE": ds.se.values,
                          "RSE %": ds.rse.values, "95% CI low": ds.ci_lower.values, "95% CI high": ds.ci_upper.values,
                          "fixed": ds.fixed.values})
    print_table(table.round(5), f"{result.method}: {result.n_subjects} subjects, {result.n_observations} observations")
    status = "converged" if result.converged else "NOT converged"
    ofv = f"OFV {result.ofv:.3f} (NONMEM scale), AIC {result.aic:.2f}, BIC {result.bic:.2f}; " \
        if result.method != "nuts" else ""
    console.print(f"{ofv}{status}: {result.message}; covariance: {result.covariance_message}")
    if result.excluded:
        console.print(f"[yellow]{len(result.excluded)} subject(s) left out:[/yellow] "
                      + "; ".join(f"ID {k}: {v}" for k, v in list(result.excluded.items())[:10]))
    if out is not None:
        console.print(f"saved {out}")
