"""The trial-store layout and its Zarr round trip: dimensions and chunks, units checked at build
time, fill values of a store whose work units have not run, region writes, completion record."""
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr

from insilico import store
from insilico.errors import SpecError
from insilico.store import Endpoint, trial_layout

ARMS = ["placebo", "100 mg"]


def _layout(**kw):
    args = dict(
        arms=ARMS, n_subjects=10, n_replicates=2, times=[0.0, 1.0, 2.0], chunk_size=4,
        subject_variables={"WT": (np.float64, {"units": "kg", "long_name": "body weight", "role": "covariate"}),
                           "SEX": (np.int64, {"units": "1", "long_name": "sex", "role": "covariate",
                                              "flag_values": [0, 1], "flag_meanings": "male female"})},
        parameters={"CL": ("L/h", "clearance")}, outputs={"conc": ("mg/L", "concentration")}, observed={},
        endpoints=[Endpoint("auc", "auc", "mg*h/L", "auc of conc")], status_meanings={0: "ok", 1: "max_steps"},
        states=["depot", "central"], n_doses=3)
    return trial_layout(**{**args, **kw})


def test_dimensions_chunks_and_optional_variables():
    lay = _layout()
    assert lay.sizes == {"replicate": 2, "arm": 2, "subject": 10, "time": 3, "dose": 3, "chunk": 3}
    assert lay.variables["conc"].dims == ("replicate", "arm", "subject", "time")
    assert lay.chunks("conc") == (1, 1, 4, 3) and lay.chunks("dose_amt") == (1, 1, 4, 3)
    assert lay.chunks("WT") == (1, 4) and lay.chunks("_done") == (1, 1, 1)
    assert not {"dose_rate", "dose_ss", "dose_ii", "obs_time"} & set(lay.variables)
    full = _layout(infusions=True, steady_state=True, jittered=True)
    assert {"dose_rate", "dose_ss", "dose_ii", "obs_time"} <= set(full.variables)
    assert full.variables["dose_rate"].attrs["units"] == "mg/h"
    # status codes: -1 added to the engine's; allocated_arm: -2, -1, one code per arm
    st = lay.variables["status"].attrs
    assert st["flag_values"] == [-1, 0, 1] and st["flag_meanings"] == "not_simulated_in_this_arm ok max_steps"
    al = lay.variables["allocated_arm"].attrs
    assert al["flag_values"] == [-2, -1, 0, 1]
    assert al["flag_meanings"] == "not_allocated every_arm arm_placebo arm_100_mg"
    assert lay.variables["dose_cmt"].attrs["flag_meanings"] == "none depot central"


@pytest.mark.parametrize("kw, field", [
    ({"outputs": {"conc": ("mg/L·h", "x")}}, "outputs.conc"),
    ({"parameters": {"CL": ("L h-1 x", "x")}}, "parameters.CL"),
    ({"endpoints": [Endpoint("auc", "auc", "mg, h", "x")]}, "endpoints.auc"),
])
def test_units_outside_the_grammar_raise(kw, field):
    with pytest.raises(SpecError) as e:
        _layout(**kw)
    assert e.value.field == field


def test_store_whose_units_have_not_run_reads_as_missing(tmp_path):
    """Bug: the metadata was written with Zarr fill value 0, so never-run subjects read as
    status 0 ("ok") in arm 0. Every Zarr fill value is now the layout's fill."""
    lay = _layout(infusions=True, steady_state=True)
    path = tmp_path / "empty.zarr"
    store.create_store(path, lay, {"trial": "t"})
    for name, var in lay.variables.items():
        fv = zarr.open_array(str(path / name), mode="r").fill_value
        assert (np.isnan(fv) and np.isnan(var.fill)) or fv == var.fill, name
    ds = store.open_results(path, partial=True).load()
    assert (ds["status"] == store.NOT_SIMULATED).all() and (ds["allocated_arm"] == store.NOT_ALLOCATED).all()
    assert (ds["SEX"] == -1).all() and ds["WT"].isnull().all() and ds["conc"].isnull().all()
    assert (ds["dose_amt"] == 0).all() and ds["dose_time"].isnull().all() and (ds["dose_cmt"] == 0).all()
    assert (ds["doses_taken"] == 0).all() and (ds["_done"] == 0).all()
    assert not ds.insilico.complete and ds.insilico.arm_values("auc").empty


def test_region_write_round_trip_and_completion_record(tmp_path):
    lay = _layout()
    path = tmp_path / "r.zarr"
    store.create_store(path, lay, {"trial": "t"})
    rng = np.random.default_rng(0)
    sub = slice(4, 8)                                       # chunk 1 (subjects 4..7)
    conc = rng.random((1, 1, 4, 3))
    status = np.array([[[0, -1, 2, 0]]], np.int8)
    store.write_region(path, {"conc": (lay.variables["conc"].dims, conc),
                              "status": (lay.variables["status"].dims, status)},
                       {"replicate": slice(1, 2), "arm": slice(1, 2), "subject": sub})
    store.write_region(path, {"WT": (("replicate", "subject"), np.array([[70.0, 80, 90, 60]])),
                              "allocated_arm": (("replicate", "subject"), np.array([[1, 0, 1, 1]], np.int16))},
                       {"replicate": slice(1, 2), "subject": sub})
    store.mark_done(path, 1, 1, 1)
    done = store.done_units(path)
    assert done.sum() == 1 and done[1, 1, 1] == 1
    ds = store.open_results(path, dask=False, partial=True).load()
    np.testing.assert_array_equal(ds["conc"].values[1, 1, 4:8], conc[0, 0])
    np.testing.assert_array_equal(ds["status"].values[1, 1, 4:8], status[0, 0])
    np.testing.assert_array_equal(ds["WT"].values[1, 4:8], [70, 80, 90, 60])
    # everything outside the region keeps the fill value
    mask = np.ones(ds["status"].shape, bool)
    mask[1, 1, 4:8] = False
    assert (ds["status"].values[mask] == -1).all() and np.isnan(ds["conc"].values[mask]).all()
    assert (ds["allocated_arm"].values[0] == -2).all()
    # arm_values sees exactly the simulated pairs of the written region
    av = ds.insilico.arm_values("status")
    assert av[["replicate", "arm", "subject"]].values.tolist() == [[1, "100 mg", 4], [1, "100 mg", 6],
                                                                  [1, "100 mg", 7]]
    assert av["value"].tolist() == [0, 2, 0]
    store.finalize(path, {"analysis": "{}"})
    reopened = xr.open_zarr(path, consolidated=True)       # metadata consolidated once, at the end
    assert reopened.attrs["analysis"] == "{}" and reopened.attrs["trial"] == "t"
    store.remove_store(path)
    assert not path.exists()


def test_open_results_errors(tmp_path):
    with pytest.raises(SpecError, match="no results store"):
        store.open_results(tmp_path / "none.zarr")
    (tmp_path / "junk").mkdir()
    with pytest.raises(SpecError, match="cannot open"):
        store.open_results(tmp_path / "junk")


def test_store_does_not_import_trials():
    code = ("import sys, insilico.store; bad = [m for m in sys.modules if m.startswith(('insilico.trials', "
            "'insilico.analysis', 'jax'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
