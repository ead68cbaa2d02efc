"""save_cohort/load_cohort round trip, one battery for every backend."""
import numpy as np
import pytest
import xarray as xr

from insilico.cohorts import load_cohort, save_cohort
from insilico.errors import SpecError

FORMATS = ["zarr", "csv", "parquet"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["healthy_adults", "renal_impairment"])
def test_round_trip_exact(constrained, tmp_path, fmt, name):
    ds = constrained[name].isel(subject=slice(100, 400))  # non-zero start index
    path = save_cohort(ds, tmp_path / f"cohort.{fmt}")
    back = load_cohort(path)
    xr.testing.assert_identical(ds, back)
    for v in ds.data_vars:
        assert back[v].dtype == ds[v].dtype
        np.testing.assert_array_equal(back[v].values, ds[v].values)  # bit-exact floats


def test_csv_is_readable_table(healthy_100, tmp_path):
    import pandas as pd

    save_cohort(healthy_100, tmp_path / "c.csv")
    df = pd.read_csv(tmp_path / "c.csv")
    assert list(df.columns[:3]) == ["subject", "AGE", "SEX"]
    assert set(df.SEX) <= {"male", "female"}
    assert "CL_occ[2]" in df.columns
    assert (tmp_path / "c.csv.json").exists()


def test_overwrite_zarr(healthy_100, tmp_path):
    p = tmp_path / "c.zarr"
    save_cohort(healthy_100, p)
    save_cohort(healthy_100.isel(subject=slice(0, 10)), p)
    assert load_cohort(p).sizes["subject"] == 10


def test_unsupported_suffix(healthy_100, tmp_path):
    with pytest.raises(SpecError) as e:
        save_cohort(healthy_100, tmp_path / "c.xlsx")
    assert e.value.field == "path"
    with pytest.raises(SpecError):
        load_cohort(tmp_path / "missing.parquet")
