"""A Dask client whose workers are Slurm batch jobs (dask-jobqueue's SLURMCluster)."""
from __future__ import annotations

import socket
import sys
import tempfile
from contextlib import contextmanager


def node_address() -> str:
    """This node's address as the worker jobs will reach it (loopback on a single-node cluster)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


@contextmanager
def slurm_client(jobs: int = 1, cores: int = 1, memory: str = "2GB", walltime: str = "00:30:00",
                 queue: str | None = None, python: str = sys.executable, *, host: str | None = None,
                 timeout: float = 120, log_directory: str | None = None, job_extra_directives=None):
    """Yield a ``distributed.Client`` on a SLURMCluster of ``jobs`` batch jobs, one worker each.

    Each job asks Slurm for ``cores`` CPUs, ``memory`` and ``walltime`` on partition ``queue``
    (the default partition when None) and starts a worker of ``cores`` threads with ``python``
    (by default this interpreter, so the jobs use the same virtual environment). The scheduler
    runs in this process, listening on ``host`` (default: this node's address). Waits up to
    ``timeout`` seconds for all workers to connect, then yields the client; the jobs are
    cancelled on exit.
    """
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    if jobs < 1 or cores < 1:
        raise ValueError("jobs and cores must be at least 1")
    host = host or node_address()
    logs = log_directory or tempfile.mkdtemp(prefix="insilico-slurm-")
    cluster = SLURMCluster(
        cores=cores, processes=1, memory=memory, walltime=walltime, queue=queue, python=python,
        scheduler_options={"host": host, "dashboard_address": ":0"},   # any free port,
        log_directory=logs, job_extra_directives=list(job_extra_directives or []),
        job_name="insilico-dask", death_timeout=60,
    )
    try:
        cluster.scale(jobs=jobs)
        client = Client(cluster)
        try:
            try:
                client.wait_for_workers(jobs, timeout=timeout)
            except TimeoutError:
                raise RuntimeError(f"only {len(client.scheduler_info()['workers'])} of {jobs} Slurm worker jobs "
                                   f"connected within {timeout:g}s; see {logs} and `squeue`") from None
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
