"""Agreement with established software on public data: the theophylline data (R datasets::Theoph;
Boeckmann, Sheiner & Beal 1994) fitted by R nlme (Pinheiro & Bates) with the same model -
1-compartment oral, log-normal CL, V, KA (diagonal Omega), additive error, maximum likelihood.
The data set and nlme's results were produced by ``benchmarks/nlme_theoph.R`` (R 4.2.2, nlme
3.1.162) and are stored in tests/data.

For additive error FOCE-I reduces to FOCE, whose objective is the Lindstrom-Bates approximation
nlme maximises: at nlme's estimates the two -2 log L agree to 1e-5. Our optimum lies 0.07 below
nlme's reported value (nlme's alternating algorithm stops short of the minimum of that objective),
which moves V and KA by 1-2 %: that is the documented difference."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from insilico.estimation import FOCEI, LOG_2PI, fit

DATA = Path(__file__).parents[1] / "data"
REF = json.loads((DATA / "theoph_nlme.json").read_text())
MODEL = """
model: {name: 1cmt_oral}
parameters: {CL: {typical: 3.0}, V: {typical: 30.0}, KA: {typical: 1.5}}
bsv: {parameters: [CL, V, KA], variance: [0.1, 0.1, 0.1]}
residual_error: {type: additive, additive: 1.0}
"""


def test_focei_objective_at_nlme_estimates_equals_nlme_log_likelihood():
    at = {"model": {"name": "1cmt_oral"},
          "parameters": {k: {"typical": REF[k]} for k in ("CL", "V", "KA")},
          "bsv": {"parameters": ["CL", "V", "KA"], "variance": REF["omega"]},
          "residual_error": {"type": "additive", "additive": float(np.sqrt(REF["sigma2"]))},
          "estimate": {"fix": ["CL", "V", "KA", "OMEGA(1,1)", "OMEGA(2,2)", "OMEGA(3,3)", "SIGMA(1,1)"]}}
    r = fit(at, DATA / "theoph.csv", "focei", npde_samples=0)
    assert r.n_observations == REF["n_obs"] == 132
    assert r.ofv + r.n_observations * LOG_2PI == pytest.approx(REF["m2ll"], abs=1e-3)


def test_focei_fit_agrees_with_nlme():
    r = fit(MODEL, DATA / "theoph.csv", FOCEI(matrix="R"), npde_samples=0)
    m2ll = r.ofv + r.n_observations * LOG_2PI
    assert r.converged
    assert abs(m2ll - REF["m2ll"]) < 0.5                  # the tolerance
    assert m2ll <= REF["m2ll"] + 1e-6                     # a minimum at least as low as nlme's
    for k in ("CL", "V", "KA"):
        assert r.estimate(k) == pytest.approx(REF[k], rel=0.02), k
    for i, om in enumerate(REF["omega"]):
        assert r.estimate(f"OMEGA({i + 1},{i + 1})") == pytest.approx(om, rel=0.1)
    assert r.estimate("SIGMA(1,1)") == pytest.approx(REF["sigma2"], rel=0.02)
    # SEs: nlme reports them for log CL, log V, log KA; SE(log P) = SE(P) / P (delta method)
    se_log = r.se[:3] / r.estimates[:3]
    np.testing.assert_allclose(se_log, REF["se_log"], rtol=0.05)
