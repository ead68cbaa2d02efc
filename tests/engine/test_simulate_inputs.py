"""`simulate` on NONMEM data and on a table of per-subject parameters (mrgsolve ``idata``).

References: the per-array call path (`simulate(model, params_dict, data.doses, data.times)`), and
the closed form of a one-compartment IV bolus, C(t) = Σ D/V·exp(−CL/V·(t − t_dose)).
"""
import numpy as np
import pandas as pd
import pytest

from insilico.dosing import Regimen, read_nonmem
from insilico.engine import simulate
from insilico.errors import SpecError

# three subjects: IDs 7, 3, 12 (not sorted), 2 / 3 / 1 doses, 3 / 4 / 2 records (EVID 2 and MDV 1 included)
ROWS = [
    # ID TIME AMT  EVID MDV  DV
    (7, 0.0, 100.0, 1, 1, np.nan), (7, 1.0, 0.0, 0, 0, 2.9), (7, 12.0, 100.0, 1, 1, np.nan),
    (7, 13.0, 0.0, 0, 0, 4.1), (7, 24.0, 0.0, 2, 1, np.nan),
    (3, 0.0, 50.0, 1, 1, np.nan), (3, 0.5, 0.0, 0, 0, 1.8), (3, 6.0, 50.0, 1, 1, np.nan),
    (3, 6.0, 0.0, 0, 0, 0.7), (3, 12.0, 75.0, 1, 1, np.nan), (3, 12.5, 0.0, 0, 1, 9.9), (3, 30.0, 0.0, 0, 0, 0.3),
    (12, 2.0, 200.0, 1, 1, np.nan), (12, 3.0, 0.0, 0, 0, 6.5), (12, 10.0, 0.0, 0, 0, 2.2),
]
DATA = pd.DataFrame(ROWS, columns=["ID", "TIME", "AMT", "EVID", "MDV", "DV"])
IDS = [7, 3, 12]
CL, V = np.array([2.0, 3.5, 5.0]), np.array([20.0, 25.0, 40.0])   # in IDS order


@pytest.fixture(scope="module")
def data():
    return read_nonmem(DATA, "1cmt_iv")


def _analytic(i: int, t: np.ndarray) -> np.ndarray:
    doses = DATA[(DATA.ID == IDS[i]) & (DATA.EVID == 1)]
    c = np.zeros_like(t)
    for td, amt in zip(doses.TIME, doses.AMT):
        c += np.where(t > td, amt / V[i] * np.exp(-CL[i] / V[i] * (t - td)), 0.0)   # pre-dose at equal times
    return c


def test_one_call_matches_per_array_path_and_closed_form(data):
    got = simulate("1cmt_iv", {"CL": CL, "V": V}, data)
    ref = simulate("1cmt_iv", {"CL": CL, "V": V}, data.doses, data.times)
    obs = data.observed
    np.testing.assert_array_equal(got["conc"].values[obs], ref["conc"].values[obs])
    assert np.isnan(got["conc"].values[~obs]).all() and np.isnan(got["time"].values[~obs]).all()
    assert got["subject"].values.tolist() == IDS and got.attrs["sampling"] == "records"
    for i in range(3):
        t = data.times[i][obs[i]]
        np.testing.assert_allclose(got["conc"].values[i][obs[i]], _analytic(i, t), rtol=1e-12)
    # observations alongside: MDV 1 and EVID 2 records are NaN, the rest the data's DV
    np.testing.assert_array_equal(got["dv"].values[1], [1.8, 0.7, np.nan, 0.3])
    assert np.isnan(got["dv"].values[0, 2]) and np.isnan(got["dv"].values[2, 2:]).all()


def test_parameter_table_matched_by_id(data):
    frame = pd.DataFrame({"ID": [12, 7, 3], "V": V[[2, 0, 1]], "CL": CL[[2, 0, 1]], "WT": [70.0, 80.0, 60.0]})
    got = simulate("1cmt_iv", frame, data)
    ref = simulate("1cmt_iv", {"CL": CL, "V": V}, data)
    np.testing.assert_array_equal(got["conc"].values, ref["conc"].values)
    # IDs read as text (e.g. from a spreadsheet) match numeric data IDs; a lower-case id column works
    text = frame.rename(columns={"ID": "id"}).assign(id=["12", "7", "3"])
    np.testing.assert_array_equal(simulate("1cmt_iv", text, data)["conc"].values, ref["conc"].values)
    # without an ID column rows are taken in the data's subject order
    plain = pd.DataFrame({"CL": CL, "V": V})
    np.testing.assert_array_equal(simulate("1cmt_iv", plain, data)["conc"].values, ref["conc"].values)


def test_parameter_table_without_data():
    frame = pd.DataFrame({"ID": ["a", "b"], "CL": [2.0, 4.0], "V": [20.0, 30.0]})
    t = np.array([1.0, 5.0])
    got = simulate("1cmt_iv", frame, Regimen.single(100.0), t)
    ref = simulate("1cmt_iv", {"CL": [2.0, 4.0], "V": [20.0, 30.0]}, Regimen.single(100.0), t)
    np.testing.assert_array_equal(got["conc"].values, ref["conc"].values)
    assert got["subject"].values.tolist() == ["a", "b"] and got.attrs["sampling"] == "grid"


def test_data_with_a_prediction_grid(data):
    grid = np.linspace(0.0, 30.0, 61)
    got = simulate("1cmt_iv", {"CL": CL, "V": V}, data, grid)
    assert got["conc"].dims == ("subject", "time") and got.attrs["sampling"] == "grid"
    for i in range(3):
        np.testing.assert_allclose(got["conc"].values[i], _analytic(i, grid), rtol=1e-12, atol=1e-15)
    assert got["dv"].dims == ("subject", "record") and got["dv_time"].dims == ("subject", "record")
    np.testing.assert_array_equal(got["dv_time"].values[2], [3.0, 10.0, np.nan, np.nan])
    np.testing.assert_array_equal(got["dv"].values[2], [6.5, 2.2, np.nan, np.nan])


GOOD = {"ID": IDS, "CL": list(CL), "V": list(V)}


@pytest.mark.parametrize("frame, field, words", [
    ({"ID": IDS, "CL": list(CL)}, "parameters.V", "column missing"),
    ({"ID": IDS, "cl": list(CL), "V": list(V)}, "parameters.cl", "did you mean 'CL'"),
    ({**GOOD, "CL": [2.0, "x", 5.0]}, "parameters.CL", "row 2"),
    ({**GOOD, "V": [20.0, np.nan, 40.0]}, "parameters.V", "finite"),
    ({**GOOD, "CL": [2.0, -1.0, 5.0]}, "parameters.CL", "> 0"),
    ({**GOOD, "ID": [7, 3, 99]}, "parameters.ID", "12"),                # data ID 12 has no row
    ({"ID": IDS + [5], "CL": list(CL) + [1.0], "V": list(V) + [1.0]}, "parameters.ID", "not in the data"),
    ({**GOOD, "ID": [7, 7, 12]}, "parameters.ID", "more than one row"),
    ({**GOOD, "ID": [7, None, 12]}, "parameters.ID", "row 2"),
    ({"CL": [1.0, 2.0], "V": [1.0, 2.0]}, "parameters", "2 rows of parameters for 3 subjects"),
    ({**GOOD, "id": IDS}, "parameters.ID", "ID columns"),
    ({"ID": [], "CL": [], "V": []}, "parameters", "no rows"),
])
def test_bad_parameter_tables_name_the_field(data, frame, field, words):
    with pytest.raises(SpecError) as e:
        simulate("1cmt_iv", pd.DataFrame(frame), data)
    assert e.value.field == field, str(e.value)
    assert words in str(e.value)


def test_bad_combinations(data):
    with pytest.raises(SpecError, match="times") as e:
        simulate("1cmt_iv", {"CL": 2.0, "V": 20.0}, Regimen.single(100.0))
    assert e.value.field == "times"
    with pytest.raises(SpecError) as e:
        simulate("1cmt_iv", {"CL": CL, "V": V}, data, covariates={"WT": np.ones(3)})
    assert e.value.field == "covariates"
    oral = read_nonmem(DATA.assign(CMT=2), "1cmt_oral")          # CMT 2 = central of an oral model
    with pytest.raises(SpecError, match="another model") as e:
        simulate("1cmt_iv", {"CL": CL, "V": V}, oral)
    assert e.value.field == "regimen.cmt"
