"""Standard plots of a results store: profiles, endpoint distributions, exposure-response, PTA, power.

Every function takes the ``xarray.Dataset`` returned by :func:`insilico.open_results` — or by
:func:`insilico.engine.simulate` (no ``arm`` or ``replicate`` dimension: one panel, "all
subjects") — and returns a :class:`matplotlib.figure.Figure`. Figures are built directly with an
Agg canvas (no ``pyplot`` state, no change to the user's backend), so they work headless, in
scripts and in Jupyter (where a returned figure displays itself). Axes are labelled
``long_name (units)`` from the stored attributes. :func:`plot_all` writes a PNG for every
applicable plot.

Conventions: per-subject plots use replicate ``replicate`` (default 0: one simulated trial;
``None`` pools every replicate) and only subjects with ``status == 0`` in that arm.

What a line means: a line is drawn only through values that are the model's trajectory, i.e. a
`simulate` result on the times the caller asked for (``attrs["sampling"] == "grid"``). Values
at sampling times — a trial store holds the outputs only at the (sparse, possibly missing)
sampling times, and a `simulate` result on a NONMEM data set's record times — are drawn as
markers; their median is joined by a dashed line whose legend says it joins sampling times.
Observations (``dv`` of a `simulate` result on NONMEM data) are markers. Categorical x axes
(arms, groups) get points or bars, never joining lines.
"""
from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from insilico import store

__all__ = [
    "endpoint_names",
    "plot_all",
    "plot_endpoint_distributions",
    "plot_exposure_response",
    "plot_power",
    "plot_profiles",
    "plot_pta",
    "profile_outputs",
]

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]
#: endpoint types whose value is an exposure of the model output (candidates for the x axis)
EXPOSURE_TYPES = ("auc", "cmax", "cmin", "trough", "time_above", "fraction_above", "fraction_in_window")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _label(da: xr.DataArray | None, name: str = "") -> str:
    """``long_name (units)``; units ``1`` are shown as dimensionless ``(1)``."""
    if da is None:
        return name
    long = da.attrs.get("long_name") or da.name or name
    units = da.attrs.get("units")
    return f"{long} ({units})" if units not in (None, "") else str(long)


def _time_label(ds: xr.Dataset) -> str:
    t = ds["time"]
    units = t.attrs.get("units", "h")
    return f"{t.attrs.get('long_name', 'time')} ({units})"


ALL_SUBJECTS = "all subjects"
"""The one panel label of a result without an ``arm`` dimension (a `simulate` result)."""
_ROW_DIMS = ("replicate", "arm", "subject")


def _arms(ds: xr.Dataset) -> list[str]:
    """Arm labels, or ``[ALL_SUBJECTS]`` for a result without arms."""
    return [str(a) for a in ds["arm"].values] if "arm" in ds.dims else [ALL_SUBJECTS]


def _select(ds: xr.Dataset, da: xr.DataArray, arm: str, replicate) -> xr.DataArray:
    """``da`` at replicate label ``replicate`` (``None``: all) and arm label ``arm``, for the
    dimensions it has."""
    if "replicate" in da.dims and replicate is not None:
        da = da.sel(replicate=replicate)
    if "arm" in da.dims:
        da = da.isel(arm=_arms(ds).index(arm))
    return da


def _rows(ds: xr.Dataset, table: str) -> list[dict]:
    """Rows of the analysis table ``table`` (``pta``, ``power``, …) of the store ([] if none)."""
    df = ds.insilico.analysis.get(table)
    return [] if df is None else df.to_dict(orient="records")


def _analysis_spec(ds: xr.Dataset) -> dict:
    """The ``analysis`` section of the stored trial spec ({} if none)."""
    return (ds.insilico.spec or {}).get("analysis") or {}


def _arm_values(ds: xr.Dataset, name: str, arm: str, replicate: int | None) -> np.ndarray:
    """Values of ``name`` for subjects with status 0 in ``arm`` (replicate label ``replicate``,
    ``None``: all; without a ``status`` variable every subject): shape (rows, [time]), rows in
    (replicate, arm, subject) order, as `insilico.store.arm_values` with ``ok_only``. Works for
    any layout: with or without ``replicate`` and ``arm`` dimensions."""
    da = _select(ds, ds[name], arm, replicate)
    ok = (_select(ds, ds["status"], arm, replicate) == 0) if "status" in ds else xr.ones_like(da, dtype=bool)
    da, ok = xr.broadcast(da, ok)
    rows = [d for d in _ROW_DIMS if d in da.dims]
    extra = [d for d in da.dims if d not in rows]
    shape = [da.sizes[d] for d in extra]
    v = np.asarray(da.transpose(*rows, *extra).values, dtype=float).reshape(-1, *shape)
    keep = np.asarray(ok.transpose(*rows, *extra).values).reshape(v.shape[0], -1)[:, 0]
    return v[keep]


def _is_binary(ds: xr.Dataset, name: str) -> bool:
    da = ds[name]
    if da.attrs.get("endpoint_type") == "responder":
        return True
    v = np.asarray(da.values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool(np.all((v == 0) | (v == 1)))


def wilson(successes, n, alpha: float = 0.05):
    """Wilson score interval (vectorised); see :func:`insilico.stats.wilson_ci`."""
    from insilico.stats import wilson_ci
    return wilson_ci(successes, n, alpha)


def profile_outputs(ds: xr.Dataset) -> list[str]:
    """Model outputs over time: in a trial store those over (…, arm, subject, time), without the
    residual-error ``*_obs`` copies; in a `simulate` result those over (subject, time | obs)."""
    if "arm" in ds.dims:
        return ds.insilico.outputs
    return [str(k) for k, v in ds.data_vars.items()
            if v.dims in (("subject", "time"), ("subject", "obs")) and k not in _NOT_OUTPUTS]


_NOT_OUTPUTS = ("time", "dv", "dv_time")


def _time_dim(da: xr.DataArray) -> str:
    return "time" if "time" in da.dims else "obs"


def _is_trajectory(ds: xr.Dataset) -> bool:
    """True when the values are the model's trajectory on the times asked for (a `simulate`
    result on a grid), False for values at sampling or record times (module docstring)."""
    return ds.attrs.get("sampling") == "grid"


def endpoint_names(ds: xr.Dataset) -> list[str]:
    """Stored endpoints (variables with an ``endpoint_type`` attribute), in spec order when known."""
    return ds.insilico.endpoints


def _gid_data(container, gid: str):
    """Tag the data line of an ``errorbar`` container (not its caps and bars) with ``gid``."""
    if container.lines[0] is not None:
        container.lines[0].set_gid(gid)
    return container


def _grid(n: int, max_cols: int = 2) -> tuple[int, int]:
    cols = min(n, max_cols)
    return -(-n // cols), cols


# ----------------------------------------------------------------------------------------------
# profiles
# ----------------------------------------------------------------------------------------------

def profile_stats(values: np.ndarray, times: np.ndarray, quantiles=(5, 50, 95)):
    """(times, percentiles[k, t]) over subjects at the nominal times that have any data."""
    has = np.isfinite(values).any(axis=0)
    if not has.any():
        return times[:0], np.empty((len(quantiles), 0))
    q = np.nanpercentile(values[:, has], quantiles, axis=0)
    return times[has], q


def _profile_rows(ds: xr.Dataset, output: str, arm: str, replicate):
    """Values of ``output`` (rows, T) for ``arm``, each row's times (rows, T) — the actual
    sampling times when the store has them (``obs_time``), else the nominal or per-subject
    times — and the times shared by every row (T,) for percentiles, or None when rows have
    their own times."""
    v = _arm_values(ds, output, arm, replicate)
    time = ds["time"]
    if time.ndim == 1:
        nominal = np.asarray(time.values, dtype=float)
        own = _arm_values(ds, "obs_time", arm, replicate) if "obs_time" in ds else np.broadcast_to(nominal, v.shape)
        return v, own, nominal
    own = _arm_values(ds, "time", arm, replicate)
    same = own.shape[0] > 0 and np.array_equal(own, np.broadcast_to(own[0], own.shape), equal_nan=True)
    return v, own, (own[0] if same else None)


def _observations(ds: xr.Dataset, arm: str, replicate, log: bool):
    """(times, values) of the observations (``dv``) of ``arm``, finite (and > 0 with ``log``), or None."""
    if "dv" not in ds:
        return None
    y = _arm_values(ds, "dv", arm, replicate)
    t = _arm_values(ds, "dv_time" if "dv_time" in ds else "time", arm, replicate)
    ok = np.isfinite(y) & np.isfinite(t) & ((y > 0) if log else True)
    return t[ok], y[ok]


def plot_profiles(ds: xr.Dataset, output: str = "conc", n_individual: int = 20, seed: int = 0, *,
                  log: bool = False, replicate: int | None = 0, arms: Sequence[str] | None = None,
                  band: tuple[float, float] = (5, 95), time_range: tuple[float, float] | None = None
                  ) -> Figure:
    """Median and ``band`` percentile band over subjects at each time, one panel per arm (one
    panel for a result without arms), with ``n_individual`` randomly chosen (``seed``)
    individuals in grey and the observations (``dv``) when the result has them.

    Works for any model output over time (``conc``, ``effect``, ``response``, …) of a trial store
    or a `insilico.engine.simulate` result. On a prediction grid (a `simulate` result on the times
    asked for) individuals and median are lines; at sampling times (a trial store; a `simulate`
    result on NONMEM record times) individuals are markers only and the median's dashed line is
    labelled as joining sampling times (module docstring). When subjects have their own times,
    no percentiles are drawn (a note says so). ``log=True`` uses a log y axis and drops
    non-positive values (pre-dose or placebo concentrations) before the statistics. Artists carry
    a ``gid``: lines ``"median"``, ``"individual"`` (one per individual), ``"observed"``; the
    band is a ``PolyCollection`` with gid ``"band"``.
    """
    if output not in ds:
        raise KeyError(f"{output!r} is not in the results store (outputs: {profile_outputs(ds)})")
    da = ds[output]
    arms = list(arms) if arms is not None else _arms(ds)
    trajectory = _is_trajectory(ds)
    rows, cols = _grid(len(arms))
    fig = _figure(5.0 * cols, 3.4 * rows)
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    rng = np.random.default_rng(seed)
    for k, arm in enumerate(arms):
        ax = axes[k]
        v, own, nominal = _profile_rows(ds, output, arm, replicate)
        if log:
            v = np.where(v > 0, v, np.nan)
        anydata = np.isfinite(v).any(axis=1)
        v, own = v[anydata], own[anydata]
        ax.set_title(f"{arm} (n={v.shape[0]})", fontsize=10)
        obs = _observations(ds, arm, replicate, log)
        if obs is not None and obs[0].size:
            ax.plot(obs[0], obs[1], ls="none", marker="x", ms=4, color="k", alpha=0.7, gid="observed",
                    label="observed (DV)")
        if v.shape[0] == 0:
            ax.text(0.5, 0.5, "no positive values" if log else "no data", transform=ax.transAxes,
                    ha="center", va="center", color="0.4")
            continue
        _individuals(ax, v, own, rng, n_individual, trajectory)
        color = _COLORS[k % len(_COLORS)]
        if nominal is None:
            ax.text(0.02, 0.02, "subjects have their own times: no percentiles", transform=ax.transAxes,
                    ha="left", va="bottom", fontsize=8, color="0.4")
        else:
            joined = "" if trajectory else " (joined between sampling times)"
            t, q = profile_stats(v, nominal, (band[0], 50, band[1]))
            ax.fill_between(t, q[0], q[2], color=color, alpha=0.25, lw=0, gid="band",
                            label=f"{band[0]:g}–{band[1]:g} %{joined}")
            if trajectory:
                ax.plot(t, q[1], color=color, lw=2, gid="median", label="median")
            else:
                ax.plot(t, q[1], color=color, lw=1, ls="--", marker="o", ms=4, gid="median",
                        label="median (dashed line joins sampling times)")
        ax.legend(fontsize=8, loc="best")
    for ax in axes[len(arms):]:
        ax.set_visible(False)
    for ax in axes[:len(arms)]:
        if log:
            ax.set_yscale("log")
        if time_range is not None:
            ax.set_xlim(*time_range)
        ax.grid(alpha=0.3)
    for r in range(rows):
        axes[r * cols].set_ylabel(_label(da, output))
    for c in range(cols):
        i = (rows - 1) * cols + c
        ax = axes[i] if i < len(arms) else axes[i - cols]
        ax.set_xlabel(_time_label(ds))
        ax.xaxis.set_tick_params(labelbottom=True)
    rep = ("" if "replicate" not in da.dims else
           "; all replicates" if replicate is None else f"; replicate {replicate}")
    by = " by arm" if "arm" in ds.dims else ""
    what = "model prediction" if trajectory else "values at sampling times"
    details = textwrap.fill(f"({what}; median, {band[0]:g}–{band[1]:g} percentiles, {n_individual} individuals"
                            f"{rep})", width=int(15 * 5.0 * cols))
    fig.suptitle(f"{ds.attrs.get('trial') or ds.attrs.get('model', '')}: {da.attrs.get('long_name', output)}{by}\n"
                 f"{details}", fontsize=11 if cols > 1 else 9)
    return fig


def _individuals(ax, v: np.ndarray, times: np.ndarray, rng, n: int, trajectory: bool) -> None:
    """``n`` randomly chosen rows of ``v`` at their ``times``: grey lines on a prediction grid,
    grey markers (not joined) at sampling times; the first one carries the legend label."""
    m = min(n, v.shape[0])
    for j, i in enumerate(np.sort(rng.choice(v.shape[0], size=m, replace=False)) if m else []):
        ok = np.isfinite(v[i]) & np.isfinite(times[i])
        label = ("individuals" if trajectory else "individuals at sampling times") if j == 0 else None
        if trajectory:
            ax.plot(times[i, ok], v[i, ok], color="0.55", lw=0.6, alpha=0.6, gid="individual", label=label)
        else:
            ax.plot(times[i, ok], v[i, ok], ls="none", marker="o", ms=2.5, color="0.45", alpha=0.6,
                    gid="individual", label=label)


# ----------------------------------------------------------------------------------------------
# endpoints
# ----------------------------------------------------------------------------------------------

def plot_endpoint_distributions(ds: xr.Dataset, endpoint: str, *, replicate: int | None = 0,
                                kind: str = "auto") -> Figure:
    """Per-arm distribution of ``endpoint``.

    Continuous endpoints: a box plot per arm (box 25–75 %, whiskers 1.5 IQR, one box patch per
    arm) with the individual values jittered on top. Binary endpoints (responder, or only 0/1
    values): bars of the proportion per arm with 95 % Wilson intervals. ``kind`` forces
    ``"box"``, ``"violin"`` or ``"bar"``.
    """
    if endpoint not in ds:
        raise KeyError(f"{endpoint!r} is not in the results store (endpoints: {endpoint_names(ds)})")
    da = ds[endpoint]
    arms = _arms(ds)
    if kind == "auto":
        kind = "bar" if _is_binary(ds, endpoint) else "box"
    fig = _figure(max(5.0, 1.5 * len(arms) + 2), 4.0)
    ax = fig.add_subplot()
    vals = [_arm_values(ds, endpoint, a, replicate) for a in arms]
    vals = [v[np.isfinite(v)] for v in vals]
    pos = np.arange(1, len(arms) + 1)
    if kind == "bar":
        x = np.array([v.sum() for v in vals])
        n = np.array([v.size for v in vals])
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(n > 0, x / np.maximum(n, 1), np.nan)
        lo, hi = wilson(x, n)
        ax.bar(pos, p, color=[_COLORS[i % len(_COLORS)] for i in range(len(arms))], alpha=0.7,
               width=0.6, gid="proportion")
        _gid_data(ax.errorbar(pos, p, yerr=[p - lo, hi - p], fmt="none", ecolor="k", capsize=4), "ci")
        for xi, ni in zip(pos, n):
            ax.annotate(f"n={ni}", (xi, 0), xytext=(0, 3), textcoords="offset points", ha="center",
                        fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"proportion: {_label(da, endpoint)}")
    elif kind in ("box", "violin"):
        keep = [i for i, v in enumerate(vals) if v.size]
        data = [vals[i] for i in keep]
        if kind == "violin" and data:
            parts = ax.violinplot(data, positions=pos[keep], showmedians=True)
            for j, body in enumerate(parts["bodies"]):
                body.set_facecolor(_COLORS[keep[j] % len(_COLORS)])
        elif data:
            bp = ax.boxplot(data, positions=pos[keep], widths=0.5, patch_artist=True, showfliers=False)
            for j, box in enumerate(bp["boxes"]):
                box.set_facecolor(_COLORS[keep[j] % len(_COLORS)])
                box.set_alpha(0.45)
            for med in bp["medians"]:
                med.set_color("k")
                med.set_gid("median")
        rng = np.random.default_rng(0)
        for i in keep:
            v = vals[i]
            if v.size > 2000:
                v = rng.choice(v, 2000, replace=False)
            ax.scatter(pos[i] + rng.uniform(-0.15, 0.15, v.size), v, s=4, color="k", alpha=0.3,
                       lw=0, gid="points")
        ax.set_ylabel(_label(da, endpoint))
    else:
        raise ValueError(f"kind must be auto, box, violin or bar, got {kind!r}")
    ax.set_xticks(pos, [f"{a}\n(n={v.size})" if kind != "bar" else a for a, v in zip(arms, vals)])
    ax.set_xlim(0.4, len(arms) + 0.6)
    ax.set_xlabel("arm")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{ds.attrs.get('trial', '')}: {endpoint} by arm", fontsize=11)
    return fig


def plot_exposure_response(ds: xr.Dataset, exposure: str, response: str, *, replicate: int | None = 0,
                           bins: int = 5, log_x: bool = False) -> Figure:
    """Scatter of endpoint ``response`` against endpoint ``exposure``, coloured by arm.

    A binary ``response`` is shown as the proportion responding in ``bins`` exposure bins
    (quantiles of the pooled exposure over arms; gid ``"binned"``) with 95 % Wilson intervals,
    the individual 0/1 values jittered near the axis edges.
    """
    for name in (exposure, response):
        if name not in ds:
            raise KeyError(f"{name!r} is not in the results store (endpoints: {endpoint_names(ds)})")
    arms = _arms(ds)
    binary = _is_binary(ds, response)
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    xs, ys = [], []
    rng = np.random.default_rng(0)
    for k, arm in enumerate(arms):
        x = _arm_values(ds, exposure, arm, replicate)
        y = _arm_values(ds, response, arm, replicate)
        ok = np.isfinite(x) & np.isfinite(y)
        if log_x:
            ok &= x > 0
        x, y = x[ok], y[ok]
        xs.append(x)
        ys.append(y)
        yy = y + rng.uniform(-0.03, 0.03, y.size) if binary else y
        ax.scatter(x, yy, s=8, alpha=0.45 if binary else 0.6, color=_COLORS[k % len(_COLORS)], lw=0,
                   label=f"{arm} (n={x.size})", gid="points")
    if binary:
        x, y = np.concatenate(xs), np.concatenate(ys)
        if x.size:
            edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
            idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
            nb = max(len(edges) - 1, 1)
            n = np.bincount(idx, minlength=nb)[:nb]
            s = np.bincount(idx, weights=y, minlength=nb)[:nb]
            mid = np.array([np.median(x[idx == b]) if n[b] else np.nan for b in range(nb)])
            keep = n > 0
            p = s[keep] / n[keep]
            lo, hi = wilson(s[keep], n[keep])
            _gid_data(ax.errorbar(mid[keep], p, yerr=[p - lo, hi - p], fmt="o-", color="k", capsize=4, lw=1.5,
                        label="binned proportion (95 % Wilson CI)"), "binned")
        ax.set_ylim(-0.08, 1.08)
        ax.set_ylabel(f"proportion: {_label(ds[response], response)}")
    else:
        ax.set_ylabel(_label(ds[response], response))
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(_label(ds[exposure], exposure))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"{ds.attrs.get('trial', '')}: {response} vs {exposure}", fontsize=11)
    return fig


def exposure_response_pairs(ds: xr.Dataset) -> list[tuple[str, str]]:
    """(exposure, response) endpoint pairs worth plotting: the first exposure endpoint of the
    first output (AUC preferred) against every endpoint of another output and every responder."""
    spec = ds.insilico.spec
    if spec is None:
        return []
    eps = [e for e in spec["endpoints"] if e["name"] in ds]
    exp = [e for e in eps if e["type"] in EXPOSURE_TYPES]
    if not exp:
        return []
    exp.sort(key=lambda e: (e["type"] != "auc", e["type"] != "cmax"))
    x = exp[0]
    by_name = {e["name"]: e for e in eps}

    def output_of(e):
        while e["type"] == "responder" and e.get("of") in by_name:
            e = by_name[e["of"]]
        return e.get("output")

    return [(x["name"], e["name"]) for e in eps if e["name"] != x["name"] and output_of(e) != x.get("output")]


# ----------------------------------------------------------------------------------------------
# stored analysis: PTA, power
# ----------------------------------------------------------------------------------------------

def plot_pta(ds: xr.Dataset) -> Figure:
    """Probability of target attainment per group (arm/dose) with its 95 % CI, from the stored
    analysis (``analysis.pta``): one point per group (a categorical axis, so no joining line).
    Raises ``ValueError`` when the store has no PTA table."""
    rows = _rows(ds, "pta")
    if not rows:
        raise ValueError("the results store has no probability-of-target-attainment table "
                         "(add analysis.pta to the trial spec)")
    pta = _analysis_spec(ds).get("pta")
    groups = [str(r["group"]) for r in rows]
    p = np.array([r["pta"] for r in rows], dtype=float)
    lo = np.array([r["ci_lower"] for r in rows], dtype=float)
    hi = np.array([r["ci_upper"] for r in rows], dtype=float)
    order = list(range(len(rows)))
    if pta is not None and pta["by"] == ["arm"]:
        arms = _arms(ds)
        order.sort(key=lambda i: arms.index(groups[i]) if groups[i] in arms else len(arms))
    groups = [groups[i] for i in order]
    p, lo, hi = p[order], lo[order], hi[order]
    fig = _figure(max(5.0, 1.3 * len(groups) + 2), 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    # groups are categories: points with their CI, not joined by a line
    _gid_data(ax.errorbar(x, p, yerr=[p - lo, hi - p], fmt="o", ms=7, capsize=5, color=_COLORS[0], lw=1.5,
                label="PTA (95 % CI)"), "pta")
    ax.set_xticks(x, groups)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylim(-0.02, 1.05)
    ax.set_ylabel("probability of target attainment (1)")
    by = ", ".join(pta["by"]) if pta else "group"
    ax.set_xlabel(by)
    ax.grid(alpha=0.3)
    title = "probability of target attainment"
    if pta is not None:
        units = ds[pta["endpoint"]].attrs.get("units", "") if pta["endpoint"] in ds else ""
        sign = "≥" if pta["direction"] == "above" else "≤"
        title += f": {pta['endpoint']} {sign} {pta['threshold']:g} {units}".rstrip()
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_power(ds: xr.Dataset, target: float = 0.8) -> Figure:
    """Power vs N per arm (one line per arm over the numeric N axis, 95 % CI error bars) from the
    stored ``analysis.power`` table; the probability of success of the simulated trial size
    (``probability_of_success``) is added as diamonds at that N. Without a sample-size analysis
    (no power table, or one N per arm) there is no curve to draw: the estimates are shown per arm
    on a categorical axis (points with their CI, no joining line) with a note saying so. Raises
    ``ValueError`` when the store has neither table."""
    power, pos = _rows(ds, "power"), _rows(ds, "probability_of_success")
    if not power and not pos:
        raise ValueError("the results store has no power or probability-of-success table "
                         "(add analysis.sample_size or analysis.success to the trial spec)")
    arms = _arms(ds)
    fig = _figure(6.5, 4.3)
    ax = fig.add_subplot()
    names = list(dict.fromkeys([str(r["arm"]) for r in power] + [str(r["arm"]) for r in pos]))
    color = {n: _COLORS[(arms.index(n) if n in arms else i) % len(_COLORS)] for i, n in enumerate(names)}
    curves = {arm: sorted((r for r in power if str(r["arm"]) == arm), key=lambda r: r["n"])
              for arm in dict.fromkeys(str(r["arm"]) for r in power)}
    has_curve = any(len({r["n"] for r in rr}) > 1 for rr in curves.values())
    if has_curve:
        _power_curves(ds, ax, curves, pos, color)
    else:
        _power_points(ds, ax, curves, pos, color, names)
    ax.axhline(target, color="0.4", ls=":", lw=1)
    ax.set_ylim(-0.02, 1.05)
    ax.set_ylabel("power / probability of success (1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    title = "power vs N per arm" if has_curve else "power / probability of success per arm"
    success = _analysis_spec(ds).get("success")
    if success is not None:
        title += f" (success: {success['endpoint']})"
    ax.set_title(title, fontsize=11)
    return fig


def _ci(rows: list[dict], key: str):
    e = np.array([r[key] for r in rows], dtype=float)
    lo = np.array([r["ci_lower"] for r in rows], dtype=float)
    hi = np.array([r["ci_upper"] for r in rows], dtype=float)
    return e, [e - lo, hi - e]


def _power_curves(ds: xr.Dataset, ax, curves: dict, pos: list[dict], color: dict) -> None:
    """Power curves over N (a numeric axis: lines are interpolation between computed Ns) and
    the PoS of the simulated trial as diamonds at its N."""
    for arm, rr in curves.items():
        p, err = _ci(rr, "power")
        ref = rr[0].get("reference")
        n = np.array([r["n"] for r in rr], dtype=float)
        _gid_data(ax.errorbar(n, p, yerr=err, fmt="o-", capsize=4, color=color[arm],
                              label=f"{arm}" + (f" vs {ref}" if isinstance(ref, str) else "")), "power")
    n_arm = _n_per_arm(ds) if pos else {}
    for r in pos:
        arm = str(r["arm"])
        e, err = _ci([r], "estimate")
        _gid_data(ax.errorbar([n_arm.get(arm, np.nan)], e, yerr=err, fmt="D", ms=7, capsize=4, color=color[arm],
                              mfc="white", label=f"PoS {arm} ({r.get('n_replicates', '?')} replicates)"), "pos")
    ax.set_xlabel("subjects per arm (N)")


def _power_points(ds: xr.Dataset, ax, curves: dict, pos: list[dict], color: dict, names: list[str]) -> None:
    """No sample-size analysis: each arm's power at its one N and its PoS as points with their
    CI on a categorical arm axis, and a note that no power curve exists."""
    x = {n: i for i, n in enumerate(names)}
    n_arm = _n_per_arm(ds) if "status" in ds and "replicate" in ds.dims else {}
    for arm, rr in curves.items():
        p, err = _ci(rr, "power")
        _gid_data(ax.errorbar([x[arm] - 0.1], p, yerr=err, fmt="o", ms=7, capsize=4, color=color[arm],
                              label=f"power {arm} at N = {rr[0]['n']}"), "power")
    for r in pos:
        arm = str(r["arm"])
        e, err = _ci([r], "estimate")
        _gid_data(ax.errorbar([x[arm] + 0.1], e, yerr=err, fmt="D", ms=7, capsize=4, color=color[arm], mfc="white",
                              label=f"PoS {arm} ({r.get('n_replicates', '?')} replicates)"), "pos")
    ax.set_xticks(range(len(names)), [f"{n}\n(N={n_arm[n]:.0f})" if n in n_arm else n for n in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xlabel("arm")
    ax.text(0.02, 0.98, "no sample-size analysis: estimates at the simulated N only\n"
                        "(add analysis.sample_size for power vs N)", transform=ax.transAxes, ha="left", va="top",
            fontsize=8, color="0.3", gid="note")


def _n_per_arm(ds: xr.Dataset) -> dict[str, float]:
    """Mean number of simulated subjects per arm and replicate (the trial's actual N per arm)."""
    n = store.simulated_pairs(ds).sum("subject").mean("replicate")
    return {str(a): float(v) for a, v in zip(n["arm"].values, n.values)}


# ----------------------------------------------------------------------------------------------
# everything
# ----------------------------------------------------------------------------------------------

def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")


def figures(ds: xr.Dataset, *, n_individual: int = 20, seed: int = 0):
    """Yield ``(name, title, Figure)`` for every plot applicable to ``ds`` (used by
    :func:`plot_all` and the HTML report). Figures are created lazily, one at a time."""
    for out in profile_outputs(ds):
        title = f"{_label(ds[out], out)} over time"
        yield f"profiles_{out}", title, lambda o=out: plot_profiles(ds, o, n_individual, seed)
        if ds[out].attrs.get("units") in ("mg/L", "ug/L", "µg/L", "ng/mL", "mmol/L", "nmol/L") or out == "conc":
            yield (f"profiles_{out}_log", f"{title} (log scale)",
                   lambda o=out: plot_profiles(ds, o, n_individual, seed, log=True))
    for ep in endpoint_names(ds):
        yield f"endpoint_{ep}", f"{ep} by arm", lambda e=ep: plot_endpoint_distributions(ds, e)
    for x, y in exposure_response_pairs(ds):
        yield f"exposure_response_{y}_vs_{x}", f"{y} vs {x}", lambda a=x, b=y: plot_exposure_response(ds, a, b)
    a = ds.insilico.analysis
    if "pta" in a:
        yield "pta", "probability of target attainment", lambda: plot_pta(ds)
    if "power" in a or "probability_of_success" in a:
        yield "power", "power vs N per arm", lambda: plot_power(ds)


def plot_all(ds: xr.Dataset, out_dir: str | Path, *, dpi: int = 110, n_individual: int = 20,
             seed: int = 0, overwrite: bool = False) -> list[Path]:
    """Write a PNG into ``out_dir`` (created if needed) for every applicable plot; returns the paths:
    ``profiles_<output>.png`` (and ``profiles_conc_log.png``), ``endpoint_<name>.png``,
    ``exposure_response_<y>_vs_<x>.png``, ``pta.png``, ``power.png``.

    The folder may hold other files; the PNGs written are listed in its manifest
    (`insilico.store.MANIFEST`). An existing PNG of the same name is refused (``SpecError``
    naming ``--out``) unless ``overwrite``, which replaces only the PNGs of an earlier
    `plot_all` (those in the manifest) and refuses files insilico did not write."""
    out_dir = store.check_out(out_dir, folder=True)
    ds = _loaded(ds)
    figs = list(figures(ds, n_individual=n_individual, seed=seed))
    paths = [out_dir / f"{_slug(name)}.png" for name, _title, _make in figs]
    store.clear_owned_files(out_dir, "plots", [p.name for p in paths], overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for path, (_name, _title, make) in zip(paths, figs):
            fig = make()
            fig.savefig(path, dpi=dpi)
            written.append(path)
    finally:
        store.write_manifest(out_dir, "plots", written)
    return paths


def _loaded(ds: xr.Dataset) -> xr.Dataset:
    """Load the (small) per-subject variables once so repeated plots do not re-read Zarr chunks."""
    keep = set(profile_outputs(ds)) | set(endpoint_names(ds)) | {"status"}
    try:
        return ds.assign({k: ds[k].load() for k in keep if k in ds})
    except Exception:
        return ds
