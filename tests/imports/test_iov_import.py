"""Import of NONMEM's inter-occasion variability idiom ($OMEGA BLOCK(1) ... SAME, occasion indicators
in $PK) into the population file's ``iov`` section.

References: the control stream's own $OMEGA / .ext values (the iov variance must equal them exactly),
and a one-compartment IV-bolus solution written here by hand from PREDPP's rules (NONMEM Users Guide VI:
the system is advanced to each event record with that record's PK parameters, so a record's occasion
holds back to the previous record): A(t) = A(t_prev) exp(-CL_k/V (t - t_prev)) + dose, C = A/V, with
CL_k = THETA1 exp(ETA1 + ETA(2+k)) on occasion k and V = THETA2 exp(ETA2); tolerance 1e-10 relative."""
from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from insilico.cli import app
from insilico.errors import SpecError
from insilico.estimation import build_problem, load_population_model
from insilico.imports import import_nonmem, nonmem_random_effects, read_phi

# two subjects, one IV bolus per occasion (OCC 1..3), two observations after each dose
DATA = "ID TIME AMT DV OCC\n" + "".join(
    f"{i} {t0 + dt:g} {amt} {dv} {k}\n" for i in (1, 2) for k, t0 in ((1, 0), (2, 24), (3, 48))
    for dt, amt, dv in ((0, 100 * i, 0), (1, 0, 2.0), (6, 0, 1.0)))

PK_INDICATORS = """\
OCC1 = 0
OCC2 = 0
OCC3 = 0
IF (OCC.EQ.1) OCC1 = 1
IF (OCC.EQ.2) OCC2 = 1
IF (OCC.EQ.3) OCC3 = 1
IOV_CL = OCC1*ETA(3) + OCC2*ETA(4) + OCC3*ETA(5)
CL = THETA(1)*EXP(ETA(1)+IOV_CL)
"""
PK_IF_THEN = """\
IOV_CL = 0
IF (OCC.EQ.1) THEN
  IOV_CL = ETA(3)
ELSE IF (OCC.EQ.2) THEN
  IOV_CL = ETA(4)
ELSE IF (OCC.EQ.3) THEN
  IOV_CL = ETA(5)
ENDIF
TVCL = THETA(1)
CL = TVCL*EXP(ETA(1))*EXP(IOV_CL)
"""
OMEGA_SAME = "$OMEGA BLOCK(1) 0.02 ; IOV_CL\n$OMEGA BLOCK(1) SAME\n$OMEGA BLOCK(1) SAME\n"
OMEGA_SAME_2 = "$OMEGA BLOCK(1) 0.02 ; IOV_CL\n$OMEGA BLOCK(1) SAME(2)\n"

EXT = """\
TABLE NO.     1: First Order Conditional Estimation with Interaction: Goal Function=MINIMUM VALUE OF OBJECTIVE FUNCTION
 ITERATION  THETA1   THETA2   SIGMA(1,1) OMEGA(1,1) OMEGA(2,1) OMEGA(2,2) OMEGA(3,3) OMEGA(4,4) OMEGA(5,5) OBJ
         0  5.0E+00  4.0E+01  1.0E-02    9.0E-02    0.0E+00    4.0E-02    2.0E-02    2.0E-02    2.0E-02    100.0
-1000000000 4.2E+00  3.5E+01  1.2E-02    1.1E-01    0.0E+00    5.0E-02    3.1E-02    3.1E-02    3.1E-02    90.0
"""
PHI = """\
TABLE NO.     1: First Order Conditional Estimation with Interaction: Problem=1 Subproblem=0
 SUBJECT_NO   ID           ETA(1)       ETA(2)       ETA(3)       ETA(4)       ETA(5)       OBJ
            1            1  1.5E-01 -1.0E-01  2.0E-01 -3.0E-01  1.0E-01  1.0E+00
            2            2 -2.0E-01  5.0E-02 -1.5E-01  2.5E-01  5.0E-02  1.0E+00
"""


def _stream(tmp_path, pk=PK_INDICATORS, omega=OMEGA_SAME, name="run1"):
    (tmp_path / "run1.dta").write_text(DATA)
    path = tmp_path / f"{name}.mod"
    path.write_text("$PROBLEM iov\n$DATA run1.dta IGNORE=@\n$INPUT ID TIME AMT DV OCC\n$SUBROUTINE ADVAN1 TRANS2\n"
                    "$PK\n" + pk + "V = THETA(2)*EXP(ETA(2))\nS1 = V\n$ERROR\nY = F*(1 + EPS(1))\n"
                    "$THETA (0, 5) (0, 40)\n$OMEGA 0.09 0.04\n" + omega + "$SIGMA 0.01\n")
    return path


def test_cli_writes_iov_with_the_omega_and_ext_values(tmp_path):
    path = _stream(tmp_path)
    out = tmp_path / "imp"
    res = CliRunner().invoke(app, ["import", "nonmem", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    pop = yaml.safe_load((out / "population.yaml").read_text())
    assert pop["iov"] == {"occasions": 3, "variance": {"CL": 0.02}}
    assert pop["bsv"] == {"parameters": ["CL", "V"], "omega": [[0.09, 0.0], [0.0, 0.04]]}
    assert pop["covariate_interpolation"] == "nocb"
    spec, _ = load_population_model(out / "population.yaml")
    assert spec.iov.variance == {"CL": 0.02}
    names = yaml.safe_load((out / "nonmem_names.yaml").read_text())
    assert names["omegas"]["OMEGA(3,3)"]["name"] == "OMEGA_IOV(1,1)"
    assert names["iov"]["etas"] == {f"ETA{k + 2}": {"parameter": "CL", "occasion": k} for k in (1, 2, 3)}
    assert names["iov"]["column"] == "OCC" and names["etas"] == {"ETA1": "CL", "ETA2": "V"}
    report = (out / "untranslated.txt").read_text()
    assert "SAME chain ETA(3)-ETA(5)" in report and "OMEGA_IOV(1,1)" in report
    assert "ETA_3" not in report                      # no IOV ETA reported as unused

    (tmp_path / "run1.ext").write_text(EXT)
    out2 = tmp_path / "imp_ext"
    res = CliRunner().invoke(app, ["import", "nonmem", str(path), "--ext", str(tmp_path / "run1.ext"),
                                   "--out", str(out2)])
    assert res.exit_code == 0, res.output
    pop = yaml.safe_load((out2 / "population.yaml").read_text())
    assert pop["iov"] == {"occasions": 3, "variance": {"CL": 0.031}}
    assert pop["parameters"]["CL"]["typical"] == 4.2
    # --cov: OMEGA(3,3)'s variance carried onto OMEGA_IOV(1,1), between Omega and SIGMA (a fit's order)
    (tmp_path / "run1.cov").write_text("TABLE NO.     1: cov\n NAME THETA1 THETA2 SIGMA(1,1) OMEGA(1,1) OMEGA(2,2) "
                                       "OMEGA(3,3)\n" + "".join(
                                           f" {n} " + " ".join(f"{v if a == b else 0.0:g}" for b in range(6)) + "\n"
                                           for a, (n, v) in enumerate([("THETA1", 0.1), ("THETA2", 1.0),
                                                                       ("SIGMA(1,1)", 1e-6), ("OMEGA(1,1)", 1e-3),
                                                                       ("OMEGA(2,2)", 2e-3), ("OMEGA(3,3)", 5e-4)])))
    cov = import_nonmem(path, cov=tmp_path / "run1.cov").covariance
    assert cov["names"] == ["CL", "V", "OMEGA(1,1)", "OMEGA(2,2)", "OMEGA_IOV(1,1)", "SIGMA(1,1)"]
    assert cov["nonmem"]["OMEGA_IOV(1,1)"] == "OMEGA(3,3)" and cov["matrix"][4][4] == 5e-4


@pytest.mark.parametrize("pk, omega", [(PK_IF_THEN, OMEGA_SAME), (PK_INDICATORS, OMEGA_SAME_2)])
def test_other_ways_of_writing_it_give_the_same_population(tmp_path, pk, omega):
    ref = import_nonmem(_stream(tmp_path, name="ref"))
    other = import_nonmem(_stream(tmp_path, pk, omega))
    assert ref.ok and other.ok, other.untranslated
    assert {k: v for k, v in other.population.items() if k not in ("name", "description")} == \
        {k: v for k, v in ref.population.items() if k not in ("name", "description")}
    assert other.names["iov"] == ref.names["iov"]


def test_individual_predictions_with_nonmem_etas_equal_the_hand_solution(tmp_path):
    (tmp_path / "run1.ext").write_text(EXT)
    (tmp_path / "run1.phi").write_text(PHI)
    r = import_nonmem(_stream(tmp_path), ext=tmp_path / "run1.ext")
    assert r.ok, r.untranslated
    spec, _ = load_population_model(r.population)
    data = pd.read_csv(tmp_path / "run1.dta", sep=r"\s+")
    problem = build_problem(spec, data)
    phi = read_phi(tmp_path / "run1.phi")
    pop = problem.params.population(jnp.asarray(problem.params.initial))
    subjects = problem.subjects()
    theta1, theta2 = 4.2, 35.0                                  # the .ext final values
    for i, sid in enumerate(problem.ids):
        eta = phi.loc[sid]
        re_vec = nonmem_random_effects(r.names, eta.to_dict())
        assert re_vec.shape == (problem.n_eta,) == (5,)
        sub = jax.tree_util.tree_map(lambda a, i=i: a[i], subjects)
        pred, status = problem.predict(pop, sub, jnp.asarray(re_vec))
        got = np.asarray(pred)[np.asarray(problem.mask[i])]
        # the hand solution, record by record (PREDPP: each advance uses the PK of the record it ends at)
        recs = data[data["ID"] == sid]
        v = theta2 * np.exp(eta["ETA2"])
        amount, t_prev, ref = 0.0, 0.0, []
        for t, amt, occ in recs[["TIME", "AMT", "OCC"]].to_numpy():
            cl = theta1 * np.exp(eta["ETA1"] + eta[f"ETA{2 + int(occ)}"])
            amount *= np.exp(-cl / v * (t - t_prev))
            t_prev = t
            if amt > 0:
                amount += amt
            else:
                ref.append(amount / v)
        assert got.shape == (6,)
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=0)


def test_an_occasion_column_of_another_name_is_written_as_iov_column(tmp_path):
    """``IF (VISIT.EQ.k)``: the population's ``iov.column`` is VISIT and a fit reads the occasions from it,
    with the same predictions as the OCC-named stream."""
    ref = import_nonmem(_stream(tmp_path, name="ref"))
    visit = tmp_path / "visit"
    visit.mkdir()
    path = _stream(visit, PK_INDICATORS.replace("OCC.EQ", "VISIT.EQ"))
    (visit / "run1.dta").write_text(DATA.replace(" OCC\n", " VISIT\n", 1))
    path.write_text(path.read_text().replace("DV OCC", "DV VISIT"))
    r = import_nonmem(path)
    assert r.ok, r.untranslated
    assert r.population["iov"] == {**ref.population["iov"], "column": "VISIT"}
    eta = jnp.asarray([0.1, -0.1, 0.2, -0.3, 0.1])
    preds = []
    for pop_file, folder, column in ((ref.population, tmp_path, "OCC"), (r.population, visit, "VISIT")):
        spec, _ = load_population_model(pop_file)
        data = pd.read_csv(folder / "run1.dta", sep=r"\s+")
        assert column in data.columns
        problem = build_problem(spec, data)
        sub = jax.tree_util.tree_map(lambda a: a[0], problem.subjects())
        pred, _ = problem.predict(problem.params.population(jnp.asarray(problem.params.initial)), sub, eta)
        preds.append(np.asarray(pred)[np.asarray(problem.mask[0])])
    np.testing.assert_array_equal(preds[0], preds[1])
    spec, _ = load_population_model(r.population)
    bad = pd.read_csv(visit / "run1.dta", sep=r"\s+").assign(VISIT=lambda d: d["VISIT"].where(d.index != 4, 7))
    with pytest.raises(SpecError) as e:
        build_problem(spec, bad)
    assert e.value.field == "data.VISIT" and "row 5" in e.value.message


NONSTANDARD = PK_INDICATORS.replace("IOV_CL = OCC1*ETA(3) + OCC2*ETA(4) + OCC3*ETA(5)", "IOV_CL = OCC*ETA(3)")


def test_a_nonstandard_iov_form_is_reported_line_by_line(tmp_path):
    r = import_nonmem(_stream(tmp_path, NONSTANDARD))
    assert not r.ok and r.population is None
    text = "\n".join(r.untranslated)
    assert "$PK line 7: IOV_CL = OCC*ETA(3) -- carries an ETA of a $OMEGA SAME chain" in text
    assert "$PK line 8: CL = THETA(1)*EXP(ETA(1)+IOV_CL) --" in text
    assert "at OCC = 2 is not CL without IOV times EXP(ETA(3))" in text
    # occasion values that do not number the $OMEGA blocks 1..K are refused too, naming the values
    shifted = textwrap.dedent(PK_INDICATORS).replace("OCC.EQ.1", "OCC.EQ.4")
    r = import_nonmem(_stream(tmp_path, shifted, name="run2"))
    assert not r.ok
    assert any(line.startswith("$PK line 7: IOV_CL =") and "OCC = 4 selects ETA(3) of occasion block 1" in line
               for line in r.untranslated), r.untranslated
    res = CliRunner().invoke(app, ["import", "nonmem", str(tmp_path / "run2.mod"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
