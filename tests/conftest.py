import os

import pytest

os.environ.setdefault("INSILICO_JAX_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))


@pytest.fixture(autouse=True, scope="module")
def _bounded_memory_mappings():
    """A test process compiles thousands of kernels; drop them between test files before they
    exhaust the process's memory mappings (`insilico.jax_config.relieve_map_pressure`)."""
    yield
    from insilico.jax_config import relieve_map_pressure
    relieve_map_pressure(0.3)


@pytest.fixture(scope="session")
def client():
    """One real distributed LocalCluster (threads) per test process, shared by the tests that run trials."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c, \
            Client(c) as cl:
        yield cl
