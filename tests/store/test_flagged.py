"""`flagged_subjects` / `ds.insilico.flagged`: the subject–arm pairs without results and why,
read from a hand-built store (the layout's attributes) so every reason is exercised."""
import json

import numpy as np
import xarray as xr

from insilico import store
from insilico.engine import status as codes
from insilico.store import Endpoint, trial_layout


def _dataset() -> xr.Dataset:
    """2 replicates × 2 arms × 4 subjects; arm 1 doses per WT. Replicate 0: subject 1 has a NaN
    covariate, subject 2 WT <= 0, subject 3 CL < 0; replicate 1: subject 0 a solver failure."""
    lay = trial_layout(
        arms=["flat", "mg/kg"], n_subjects=4, n_replicates=2, times=[1.0], chunk_size=4,
        subject_variables={"WT": (np.float64, {"units": "kg", "long_name": "weight", "role": "covariate"}),
                           "SEX": (np.int64, {"units": "1", "long_name": "sex", "role": "covariate"})},
        parameters={"CL": ("L/h", "clearance", "positive"), "E0": ("1", "baseline", "real")},
        outputs={}, observed={}, endpoints=[Endpoint("auc", "auc", "mg*h/L", "auc")],
        status_meanings=codes.TRIAL_MEANINGS, states=["central"], n_doses=1)
    data = {k: (v.dims, np.full(tuple(lay.sizes[d] for d in v.dims), v.fill, v.dtype), v.attrs)
            for k, v in lay.variables.items()}
    ds = xr.Dataset(data, coords={k: (d, v, a) for k, (d, v, a) in lay.coords.items()},
                    attrs={"spec": json.dumps({"arms": [{"regimen": [{"amt": 100}]},
                                                        {"regimen": [{"amt": 2, "per": "WT"}]}]})})
    ds["WT"][:] = [[70, np.nan, -3, 80], [60, 61, 62, 63]]
    ds["SEX"][:] = 0
    ds["CL"][:] = [[5, np.nan, 4, -2.5], [5, 5, 5, 5]]
    ds["E0"][:] = -1.0                                     # real: any finite value is valid
    st = np.zeros((2, 2, 4), np.int8)
    st[0, :, 1] = codes.INVALID_COVARIATE
    st[0, 1, 2] = codes.INVALID_DOSE_SCALE                # only the mg/kg arm
    st[0, :, 3] = codes.INVALID_PARAMETER
    st[1, 0, 0] = codes.SOLVER_FAILED
    st[1, 1, :] = -1                                       # not simulated in this arm
    ds["status"][:] = st
    return ds


def test_layout_records_the_parameter_constraint_and_every_status_code():
    ds = _dataset()
    assert ds["CL"].attrs["constraint"] == "positive" and ds["E0"].attrs["constraint"] == "real"
    assert store.status_meanings(ds) == {  # CF flag words (letters, digits, _) read back with spaces
        -1: "not simulated in this arm", 0: "ok", 1: "max steps reached", 2: "non finite value", 3: "solver failure",
        4: "repeated eigenvalues exact path ill conditioned", 5: "covariate not finite",
        6: "dose covariate not positive", 7: "invalid individual parameter"}


def test_flagged_lists_each_pair_with_reason_and_detail():
    ds = _dataset()
    table = ds.insilico.flagged
    assert table[["replicate", "arm", "subject", "status"]].values.tolist() == [
        [0, "flat", 1, 5], [0, "flat", 3, 7], [0, "mg/kg", 1, 5], [0, "mg/kg", 2, 6], [0, "mg/kg", 3, 7],
        [1, "flat", 0, 3]]
    assert table["reason"].tolist() == ["covariate not finite", "invalid individual parameter",
                                        "covariate not finite", "dose covariate not positive",
                                        "invalid individual parameter", "solver failure"]
    assert table["detail"].tolist() == [
        "WT = nan kg; CL = nan L/h", "CL = -2.5 L/h (must be > 0)", "WT = nan kg; CL = nan L/h",
        "dose per WT = -3 kg (must be > 0)", "CL = -2.5 L/h (must be > 0)", ""]
    counts = store.flagged_counts(table)
    assert counts.values.tolist() == [["flat", 3, "solver failure", 1], ["flat", 5, "covariate not finite", 1],
                                      ["flat", 7, "invalid individual parameter", 1],
                                      ["mg/kg", 5, "covariate not finite", 1],
                                      ["mg/kg", 6, "dose covariate not positive", 1],
                                      ["mg/kg", 7, "invalid individual parameter", 1]]


def test_nothing_flagged():
    ds = _dataset()
    ds["status"][:] = 0
    assert ds.insilico.flagged.empty and store.flagged_counts(ds.insilico.flagged).empty
