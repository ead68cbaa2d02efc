"""Chunk/worker invariance, resume after a real SIGKILL, overwrite protection, Python API."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from insilico.cluster import ClusterOptions, connect
from insilico.store import open_results
from insilico.trials import run

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "trials/counterfactual_regimens.yaml"
COMMON = ["replicates.n=2", "dropout={hazard: 0.002}", "adherence={probability: 0.8}",
          "observations.per_subject=20", "observations.jitter_sd=0.1"]


def _data(ds):
    return ds.drop_vars("_done").load()


def assert_same(a: xr.Dataset, b: xr.Dataset):
    a, b = _data(a), _data(b)
    assert set(a.data_vars) == set(b.data_vars)
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)


# Subjects per compiled call: a chunk of m subjects is padded to `insilico.batching.bucket_size(m, 8,
# chunk_size)`, and each new size compiles the trial's kernels again (~15 s of CPU each, most of this
# file's time). CHUNK subjects per chunk everywhere but the one-chunk reference, with N and the SIGKILL
# test's N multiples of CHUNK or leaving a last chunk of 9-15 subjects (padded to CHUNK too): two sizes.
CHUNK = 16


def test_results_identical_for_any_chunk_size_and_worker_count(tmp_path, client):
    n = 73                                                              # 4 x 16 + 9
    over = COMMON + [f"n={n}"]
    ref = run(SPEC, tmp_path / "a.zarr", overrides=over + [f"execution.chunk_size={n}"], cluster=client)
    small = run(SPEC, tmp_path / "b.zarr", overrides=over + [f"execution.chunk_size={CHUNK}"], cluster=client)
    # `client` runs units on two threads at once; one thread runs them one after the other
    with connect(ClusterOptions(workers=1)) as one:
        other = run(SPEC, tmp_path / "c.zarr", overrides=over + [f"execution.chunk_size={CHUNK}"], cluster=one)
    assert_same(ref, small)
    assert_same(ref, other)
    # a subject is the same patient whatever N
    bigger = run(SPEC, tmp_path / "d.zarr", overrides=COMMON + ["n=89", f"execution.chunk_size={CHUNK}"],
                 cluster=client)
    for k in ("WT", "CL", "dropout_time", "auc_ss", "conc"):
        np.testing.assert_array_equal(bigger[k].isel(subject=slice(0, n)).values, ref[k].values, err_msg=k)


def test_existing_store_is_not_overwritten(tmp_path, client):
    from insilico.errors import SpecError
    out = tmp_path / "x.zarr"
    run(SPEC, out, overrides=["n=10"], cluster=client)
    stamp = zarr.open_group(str(out)).attrs["created"]
    with pytest.raises(SpecError, match="already exists"):
        run(SPEC, out, overrides=["n=10"], cluster=client)
    with pytest.raises(SpecError, match="different spec"):
        run(SPEC, out, overrides=["n=12"], resume=True, cluster=client)
    assert zarr.open_group(str(out)).attrs["created"] == stamp
    run(SPEC, out, overrides=["n=12"], overwrite=True, cluster=client)
    assert open_results(out).sizes["subject"] == 12


def test_resume_after_sigkill_is_identical(tmp_path, client):
    n = 160                     # 40 units: after the 5th, at least 35 left to interrupt (~0.15 s of CPU each)
    over = COMMON + [f"n={n}", f"execution.chunk_size={CHUNK}"]
    ref = run(SPEC, tmp_path / "ref.zarr", overrides=over, cluster=client)
    out = tmp_path / "killed.zarr"
    args = [sys.executable, "-m", "insilico.cli", "run", str(SPEC), "--out", str(out), "--quiet", "--workers", "1"]
    for o in over:
        args += ["--set", o]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    total = 2 * 2 * (n // CHUNK)                   # replicates x arms x chunks
    done = 0
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            done = int(zarr.open_array(str(out / "_done"), mode="r")[...].sum())
        except Exception:
            done = 0
        if done >= 5:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= done < total, f"could not interrupt mid-run (done={done})"
    partial = int(zarr.open_array(str(out / "_done"), mode="r")[...].sum())
    assert partial < total
    resumed = run(SPEC, out, overrides=over, resume=True, cluster=client)
    assert int(resumed["_done"].values.sum()) == total
    import json
    assert json.loads(resumed.attrs["timings"])["units_run"] == total - partial
    assert_same(ref, resumed)


def test_existing_scheduler_address(tmp_path):
    """`--scheduler ADDRESS`: connect to a running scheduler instead of starting a cluster."""
    from distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        ds = run(SPEC, tmp_path / "s.zarr", overrides=["n=10"],
                 cluster=ClusterOptions(scheduler=cluster.scheduler_address))
        assert int((ds["status"] == 0).sum()) == 3 * 2 * 10   # 3 replicates, both arms (counterfactual)
    import dask
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), \
            pytest.raises(RuntimeError, match="cannot connect"):
        run(SPEC, tmp_path / "t.zarr", overrides=["n=10"], cluster=ClusterOptions(scheduler="tcp://127.0.0.1:1"))


def test_trial_with_a_covariate_free_cohort(tmp_path, client):
    """A cohort of parameters with BSV only (no covariates) runs; AUC(0-inf) of a single oral dose
    is dose / CL (1-compartment model), checked against the stored CL of every subject."""
    spec = {"name": "bsv_only", "seed": 2, "n": 30, "model": {"name": "1cmt_oral"},
            "cohort": {"name": "c", "parameters": {"CL": {"typical": 5.0}, "V": {"typical": 40.0},
                                                   "KA": {"typical": 1.5}},
                       "bsv": {"parameters": ["CL", "V"], "cv_percent": [30, 20]}},
            "arms": [{"name": "a", "regimen": [{"amt": 100}]}], "observations": {"times": [1, 2, 4, 8]},
            "endpoints": [{"name": "auc", "type": "auc", "window": [0, 400]}],
            "execution": {"grid_step": 0.25}}
    ds = run(spec, tmp_path / "r.zarr", cluster=client).load()
    assert (ds["status"].values == 0).all()
    assert ds.insilico.covariates == [] and {"CL", "V", "KA"} <= set(ds.insilico.parameters)
    np.testing.assert_allclose(ds["CL"].values, 5.0 * np.exp(ds["eta_CL"].values), rtol=1e-14)
    # the window ends after > 30 half-lives for every subject: AUC(0-400) = AUC(0-inf) to ~1e-9
    assert (ds["CL"].values / ds["V"].values * 400 > 30).all()
    np.testing.assert_allclose(ds["auc"].values[0, 0], 100 / ds["CL"].values[0], rtol=1e-4)
