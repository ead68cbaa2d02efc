"""Cluster: Dask clients backed by batch schedulers (Slurm via dask-jobqueue)."""
from insilico.cluster._slurm import slurm_client

__all__ = ["slurm_client"]
