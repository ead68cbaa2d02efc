"""`insilico campaign CAMPAIGN.yaml`: run a grid of trial scenarios into one Zarr hierarchy."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from insilico.cli._common import cluster_options, console, handle_errors, print_table


@handle_errors
def campaign_command(
    spec: Path = typer.Argument(..., help="Campaign spec (YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Campaign results (a Zarr group, one sub-group per scenario)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing Dask scheduler."),
    resume: bool = typer.Option(False, "--resume", help="Skip finished scenarios, finish interrupted ones."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing results."),
    workers: Optional[int] = typer.Option(None, "--workers", help="LocalCluster workers/threads."),
    processes: bool = typer.Option(False, "--processes", help="LocalCluster with worker processes."),
    cluster: str = typer.Option("local", "--cluster", help="local (LocalCluster) or slurm (dask-jobqueue)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="Slurm: number of worker jobs."),
    cores: Optional[int] = typer.Option(None, "--cores", help="Slurm: cores per job."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Slurm: memory per job, e.g. 4GB."),
    walltime: Optional[str] = typer.Option(None, "--walltime", help="Slurm: job walltime, e.g. 01:00:00."),
    queue: Optional[str] = typer.Option(None, "--queue", help="Slurm: partition."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary."),
):
    """Run every scenario of a campaign and print the campaign summary (PoS per scenario and arm)."""
    from insilico.campaigns import run_campaign
    summary = run_campaign(spec, out, resume=resume, overwrite=overwrite, scheduler=scheduler,
                           workers=workers, processes=processes, cluster=cluster,
             cluster_options=cluster_options(jobs, cores, memory, walltime, queue), progress=not quiet)
    if not quiet:
        cols = [c for c in ("scenario", "overrides", "status", "arm", "n", "pos", "pos_ci_lower",
                            "pos_ci_upper", "reason") if c in summary.columns]
        print_table(summary[cols], f"campaign {spec.stem}")
        console.print(f"results: {out}")
    if (summary["status"] == "failed").all():
        raise typer.Exit(1)
