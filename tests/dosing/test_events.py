"""NONMEM event records in the data reader and dose tables: EVID 3/4, SS=2 and SS on any record,
RATE=-1/-2, negative CMT; the simulated result equals the same history written as a `Regimen`."""
import numpy as np
import pandas as pd
import pytest

from insilico.dosing import Dose, DoseTable, Regimen, dose_table, read_nonmem
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.models import get_model


def _frame(rows):
    cols = ("ID", "TIME", "EVID", "AMT", "RATE", "CMT", "II", "ADDL", "SS", "DV")
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


def test_event_codes_in_the_dose_table():
    """ss column: the NONMEM SS value plus DoseTable.RESET for EVID 3/4; RATE -1/-2 kept as codes."""
    m = get_model("1cmt_oral").with_dose_parameters("D1")
    reg = Regimen((Dose(amt=100.0, ii=12.0, ss=2), Dose(amt=0.0, time=5.0, reset=True),
                   Dose(amt=50.0, time=8.0, reset=True, ss=1, ii=24.0), Dose(amt=30.0, time=9.0, rate=-2.0, per="WT")))
    t = dose_table(reg, m, covariates={"WT": np.array([2.0])})
    assert t.ss[0].tolist() == [2, DoseTable.RESET, DoseTable.RESET + 1, 0]
    assert (t.ss[0] & DoseTable.SS_MASK).tolist() == [2, 0, 1, 0]
    assert t.rate[0, 3] == -2.0 and t.amt[0, 3] == 60.0


def test_read_nonmem_event_records_match_the_regimen():
    """EVID 4 with SS=1 and ADDL, EVID 3, SS=2 and RATE=-2 read from a data set give the dose table of
    the equivalent Regimen and simulate as it (the reset rows are no observations)."""
    m = get_model("1cmt_oral").with_dose_parameters("D2")
    df = _frame([
        (1, 0.0, 1, 100, 50, 2, 0, 0, 0, "."),
        (1, 2.0, 0, 0, 0, 2, 0, 0, 0, 1.5),
        (1, 10.0, 3, 0, 0, 0, 0, 0, 0, "."),
        (1, 12.0, 1, 80, -2, 2, 0, 0, 0, "."),
        (1, 14.0, 0, 0, 0, 2, 0, 0, 0, 2.0),
        (1, 30.0, 4, 50, 0, 1, 12, 2, 1, "."),
        (1, 31.0, 0, 0, 0, 2, 0, 0, 0, 0.7),
        (1, 60.0, 1, 40, 0, 1, 24, 0, 2, "."),
        (1, 61.0, 0, 0, 0, 2, 0, 0, 0, 0.9),
    ])
    data = read_nonmem(df, m)
    assert data.times[0].tolist() == [2.0, 14.0, 31.0, 61.0]
    reg = Regimen((Dose(amt=100.0, cmt=2, rate=50.0), Dose(amt=0.0, time=10.0, reset=True),
                   Dose(amt=80.0, time=12.0, cmt=2, rate=-2.0),
                   Dose(amt=50.0, time=30.0, cmt=1, ii=12.0, addl=2, ss=1, reset=True),
                   Dose(amt=40.0, time=60.0, cmt=1, ii=24.0, ss=2)))
    ref = dose_table(reg, m)
    for f in ("time", "amt", "rate", "cmt", "ss", "ii"):
        np.testing.assert_array_equal(getattr(data.doses, f), getattr(ref, f))
    p = dict(CL=3.0, V=25.0, KA=0.9, D2=3.0)
    got = simulate(m, p, data)["conc"].values[0]
    want = simulate(m, p, reg, data.times[0])["conc"].values[0]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(np.isfinite(got)) and got[2] > 0 and got[1] > 0


@pytest.mark.parametrize("rows, field, words", [
    ([(1, 0.0, 1, 100, 0, -2, 0, 0, 0, ".")], "data.CMT", "row 1: a negative CMT"),
    ([(1, 0.0, 0, 0, 0, 2, 0, 0, 0, 1.0), (1, 1.0, 5, 0, 0, 0, 0, 0, 0, ".")], "data.EVID", "row 2: EVID must be"),
    ([(1, 0.0, 1, 100, -2, 2, 0, 0, 0, ".")], "data.RATE", "with_dose_parameters('D2')"),
    ([(1, 0.0, 1, 100, -1, 1, 0, 0, 0, ".")], "data.RATE", "parameter R1"),
    ([(1, 0.0, 1, 100, -3, 1, 0, 0, 0, ".")], "data.row1.rate", "-1 / -2"),
    ([(1, 0.0, 1, 100, 0, 1, 0, 0, 3, ".")], "data.row1.ss", "0, 1 or 2"),
    ([(1, 0.0, 1, 100, 0, 1, 0, 0, 2, ".")], "data.row1.ii", "must be > 0"),
])
def test_unsupported_or_malformed_event_records_are_refused(rows, field, words):
    with pytest.raises(SpecError) as e:
        read_nonmem(_frame(rows), "1cmt_oral")
    assert e.value.field == field and words in str(e.value)


def test_modelled_rate_rules():
    with pytest.raises(SpecError, match="either rate or duration"):
        Dose(amt=10.0, rate=-2.0, duration=2.0).validate()
    with pytest.raises(SpecError, match="amount > 0"):
        Dose(amt=0.0, rate=-1.0).validate()
    with pytest.raises(SpecError, match="True or False"):
        Dose(amt=1.0, reset=1).validate()
    Dose(amt=10.0, rate=-1.0, ss=2, ii=12.0).validate()


def test_with_dose_parameters():
    m = get_model("2cmt_oral")
    m2 = m.with_dose_parameters("D2", "R1", "D2")
    assert m2.parameter_names[-2:] == ("D2", "R1") and m2.parameter("D2").units == "h"
    assert m2.parameter("R1").units == "mg/h" and m2.parameter("D2").default is None
    assert m2.with_dose_parameters("D2") is m2
    for bad in ("X1", "D9", "D0", "R3"):   # R3: periph1 cannot be dosed
        with pytest.raises(SpecError):
            m.with_dose_parameters(bad)
