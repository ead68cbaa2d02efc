"""CLI commands through typer's CliRunner, and a user model loaded by import path."""
import json
from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from insilico.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_help_everywhere():
    for cmd in ([], ["run"], ["validate"], ["cohort"], ["models"], ["summary"]):
        res = runner.invoke(app, cmd + ["--help"])
        assert res.exit_code == 0 and "Usage" in res.output


def test_models_lists_parameters_with_units():
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0 and "2cmt_oral" in res.output and "CL [L/h]" in res.output
    res = runner.invoke(app, ["models", "1cmt_oral+irm1"])
    assert res.exit_code == 0 and "IC50" in res.output and "response" in res.output
    assert runner.invoke(app, ["models", "9cmt"]).exit_code == 2


def test_cohort_command_writes_and_reports(tmp_path):
    out = tmp_path / "c.parquet"
    res = runner.invoke(app, ["cohort", str(ROOT / "cohorts/healthy_adults.yaml"), "--out", str(out), "--n", "300"])
    assert res.exit_code == 0, res.output
    assert out.exists() and "AGE" in res.output
    again = runner.invoke(app, ["cohort", str(ROOT / "cohorts/healthy_adults.yaml"), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_run_and_summary_with_a_user_model(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import jax.numpy as jnp\n"
        "from insilico.models import Model, Output, Parameter\n"
        "def rhs(t, y, p):\n"
        "    return jnp.stack([-p['KA'] * y[0], p['KA'] * y[0] - p['CL'] / p['V1'] * y[1]])\n"
        "oral = Model(name='user_oral', states=('gut', 'cent'),\n"
        "             parameters=(Parameter('CL', 'L/h', 'clearance'), Parameter('V1', 'L', 'volume'),\n"
        "                         Parameter('KA', '1/h', 'absorption')),\n"
        "             rhs=rhs, outputs=(Output('conc', 'mg/L', 'concentration', lambda y, p: y[..., 1] / p['V1']),),\n"
        "             dose_compartments=('gut',))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {
        "name": "user_model_trial", "seed": 5, "n": 24,
        "model": {"import": "my_models:oral"},
        "cohort": str(ROOT / "cohorts/healthy_adults.yaml"),
        "arms": [{"name": "low", "regimen": [{"amt": 50}]}, {"name": "high", "regimen": [{"amt": 100}]}],
        "observations": {"times": [1, 2, 4, 8, 24]},
        "endpoints": [{"name": "auc24", "type": "auc", "window": [0, 24]}],
        "analysis": {"reference": "low", "comparison": "ratio"},
    }
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "r.zarr"
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["summary", str(out)])
    assert res.exit_code == 0 and "auc24" in res.output and "geometric_mean_ratio" in res.output
    import insilico
    ds = insilico.open_results(out).load()
    assert ds.attrs["model"] == "user_oral"
    # AUC(0-24) of a 1-cmt oral model, analytic: F·D/CL·(1 − (ka e^{−k·24} − k e^{−ka·24})/(ka − k))
    a = 1
    # 0-24 h is the cohort's first occasion: CL and KA carry its inter-occasion variability
    for s in np.flatnonzero(ds["status"].values[0, a] == 0)[:3]:
        cl, ka = (float(ds[f"{k}_occ"].sel(occasion=1).values[0, s]) for k in ("CL", "KA"))
        v = float(ds["V1"].values[0, s])
        k = cl / v
        ref = 100 / cl * (1 - (ka * np.exp(-k * 24) - k * np.exp(-ka * 24)) / (ka - k))
        assert abs(ds["auc24"].values[0, a, s] - ref) <= 1e-5 * ref
    comp = json.loads(ds.attrs["analysis"])["comparisons"]["auc24"]
    assert comp[0]["measure"] == "geometric_mean_ratio"


def test_summary_of_missing_store(tmp_path):
    res = runner.invoke(app, ["summary", str(tmp_path / "none.zarr")])
    assert res.exit_code == 2 and "no results store" in res.output
