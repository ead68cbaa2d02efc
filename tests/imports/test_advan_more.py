"""ADVAN11/12 TRANS4 and TRANS1 (rate constants) onto the three-compartment built-ins, and NONMEM's
``.cov`` file carried onto the translated quantities (``covariance.yaml``).

References: the three-compartment oral prediction is checked against the matrix exponential of the
system written here from NONMEM Users Guide VI's ADVAN12 definition (scipy.linalg.expm, superposition
over doses); the covariance against NONMEM 7.5.1's own ``pheno.cov`` element by element and, for a
nonlinear map (a residual variance THETA**2), against the delta method written out.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.linalg import expm
from typer.testing import CliRunner

from insilico.cli import app
from insilico.errors import SpecError
from insilico.estimation import build_problem, load_population_model
from insilico.imports import import_nonmem, read_cov
from tests.imports._predictions import predictions

DATA = Path(__file__).resolve().parents[1] / "data" / "nonmem"
ROWS = "ID TIME AMT DV WT CMT\n1 0 100 0 60 1\n1 1 0 5 60 2\n1 6 0 3 60 2\n1 12 100 0 60 1\n1 14 0 3 60 2\n" \
       "1 30 0 1 60 2\n2 0 100 0 80 1\n2 2 0 4 80 2\n2 24 0 1 80 2\n"

ADVAN12 = """\
$PROBLEM three compartments, oral
$DATA run1.dta IGNORE=@
$INPUT ID TIME AMT DV WT CMT
$SUBROUTINE ADVAN12 TRANS4
$PK
CL = THETA(1)*(WT/70)**0.75*EXP(ETA(1))
V2 = THETA(2)*EXP(ETA(2))
Q3 = THETA(3)
V3 = THETA(4)
Q4 = THETA(5)
V4 = THETA(6)
KA = THETA(7)*EXP(ETA(3))
S2 = V2
$ERROR
Y = F*(1 + EPS(1))
$THETA 5 30 8 60 2 150 1.2
$OMEGA 0.09 0.04 0.16
$SIGMA 0.01
"""

# the same model in rate constants (TRANS1): K = CL/V2, K23 = Q3/V2, K32 = Q3/V3, K24 = Q4/V2, K42 = Q4/V4
ADVAN12_TRANS1 = ADVAN12.replace("TRANS4", "TRANS1").replace("S2 = V2\n", """\
S2 = V2
K = CL/V2
K23 = Q3/V2
K32 = Q3/V3
K24 = Q4/V2
K42 = Q4/V4
""")


def _write(tmp_path, body, data=ROWS):
    (tmp_path / "run1.dta").write_text(data)
    p = tmp_path / "run1.mod"
    p.write_text(textwrap.dedent(body))
    return p


def test_advan12_trans4_and_trans1_match_the_matrix_exponential(tmp_path):
    r = import_nonmem(_write(tmp_path, ADVAN12))
    assert r.ok, r.untranslated
    pop = r.population
    assert pop["model"] == {"name": "3cmt_oral"}
    p = pop["parameters"]
    assert {k: v["typical"] for k, v in p.items()} == {"CL": 5.0, "V1": 30.0, "Q": 8.0, "V2": 60.0, "Q3": 2.0,
                                                       "V3": 150.0, "KA": 1.2}
    assert pop["bsv"]["parameters"] == ["CL", "V1", "KA"]
    assert r.names["thetas"]["THETA5"] == {"name": "Q3"} and r.names["thetas"]["THETA4"] == {"name": "V2"}

    r1 = import_nonmem(_write(tmp_path, ADVAN12_TRANS1))
    assert r1.ok, r1.untranslated
    assert r1.population["parameters"] == p and r1.population["bsv"] == pop["bsv"]

    spec, _ = load_population_model(pop)
    data = pd.read_csv(tmp_path / "run1.dta", sep=r"\s+")
    pred = predictions(build_problem(spec, data))[0]
    ref = []
    for _, g in data.groupby("ID", sort=False):
        cl, v1, q, v2, q3, v3, ka = 5 * (g["WT"].iloc[0] / 70) ** 0.75, 30, 8, 60, 2, 150, 1.2
        # depot, central, peripheral 1, peripheral 2 (ADVAN12 compartments 1-4)
        m = np.array([[-ka, 0, 0, 0],
                      [ka, -(cl + q + q3) / v1, q / v2, q3 / v3],
                      [0, q / v1, -q / v2, 0],
                      [0, q3 / v1, 0, -q3 / v3]])
        for t in g.loc[g["AMT"] == 0, "TIME"]:
            a = sum(expm(m * (t - d["TIME"])) @ np.array([d["AMT"], 0, 0, 0])
                    for _, d in g[(g["AMT"] > 0) & (g["TIME"] <= t)].iterrows())
            ref.append(a[1] / v1)
    np.testing.assert_allclose(pred, ref, rtol=1e-9)


def test_trans1_needs_the_scale_and_a_population_form(tmp_path):
    body = ADVAN12_TRANS1.replace("S2 = V2\n", "")
    r = import_nonmem(_write(tmp_path, body))
    assert not r.ok
    assert any("S2 is required by ADVAN12 TRANS1 but not assigned in $PK (insilico's V1 = S2: the scale S2 is the "
               "central volume)" in line for line in r.untranslated), r.untranslated
    body = ADVAN12_TRANS1.replace("K = CL/V2", "K = THETA(1)*EXP(ETA(1))")
    r = import_nonmem(_write(tmp_path, body))
    assert not r.ok
    assert any(line.startswith("$PK line 9: K = THETA(1)*EXP(ETA(1)) -- insilico's CL = K*S2 =")
               and "rate constants must combine" in line for line in r.untranslated), r.untranslated


def test_pheno_cov_round_trips_through_the_cli(tmp_path):
    out = tmp_path / "pheno"
    res = CliRunner().invoke(app, ["import", "nonmem", str(DATA / "pheno.mod"), "--ext", str(DATA / "pheno.ext"),
                                   "--cov", str(DATA / "pheno.cov"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = yaml.safe_load((out / "covariance.yaml").read_text())
    levels = [f"V.APGR[{k}]" for k in range(1, 11)]
    assert written["names"] == ["CL", "CL.WGT", "V", *levels, "V.WGT", "OMEGA(1,1)", "OMEGA(2,2)", "SIGMA(1,1)"]
    assert written["nonmem"]["V.APGR[1]"] == "THETA3 + 1" and written["nonmem"]["V.APGR[7]"] == 1.0
    cov = read_cov(DATA / "pheno.cov")
    got = pd.DataFrame(written["matrix"], index=written["names"], columns=written["names"])
    same = {"CL": "THETA1", "V": "THETA2", "V.APGR[1]": "THETA3", "V.APGR[4]": "THETA3", "OMEGA(1,1)": "OMEGA(1,1)",
            "OMEGA(2,2)": "OMEGA(2,2)", "SIGMA(1,1)": "SIGMA(1,1)"}
    for a, na in same.items():                   # d(1 + THETA3)/dTHETA3 = 1: every element as NONMEM's
        for b, nb in same.items():
            assert math.isclose(got.loc[a, b], cov.loc[na, nb], rel_tol=1e-9), (a, b)
    fixed = ["CL.WGT", "V.WGT", *levels[4:]]
    assert not got.loc[fixed].to_numpy().any() and not got[fixed].to_numpy().any()
    assert math.isclose(got.loc["V", "V.APGR[2]"], -8.04175e-04, rel_tol=1e-9)      # pheno.cov THETA2, THETA3
    missing = CliRunner().invoke(app, ["import", "nonmem", str(DATA / "pheno.mod"), "--cov", str(tmp_path / "no.cov"),
                                       "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "no.cov" in missing.output


TRANS1_W = """\
$PROBLEM trans1 with a THETA-scaled residual
$DATA run1.dta IGNORE=@
$INPUT ID TIME AMT DV WT CMT
$SUBROUTINE ADVAN1 TRANS1
$PK
CL = THETA(1)*EXP(ETA(1))
V = THETA(2)
K = CL/V
S1 = V
$ERROR
Y = F + THETA(3)*F*EPS(1)
$THETA 4 40 0.2
$OMEGA 0.1
$SIGMA 1 FIX
"""


def test_cov_delta_method_and_bad_files(tmp_path):
    rows = "ID TIME AMT DV WT CMT\n1 0 100 0 60 1\n1 2 0 2 60 1\n"
    path = _write(tmp_path, TRANS1_W, rows)
    names = ["THETA1", "THETA2", "THETA3", "SIGMA(1,1)", "OMEGA(1,1)"]
    c = np.array([[0.25, 0.1, 0.002, 0, 0.001], [0.1, 4.0, 0.003, 0, 0.0], [0.002, 0.003, 0.0004, 0, 0.0002],
                  [0, 0, 0, 0, 0], [0.001, 0.0, 0.0002, 0, 0.0009]])
    cov = tmp_path / "run1.cov"

    def write(mat, header=names):
        cov.write_text("TABLE NO.     1: First Order Conditional Estimation with Interaction: Problem=1\n"
                       + " NAME " + " ".join(f"{n:>12}" for n in header) + "\n"
                       + "".join(f" {n:<12}" + " ".join(f"{v: .5E}" for v in row) + "\n"
                                 for n, row in zip(header, mat)))
    write(c)
    r = import_nonmem(path, cov=cov)
    assert r.ok, r.untranslated
    w = r.covariance
    assert w["names"] == ["CL", "V", "OMEGA(1,1)", "SIGMA(1,1)"]
    assert w["nonmem"]["SIGMA(1,1)"] == "SIGMA(1,1)*THETA3**2"
    m = np.asarray(w["matrix"])
    g = 2 * 0.2 * 1.0                       # d(THETA3**2 * SIGMA)/dTHETA3 at THETA3 = 0.2, SIGMA = 1 (fixed)
    np.testing.assert_allclose(m[:3, :3], c[np.ix_([0, 1, 4], [0, 1, 4])], rtol=1e-9)
    np.testing.assert_allclose(m[3, 3], g * g * 0.0004, rtol=1e-9)
    np.testing.assert_allclose(m[3, :3], g * c[2, [0, 1, 4]], rtol=1e-9)

    write(c[:4, :4], names[:4])                          # OMEGA(1,1) estimated but absent
    with pytest.raises(SpecError, match=r"no row for OMEGA\(1,1\), which OMEGA\(1,1\) uses"):
        import_nonmem(path, cov=cov)
    bad = c.copy()
    bad[0, 1] = 0.5
    write(bad)
    with pytest.raises(SpecError, match="not symmetric"):
        import_nonmem(path, cov=cov)
    cov.write_text("TABLE NO. 1\n NAME THETA1 ETA1\n THETA1 1 0\n ETA1 0 1\n")
    with pytest.raises(SpecError, match="unknown names ETA1"):
        import_nonmem(path, cov=cov)
