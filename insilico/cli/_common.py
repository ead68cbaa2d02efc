"""Shared CLI plumbing: exit codes, signals and error reporting.

Exit codes: 0 ok; 2 invalid input (one line naming the field or option and the problem, no
traceback, nothing written); 1 runtime failure (disk, network, cluster: ``error …``) or an
internal error (a bug: ``internal error, please report …``), each with the path of a log file
holding the traceback (``$INSILICO_LOG_DIR``, default ``~/.cache/insilico/logs``); 130 Ctrl-C;
143 SIGTERM. An interrupted run leaves a store that ``--resume`` finishes. A full disk (ENOSPC),
an exceeded quota (EDQUOT) or file-size limit (EFBIG, ``ulimit -f``) is reported in words with the
path being written (`space_error`). A failed Dask task is reported once, by the command: the
worker's own "Compute Failed" log (with its traceback) is left out of the terminal. Set
``INSILICO_DEBUG=1`` to see tracebacks instead.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from insilico.errors import SpecError

console = Console()
err_console = Console(stderr=True)

# failures of the machine or the network rather than of insilico: reported as `error`, not as a bug
RUNTIME_FAILURES = (OSError, MemoryError, RuntimeError)


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler: shuts a command down like Ctrl-C (locks released, store
    left resumable), exit 143."""


def _on_sigterm(signum, frame):
    raise Terminated()


def log_dir() -> Path:
    """Where tracebacks of failed commands are written: ``$INSILICO_LOG_DIR`` or
    ``$XDG_CACHE_HOME/insilico/logs`` (default ``~/.cache/insilico/logs``)."""
    if os.environ.get("INSILICO_LOG_DIR"):
        return Path(os.environ["INSILICO_LOG_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "insilico" / "logs"


def write_log(exc: BaseException) -> Path | None:
    """Write the traceback of ``exc`` (and the command line) to a new file in `log_dir`; its path,
    or None when it cannot be written."""
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"insilico-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        path.write_text(f"command: {' '.join(sys.argv)}\n\n{text}")
        return path
    except OSError:
        return None


SPACE_ERRORS = {errno.ENOSPC: "no space left on device (disk full)",
                errno.EDQUOT: "disk quota exceeded",
                errno.EFBIG: "file too large (over the file system's or the process's file-size limit, ulimit -f)"}


def space_error(exc: BaseException) -> str | None:
    """The one-line message for an `OSError` that means the output could not be written for lack of
    space (`SPACE_ERRORS`: ENOSPC, EDQUOT, EFBIG), naming the path being written; None for any
    other exception."""
    if not isinstance(exc, OSError) or exc.errno not in SPACE_ERRORS:
        return None
    where = f" while writing {exc.filename}" if exc.filename else ""
    return (f"{SPACE_ERRORS[exc.errno]}{where}; free some space and run the command again (a trial or "
            "campaign run keeps the work units already written: add --resume to finish it)")


class _WorkerFailureFilter(logging.Filter):
    """Drops distributed's worker-side reports of a failed task ("Compute Failed" with its
    traceback, and the cancellations that follow): the command reports the failure itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith("Compute Failed") or msg.startswith("Async instruction for"))


_WORKER_LOGGERS = ("distributed.worker", "distributed.worker.state_machine")
_WORKER_FILTER = _WorkerFailureFilter()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def handle_errors(fn):
    """Run a command with insilico's exit codes (module docstring) and SIGTERM → exit 143."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:            # not the main thread: leave signals alone
            previous = None
        for name in _WORKER_LOGGERS:
            logging.getLogger(name).addFilter(_WORKER_FILTER)
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except SpecError as e:
            err_console.print(f"[bold red]invalid input[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Terminated:
            err_console.print("terminated (SIGTERM); --resume finishes the run")
            raise typer.Exit(143) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as e:
            if os.environ.get("INSILICO_DEBUG"):
                raise
            log = write_log(e)
            where = f" (traceback in {log})" if log else ""
            if space_error(e):
                err_console.print(f"[bold red]error[/] {space_error(e)}{where}", highlight=False, soft_wrap=True)
            elif isinstance(e, RUNTIME_FAILURES) and not isinstance(e, (NotImplementedError, RecursionError)):
                err_console.print(f"[bold red]error[/] {_one_line(e)}{where}", highlight=False, soft_wrap=True)
            else:
                err_console.print(f"[bold red]internal error, please report:[/] {_one_line(e)}{where}",
                                  highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        finally:
            for name in _WORKER_LOGGERS:
                logging.getLogger(name).removeFilter(_WORKER_FILTER)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
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
Workers = Annotated[int | None, typer.Option("--workers", min=1, help="LocalCluster workers/threads.")]
Processes = Annotated[bool, typer.Option("--processes", help="LocalCluster with worker processes.")]
Cluster = Annotated[str, typer.Option(
    "--cluster", help="local (LocalCluster), slurm or pbs (batch jobs via dask-jobqueue).")]
Jobs = Annotated[int | None, typer.Option("--jobs", min=1, help="Batch: number of worker jobs (default 1).")]
Cores = Annotated[int | None, typer.Option("--cores", min=1, help="Batch: cores per job.")]
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
Partial = Annotated[bool, typer.Option(
    "--partial", help="Read a store whose run did not finish (only the work units written so far).")]


def open_store(results: Path, *, partial: bool, verify: bool = False):
    """Open results store ``results`` for a reading command (`insilico.store.open_results`):
    refuses an unfinished run unless ``partial`` (then says how much is there) and, with
    ``verify``, a damaged store."""
    from insilico.store import done_units, open_results
    ds = open_results(results, partial=partial, verify=verify)
    if partial and not ds.insilico.complete:
        done = done_units(results, tolerant=True)
        err_console.print(f"[yellow]partial results[/]: {int(done.sum())} of {done.size} work units done",
                          highlight=False)
    return ds
