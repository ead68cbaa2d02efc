"""ADVAN6/13 ($DES) and ADVAN1 TRANS1 imports of the phenobarbital model reproduce NONMEM's PRED (at the
.ext final estimates, eta = 0) and CIPREDI (at the .phi EBEs) of ``pheno.tab``, and $DES forms (IF blocks,
depot with F1/ALAG1, NONMEM compartment numbers) translate into a text model that predicts what the
built-in does; what cannot be translated is listed line by line.

References: NONMEM 7.5.1's table for pheno (ADVAN1 TRANS2; 5 significant digits, tolerance 1e-4
relative): ``pheno_des.mod`` (the same model as ``DADT(1) = -K*A(1)``) and ``pheno_trans1.mod`` (``K =
CL/V``) are the same model written two other ways, so NONMEM's table is their reference too. The depot
model is checked against the Bateman function with lag and bioavailability written out here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from insilico.cli import app
from insilico.estimation import build_problem, load_population_model
from insilico.imports import import_nonmem, read_phi, write_import
from insilico.models import load_text_model
from tests.imports._predictions import predictions

DATA = Path(__file__).resolve().parents[1] / "data" / "nonmem"
RTOL = 1e-4


@pytest.mark.parametrize("stream", ["pheno_des.mod", "pheno_trans1.mod"])
def test_pheno_rewritten_reproduces_nonmem(tmp_path, stream):
    r = import_nonmem(DATA / stream, ext=DATA / "pheno.ext")
    assert r.ok, r.untranslated
    paths = write_import(r, tmp_path)
    spec, base = load_population_model(paths["population"])
    if stream == "pheno_des.mod":
        assert spec.model.file == "pheno_des_model.yaml" and paths["model"].is_file()
        model = load_text_model(paths["model"])
        assert model.states == ("CENTRAL",)
        assert r.text_model["equations"][-1] == "d/dt(CENTRAL) = -K*CENTRAL"
        assert r.text_model["outputs"]["conc"]["expr"] == "CENTRAL / S1"
        typical = {"CL": spec.parameters["CL"].typical, "V": spec.parameters["VC"].typical}
    else:
        assert spec.model.name == "1cmt_iv"
        typical = {"CL": spec.parameters["CL"].typical, "V": spec.parameters["V"].typical}
    assert typical == {"CL": 4.69555e-03, "V": 9.84258e-01}      # pheno.ext THETA1, THETA2
    data = pd.read_csv(DATA / "pheno.dta", sep=r"\s+")
    problem = build_problem(spec, data, base=base)
    tab = pd.read_csv(DATA / "pheno.tab", sep=r"\s+", skiprows=1)
    obs = tab[data["AMT"].to_numpy() == 0]
    pred = predictions(problem)[0]
    np.testing.assert_allclose(pred, obs["PRED"].to_numpy(), rtol=RTOL)
    phi = read_phi(DATA / "pheno.phi")
    ipred = predictions(problem, lambda sid: phi.loc[sid, ["ETA1", "ETA2"]].to_numpy())[0]
    np.testing.assert_allclose(ipred, obs["CIPREDI"].to_numpy(), rtol=RTOL)


ORAL_DATA = "ID TIME AMT DV WT CMT\n1 0 100 0 60 1\n1 1 0 5 60 2\n1 4 0 3 60 2\n1 12 50 0 60 2\n1 13 0 3 60 2\n" \
            "2 0 100 0 80 1\n2 2 0 4 80 2\n2 6 0 4 80 2\n"

ORAL_DES = """\
$PROBLEM oral as DES
$DATA run1.dta IGNORE=@
$INPUT ID TIME AMT DV WT CMT
$SUBROUTINE ADVAN13 TOL=9
$MODEL COMP=(GUT DEFDOSE) COMP=(CENT DEFOBS) COMP=(AUC NODOSE)
$PK
CL = THETA(1)*(WT/70)**0.75*EXP(ETA(1))
V = THETA(2)*EXP(ETA(2))
KA = THETA(3)
F1 = THETA(4)
ALAG1 = 0.5
S2 = V
$DES
C2 = A(2)/V
IF (A(1).GT.1.0D-12) THEN   ; absorption while the gut holds drug
  RATE = KA*A(1)
ELSE
  RATE = 0
ENDIF
DADT(1) = -RATE
DADT(2) = RATE - CL*C2
DADT(3) = C2
$ERROR
IPRED = F
Y = IPRED*(1 + EPS(1))
$THETA 4 40 1.5 0.8
$OMEGA 0.1 0.1
$SIGMA 0.04
"""


def test_des_depot_if_block_and_compartment_numbers(tmp_path):
    """GUT/CENT/AUC: DEFDOSE first among the doses, NODOSE left out, CMT 2 doses into CENT, F1/ALAG1 on the
    depot, the IF block as a conditional expression; predictions = Bateman with lag and F (closed form)."""
    (tmp_path / "run1.dta").write_text(ORAL_DATA)
    (tmp_path / "run1.mod").write_text(ORAL_DES)
    r = import_nonmem(tmp_path / "run1.mod")
    assert r.ok, r.untranslated
    tm = r.text_model
    assert tm["states"] == ["GUT", "CENT", "AUC"]
    assert tm["doses"] == {"GUT": {"bioavailability": "F1", "lag": "ALAG1"}, "CENT": {}}
    assert tm["equations"][2:5] == ["RATE = KA*GUT", "RATE_2 = 0", "RATE_3 = (RATE if GUT > 1.0E-12 else RATE_2)"]
    assert tm["equations"][-3:] == ["d/dt(GUT) = -RATE_3", "d/dt(CENT) = RATE_3 - CL*C2", "d/dt(AUC) = C2"]
    assert r.population["model"] == {"file": "run1_model.yaml", "parameters": {"ALAG1": 0.5}}
    assert set(r.population["parameters"]) == {"CL", "V", "KA", "F1"}
    out = tmp_path / "out"             # the CLI writes the model file next to population.yaml
    res = CliRunner().invoke(app, ["import", "nonmem", str(tmp_path / "run1.mod"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    model = load_text_model(out / "run1_model.yaml")
    assert model.states == ("GUT", "CENT", "AUC") and {"CL", "V", "KA", "F1", "ALAG1"} <= set(model.parameter_names)
    spec, base = load_population_model(out / "population.yaml")
    assert spec.model.file == "run1_model.yaml"
    data = pd.read_csv(tmp_path / "run1.dta", sep=r"\s+")
    problem = build_problem(spec, data, base=base)
    pred = predictions(problem)[0]
    ref = []
    for _, g in data.groupby("ID", sort=False):
        wt = g["WT"].iloc[0]
        cl, v, ka, f, lag = 4 * (wt / 70) ** 0.75, 40.0, 1.5, 0.8, 0.5
        k = cl / v
        for t in g.loc[g["AMT"] == 0, "TIME"]:
            c = 0.0
            for _, d in g[(g["AMT"] > 0) & (g["TIME"] <= t)].iterrows():
                if d["CMT"] == 1 and t - d["TIME"] > lag:
                    s = t - d["TIME"] - lag
                    c += f * d["AMT"] * ka / (v * (ka - k)) * (np.exp(-k * s) - np.exp(-ka * s))
                elif d["CMT"] == 2:
                    c += d["AMT"] / v * np.exp(-k * (t - d["TIME"]))
            ref.append(c)
    np.testing.assert_allclose(pred, ref, rtol=1e-6)


BAD_DES = """\
$PROBLEM bad
$DATA run1.dta IGNORE=@
$INPUT ID TIME AMT DV WT CMT
$SUBROUTINE ADVAN6 TOL=6
$MODEL COMP=(CENT DEFDOSE DEFOBS) COMP=(PERI)
$PK
CL = THETA(1)*EXP(ETA(1))
V = THETA(2)
S1 = V
$DES
CALL MYRATE(A(1), RATE)
"  X = 1
DADT(1) = -CL/V*A(1)*WT
DADT(2) = GAMLN(A(1)) + THETA(1)
$ERROR
Y = F + EPS(1)
$THETA 4 40
$OMEGA 0.1
$SIGMA 0.04
"""


def test_untranslatable_des_is_listed_line_by_line_and_exits_2(tmp_path):
    (tmp_path / "run1.dta").write_text(ORAL_DATA)
    path = tmp_path / "run1.mod"
    path.write_text(BAD_DES)
    r = import_nonmem(path)
    assert not r.ok and r.population is None
    text = "\n".join(r.untranslated)
    assert "$DES line 1: CALL MYRATE(A(1), RATE) -- statement not translated" in text
    assert '$DES line 2: "  X = 1 -- verbatim Fortran is not translated' in text
    assert "$DES line 3: DADT(1) = -CL/V*A(1)*WT -- data item WT in $DES" in text
    assert "$DES line 4: DADT(2) = GAMLN(A(1)) + THETA(1) -- function GAMLN has no text-model equivalent" in text
    assert "$DES DADT(1) -- no equation for compartment 1 (CENT)" in text
    res = CliRunner().invoke(app, ["import", "nonmem", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert not (tmp_path / "out" / "population.yaml").exists()
    assert not (tmp_path / "out" / "run1_model.yaml").exists()
    assert "CALL MYRATE" in (tmp_path / "out" / "untranslated.txt").read_text()
