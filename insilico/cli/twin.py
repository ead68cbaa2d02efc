"""`insilico twin ...`: patient digital twins (`insilico.twins`), one command per operation.

    insilico twin create twins.zarr P0001 --prior pop.yaml|fit.zarr --covariates WT=72,CRCL=80
    insilico twin update twins.zarr P0001 --data new_rows.csv [--json]
    insilico twin update-all twins.zarr --data batch.csv [--prior pop.yaml] [--json]
    insilico twin show twins.zarr [P0001] [--version N] [--history] [--json]
    insilico twin forecast twins.zarr P0001 --regimen "1000 mg q12h x6, 1 h infusion" --until 96
    insilico twin recommend twins.zarr P0001 --target "trough in [10, 20] mg/L" --doses 500:2500:250 --intervals 8,12,24
    insilico twin risk twins.zarr P0001 --output ANC --below 0.5 --within 168
    insilico twin report twins.zarr P0001 --out p0001.html [--regimen ...] [--target ... --doses ... --intervals ...]
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

from insilico.cli._common import console, handle_errors, print_table

twin_app = typer.Typer(help="Patient digital twins: create, update, forecast, recommend, risk, report.",
                       no_args_is_help=True, add_completion=False)

Store = typer.Argument(..., help="Twin store (.zarr; created by `create`).")
Patient = typer.Argument(..., help="Pseudonymous patient ID (letters, digits, _ - .; never a name).")
AsJson = typer.Option(False, "--json", help="Print a machine-readable result on stdout.")
Draws = typer.Option(1000, "--draws", min=10, help="Posterior draws.")
Seed = typer.Option(0, "--seed", min=0, help="Seed of the posterior draws.")
Posterior = typer.Option("laplace", "--posterior", help="laplace (N(MAP, Laplace cov)) or full (IS / NUTS).")
Start = typer.Option(None, "--start", help="Start of the regimen (h; default: when the next dose is due).")
Future = typer.Option("", "--covariates", help="Future covariates NAME=VALUE,... in force from the start "
                                               "(default: the last values carried forward).")


def _print_summaries(summaries: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({k: {f: v[f] for f in ("eta", "eta_cov", "objective", "parameters", "version",
                                                     "status", "n_obs", "kappa", "latest_occasion") if f in v}
                               for k, v in summaries.items()}))
        return
    import pandas as pd
    rows = [{"ID": k, "version": v["version"], "levels": v["n_obs"], "objective": v["objective"], **v["eta"],
             **v["parameters"], "status": v["status"]} for k, v in summaries.items()]
    print_table(pd.DataFrame(rows), "twins (MAP and individual parameters)")


@twin_app.command("create")
@handle_errors
def create_command(store: Path = Store, patient_id: str = Patient,
                   prior: str = typer.Option(..., "--prior", help="Population model (YAML) or fit store (.zarr)."),
                   covariates: str = typer.Option("", "--covariates", help="NAME=VALUE,... e.g. WT=72,CRCL=80."),
                   as_json: bool = AsJson):
    """Create a twin from a prior and the patient's covariates (version 0: the prior)."""
    from insilico.twins import create
    _print_summaries(create(store, patient_id, prior, covariates), as_json)


@twin_app.command("update")
@handle_errors
def update_command(store: Path = Store, patient_id: str = Patient,
                   data: Path = typer.Option(..., "--data", help="New rows (CSV, NONMEM columns: TIME, AMT, "
                                                                 "RATE, EVID, DV, DVID, ...)."),
                   as_json: bool = AsJson):
    """Add doses given and levels measured; append the new posterior (MAP + Laplace) as a version."""
    from insilico.twins import update
    _print_summaries(update(store, patient_id, data), as_json)


@twin_app.command("update-all")
@handle_errors
def update_all_command(store: Path = Store,
                       data: Path = typer.Option(..., "--data", help="Rows of many patients (CSV with ID)."),
                       prior: str = typer.Option(None, "--prior", help="Create IDs not in the store from this "
                                                                       "prior (covariates from their columns)."),
                       chunk_size: int = typer.Option(None, "--chunk-size", min=1, help="Patients per batch."),
                       as_json: bool = AsJson):
    """Update every twin in the batch in one vmapped computation."""
    from insilico.twins import update_all
    _print_summaries(update_all(store, data, prior=prior, chunk_size=chunk_size), as_json)


@twin_app.command("show")
@handle_errors
def show_command(store: Path = Store,
                 patient_id: str = typer.Argument(None, help="One patient (default: every twin)."),
                 version: int = typer.Option(None, "--version", min=0, help="An earlier version."),
                 history_: bool = typer.Option(False, "--history", help="List the versions of PATIENT_ID."),
                 as_json: bool = AsJson):
    """Show twins (latest or an earlier version), or one twin's history of versions."""
    from insilico.errors import SpecError
    from insilico.twins import history, show
    if history_:
        if patient_id is None:
            raise SpecError("--history", "give the PATIENT_ID whose history to list")
        df = history(store, patient_id)
        if as_json:
            typer.echo(df.to_json(orient="records"))
        else:
            print_table(df.drop(columns=["rows_sha256"]), f"{patient_id}: versions")
        return
    if version is not None and patient_id is None:
        raise SpecError("--version", "give the PATIENT_ID whose version to show")
    _print_summaries(show(store, patient_id, version), as_json)


@twin_app.command("forecast")
@handle_errors
def forecast_command(store: Path = Store, patient_id: str = Patient,
                     regimen: list[str] = typer.Option([], "--regimen", help="\"1000 mg q12h x6, 1 h infusion\" "
                                                       "(repeat to compare; \"current\" continues the last dose)."),
                     until: float = typer.Option(96.0, "--until", help="Horizon (h after the start)."),
                     start: float = Start, level: float = typer.Option(0.9, "--level", help="Interval level."),
                     points: int = typer.Option(13, "--points", min=2, help="Time points printed/returned."),
                     draws: int = Draws, seed: int = Seed, posterior: str = Posterior, covariates: str = Future,
                     as_json: bool = AsJson):
    """Posterior predictive of the fitted output under one or several regimens: median and interval."""
    from insilico.twins import forecast
    ds = forecast(store, patient_id, list(regimen) or None, until, start=start, level=level, points=points,
                  n_draws=draws, seed=seed, posterior=posterior, covariates=covariates)
    out = str(ds.attrs.get("output", ""))
    names = [n[:-7] for n in ds.data_vars if n.endswith("_median")]
    if as_json:
        doc = {"patient_id": patient_id, "version": int(ds.attrs["version"]), "start": float(ds.attrs["start"]),
               "level": level, "time": ds.time.values.tolist(),
               "regimens": {str(r): {n: {k: ds[f"{n}_{k}"].sel(regimen=r).values.tolist()
                                         for k in ("median", "lower", "upper")} for n in names}
                            for r in ds.regimen.values}}
        typer.echo(json.dumps(doc))
        return
    import pandas as pd
    main = out or names[0]
    for r in ds.regimen.values:
        sel = ds.sel(regimen=r)
        df = pd.DataFrame({"time (h)": ds.time.values, "median": sel[f"{main}_median"].values,
                           f"{level:.0%} low": sel[f"{main}_lower"].values,
                           f"{level:.0%} high": sel[f"{main}_upper"].values,
                           "new level low": sel["DV_lower"].values, "new level high": sel["DV_upper"].values})
        print_table(df, f"{patient_id}: {main} under {r}")


@twin_app.command("recommend")
@handle_errors
def recommend_command(store: Path = Store, patient_id: str = Patient,
                      target: str = typer.Option(..., "--target", help="\"trough in [10, 20] mg/L\", \"peak in "
                                                                       "[..]\", \"auc24 in [400, 600] mg*h/L\" or "
                                                                       "\"t>mic(2 mg/L) in [0.5, 1]\" (fraction of "
                                                                       "the interval above the MIC; or [50, 100] %); "
                                                                       "\"trough of ANC in [1.5, 4]\": another "
                                                                       "output (default the prior's)."),
                      doses: str = typer.Option(..., "--doses", help="Amounts (mg): 500:2500:250 or 500,1000."),
                      intervals: str = typer.Option(..., "--intervals", help="Intervals (h): 8,12,24."),
                      durations: str = typer.Option("0", "--durations", help="Infusion durations (h; 0 = bolus)."),
                      until: float = typer.Option(96.0, "--until", help="Horizon (h after the start)."),
                      start: float = Start, draws: int = Draws, seed: int = Seed, posterior: str = Posterior,
                      covariates: str = Future, as_json: bool = AsJson):
    """The dose and interval that maximise the posterior probability of attaining the target."""
    import numpy as np

    from insilico.twins import parse_grid, recommend
    durs = [0.0] if durations.strip() in ("0", "0.0") else parse_grid(durations, "--durations")
    res = recommend(store, patient_id, target, parse_grid(doses, "--doses"), parse_grid(intervals, "--intervals"),
                    np.asarray(durs, float), until=until, start=start, n_draws=draws, seed=seed, posterior=posterior,
                    covariates=covariates)
    if as_json:
        typer.echo(json.dumps({**{k: v for k, v in res.items() if k != "candidates"},
                               "candidates": res["candidates"].to_dict(orient="records")}))
        return
    top = res["candidates"].sort_values("probability", ascending=False).head(10)
    print_table(top.round(4), f"{patient_id}: {res['target']} (10 best of {len(res['candidates'])})")
    r = res["recommendation"]
    console.print(f"recommended: {r['dose']:g} mg every {r['interval']:g} h"
                  + (f", {r['duration']:g} h infusion" if r["duration"] else "")
                  + f": P(attain) = {r['probability']:.3f} (median {r['median']:.4g})")
    c = res["current"]
    console.print(f"current regimen: P(attain) = {c['probability']:.3f} ({c['dose']:g} mg every {c['interval']:g} h)"
                  if c else "current regimen: none (no repeated dosing in the history)")
    console.print(f"rule: {res['rule']}")


@twin_app.command("risk")
@handle_errors
def risk_command(store: Path = Store, patient_id: str = Patient,
                 output: str = typer.Option(..., "--output", help="Model output (e.g. conc, ANC)."),
                 below: float = typer.Option(None, "--below", help="Threshold crossed from above."),
                 above: float = typer.Option(None, "--above", help="Threshold crossed from below."),
                 within: float = typer.Option(168.0, "--within", help="Horizon (h after the start)."),
                 regimen: str = typer.Option(None, "--regimen", help="Candidate regimen (default: current)."),
                 start: float = Start, draws: int = Draws, seed: int = Seed, posterior: str = Posterior,
                 covariates: str = Future, as_json: bool = AsJson):
    """Posterior probability that an output crosses a threshold within a horizon."""
    from insilico.twins import risk
    res = risk(store, patient_id, output, below=below, above=above, within=within, regimen=regimen, start=start,
               n_draws=draws, seed=seed, posterior=posterior, covariates=covariates)
    if as_json:
        typer.echo(json.dumps(res))
        return
    side = f"< {below:g}" if below is not None else f"> {above:g}"
    console.print(f"{patient_id}: P({output} {side} within {within:g} h of t={res['start']:g} h | history) = "
                  f"{res['probability']:.3f} (Monte Carlo SE {res['mc_se']:.3f}; {res['regimen']})")


@twin_app.command("report")
@handle_errors
def report_command(store: Path = Store, patient_id: str = Patient,
                   out: Path = typer.Option(..., "--out", help="The HTML file to write (.html)."),
                   regimen: list[str] = typer.Option([], "--regimen", help="Candidate regimen forecast beside the "
                                                                            "current one (repeatable)."),
                   until: float = typer.Option(96.0, "--until", help="Forecast horizon (h after the start)."),
                   target: str = typer.Option(None, "--target", help="Add a dose recommendation for this target."),
                   doses: str = typer.Option(None, "--doses", help="Amounts (mg) of the recommendation."),
                   intervals: str = typer.Option(None, "--intervals", help="Intervals (h) of the recommendation."),
                   durations: str = typer.Option("0", "--durations", help="Infusion durations (h; 0 = bolus)."),
                   risk_output: str = typer.Option(None, "--risk-output", help="Add an early warning on this "
                                                                               "output (e.g. ANC)."),
                   below: float = typer.Option(None, "--below", help="Early-warning threshold crossed from above."),
                   above: float = typer.Option(None, "--above", help="Early-warning threshold crossed from below."),
                   within: float = typer.Option(168.0, "--within", help="Early-warning horizon (h)."),
                   version: int = typer.Option(None, "--version", min=0, help="Report an earlier version."),
                   draws: int = Draws, seed: int = Seed,
                   dpi: int = typer.Option(90, "--dpi", min=30, max=300, help="Figure resolution."),
                   overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing insilico report.")):
    """One self-contained HTML page: history with digests, posterior, forecast, recommendation, risk."""
    from insilico.analysis.twin_report import write_twin_report
    from insilico.errors import SpecError
    from insilico.twins import parse_grid
    rec = {}
    if target is not None:
        durs = [0.0] if durations.strip() in ("0", "0.0") else list(parse_grid(durations, "--durations"))
        rec = {"target": target, "durations": durs,
               "doses": parse_grid(doses, "--doses") if doses else None,
               "intervals": parse_grid(intervals, "--intervals") if intervals else None}
    risk = None
    if risk_output is not None:
        risk = {"output": risk_output, "below": below, "above": above, "within": within}
    elif below is not None or above is not None:
        raise SpecError("--risk-output", "give the output whose threshold --below/--above refers to")
    path = write_twin_report(store, patient_id, out, overwrite=overwrite, version=version, regimens=list(regimen),
                             until=until, risk=risk, n_draws=draws, seed=seed, dpi=dpi, **rec)
    console.print(f"wrote {path}")
