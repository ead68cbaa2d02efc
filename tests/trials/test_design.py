"""Design randomness against its specification, with tolerances from the sample size."""
import math

import numpy as np

from insilico.trials import _design
from insilico.trials._spec import AdherenceSpec, DropoutSpec, ObservationSpec

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
