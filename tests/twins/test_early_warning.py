"""Early warning with the Friberg myelosuppression model (`examples/twins/neutropenia.yaml`):
the twins' P(ANC < 0.5 x 10^9/L at the cycle-2 nadir) after the first cycle's counts, checked
against outcomes simulated from known truth by an independent SciPy ODE solution (Brier skill,
Spiegelhalter's z, calibration in the large, clear cases); and the calibration statistics
against hand-computed values. The larger run (400 patients, reliability table) is in
benchmarks/bench_twin.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insilico import twins
from insilico.errors import SpecError
from tests.twins.neutropenia import THRESHOLD, calibration

# 100 draws per risk: Monte Carlo SD of each probability <= 0.05 (counted in the calibration-in-the-large
# tolerance below); it widens Spiegelhalter's z by sqrt(1 + 1/100) = 1.005, so |z| < 2.576 keeps 98.96 %
# coverage (98.98 % with 200 draws)
N_PATIENTS, N_DRAWS = 24, 100


def test_brier_reliability_and_spiegelhalter_against_hand_computed_values():
    p = np.array([0.1, 0.1, 0.3, 0.5, 0.9, 1.0])
    o = np.array([0, 1, 0, 1, 1, 1])
    assert twins.brier_score(p, o) == pytest.approx((0.01 + 0.81 + 0.09 + 0.25 + 0.01 + 0.0) / 6, abs=1e-15)
    num = (-0.1 * 0.8) + (0.9 * 0.8) + (-0.3 * 0.4) + 0 + (0.1 * -0.8) + 0
    var = 0.64 * 0.09 + 0.64 * 0.09 + 0.16 * 0.21 + 0 + 0.64 * 0.09 + 0
    assert twins.spiegelhalter_z(p, o) == pytest.approx(num / np.sqrt(var), rel=1e-12)
    table = twins.reliability_table(p, o, bins=2)
    assert list(table["n"]) == [3, 3]                   # 0.5 falls in the upper bin; 1.0 in the last (closed)
    np.testing.assert_allclose(table["predicted"], [0.5 / 3, 2.4 / 3], rtol=1e-12)
    np.testing.assert_allclose(table["observed"], [1 / 3, 1.0], rtol=1e-12)
    # Wilson 95 % interval of 1/3: (0.0615, 0.7923) (e.g. R binom::binom.wilson(1, 3))
    np.testing.assert_allclose(table.loc[0, ["lower", "upper"]].astype(float), [0.06149, 0.79234], atol=5e-5)
    assert table.loc[1, "upper"] == 1.0
    empty = twins.reliability_table([0.05], [0], bins=4)
    assert list(empty["n"]) == [1, 0, 0, 0] and empty["observed"].isna().sum() == 3
    for bad, field in (([1.2], "probabilities"), ([], "probabilities")):
        with pytest.raises(SpecError) as e:
            twins.brier_score(bad, [1] * len(bad))
        assert e.value.field == field
    with pytest.raises(SpecError) as e:
        twins.brier_score([0.5], [2])
    assert e.value.field == "outcomes"


@pytest.fixture(scope="module")
def result():
    return calibration(N_PATIENTS, seed=3, n_draws=N_DRAWS)


def test_neutropenia_risk_is_calibrated_on_patients_simulated_from_known_truth(result):
    p, o = np.array(result["probabilities"]), np.array(result["outcomes"])
    assert 0.1 <= o.mean() <= 0.9                      # both outcomes occur: the check has power
    # skill: far better than always predicting the event rate
    assert result["brier"] < 0.5 * result["brier_climatology"], result
    # calibration: Spiegelhalter's z is N(0, 1) when calibrated (99 % two-sided)
    assert abs(result["spiegelhalter_z"]) < 2.576, result
    # calibration in the large: sum(o) - sum(p) has SD sqrt(sum p(1-p)) (+ Monte Carlo error of p)
    sd = np.sqrt(np.sum(p * (1 - p)) + np.sum(p * (1 - p) / N_DRAWS))
    assert abs(o.sum() - p.sum()) <= 3 * max(sd, 0.5), (o.sum(), p.sum(), sd)
    rel = pd.DataFrame(result["reliability"])
    assert rel["n"].sum() == N_PATIENTS


def test_clear_cases_get_clear_warnings(result):
    p, nadir = np.array(result["probabilities"]), np.array(result["true_nadir2"])
    deep, safe = nadir < THRESHOLD / 2, nadir > 2 * THRESHOLD
    assert deep.any() and safe.any()
    assert p[deep].min() > 0.8, (p[deep], nadir[deep])
    assert p[safe].max() < 0.2, (p[safe], nadir[safe])
