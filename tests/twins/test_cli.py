"""`insilico twin ...` through typer's CliRunner (JSON shapes, exit codes) and one subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from insilico.cli import app
from tests.twins.conftest import DOSES, LEVELS, PRIOR, rows

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "prior.yaml").write_text(yaml.safe_dump(PRIOR))
    rows(DOSES, LEVELS).to_csv(d / "rows.csv", index=False)
    store = d / "twins.zarr"
    res = runner.invoke(app, ["twin", "create", str(store), "P01", "--prior", str(d / "prior.yaml"),
                              "--covariates", "WT=80,AGE=64", "--json"])
    assert res.exit_code == 0, res.output
    return d, store


def _versions(store, pid):
    return sorted(p.name for p in (store / pid).iterdir() if p.name.startswith("v"))


def test_update_and_show_print_the_documented_json(setup):
    d, store = setup
    res = runner.invoke(app, ["twin", "update", str(store), "P01", "--data", str(d / "rows.csv"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) == {"P01"}
    entry = doc["P01"]
    assert {"eta", "eta_cov", "objective", "parameters"} <= set(entry)
    assert list(entry["eta"]) == ["ETA1"] and len(entry["eta_cov"]) == 1 and len(entry["eta_cov"][0]) == 1
    assert set(entry["parameters"]) == {"CL", "V"} and isinstance(entry["objective"], float)
    shown = json.loads(runner.invoke(app, ["twin", "show", str(store), "--json"]).stdout)
    assert shown["P01"]["eta"] == entry["eta"] and shown["P01"]["version"] == 1
    earlier = json.loads(runner.invoke(app, ["twin", "show", str(store), "P01", "--version", "0", "--json"]).stdout)
    assert earlier["P01"]["eta"] == {"ETA1": 0.0}
    hist = runner.invoke(app, ["twin", "show", str(store), "P01", "--history", "--json"])
    assert [r["version"] for r in json.loads(hist.stdout)] == [0, 1]


def test_forecast_recommend_risk_json(setup):
    d, store = setup
    res = runner.invoke(app, ["twin", "forecast", str(store), "P01", "--regimen", "1000 mg q12h x6, 1 h infusion",
                              "--regimen", "current", "--until", "24", "--points", "5", "--draws", "200", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["time"]) == 5 and len(doc["regimens"]) == 2
    band = doc["regimens"]["1000 mg q12h x6, 1 h infusion"]["conc"]
    assert all(lo <= m <= hi for lo, m, hi in zip(band["lower"], band["median"], band["upper"]))
    res = runner.invoke(app, ["twin", "recommend", str(store), "P01", "--target", "trough in [4, 8] mg/L",
                              "--doses", "500:1500:500", "--intervals", "12,24", "--draws", "200", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert len(rec["candidates"]) == 6 and 0 <= rec["recommendation"]["probability"] <= 1
    assert rec["current"]["interval"] == 12 and "rule" in rec
    res = runner.invoke(app, ["twin", "risk", str(store), "P01", "--output", "conc", "--above", "30",
                              "--within", "24", "--draws", "200", "--json"])
    assert res.exit_code == 0, res.output
    assert 0 <= json.loads(res.stdout)["probability"] <= 1


def test_update_all_creates_new_ids_with_a_prior(setup, tmp_path):
    d, _ = setup
    batch = pd.concat([rows(DOSES, LEVELS).assign(ID=pid, WT=wt) for pid, wt in (("N1", 60), ("N2", 90))])
    batch.to_csv(tmp_path / "batch.csv", index=False)
    store = tmp_path / "fleet.zarr"
    res = runner.invoke(app, ["twin", "update-all", str(store), "--data", str(tmp_path / "batch.csv"), "--json"])
    assert res.exit_code == 2 and "data.ID" in res.output and not store.exists()
    res = runner.invoke(app, ["twin", "update-all", str(store), "--data", str(tmp_path / "batch.csv"), "--prior",
                              str(d / "prior.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) == {"N1", "N2"} and doc["N1"]["eta"] != doc["N2"]["eta"]
    assert doc["N1"]["parameters"]["CL"] != doc["N2"]["parameters"]["CL"]


BAD = [
    ("unknown patient", "NOBODY", rows([], [(20.0, 1.0)]), "patient_id"),
    ("empty update", "P01", pd.DataFrame(columns=["TIME", "AMT", "EVID", "DV"]), "data"),
    ("level before the first dose", "E01", rows([(5.0, 500.0)], [(1.0, 2.0)]), "data.TIME"),
    ("level in a wrong column", "P01", pd.DataFrame([dict(TIME=30.0, EVID=0, DV=".", CONC_UG_ML=3.0)]),
     "data.CONC_UG_ML"),
]


@pytest.mark.parametrize("what,pid,df,field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_naming_the_field_and_changes_nothing(setup, tmp_path, what, pid, df, field):
    d, store = setup
    if pid == "E01" and not (store / "E01").exists():
        assert runner.invoke(app, ["twin", "create", str(store), "E01", "--prior", str(d / "prior.yaml"),
                                   "--covariates", "WT=70"]).exit_code == 0
    before = {p: _versions(store, p) for p in ("P01", "E01") if (store / p).exists()}
    df.to_csv(tmp_path / "bad.csv", index=False)
    res = runner.invoke(app, ["twin", "update", str(store), pid, "--data", str(tmp_path / "bad.csv")])
    assert res.exit_code == 2, res.output
    assert f"{field}:" in res.output
    assert {p: _versions(store, p) for p in before} == before


def test_exit_code_2_in_a_subprocess(setup, tmp_path):
    _, store = setup
    rows([], [(20.0, 1.0)]).to_csv(tmp_path / "r.csv", index=False)
    proc = subprocess.run([sys.executable, "-m", "insilico.cli", "twin", "update", str(store), "NOBODY", "--data",
                           str(tmp_path / "r.csv")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "patient_id" in proc.stderr and "Traceback" not in proc.stderr
