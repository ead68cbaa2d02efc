"""Design randomness against its specification, with tolerances from the sample size."""
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from insilico.trials import _design
from insilico.trials._spec import AdherenceSpec, DropoutSpec, ObservationSpec

ROOT = Path(__file__).resolve().parents[2]
N = 20_000
IDX = np.arange(N)


def within(p_hat, p, n, z=5.0):
    """|p_hat - p| within z binomial standard errors."""
    return abs(p_hat - p) <= z * math.sqrt(p * (1 - p) / n)


def test_constant_hazard_dropout_matches_exponential():
    h, T = 0.0005, 672.0
    t = _design.dropout_times(DropoutSpec(hazard=h), 1, 0, IDX)
    assert within(np.mean(t < T), 1 - math.exp(-h * T), N)
    assert within(np.mean(t < 100), 1 - math.exp(-h * 100), N)
    # mean of the exponential: 1/h, SE = (1/h)/sqrt(N)
    assert abs(t.mean() - 1 / h) <= 5 * (1 / h) / math.sqrt(N)


def test_interval_dropout_probabilities_are_conditional():
    spec = DropoutSpec(intervals=[{"end": 168, "probability": 0.1}, {"end": 336, "probability": 0.2}])
    t = _design.dropout_times(spec, 2, 0, IDX)
    assert within(np.mean(t < 168), 0.1, N)
    assert within(np.mean((t >= 168) & (t < 336)), 0.9 * 0.2, N)
    assert np.all(np.isinf(t[t >= 336]))
    first = t[t < 168]
    assert abs(first.mean() - 84) <= 5 * (168 / math.sqrt(12)) / math.sqrt(first.size)  # uniform in interval


def test_cumulative_dropout_targets_convert_exactly_to_conditional_probabilities():
    """q_k = (C_k - C_{k-1}) / (1 - C_{k-1}) against the direct computation of the cumulative
    dropout 1 - prod (1 - q_j), in exact rational arithmetic."""
    from fractions import Fraction

    from insilico.trials import conditional_probabilities, cumulative_probabilities
    targets = [0.1, 0.25, 0.25, 0.6, 1.0, 1.0]
    q = conditional_probabilities(targets)
    remaining = Fraction(1)
    for qk, c in zip(q, targets):
        remaining *= 1 - Fraction(qk)
        assert abs(float(1 - remaining) - c) <= 1e-15
    assert q[2] == 0.0 and q[4] == 1.0 and q[5] == 0.0          # flat step; everyone gone; nobody left
    np.testing.assert_allclose(cumulative_probabilities(q), targets, rtol=0, atol=1e-15)
    spec = DropoutSpec(cumulative=[{"end": 168, "probability": 0.1}, {"end": 336, "probability": 0.25}])
    assert spec.interval_probabilities() == [(168.0, 0.1), (336.0, (0.25 - 0.1) / 0.9)]


def test_cumulative_dropout_reaches_its_targets():
    targets = {168.0: 0.1, 336.0: 0.25, 504.0: 0.3}
    spec = DropoutSpec(cumulative=[{"end": e, "probability": p} for e, p in targets.items()])
    t = _design.dropout_times(spec, 7, 0, IDX)
    for end, c in targets.items():
        assert within(np.mean(t <= end), c, N), end
    assert np.all(np.isinf(t[t > 504]))
    # same draws as the equivalent conditional intervals
    same = DropoutSpec(intervals=[{"end": e, "probability": p} for e, p in spec.interval_probabilities()])
    np.testing.assert_array_equal(_design.dropout_times(same, 7, 0, IDX), t)


@pytest.mark.parametrize("dropout, field, words", [
    ({"cumulative": [{"end": 168, "probability": 0.2}, {"end": 336, "probability": 0.1}]},
     "dropout.cumulative.1.probability", "must not decrease"),
    ({"cumulative": [{"end": 168, "probability": 1.2}]}, "dropout.cumulative.0.probability", "less than or equal"),
    ({"cumulative": [{"end": 336, "probability": 0.1}, {"end": 168, "probability": 0.2}]}, "dropout",
     "strictly increasing"),
    ({"hazard": 0.1, "cumulative": [{"end": 1, "probability": 0.1}]}, "dropout", "exactly one of"),
])
def test_bad_cumulative_dropout_names_the_field(dropout, field, words):
    from insilico.errors import SpecError
    from insilico.trials import load_trial_spec
    base = yaml.safe_load((ROOT / "trials/counterfactual_regimens.yaml").read_text())
    with pytest.raises(SpecError) as e:
        load_trial_spec({**base, "dropout": dropout})
    assert e.value.field == field and words in e.value.message, e.value


def test_adherence_probability_and_missed_runs():
    taken = _design.doses_taken(AdherenceSpec(probability=0.85), 3, 0, IDX[:5000], 20)
    assert within(taken.mean(), 0.85, taken.size)
    spec = AdherenceSpec(probability=1.0, missed_run={"start_probability": 0.05, "length": 3})
    taken = _design.doses_taken(spec, 3, 0, IDX[:5000], 30)
    # a dose is missed when a run started at it or at one of the 2 doses before (from dose 2 on)
    p_miss = 1 - 0.95 ** 3
    assert within(1 - taken[:, 2:].mean(), p_miss, taken[:, 2:].size, z=6)
    # runs: once a dose is missed, the next one is missed too unless the run ended
    assert (~taken[:, :-1] & ~taken[:, 1:]).sum() > 0


def test_allocation_ratio_and_chunk_invariance():
    arms = _design.allocate(4, 0, IDX[:3000], [2, 1])
    assert np.bincount(arms).tolist() == [2000, 1000]            # 1000 complete blocks of 3
    part = _design.allocate(4, 0, IDX[1234:1500], [2, 1])
    np.testing.assert_array_equal(part, arms[1234:1500])
    other = _design.allocate(4, 1, IDX[:3000], [2, 1])            # another replicate, another permutation
    assert not np.array_equal(other, arms)


def test_sparse_sampling_and_jitter():
    nominal = np.array([0.5, 1, 2, 4, 8, 12, 24.0])
    spec = ObservationSpec(times=list(nominal), per_subject=3, jitter_sd=0.1)
    mask, actual = _design.sampling(spec, 5, 0, IDX[:4000], nominal)
    assert np.all(mask.sum(axis=1) == 3)
    assert within(mask[:, 0].mean(), 3 / 7, 4000)
    dev = actual - nominal
    assert np.all(np.diff(actual, axis=1) > 0) and np.all(actual >= 0)
    sd = dev[:, 3:].std()
    assert abs(sd - 0.1) <= 5 * 0.1 / math.sqrt(2 * dev[:, 3:].size)
    m2, a2 = _design.sampling(spec, 5, 0, IDX[100:200], nominal)
    np.testing.assert_array_equal(m2, mask[100:200])
    np.testing.assert_array_equal(a2, actual[100:200])
