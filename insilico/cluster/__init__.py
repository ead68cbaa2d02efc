"""Cluster: every Dask client insilico uses — a LocalCluster, an existing scheduler, or batch jobs
(Slurm, PBS via dask-jobqueue) with mutual TLS — described by one `ClusterOptions`."""
from insilico.cluster._batch import SYSTEMS, batch_client, batch_cluster
from insilico.cluster._client import ClusterOptions, connect, disable_worker_profiler, using
from insilico.cluster._tls import cluster_security, default_tls_dir, generate_credentials

__all__ = ["SYSTEMS", "ClusterOptions", "batch_client", "batch_cluster", "cluster_security", "connect",
           "default_tls_dir", "disable_worker_profiler", "generate_credentials", "using"]
