"""Shared CLI plumbing: exit codes and error reporting.

Exit codes: 0 ok, 2 invalid input (one line naming the field and the problem, no traceback,
nothing written), 1 runtime failure. Set ``INSILICO_DEBUG=1`` to see tracebacks.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from insilico.errors import SpecError

console = Console()
err_console = Console(stderr=True)


def handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except SpecError as e:
            err_console.print(f"[bold red]invalid input[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as e:  # runtime failure
            if os.environ.get("INSILICO_DEBUG"):
                raise
            err_console.print(f"[bold red]error[/] {type(e).__name__}: {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper


def print_table(df, title: str) -> None:
    from rich.table import Table

    from insilico.analysis.formatting import format_value
    t = Table(title=title)
    cols = list(df.columns)
    for c in cols:
        t.add_column(str(c), justify="left" if df[c].dtype == object else "right")
    for _, row in df.iterrows():
        t.add_row(*(format_value(v) for v in row.values))
    console.print(t)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def cluster_from_flags(scheduler=None, workers=None, processes=False, kind="local", jobs=None, cores=None,
                       memory=None, walltime=None, queue=None, account=None, tls=True, tls_dir=None,
                       dashboard=None):
    """The `insilico.cluster.ClusterOptions` the shared cluster flags describe (unset batch
    options are left to the jobqueue configuration; ``--dashboard none`` turns it off)."""
    from insilico.cluster import ClusterOptions
    opts = {"jobs": jobs, "cores": cores, "memory": memory, "walltime": walltime, "queue": queue,
            "account": account, "tls_dir": tls_dir, "workers": workers, "scheduler": scheduler}
    opts = {k: v for k, v in opts.items() if v is not None}
    if dashboard is not None:
        opts["dashboard_address"] = None if dashboard.lower() == "none" else dashboard
    return ClusterOptions(kind=kind, processes=processes, tls=tls, **opts)


# cluster options shared by `insilico run` and `insilico campaign`
Scheduler = Annotated[str | None, typer.Option(
    "--scheduler", help="Address of an existing Dask scheduler (tcp://… or tls://… with --tls-dir).")]
Workers = Annotated[int | None, typer.Option("--workers", help="LocalCluster workers/threads.")]
Processes = Annotated[bool, typer.Option("--processes", help="LocalCluster with worker processes.")]
Cluster = Annotated[str, typer.Option(
    "--cluster", help="local (LocalCluster), slurm or pbs (batch jobs via dask-jobqueue).")]
Jobs = Annotated[int | None, typer.Option("--jobs", help="Batch: number of worker jobs (default 1).")]
Cores = Annotated[int | None, typer.Option("--cores", help="Batch: cores per job.")]
Memory = Annotated[str | None, typer.Option("--memory", help="Batch: memory per job, e.g. 4GB.")]
Walltime = Annotated[str | None, typer.Option("--walltime", help="Batch: job walltime, e.g. 01:00:00.")]
Queue = Annotated[str | None, typer.Option("--queue", help="Batch: Slurm partition or PBS queue.")]
Account = Annotated[str | None, typer.Option("--account", help="Batch: account/project to charge.")]
Tls = Annotated[bool, typer.Option("--tls/--no-tls", help="Batch: mutual TLS between scheduler, workers "
                                   "and client (default on).")]
TlsDir = Annotated[Path | None, typer.Option(
    "--tls-dir", help="TLS credentials (ca.pem, cert.pem, key.pem; generated when absent). "
    "Default $INSILICO_TLS_DIR or ~/.config/insilico/tls.")]
Dashboard = Annotated[str | None, typer.Option(
    "--dashboard", help="Batch: scheduler dashboard address (default 127.0.0.1:8787; 'none' for no dashboard).")]
