"""The doses the work units record (dose_time, dose_amt, dose_cmt, ...) against the trial's
schedule, its adherence and dropout, and an infusion trial's rates."""
import json

import numpy as np


def test_dose_record_follows_schedule_adherence_and_dropout(ds):
    spec = json.loads(ds.attrs["spec"])
    t, amt, cmt = ds["dose_time"].values, ds["dose_amt"].values, ds["dose_cmt"].values
    taken = amt > 0
    assert ds.sizes["dose"] == 28                                   # the most doses of any arm
    np.testing.assert_array_equal(taken, np.isfinite(t))
    np.testing.assert_array_equal(ds["doses_taken"].values, taken.sum(-1))
    assert (cmt[taken] == 1).all() and (cmt[~taken] == 0).all()      # NONMEM CMT 1: depot
    sim = ds["status"].values >= 0
    assert not taken[~sim].any() and not taken[:, 0].any()            # not in the arm / placebo: none
    drop = ds["dropout_time"].values                                  # (replicate, subject)
    for a in range(1, 4):
        reg = spec["arms"][a]["regimen"][0]
        schedule = reg["time"] + reg["ii"] * np.arange(reg["n"])
        slot = np.broadcast_to(schedule, t[:, a].shape)
        given = taken[:, a]
        np.testing.assert_array_equal(t[:, a][given], slot[given])   # given at the scheduled times
        assert (amt[:, a][given] == reg["amt"]).all()
        assert (t[:, a][given] < np.broadcast_to(drop[..., None], given.shape)[given]).all()
        # every scheduled dose before dropout that is not recorded was missed (adherence 0.9)
        due = sim[:, a, :, None] & (slot < drop[..., None])
        missed = due & ~given
        assert not (given & ~due).any()
        assert 0 < missed.sum() < 0.3 * due.sum()


def test_infusion_rates_are_recorded(pta_ds):
    ds = pta_ds
    spec = json.loads(ds.attrs["spec"])
    taken = ds["dose_amt"].values > 0
    assert taken.any() and "dose_ss" not in ds
    for a, arm in enumerate(spec["arms"]):
        d = arm["regimen"][0]
        np.testing.assert_allclose(ds["dose_rate"].values[:, a][taken[:, a]], d["amt"] / d["duration"], rtol=1e-12)
    assert (ds["dose_rate"].values[~taken] == 0).all()
