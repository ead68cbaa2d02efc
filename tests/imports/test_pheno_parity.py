"""The imported phenobarbital model (pheno, ADVAN1 TRANS2, NONMEM 7.5.1 FOCE-I) reproduces NONMEM's
PRED (at the .ext final estimates, eta = 0) and CIPREDI (at the .phi EBEs) of ``pheno.tab``.

Reference: NONMEM's own table (5 significant digits, so rounding alone is below 5e-5 relative);
tolerance 1e-4 relative. A second, independent reference is a closed form of the one-compartment
bolus model written here from the control stream (superposition of C = D/V exp(-CL/V (t - td))).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from insilico.estimation import build_problem, load_population_model
from insilico.imports import import_nonmem, read_ext, read_phi
from tests.imports._predictions import predictions

DATA = Path(__file__).resolve().parents[1] / "data" / "nonmem"
RTOL = 1e-4


@pytest.fixture(scope="module")
def pheno():
    result = import_nonmem(DATA / "pheno.mod", ext=DATA / "pheno.ext")
    assert result.ok
    spec, _ = load_population_model(result.population)
    data = pd.read_csv(DATA / "pheno.dta", sep=r"\s+")
    problem = build_problem(spec, data)
    tab = pd.read_csv(DATA / "pheno.tab", sep=r"\s+", skiprows=1)
    obs = tab[data["AMT"].to_numpy() == 0]          # observation records (dose records have AMT > 0)
    return result, problem, data, obs


def test_pred_matches_nonmem(pheno):
    _, problem, _, obs = pheno
    assert problem.n_subjects == 59 and not problem.excluded
    pred, t = predictions(problem)
    np.testing.assert_array_equal(t, obs["TIME"].to_numpy())
    np.testing.assert_allclose(pred, obs["PRED"].to_numpy(), rtol=RTOL)


def test_ipred_matches_nonmem_at_ebes(pheno):
    _, problem, _, obs = pheno
    phi = read_phi(DATA / "pheno.phi")
    ipred, _ = predictions(problem, lambda sid: phi.loc[sid, ["ETA1", "ETA2"]].to_numpy())
    np.testing.assert_allclose(ipred, obs["CIPREDI"].to_numpy(), rtol=RTOL)


def test_pred_matches_closed_form(pheno):
    """Independent of the engine: superposition of IV boluses with the .ext values written out."""
    _, problem, data, obs = pheno
    ext = read_ext(DATA / "pheno.ext")
    out = []
    for _, g in data.groupby("ID", sort=False):
        wgt, apgr = g["WGT"].iloc[0], g["APGR"].iloc[0]
        cl = ext["THETA1"] * wgt
        v = ext["THETA2"] * wgt * (1 + ext["THETA3"] if apgr < 5 else 1.0)
        doses = g[g["AMT"] > 0]
        for t in g.loc[g["AMT"] == 0, "TIME"]:
            past = doses[doses["TIME"] <= t]
            out.append(np.sum(past["AMT"] / v * np.exp(-cl / v * (t - past["TIME"]))))
    pred, _ = predictions(problem)
    np.testing.assert_allclose(pred, out, rtol=1e-10)
    np.testing.assert_allclose(out, obs["PRED"].to_numpy(), rtol=RTOL)
