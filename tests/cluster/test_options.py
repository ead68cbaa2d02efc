"""ClusterOptions: an option the chosen kind of cluster would not use is refused, never ignored."""
import pytest

from insilico.cluster import ClusterOptions
from insilico.errors import SpecError


@pytest.mark.parametrize("kwargs, field", [
    ({"kind": "slurm", "workers": 2}, "--workers"),
    ({"kind": "pbs", "processes": True}, "--processes"),
    ({"kind": "local", "jobs": 2}, "--jobs"),
    ({"kind": "local", "queue": "compute"}, "--queue"),
    ({"scheduler": "tcp://127.0.0.1:8786", "workers": 2}, "--workers"),
    ({"scheduler": "tcp://127.0.0.1:8786", "cores": 2}, "--cores"),
    ({"kind": "cloud"}, "--cluster"),
    ({"workers": 0}, "--workers"),
])
def test_unused_or_invalid_options_are_refused(kwargs, field):
    with pytest.raises(SpecError) as e:
        ClusterOptions(**kwargs)
    assert e.value.field == field


def test_valid_combinations_are_accepted():
    assert ClusterOptions(workers=2, processes=True).kind == "local"
    assert ClusterOptions(kind="slurm", jobs=2, cores=1, memory="2GB").batch_options()["jobs"] == 2
    assert ClusterOptions(scheduler="tls://host:8786", tls_dir="/tmp/tls").scheduler.startswith("tls://")


def test_connect_starts_workers_without_the_stack_sampling_profiler(monkeypatch):
    """distributed's profiler samples other threads' frames, which can crash CPython 3.11
    (`disable_worker_profiler`); the workers `connect` starts run without it, even when the
    configuration asked for it."""
    import dask

    from insilico.cluster import ClusterOptions, connect
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", "True")
    with dask.config.set({"distributed.worker.profile.enabled": True}):
        with connect(ClusterOptions(workers=1)) as client:
            running = client.run(lambda dask_worker: sorted(dask_worker.periodic_callbacks))
    assert running and all("profile" not in names for names in running.values()), running
    with dask.config.set({"distributed.worker.profile.enabled": True}):   # the check can fail
        from distributed import LocalCluster
        with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as lc:
            assert all("profile" in w.periodic_callbacks for w in lc.workers.values())
