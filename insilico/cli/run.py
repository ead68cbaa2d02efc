"""`insilico run SPEC`: simulate a trial into a Zarr store and print its summary."""
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
)


@handle_errors
def run_command(
    spec: Path = typer.Argument(..., help="Trial spec (YAML)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Results store (default results/<name>.zarr)."),
    scheduler: Scheduler = None,
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run: only missing chunks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing results store."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec value: key.path=value (repeatable)."),
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
):
    """Run a trial spec: cohort -> simulation -> endpoints -> Zarr store -> analysis."""
    from insilico.cli.summary import show_summary
    from insilico.trials import run
    where = cluster_from_flags(scheduler, workers, processes, cluster, jobs, cores, memory, walltime, queue,
                               account, tls, tls_dir, dashboard)
    ds = run(spec, out, cluster=where, resume=resume, overwrite=overwrite, overrides=set_, progress=not quiet)
    if not quiet:
        show_summary(ds)
        console.print(f"results: {ds.encoding.get('source', out)}")
