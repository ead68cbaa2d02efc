"""Covariates resampled from a table (``resample:``): whole rows of the table, uniformly with
replacement, deterministic per (seed, subject index); combined with criteria, derived and drawn
covariates; a PopulationModel override keeps the random draws and changes only the numbers."""
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insilico.cohorts import (
    RESAMPLE_ROW,
    compile_spec,
    draw_cohort,
    load_cohort_spec,
    population_from_estimates,
    validation_report,
)
from insilico.errors import SpecError

N_ROWS = 20


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    """20 subjects, NONMEM-style: 3 rows per ID (the first row holds the baseline covariates)."""
    rng = np.random.default_rng(3)
    base = pd.DataFrame({"ID": np.arange(101, 101 + N_ROWS), "WT": np.round(rng.uniform(45, 110, N_ROWS), 2),
                         "HT": np.round(rng.uniform(150, 195, N_ROWS), 1), "AGE": rng.integers(20, 80, N_ROWS),
                         "SEX": rng.choice(["F", "M"], N_ROWS), "ALB": np.round(rng.uniform(3, 5, N_ROWS), 2),
                         "GRP": rng.choice([1, 2], N_ROWS)})
    later = base.assign(WT=base.WT + 5.0)          # later rows of each ID: not the baseline
    rows = pd.concat([base, later, later]).sort_values("ID", kind="stable")
    path = tmp_path_factory.mktemp("resample") / "subjects.csv"
    rows.to_csv(path, index=False)
    base.attrs["path"] = str(path)
    return base


def _spec(table, **extra):
    spec = {"name": "resampled",
            "resample": {"table": str(table.attrs["path"]), "id": "ID", "columns": ["WT", "HT", "AGE", "SEX"]},
            "parameters": {"CL": {"typical": 4.0, "effects": [{"covariate": "WT", "type": "power", "ref": 70,
                                                               "theta": 0.75}]}},
            "bsv": {"parameters": ["CL"], "variance": [0.09]}}
    spec.update(extra)
    return spec


def test_subjects_are_whole_rows_of_the_table(table):
    ds = draw_cohort(_spec(table), 500, seed=2)
    row = ds[RESAMPLE_ROW].values
    assert row.min() >= 0 and row.max() < N_ROWS
    np.testing.assert_array_equal(ds.WT.values, table.WT.values[row])     # the baseline (first) row of each ID
    np.testing.assert_array_equal(ds.HT.values, table.HT.values[row])
    np.testing.assert_array_equal(ds.AGE.values, table.AGE.values[row])
    # a text column is categorical, labels sorted: F = 0, M = 1
    assert ds.SEX.attrs["flag_meanings"] == "F M" and ds.SEX.dtype == np.int64
    np.testing.assert_array_equal(np.array(["F", "M"])[ds.SEX.values], table.SEX.values[row])
    assert ds.WT.attrs["units"] == "kg" and ds[RESAMPLE_ROW].dtype == np.int64
    # the parameter model uses the resampled covariate
    np.testing.assert_allclose(ds.CL.values, 4.0 * (ds.WT.values / 70) ** 0.75 * np.exp(ds.eta_CL.values), rtol=1e-12)


def test_rows_are_uniform(table):
    """Row counts of 20,000 subjects ~ Multinomial(n, 1/20): each count within 5 SD of n/20."""
    n = 20_000
    counts = np.bincount(draw_cohort(_spec(table), n, seed=9)[RESAMPLE_ROW].values, minlength=N_ROWS)
    p = 1 / N_ROWS
    z = (counts - n * p) / math.sqrt(n * p * (1 - p))
    assert np.all(np.abs(z) < 5), z
    chi2 = float(np.sum((counts - n * p) ** 2 / (n * p)))
    assert chi2 < 45.3          # chi-square(19) 0.9999 quantile


def _same(a: xr.Dataset, b: xr.Dataset):
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_same_seed_same_patients_whatever_n_start_or_batch(table):
    spec = _spec(table, criteria=["WT > 60"])
    full = draw_cohort(spec, 300, seed=5)
    _same(draw_cohort(spec, 120, seed=5, start=150), full.isel(subject=slice(150, 270)))
    _same(draw_cohort(spec, 300, seed=5, batch_size=64), full)
    _same(draw_cohort(spec, 40, seed=5), full.isel(subject=slice(0, 40)))
    assert not np.array_equal(draw_cohort(spec, 300, seed=6)[RESAMPLE_ROW].values, full[RESAMPLE_ROW].values)


def test_criteria_derived_and_drawn_covariates_use_the_resampled_ones(table):
    spec = _spec(table, criteria=["WT > 70"], derived=["BMI"],
                 covariates={"SCR": {"dist": "lognormal", "median": "0.7 + 0.004 * AGE", "sdlog": 0.1}})
    ds = draw_cohort(spec, 2000, seed=1)
    assert np.all(ds.WT.values > 70)
    heavy = np.flatnonzero(table.WT.values > 70)
    assert set(np.unique(ds[RESAMPLE_ROW].values)) == set(heavy)    # every eligible row, no other
    np.testing.assert_allclose(ds.BMI.values, ds.WT.values / (ds.HT.values / 100) ** 2, rtol=1e-12)
    z = (np.log(ds.SCR.values) - np.log(0.7 + 0.004 * ds.AGE.values)) / 0.1
    assert abs(z.mean()) < 5 / math.sqrt(z.size) and abs(z.std() - 1) < 5 / math.sqrt(2 * z.size)


def test_categories_listed_and_categorical_effect(table):
    """Listed labels set the codes (numbers match by value: 1 ~ "1"); a categorical effect uses them."""
    spec = _spec(table)
    spec["resample"] = {**spec["resample"], "columns": ["WT", "SEX", "GRP"],
                        "categories": {"SEX": ["M", "F"], "GRP": ["2", "1"]}}
    spec["parameters"]["V"] = {"typical": 50.0, "effects": [{"covariate": "SEX", "type": "categorical",
                                                             "multipliers": {"F": 0.8}}]}
    ds = draw_cohort(spec, 200, seed=4)
    row = ds[RESAMPLE_ROW].values
    np.testing.assert_array_equal(np.array(["M", "F"])[ds.SEX.values], table.SEX.values[row])
    np.testing.assert_array_equal(np.array([2, 1])[ds.GRP.values], table.GRP.values[row])
    np.testing.assert_allclose(ds.V.values, np.where(table.SEX.values[row] == "F", 40.0, 50.0))


def test_table_without_id_parquet_and_relative_path(table, tmp_path):
    table.drop(columns="SEX").to_parquet(tmp_path / "t.parquet")
    (tmp_path / "c.yaml").write_text("name: c\nresample: {table: t.parquet, columns: [WT, ALB]}\n"
                                     "parameters: {CL: {typical: 3}}\n")
    spec = load_cohort_spec(tmp_path / "c.yaml")
    assert spec.resample.table == str((tmp_path / "t.parquet").resolve())
    ds = draw_cohort(spec, 50, seed=1)
    np.testing.assert_array_equal(ds.ALB.values, table.ALB.values[ds[RESAMPLE_ROW].values])
    # a mapping resolves against the base it is given (a cohort written inside a trial spec)
    inline = load_cohort_spec({"name": "c", "resample": {"table": "t.parquet", "columns": ["WT"]},
                               "parameters": {"CL": {"typical": 3}}}, base=tmp_path)
    assert inline.resample.table == spec.resample.table


def test_population_override_keeps_draws_and_changes_numbers(table):
    spec = _spec(table)
    spec["residual_error"] = {"type": "proportional", "proportional": 0.1}
    c = compile_spec(spec)
    pop = population_from_estimates(c.population, {"CL": 6.0, "CL.WT": 1.0, "OMEGA(1,1)": 0.36, "SIGMA(1,1)": 0.04})
    a = draw_cohort(spec, 300, seed=8)
    b = draw_cohort(spec, 300, seed=8, population=pop)
    np.testing.assert_array_equal(a[RESAMPLE_ROW].values, b[RESAMPLE_ROW].values)
    np.testing.assert_allclose(b.eta_CL.values, 2.0 * a.eta_CL.values, rtol=1e-12)   # sqrt(0.36 / 0.09) = 2
    np.testing.assert_allclose(b.CL.values, 6.0 * (b.WT.values / 70) * np.exp(b.eta_CL.values), rtol=1e-12)
    assert float(pop.residual.proportional) == pytest.approx(0.2)
    assert b.attrs["population_override"] == 1 and a.attrs["population_override"] == 0
    # the validation report checks the etas against the Omega they were drawn with
    sd_row = (lambda df: df[(df.variable == "eta_CL") & (df.statistic == "sd")].iloc[0])
    assert sd_row(validation_report(b, spec, population=pop)).target == pytest.approx(0.6)
    assert bool(sd_row(validation_report(b, spec, population=pop)).ok)
    assert not bool(sd_row(validation_report(b, spec)).ok)
    other = population_from_estimates(compile_spec(_spec(table, bsv=None)).population, {"CL": 1.0})
    with pytest.raises(SpecError) as e:
        draw_cohort(spec, 10, seed=8, population=other)
    assert e.value.field == "population"
    with pytest.raises(SpecError, match="not quantities"):
        population_from_estimates(c.population, {"KA": 1.0})
    with pytest.raises(SpecError, match="positive definite"):
        population_from_estimates(c.population, {"OMEGA(1,1)": -0.1})


@pytest.mark.parametrize("change, field", [
    ({"columns": ["WT", "XX"]}, "resample.columns.1"),
    ({"columns": ["WT", "WT"]}, "resample.columns"),
    ({"columns": []}, "resample.columns"),
    ({"table": "missing.csv"}, "resample.table"),
    ({"id": "PID"}, "resample.id"),
    ({"columns": ["WT", "GRP"]}, "resample.units.GRP"),
    ({"columns": ["SEX"], "categories": {"SEX": ["F"]}}, "resample.categories.SEX"),
    ({"categories": {"ALB": ["1"]}}, "resample.categories.ALB"),
    ({"units": {"WT": "kilo grams"}}, "resample.units.WT"),
])
def test_bad_resample_names_the_field(table, change, field):
    spec = _spec(table)
    spec["resample"] = {**spec["resample"], **change}
    with pytest.raises(SpecError) as e:
        load_cohort_spec(spec)
    assert e.value.field == field, str(e.value)


def test_missing_value_and_clashes_name_the_field(table, tmp_path):
    bad = table.copy()
    bad.loc[4, "WT"] = np.nan
    bad.to_csv(tmp_path / "bad.csv", index=False)
    spec = _spec(table)
    spec["resample"] = {**spec["resample"], "table": str(tmp_path / "bad.csv")}
    with pytest.raises(SpecError, match="row 4") as e:
        load_cohort_spec(spec)
    assert e.value.field == "resample.columns.0"
    with pytest.raises(SpecError, match="already used") as e:
        load_cohort_spec(_spec(table, covariates={"WT": {"dist": "normal", "mean": 70, "sd": 10}}))
    assert e.value.field == "covariates.WT"
    with pytest.raises(SpecError, match="not drawn from a distribution") as e:
        load_cohort_spec(_spec(table, covariates={"SCR": {"dist": "normal", "mean": 1, "sd": 0.1}},
                               correlation={"covariates": ["WT", "SCR"], "matrix": [[1, 0.3], [0.3, 1]]}))
    assert e.value.field == "correlation.covariates.0"
