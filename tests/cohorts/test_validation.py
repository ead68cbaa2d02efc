"""Achieved vs specified distributions, tolerances from the sample size (|z| <= 5 with
SE(mean) = sd/sqrt(n), SE(sd) from the 4th moment (sd/sqrt(2n) for a normal),
SE(p) = sqrt(p(1-p)/n), SE(q) = sqrt(p(1-p)/n)/f(q), SE(r) = (1-r^2)/sqrt(n))."""
import math

import numpy as np
import pytest

from insilico.cohorts import validation_report
from tests.cohorts.conftest import EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_unconstrained_draw_matches_spec(unconstrained, specs, name):
    ds = unconstrained[name]
    rep = validation_report(ds, specs[name])
    assert rep["target_applies"].all()
    bad = rep[~rep["ok"].astype(bool)]
    assert bad.empty, bad.to_string()
    # the report covers what the spec defines
    stats = set(zip(rep.variable, rep.statistic))
    spec = specs[name]
    for cov, c in spec.covariates.items():
        if c.dist == "categorical":
            assert (cov, "frequency") in stats
        elif c.dist is not None:
            assert (cov, "PIT mean") in stats
    if spec.correlation:
        assert any(s == "normal-score correlation" for s in rep.statistic)
    for p in spec.bsv.parameters:
        assert (f"eta_{p}", "sd") in stats


def test_report_values_healthy(unconstrained, healthy):
    """Spot-check a few rows against targets computed here from the spec."""
    ds = unconstrained["healthy_adults"]
    rep = validation_report(ds, healthy).set_index(["variable", "statistic", "condition"])
    n = ds.sizes["subject"]
    # SEX frequency 0.5
    r = rep.loc[("SEX", "frequency", "female")]
    assert r.target == 0.5 and r.se == pytest.approx(math.sqrt(0.25 / n))
    # HT | male: normal(176, 7)
    r = rep.loc[("HT", "mean", "SEX=male")]
    assert r.target == 176.0
    male = ds.SEX.values == 0
    assert r.achieved == pytest.approx(ds.HT.values[male].mean())
    assert abs(r.achieved - 176) < 5 * 7 / math.sqrt(male.sum())
    # BMI log-normal(log 24.5, 0.15): mean = 24.5 exp(0.15^2/2)
    r = rep.loc[("BMI", "mean", "")]
    assert r.target == pytest.approx(24.5 * math.exp(0.15 ** 2 / 2))
    # eta_CL: omega^2 = log(1 + 0.3^2)
    r = rep.loc[("eta_CL", "sd", "")]
    assert r.target == pytest.approx(math.sqrt(math.log(1.09)))
    # copula correlation AGE-BMI 0.25 on the normal scores
    r = rep.loc[("AGE,BMI", "normal-score correlation", "")]
    assert r.target == pytest.approx(0.25) and abs(r.z) <= 5
    # eta correlation CL-V1 = 0.4
    r = rep.loc[("eta_CL,eta_V1", "correlation", "")]
    assert r.target == pytest.approx(0.4) and abs(r.achieved - 0.4) < 5 * (1 - 0.16) / math.sqrt(n)


def test_report_detects_a_wrong_spec(unconstrained, healthy):
    """The report is not vacuous: a spec with a shifted height mean fails it."""
    ds = unconstrained["healthy_adults"]
    d = healthy.model_dump(exclude_none=True)
    d["covariates"]["HT"]["mean"] = {"male": 177.0, "female": 163.0}  # was 176
    wrong = type(healthy).model_validate(d)
    rep = validation_report(ds, wrong)
    bad = rep[~rep["ok"].astype(bool)]
    assert ("HT", "mean") in set(zip(bad.variable, bad.statistic))


def test_report_on_constrained_draw_flags_truncation(constrained, healthy):
    ds = constrained["healthy_adults"]
    rep = validation_report(ds, healthy)
    cov = rep[rep.variable.isin(list(healthy.covariates))]
    assert not cov["target_applies"].any() and cov["ok"].isna().all()
    eta = rep[rep.variable.str.startswith(("eta_", "kappa_"))]
    assert eta["target_applies"].all() and eta["ok"].astype(bool).all()
    assert "unconstrained" in rep.attrs["note"]


def test_strata_fractions_are_balanced(constrained):
    ds = constrained["renal_impairment"]
    counts = np.bincount(ds.RENAL.values, minlength=4)
    n = ds.sizes["subject"]
    # deterministic low-discrepancy assignment: within a few subjects of n/4
    assert np.all(np.abs(counts - n / 4) <= 3), counts
