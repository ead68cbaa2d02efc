import pytest


@pytest.fixture(scope="session")
def client():
    """One real distributed LocalCluster (threads) shared by the trial tests."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c, \
            Client(c) as cl:
        yield cl
