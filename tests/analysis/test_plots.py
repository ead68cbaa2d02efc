"""Plots of a results store: figure structure, labels with units, statistics read back from the artists."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from insilico.analysis import plots as P
from insilico.dosing import Regimen, read_nonmem
from insilico.engine import simulate

ARMS = ["placebo", "50 mg", "100 mg"]
TIMES = np.array([0.0, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0])


def _store(n_rep=2, n_sub=60, seed=1) -> xr.Dataset:
    """A small synthetic results store with the layout written by `insilico run` (parallel design)."""
    rng = np.random.default_rng(seed)
    n_arm = len(ARMS)
    alloc = rng.integers(0, n_arm, (n_rep, n_sub))
    status = np.where(alloc[:, None, :] == np.arange(n_arm)[None, :, None], 0, -1).astype(np.int8)
    status[0, 1, np.flatnonzero(alloc[0] == 1)[0]] = 3  # one failed subject: excluded from plots
    dose = np.array([0.0, 50.0, 100.0])
    cl = np.exp(rng.normal(np.log(5), 0.3, (n_rep, n_sub)))
    ka = 1.0
    ke = cl / 50.0
    t = TIMES[None, None, None, :]
    conc = (dose[None, :, None, None] / 50.0 * ka / (ka - ke[:, None, :, None])
            * (np.exp(-ke[:, None, :, None] * t) - np.exp(-ka * t)))
    conc = conc * np.exp(rng.normal(0, 0.1, conc.shape))
    sampled = rng.random(conc.shape) < 0.8                   # sparse sampling: NaN where not sampled
    conc = np.where((status[..., None] >= 0) & sampled, conc, np.nan)
    effect = 30 * conc / (1 + conc)
    auc = np.where(status >= 0, dose[None, :, None] / cl[:, None, :], np.nan)
    eff_ch = np.where(status >= 0, 40 * auc / (5 + auc) + rng.normal(0, 3, auc.shape), np.nan)
    resp = np.where(status >= 0, (eff_ch > 15).astype(float), np.nan)
    dims4, dims3 = ("replicate", "arm", "subject", "time"), ("replicate", "arm", "subject")
    analysis = {
        "summary": {"auc_ss": [{"arm": a, "n": 20, "mean": 1.0} for a in ARMS]},
        "comparisons": {},
        "pta": [{"group": a, "n": 20, "n_attained": k * 8, "pta": k * 0.4, "ci_lower": max(k * 0.4 - 0.2, 0),
                 "ci_upper": min(k * 0.4 + 0.2, 1)} for k, a in enumerate(ARMS)],
        "power": [{"arm": a, "reference": "placebo", "n": n, "power": p, "ci_lower": p * 0.9,
                   "ci_upper": min(p * 1.1, 1.0)} for a in ARMS[1:] for n, p in ((10, 0.3), (20, 0.6), (40, 0.9))],
        "probability_of_success": [{"arm": "100 mg", "estimate": 0.5, "successes": 1, "n_replicates": 2,
                                    "ci_lower": 0.1, "ci_upper": 0.9}],
    }
    return xr.Dataset(
        {
            "conc": (dims4, conc, {"units": "mg/L", "long_name": "central concentration"}),
            "effect": (dims4, effect, {"units": "%", "long_name": "drug effect"}),
            "auc_ss": (dims3, auc, {"units": "mg*h/L", "long_name": "auc of conc", "endpoint_type": "auc"}),
            "effect_change": (dims3, eff_ch, {"units": "1", "long_name": "change of effect",
                                              "endpoint_type": "change_from_baseline"}),
            "responder": (dims3, resp, {"units": "1", "long_name": "responder", "endpoint_type": "responder"}),
            "status": (dims3, status, {"long_name": "simulation status"}),
            "CL": (("replicate", "subject"), cl, {"units": "L/h", "long_name": "clearance"}),
        },
        coords={"replicate": np.arange(n_rep), "arm": ARMS, "subject": np.arange(n_sub),
                "time": ("time", TIMES, {"units": "h", "long_name": "nominal sampling time"})},
        attrs={"trial": "synthetic", "analysis": json.dumps(analysis)},
    )


@pytest.fixture(scope="module")
def ds():
    return _store()


def _arm_data(ds, output, arm, replicate=0):
    v = ds[output].isel(replicate=replicate).sel(arm=arm).values
    ok = ds["status"].isel(replicate=replicate).sel(arm=arm).values == 0
    return v[ok]


def _gid(ax, gid):
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid]


@pytest.mark.parametrize("output,units", [("conc", "mg/L"), ("effect", "%")])
def test_profiles_median_band_individuals(ds, output, units):
    fig = P.plot_profiles(ds, output, n_individual=5, seed=3)
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(ARMS)
    for ax, arm in zip(axes, ARMS):
        data = _arm_data(ds, output, arm)
        data = data[np.isfinite(data).any(axis=1)]
        (median,) = _gid(ax, "median")
        t, y = median.get_data()
        has = np.isfinite(data).any(axis=0)
        np.testing.assert_array_equal(t, TIMES[has])
        np.testing.assert_allclose(y, np.nanmedian(data[:, has], axis=0), rtol=1e-12)
        assert len(_gid(ax, "individual")) == min(5, data.shape[0])
        bands = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_gid() == "band"]
        assert len(bands) == 1
        # band vertices lie between the 5th and 95th percentiles
        lo, hi = np.nanpercentile(data[:, has], [5, 95], axis=0)
        verts = bands[0].get_paths()[0].vertices
        assert verts[:, 1].min() == pytest.approx(lo.min()) and verts[:, 1].max() == pytest.approx(hi.max())
        assert f"(n={data.shape[0]})" in ax.get_title()
    assert axes[0].get_ylabel().endswith(f"({units})")
    assert axes[-1].get_xlabel() == "nominal sampling time (h)"


def test_profiles_individuals_reproducible_and_log(ds):
    a = P.plot_profiles(ds, "conc", n_individual=4, seed=7)
    b = P.plot_profiles(ds, "conc", n_individual=4, seed=7)
    ya = [ln.get_ydata() for ln in _gid(a.axes[1], "individual")]
    yb = [ln.get_ydata() for ln in _gid(b.axes[1], "individual")]
    for u, v in zip(ya, yb):
        np.testing.assert_array_equal(u, v)
    lg = P.plot_profiles(ds, "conc", n_individual=4, log=True)
    assert all(ax.get_yscale() == "log" for ax in lg.axes if ax.get_visible())
    # placebo concentrations are all 0: no positive data, no median line, a message instead
    assert _gid(lg.axes[0], "median") == [] and "no positive values" in lg.axes[0].texts[0].get_text()
    data = _arm_data(ds, "conc", "100 mg")
    data = np.where(data > 0, data, np.nan)
    has = np.isfinite(data).any(axis=0)
    (median,) = _gid(lg.axes[2], "median")
    np.testing.assert_allclose(median.get_ydata(), np.nanmedian(data[:, has], axis=0))


def test_profiles_pooled_replicates(ds):
    fig = P.plot_profiles(ds, "conc", n_individual=0, replicate=None)
    data = np.concatenate([_arm_data(ds, "conc", "50 mg", r) for r in range(ds.sizes["replicate"])])
    data = data[np.isfinite(data).any(axis=1)]
    (median,) = _gid(fig.axes[1], "median")
    np.testing.assert_allclose(median.get_ydata(), np.nanmedian(data, axis=0))
    assert _gid(fig.axes[1], "individual") == []


def test_unknown_output(ds):
    with pytest.raises(KeyError, match="not in the results store"):
        P.plot_profiles(ds, "nope")


def test_endpoint_distribution_continuous(ds):
    fig = P.plot_endpoint_distributions(ds, "auc_ss")
    (ax,) = fig.axes
    assert len(ax.patches) == len(ARMS)                       # one box per arm
    meds = _gid(ax, "median")
    assert len(meds) == len(ARMS)
    for ln, arm in zip(meds, ARMS):
        v = _arm_data(ds, "auc_ss", arm)
        assert ln.get_ydata()[0] == pytest.approx(np.median(v[np.isfinite(v)]))
    assert ax.get_ylabel() == "auc of conc (mg*h/L)"
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ARMS


def test_endpoint_distribution_binary(ds):
    fig = P.plot_endpoint_distributions(ds, "responder")
    (ax,) = fig.axes
    assert len(ax.patches) == len(ARMS)                       # one bar per arm
    for bar, arm in zip(ax.patches, ARMS):
        v = _arm_data(ds, "responder", arm)
        assert bar.get_height() == pytest.approx(np.nanmean(v))
    assert ax.get_ylabel() == "proportion: responder (1)"
    fig = P.plot_endpoint_distributions(ds, "effect_change", kind="violin")
    assert len(fig.axes[0].collections) >= len(ARMS)


def test_exposure_response_continuous_and_binary(ds):
    fig = P.plot_exposure_response(ds, "auc_ss", "effect_change")
    (ax,) = fig.axes
    pts = [c for c in ax.collections if c.get_gid() == "points"]
    assert len(pts) == len(ARMS)
    assert sum(len(c.get_offsets()) for c in pts) == int((ds.status.isel(replicate=0) == 0).sum())
    assert ax.get_xlabel() == "auc of conc (mg*h/L)" and ax.get_ylabel() == "change of effect (1)"

    fig = P.plot_exposure_response(ds, "auc_ss", "responder", bins=4)
    (ax,) = fig.axes
    (binned,) = _gid(ax, "binned")
    p = binned.get_ydata()
    # independent recomputation: quantile bins of the pooled exposure (ties merge bins)
    x = np.concatenate([_arm_data(ds, "auc_ss", a) for a in ARMS])
    y = np.concatenate([_arm_data(ds, "responder", a) for a in ARMS])
    edges = np.unique(np.quantile(x, np.linspace(0, 1, 5)))
    b = np.minimum(np.digitize(x, edges[1:-1], right=False), len(edges) - 2)
    expected = [y[b == k].mean() for k in range(len(edges) - 1) if np.any(b == k)]
    np.testing.assert_allclose(p, expected)
    np.testing.assert_allclose(binned.get_xdata(), [np.median(x[b == k]) for k in range(len(edges) - 1)
                                                    if np.any(b == k)])
    assert ax.get_ylabel() == "proportion: responder (1)"


def test_pta_and_power(ds):
    a = json.loads(ds.attrs["analysis"])
    fig = P.plot_pta(ds)
    (ax,) = fig.axes
    (ln,) = _gid(ax, "pta")
    np.testing.assert_allclose(ln.get_ydata(), [r["pta"] for r in a["pta"]])
    assert ln.get_linestyle() == "None" and ln.get_marker() == "o"      # categorical arms: points, no line
    assert [t.get_text() for t in ax.get_xticklabels()] == ARMS
    assert "(1)" in ax.get_ylabel()

    fig = P.plot_power(ds)
    (ax,) = fig.axes
    lines = _gid(ax, "power")
    assert len(lines) == 2 and all(ln.get_linestyle() == "-" for ln in lines)    # power over numeric N
    for ln, arm in zip(lines, ARMS[1:]):
        rr = [r for r in a["power"] if r["arm"] == arm]
        np.testing.assert_allclose(ln.get_xdata(), [r["n"] for r in rr])
        np.testing.assert_allclose(ln.get_ydata(), [r["power"] for r in rr])
    (pos,) = _gid(ax, "pos")
    assert pos.get_ydata()[0] == 0.5
    assert "(N)" in ax.get_xlabel()


def test_missing_analysis_tables_raise(ds):
    bare = ds.copy()
    bare.attrs = {"analysis": json.dumps({"summary": {}})}
    with pytest.raises(ValueError, match="no probability-of-target-attainment"):
        P.plot_pta(bare)
    with pytest.raises(ValueError, match="no power"):
        P.plot_power(bare)


def test_plot_all_writes_pngs(ds, tmp_path):
    paths = P.plot_all(ds, tmp_path / "figs", dpi=40)
    names = {p.name for p in paths}
    assert {"profiles_conc.png", "profiles_conc_log.png", "profiles_effect.png", "endpoint_auc_ss.png",
            "endpoint_effect_change.png", "endpoint_responder.png", "pta.png", "power.png"} <= names
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


# ----------------------------------------------------------------------------------------------
# what lines mean: trajectories are lines, samples are markers; any layout works
# ----------------------------------------------------------------------------------------------

def _is_markers(ln):
    return ln.get_linestyle() == "None" and ln.get_marker() not in ("None", "", None)


def _is_line(ln):
    return ln.get_linestyle() == "-" and ln.get_marker() in ("None", "", None)


def test_trial_store_samples_are_markers(ds):
    fig = P.plot_profiles(ds, "conc", n_individual=5, seed=3)
    ax = fig.axes[1]
    assert all(_is_markers(ln) for ln in _gid(ax, "individual"))
    (median,) = _gid(ax, "median")
    assert median.get_linestyle() == "--" and median.get_marker() == "o"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "median (dashed line joins sampling times)" in labels
    assert any("joined between sampling times" in lab for lab in labels)


def test_store_without_replicate_dimension(ds):
    """A store reduced to one replicate (no replicate dimension) plots the same numbers."""
    one = ds.isel(replicate=0, drop=True)
    a, b = P.plot_profiles(one, "conc", n_individual=3), P.plot_profiles(ds, "conc", n_individual=3)
    for ax_a, ax_b in zip(a.axes[:len(ARMS)], b.axes):
        assert ax_a.get_title() == ax_b.get_title()
        for gid in ("median", "individual"):
            assert len(_gid(ax_a, gid)) == len(_gid(ax_b, gid))
            for u, v in zip(_gid(ax_a, gid), _gid(ax_b, gid)):
                np.testing.assert_array_equal(u.get_xydata(), v.get_xydata())
    ea, eb = P.plot_endpoint_distributions(one, "auc_ss"), P.plot_endpoint_distributions(ds, "auc_ss")
    np.testing.assert_array_equal([ln.get_ydata()[0] for ln in _gid(ea.axes[0], "median")],
                                  [ln.get_ydata()[0] for ln in _gid(eb.axes[0], "median")])


@pytest.fixture(scope="module")
def sim():
    cl = np.array([2.0, 3.0, 4.0, 6.0])
    return simulate("1cmt_iv", {"CL": cl, "V": 20.0}, Regimen.repeated(100.0, 12.0, 3), np.linspace(0, 48, 97))


def test_profiles_of_a_simulate_result(sim):
    fig = P.plot_profiles(sim, "conc", n_individual=2)          # no arm, no replicate: no KeyError
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert ax.get_title() == "all subjects (n=4)"
    ind = _gid(ax, "individual")
    assert len(ind) == 2 and all(_is_line(ln) for ln in ind)    # a prediction grid: trajectories are lines
    (median,) = _gid(ax, "median")
    assert _is_line(median)
    np.testing.assert_allclose(median.get_ydata(), np.median(sim["conc"].values, axis=0), rtol=1e-12)
    np.testing.assert_array_equal(median.get_xdata(), sim["time"].values)
    assert ax.get_ylabel().endswith("(mg/L)") and _gid(ax, "observed") == []
    assert P.profile_outputs(sim) == ["conc"]


def _data():
    rows = [(1, 0.0, 100.0, 1, np.nan), (1, 1.0, 0.0, 0, 3.8), (1, 6.0, 0.0, 0, 2.9), (1, 24.0, 0.0, 0, 0.6),
            (2, 0.0, 200.0, 1, np.nan), (2, 2.0, 0.0, 0, 6.1), (2, 8.0, 0.0, 0, 3.0)]
    return read_nonmem(pd.DataFrame(rows, columns=["ID", "TIME", "AMT", "EVID", "DV"]), "1cmt_iv")


def test_profiles_on_nonmem_records_are_markers():
    data = _data()
    res = simulate("1cmt_iv", {"CL": [2.0, 3.0], "V": [20.0, 30.0]}, data)
    fig = P.plot_profiles(res, "conc")
    (ax,) = [a for a in fig.axes if a.get_visible()]
    ind = _gid(ax, "individual")
    assert len(ind) == 2 and all(_is_markers(ln) for ln in ind)    # predictions at record times only
    for ln in ind:                                                 # padding (NaN time) never drawn
        assert np.isfinite(ln.get_xdata()).all()
    assert sorted(len(ln.get_xdata()) for ln in ind) == [2, 3]
    (obs,) = _gid(ax, "observed")
    assert _is_markers(obs)
    np.testing.assert_array_equal(np.sort(obs.get_ydata()), np.sort([3.8, 2.9, 0.6, 6.1, 3.0]))
    assert _gid(ax, "median") == [] and "no percentiles" in ax.texts[0].get_text()


def test_profiles_prediction_grid_with_observations():
    res = simulate("1cmt_iv", {"CL": [2.0, 3.0], "V": [20.0, 30.0]}, _data(), np.linspace(0, 24, 49))
    fig = P.plot_profiles(res, "conc", log=True)
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert all(_is_line(ln) for ln in _gid(ax, "individual")) and _is_line(_gid(ax, "median")[0])
    (obs,) = _gid(ax, "observed")
    assert _is_markers(obs) and len(obs.get_xdata()) == 5
    np.testing.assert_array_equal(np.sort(obs.get_xdata()), [1.0, 2.0, 6.0, 8.0, 24.0])


def test_plot_all_on_a_simulate_result(sim, tmp_path):
    paths = P.plot_all(sim, tmp_path / "figs", dpi=40)
    assert {p.name for p in paths} == {"profiles_conc.png", "profiles_conc_log.png"}
    assert all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.parametrize("tables", [
    {"probability_of_success": [{"arm": a, "estimate": e, "n_replicates": 2, "ci_lower": e - 0.3, "ci_upper": e + 0.3}
                                for a, e in (("50 mg", 0.4), ("100 mg", 0.6))]},
    {"power": [{"arm": a, "reference": "placebo", "n": 20, "power": p, "ci_lower": p - 0.1, "ci_upper": p + 0.1}
               for a, p in (("50 mg", 0.5), ("100 mg", 0.7))]},
], ids=["pos-only", "single-n"])
def test_power_without_sample_size_analysis_is_categorical(ds, tables):
    store = ds.copy()
    store.attrs = {**ds.attrs, "analysis": json.dumps({"summary": {}, **tables})}
    fig = P.plot_power(store)
    (ax,) = fig.axes
    pts = _gid(ax, "pos") + _gid(ax, "power")
    assert len(pts) == 2 and all(_is_markers(ln) for ln in pts)     # a point with its CI per arm, no line
    (rows,) = tables.values()
    np.testing.assert_allclose([ln.get_ydata()[0] for ln in pts],
                               [r.get("estimate", r.get("power")) for r in rows])
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["50 mg", "100 mg"]
    assert ax.get_xlabel() == "arm"
    assert any("no sample-size analysis" in t.get_text() for t in ax.texts)
