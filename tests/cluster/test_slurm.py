"""Batch-job Dask clients (insilico.cluster.batch_client) on a real Slurm, e.g. the single-node one
from scripts/start_slurm.sh: a trial and a campaign run on Slurm worker jobs (mutual TLS, dashboard
on loopback) equal LocalCluster runs, also when one worker job is scancel'led mid-campaign; the PBS
backend submits its #PBS job scripts with qsub/qdel, here Slurm's Torque-compatible commands
(Debian slurm-wlm-torque). Skipped when no Slurm node is up, unless INSILICO_REQUIRE_SLURM is set
(CI), which turns the skip into a failure."""
import getpass
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from insilico.campaigns import run_campaign
from insilico.cluster import ClusterOptions, batch_client
from insilico.store import open_results
from insilico.trials import run

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "trials/counterfactual_regimens.yaml"
SMALL = ["n=40", "replicates.n=2", "execution.chunk_size=10"]
BATCH = {"jobs": 2, "cores": 1, "memory": "2GB", "walltime": "00:10:00"}


def _slurm_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "sinfo not found (Slurm is not installed; run scripts/start_slurm.sh)"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], check=False, capture_output=True, text=True,
                                timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed: {e}"
    if states.returncode != 0:
        return f"sinfo failed: {states.stderr.strip()} (is slurmctld running? scripts/start_slurm.sh)"
    if not any(s.strip().rstrip("*~#") in ("idle", "mix", "alloc") for s in states.stdout.split()):
        return f"no Slurm node is up (sinfo states: {states.stdout.split()}); run scripts/start_slurm.sh"
    if shutil.which("qsub") is None or shutil.which("qdel") is None:
        return "qsub/qdel not found (scripts/start_slurm.sh installs slurm-wlm-torque)"
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        return "dask-jobqueue is not installed"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_up():
    problem = _slurm_problem()
    if problem:
        if os.environ.get("INSILICO_REQUIRE_SLURM"):
            pytest.fail(f"INSILICO_REQUIRE_SLURM is set but {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="module")
def local_client():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c, \
            Client(c) as cl:
        yield cl


def same_store(a, b):
    a, b = open_results(a).drop_vars("_done").load(), open_results(b).drop_vars("_done").load()
    assert set(a.data_vars) == set(b.data_vars)
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)


def my_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i", "-u", getpass.getuser(), "-n", "insilico-dask",
                          "-t", "PENDING,RUNNING"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def listening_hosts(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    hosts = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        ip_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            hosts.add(".".join(str(int(ip_hex[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return hosts


def test_slurm_run_equals_local_run(tmp_path, local_client):
    run(BASE, tmp_path / "local.zarr", overrides=SMALL, cluster=local_client)
    with batch_client("slurm", tls_dir=tmp_path / "tls", dashboard_address="127.0.0.1:0", **BATCH) as c:
        info = c.scheduler_info()
        assert len(info["workers"]) == 2
        assert len(my_jobs()) >= 2
        # mutual TLS on every connection, dashboard reachable from this node only
        assert info["address"].startswith("tls://")
        assert all(a.startswith("tls://") for a in info["workers"])
        port = int(c.dashboard_link.split(":")[2].split("/")[0])
        assert listening_hosts(port) == {"127.0.0.1"}
        pids = set(c.run(os.getpid).values())
        assert os.getpid() not in pids and len(pids) == 2     # real worker processes, started by Slurm
        run(BASE, tmp_path / "slurm.zarr", overrides=SMALL, cluster=c)
    same_store(tmp_path / "slurm.zarr", tmp_path / "local.zarr")
    # the same through the public option used by `insilico run --cluster slurm --jobs 2`
    run(BASE, tmp_path / "slurm2.zarr", overrides=SMALL,
        cluster=ClusterOptions(kind="slurm", **BATCH, tls_dir=tmp_path / "tls", dashboard_address=None))
    same_store(tmp_path / "slurm2.zarr", tmp_path / "local.zarr")


def write_campaign(tmp_path, grid, set_) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump({"name": "slurm_campaign", "base": str(BASE), "grid": grid, "set": set_}))
    return path


def test_campaign_on_slurm_equals_local(tmp_path, local_client):
    campaign = write_campaign(tmp_path, {"n": [16, 30], "arms.1.regimen.0.amt": [150, 200]},
                              ["replicates.n=2", "execution.chunk_size=10", "adherence={probability: 0.8}"])
    local = run_campaign(campaign, tmp_path / "local.zarr", cluster=local_client)
    slurm = run_campaign(campaign, tmp_path / "slurm.zarr",
                         cluster=ClusterOptions(kind="slurm", **BATCH, tls_dir=tmp_path / "tls",
                                                dashboard_address=None))
    assert (slurm["status"] == "ok").all() and len(slurm) == len(local)
    np.testing.assert_array_equal(slurm["pos"].values, local["pos"].values)
    for s in sorted({*local["scenario"]}):
        same_store(tmp_path / "slurm.zarr" / s, tmp_path / "local.zarr" / s)


def test_pbs_backend_job_script_and_run(tmp_path, local_client, monkeypatch):
    from insilico.cluster import batch_cluster
    # Slurm's qsub wrapper ignores `#PBS -e/-o DIR/` and writes job logs into the submit directory
    monkeypatch.chdir(tmp_path)
    cluster = batch_cluster("pbs", cores=1, memory="2GB", walltime="00:10:00", queue="debug", account="proj1",
                            tls_dir=tmp_path / "tls", dashboard_address=None)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#PBS -N insilico-dask", "#PBS -q debug", "#PBS -A proj1", "#PBS -l walltime=00:10:00"):
        assert line in script
    assert "ncpus=1" in script and "--nthreads 1" in script
    assert f"--tls-ca-file {tmp_path / 'tls' / 'ca.pem'}" in script and "tls://" in script
    # a real submission through qsub (Slurm's Torque wrapper here) and qdel at the end
    run(BASE, tmp_path / "local.zarr", overrides=SMALL, cluster=local_client)
    with batch_client("pbs", jobs=2, cores=1, memory="2GB", walltime="00:10:00", tls_dir=tmp_path / "tls",
                      dashboard_address=None) as c:
        assert len(my_jobs()) >= 2
        run(BASE, tmp_path / "pbs.zarr", overrides=SMALL, cluster=c)
    same_store(tmp_path / "pbs.zarr", tmp_path / "local.zarr")
    deadline = time.time() + 30
    while my_jobs() and time.time() < deadline:     # qdel on close
        time.sleep(0.5)
    assert my_jobs() == []


def test_scancel_worker_job_mid_campaign(tmp_path, local_client):
    campaign = write_campaign(tmp_path, {"n": [40, 120]}, ["replicates.n=2", "execution.chunk_size=10"])
    local = run_campaign(campaign, tmp_path / "local.zarr", cluster=local_client)
    out = tmp_path / "k.zarr"
    watched = out / "s001" / "_done"            # the second scenario: the campaign is well under way
    with batch_client("slurm", tls_dir=tmp_path / "tls", dashboard_address=None, **BATCH) as c:
        jobs = my_jobs()
        assert len(jobs) >= 2
        result = {}

        def target():
            try:
                result["summary"] = run_campaign(campaign, out, cluster=c)
            except BaseException as e:
                result["error"] = e
        t = threading.Thread(target=target)
        t.start()
        done, deadline = 0, time.time() + 180
        while time.time() < deadline and t.is_alive():
            try:
                done = int(zarr.open_array(str(watched), mode="r")[...].sum())
            except Exception:
                done = 0
            if done >= 2:
                break
            time.sleep(0.02)
        total = int(np.prod(zarr.open_array(str(watched), mode="r").shape))
        assert t.is_alive() and 2 <= done < total, f"could not interrupt mid-campaign (done={done})"
        subprocess.run(["scancel", jobs[0]], check=True)
        t.join(240)
        assert not t.is_alive(), "campaign did not finish after a worker job was cancelled"
        assert "error" not in result, result.get("error")
        assert jobs[0] not in my_jobs()
    summary = result["summary"]
    assert (summary["status"] == "ok").all()
    np.testing.assert_array_equal(summary["pos"].values, local["pos"].values)
    for s in ("s000", "s001"):
        same_store(out / s, tmp_path / "local.zarr" / s)
