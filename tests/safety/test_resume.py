"""Incomplete results never pass as complete; --resume refuses changed inputs, survives a kill at
any instant (creation included), repairs a damaged store; one writer at a time; SIGTERM/Ctrl-C."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
import zarr
from typer.testing import CliRunner

import insilico.store as store
from insilico.cli import app
from insilico.errors import SpecError
from insilico.trials import run
from tests.safety.conftest import ROOT, SMALL, SPEC

runner = CliRunner()


def same(a, b):
    a = store.open_results(a, dask=False).drop_vars("_done").load()
    b = store.open_results(b, dask=False).drop_vars("_done").load()
    assert set(a.data_vars) == set(b.data_vars)
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)


def cli(*args):
    return [sys.executable, "-m", "insilico.cli", *map(str, args)]


# -- partial stores --------------------------------------------------------------------------------
def test_open_results_refuses_an_unfinished_store(unfinished):
    with pytest.raises(store.IncompleteResults, match=r"3 of 4 work units done.*--resume") as e:
        store.open_results(unfinished)
    assert isinstance(e.value, SpecError) and (e.value.done, e.value.total) == (3, 4)
    ds = store.open_results(unfinished, partial=True)
    assert not ds.insilico.complete


@pytest.mark.parametrize("command", ["summary", "report", "export", "plot"])
def test_reading_commands_refuse_an_unfinished_store(unfinished, tmp_path, command):
    extra = {"summary": [], "report": ["--out", tmp_path / "r.html", "--no-plots"],
             "export": ["--format", "nonmem", "--out", tmp_path / "nm.csv"],
             "plot": ["--out", tmp_path / "figs", "--dpi", "30"]}[command]
    args = [command, str(unfinished), *map(str, extra)]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "3 of 4 work units done" in res.output and "--resume" in res.output
    assert not [p for p in tmp_path.iterdir() if p.name != "copy.zarr"]


def test_summary_of_an_unfinished_store_with_partial(unfinished):
    res = runner.invoke(app, ["summary", str(unfinished), "--partial"])
    assert res.exit_code == 0, res.output
    assert "partial results" in res.output and "3 of 4" in res.output


# -- changed inputs --------------------------------------------------------------------------------
def _private_spec(tmp_path):
    """The trial spec and its cohort file copied to tmp_path (so they can be edited)."""
    shutil.copy(ROOT / "cohorts/healthy_adults.yaml", tmp_path / "cohort.yaml")
    spec = yaml.safe_load(SPEC.read_text())
    spec["cohort"] = "cohort.yaml"
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path / "trial.yaml"


def _stop_early(out):
    """Mark one unit not done, as a run interrupted before its end."""
    zarr.open_array(str(out / "_done"), mode="r+")[0, 0, 1] = 0


def test_resume_refuses_an_edited_cohort_file(tmp_path, client):
    spec = _private_spec(tmp_path)
    out = tmp_path / "o.zarr"
    run(spec, out, overrides=SMALL, cluster=client)
    _stop_early(out)
    cohort = tmp_path / "cohort.yaml"
    cohort.write_text(cohort.read_text().replace("healthy", "healthy ", 1) + "\n# edited\n")
    with pytest.raises(SpecError, match="cohort spec file") as e:
        run(spec, out, overrides=SMALL, cluster=client, resume=True)
    assert e.value.field == "--resume"
    assert int(store.done_units(out).sum()) == 3          # nothing touched


def test_resume_refuses_a_changed_seed(store_copy, client):
    _stop_early(store_copy)
    res = runner.invoke(app, ["run", str(SPEC), "--out", str(store_copy), "--resume", "--quiet",
                              *[a for o in SMALL + ["seed=7"] for a in ("--set", o)]])
    assert res.exit_code == 2 and "seed" in res.output and "--set overrides" in res.output, res.output


def test_resume_refuses_an_edited_user_model(tmp_path, client, monkeypatch):
    (tmp_path / "mymodel.py").write_text("from insilico.models import get_model\nMODEL = get_model('2cmt_oral')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = yaml.safe_load(SPEC.read_text())
    spec["model"] = {"import": "mymodel:MODEL", **{k: v for k, v in spec["model"].items() if k != "name"}}
    spec["cohort"] = str(ROOT / "cohorts/healthy_adults.yaml")
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "o.zarr"
    run(path, out, overrides=SMALL, cluster=client)
    _stop_early(out)
    (tmp_path / "mymodel.py").write_text((tmp_path / "mymodel.py").read_text() + "# tuned\n")
    with pytest.raises(SpecError, match="model source"):
        run(path, out, overrides=SMALL, cluster=client, resume=True)


def test_campaign_resume_refuses_an_edited_grid(tmp_path, client):
    from insilico.campaigns import run_campaign
    spec = tmp_path / "c.yaml"
    doc = {"name": "c", "base": str(SPEC), "grid": {"arms.1.regimen.0.amt": [200]}, "set": SMALL}
    spec.write_text(yaml.safe_dump(doc))
    run_campaign(spec, tmp_path / "out.zarr", cluster=client)
    assert store.recognise(tmp_path / "out.zarr") == "campaign"
    doc["grid"]["arms.1.regimen.0.amt"] = [300]
    spec.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match="campaign spec") as e:
        run_campaign(spec, tmp_path / "out.zarr", cluster=client, resume=True)
    assert e.value.field == "--resume"


# -- kills, signals, locks ---------------------------------------------------------------------------
def _sets(over):
    return [a for o in over for a in ("--set", o)]


@pytest.mark.parametrize("moment", ["while creating", "right after creating"])
def test_sigkill_during_store_creation_then_resume_is_identical(finished, tmp_path, client, moment):
    out = tmp_path / "k.zarr"
    watch = store.creating_path(out) if moment == "while creating" else out
    proc = subprocess.Popen(cli("run", SPEC, "--out", out, "--quiet", "--workers", "1", *_sets(SMALL)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not watch.exists():
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert watch.exists() or out.exists(), "the run ended before the store was created"
    assert not out.exists() or store.done_units(out, tolerant=True).sum() < 4
    run(SPEC, out, overrides=SMALL, cluster=client, resume=True)
    same(finished, out)
    assert not store.creating_path(out).exists() and not store.lock_path(out).exists()


BIG = ["n=400", "replicates.n=1", "execution.chunk_size=10"]   # 80 work units (2 arms)
BIG_UNITS = 80


@pytest.fixture(scope="module")
def big_ref(tmp_path_factory, client):
    out = tmp_path_factory.mktemp("big") / "ref.zarr"
    run(SPEC, out, overrides=BIG, cluster=client)
    return out


def _start_and_wait(out, units=2):
    proc = subprocess.Popen(cli("run", SPEC, "--out", out, "--quiet", "--workers", "1", *_sets(BIG)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            if store.done_units(out).sum() >= units:
                break
        except Exception:
            pass
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_run_exit_code_and_identical_resume(big_ref, tmp_path, client, sig, code):
    out = tmp_path / "s.zarr"
    proc = _start_and_wait(out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert 0 < store.done_units(out).sum() < BIG_UNITS and not store.lock_path(out).exists()
    run(SPEC, out, overrides=BIG, cluster=client, resume=True)
    same(big_ref, out)


def test_second_writer_refuses_while_the_first_runs(tmp_path):
    """A real process holds the writer's lock of --out (as `insilico run` does while it writes);
    a second `insilico run` on the same --out exits 2 naming the holder, and writes nothing."""
    out = tmp_path / "l.zarr"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from insilico.store import writer_lock\n"
        f"with writer_lock({str(out)!r}):\n"
        "    print('locked', flush=True); sys.stdin.readline()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run(cli("run", SPEC, "--out", out, "--quiet", *_sets(BIG)),
                                capture_output=True, text=True, timeout=180)
        assert second.returncode == 2, second.stderr
        assert "--out" in second.stderr and "another run" in second.stderr
        assert f"pid {holder.pid}" in second.stderr and socket.gethostname() in second.stderr
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "x.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.lock_path(out).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "then"}))
    with store.writer_lock(out) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_lock_held_on_another_host_is_respected(tmp_path):
    out = tmp_path / "x.zarr"
    store.lock_path(out).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "now"}))
    with pytest.raises(SpecError, match="pid 1 on host elsewhere"), store.writer_lock(out):
        pass


# -- damaged stores --------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_damaged_chunk_is_named_and_resume_recomputes_it(finished, store_copy, client, tmp_path, damage):
    chunk = store_copy / "cmax_ss" / "c" / "0" / "1" / "1"
    assert chunk.is_file()
    if damage == "truncated":
        chunk.write_bytes(chunk.read_bytes()[:7])
    else:
        chunk.unlink()
    with pytest.raises(store.DamagedStore, match=r"cmax_ss chunk 0\.1\.1"):
        store.open_results(store_copy, verify=True)
    res = runner.invoke(app, ["report", str(store_copy), "--out", str(tmp_path / "r.html"), "--no-plots"])
    assert res.exit_code == 2 and "damaged" in res.output and "cmax_ss" in res.output, res.output
    with pytest.warns(UserWarning, match="recomputing 1 work unit"):
        ds = run(SPEC, store_copy, overrides=SMALL, cluster=client, resume=True)
    assert json.loads(ds.attrs["timings"])["units_run"] == 1
    same(finished, store_copy)


# -- batch systems ----------------------------------------------------------------------------------
def test_slurm_without_sbatch_is_a_clear_error_within_seconds(tmp_path, monkeypatch):
    from insilico.cluster import ClusterOptions, connect
    monkeypatch.setenv("PATH", str(tmp_path))
    t0 = time.time()
    with pytest.raises(SpecError, match="sbatch") as e, connect(ClusterOptions(kind="slurm", tls=False)):
        pass
    assert e.value.field == "--cluster" and time.time() - t0 < 10


def test_slurm_job_that_never_starts_names_its_state(tmp_path, monkeypatch):
    from insilico.cluster import batch_client
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, body in {"sbatch": "echo 'Submitted batch job 4242'", "squeue": "echo '4242 PENDING Resources'",
                       "scancel": "exit 0"}.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    t0 = time.time()
    with pytest.raises(RuntimeError, match="job 4242: PENDING Resources"), \
            batch_client("slurm", jobs=1, timeout=4, tls=False, dashboard_address=None):
        pass
    assert time.time() - t0 < 30


# -- internal errors -----------------------------------------------------------------------------------
def test_internal_error_prints_one_line_and_logs_the_traceback(finished, tmp_path, monkeypatch):
    import insilico.cli.summary as summary

    def broken(ds):
        return 1 / 0
    monkeypatch.setattr(summary, "show_summary", broken)
    monkeypatch.setenv("INSILICO_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("INSILICO_DEBUG", raising=False)
    res = runner.invoke(app, ["summary", str(finished)])
    assert res.exit_code == 1 and "internal error, please report" in res.output
    assert "ZeroDivisionError: division by zero" in res.output
    logs = list((tmp_path / "logs").glob("insilico-*.log"))
    assert len(logs) == 1 and str(logs[0].name) in res.output.replace("\n", "")
    assert "Traceback" in logs[0].read_text() and "broken" in logs[0].read_text()
    monkeypatch.setenv("INSILICO_DEBUG", "1")
    assert isinstance(runner.invoke(app, ["summary", str(finished)]).exception, ZeroDivisionError)
