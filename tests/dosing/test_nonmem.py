"""NONMEM data import: dosing histories, observations and covariates; bad rows named."""
import numpy as np
import pandas as pd
import pytest

from insilico.dosing import Dose, Regimen, read_nonmem
from insilico.engine import simulate
from insilico.models import get_model


def test_nonmem_import_reproduces_regimen(tmp_path):
    m = get_model("1cmt_oral")
    df = pd.DataFrame({
        "ID": [1, 1, 1, 1, 2, 2, 2],
        "TIME": [0, 0.5, 12, 30, 0, 4, 26],
        "AMT": [100, 0, 0, 0, 200, 0, 0],
        "EVID": [1, 0, 0, 2, 1, 0, 0],
        "CMT": [1, 2, 2, 2, 2, 2, 2],
        "II": [12, 0, 0, 0, 0, 0, 0],
        "ADDL": [2, 0, 0, 0, 0, 0, 0],
        "RATE": [0, 0, 0, 0, 100, 0, 0],
        "DV": [".", 1.2, 0.9, ".", ".", 3.1, 0.4],
        "WT": [70, 70, 70, 70, 82, 82, 82],
    })
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    data = read_nonmem(path, m)
    assert list(data.ids) == [1, 2]
    assert data.covariates.loc[2, "WT"] == 82
    assert data.observed.tolist() == [[True, True, True], [True, True, False]]
    assert np.isnan(data.dv[0, 2]) and data.dv[1, 0] == 3.1
    p = dict(CL=3.0, V=25.0, KA=0.9)
    got = simulate(m, p, data.doses, data.times)["conc"].values
    ref0 = simulate(m, p, Regimen.repeated(100.0, 12.0, 3), data.times[0])["conc"].values[0]
    ref1 = simulate(m, p, Regimen((Dose(amt=200.0, rate=100.0, cmt="central"),)), data.times[1])["conc"].values[0]
    np.testing.assert_allclose(got[0], ref0, rtol=1e-12)
    np.testing.assert_allclose(got[1], ref1, rtol=1e-12)


@pytest.mark.parametrize("frame, field", [
    ({"ID": [1], "TIME": [0], "EVID": [5]}, "data.EVID"),
    ({"ID": [1, 1], "TIME": [1, 1], "EVID": [0, 0]}, "data.TIME"),
    ({"ID": [1], "AMT": [10]}, "data.TIME"),
    ({"ID": [1], "TIME": [0], "AMT": [-5], "EVID": [1]}, "amt"),
])
def test_nonmem_bad_input(frame, field):
    from insilico.errors import SpecError
    with pytest.raises(SpecError) as e:
        read_nonmem(pd.DataFrame(frame), get_model("1cmt_iv"))
    assert field in str(e.value)
