"""NONMEM data set round trip (issue 11): `read_nonmem` -> `simulate` -> `write_nonmem` -> `read_nonmem`
reproduces the events (EVID 0-4, SS 1/2, RATE -1/-2, ADDL/II, MDV, null items, DVID/BLQ, covariates),
and the simulated DVs; simulating the re-read data gives the original result to 1e-12.
Time-varying covariates: tests/dosing/test_nonmem_roundtrip_covariates.py."""
import numpy as np
import pandas as pd
import pytest

from insilico.dosing import DoseTable, NonmemData, nonmem_frame, read_nonmem, write_nonmem
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.models import get_model

MODEL = get_model("1cmt_oral").with_dose_parameters("D1", "R2")
PARAMS = pd.DataFrame({"ID": [1, 2, 3], "CL": [3.0, 4.5, 2.2], "V": [25.0, 40.0, 18.0], "KA": [0.9, 1.4, 0.6],
                       "D1": [2.0, 3.5, 1.0], "R2": [40.0, 25.0, 60.0]})
# ID TIME EVID AMT RATE CMT II ADDL SS MDV DV DVID BLQ WT SEX
DATA = """ID,TIME,EVID,AMT,RATE,CMT,II,ADDL,SS,MDV,DV,DVID,BLQ,WT,SEX
1,0,1,100,0,1,12,1,1,1,.,.,.,70.5,M
1,0,0,.,.,.,.,.,.,0,0.25,1,0,70.5,M
1,2,0,0,0,2,0,0,0,0,3.1,1,0,70.5,M
1,6,2,0,0,.,0,0,0,1,.,.,.,70.5,M
1,30,3,0,0,.,0,0,0,1,.,.,.,70.5,M
1,31,0,0,0,2,0,0,0,0,0.01,1,1,70.5,M
1,36,4,80,-2,1,0,0,0,1,.,.,.,70.5,M
1,40,0,0,0,2,0,0,0,1,.,1,0,70.5,M
1,44,0,0,0,2,0,0,0,0,2.2,1,0,70.5,M
2,0,1,50,-1,2,24,1,2,1,.,.,.,82,F
2,1,0,0,0,2,0,0,0,0,1.7,1,0,82,F
2,24,0,0,0,2,0,0,0,0,1.1,1,0,82,F
2,30,1,20,10,2,0,0,0,1,.,.,.,82,F
2,30,1,5,0,.,0,0,0,1,.,.,.,82,F
2,33.25,0,0,0,2,0,0,0,0,0.9,2,0,82,F
3,0,4,120,0,1,8,2,1,1,.,.,.,.,F
3,4,0,0,0,2,0,0,0,0,4.4,1,0,.,F
3,20,0,0,0,2,0,0,0,0,2.5,1,0,.,F
"""
FIELDS = ("time", "amt", "rate", "cmt", "ss", "ii")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("nm") / "pk.csv"
    path.write_text(DATA)
    return read_nonmem(path, MODEL)


@pytest.fixture(scope="module")
def result(data):
    return simulate(MODEL, PARAMS, data)


def assert_same_events(a: NonmemData, b: NonmemData, dv: bool = True):
    np.testing.assert_array_equal(a.ids, b.ids)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a.doses, f), getattr(b.doses, f), err_msg=f)
    assert a.regimens == b.regimens
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.observed, b.observed)
    if dv:
        np.testing.assert_array_equal(a.dv, b.dv)
    assert {k for k in a.records if k != "ROW"} == {k for k in b.records if k != "ROW"}
    for k in a.records:
        if k != "ROW":
            np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    pd.testing.assert_frame_equal(a.covariates, b.covariates)
    assert a.varying == b.varying


def test_the_data_set_has_every_event_form(data):
    """Guard: the fixture exercises what the round trip must keep (so the round trip cannot pass vacuously)."""
    d = data.doses
    mode, reset = d.ss & DoseTable.SS_MASK, (d.ss & DoseTable.RESET) > 0
    assert {1, 2} <= set(mode.ravel().tolist()) and reset.sum() == 3          # SS 1/2; EVID 3, 4, 4
    assert {-1.0, -2.0, 10.0, 0.0} <= set(d.rate.ravel().tolist())            # modelled rate/duration, infusion
    assert any(dose.addl > 0 for r in data.regimens for dose in r.doses)
    assert np.isnan(data.dv[0]).sum() >= 2 and data.observed[0].sum() == 6   # EVID 2 and MDV 1 records
    assert data.doses.n_events == 4 and data.regimens[0].doses[0].cmt == 1 and data.regimens[1].doses[2].cmt is None


def test_write_then_read_reproduces_the_events(data, tmp_path):
    frame = write_nonmem(tmp_path / "out.csv", data, MODEL)
    assert list(frame.columns[:11]) == ["ID", "TIME", "AMT", "RATE", "CMT", "EVID", "MDV", "DV", "II", "ADDL", "SS"]
    assert_same_events(data, read_nonmem(tmp_path / "out.csv", MODEL))
    # the records as written: EVID 3/4 kept, EVID 2 for a time without observation, null items as "."
    text = (tmp_path / "out.csv").read_text().splitlines()
    assert text[1:4] == ["1,0.0,0.0,0.0,.,0,0,0.25,0.0,0,0,1,0,70.5,M",
                         "1,0.0,100.0,0.0,1,1,1,.,12.0,1,1,.,.,70.5,M",
                         "1,2.0,0.0,0.0,.,0,0,3.1,0.0,0,0,1,0,70.5,M"]
    assert frame["EVID"].value_counts().to_dict() == {0: 10, 1: 4, 2: 1, 4: 2, 3: 1}
    with pytest.raises(SpecError, match="already exists") as e:
        write_nonmem(tmp_path / "out.csv", data, MODEL)
    assert e.value.field == "path"


def test_simulated_dv_round_trip_and_resimulation(data, result, tmp_path):
    """DV from a simulation on the data's records; re-reading gives those DVs bit for bit, and
    simulating the re-read data reproduces the original simulation to 1e-12 (relative)."""
    write_nonmem(tmp_path / "sim.csv", data, MODEL, result=result)
    back = read_nonmem(tmp_path / "sim.csv", MODEL)
    assert_same_events(data, back, dv=False)
    conc = result["conc"].values
    has_obs = data.observed & np.isfinite(data.dv)
    np.testing.assert_array_equal(back.dv[has_obs], conc[has_obs])
    assert np.isnan(back.dv[~has_obs]).all() and np.isfinite(conc[has_obs]).all()
    again = simulate(MODEL, PARAMS, back)
    np.testing.assert_allclose(again["conc"].values, conc, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(again["status"].values, 0)


def test_dose_table_and_times_round_trip(data, tmp_path):
    """From an expanded dose table (ADDL written out, SS+4*reset decoded) and record times."""
    times = np.where(data.observed, data.times, np.nan)
    frame = write_nonmem(tmp_path / "t.csv", data.doses, MODEL, times=times, dv=data.dv, ids=data.ids,
                         covariates=data.covariates)
    assert (frame["ADDL"] == 0).all() and (frame["EVID"] == 3).sum() == 1 and (frame["EVID"] == 4).sum() == 2
    back = read_nonmem(tmp_path / "t.csv", MODEL)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(back.doses, f), getattr(data.doses, f), err_msg=f)
    np.testing.assert_array_equal(back.times, data.times)
    np.testing.assert_array_equal(back.dv, data.dv)
    pd.testing.assert_frame_equal(back.covariates, data.covariates)


@pytest.mark.parametrize("kwargs, field", [
    ({"times": [1.0]}, "times"),
    ({"result": "grid"}, "result"),
    ({"output": "nope"}, "output"),
])
def test_bad_requests_are_refused(data, result, kwargs, field):
    if kwargs.get("result") == "grid":     # a result on a prediction grid (not at the records)
        kwargs = {"result": result.assign_attrs(sampling="grid")}
    elif "output" in kwargs:
        kwargs = {**kwargs, "result": result}
    with pytest.raises(SpecError) as e:
        nonmem_frame(data, MODEL, **kwargs)
    assert e.value.field == field
