"""The twin store: append-only history, earlier versions reopen, updates reproduce exactly, and a
process killed (SIGKILL) during an update leaves the previous version intact."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from insilico import twins
from insilico.errors import SpecError
from insilico.store import read_twin, read_twin_versions, recognise
from tests.twins.conftest import DOSES, LEVELS, PRIOR, rows

ROOT = Path(__file__).resolve().parents[2]


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    store = tmp_path_factory.mktemp("hist") / "twins.zarr"
    twins.create(store, "P1", PRIOR, {"WT": 80, "AGE": 64})         # AGE: not used by the prior, not stored
    twins.update(store, "P1", rows(DOSES[:1], LEVELS[:1]))
    return store


def test_store_is_marked_and_holds_only_what_the_prior_needs(twin):
    assert recognise(twin) == "twin"
    info = read_twin(twin, "P1")
    assert info["covariates"] == {"WT": 80.0} and info["prior"] == PRIOR
    v = read_twin_versions(twin, "P1")
    assert [x.number for x in v] == [0, 1]
    np.testing.assert_array_equal(v[1]["rows"]["TIME"], [0.0, 11.5])
    assert v[1]["parent_sha256"] == v[0]["record_sha256"] and v[1]["prior_sha256"] == info["prior_sha256"]


def test_history_is_append_only_earlier_versions_reopen_and_reproduce(twin, tmp_path):
    v1_before = _tree_digest(twin / "P1" / "v000001")
    first = twins.show(twin, "P1")["P1"]
    second = twins.update(twin, "P1", rows(DOSES[1:], LEVELS[1:]))["P1"]
    assert second["version"] == 2 and second["eta"] != first["eta"]
    assert _tree_digest(twin / "P1" / "v000001") == v1_before          # nothing overwritten
    assert twins.show(twin, "P1", version=1)["P1"] == first             # the earlier version reopens
    for version in (1, 2):
        r = twins.reproduce(twin, "P1", version)
        assert r["max_abs_diff"] <= 1e-12 and r["objective_diff"] <= 1e-10
    # the same rows in one update give the same posterior as in two (the history, not the path, counts)
    other = tmp_path / "o.zarr"
    twins.create(other, "P1", PRIOR, "WT=80")
    once = twins.update(other, "P1", rows(DOSES, LEVELS))["P1"]
    assert once["eta"]["ETA1"] == pytest.approx(second["eta"]["ETA1"], abs=1e-12)
    h = twins.history(twin, "P1")
    assert list(h["version"]) == [0, 1, 2] and list(h["rows_added"]) == [0, 2, 2]


def test_bad_updates_change_nothing(twin):
    before = _tree_digest(twin)
    bad = [
        (rows([], []), "data"),                                               # empty update
        (rows([], [(5.0, 1.0)]).assign(CONC_UGL=3.0), "data.CONC_UGL"),      # level in a wrong column
        (rows([(30.0, 500.0)], []).assign(DV=12.0), "data.DV"),              # level on a dose record
        (rows([], [(11.5, 2.0)]), "data.TIME"),                               # duplicate level time
        (rows([], [(20.0, 2.0)]).assign(WT=np.nan), "data.WT"),              # covariate missing (NaN)
    ]
    for df, field in bad:
        with pytest.raises(SpecError) as e:
            twins.update(twin, "P1", df)
        assert e.value.field == field, (field, str(e.value))
    with pytest.raises(SpecError) as e:
        twins.update(twin, "NOBODY", rows([], [(20.0, 1.0)]))
    assert e.value.field == "patient_id"
    with pytest.raises(SpecError) as e:
        twins.create(twin, "John Smith", PRIOR, "WT=80")
    assert e.value.field == "patient_id"
    assert _tree_digest(twin) == before


def test_observation_before_the_first_dose_is_refused(store):
    twins.create(store, "E1", PRIOR, "WT=80")
    with pytest.raises(SpecError) as e:
        twins.update(store, "E1", rows([(2.0, 500.0)], [(1.0, 3.0)]))
    assert e.value.field == "data.TIME" and "before the first dose" in str(e.value)
    assert [v.number for v in read_twin_versions(store, "E1")] == [0]


def test_reads_are_incremental_check_the_chain_and_notice_a_replaced_store(tmp_path):
    store = tmp_path / "c.zarr"
    twins.create(store, "C1", PRIOR, "WT=80")
    twins.update(store, "C1", rows(DOSES[:1], LEVELS[:1]))
    twins.update(store, "C1", rows(DOSES[1:], LEVELS[1:]))
    full = read_twin_versions(store, "C1")
    v2, aside = store / "C1" / "v000002", tmp_path / "aside"
    # another writer publishes version 2 after this process cached versions 0..1
    v2.rename(aside)
    assert [v.number for v in read_twin_versions(store, "C1")] == [0, 1]
    aside.rename(v2)
    again = read_twin_versions(store, "C1")
    assert [v.number for v in again] == [0, 1, 2] and again[2]["record_sha256"] == full[2]["record_sha256"]
    np.testing.assert_array_equal(again[2]["eta_cov"], full[2]["eta_cov"])
    assert twins.show(store, "C1")["C1"]["eta"]["ETA1"] == float(full[2]["eta"][0])
    # a new version whose parent digest does not chain onto the cached history is refused
    v2.rename(aside)
    read_twin_versions(store, "C1")
    meta = json.loads((aside / "zarr.json").read_text())
    meta["attributes"]["parent_sha256"] = "0" * 64
    (aside / "zarr.json").write_text(json.dumps(meta))
    aside.rename(v2)
    with pytest.raises(SpecError) as e:
        read_twin_versions(store, "C1")
    assert e.value.field == "store" and "chain" in str(e.value)
    # the store replaced at the same path: the cached versions are not reused
    shutil.rmtree(store)
    twins.create(store, "C1", PRIOR, "WT=90")
    fresh = read_twin_versions(store, "C1")
    assert [v.number for v in fresh] == [0] and fresh[0]["parameters"]["CL"] == pytest.approx(4.0 * (90 / 70) ** 0.75)


KILLER = """
import os, signal, sys
import pandas as pd
from insilico import twins
where = sys.argv[2]
if where == "publish":           # the new version is written in full, killed just before its rename
    real = os.rename
    def rename(a, b, *args, **kw):
        if ".writing-" in str(a):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(a, b, *args, **kw)
    os.rename = rename
else:                            # killed half-way through writing the new version's arrays
    from zarr.core.group import AsyncGroup
    real = AsyncGroup.create_array
    async def create_array(self, name, *args, **kw):
        if name == "eta_cov":
            os.kill(os.getpid(), signal.SIGKILL)
        return await real(self, name, *args, **kw)
    AsyncGroup.create_array = create_array
rows = pd.DataFrame([dict(TIME=40.0, AMT=0, EVID=0, DV=1.5)])
twins.update(sys.argv[1], "K1", rows)
"""


@pytest.mark.parametrize("where", ["publish", "arrays"])
def test_sigkill_during_an_update_leaves_the_previous_version_intact(tmp_path, where):
    store = tmp_path / "k.zarr"
    twins.create(store, "K1", PRIOR, "WT=80")
    twins.update(store, "K1", rows(DOSES, LEVELS))
    before = twins.show(store, "K1")["K1"]
    digest = _tree_digest(store / "K1" / "v000001")
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(KILLER))
    proc = subprocess.run([sys.executable, str(script), str(store), where], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert any(p.name.startswith(".v000002.writing-") for p in (store / "K1").iterdir())   # it was mid-write
    assert twins.show(store, "K1")["K1"] == before                     # the latest is still version 1
    assert _tree_digest(store / "K1" / "v000001") == digest
    assert twins.reproduce(store, "K1")["max_abs_diff"] <= 1e-12
    after = twins.update(store, "K1", rows([], [(40.0, 1.5)]))["K1"]   # stale lock taken over, leftovers removed
    assert after["version"] == 2
    assert not any(".writing-" in p.name for p in (store / "K1").iterdir())
