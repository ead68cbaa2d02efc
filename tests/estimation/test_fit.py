"""Simulation - re-estimation by FOCE-I through the CLI, and what a fit writes: the fit store,
NONMEM's .ext table, the --json summary and the population model with its estimates."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from insilico.cli import app
from insilico.errors import SpecError
from insilico.estimation import build_problem, load_population_model
from insilico.store import open_fit
from tests.estimation.conftest import ORAL_MODEL, ORAL_TRUTH, oral_data

TRUE = {"CL": ORAL_TRUTH["CL"], "V": ORAL_TRUTH["V"], "KA": ORAL_TRUTH["KA"], "OMEGA(1,1)": 0.09,
        "OMEGA(2,2)": 0.04, "OMEGA(3,3)": 0.16, "SIGMA(1,1)": 0.01}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    df, _ = oral_data(100, seed=2)
    df.to_csv(d / "data.csv", index=False)
    (d / "pop.yaml").write_text(ORAL_MODEL)
    res = CliRunner().invoke(app, ["fit", str(d / "pop.yaml"), str(d / "data.csv"), "--out", str(d / "fit.zarr"),
                                   "--ext", str(d / "fit.ext"), "--population-out", str(d / "fitted.yaml"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    return d, json.loads(res.stdout.strip().splitlines()[-1])


def test_json_summary_has_the_documented_shape(fitted):
    _, summary = fitted
    assert set(summary) == {"method", "ofv", "converged", "estimates", "se", "n_subjects", "n_observations"}
    assert summary["method"] == "focei" and summary["converged"] is True
    assert (summary["n_subjects"], summary["n_observations"]) == (100, 800)
    assert summary["se"]["CL.WT"] is None          # fixed


def test_estimates_lie_within_their_statistical_error_of_the_truth(fitted):
    _, s = fitted
    for name, truth in TRUE.items():
        est, se = s["estimates"][name], s["se"][name]
        assert 0 < se < 0.5 * abs(est), name
        assert abs(est - truth) <= 3.5 * se, (name, est, truth, se)     # 3.5 SE: 1 in 2000 per quantity


def test_fit_store_holds_estimates_ebes_and_residual_diagnostics(fitted):
    d, s = fitted
    ds = open_fit(d / "fit.zarr")
    assert ds.attrs["ofv"] == pytest.approx(s["ofv"], rel=1e-12)
    assert ds.attrs["aic"] == pytest.approx(s["ofv"] + 2 * 7)
    assert ds.attrs["bic"] == pytest.approx(s["ofv"] + 7 * np.log(800))
    est = ds.estimate.to_series()
    assert est["V"] == pytest.approx(s["estimates"]["V"], rel=1e-12)
    corr = ds.correlation.sel(param=["CL", "V", "KA"], param2=["CL", "V", "KA"]).values
    np.testing.assert_allclose(np.diag(corr), 1.0, atol=1e-12)
    assert ds.attrs["condition_number"] > 1
    # with the model true, CWRES and NPDE are ~ N(0, 1): mean within 4 SE of 0 for 800 values, SD near 1
    for name in ("CWRES", "NPDE"):
        v = ds[name].values[np.isfinite(ds[name].values)]
        assert v.size == 800
        assert abs(v.mean()) < 4 / np.sqrt(800) + 0.05, name
        assert abs(v.std() - 1) < 0.1, name
    data = pd.read_csv(d / "data.csv").groupby("ID").WT.first()
    np.testing.assert_array_equal(ds.covariates.sel(covariate="WT").values, data.loc[ds.subject.values].values)
    # EBEs: 100 subjects x 3 etas, conditional covariances positive definite
    assert ds.eta_hat.shape == (100, 3)
    assert np.all(np.linalg.eigvalsh(ds.eta_cov.values) > 0)
    assert np.all(ds.eta_status.values == 0)
    assert np.all((ds.eta_shrinkage.values > -0.2) & (ds.eta_shrinkage.values < 0.6))


def test_ext_table_is_nonmem_shaped(fitted):
    d, s = fitted
    lines = (d / "fit.ext").read_text().splitlines()
    assert lines[0].startswith("TABLE NO.     1: First Order Conditional Estimation with Interaction")
    ext = pd.read_csv(d / "fit.ext", sep=r"\s+", skiprows=1)
    final = ext[ext.ITERATION == -1000000000].iloc[0]
    ses = ext[ext.ITERATION == -1000000001].iloc[0]
    assert final["OBJ"] == pytest.approx(s["ofv"], rel=1e-6)
    assert final["THETA1"] == pytest.approx(s["estimates"]["CL"], rel=1e-6)
    assert final["THETA2"] == pytest.approx(0.75) and ses["THETA2"] == pytest.approx(1e10)   # fixed
    assert final["OMEGA(3,3)"] == pytest.approx(s["estimates"]["OMEGA(3,3)"], rel=1e-6)
    assert final["OMEGA(2,1)"] == 0.0
    assert ses["SIGMA(1,1)"] == pytest.approx(s["se"]["SIGMA(1,1)"], rel=1e-6)


def test_population_model_written_back_holds_the_estimates(fitted):
    d, s = fitted
    spec, _ = load_population_model(d / "fitted.yaml")
    assert spec.parameters["KA"].typical == pytest.approx(s["estimates"]["KA"], rel=1e-12)
    assert spec.bsv.omega[2][2] == pytest.approx(s["estimates"]["OMEGA(3,3)"], rel=1e-12)
    assert spec.residual_error.proportional ** 2 == pytest.approx(s["estimates"]["SIGMA(1,1)"], rel=1e-12)
    assert spec.estimate.fix == ["CL.WT"]


def test_existing_fit_store_is_not_replaced_without_overwrite(fitted):
    d, _ = fitted
    res = CliRunner().invoke(app, ["fit", str(d / "pop.yaml"), str(d / "data.csv"), "--out", str(d / "fit.zarr")])
    assert res.exit_code == 2 and "--overwrite" in res.output


# -- data problems: clear errors or excluded subjects, before any fitting ---------------------------------------
def _spec():
    return load_population_model(ORAL_MODEL)[0]


def test_subject_with_a_missing_covariate_is_excluded_with_the_reason():
    df, _ = oral_data(5, seed=3)
    df.loc[df.ID == 2, "WT"] = np.nan
    problem = build_problem(_spec(), df)
    assert problem.n_subjects == 4 and list(problem.excluded) == [2]
    assert "WT" in problem.excluded[2]


@pytest.mark.parametrize("change, field", [
    (lambda df: df.drop(columns="WT"), "data.WT"),
    (lambda df: df.assign(DV=np.where(df.EVID == 0, "high", df.DV)), "data.DV"),
    (lambda df: df.assign(DV="."), "data.DV"),
])
def test_malformed_data_is_refused_naming_the_column(change, field):
    df, _ = oral_data(3, seed=3)
    with pytest.raises(SpecError) as e:
        build_problem(_spec(), change(df))
    assert e.value.field == field


@pytest.mark.parametrize("edit, field", [
    ({"output": "conc_typo"}, "output"),
    ({"parameters": {"CL": {"typical": 2.0}, "V": {"typical": 20.0}, "KAX": {"typical": 1.0}}, "estimate": {}},
     "parameters.KAX"),
    ({"parameters": {"CL": {"typical": 2.0}, "V": {"typical": 20.0}}, "estimate": {}}, "parameters"),
    ({"estimate": {"fix": ["CLX"]}}, "estimate.fix.0"),
    ({"estimate": {"fix": ["OMEGA(1,1)"]}, "bsv": {"parameters": ["CL", "V"], "omega": [[0.1, 0.01], [0.01, 0.1]]}},
     "estimate.fix"),
    ({"estimate": {"bounds": {"KA": [2.0, 5.0]}}}, "estimate.bounds.KA"),
])
def test_population_model_mistakes_are_refused_naming_the_field(edit, field):
    import yaml
    base = yaml.safe_load(ORAL_MODEL)
    base.update(edit)
    if "bsv" not in edit and "KA" not in base["parameters"]:
        base["bsv"] = {"parameters": ["CL", "V"], "variance": [0.2, 0.2]}
    df, _ = oral_data(3, seed=3)
    with pytest.raises(SpecError) as e:
        build_problem(load_population_model(base)[0], df)
    assert e.value.field == field


def test_cli_refuses_an_unknown_method_with_exit_2(tmp_path):
    (tmp_path / "pop.yaml").write_text(ORAL_MODEL)
    oral_data(3)[0].to_csv(tmp_path / "d.csv", index=False)
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "pop.yaml"), str(tmp_path / "d.csv"), "--method", "saem2"])
    assert res.exit_code == 2 and "method" in res.output
