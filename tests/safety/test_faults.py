"""Faults of a real `insilico run` process (issue 15, "keep what holds today under test"):

* the disk fills up mid-run: exit 1 with one line that says so and names the path, no
  traceback, the store left resumable (lock released, no half-created store), and ``--resume``
  once there is space gives the results of an uninterrupted run;
* SIGKILL during the final consolidation (every work unit done; the analysis attributes and the
  consolidated metadata being written): the store is complete or resumable, and ``--resume``
  gives the results (and the stored analysis) of an uninterrupted run.

How the faults are made, without test-only code in insilico:

* Disk full: where unprivileged mount namespaces are available, the run writes to a small tmpfs
  mounted in a private namespace (``unshare -rm``), and a ballast file fills it as soon as the
  store has been created: the run's next write fails with ENOSPC. Elsewhere, the file-size limit
  of the running process is lowered to 0 (``prlimit``; CPython ignores SIGXFSZ) once its store exists:
  every later write fails with EFBIG. Freeing space: the store is copied out of the tmpfs / the
  limit dies with the process.
* The kill: a ``sitecustomize`` module in the child's ``PYTHONPATH`` (written here, in tmp_path)
  wraps `insilico.store.finalize`, ``zarr.consolidate_metadata`` and zarr's atomic file writer so
  that the process pauses at three instants of the consolidation and waits for the test. At the
  first two the test copies the store (the state a SIGKILL would leave there: the process is
  stopped, nothing is buffered in it) and lets it go on; at the third, inside the write of the
  consolidated metadata (temporary file written, not yet renamed), the test sends SIGKILL.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import insilico.store as store
from insilico.trials import run
from tests.safety.conftest import SMALL, SPEC
from tests.safety.test_resume import cli, same

UNITS = 4          # SMALL: 1 replicate x 2 arms x 2 chunks of 5 subjects


def _sets(over):
    return [a for o in over for a in ("--set", o)]


def _env(tmp_path, **extra):
    return {**os.environ, "INSILICO_LOG_DIR": str(tmp_path / "logs"), **extra}


def _resumes_identically(finished, out, client):
    """``--resume`` on ``out`` finishes it; its data and stored analysis equal the uninterrupted run's."""
    run(SPEC, out, overrides=SMALL, cluster=client, resume=True)
    same(finished, out)
    assert json.loads(store.read_attrs(out)["analysis"]) == json.loads(store.read_attrs(finished)["analysis"])
    assert not list(Path(out).glob("*.partial")), "a temporary file of an interrupted write was left in the store"


# -- disk full --------------------------------------------------------------------------------------
def _tmpfs_available() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "-rm", "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d"'],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


FILL_TMPFS = textwrap.dedent("""\
    # in a private mount namespace: $1 mount point, $2 stderr file, $3 listing, $4 copy; then the command
    mnt=$1; err=$2; listing=$3; copy=$4; shift 4
    mount -t tmpfs -o size=32m tmpfs "$mnt" || exit 90
    "$@" 2>"$err" &
    pid=$!
    while kill -0 $pid 2>/dev/null && [ ! -e "$mnt/s.zarr" ]; do sleep 0.005; done
    cat /dev/zero >"$mnt/ballast" 2>/dev/null    # the disk is full from here on
    wait $pid
    rc=$?
    ls -A "$mnt" >"$listing"
    cp -a "$mnt/s.zarr" "$copy" 2>/dev/null
    exit $rc
    """)


def _disk_full_on_tmpfs(tmp_path):
    """Run on a tmpfs that fills up once the store is created; (exit code, stderr, store copied
    out, what was left beside the store, the path the run wrote)."""
    mnt, copy = tmp_path / "mnt", tmp_path / "freed.zarr"
    mnt.mkdir()
    args = cli("run", SPEC, "--out", mnt / "s.zarr", "--quiet", "--workers", "1", *_sets(SMALL))
    proc = subprocess.run([shutil.which("unshare"), "-rm", "sh", "-c", FILL_TMPFS, "sh", str(mnt),
                           str(tmp_path / "err.txt"), str(tmp_path / "ls.txt"), str(copy), *args],
                          env=_env(tmp_path), timeout=300)
    assert proc.returncode != 90, "could not mount the tmpfs"
    return proc.returncode, (tmp_path / "err.txt").read_text(), copy, (tmp_path / "ls.txt").read_text().split(), \
        mnt / "s.zarr"


def _disk_full_by_rlimit(tmp_path):
    """Run with the file-size limit dropped to 0 once the store is created (EFBIG on every later
    write); same return as `_disk_full_on_tmpfs`."""
    out = tmp_path / "s.zarr"
    # CPython ignores SIGXFSZ at startup, so a write over the limit raises OSError(EFBIG)
    proc = subprocess.Popen(cli("run", SPEC, "--out", out, "--quiet", "--workers", "1", *_sets(SMALL)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not out.exists():
        time.sleep(0.002)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err, out, [p.name for p in tmp_path.iterdir()], out


def test_disk_full_mid_run_is_reported_and_resume_is_identical(finished, tmp_path, client):
    mechanism = "tmpfs" if _tmpfs_available() else "rlimit"
    code, err, store_left, beside, written = (_disk_full_on_tmpfs if mechanism == "tmpfs"
                                              else _disk_full_by_rlimit)(tmp_path)
    assert code == 1, err
    words = "no space left on device (disk full)" if mechanism == "tmpfs" else "file too large"
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error {words} while writing {written}"), err
    assert "--resume" in line and "Traceback" not in err and "Compute Failed" not in err, err
    assert not {store.lock_path(written).name, store.creating_path(written).name} & set(beside), beside
    done = store.done_units(store_left, tolerant=True).sum()
    assert done < UNITS, "the run ended before the disk was full"
    _resumes_identically(finished, store_left, client)


def test_space_errors_are_named_in_words():
    """The CLI's one-line message for ENOSPC (a real write to /dev/full), EFBIG and EDQUOT."""
    from insilico.cli._common import space_error
    with pytest.raises(OSError) as full:
        with open("/dev/full", "wb", buffering=0) as fh:
            fh.write(b"x")
    named = OSError(full.value.errno, full.value.strerror, "/data/s.zarr")
    assert space_error(named).startswith("no space left on device (disk full) while writing /data/s.zarr;")
    assert space_error(full.value).startswith("no space left on device (disk full); free some space")
    assert space_error(OSError(27, "File too large", "/x")).startswith("file too large")
    assert space_error(OSError(122, "Disk quota exceeded")).startswith("disk quota exceeded")
    assert space_error(OSError(13, "Permission denied", "/x")) is None and space_error(ValueError()) is None


# -- SIGKILL during the final consolidation ---------------------------------------------------------
PAUSES = ("before finalize", "before consolidation", "inside the consolidated-metadata write")

SITECUSTOMIZE = textwrap.dedent('''\
    """Pauses `insilico run` at instants of its final consolidation (test_faults.py)."""
    import contextlib, pathlib, time
    import zarr
    import zarr.storage._local as local
    import insilico.store as store

    HANDSHAKE = pathlib.Path({handshake!r})
    state = {{"consolidating": False}}


    def pause(name):
        (HANDSHAKE / (name + ".ready")).touch()
        deadline = time.time() + 120
        while not (HANDSHAKE / (name + ".go")).exists() and time.time() < deadline:
            time.sleep(0.005)


    finalize = store.finalize
    def paused_finalize(*args, **kwargs):
        pause({pauses[0]!r})
        return finalize(*args, **kwargs)
    store.finalize = paused_finalize

    consolidate = zarr.consolidate_metadata
    def paused_consolidate(*args, **kwargs):
        pause({pauses[1]!r})
        state["consolidating"] = True
        return consolidate(*args, **kwargs)
    zarr.consolidate_metadata = paused_consolidate

    atomic_write = local._atomic_write
    @contextlib.contextmanager
    def paused_atomic_write(path, *args, **kwargs):
        with atomic_write(path, *args, **kwargs) as fh:
            yield fh
            if state["consolidating"] and pathlib.Path(path).name == "zarr.json":
                fh.flush()
                pause({pauses[2]!r})
    local._atomic_write = paused_atomic_write
    ''')


@pytest.mark.filterwarnings(r"ignore:Object at zarr\.[0-9a-f]+\.partial:UserWarning")   # opening the killed store
def test_sigkill_during_final_consolidation_then_resume_is_identical(finished, tmp_path, client):
    handshake, hooks = tmp_path / "handshake", tmp_path / "hooks"
    handshake.mkdir()
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE.format(handshake=str(handshake), pauses=PAUSES))
    out = tmp_path / "k.zarr"
    path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(cli("run", SPEC, "--out", out, "--quiet", "--workers", "1", *_sets(SMALL)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path, PYTHONPATH=path), start_new_session=True)
    stores = {}
    try:
        for i, name in enumerate(PAUSES):
            deadline = time.time() + 240
            while not (handshake / f"{name}.ready").exists():
                assert proc.poll() is None and time.time() < deadline, f"never reached {name!r}: {proc.stderr.read()}"
                time.sleep(0.005)
            assert store.done_units(out).sum() == UNITS           # every unit done: the end of the run
            if i < len(PAUSES) - 1:
                stores[name] = shutil.copytree(out, tmp_path / f"at {name}.zarr")   # what a kill here leaves
                (handshake / f"{name}.go").touch()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert list(out.glob("zarr.*.partial")), "the kill did not land inside the consolidated-metadata write"
    stores[PAUSES[-1]] = out
    for name, left in stores.items():
        ds = store.open_results(left, dask=False, verify=True)   # all units done: complete and readable
        assert ds.insilico.complete and ds.sizes["subject"] == 10, name
        _resumes_identically(finished, left, client)
        assert not store.lock_path(left).exists(), name
    np.testing.assert_array_equal(store.done_units(out), store.done_units(finished))
