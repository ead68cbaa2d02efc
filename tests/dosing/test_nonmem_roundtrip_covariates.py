"""NONMEM data set round trip with time-varying covariates (issue 11): `read_nonmem` -> `simulate` ->
`write_nonmem` -> `read_nonmem` reproduces the events and every record's covariate values (WT, and CL,
a column named as a model parameter, which drives the simulation record by record), keeps EVID 2
apart from EVID 0 with MDV 1, and simulating the re-read data reproduces the first simulation
(LOCF and NOCB) to 1e-12 relative."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from insilico.dosing import NonmemData, nonmem_frame, read_nonmem, write_nonmem
from insilico.engine import simulate
from insilico.errors import SpecError

MODEL = "1cmt_oral"
PARAMS = pd.DataFrame({"ID": [1, 2], "CL": [3.0, 2.0], "V": [25.0, 18.0], "KA": [1.1, 0.7]})
# ID 1: an EVID 2 covariate change at 4 h, an EVID 0 MDV 1 record at 8 h, at 24 h a dose record before an
# observation record with other covariate values (their order decides which value holds after 24 h);
# ID 2: an observation record after the dose record at 0 h with the same values (written pre-dose first).
DATA = """ID,TIME,EVID,AMT,CMT,MDV,DV,WT,CL
1,0,1,100,1,1,.,70,3.0
1,1,0,.,2,0,2.5,70,3.0
1,4,2,.,.,1,.,72,3.5
1,8,0,.,2,1,.,72,3.5
1,12,0,.,2,0,1.2,74,4.0
1,12,1,100,1,1,.,75,4.2
1,24,1,50,1,1,.,76,4.4
1,24,0,.,2,0,0.8,77,4.6
1,30,0,.,2,0,0.5,77,4.6
2,0,1,80,1,1,.,60,2.0
2,0,0,.,2,0,0.0,60,2.0
2,2,0,.,2,0,2.0,60,2.0
2,6,2,.,.,1,.,61,2.5
2,10,0,.,2,0,1.0,61,2.5
"""
FIELDS = ("time", "amt", "rate", "cmt", "ss", "ii")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "tv.csv"
    path.write_text(DATA)
    return read_nonmem(path, MODEL)


@pytest.fixture(scope="module")
def written(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("out") / "out.csv"
    frame = write_nonmem(path, data, MODEL)
    return frame, path, read_nonmem(path, MODEL)


def records_of(nm: NonmemData, sid) -> pd.DataFrame:
    rec = nm.covariate_records
    return rec[rec["ID"] == sid].reset_index(drop=True)


def test_the_fixture_has_what_the_round_trip_must_keep(data):
    assert set(data.varying) == {"WT", "CL"}
    evid = data.covariate_records["EVID"].to_numpy()
    assert (evid == 2).sum() == 2 and np.isnan(data.dv[0, 2])        # EVID 2 at 4 h and (ID 2) 6 h
    assert int(data.records["ROW"][0, 2]) == 4 and evid[3] == 0      # row 4: EVID 0 with MDV 1


def test_every_record_keeps_its_covariates_and_evid(data, written):
    frame, path, back = written
    assert set(back.varying) == {"WT", "CL"}
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(back.doses, f), getattr(data.doses, f), err_msg=f)
    assert back.regimens == data.regimens
    np.testing.assert_array_equal(back.times, data.times)
    np.testing.assert_array_equal(back.observed, data.observed)
    np.testing.assert_array_equal(back.dv, data.dv)
    pd.testing.assert_frame_equal(back.covariates, data.covariates)
    # ID 1 (covariates differ between the two records at 24 h): the data's record order, record for record
    pd.testing.assert_frame_equal(records_of(back, 1), records_of(data, 1))
    # ID 2: the pre-dose observation record first at 0 h (values equal, so the order does not matter)
    two = records_of(back, 2)
    assert two["EVID"].tolist() == [0, 1, 0, 2, 0] and two["WT"].tolist() == [60, 60, 60, 61, 61]
    # EVID 2 and EVID 0 with MDV 1 stay apart (NONMEM: "other event" vs a missing observation)
    rows = frame[(frame["ID"] == 1)].reset_index(drop=True)
    assert rows.loc[2, ["TIME", "EVID", "MDV", "WT", "CL"]].tolist() == [4.0, 2, 1, 72.0, 3.5]
    assert rows.loc[3, ["TIME", "EVID", "MDV", "WT", "CL"]].tolist() == [8.0, 0, 1, 72.0, 3.5]
    assert rows.loc[6:7, "EVID"].tolist() == [1, 0] and rows.loc[6:7, "CL"].tolist() == [4.4, 4.6]
    assert frame["EVID"].value_counts().to_dict() == {0: 8, 1: 4, 2: 2}
    line = path.read_text().splitlines()[3]
    assert line == "1,4.0,0.0,0.0,.,2,1,.,0.0,0,0,72,3.5"


@pytest.mark.parametrize("interpolation", ["locf", "nocb"])
def test_simulation_of_the_re_read_data_is_the_same(data, written, interpolation, tmp_path):
    """The per-record CL drives the simulation (a constant CL gives other values), and the re-read data,
    and the data written with the simulated DV, simulate to the same concentrations (1e-12 relative)."""
    first = simulate(MODEL, PARAMS, data, covariate_interpolation=interpolation)
    again = simulate(MODEL, PARAMS, written[2], covariate_interpolation=interpolation)
    np.testing.assert_allclose(again["conc"].values, first["conc"].values, rtol=1e-12, atol=0)
    constant = simulate(MODEL, PARAMS, dataclasses.replace(data, varying=()),
                        covariate_interpolation=interpolation)
    assert np.nanmax(np.abs(constant["conc"].values - first["conc"].values)) > 1e-3   # CL(t) matters
    write_nonmem(tmp_path / "sim.csv", data, MODEL, result=first)
    sim = read_nonmem(tmp_path / "sim.csv", MODEL)
    has_obs = data.observed & np.isfinite(data.dv)
    np.testing.assert_array_equal(sim.dv[has_obs], first["conc"].values[has_obs])
    pd.testing.assert_frame_equal(records_of(sim, 1), records_of(data, 1))
    third = simulate(MODEL, PARAMS, sim, covariate_interpolation=interpolation)
    np.testing.assert_allclose(third["conc"].values, first["conc"].values, rtol=1e-12, atol=0)


def test_record_order_at_a_shared_time_decides_the_value(data, written):
    """Guard for the ordering rule: with the dose and observation at 24 h of ID 1 swapped (the usual
    observations-first order), the value after 24 h would change (LOCF: the last record's)."""
    frame = written[0]
    at24 = frame[(frame["ID"] == 1) & (frame["TIME"] == 24.0)]
    assert at24["CL"].tolist()[-1] == 4.6 and at24["EVID"].tolist() == [1, 0]


def test_varying_covariates_without_per_record_values_are_refused(data):
    with pytest.raises(SpecError, match="time-varying") as e:
        nonmem_frame(dataclasses.replace(data, covariate_records=None), MODEL)
    assert e.value.field == "data"
    without = dataclasses.replace(data, covariate_records=None, varying=())   # one value per ID is written
    frame = nonmem_frame(without, MODEL)
    assert frame.groupby("ID")["WT"].nunique().max() == 1 and (frame["EVID"] == 2).sum() == 3
