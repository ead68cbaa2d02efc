"""Dask clients whose workers are batch jobs: Slurm (``SLURMCluster``) or PBS (``PBSCluster``),
both from dask-jobqueue.

Each job runs one Dask worker process with ``cores`` threads. The scheduler runs in the calling
process (the campaign driver), listening on this node's address; the dashboard listens on
127.0.0.1 only unless another address is asked for (reach it with ``ssh -L 8787:localhost:8787``).
Scheduler, worker and client traffic uses mutual TLS by default (`insilico.cluster.cluster_security`).

Options not given here fall back to the user's dask-jobqueue configuration
(``~/.config/dask/jobqueue.yaml``, section ``jobqueue.slurm`` or ``jobqueue.pbs``; see
``cluster/jobqueue.yaml``), then to the defaults in ``DEFAULTS``.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from insilico.errors import SpecError

SYSTEMS = ("slurm", "pbs")
DEFAULTS = {"cores": 1, "memory": "2GB", "walltime": "00:30:00"}
SUBMIT = {"slurm": "sbatch", "pbs": "qsub"}           # the command each system submits jobs with
STATUS = {"slurm": ["squeue", "-h", "-o", "%i %T %r", "-j"], "pbs": ["qstat", "-f"]}


def check_batch_system(system: str) -> None:
    """Raise `SpecError` naming ``--cluster`` when ``system``'s submit command is not on PATH."""
    if shutil.which(SUBMIT[system]) is None:
        raise SpecError("--cluster", f"{system}: the batch command {SUBMIT[system]!r} is not on PATH; run on a "
                                     f"{system} login node, or use --cluster local / --scheduler ADDRESS")


def job_states(system: str, job_ids: list[str]) -> dict[str, str]:
    """``job id -> state`` as the batch system reports it (Slurm: ``PENDING (Resources)``; PBS:
    ``job_state = Q``); a job it no longer knows is ``gone``; empty when the status command fails."""
    if not job_ids or shutil.which(STATUS[system][0]) is None:
        return {}
    try:
        if system == "slurm":
            res = subprocess.run([*STATUS[system], ",".join(job_ids)], capture_output=True, text=True, timeout=10)
            found = {ln.split()[0]: " ".join(ln.split()[1:]) for ln in res.stdout.splitlines() if ln.strip()}
            return {j: found.get(j, "gone") for j in job_ids}
        out = {}
        for j in job_ids:
            res = subprocess.run([*STATUS[system], j], capture_output=True, text=True, timeout=10)
            state = [ln.split("=", 1)[1].strip() for ln in res.stdout.splitlines() if "job_state" in ln]
            out[j] = f"job_state = {state[0]}" if state else "gone"
        return out
    except (OSError, subprocess.SubprocessError):
        return {}


def _job_ids(cluster) -> list[str]:
    return [str(j) for j in (getattr(w, "job_id", None) for w in cluster.workers.values()) if j]


def node_address() -> str:
    """This node's address as the worker jobs will reach it (loopback on a single-node cluster)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _configured(system: str, key: str, value):
    """``value`` if given, else the jobqueue config's, else insilico's default."""
    if value is not None:
        return value
    import dask
    conf = dask.config.get(f"jobqueue.{system}.{key}", None)
    return conf if conf is not None else DEFAULTS.get(key)


def batch_cluster(system: str = "slurm", *, cores: int | None = None, memory: str | None = None,
                  walltime: str | None = None, queue: str | None = None, account: str | None = None,
                  python: str = sys.executable, tls: bool = True, tls_dir=None,
                  dashboard_address: str | None = "127.0.0.1:8787", host: str | None = None,
                  log_directory: str | None = None, job_extra_directives=None):
    """A dask-jobqueue cluster object (no job submitted yet; ``.scale(jobs=n)`` submits).

    ``system``: ``slurm`` or ``pbs``. Each job asks for ``cores`` CPUs, ``memory`` and
    ``walltime`` on queue/partition ``queue`` (charged to ``account``) and starts one worker
    with ``python`` (by default this interpreter, so the jobs use the same environment).
    ``tls``: mutual TLS with the credentials in ``tls_dir`` (generated there when absent).
    ``dashboard_address``: where the scheduler's dashboard listens (None: no dashboard).
    """
    if system not in SYSTEMS:
        raise ValueError(f"unknown batch system {system!r}; use one of {', '.join(SYSTEMS)}")
    cores = int(_configured(system, "cores", cores))
    if cores < 1:
        raise ValueError("cores must be at least 1")
    if system == "slurm":
        from dask_jobqueue import SLURMCluster as Cls
    else:
        from dask_jobqueue import PBSCluster as Cls
    security = None
    if tls:
        from insilico.cluster._tls import cluster_security
        security = cluster_security(tls_dir)
    return Cls(
        cores=cores, processes=1, memory=_configured(system, "memory", memory),
        walltime=_configured(system, "walltime", walltime), queue=_configured(system, "queue", queue),
        account=_configured(system, "account", account), python=python,
        protocol="tls://" if tls else "tcp://", security=security,
        # without a dashboard the scheduler still serves /health and /metrics: keep that on loopback
        scheduler_options={"host": host or node_address(), "dashboard": bool(dashboard_address),
                           "dashboard_address": dashboard_address or "127.0.0.1:0"},
        log_directory=log_directory or tempfile.mkdtemp(prefix=f"insilico-{system}-"),
        job_extra_directives=list(job_extra_directives or []), job_name="insilico-dask", death_timeout=60,
    )


@contextmanager
def batch_client(system: str = "slurm", jobs: int = 1, *, timeout: float = 120, **options):
    """Yield a ``distributed.Client`` on ``jobs`` batch jobs of ``system`` (see `batch_cluster`
    for ``options``). Waits up to ``timeout`` seconds for every worker to connect; the jobs are
    cancelled on exit."""
    from distributed import Client

    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    if system in SYSTEMS:
        check_batch_system(system)
    logs = options.setdefault("log_directory", tempfile.mkdtemp(prefix=f"insilico-{system}-"))
    cluster = batch_cluster(system, **options)
    try:
        cluster.scale(jobs=jobs)
        client = Client(cluster, security=cluster.security)
        try:
            _wait_for_jobs(client, cluster, system, jobs, timeout, logs)
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _wait_for_jobs(client, cluster, system: str, jobs: int, timeout: float, logs) -> None:
    """Wait until ``jobs`` workers connect; RuntimeError naming the jobs' states when they have all
    left the queue without connecting (at once) or at ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.wait_for_workers(jobs, timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
            return
        except TimeoutError:
            pass
        states = job_states(system, _job_ids(cluster))
        gone = bool(states) and all(s == "gone" for s in states.values())
        if gone or time.monotonic() >= deadline:
            n = len(client.scheduler_info()["workers"])
            seen = "; ".join(f"job {j}: {s}" for j, s in states.items()) or "no job state available"
            why = "every job left the queue" if gone else f"within {timeout:g}s"
            raise RuntimeError(f"only {n} of {jobs} {system} worker jobs connected ({why}; {seen}); "
                               f"see the job logs in {logs}")
