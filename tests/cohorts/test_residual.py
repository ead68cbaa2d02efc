"""Residual error: statistics and per-(subject, observation) determinism."""
import math

import jax
import numpy as np
import pytest

from insilico.cohorts import RESIDUAL_STREAM, ResidualErrorSpec, apply_residual_error
from insilico.errors import SpecError

N_SUBJ, N_OBS = 200, 100
F = np.tile(np.linspace(0.5, 20.0, N_OBS), (N_SUBJ, 1))
SUBJ = np.arange(N_SUBJ)
N = N_SUBJ * N_OBS


def _sd_ok(x, sd):
    assert abs(x.mean()) < 5 * sd / math.sqrt(x.size)
    assert abs(x.std(ddof=1) - sd) < 5 * sd / math.sqrt(2 * x.size)


def test_proportional_sd_of_relative_error():
    y = np.asarray(apply_residual_error(F, {"type": "proportional", "proportional": 0.15}, 7, SUBJ))
    _sd_ok(y / F - 1, 0.15)


def test_exponential_sd_of_log_ratio():
    y = np.asarray(apply_residual_error(F, {"type": "exponential", "exponential": 0.2}, 7, SUBJ))
    _sd_ok(np.log(y / F), 0.2)


def test_additive():
    y = np.asarray(apply_residual_error(F, ResidualErrorSpec(type="additive", additive=0.3), 7, SUBJ))
    _sd_ok(y - F, 0.3)


def test_combined_variance():
    spec = {"type": "combined", "additive": 0.5, "proportional": 0.1}
    y = np.asarray(apply_residual_error(F, spec, 7, SUBJ))
    sd = np.sqrt(0.5 ** 2 + (0.1 * F) ** 2)
    _sd_ok((y - F) / sd, 1.0)


def test_deterministic_per_subject_and_observation():
    spec = {"type": "proportional", "proportional": 0.15}
    full = np.asarray(apply_residual_error(F, spec, 3, SUBJ))
    # subject 17 alone, and only its observations 10..19, give the same numbers
    one = np.asarray(apply_residual_error(F[17], spec, 3, 17))
    np.testing.assert_array_equal(one, full[17])
    part = np.asarray(apply_residual_error(F[[17, 5], 10:20], spec, 3, [17, 5], obs_index=np.arange(10, 20)))
    np.testing.assert_array_equal(part, full[[17, 5], 10:20])
    # a seed is the same as its root key
    root = jax.random.fold_in(jax.random.PRNGKey(3), RESIDUAL_STREAM)
    np.testing.assert_array_equal(np.asarray(apply_residual_error(F, spec, root, SUBJ)), full)
    assert not np.array_equal(np.asarray(apply_residual_error(F, spec, 4, SUBJ)), full)


def test_jit_compatible():
    spec = ResidualErrorSpec(type="exponential", exponential=0.1)
    f = jax.jit(lambda v, key, s: apply_residual_error(v, spec, key, s))
    key = jax.random.fold_in(jax.random.PRNGKey(1), RESIDUAL_STREAM)
    np.testing.assert_allclose(f(F[:3], key, SUBJ[:3]), apply_residual_error(F[:3], spec, 1, SUBJ[:3]), rtol=1e-14)


@pytest.mark.parametrize("spec, field", [
    ({"type": "proportional"}, "residual_error.proportional"),
    ({"type": "additive", "additive": 0.1, "proportional": 0.1}, "residual_error.proportional"),
    ({"type": "poisson", "additive": 0.1}, "residual_error.type"),
    ({"type": "additive", "additive": -1.0}, "residual_error.additive"),
])
def test_bad_residual_spec(spec, field):
    with pytest.raises(SpecError) as e:
        apply_residual_error(F[:2], spec, 1, SUBJ[:2])
    assert e.value.field == field
