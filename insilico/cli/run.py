"""`insilico run SPEC`: simulate a trial into a Zarr store and print its summary."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from insilico.cli._common import cluster_options, console, handle_errors


@handle_errors
def run_command(
    spec: Path = typer.Argument(..., help="Trial spec (YAML)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Results store (default results/<name>.zarr)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing Dask scheduler."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run: only missing chunks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing results store."),
    set_: List[str] = typer.Option([], "--set", help="Override a spec value: key.path=value (repeatable)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="LocalCluster workers/threads."),
    processes: bool = typer.Option(False, "--processes", help="LocalCluster with worker processes."),
    cluster: str = typer.Option("local", "--cluster", help="local (LocalCluster) or slurm (dask-jobqueue)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="Slurm: number of worker jobs."),
    cores: Optional[int] = typer.Option(None, "--cores", help="Slurm: cores per job."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Slurm: memory per job, e.g. 4GB."),
    walltime: Optional[str] = typer.Option(None, "--walltime", help="Slurm: job walltime, e.g. 01:00:00."),
    queue: Optional[str] = typer.Option(None, "--queue", help="Slurm: partition."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
):
    """Run a trial spec: cohort -> simulation -> endpoints -> Zarr store -> analysis."""
    from insilico.trials import run
    from insilico.cli.summary import show_summary
    ds = run(spec, out, scheduler=scheduler, resume=resume, overwrite=overwrite, overrides=set_,
             workers=workers, processes=processes, cluster=cluster,
             cluster_options=cluster_options(jobs, cores, memory, walltime, queue), progress=not quiet)
    if not quiet:
        show_summary(ds)
        console.print(f"results: {ds.encoding.get('source', out)}")
