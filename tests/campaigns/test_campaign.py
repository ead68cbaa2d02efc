"""Campaigns: grid expansion, identical to single runs, failed scenarios reported, resume after a
driver SIGKILL, and a worker process killed mid-run on a LocalCluster."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml
import zarr

from insilico.campaigns import run_campaign, scenarios
from insilico.campaigns._spec import load_campaign_spec
from insilico.store import open_results
from insilico.trials import run

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "trials/counterfactual_regimens.yaml"
# Every N below is a multiple of the chunk size (10) or leaves a last chunk of 9 (padded to 10 subjects,
# `insilico.batching.bucket_size`): one compiled size in this process (a new size costs ~15 s of CPU)
SET = ["replicates.n=2", "execution.chunk_size=10", "adherence={probability: 0.8}"]


def write_campaign(tmp_path, grid, set_=SET, base=BASE):
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump({"name": "c", "base": str(base), "grid": grid, "set": set_}, sort_keys=False))
    return path


def same_store(a, b):
    a, b = open_results(a).drop_vars("_done").load(), open_results(b).drop_vars("_done").load()
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)


def test_grid_expansion(tmp_path):
    spec, _ = load_campaign_spec(write_campaign(tmp_path, {"n": [10, 20], "arms.1.regimen.0.amt": [150, 200]}))
    plan = scenarios(spec)
    assert [p[0] for p in plan] == ["s000", "s001", "s002", "s003"]
    assert plan[1][1][-2:] == ["n=10", "arms.1.regimen.0.amt=200"]


def test_campaign_equals_single_runs_and_reports_failures(tmp_path, client):
    grid = {"n": [19, 30], "arms.1.regimen.0.amt": [200, -5]}     # -5 mg: an invalid scenario
    summary = run_campaign(write_campaign(tmp_path, grid), tmp_path / "out.zarr", cluster=client)
    status = summary.groupby("scenario")["status"].first().to_dict()
    assert status == {"s000": "ok", "s001": "failed", "s002": "ok", "s003": "failed"}
    failed = summary[summary["status"] == "failed"]
    assert failed["reason"].str.contains("arms.1.regimen.0.amt").all()
    ok = summary[summary["status"] == "ok"]
    assert set(ok["n"]) == {19, 30} and ok["pos"].between(0, 1).all()
    run(BASE, tmp_path / "single.zarr", overrides=SET + ["n=30", "arms.1.regimen.0.amt=200"], cluster=client)
    same_store(tmp_path / "out.zarr" / "s002", tmp_path / "single.zarr")
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert len(json.loads(root.attrs["summary"])) == len(summary)


def test_scenario_whose_simulation_raises(tmp_path, client, monkeypatch):
    (tmp_path / "camp_models.py").write_text(
        "import jax.numpy as jnp\n"
        "from insilico.models import get_model, Model\n"
        "good = get_model('2cmt_oral')\n"
        "def _boom(t, y, p):\n"
        "    raise FloatingPointError('model blew up for every subject')\n"
        "bad = Model(name='bad', states=good.states, parameters=good.parameters, rhs=_boom,\n"
        "            outputs=good.outputs, dose_compartments=good.dose_compartments)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = {"model": [{"import": "camp_models:good"}, {"import": "camp_models:bad"}]}
    summary = run_campaign(write_campaign(tmp_path, grid, SET + ["n=10"]), tmp_path / "o.zarr", cluster=client)
    st = summary.groupby("scenario")["status"].first().to_dict()
    assert st == {"s000": "ok", "s001": "failed"}
    assert "model blew up" in summary.loc[summary["scenario"] == "s001", "reason"].iloc[0]


def test_resume_after_driver_sigkill(tmp_path, client):
    grid = {"n": [50, 60]}       # s000: 20 units (2 replicates x 2 arms x 5 chunks); killed after 3
    spec = write_campaign(tmp_path, grid)
    run_campaign(spec, tmp_path / "ref.zarr", cluster=client)
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "insilico.cli", "campaign", str(spec), "--out", str(out),
                             "--quiet", "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline, done = time.time() + 240, 0
    while time.time() < deadline and proc.poll() is None:
        try:
            done = int(zarr.open_array(str(out / "s000" / "_done"), mode="r")[...].sum())
        except Exception:
            done = 0
        if done >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done >= 3 and not (out / "s001" / "_done").exists(), "could not interrupt mid-campaign"
    summary = run_campaign(spec, out, resume=True, cluster=client)
    assert (summary["status"] == "ok").all()
    for s in ("s000", "s001"):
        same_store(out / s, tmp_path / "ref.zarr" / s)


def test_worker_killed_mid_run(tmp_path):
    from distributed import Client, LocalCluster
    spec = write_campaign(tmp_path, {"n": [100]})   # 40 units; a worker is killed after 2
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as c:
        run_campaign(spec, tmp_path / "ref.zarr", cluster=c)
        pids = list(c.run(os.getpid).values())
        result = {}
        t = threading.Thread(target=lambda: result.update(s=run_campaign(spec, tmp_path / "k.zarr", cluster=c)))
        t.start()
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                if zarr.open_array(str(tmp_path / "k.zarr" / "s000" / "_done"), mode="r")[...].sum() >= 2:
                    break
            except Exception:
                pass
            time.sleep(0.02)
        os.kill(pids[0], signal.SIGKILL)           # the nanny restarts it; lost tasks are recomputed
        t.join(300)
    assert (result["s"]["status"] == "ok").all()
    same_store(tmp_path / "k.zarr" / "s000", tmp_path / "ref.zarr" / "s000")
