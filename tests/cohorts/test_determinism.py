"""Per-subject randomness: subject i depends only on (seed, i)."""
import jax
import numpy as np
import xarray as xr
from numpyro import handlers

from insilico.cohorts import cohort_model, draw_cohort, subject_key
from insilico.cohorts._draw import COHORT_STREAM, bucket_size
from tests.cohorts.conftest import tiny_spec


def _same(a: xr.Dataset, b: xr.Dataset):
    assert list(a.data_vars) == list(b.data_vars)
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_chunk_equals_slice_of_full_draw(healthy, healthy_100):
    chunk = draw_cohort(healthy, 20, seed=11, start=40)
    np.testing.assert_array_equal(chunk.subject.values, np.arange(40, 60))
    assert chunk.subject.dtype == np.int64
    _same(chunk, healthy_100.sel(subject=slice(40, 59)))


def test_prefix_independent_of_n(healthy, healthy_100):
    _same(draw_cohort(healthy, 37, seed=11), healthy_100.isel(subject=slice(0, 37)))


def test_chunks_with_strata(specs):
    s = specs["renal_impairment"]
    full = draw_cohort(s, 60, seed=3)
    parts = [draw_cohort(s, 13, seed=3, start=0), draw_cohort(s, 47, seed=3, start=13)]
    _same(full, xr.concat(parts, dim="subject"))


def test_batch_size_invariance():
    spec = tiny_spec(criteria=["X > -1"])
    a = draw_cohort(spec, 3000, seed=4, batch_size=16384)
    b = draw_cohort(spec, 3000, seed=4, batch_size=1024)
    _same(a, b)
    assert np.any(a.attempt.values > 0)


def test_seed_changes_draw(healthy, healthy_100):
    other = draw_cohort(healthy, 100, seed=12)
    assert not np.array_equal(other.AGE.values, healthy_100.AGE.values)
    assert healthy_100.attrs["seed"] == 11


def test_key_derivation_is_the_documented_one(healthy, healthy_100):
    """Re-run the NumPyro model for one subject with fold_in(fold_in(fold_in(PRNGKey(seed),
    STREAM), i), attempt) and get exactly that subject."""
    i = 57
    a = int(healthy_100.attempt.sel(subject=i))
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(11), COHORT_STREAM), i), a)
    np.testing.assert_array_equal(key, subject_key(11, i, a))
    names = ("AGE", "SEX", "HT", "WT", "eta_CL", "CL", "kappa_KA")
    model = cohort_model(healthy)
    tr = jax.jit(lambda k: {n: v["value"] for n, v in handlers.trace(handlers.seed(model, k)).get_trace(1).items()
                            if n in names})(key)
    for v in names:
        np.testing.assert_allclose(np.asarray(tr[v][0]), healthy_100[v].sel(subject=i).values,
                                   rtol=1e-12, err_msg=v)


def test_bucket_sizes():
    """Calls are padded to powers of two between MIN_BUCKET and the batch size."""
    assert [bucket_size(m, 16384) for m in (1, 64, 65, 100, 128, 129, 16384)] == [64, 64, 128, 128, 128, 256, 16384]
    assert bucket_size(100, 100) == 100 and bucket_size(5, 32) == 32


def test_small_draws_equal_slices_of_a_large_one(healthy):
    """Different padded shapes (64, 128, 4096 rows) give the same subjects."""
    big = draw_cohort(healthy, 3000, seed=11)
    for n, start in ((1, 7), (70, 1000)):
        _same(draw_cohort(healthy, n, seed=11, start=start), big.isel(subject=slice(start, start + n)))


def test_subjects_independent_of_padded_shape(unconstrained, specs):
    """Subjects 0..2999 from a 3000-subject draw (one call of 4096 rows) equal those of a
    20,000-subject draw (first call of 16384 rows), bit for bit: correlated etas (the
    paediatric Omega) are formed without a batched matmul, whose summation order XLA may
    choose by shape."""
    full = unconstrained["paediatric"]
    part = draw_cohort(specs["paediatric"], 3000, seed=5, apply_criteria=False)
    _same(part, full.isel(subject=slice(0, 3000)))
