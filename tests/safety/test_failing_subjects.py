"""One failing virtual patient never aborts a trial.

Per-subject inputs invalid for that subject only (a linear covariate effect that makes CL <= 0, a
NaN covariate, WT <= 0 for a mg/kg dose) flag that subject with a status saying why; the trial
completes and `summary` / the report count and list the flagged subjects. A spec-level mistake
(every subject invalid, `per` naming a categorical covariate) is a SpecError before anything is
written. Expected statuses are recomputed here from the stored covariates with the spec's formulas.
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from insilico.cli import _common, app
from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.engine import status as codes
from insilico.errors import SpecError
from insilico.models import get_model
from insilico.trials import run

runner = CliRunner()
PK = {"V": {"typical": 40.0}, "KA": {"typical": 1.0}}
TIMES = [1.0, 2.0, 4.0, 8.0, 24.0]


def trial(cohort: dict, arms: list[dict], design: str = "parallel", n: int = 48, **extra) -> dict:
    return {"name": "failing", "seed": 5, "n": n, "model": {"name": "1cmt_oral"}, "cohort": cohort,
            "design": design, "arms": arms, "observations": {"times": TIMES},
            "endpoints": [{"name": "auc", "type": "auc", "window": [0, 24]}],
            "execution": {"chunk_size": 16}, **extra}


# -- the three per-subject cases: spec, the arm where subjects fail, status code, expected-bad rule ---------------
NEGATIVE_CL = trial(
    {"name": "c", "covariates": {"WT": {"dist": "normal", "mean": 70, "sd": 15}},
     "parameters": {"CL": {"typical": 5.0, "effects": [{"covariate": "WT", "type": "linear", "ref": 70,
                                                       "theta": 0.05}]}, **PK}},
    [{"name": "low", "regimen": [{"amt": 100}]}, {"name": "high", "regimen": [{"amt": 200}]}])
NAN_COVARIATE = trial(
    {"name": "c", "covariates": {"Z": {"dist": "normal", "mean": 1, "sd": 1, "units": "1"},
                                 "X": {"expr": "log(Z)", "units": "1"}},
     "parameters": {"CL": {"typical": 5.0, "effects": [{"covariate": "X", "type": "exponential", "ref": 0,
                                                       "theta": 0.1}]}, **PK}},
    [{"name": "a", "regimen": [{"amt": 100}]}])
MG_PER_KG = trial(
    {"name": "c", "covariates": {"WT": {"dist": "normal", "mean": 10, "sd": 10}},
     "parameters": {"CL": {"typical": 5.0}, **PK}},
    [{"name": "2 mg/kg", "regimen": [{"amt": 2, "per": "WT"}]}, {"name": "flat", "regimen": [{"amt": 100}]}],
    design="counterfactual", analysis={"reference": "flat", "comparison": "ratio"})

CASES = {
    "negative CL": (NEGATIVE_CL, None, codes.INVALID_PARAMETER, "invalid individual parameter",
                    lambda ds: (1 + 0.05 * (ds["WT"] - 70)).values <= 0),
    "NaN covariate": (NAN_COVARIATE, None, codes.INVALID_COVARIATE, "covariate not finite",
                      lambda ds: ds["Z"].values <= 0),
    "WT <= 0 with mg/kg": (MG_PER_KG, "2 mg/kg", codes.INVALID_DOSE_SCALE, "dose covariate not positive",
                           lambda ds: ds["WT"].values <= 0),
}


def expected_status(ds, arm: str | None, code: int, bad: np.ndarray) -> np.ndarray:
    """(replicate, arm, subject) status expected: -1 where the subject is not in the arm, ``code``
    where the rule marks it bad (in ``arm`` only, or every arm when None), else 0."""
    alloc = ds["allocated_arm"].values                       # (replicate, subject); -1: every arm
    out = np.full((ds.sizes["replicate"], ds.sizes["arm"], ds.sizes["subject"]), -1, np.int8)
    for a, name in enumerate(ds["arm"].values):
        inside = (alloc == a) | (alloc == -1)
        failing = bad & (arm is None or name == arm)
        out[:, a][inside] = np.where(failing[inside], code, 0)
    return out


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory, client):
    spec, arm, code, reason, rule = CASES[request.param]
    out = tmp_path_factory.mktemp("failing") / "r.zarr"
    ds = run(spec, out, cluster=client).load()
    return ds, out, arm, code, reason, rule(ds)


def test_invalid_subjects_are_flagged_and_the_trial_completes(case):
    ds, _, arm, code, reason, bad = case
    assert ds.insilico.complete
    assert bad.any() and not bad.all()                       # the case has both kinds of subject
    want = expected_status(ds, arm, code, bad)
    np.testing.assert_array_equal(ds["status"].values, want)
    assert code in ds["status"].attrs["flag_values"]
    words = ds["status"].attrs["flag_meanings"].split()
    assert words[ds["status"].attrs["flag_values"].index(code)] == reason.replace(" ", "_")
    flagged, ok = want > 0, want == 0
    assert np.isnan(ds["auc"].values[flagged]).all() and np.isfinite(ds["auc"].values[ok]).all()
    assert (ds["doses_taken"].values[flagged] == 0).all() and (ds["doses_taken"].values[ok] == 1).all()
    # listed with replicate, arm, subject and reason
    table = ds.insilico.flagged
    r, a, s = np.nonzero(flagged)
    assert list(zip(table["replicate"], table["arm"], table["subject"])) == \
        list(zip(r, ds["arm"].values[a], ds["subject"].values[s]))
    assert set(table["reason"]) == {reason} and set(table["status"]) == {code}
    # the analysis counts them as missing
    for row in ds.insilico.analysis["summary"]["auc"].itertuples():
        a = list(ds["arm"].values).index(row.arm)
        assert row.n_missing == int(flagged[:, a].sum()) and row.n == int(ok[:, a].sum())


def test_valid_subjects_are_simulated_as_if_alone(case):
    """The subjects that pass are the engine's solution for their own parameters (rtol 1e-9)."""
    ds, _, _, _, _, _ = case
    model = get_model("1cmt_oral")
    spec = ds.insilico.spec
    for a, name in enumerate(ds["arm"].values):
        ok = ds["status"].values[0, a] == 0
        dose = spec["arms"][a]["regimen"][0]
        amt = dose["amt"] * (ds[dose["per"]].values[0, ok] if dose.get("per") else np.ones(int(ok.sum())))
        params = {k: ds[k].values[0, ok] for k in ("CL", "V", "KA")}
        want = simulate(model, params, [Regimen((Dose(amt=float(x)),)) for x in amt], TIMES)["conc"].values
        np.testing.assert_allclose(ds["conc"].values[0, a, ok], want, rtol=1e-9, atol=1e-12, err_msg=name)


def test_flagged_detail_names_the_value(case):
    ds, _, _, code, _, _ = case
    detail = ds.insilico.flagged["detail"]
    pattern = {codes.INVALID_PARAMETER: r"^CL = -[0-9.]+ L/h \(must be > 0\)$",
               codes.INVALID_COVARIATE: r"^X = nan; CL = nan L/h$",
               codes.INVALID_DOSE_SCALE: r"^dose per WT = -[0-9.e+-]+ kg \(must be > 0\)$"}[code]
    assert detail.str.match(pattern).all(), detail.tolist()


def test_summary_and_report_count_and_list_the_flagged_subjects(case, monkeypatch, tmp_path):
    ds, out, _, _, reason, _ = case
    monkeypatch.setattr(_common.console, "width", 250)
    res = runner.invoke(app, ["summary", str(out)])
    assert res.exit_code == 0, res.output
    n, total = int((ds["status"].values > 0).sum()), int((ds["status"].values >= 0).sum())
    assert f"{n} of {total} simulated subject–arm pairs flagged" in res.output
    for subject in ds.insilico.flagged["subject"].head(20):
        assert any(reason in line and f" {subject} " in line for line in res.output.splitlines()), subject
    from insilico.analysis.report import render_report
    html = render_report(ds, plots=False)
    assert f"<b>{n}</b> of {total} simulated subject–arm pairs have no results" in html
    assert html.count(f">{reason}<") == n + len(ds.insilico.flagged["arm"].unique())   # listing + counts


@pytest.mark.parametrize("name", list(CASES))
def test_cli_run_completes_with_flagged_subjects(name, tmp_path, monkeypatch):
    spec, _, code, reason, _ = CASES[name]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(_common.console, "width", 250)
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "r.zarr"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "flagged subjects" in res.output and reason in res.output


# -- spec-level mistakes: SpecError naming the field, exit 2, nothing written ---------------------------------------
def _spec_level():
    every_cl = trial({**NEGATIVE_CL["cohort"], "parameters": {
        "CL": {"typical": 5.0, "effects": [{"covariate": "WT", "type": "linear", "ref": 70, "theta": -0.5}]}, **PK},
        "covariates": {"WT": {"dist": "uniform", "low": 75, "high": 120}}}, NEGATIVE_CL["arms"])
    every_nan = trial({**NAN_COVARIATE["cohort"], "covariates": {
        "Z": {"dist": "uniform", "low": -2, "high": -1, "units": "1"}, "X": {"expr": "log(Z)", "units": "1"}}},
        NAN_COVARIATE["arms"])
    every_wt = trial({**MG_PER_KG["cohort"], "covariates": {"WT": {"dist": "uniform", "low": -5, "high": 0}}},
                     MG_PER_KG["arms"], design="counterfactual")
    per_sex = trial({"name": "c", "covariates": {"SEX": {"dist": "categorical", "probs": {"m": 0.5, "f": 0.5}}},
                     "parameters": {"CL": {"typical": 5.0}, **PK}},
                    [{"name": "a", "regimen": [{"amt": 2, "per": "SEX"}]}])
    return {"CL <= 0 for everyone": (every_cl, "cohort.parameters.CL", "CL must be > 0 L/h"),
            "NaN covariate for everyone": (every_nan, "cohort.covariates.X", "X must be finite"),
            "WT <= 0 for everyone": (every_wt, "arms.0.regimen.0.per", "no subject of arm '2 mg/kg'"),
            "per a categorical covariate": (per_sex, "arms.0.regimen.0.per", "categorical")}


SPEC_LEVEL = _spec_level()


@pytest.mark.parametrize("name", list(SPEC_LEVEL))
def test_spec_level_mistake_is_refused_before_anything_is_written(name, tmp_path, client):
    spec, field, words = SPEC_LEVEL[name]
    with pytest.raises(SpecError) as e:
        run(spec, tmp_path / "r.zarr", cluster=client)
    assert e.value.field == field and words in e.value.message, e.value
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    for args in (["run", str(path), "--out", str(tmp_path / "r.zarr"), "--quiet"], ["validate", str(path)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and field in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
