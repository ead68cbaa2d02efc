"""NONMEM TRANS3, TRANS5 and TRANS6 (ADVAN3/4/11/12) onto the built-in exact models, and nested IF blocks
on covariates in $PK (issue 11).

References: the conversions (`micro_constants`) are checked against the macro-constant solution of the
two-compartment model written from its definition, C(t) = A e^(-ALPHA t) + B e^(-BETA t) after a bolus
(A/B = AOB for TRANS5; A = D/V (ALPHA - K21)/(ALPHA - BETA), B = D/V (K21 - BETA)/(ALPHA - BETA) for
TRANS6) and its convolution with first-order absorption, against the matrix exponential of the
TRANS3 system (scipy.linalg.expm), and for ADVAN11 TRANS6 against the eigenvalues of the converted
3-compartment system (numpy.linalg.eigvals), all to 1e-10 relative; imported TRANS3/5/6 control
streams predict what the equivalent TRANS4 stream predicts (1e-10 relative), their macro-constants
computed here from the TRANS4 values by the quadratic / numpy's eigenvalues.
"""
from __future__ import annotations

import textwrap

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm

from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.estimation import build_problem, load_population_model
from insilico.imports import import_nonmem, micro_constants, trans_model, write_import
from tests.imports._predictions import predictions

T = np.array([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0, 48.0])
DOSE = 100.0


def _biexp(a_coef, b_coef, alpha, beta, t):
    return a_coef * np.exp(-alpha * t) + b_coef * np.exp(-beta * t)


def _oral(coefs, rates, ka, t):
    """First-order absorption (KA) into a disposition with unit-dose coefficients ``coefs``: the
    convolution sum_i c_i KA (e^(-l_i t) - e^(-KA t)) / (KA - l_i)."""
    return sum(c * ka * (np.exp(-lam * t) - np.exp(-ka * t)) / (ka - lam) for c, lam in zip(coefs, rates))


# one subject per parameterisation: TRANS3, TRANS5, TRANS6 (2 compartments)
CASES = [("TRANS3", {"CL": 4.0, "V": 20.0, "Q": 9.0, "VSS": 75.0}),
         ("TRANS5", {"AOB": 3.0, "ALPHA": 0.9, "BETA": 0.05, "V": 20.0}),
         ("TRANS6", {"ALPHA": 1.3, "BETA": 0.04, "K21": 0.3, "V": 15.0})]


def _reference_iv(trans, p):
    """C(t) after a unit... DOSE mg bolus, from the definition of each TRANS (not from micro_constants)."""
    if trans == "TRANS3":
        k, k12, k21 = p["CL"] / p["V"], p["Q"] / p["V"], p["Q"] / (p["VSS"] - p["V"])
        m = np.array([[-(k + k12), k21], [k12, -k21]])
        return np.array([(expm(m * t) @ [DOSE, 0.0])[0] for t in T]) / p["V"]
    a, b = p["ALPHA"], p["BETA"]
    if trans == "TRANS5":
        b_coef = DOSE / p["V"] / (1 + p["AOB"])
        return _biexp(p["AOB"] * b_coef, b_coef, a, b, T)
    return _biexp(DOSE / p["V"] * (a - p["K21"]) / (a - b), DOSE / p["V"] * (p["K21"] - b) / (a - b), a, b, T)


@pytest.fixture(scope="module")
def converted():
    rows = [{k: float(v) for k, v in micro_constants("ADVAN3", trans, p).items() if k in ("CL", "V1", "Q", "V2")}
            for trans, p in CASES]
    return pd.DataFrame(rows)


def test_two_compartment_conversions_against_the_macro_constant_solution(converted):
    """The built-in 2cmt_iv simulated with the converted CL, V1, Q, V2 is the bolus solution of each TRANS."""
    res = simulate("2cmt_iv", converted, Regimen((Dose(amt=DOSE, time=0.0),)), T)
    conc = res["conc"].transpose("subject", ...).values
    for k, (trans, p) in enumerate(CASES):
        np.testing.assert_allclose(conc[k], _reference_iv(trans, p), rtol=1e-10, err_msg=trans)


def test_oral_trans5_and_trans6_against_the_convolution():
    ka = 1.7
    p5 = {"AOB": 2.5, "ALPHA": 1.1, "BETA": 0.07, "V": 30.0, "KA": ka}
    p6 = {"ALPHA": 1.1, "BETA": 0.07, "K32": 0.4, "V": 30.0, "KA": ka}
    rows = []
    for trans, p in (("TRANS5", p5), ("TRANS6", p6)):
        m = micro_constants("ADVAN4", trans, p)
        rows.append({"CL": m["CL"], "V1": m["V1"], "Q": m["Q"], "V2": m["V2"], "KA": ka})
    conc = simulate("2cmt_oral", pd.DataFrame(rows), Regimen((Dose(amt=DOSE, time=0.0),)), T)["conc"].values
    a, b = 1.1, 0.07
    c5 = np.array([2.5, 1.0]) / 3.5 / 30.0                                         # A, B per mg (A/B = AOB)
    c6 = np.array([(a - 0.4) / (a - b), (0.4 - b) / (a - b)]) / 30.0
    np.testing.assert_allclose(conc[0], DOSE * _oral(c5, (a, b), ka, T), rtol=1e-10)
    np.testing.assert_allclose(conc[1], DOSE * _oral(c6, (a, b), ka, T), rtol=1e-10)


def test_three_compartment_trans6_eigenvalues():
    p = {"ALPHA": 2.0, "BETA": 0.3, "GAMMA": 0.015, "K21": 0.6, "K31": 0.04, "V": 12.0}
    for advan, names in (("ADVAN11", ("K21", "K31")), ("ADVAN12", ("K32", "K42"))):
        q = {**{k: v for k, v in p.items() if k not in ("K21", "K31")}, names[0]: p["K21"], names[1]: p["K31"]}
        m = micro_constants(advan, "TRANS6", q)
        assert all(m[k] > 0 for k in ("K", "K12", "K13"))
        k10, k12, k13, k21, k31 = (m[k] for k in ("K", "K12", "K13", "K21", "K31"))
        mat = np.array([[-(k10 + k12 + k13), k21, k31], [k12, -k21, 0], [k13, 0, -k31]])
        np.testing.assert_allclose(np.sort(-np.linalg.eigvals(mat).real), [0.015, 0.3, 2.0], rtol=1e-10)
        np.testing.assert_allclose([m["Q"] / m["V2"], m["Q3"] / m["V3"], m["CL"] / m["V1"]], [k21, k31, k10],
                                   rtol=1e-12)
        model = trans_model(advan, "TRANS6")
        lam = np.sort(-np.asarray(model.eigenvalues({k: jnp.asarray(v) for k, v in {**q, "KA": 1.0}.items()})))
        expected = [0.015, 0.3, 1.0, 2.0] if advan == "ADVAN12" else [0.015, 0.3, 2.0]
        np.testing.assert_allclose(lam, expected, rtol=1e-10)


def test_invalid_trans_values_give_nan_not_a_wrong_number():
    """VSS <= V (TRANS3) or K21 outside (BETA, ALPHA) (TRANS6) has no two-compartment model: that subject's
    predictions are NaN, the valid subject's the built-in's."""
    model = trans_model("ADVAN3", "TRANS3")
    params = {"CL": [1.0, 1.0], "V": [20.0, 20.0], "Q": [2.0, 2.0], "VSS": [15.0, 50.0]}
    conc = simulate(model, params, Regimen((Dose(amt=DOSE, time=0.0),)), T)["conc"].transpose("subject", ...).values
    assert np.isnan(conc[0]).all() and np.isfinite(conc[1]).all()
    ref = simulate("2cmt_iv", {"CL": 1.0, "V1": 20.0, "Q": 2.0, "V2": 30.0}, Regimen((Dose(amt=DOSE, time=0.0),)), T)
    np.testing.assert_allclose(conc[1], ref["conc"].values.ravel(), rtol=1e-12)
    m6 = trans_model("ADVAN3", "TRANS6")
    lam = m6.eigenvalues({"ALPHA": jnp.asarray(1.0), "BETA": jnp.asarray(0.1), "K21": jnp.asarray(2.0),
                          "V": jnp.asarray(5.0)})
    assert np.isnan(np.asarray(lam)).all()
    with pytest.raises(SpecError, match="no TRANS model") as e:
        trans_model("ADVAN1", "TRANS3")
    assert e.value.field == "model"


# --------------------------------------------------------------------------- imported control streams

ROWS = ("ID TIME AMT DV SEX RACE CMT\n"
        + "".join(f"{i} 0 100 0 {s} {r} 1\n{i} 1 0 5 {s} {r} 2\n{i} 6 0 3 {s} {r} 2\n{i} 12 100 0 {s} {r} 1\n"
                  f"{i} 14 0 3 {s} {r} 2\n{i} 30 0 1 {s} {r} 2\n"
                  for i, (s, r) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)], start=1)))

HEAD = """\
$PROBLEM {title}
$DATA run.dta IGNORE=@
$INPUT ID TIME AMT DV SEX RACE CMT
$SUBROUTINE ADVAN4 {trans}
$PK
"""
TAIL = """\
S2 = {scale}
$ERROR
Y = F*(1 + EPS(1))
$THETA {thetas} 1.3 0.8
$OMEGA 0.09 0.04
$SIGMA 0.01
"""
# flat IFs (TRANS4) and the same factors as a nested IF block (the others): SEX x RACE multiplies CL
FLAT_IF = """\
IF (SEX.EQ.2) THEN
  FSEX = THETA({s})
ELSE
  FSEX = 1
ENDIF
IF (RACE.EQ.2) THEN
  FRACE = THETA({r})
ELSE
  FRACE = 1
ENDIF
TVCL = THETA(1)*FSEX*FRACE
"""
NESTED_IF = """\
IF (SEX.EQ.2) THEN
  IF (RACE.EQ.2) THEN
    TVCL = THETA(1)*THETA({s})*THETA({r})   ; both
  ELSE
    TVCL = THETA(1)*THETA({s})
  ENDIF
ELSE
  IF (RACE.EQ.2) THEN
    TVCL = THETA(1)*THETA({r})
  ELSE
    TVCL = THETA(1)
  ENDIF
ENDIF
"""
CL, V2, Q, V3, KA = 5.0, 30.0, 8.0, 60.0, 1.2
K, K23, K32 = CL / V2, Q / V2, Q / V3
_S = K + K23 + K32
ALPHA = 0.5 * (_S + np.sqrt(_S * _S - 4 * K * K32))
BETA = K * K32 / ALPHA
AOB = (ALPHA - K32) / (K32 - BETA)      # A/B of the bolus disposition
STREAMS = {
    "TRANS4": (FLAT_IF.format(s=6, r=7) + "CL = TVCL*EXP(ETA(1))\nV2 = THETA(2)*EXP(ETA(2))\nQ = THETA(3)\n"
               "V3 = THETA(4)\nKA = THETA(5)\n", "V2", [CL, V2, Q, V3, KA]),
    "TRANS3": (NESTED_IF.format(s=6, r=7) + "CL = TVCL*EXP(ETA(1))\nV = THETA(2)*EXP(ETA(2))\nQ = THETA(3)\n"
               "VSS = THETA(4)\nKA = THETA(5)\n", "V", [CL, V2, Q, V2 + V3, KA]),
    "TRANS5": ("AOB = THETA(1)\nV = THETA(2)*EXP(ETA(2))\nALPHA = THETA(3)\n"
               "BETA = THETA(4)*EXP(ETA(1))\nKA = THETA(5)\n", "V", [AOB, V2, ALPHA, BETA, KA]),
    "TRANS6": ("K32 = THETA(1)\nV = THETA(2)*EXP(ETA(2))\nALPHA = THETA(3)\n"
               "BETA = THETA(4)*EXP(ETA(1))\nKA = THETA(5)\n", "V", [K32, V2, ALPHA, BETA, KA]),
}


def _write(tmp_path, trans, pk=None, scale=None, thetas=None):
    body, sc, th = STREAMS.get(trans, (None, None, None))
    (tmp_path / "run.dta").write_text(ROWS)
    text = (HEAD.format(title=trans, trans=trans) + (pk or body)
            + TAIL.format(scale=scale or sc, thetas=" ".join(repr(float(x)) for x in (thetas or th))))
    p = tmp_path / f"{trans.lower()}.mod"
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trans")
    out = {trans: import_nonmem(_write(tmp, trans)) for trans in STREAMS}
    return out, pd.read_csv(tmp / "run.dta", sep=r"\s+")


def test_trans3_5_6_streams_predict_as_the_trans4_stream(imported, tmp_path):
    results, data = imported
    for trans, r in results.items():
        assert r.ok, (trans, r.untranslated)
    ref = results["TRANS4"].population
    assert ref["model"] == {"name": "2cmt_oral"}
    assert ref["parameters"]["CL"]["effects"] == [
        {"covariate": "SEX", "type": "categorical", "multipliers": {"1": 1.0, "2": 1.3}},
        {"covariate": "RACE", "type": "categorical", "multipliers": {"1": 1.0, "2": 0.8}}]
    expected = predictions(build_problem(load_population_model(ref)[0], data))[0]
    assert np.isfinite(expected).all() and np.ptp(expected) > 0
    params = {"TRANS3": ["CL", "V", "Q", "VSS", "KA"], "TRANS5": ["AOB", "ALPHA", "BETA", "V", "KA"],
              "TRANS6": ["ALPHA", "BETA", "K32", "V", "KA"]}
    for trans in ("TRANS3", "TRANS5", "TRANS6"):
        pop = results[trans].population
        assert pop["model"] == {"import": f"insilico.imports:advan4_{trans.lower()}"}
        assert list(pop["parameters"]) == params[trans]
        assert not any("no compartmental model" in line for line in results[trans].untranslated)
        got = predictions(build_problem(load_population_model(pop)[0], data))[0]
        if trans == "TRANS3":      # the nested IF on SEX and RACE: one multiplier per covariate, as the flat IFs
            assert any("nested IF block" in line for line in results[trans].untranslated)
            def by_cov(effects):
                return sorted(effects, key=lambda e: e["covariate"])
            assert by_cov(pop["parameters"]["CL"]["effects"]) == by_cov(ref["parameters"]["CL"]["effects"])
            assert results[trans].names["thetas"]["THETA6"]["name"] == "CL.SEX[2]"
            np.testing.assert_allclose(got, expected, rtol=1e-10, err_msg=trans)
        else:                      # no covariate effect: subject 1 (SEX 1, RACE 1, both factors 1)
            np.testing.assert_allclose(got[:4], expected[:4], rtol=1e-10, err_msg=trans)
            assert any("THETA6: used by no translated relation" in line for line in results[trans].untranslated)
    paths = write_import(results["TRANS3"], tmp_path / "out")
    assert "import: insilico.imports:advan4_trans3" in paths["population"].read_text()


def test_what_is_not_translated_is_reported_line_by_line(tmp_path):
    # an interaction (SEX x RACE not a product of per-covariate factors) cannot be a covariate effect
    interaction = NESTED_IF.format(s=6, r=7).replace("THETA(1)*THETA(6)*THETA(7)", "THETA(1)") \
        + "CL = TVCL*EXP(ETA(1))\nV = THETA(2)*EXP(ETA(2))\nQ = THETA(3)\nVSS = THETA(4)\nKA = THETA(5)\n"
    r = import_nonmem(_write(tmp_path, "TRANS3", pk=interaction))
    assert not r.ok and r.population is None
    assert any(line.startswith("$PK line 14: CL = TVCL*EXP(ETA(1)) -- ") and "interaction" in line
               for line in r.untranslated), r.untranslated      # numbered as in the control stream
    # .OR. inside a nested IF: the flattened conjunction would change its meaning
    orred = NESTED_IF.format(s=6, r=7).replace("IF (RACE.EQ.2) THEN\n    TVCL = THETA(1)*THETA(6)*",
                                               "IF (RACE.EQ.2.OR.RACE.EQ.3) THEN\n    TVCL = THETA(1)*THETA(6)*")
    r = import_nonmem(_write(tmp_path, "TRANS3", pk=orred + STREAMS["TRANS3"][0].split("ENDIF\n")[-1]))
    assert not r.ok and any(".OR." in line for line in r.untranslated), r.untranslated
    # TRANS3 with a scale other than V; a TRANS NONMEM does not define for the ADVAN
    bad = import_nonmem(_write(tmp_path, "TRANS3", thetas=[CL, 90.0, Q, 60.0, KA]))      # VSS < V
    assert bad.ok and any(line.startswith("$SUBROUTINE ADVAN4 TRANS3: the typical values give K21, V2 <= 0")
                          for line in bad.untranslated), bad.untranslated
    r = import_nonmem(_write(tmp_path, "TRANS3", scale="V/1000"))
    assert not r.ok and any("S2 must equal V" in line for line in r.untranslated), r.untranslated
    p = _write(tmp_path, "TRANS3")
    p.write_text(p.read_text().replace("ADVAN4 TRANS3", "ADVAN2 TRANS3"))
    r = import_nonmem(p)
    assert not r.ok and r.untranslated[-1].startswith("$SUBROUTINE ADVAN2 TRANS3 -- only")


# ADVAN11: central 1, peripherals 2 and 3; TRANS6's ALPHA, BETA, GAMMA from the TRANS4 values by numpy
V1_, Q2_, V2_, Q3_, V3_ = 12.0, 6.0, 25.0, 1.5, 140.0
_M3 = np.array([[-(CL + Q2_ + Q3_) / V1_, Q2_ / V2_, Q3_ / V3_],
                [Q2_ / V1_, -Q2_ / V2_, 0],
                [Q3_ / V1_, 0, -Q3_ / V3_]])
RATES3 = np.sort(-np.linalg.eigvals(_M3).real)[::-1]       # ALPHA > BETA > GAMMA
ADVAN11 = {
    "TRANS4": ("CL = THETA(1)*EXP(ETA(1))\nV1 = THETA(2)*EXP(ETA(2))\nQ2 = THETA(3)\nV2 = THETA(4)\nQ3 = THETA(5)\n"
               "V3 = THETA(6)\n", "V1", [CL, V1_, Q2_, V2_, Q3_, V3_]),
    "TRANS6": ("ALPHA = THETA(1)*EXP(ETA(1))\nV = THETA(2)*EXP(ETA(2))\nBETA = THETA(3)\nGAMMA = THETA(4)\n"
               "K21 = THETA(5)\nK31 = THETA(6)\n", "V", [RATES3[0], V1_, RATES3[1], RATES3[2], Q2_ / V2_, Q3_ / V3_]),
}


def test_advan11_trans6_predicts_as_trans4(tmp_path):
    rows = "\n".join(ln[:-1] + "1" if ln.endswith(" 2") else ln for ln in ROWS.splitlines()) + "\n"
    preds = {}
    for trans, (pk, scale, thetas) in ADVAN11.items():
        p = _write(tmp_path, trans, pk=pk, scale=scale, thetas=thetas)
        p.write_text(p.read_text().replace("ADVAN4", "ADVAN11").replace("S2 =", "S1 ="))
        (tmp_path / "run.dta").write_text(rows)
        r = import_nonmem(p)
        assert r.ok, (trans, r.untranslated)
        data = pd.read_csv(tmp_path / "run.dta", sep=r"\s+")
        preds[trans] = predictions(build_problem(load_population_model(r.population)[0], data))[0]
    assert r.population["model"] == {"import": "insilico.imports:advan11_trans6"}
    assert np.isfinite(preds["TRANS4"]).all() and len(preds["TRANS4"]) == 16
    np.testing.assert_allclose(preds["TRANS6"], preds["TRANS4"], rtol=1e-10)


def test_nested_if_outside_pk_is_refused(tmp_path):
    p = _write(tmp_path, "TRANS3")
    p.write_text(p.read_text().replace("Y = F*(1 + EPS(1))", "IF (SEX.EQ.1) THEN\n IF (RACE.EQ.1) THEN\n  W = 1\n"
                                       " ENDIF\nENDIF\nY = F*(1 + EPS(1))"))
    r = import_nonmem(p)
    assert not r.ok and r.untranslated == ["$ERROR: nested IF blocks are not translated (pharmpy-core reads one "
                                           "level); write them as one IF/ELSE IF chain"]
