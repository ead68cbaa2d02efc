"""Translation of control-stream forms (ADVAN2/3/4, covariate relations, $OMEGA BLOCK, FIX, bounds,
$ERROR idioms) into the population-model file, checked value by value against the control stream,
and the refusal of what cannot be translated (listed line by line, exit 2 from the CLI)."""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from insilico.cli import app
from insilico.estimation import build_problem, load_population_model
from insilico.imports import import_nonmem, read_ext

DATA = "ID TIME AMT DV WT AGE SEX CMT\n1 0 100 0 60 30 1 1\n1 1 0 5 60 30 1 2\n1 4 0 3 60 30 1 2\n" \
       "2 0 100 0 80 50 2 1\n2 2 0 4 80 50 2 2\n"


def _write(tmp_path, body: str, cmt=True):
    """The control stream ``body`` after $PROBLEM/$DATA/$INPUT; ``cmt=False`` drops the CMT column
    (ADVAN1 data: observations in CMT 2 are ADVAN1's output compartment)."""
    data = DATA if cmt else "\n".join(ln.rsplit(" ", 1)[0] for ln in DATA.splitlines()) + "\n"
    (tmp_path / "run1.dta").write_text(data)
    p = tmp_path / "run1.mod"
    p.write_text("$PROBLEM test\n$DATA run1.dta IGNORE=@\n$INPUT " + data.splitlines()[0] + "\n"
                 + textwrap.dedent(body))
    return p


ADVAN4 = """\
$SUBROUTINE ADVAN4 TRANS4
$PK
TVCL = THETA(1) * (WT/70)**THETA(6)
TVV2 = THETA(2) * EXP(THETA(7)*(AGE-40))
CL = TVCL*EXP(ETA(1))
V2 = TVV2*EXP(ETA(2))
Q = THETA(3) * (1 + THETA(8)*(AGE-40))
V3 = THETA(4)
KA = THETA(5)*EXP(ETA(3))
S2 = V2
K = CL/V2
$ERROR
IPRED = F
W = SQRT(THETA(9)**2 + THETA(10)**2*IPRED**2)
IF (W.EQ.0) W = 1
Y = IPRED + W*EPS(1)
IRES = DV - IPRED
$THETA (0, 5, 50) ; CL
$THETA (0, 30) ; V2
$THETA 2 FIX ; Q
$THETA (0, 60) (0, 1.2) ; V3 KA
$THETA 0.75 FIX ; CL_WT
$THETA (-1, 0.01, 1) ; V_AGE
$THETA 0.02 ; Q_AGE
$THETA (0, 0.1) (0, 0.2)
$OMEGA BLOCK(2) 0.09 0.02 0.16
$OMEGA 0.25 FIX
$SIGMA 1 FIX
"""


def test_advan4_relations_block_fix_bounds_and_w_idiom(tmp_path):
    r = import_nonmem(_write(tmp_path, ADVAN4))
    assert r.ok, r.untranslated
    text = "\n".join(r.untranslated)
    pop = r.population
    load_population_model(pop)
    assert pop["model"] == {"name": "2cmt_oral"}
    p = pop["parameters"]
    assert p["CL"] == {"typical": 5.0, "effects": [{"covariate": "WT", "type": "power", "ref": 70.0, "theta": 0.75}]}
    assert p["V1"] == {"typical": 30.0, "effects": [{"covariate": "AGE", "type": "exponential", "ref": 40.0,
                                                     "theta": 0.01}]}
    assert p["Q"] == {"typical": 2.0, "effects": [{"covariate": "AGE", "type": "linear", "ref": 40.0, "theta": 0.02}]}
    assert p["V2"] == {"typical": 60.0} and p["KA"] == {"typical": 1.2}
    assert pop["bsv"] == {"parameters": ["CL", "V1", "KA"],
                          "omega": [[0.09, 0.02, 0.0], [0.02, 0.16, 0.0], [0.0, 0.0, 0.25]]}
    assert pop["residual_error"]["type"] == "combined"
    assert math.isclose(pop["residual_error"]["additive"], 0.1) and math.isclose(
        pop["residual_error"]["proportional"], 0.2)
    est = pop["estimate"]
    assert set(est["fix"]) == {"Q", "CL.WT", "OMEGA(3,3)"}          # SIGMA 1 FIX but THETA9/10 free
    assert est["bounds"] == {"V1.AGE": [-1.0, 1.0]}
    assert "THETA9" not in text and "THETA10" not in text
    assert r.names["thetas"]["THETA6"]["name"] == "CL.WT" and r.names["thetas"]["THETA3"]["name"] == "Q"
    assert r.names["etas"] == {"ETA1": "CL", "ETA2": "V1", "ETA3": "KA"}
    assert r.names["omegas"]["OMEGA(3,3)"]["name"] == "OMEGA(3,3)"
    assert r.names["sigmas"]["THETA9"]["name"] == "SIGMA(2,2)"
    assert r.names["sigmas"]["THETA10"]["name"] == "SIGMA(1,1)"
    assert "$PK line 9: K = CL/V2 -- K is not used" in text
    assert "IRES" in text and "not used" in text
    assert "THETA1: bound (0, 50) not carried" in text          # a typical value's lower bound must be > 0


def test_advan2_prediction_matches_closed_form(tmp_path):
    """1cmt_oral at the imported values vs the Bateman function written from the control stream."""
    body = """\
    $SUBROUTINE ADVAN2 TRANS2
    $PK
    CL = THETA(1)*(WT/70)**0.75*EXP(ETA(1))
    V = THETA(2)*EXP(ETA(2))*(WT/70)*(1 + THETA(4)*(AGE-40))
    KA = THETA(3)
    S2 = V
    $ERROR
    Y = F + EPS(1)
    $THETA 4 40 1.5 0.01
    $OMEGA 0.1 0.1
    $SIGMA 0.25
    """
    r = import_nonmem(_write(tmp_path, body))
    assert r.ok, r.untranslated
    pop = r.population
    assert pop["residual_error"] == {"type": "additive", "additive": 0.5}
    assert "CL.WT" in pop["estimate"]["fix"]
    spec, _ = load_population_model(pop)
    data = pd.read_csv(tmp_path / "run1.dta", sep=r"\s+")
    problem = build_problem(spec, data)
    import jax.numpy as jnp
    pop_model = problem.params.population(jnp.asarray(problem.params.initial))
    s = problem.subjects()
    assert pop["parameters"]["V"]["effects"] == [
        {"covariate": "WT", "type": "power", "ref": 70.0, "theta": 1.0},
        {"covariate": "AGE", "type": "linear", "ref": 40.0, "theta": 0.01}] or pop["parameters"]["V"]["effects"] == [
        {"covariate": "AGE", "type": "linear", "ref": 40.0, "theta": 0.01},
        {"covariate": "WT", "type": "power", "ref": 70.0, "theta": 1.0}]
    for i, (wt, age) in enumerate(((60.0, 30.0), (80.0, 50.0))):
        sub = {"cov": {k: v[i] for k, v in s["cov"].items()}, "dose": tuple(a[i] for a in s["dose"]),
               "t": s["t"][i], "y": s["y"][i], "mask": s["mask"][i]}
        pred, _ = problem.predict(pop_model, sub, jnp.zeros(2))
        t = np.asarray(problem.times[i])[np.asarray(problem.mask[i])]
        cl, v, ka = 4 * (wt / 70) ** 0.75, 40.0 * wt / 70 * (1 + 0.01 * (age - 40)), 1.5
        ref = 100 * ka / (v * (ka - cl / v)) * (np.exp(-cl / v * t) - np.exp(-ka * t))
        np.testing.assert_allclose(np.asarray(pred)[np.asarray(problem.mask[i])], ref, rtol=1e-8)


def test_ext_values_replace_the_control_stream(tmp_path):
    r0 = import_nonmem(_write(tmp_path, ADVAN4))
    ext = tmp_path / "run1.ext"
    cols = [f"THETA{k}" for k in range(1, 11)] + ["SIGMA(1,1)", "OMEGA(1,1)", "OMEGA(2,1)", "OMEGA(2,2)",
                                                     "OMEGA(3,1)", "OMEGA(3,2)", "OMEGA(3,3)"]
    vals = [6, 31, 2, 61, 1.3, 0.75, 0.011, 0.021, 0.11, 0.21, 1, 0.08, 0.01, 0.15, 0, 0, 0.25]
    ext.write_text("TABLE NO.     1: FOCE\n ITERATION " + " ".join(cols) + " OBJ\n"
                   + "  0 " + " ".join(["1"] * len(cols)) + " 9\n"
                   + "  -1000000000 " + " ".join(map(str, vals)) + " 5\n")
    assert read_ext(ext)["THETA2"] == 31.0
    r = import_nonmem(tmp_path / "run1.mod", ext=ext)
    assert r.population["parameters"]["CL"]["typical"] == 6.0 != r0.population["parameters"]["CL"]["typical"]
    assert r.population["bsv"]["omega"][:2] == [[0.08, 0.01, 0.0], [0.01, 0.15, 0.0]]
    assert math.isclose(r.population["residual_error"]["proportional"], 0.21)


@pytest.mark.parametrize("pk, reason", [
    ("CL = THETA(1)*EXP(ETA(1)) + THETA(2)*WT\nV = THETA(2)\nS1 = V", "CL ="),
    ("CL = THETA(1)+ETA(1)\nV = THETA(2)\nS1 = V", "CL ="),
    ("CL = THETA(1)\nV = THETA(2)\nS1 = V/1000", "S1 must equal V"),
    ("CL = THETA(1)\nS1 = 1", "V is required"),
])
def test_untranslatable_pk_is_listed_and_exits_2(tmp_path, pk, reason):
    body = "$SUBROUTINE ADVAN1 TRANS2\n$PK\n" + pk + "\n$ERROR\nY = F*(1 + EPS(1))\n$THETA 1 2\n$OMEGA 0.1\n" \
           "$SIGMA 0.01\n"
    path = _write(tmp_path, body, cmt=False)
    r = import_nonmem(path)
    assert not r.ok and r.population is None
    assert any(reason in line for line in r.untranslated), r.untranslated
    res = CliRunner().invoke(app, ["import", "nonmem", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert not (tmp_path / "out" / "population.yaml").exists()
    assert reason in (tmp_path / "out" / "untranslated.txt").read_text()


def test_unsupported_advan_and_error_model(tmp_path):
    r = import_nonmem(_write(tmp_path, "$SUBROUTINE ADVAN1 TRANS1\n$PK\nK = THETA(1)\nS1 = THETA(2)\n$ERROR\n"
                                       "Y = F + EPS(1)\n$THETA 1 2\n$OMEGA 0 FIX\n$SIGMA 1\n", cmt=False))
    assert not r.ok and "TRANS1 rate constants must combine with the scale" in r.untranslated[-1]
    r = import_nonmem(_write(tmp_path, "$SUBROUTINE ADVAN1 TRANS2\n$PK\nCL = THETA(1)\nV = THETA(2)\nS1 = V\n"
                                       "$ERROR\nY = F + F**2*EPS(1)\n$THETA 1 2\n$SIGMA 1\n", cmt=False))
    assert not r.ok and any("$ERROR line 1: Y = F + F**2*EPS(1) --" in line for line in r.untranslated)


def test_cli_writes_the_three_files_and_refuses_bad_input(tmp_path):
    path = _write(tmp_path, ADVAN4)
    out = tmp_path / "run1"
    res = CliRunner().invoke(app, ["import", "nonmem", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    pop = yaml.safe_load((out / "population.yaml").read_text())
    load_population_model(out / "population.yaml")
    assert pop["model"]["name"] == "2cmt_oral"
    assert yaml.safe_load((out / "nonmem_names.yaml").read_text())["thetas"]["THETA1"] == {"name": "CL"}
    assert "K = CL/V2" in (out / "untranslated.txt").read_text()
    again = CliRunner().invoke(app, ["import", "nonmem", str(path), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    for args in (["import", "nonmem", str(tmp_path / "missing.mod"), "--out", str(tmp_path / "x")],
                 ["import", "nonmem", str(path), "--ext", str(tmp_path / "missing.ext"), "--out", str(tmp_path / "y")]):
        assert CliRunner().invoke(app, args).exit_code == 2
