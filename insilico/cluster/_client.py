"""Where work units run: one options object and one context manager for every Dask client.

``ClusterOptions`` says which client to make; :func:`connect` makes it:

* ``kind="local"`` (default): a ``distributed.LocalCluster`` started here — ``workers`` threads in
  one process, or with ``processes=True`` that many single-threaded worker processes talking
  over TCP on loopback;
* ``scheduler="tcp://host:8786"`` (or ``tls://…``, credentials from ``tls_dir``): an existing
  scheduler;
* ``kind="slurm"`` or ``"pbs"``: batch jobs through dask-jobqueue (`batch_client`), one worker
  per job, mutual TLS by default.

`insilico.run` and `insilico.run_campaign` take either a ``distributed.Client`` (used as is,
not closed) or a ``ClusterOptions`` through their one ``cluster`` argument.
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from insilico.cluster._batch import SYSTEMS
from insilico.errors import SpecError

__all__ = ["ClusterOptions", "connect", "disable_worker_profiler", "using"]

KINDS = ("local",) + SYSTEMS


@dataclass(frozen=True)
class ClusterOptions:
    """How to obtain a Dask client (see the module docstring).

    kind : ``local``, ``slurm`` or ``pbs``.
    scheduler : address of an existing scheduler (overrides ``kind``).
    workers, processes : LocalCluster size (default: one thread per CPU) and process mode.
    jobs, cores, memory, walltime, queue, account : batch jobs (None: the jobqueue configuration,
        ``~/.config/dask/jobqueue.yaml``, then insilico's defaults).
    tls, tls_dir : mutual TLS for batch clusters and the credentials folder (default
        `default_tls_dir`); ``tls_dir`` also serves a ``tls://`` scheduler address.
    dashboard_address : batch scheduler dashboard (default 127.0.0.1:8787; None: no dashboard).
    """

    kind: str = "local"
    scheduler: str | None = None
    workers: int | None = None
    processes: bool = False
    jobs: int | None = None
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    tls: bool = True
    tls_dir: Path | str | None = None
    dashboard_address: str | None = "127.0.0.1:8787"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SpecError("--cluster", f"unknown cluster {self.kind!r}; use {', '.join(KINDS)}")
        for f in ("workers", "jobs", "cores"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise SpecError(f"--{f}", f"must be an integer >= 1, got {v!r}")
        # an option that the chosen kind of cluster would not use is refused, never ignored
        local = {"workers": self.workers is not None, "processes": self.processes}
        batch = {f: getattr(self, f) is not None for f in ("jobs", "cores", "memory", "walltime", "queue", "account")}
        if self.scheduler:
            unused = [f for f, given in {**local, **batch}.items() if given]
            if unused:
                raise SpecError(f"--{unused[0]}", "not used with --scheduler (an existing scheduler has its workers)")
        elif self.kind == "local":
            unused = [f for f, given in batch.items() if given]
            if unused:
                raise SpecError(f"--{unused[0]}", "applies to batch clusters only (--cluster slurm or pbs)")
        else:
            unused = [f for f, given in local.items() if given]
            if unused:
                raise SpecError(f"--{unused[0]}", f"applies to the local cluster only, not --cluster {self.kind}")

    def batch_options(self) -> dict:
        """Keyword arguments of `batch_client` (unset fields left to the jobqueue configuration)."""
        keys = ("jobs", "cores", "memory", "walltime", "queue", "account", "tls", "tls_dir")
        opts = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        opts["dashboard_address"] = self.dashboard_address
        return opts



def disable_worker_profiler() -> None:
    """Turn off distributed's statistical profiler in the workers started from this process: in-process
    worker threads (Dask config ``distributed.worker.profile.enabled``) and worker processes or batch
    jobs (through the environment they inherit, ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED``).

    The profiler samples the other threads' stacks every 10 ms with ``sys._current_frames()``, which is
    not safe against frames being freed concurrently on CPython 3.11: a worker thread writing a Zarr
    region crashed a test process with a segmentation fault inside ``Worker.trigger_profile``. The
    profile only feeds the dashboard, which insilico does not start. Idempotent; `connect` calls it."""
    import dask
    dask.config.set({"distributed.worker.profile.enabled": False})
    os.environ["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"


@contextmanager
def connect(options: ClusterOptions | None = None):
    """Yield a ``distributed.Client`` made as ``options`` say; closed (and any cluster or batch
    jobs started here stopped) on exit. An unreachable scheduler raises RuntimeError; a missing
    TLS credential for a ``tls://`` address raises SpecError naming ``--tls-dir``."""
    from distributed import Client, LocalCluster

    disable_worker_profiler()
    o = options or ClusterOptions()
    if o.scheduler:
        import dask
        security = None
        if o.scheduler.startswith("tls://"):
            from insilico.cluster._tls import cluster_security
            try:
                security = cluster_security(o.tls_dir, create=False)
            except FileNotFoundError as e:
                raise SpecError("--tls-dir", str(e)) from None
        try:
            client = Client(o.scheduler, security=security,
                            timeout=dask.config.get("distributed.comm.timeouts.connect"))
        except OSError as e:
            raise RuntimeError(f"cannot connect to scheduler {o.scheduler}: {e}") from None
        try:
            yield client
        finally:
            client.close()
        return
    if o.kind in SYSTEMS:
        from insilico.cluster._batch import batch_client
        with batch_client(o.kind, **o.batch_options()) as client:
            yield client
        return
    n = o.workers or os.cpu_count() or 1
    # worker processes talk over TCP on loopback only; threads use the in-process transport
    kw = ({"n_workers": n, "threads_per_worker": 1, "host": "127.0.0.1"} if o.processes
          else {"n_workers": 1, "threads_per_worker": n})
    with LocalCluster(processes=o.processes, dashboard_address=None, **kw) as lc, Client(lc) as client:
        yield client


def using(cluster):
    """Context manager yielding a client for ``cluster``: a ``distributed.Client`` (used as is,
    left open), a `ClusterOptions`, or None (a default LocalCluster)."""
    if cluster is None or isinstance(cluster, ClusterOptions):
        return connect(cluster)
    if hasattr(cluster, "submit") and hasattr(cluster, "scheduler_info"):
        return nullcontext(cluster)
    raise TypeError(f"cluster must be a distributed.Client or insilico.cluster.ClusterOptions, "
                    f"got {type(cluster).__name__}")
