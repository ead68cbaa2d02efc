"""Imported public NONMEM runs reproduce NONMEM's own output tables (provenance:
``tests/data/nonmem/README.md``).

* ``xpose_run001/``: xpose's example run001 (NONMEM 7.3.0, FOCE-I): ADVAN2 TRANS1 with an absorption
  lag ALAG1, a linear creatinine-clearance effect on CL and weight-proportional V, 74 subjects;
  ``sdtab001`` holds PRED and IPRED at the final estimates. The stream writes no S2 and computes
  ``IPRED = A2/V`` in $ERROR, which the importer reads as the scale S2 = V; its residual
  ``W = THETA(5)*IPRED + THETA(6)`` (SDs adding) is insilico's ``combined1``. A copy with only that W
  line rewritten (``W = SQRT(...)``, variances adding: ``combined``, made in tmp_path) is checked too.
  ``run001_s2.mod`` is the same structural model written with S2 = V and IPRED = F (three $PK/$ERROR
  lines, checked below). PRED and IPRED do not depend on the residual model, so NONMEM's table is the
  reference for every stream.
* ``pheno_pd/``: a two-output run from pharmpy's test data (NONMEM 7.5.1, FOCE-I): phenobarbital
  ADVAN1 TRANS2 with a direct linear effect ``E = E0 + SLOPE*A(1)/V`` observed on DVID 2;
  ``pheno_pd_mytab`` holds CIPREDI. Its output selection ``IF (DVID.EQ.1) THEN Y = Y ELSE Y = Y_2
  END IF``, which pharmpy-core does not read, is read from the $ERROR text; the translation
  (``1cmt_iv+linear``, ``outputs: {1: conc, 2: effect}``) equals a hand-written population model with
  the run's .ext values, and both reproduce the table.

Tolerance: NONMEM prints these tables with 5 significant digits (``1.2345E+01``), so rounding alone
is up to 5e-5 relative; predictions are compared at 1e-4 relative, record times at 5e-5. PRED is
at eta = 0 and IPRED (CIPREDI) at the .phi empirical Bayes estimates, which are what NONMEM's
$TABLE uses after a FOCE estimation.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from insilico.estimation import build_problem, load_population_model
from insilico.imports import import_nonmem, read_ext, read_phi
from tests.imports._predictions import predictions

DATA = Path(__file__).resolve().parents[1] / "data" / "nonmem"
XPOSE = DATA / "xpose_run001"
PD = DATA / "pheno_pd"
RTOL = 1e-4          # predictions: 5-significant-digit table plus margin
TIME_RTOL = 5e-5     # record times: the table's rounding of TIME


# --- xpose run001 -----------------------------------------------------------------------------

def _xpose_problem(stream: str):
    result = import_nonmem(XPOSE / stream, ext=XPOSE / "run001.ext")
    assert result.ok, result.untranslated
    spec, _ = load_population_model(result.population)
    return result, build_problem(spec, pd.read_csv(XPOSE / "mx19_2.csv"))


def _xpose_table():
    tab = pd.read_csv(XPOSE / "sdtab001", sep=r"\s+", skiprows=1)
    return tab[tab["EVID"] == 0]                # observation records


def _check_xpose_parity(problem, obs):
    assert problem.n_subjects == 74 and not problem.excluded
    pred, t = predictions(problem)
    np.testing.assert_allclose(t, obs["TIME"].to_numpy(), rtol=TIME_RTOL)
    np.testing.assert_allclose(pred, obs["PRED"].to_numpy(), rtol=RTOL)
    phi = read_phi(XPOSE / "run001.phi")
    ipred, _ = predictions(problem, lambda sid: phi.loc[sid, ["ETA1", "ETA2", "ETA3"]].to_numpy())
    np.testing.assert_allclose(ipred, obs["IPRED"].to_numpy(), rtol=RTOL)
    return pred


@pytest.fixture(scope="module")
def xpose():
    result, problem = _xpose_problem("run001_s2.mod")
    return result, problem, _xpose_table()


def test_xpose_derived_stream_changes_only_scale_ipred_and_w():
    """run001_s2.mod is run001.mod with S2 = V added, IPRED = F (= A(2)/S2) and W as the SD of a
    variance-additive combined error; nothing else differs."""
    orig = (XPOSE / "run001.mod").read_text().splitlines()
    derived = (XPOSE / "run001_s2.mod").read_text().splitlines()
    assert [ln for ln in orig if ln not in derived] == [" IPRED   = A2/V", " W       = THETA(5)*IPRED + THETA(6)"]
    assert [ln for ln in derived if ln not in orig] == [
        " S2      = V", " IPRED   = F", " W       = SQRT((THETA(5)*IPRED)**2 + THETA(6)**2)"]


def test_xpose_translation(xpose):
    result, _, _ = xpose
    ext = read_ext(XPOSE / "run001.ext")
    pop = result.population
    assert pop["model"] == {"name": "1cmt_oral"}
    assert pop["bsv"]["parameters"] == ["CL", "V", "KA"]
    assert pop["parameters"]["ALAG"]["typical"] == pytest.approx(ext["THETA4"])
    (clcr,) = pop["parameters"]["CL"]["effects"]
    assert (clcr["covariate"], clcr["type"], clcr["ref"]) == ("CLCR", "linear", 65.0)
    assert clcr["theta"] == pytest.approx(ext["THETA7"])


def test_xpose_pred_and_ipred_match_nonmem(xpose):
    _, problem, obs = xpose
    pred = _check_xpose_parity(problem, obs)
    assert (pred == 0).sum() == 1     # one sample at the dose time, inside the lag: NONMEM's PRED is 0 too


def test_xpose_pred_matches_closed_form(xpose):
    """Independent of the engine: superposition of first-order absorption with lag (Gibaldi &
    Perrier), the .ext values written out from the control stream."""
    _, problem, obs = xpose
    ext = read_ext(XPOSE / "run001.ext")
    data = pd.read_csv(XPOSE / "mx19_2.csv")
    out = []
    for _, g in data.groupby("ID", sort=False):
        cl = ext["THETA1"] * (1 + ext["THETA7"] * (g["CLCR"].iloc[0] - 65))
        v, ka, lag = ext["THETA2"] * g["WT"].iloc[0], ext["THETA3"], ext["THETA4"]
        k = cl / v
        doses = g[g["EVID"] == 1]
        for t in g.loc[g["EVID"] == 0, "TIME"]:
            dt = np.clip(t - doses["TIME"].to_numpy() - lag, 0.0, None)
            out.append(np.sum(doses["AMT"].to_numpy() * ka / (v * (ka - k)) * (np.exp(-k * dt) - np.exp(-ka * dt))))
    pred, _ = predictions(problem)
    np.testing.assert_allclose(pred, out, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(out, obs["PRED"].to_numpy(), rtol=RTOL)


W_ORIGINAL = " W       = THETA(5)*IPRED + THETA(6)"
W_VARIANCE = " W       = SQRT((THETA(5)*IPRED)**2 + THETA(6)**2)"


def _xpose_variant(tmp_path, old: str, new: str) -> str:
    """run001.mod with the one line ``old`` replaced by ``new``, written next to a copy of its data."""
    text = (XPOSE / "run001.mod").read_text()
    assert text.count(old + "\n") == 1
    (tmp_path / "mx19_2.csv").write_bytes((XPOSE / "mx19_2.csv").read_bytes())
    (tmp_path / "run001_w.mod").write_text(text.replace(old + "\n", new + "\n"))
    return str(tmp_path / "run001_w.mod")


def test_xpose_stream_without_s2_matches_nonmem(tmp_path, xpose):
    """run001.mod with only its W line rewritten as the SD of a variance-additive combined error:
    still no S2, ``A2 = A(2)``, ``IPRED = A2/V``, ``Y = IPRED + W*EPS(1)``. The importer reads A(2)/V
    as the scale S2 = V, so the translation is run001_s2.mod's and PRED/IPRED match NONMEM's table."""
    stream = _xpose_variant(tmp_path, W_ORIGINAL, W_VARIANCE)
    text = Path(stream).read_text()
    assert " IPRED   = A2/V\n" in text and " A2      = A(2)\n" in text and not re.search(r"^\s*S2\s*=", text, re.M)
    result = import_nonmem(stream, ext=XPOSE / "run001.ext")
    assert result.ok, result.untranslated
    assert any(line.startswith("$ERROR IPRED: no S2; A(2)/V read as the scale S2 = V")
               for line in result.untranslated), result.untranslated
    s2_result, _, obs = xpose
    for key in ("model", "parameters", "bsv", "residual_error"):
        assert result.population[key] == s2_result.population[key], key
    spec, _ = load_population_model(result.population)
    _check_xpose_parity(build_problem(spec, pd.read_csv(XPOSE / "mx19_2.csv")), obs)


@pytest.mark.parametrize("ipred, why", [
    (" IPRED   = A1/V", "reads A_DEPOT, not A(2) (the central compartment"),        # another compartment
    (" IPRED   = A2/THETA(2)", "is not A(2) divided by a $PK volume"),             # not a $PK volume
])
def test_xpose_other_predictions_are_reported(tmp_path, ipred, why):
    text = Path(_xpose_variant(tmp_path, W_ORIGINAL, W_VARIANCE)).read_text()
    (tmp_path / "run001_w.mod").write_text(text.replace(" IPRED   = A2/V\n", ipred + "\n"))
    result = import_nonmem(tmp_path / "run001_w.mod")
    assert not result.ok and result.population is None
    assert any(line.startswith(f"$ERROR line 3: {ipred.strip()} -- ") and why in line
               for line in result.untranslated), result.untranslated
    assert any("S2 is required by ADVAN2 TRANS1" in line for line in result.untranslated), result.untranslated


@pytest.mark.parametrize("divisor", ["VC", "V/1000"])
def test_pheno_without_s1_divisor_must_be_the_volume(tmp_path, divisor):
    """ADVAN1 TRANS2 (V is a $PK parameter): pheno.mod with ``S1 = VC`` removed and ``IPRED = A(1)/VC``
    translates as pheno.mod itself; a divisor other than V (``V/1000``) is reported on its line."""
    text = (DATA / "pheno.mod").read_text()
    assert text.count("S1 = VC\n") == 1 and text.count("Y = F + F*EPS(1)\n") == 1
    (tmp_path / "pheno.dta").write_bytes((DATA / "pheno.dta").read_bytes())
    (tmp_path / "pheno.mod").write_text(text.replace("S1 = VC\n", "").replace(
        "Y = F + F*EPS(1)\n", f"IPRED = A(1)/{divisor}\nY = IPRED + IPRED*EPS(1)\n"))
    result = import_nonmem(tmp_path / "pheno.mod")
    if divisor == "VC":
        assert result.ok, result.untranslated
        assert result.population == import_nonmem(DATA / "pheno.mod").population
    else:
        assert not result.ok and any(line.startswith("$ERROR line 1: IPRED = A(1)/V/1000 -- A(1)/(1000*V) with no S1: "
                                                     "the divisor must equal V") for line in result.untranslated)


def test_xpose_original_stream_matches_nonmem():
    """The unchanged run001.mod: ``W = THETA(5)*IPRED + THETA(6)``, ``Y = IPRED + W*EPS(1)``,
    ``$SIGMA 1 FIX`` is SD = THETA(6) + THETA(5)*IPRED, insilico's ``combined1`` (additive THETA6,
    proportional THETA5 as the .ext gives them); PRED and IPRED match NONMEM's table."""
    result, problem = _xpose_problem("run001.mod")
    ext = read_ext(XPOSE / "run001.ext")
    assert ext["SIGMA(1,1)"] == 1.0
    res = result.population["residual_error"]
    assert res["type"] == "combined1"
    assert (res["proportional"], res["additive"]) == pytest.approx((ext["THETA5"], ext["THETA6"]), rel=1e-12)
    assert result.names["sigmas"]["THETA5"]["name"] == "SIGMA(1,1)"
    assert result.names["sigmas"]["THETA6"]["name"] == "SIGMA(2,2)"
    assert "SIGMA(1,1)" not in result.population.get("estimate", {}).get("fix", [])   # THETA5 is estimated
    _check_xpose_parity(problem, _xpose_table())


@pytest.mark.parametrize("w, why", [
    (" W       = THETA(5)*IPRED - THETA(6)", "with coefficients of opposite signs is not additive + proportional"),
    (" W       = THETA(5)*IPRED*IPRED + THETA(6)", "**2 is not additive + proportional * F**2"),
])
def test_xpose_other_sd_forms_are_reported(tmp_path, w, why):
    result = import_nonmem(_xpose_variant(tmp_path, W_ORIGINAL, w), ext=XPOSE / "run001.ext")
    assert not result.ok and result.population is None
    assert any(why in line for line in result.untranslated), result.untranslated


# --- pharmpy pheno_pd (two outputs by DVID) ---------------------------------------------------

def _pd_parity(population):
    spec, _ = load_population_model(population)
    data = pd.read_csv(PD / "pheno_pd.csv", sep=r"\s+")
    problem = build_problem(spec, data)
    assert problem.n_subjects == 2 and problem.outputs == ("conc", "effect")
    tab = pd.read_csv(PD / "pheno_pd_mytab", sep=r"\s+", skiprows=1)
    obs = tab[data["AMT"].to_numpy() == 0]
    assert set(data.loc[data["AMT"] == 0, "DVID"]) == {1, 2}
    phi = read_phi(PD / "pheno_pd.phi")
    ipred, t = predictions(problem, lambda sid: phi.loc[sid, ["ETA1", "ETA2", "ETA3"]].to_numpy())
    np.testing.assert_allclose(t, obs["TIME"].to_numpy(), rtol=TIME_RTOL)
    np.testing.assert_allclose(ipred, obs["CIPREDI"].to_numpy(), rtol=RTOL)


def _pd_reference() -> dict:
    """The translation pheno_pd.ctl should get, written by hand from its .ext (THETA1..4 = CL, VC,
    E0, SLOPE; OMEGA BLOCK(2) on CL, V and OMEGA(3,3) on E0; proportional errors SIGMA(1,1) on the
    concentration, SIGMA(2,2) on the effect, as SDs)."""
    e = read_ext(PD / "pheno_pd.ext")
    return {
        "name": "pheno_pd", "model": {"name": "1cmt_iv+linear"}, "output": "conc",
        "outputs": {1: "conc", 2: "effect"},
        "parameters": {"CL": {"typical": e["THETA1"]}, "V": {"typical": e["THETA2"]},
                       "E0": {"typical": e["THETA3"]}, "SLOPE": {"typical": e["THETA4"]}},
        "bsv": {"parameters": ["CL", "V", "E0"],
                "omega": [[e["OMEGA(1,1)"], e["OMEGA(2,1)"], 0.0], [e["OMEGA(2,1)"], e["OMEGA(2,2)"], 0.0],
                          [0.0, 0.0, e["OMEGA(3,3)"]]]},
        "residual_error": {"type": "proportional", "proportional": float(np.sqrt(e["SIGMA(1,1)"]))},
        "residual_errors": {"effect": {"type": "proportional", "proportional": float(np.sqrt(e["SIGMA(2,2)"]))}},
    }


def _flat(d: dict, prefix: str = "") -> dict:
    """A nested mapping as {dotted key: value} (numbers compared with approx, strings as keys)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, str):
            out[f"{prefix}{k}={v}"] = 0.0
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_pheno_pd_reference_model_matches_nonmem():
    _pd_parity(_pd_reference())


@pytest.fixture(scope="module")
def pheno_pd():
    result = import_nonmem(PD / "pheno_pd.ctl", ext=PD / "pheno_pd.ext")
    assert result.ok, result.untranslated
    return result


def test_pheno_pd_stream_matches_nonmem(pheno_pd):
    """The unchanged stream: ``IF (DVID.EQ.1) THEN Y = Y ELSE Y = Y_2 END IF`` (which pharmpy-core does
    not read) selects the concentration on DVID 1 and ``E = A(1)*SLOPE/V + E0`` on DVID 2, translated as
    the hand-written reference and reproducing NONMEM's CIPREDI."""
    ref, pop = _pd_reference(), pheno_pd.population
    for key in ("model", "output", "outputs", "bsv"):
        assert pop[key] == ref[key], key
    for key in ("residual_error", "residual_errors", "parameters"):
        assert _flat(pop[key]) == pytest.approx(_flat(ref[key]), rel=1e-12), key
    assert pheno_pd.names["sigmas"]["SIGMA(2,2)"]["name"] == "SIGMA(2,2)"
    assert pop["estimate"]["fix"] == ["CL", "V", "E0", "OMEGA(1,1)", "OMEGA(2,1)", "OMEGA(2,2)", "OMEGA(3,3)",
                                      "SIGMA(1,1)", "SIGMA(2,2)"]
    # its $DATA (../.datasets/...) is not in this tree: the ELSE branch is read as DVID 2, and says so
    assert any(line.startswith("$ERROR line 13: Y = Y_2: read as the prediction of DVID 2")
               for line in pheno_pd.untranslated), pheno_pd.untranslated
    _pd_parity(pop)


SWITCH = "IF (DVID.EQ.1) THEN\n    Y = Y\nELSE\n    Y = Y_2\nEND IF\n"


def _pd_variant(tmp_path, old: str, new: str, extra: str = "") -> Path:
    text = (PD / "pheno_pd.ctl").read_text()
    assert text.count(old) == 1
    (tmp_path / "pheno_pd.ctl").write_text(text.replace(old, new) + extra)
    return tmp_path / "pheno_pd.ctl"


@pytest.mark.parametrize("switch", [
    "IF (DVID.EQ.2) Y = Y_2\n",                                         # one-liner; DVID 1 keeps Y
    "IF (DVID.EQ.2) THEN\n    Y = Y_2\nEND IF\n",
    "IF (DVID.EQ.1) Y = IPRED + EPS(1)*IPREDADJ\nIF (DVID.EQ.2) Y = E + E*EPS(2)\n",
    "IF (DVID.EQ.2) THEN\n    Y = Y_2\nELSE IF (DVID.EQ.1) THEN\n    Y = Y\nEND IF\n",
])
def test_pheno_pd_other_selections_translate_alike(tmp_path, switch, pheno_pd):
    result = import_nonmem(_pd_variant(tmp_path, SWITCH, switch), ext=PD / "pheno_pd.ext")
    assert result.ok, result.untranslated
    for key in ("model", "outputs", "parameters", "bsv", "residual_error", "residual_errors", "estimate"):
        assert result.population[key] == pheno_pd.population[key], key


def test_pheno_pd_emax_effect(tmp_path):
    """``E = E0 + SLOPE*C/(THETA(5) + C)`` with C = A(1)/V: insilico's ``emax`` (EMAX = THETA(4), EC50 =
    THETA(5)); values checked against the formula at one concentration."""
    path = _pd_variant(tmp_path, "E = A(1)*SLOPE/V + E0\n", "E = E0 + SLOPE*(A(1)/V)/(THETA(5) + A(1)/V)\n",
                       "\n$THETA  (0,3.5) ; EC50\n")
    result = import_nonmem(path)
    assert result.ok, result.untranslated
    pop = result.population
    assert pop["model"] == {"name": "1cmt_iv+emax"} and pop["outputs"] == {1: "conc", 2: "effect"}
    assert {k: v["typical"] for k, v in pop["parameters"].items()} == pytest.approx(
        {"CL": 0.00274199, "V": 1.44692, "E0": 5.75005, "EMAX": 0.1, "EC50": 3.5})
    assert pop["bsv"]["parameters"] == ["CL", "V", "E0"]
    assert pop["residual_errors"]["effect"]["type"] == "proportional"
    assert pop["residual_errors"]["effect"]["proportional"] == pytest.approx(np.sqrt(0.338363), rel=1e-12)


@pytest.mark.parametrize("old, new, line", [
    (SWITCH, SWITCH.replace("(DVID.EQ.1)", "(DVID.EQ.1.AND.TIME.GT.0)"),
     "IF (DVID.EQ.1.AND.TIME.GT.0) THEN -- an output selection must test DVID.EQ.<value> alone"),
    (SWITCH, SWITCH.replace("    Y = Y_2\n", "    W = 1\n    Y = Y_2\n"),
     "W = 1 -- a branch of an output selection (IF on DVID) must be one line"),
    (SWITCH, SWITCH + "Y = Y\n", "Y = Y -- Y assigned again after the output selection"),
    ("E = A(1)*SLOPE/V + E0\n", "E = E0*EXP(SLOPE*A(1)/V)\n",
     ("Y = Y_2 -- the prediction ", "is neither E0 + SLOPE*C nor E0 + EMAX*C/(EC50 + C)")),
    ("Y_2 = E + E*EPS(2)\n", "Y_2 = E + E*EPS(1)\n",
     "Y = Y_2 -- the outputs' residual errors are correlated (both use"),
])
def test_pheno_pd_untranslatable_selections_are_reported(tmp_path, old, new, line):
    result = import_nonmem(_pd_variant(tmp_path, old, new))
    assert not result.ok and result.population is None
    parts = (line,) if isinstance(line, str) else line
    assert any(ln.startswith("$ERROR line ") and all(p in ln for p in parts) for ln in result.untranslated), \
        result.untranslated


def test_pheno_pd_covariance_carries_the_effect_sigma(tmp_path):
    """A .cov file (values made up, NONMEM's layout) is carried onto the effect's SIGMA(2,2) too: every
    quantity is one NONMEM element here, so the carried matrix holds the file's entries."""
    names = ["THETA1", "THETA2", "THETA3", "THETA4", "SIGMA(1,1)", "SIGMA(2,1)", "SIGMA(2,2)", "OMEGA(1,1)",
             "OMEGA(2,1)", "OMEGA(2,2)", "OMEGA(3,1)", "OMEGA(3,2)", "OMEGA(3,3)"]
    c = np.zeros((13, 13))
    c[3, 3], c[6, 6], c[3, 6], c[6, 3] = 4e-6, 2.5e-3, 1e-5, 1e-5     # SLOPE and the effect's SIGMA(2,2)
    lines = ["TABLE NO.     1: First Order Conditional Estimation with Interaction",
             " NAME " + " ".join(f"{n:>12}" for n in names)]
    lines += [f" {n:<12} " + " ".join(f"{v:12.5E}" for v in row) for n, row in zip(names, c)]
    (tmp_path / "pheno_pd.cov").write_text("\n".join(lines) + "\n")
    result = import_nonmem(PD / "pheno_pd.ctl", ext=PD / "pheno_pd.ext", cov=tmp_path / "pheno_pd.cov")
    cov = result.covariance
    assert cov["names"][-2:] == ["SIGMA(1,1)", "SIGMA(2,2)"] and cov["nonmem"]["SIGMA(2,2)"] == "SIGMA(2,2)"
    m = np.asarray(cov["matrix"])
    i, j = cov["names"].index("SLOPE"), cov["names"].index("SIGMA(2,2)")
    np.testing.assert_allclose([m[i, i], m[j, j], m[i, j]], [4e-6, 2.5e-3, 1e-5], rtol=1e-12)
    assert not [line for line in result.untranslated if line.startswith("--cov")]
