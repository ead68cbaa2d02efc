"""`insilico campaign CAMPAIGN.yaml`: run a grid of trial scenarios into one Zarr hierarchy."""
from __future__ import annotations

from pathlib import Path

import typer

from insilico.cli._common import (
    Account,
    Cluster,
    Cores,
    Dashboard,
    Jobs,
    Memory,
    Processes,
    Queue,
    Scheduler,
    Tls,
    TlsDir,
    Walltime,
    Workers,
    cluster_from_flags,
    console,
    handle_errors,
    print_table,
)


@handle_errors
def campaign_command(
    spec: Path = typer.Argument(..., help="Campaign spec (YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Campaign results (a Zarr group, one sub-group per scenario)."),
    scheduler: Scheduler = None,
    resume: bool = typer.Option(False, "--resume", help="Skip finished scenarios, finish interrupted ones."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing results."),
    workers: Workers = None,
    processes: Processes = False,
    cluster: Cluster = "local",
    jobs: Jobs = None,
    cores: Cores = None,
    memory: Memory = None,
    walltime: Walltime = None,
    queue: Queue = None,
    account: Account = None,
    tls: Tls = True,
    tls_dir: TlsDir = None,
    dashboard: Dashboard = None,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary."),
):
    """Run every scenario of a campaign and print the campaign summary (PoS per scenario and arm)."""
    from insilico.campaigns import run_campaign
    where = cluster_from_flags(scheduler, workers, processes, cluster, jobs, cores, memory, walltime, queue,
                               account, tls, tls_dir, dashboard)
    summary = run_campaign(spec, out, cluster=where, resume=resume, overwrite=overwrite, progress=not quiet)
    if not quiet:
        cols = [c for c in ("scenario", "overrides", "status", "arm", "n", "pos", "pos_ci_lower",
                            "pos_ci_upper", "reason") if c in summary.columns]
        print_table(summary[cols], f"campaign {spec.stem}")
        console.print(f"results: {out}")
    if (summary["status"] == "failed").all():
        raise typer.Exit(1)
