"""Inclusion/exclusion criteria by rejection: exact, acceptance reported, clear errors."""
import math

import numpy as np
import pytest

from insilico.cohorts import draw_cohort
from insilico.errors import SpecError
from tests.cohorts.conftest import tiny_spec


def test_criteria_hold_exactly(constrained):
    ds = constrained["healthy_adults"]
    assert ((ds.AGE >= 18) & (ds.AGE <= 65)).all()
    assert ((ds.BMI >= 18.5) & (ds.BMI <= 32)).all()
    assert (ds.CRCL >= 80).all()  # exclusion "CRCL < 80"
    assert ds.attrs["criteria_applied"] == 1


def test_stratum_criteria_hold_exactly(constrained):
    ds = constrained["renal_impairment"]
    labels = ds.RENAL.attrs["flag_meanings"].split()
    crcl, g = ds.CRCL.values, ds.RENAL.values
    bounds = {"normal": (90, np.inf), "mild": (60, 90), "moderate": (30, 60), "severe": (-np.inf, 30)}
    for code, lab in enumerate(labels):
        lo, hi = bounds[lab]
        x = crcl[g == code]
        assert x.size > 0 and np.all((x >= lo) & (x < hi)), lab
    assert (ds.AGE >= 18).all() and (ds.AGE <= 79).all()


def test_acceptance_rate_reported_and_correct(constrained, unconstrained):
    ds = constrained["healthy_adults"]
    n_draws = int((ds.attempt.values + 1).sum())
    assert ds.attrs["n_draws"] == n_draws
    assert ds.attrs["acceptance_rate"] == pytest.approx(ds.sizes["subject"] / n_draws)
    # agrees with the pass rate of the criteria on the unconstrained draw (5 binomial SEs)
    u = unconstrained["healthy_adults"]
    ok = ((u.AGE >= 18) & (u.AGE <= 65) & (u.BMI >= 18.5) & (u.BMI <= 32) & (u.CRCL >= 80)).values
    p = ok.mean()
    se = math.sqrt(p * (1 - p) / u.sizes["subject"]) + math.sqrt(p * (1 - p) / n_draws)
    assert abs(ds.attrs["acceptance_rate"] - p) < 5 * se
    # the unconstrained draw is each subject's first attempt
    assert (u.attempt == 0).all() and u.attrs["criteria_applied"] == 0


def test_accepted_subject_is_first_passing_attempt():
    spec = tiny_spec(criteria=["X > 0.5"])
    ds = draw_cohort(spec, 300, seed=9)
    assert (ds.X > 0.5).all()
    # attempts before the accepted one all failed: redraw those attempts via the unconstrained path
    # (attempt 0 of every subject) and check subjects accepted at attempt > 0 failed at attempt 0
    first = draw_cohort(spec, 300, seed=9, apply_criteria=False)
    later = ds.attempt.values > 0
    assert later.any() and (first.X.values[later] <= 0.5).all()
    np.testing.assert_array_equal(first.X.values[~later], ds.X.values[~later])
    # acceptance ~ P(N(0,1) > 0.5) = 0.3085
    p = 0.5 * math.erfc(0.5 / math.sqrt(2))
    n_draws = ds.attrs["n_draws"]
    assert abs(ds.attrs["acceptance_rate"] - p) < 5 * math.sqrt(p * (1 - p) / n_draws)


def test_criteria_excluding_everyone():
    with pytest.raises(SpecError) as e:
        draw_cohort(tiny_spec(criteria=["X > 50"]), 10, seed=1)
    assert e.value.field == "criteria"
    assert "exclude" in str(e.value) and "N=10" in str(e.value)


def test_acceptance_below_minimum():
    # P(X > 4) = 3.2e-5 < 1e-4: reported as too low rather than looping for long
    with pytest.raises(SpecError, match="min_acceptance") as e:
        draw_cohort(tiny_spec(criteria=["X > 4"]), 1000, seed=1)
    assert e.value.field == "criteria"


def test_max_attempts_exceeded():
    # P(X > 2) = 0.023: with 5 attempts per subject some of 2000 subjects fail
    with pytest.raises(SpecError, match="attempts") as e:
        draw_cohort(tiny_spec(criteria={"exclusion": ["X <= 2"]}), 2000, seed=1, max_attempts=5)
    assert e.value.field == "criteria"


def test_stratum_error_names_the_level():
    spec = tiny_spec(strata={"name": "G", "levels": {"a": {"fraction": 0.5},
                                                     "b": {"fraction": 0.5, "criteria": ["X > 40"]}}})
    with pytest.raises(SpecError) as e:
        draw_cohort(spec, 20, seed=1)
    assert e.value.field == "strata.levels.b.criteria"
