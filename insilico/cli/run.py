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
    from insilico.trials import is_crossover_spec, run
    if is_crossover_spec(spec):
        _refuse_cluster_flags(resume=resume, scheduler=scheduler, workers=workers, processes=processes,
                              cluster=cluster != "local", jobs=jobs, cores=cores, memory=memory, walltime=walltime,
                              queue=queue, account=account, tls_dir=tls_dir, dashboard=dashboard)
        return _run_crossover(spec, out, overwrite, set_, quiet)
    where = cluster_from_flags(scheduler, workers, processes, cluster, jobs, cores, memory, walltime, queue,
                               account, tls, tls_dir, dashboard)
    ds = run(spec, out, cluster=where, resume=resume, overwrite=overwrite, overrides=set_, progress=not quiet)
    if not quiet:
        show_summary(ds)
        console.print(f"results: {ds.encoding.get('source', out)}")


def _refuse_cluster_flags(**given) -> None:
    """A crossover trial runs in this process: options it would ignore are refused, naming the first."""
    from insilico.errors import SpecError
    for name, value in given.items():
        if value not in (None, False):
            raise SpecError(f"--{name.replace('_', '-')}", "a crossover trial runs in this process and in one go; "
                                                            "cluster and resume options are not supported for it")


def _run_crossover(spec: Path, out: Path | None, overwrite: bool, set_: list[str], quiet: bool) -> None:
    from insilico.cli.summary import show_crossover_summary
    from insilico.trials import run_crossover
    ds = run_crossover(spec, out, overwrite=overwrite, overrides=set_)
    if not quiet:
        show_crossover_summary(ds)
        console.print(f"results: {ds.encoding.get('source', out)}")
