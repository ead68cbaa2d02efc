"""Cluster: Dask clients on batch schedulers (Slurm, PBS via dask-jobqueue) with mutual TLS."""
from insilico.cluster._batch import SYSTEMS, batch_client, batch_cluster
from insilico.cluster._tls import cluster_security, default_tls_dir, generate_credentials

__all__ = ["SYSTEMS", "batch_client", "batch_cluster", "cluster_security", "default_tls_dir",
           "generate_credentials"]
