"""Goodness-of-fit plots of a population fit, and the VPC plot.

Every function takes the fit ``xarray.Dataset`` (`insilico.estimation.FitResult.to_dataset` or
`insilico.store.open_fit`) — :func:`plot_vpc` the Dataset of `insilico.estimation.vpc` — and
returns a :class:`matplotlib.figure.Figure` built on an Agg canvas (no ``pyplot`` state), as
`insilico.analysis.plots` does. Observations are markers; the lines are the identity (DV vs
predictions), zero (residuals), reference densities and quantiles, and a smoother.

Smoother (:func:`smooth`): local linear regression with tricube weights over the nearest
``frac`` = 2/3 of the points (LOWESS without robustness iterations; Cleveland 1979), evaluated
at 50 points spanning the x range. It shows a trend in residuals; it is not a fit.

Residual plots draw the fitted observations (finite DV) of every subject; a subject whose EBE
did not converge (``eta_status`` > 0) still appears (its PRED and CWRES exist), its η is left
out of the η plots. :func:`fit_figures` lists the plots applicable to a fit (used by the fit
report).
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from insilico.errors import SpecError

__all__ = [
    "covariate_names",
    "fit_figures",
    "has_blq",
    "plot_cwres_vs_pred",
    "plot_cwres_vs_time",
    "plot_dv_vs_ipred",
    "plot_dv_vs_pred",
    "plot_eta_histograms",
    "plot_eta_vs_covariates",
    "plot_npde",
    "plot_vpc",
    "smooth",
]

_POINT = {"s": 12, "alpha": 0.55, "color": "#1f77b4", "edgecolors": "none"}
_SMOOTH = {"color": "#d62728", "lw": 1.8}
_REF = {"color": "0.2", "lw": 1.0}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def smooth(x, y, frac: float = 2 / 3, n_points: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """LOWESS-style smoother (see module docstring): ``(grid, fitted)`` with ``grid`` ``n_points``
    values from min(x) to max(x). Non-finite pairs are dropped; fewer than 3 points give empty
    arrays."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0:
        return np.array([]), np.array([])
    grid = np.linspace(x.min(), x.max(), n_points)
    k = max(3, int(np.ceil(frac * x.size)))
    fitted = np.empty(n_points)
    for i, g in enumerate(grid):
        d = np.abs(x - g)
        h = np.partition(d, k - 1)[k - 1]
        w = np.clip(1 - (d / (h * (1 + 1e-12) if h > 0 else 1.0)) ** 3, 0, None) ** 3
        sw = w.sum()
        mx, my = (w * x).sum() / sw, (w * y).sum() / sw
        sxx = (w * (x - mx) ** 2).sum()
        slope = (w * (x - mx) * (y - my)).sum() / sxx if sxx > 0 else 0.0
        fitted[i] = my + slope * (g - mx)
    return grid, fitted


def _obs(ds: xr.Dataset, name: str) -> np.ndarray:
    """Values of per-observation variable ``name`` at the fitted observations (finite DV)."""
    keep = np.isfinite(np.asarray(ds["DV"].values, dtype=float))
    return np.asarray(ds[name].values, dtype=float)[keep]


def _output_label(ds: xr.Dataset, what: str) -> str:
    units = ds["DV"].attrs.get("units")
    return f"{what} ({units})" if units else what


def _versus(ds: xr.Dataset, y: str, x: str, log: bool) -> Figure:
    """``y`` vs ``x`` with the identity line (both per observation)."""
    xv, yv = _obs(ds, x), _obs(ds, y)
    fig = _figure(5.2, 5.0)
    ax = fig.add_subplot()
    note = ""
    if log:
        pos = (xv > 0) & (yv > 0)
        if (~pos).any():
            note = f" ({int((~pos).sum())} non-positive values not shown)"
        xv, yv = xv[pos], yv[pos]
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.scatter(xv, yv, label=f"observations (n = {xv.size}){note}", **_POINT)
    both = np.concatenate([xv, yv])
    both = both[np.isfinite(both)]
    if both.size:
        lo, hi = both.min(), both.max()
        ax.plot([lo, hi], [lo, hi], ls="--", label="identity", gid="identity", **_REF)
    gx, gy = smooth(np.log(xv) if log else xv, np.log(yv) if log else yv)
    if gx.size:
        ax.plot(np.exp(gx) if log else gx, np.exp(gy) if log else gy, label="smoother", gid="smoother", **_SMOOTH)
    ax.set_xlabel(_output_label(ds, x))
    ax.set_ylabel(_output_label(ds, "DV"))
    ax.set_title(f"DV vs {x}" + (" (log scale)" if log else ""))
    ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_dv_vs_pred(ds: xr.Dataset, *, log: bool = False) -> Figure:
    """Observations vs population predictions (PRED, η = 0) with the identity line; ``log``:
    log–log axes (non-positive values left out and counted in the legend)."""
    return _versus(ds, "DV", "PRED", log)


def plot_dv_vs_ipred(ds: xr.Dataset, *, log: bool = False) -> Figure:
    """Observations vs individual predictions (IPRED, at the EBE) with the identity line."""
    return _versus(ds, "DV", "IPRED", log)


def _residual_plot(ds: xr.Dataset, x: str, xlabel: str, residual: str = "CWRES") -> Figure:
    xv, rv = _obs(ds, x), _obs(ds, residual)
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot()
    ax.scatter(xv, rv, label=f"{residual} (n = {int(np.isfinite(rv).sum())})", **_POINT)
    ax.axhline(0.0, ls="-", gid="zero", **_REF)
    for v in (-1.96, 1.96):
        ax.axhline(v, ls=":", color="0.5", lw=0.8)
    gx, gy = smooth(xv, rv)
    if gx.size:
        ax.plot(gx, gy, label="smoother", gid="smoother", **_SMOOTH)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(residual)
    ax.set_title(f"{residual} vs {x} (dotted: ±1.96)")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def plot_cwres_vs_time(ds: xr.Dataset) -> Figure:
    """Conditional weighted residuals vs time, zero line and smoother."""
    return _residual_plot(ds, "time", f"time ({ds['time'].attrs.get('units', 'h')})")


def plot_cwres_vs_pred(ds: xr.Dataset) -> Figure:
    """Conditional weighted residuals vs PRED, zero line and smoother."""
    return _residual_plot(ds, "PRED", _output_label(ds, "PRED"))


def _omega_variances(ds: xr.Dataset) -> np.ndarray:
    """ω² of each η: the estimate of ``OMEGA(i,i)``."""
    names = [str(p) for p in ds["param"].values]
    return np.array([float(ds["estimate"].values[names.index(f"OMEGA({i + 1},{i + 1})")])
                     for i in range(ds.sizes["eta"])])


def _etas(ds: xr.Dataset) -> np.ndarray:
    """EBEs (subjects, eta) of subjects whose EBE converged (``eta_status`` 0)."""
    eta = np.asarray(ds["eta_hat"].values, dtype=float)
    ok = np.asarray(ds["eta_status"].values) == 0 if "eta_status" in ds else np.ones(eta.shape[0], bool)
    return eta[ok]


def _grid(n: int, width: float = 3.4, height: float = 3.0):
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = _figure(width * cols, height * rows)
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def plot_eta_histograms(ds: xr.Dataset) -> Figure:
    """One histogram (density scale) of the EBEs per η with the N(0, ω²) density of its
    estimated variance; the title gives the η shrinkage (SD based)."""
    k = ds.sizes.get("eta", 0)
    if not k:
        raise SpecError("eta", "the fit has no random effects (no bsv)")
    eta, var = _etas(ds), _omega_variances(ds)
    shrink = np.asarray(ds["eta_shrinkage"].values, dtype=float)
    fig, axes = _grid(k)
    for i, ax in enumerate(axes):
        v = eta[:, i]
        sd = np.sqrt(var[i])
        ax.hist(v, bins="auto", density=True, color="#9ecae1", edgecolor="white", label=f"EBE (n = {v.size})")
        lim = max(4 * sd, np.abs(v).max() if v.size else 0.0)
        x = np.linspace(-lim, lim, 200)
        ax.plot(x, stats.norm.pdf(x, 0.0, sd), label=f"N(0, ω² = {var[i]:.3g})", gid="density", **_SMOOTH)
        ax.set_xlabel(f"{ds['eta'].values[i]} ({ds['eta_parameter'].values[i]})")
        ax.set_ylabel("density")
        ax.set_title(f"shrinkage {100 * shrink[i]:.1f} %", fontsize=10)
        ax.legend(fontsize=7)
    return fig


def _covariate_table(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """{name: values per subject} of the stored covariates (numeric and text)."""
    out = {}
    if "covariates" in ds:
        for j, c in enumerate(ds["covariate"].values):
            out[str(c)] = np.asarray(ds["covariates"].values[:, j], dtype=float)
    if "covariate_text" in ds:
        for j, c in enumerate(ds["covariate_text_name"].values):
            out[str(c)] = np.asarray(ds["covariate_text"].values[:, j]).astype(str)
    return out


def covariate_names(ds: xr.Dataset) -> list[str]:
    """Covariates stored in the fit (the data's covariate columns)."""
    return list(_covariate_table(ds))


def _is_categorical(v: np.ndarray) -> bool:
    return v.dtype.kind in "USO" or np.unique(v[np.isfinite(v)]).size <= 5


def plot_eta_vs_covariates(ds: xr.Dataset, covariates: list[str] | None = None) -> Figure:
    """EBEs vs covariates: one row per η, one column per covariate (default: every stored one).
    Continuous covariates (more than 5 distinct values): scatter with zero line and smoother;
    categorical ones: box plots per category. `SpecError` when the fit stores no covariates or
    a named one is missing."""
    table = _covariate_table(ds)
    names = list(table) if covariates is None else list(covariates)
    if not names:
        raise SpecError("covariates", "the fit stores no covariates (the data set had no covariate columns)")
    for c in names:
        if c not in table:
            raise SpecError("covariates", f"{c!r} is not a stored covariate ({', '.join(table) or 'none'})")
    k = ds.sizes.get("eta", 0)
    if not k:
        raise SpecError("eta", "the fit has no random effects (no bsv)")
    eta = np.asarray(ds["eta_hat"].values, dtype=float)
    ok = np.asarray(ds["eta_status"].values) == 0 if "eta_status" in ds else np.ones(eta.shape[0], bool)
    fig = _figure(max(4.5, 3.3 * len(names)), 2.8 * k)
    for i in range(k):
        for j, c in enumerate(names):
            ax = fig.add_subplot(k, len(names), i * len(names) + j + 1)
            x, y = table[c][ok], eta[ok, i]
            if _is_categorical(x):
                labels = sorted(set(x.tolist()), key=str)
                ax.boxplot([y[x == lab] for lab in labels], tick_labels=[str(lab) for lab in labels])
            else:
                ax.scatter(x, y, **_POINT)
                gx, gy = smooth(x, y)
                if gx.size:
                    ax.plot(gx, gy, gid="smoother", **_SMOOTH)
            ax.axhline(0.0, gid="zero", **_REF)
            if i == k - 1:
                ax.set_xlabel(c)
            if j == 0:
                ax.set_ylabel(f"{ds['eta'].values[i]} ({ds['eta_parameter'].values[i]})")
    return fig


def plot_npde(ds: xr.Dataset) -> Figure:
    """NPDE: normal QQ plot (theoretical N(0, 1) quantiles at (i − 0.5)/n, identity line and the
    pointwise 95 % band of N(0, 1) order statistics from their Beta distribution) and histogram
    with the N(0, 1) density."""
    if "NPDE" not in ds:
        raise SpecError("NPDE", "the fit has no NPDE (fitted with npde_samples=0)")
    v = np.sort(_obs(ds, "NPDE"))
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        raise SpecError("NPDE", "no finite NPDE values")
    i = np.arange(1, n + 1)
    theo = stats.norm.ppf((i - 0.5) / n)
    lo, hi = stats.norm.ppf(stats.beta.ppf([[0.025], [0.975]], i, n - i + 1))
    fig = _figure(9.5, 4.3)
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax.fill_between(theo, lo, hi, color="0.85", label="95 % band of N(0, 1) order statistics")
    ax.plot(theo, theo, ls="--", label="identity", gid="identity", **_REF)
    ax.scatter(theo, v, label=f"NPDE (n = {n})", **_POINT)
    ax.set_xlabel("N(0, 1) quantile")
    ax.set_ylabel("NPDE quantile")
    ax.set_title("NPDE normal QQ plot")
    ax.legend(fontsize=8, loc="upper left")
    ax2.hist(v, bins="auto", density=True, color="#9ecae1", edgecolor="white", label="NPDE")
    x = np.linspace(min(-4, v.min()), max(4, v.max()), 200)
    ax2.plot(x, stats.norm.pdf(x), label="N(0, 1)", gid="density", **_SMOOTH)
    ax2.set_xlabel("NPDE")
    ax2.set_ylabel("density")
    ax2.set_title(f"mean {v.mean():.3f}, SD {v.std(ddof=1) if n > 1 else float('nan'):.3f}")
    ax2.legend(fontsize=8)
    return fig


def has_blq(v: xr.Dataset) -> bool:
    """Whether the VPC ``v`` has BLQ records in its bins (then :func:`plot_vpc` adds the BLQ panel)."""
    return int(v.attrs.get("n_blq", 0)) > 0 and "blq_observed" in v


def plot_vpc(v: xr.Dataset, *, corrected: bool = False, log: bool = False) -> Figure:
    """VPC (``corrected``: pcVPC) from `insilico.estimation.vpc`: observations (markers), the
    observed percentiles (lines: solid median, dashed outer percentiles) and the simulated
    ``ci`` intervals of the same percentiles (shaded: red for the median, blue for the outer
    ones); statistics are drawn at each bin's median time and joined across bins.

    When the data have BLQ records (``v.attrs["n_blq"]`` > 0) a second panel under the VPC, on
    the same time axis, shows the fraction of records below the LLOQ per bin: observed (line with
    markers) and the simulated median (dashed) with its ``ci`` interval (shaded), as the ``vpc``
    R package's ``vpc_cens`` and PsN's vpc with ``-lloq`` do; the one LLOQ of all records, when
    there is one, is a dotted line on the VPC panel (the pcVPC: not drawn, corrected values are on
    another scale).

    With BLQ records the percentiles are censored (`insilico.estimation.vpc`): an observed
    percentile below the LLOQ (NaN) is not drawn (its line breaks there), nor a simulated median;
    a simulated interval whose lower bound is below the LLOQ is shaded from the bin's LLOQ
    (``bin_lloq``, pcVPC ``pc_bin_lloq``) up, and one whose upper bound is too is not drawn. The
    title counts the observed percentiles inside their interval among the observable (not
    censored) cells."""
    pre = "pc_" if corrected else ""
    t = v["bin_time"].values
    ok = np.isfinite(t)
    blq = has_blq(v)
    fig = _figure(7.5, 7.6 if blq else 5.6)
    if blq:
        ax, ax_blq = fig.subplots(2, 1, sharex=True, height_ratios=[3.0, 1.3])
    else:
        ax, ax_blq = fig.add_subplot(), None
    y = v["obs_pcdv" if corrected else "obs_dv"].values
    ax.scatter(v["obs_time"].values, y, s=8, color="0.55", alpha=0.45, edgecolors="none",
               label="prediction-corrected observations" if corrected else "observations")
    q = v["percentile"].values
    mid = int(np.argmin(np.abs(q - 50)))
    ci = 100 * v.attrs.get("ci", 0.95)
    names = {True: f"{q[mid]:g}th percentile", False: ", ".join(f"{p:g}th" for j, p in enumerate(q) if j != mid)
             + " percentiles"}
    for j in range(q.size):
        central = j == mid
        color = "#d62728" if central else "#1f77b4"
        first = central or j == min(i for i in range(q.size) if i != mid)
        ax.fill_between(t[ok], _band_lower(v, pre, j)[ok], v[f"{pre}sim_upper"].values[ok, j], color=color,
                        alpha=0.22, lw=0, label=f"simulated {names[central]}: {ci:g} % CI" if first else None,
                        gid=f"band{j}")
        ax.plot(t[ok], v[f"{pre}observed"].values[ok, j], color=color, lw=1.8, ls="-" if central else "--",
                label=f"observed {names[central]}" if first else None, gid=f"observed{j}")
    observable = np.isfinite(v[f"{pre}observed"].values[ok])
    inside = v[f"{pre}inside"].values[ok][observable]
    n_hidden = int(observable.size - observable.sum())
    units = v.attrs.get("units")
    lloq = float(v.attrs.get("lloq", np.nan))
    if blq and not corrected and np.isfinite(lloq):
        ax.axhline(lloq, ls=":", color="0.3", lw=1.0, label=f"LLOQ {lloq:g}" + (f" {units}" if units else ""),
                   gid="lloq")
    what = ("prediction-corrected " if corrected else "") + str(v.attrs.get("output", "DV"))
    ax.set_ylabel(f"{what} ({units})" if units else what)
    if log:
        ax.set_yscale("log")
    ax.set_title(f"{'pcVPC' if corrected else 'VPC'}: {v.attrs.get('n_sim')} simulations; observed percentile in "
                 f"the simulated CI in {int(inside.sum())} of {inside.size} "
                 + (f"observable cells ({n_hidden} below the LLOQ)" if n_hidden else "bin × percentile cells"),
                 fontsize=9)
    if blq:
        _blq_panel(ax_blq, v, t, ok, ci)
    (ax_blq or ax).set_xlabel("time (h)")
    fig.legend(fontsize=7, loc="outside lower center", ncols=3)
    return fig


def _band_lower(v: xr.Dataset, pre: str, j: int) -> np.ndarray:
    """Lower edge of the simulated band of percentile ``j``: ``sim_lower``, or the bin's LLOQ where
    the lower bound is censored (NaN) and the upper bound is not."""
    lo, hi = v[f"{pre}sim_lower"].values[:, j], v[f"{pre}sim_upper"].values[:, j]
    if f"{pre}bin_lloq" not in v:
        return lo
    return np.where(np.isnan(lo) & np.isfinite(hi), v[f"{pre}bin_lloq"].values, lo)


def _blq_panel(ax, v: xr.Dataset, t: np.ndarray, ok: np.ndarray, ci: float) -> None:
    """The BLQ fraction panel of :func:`plot_vpc`."""
    obs = v["blq_observed"].values[ok]
    ax.fill_between(t[ok], v["blq_sim_lower"].values[ok], v["blq_sim_upper"].values[ok], color="#2ca02c",
                    alpha=0.25, lw=0, label=f"simulated fraction BLQ: {ci:g} % CI", gid="blq_band")
    ax.plot(t[ok], v["blq_sim_median"].values[ok], color="#2ca02c", lw=1.4, ls="--",
            label="simulated fraction BLQ: median", gid="blq_sim_median")
    ax.plot(t[ok], obs, color="0.1", lw=1.6, marker="o", ms=3.5, label="observed fraction BLQ", gid="blq_observed")
    inside = v["blq_inside"].values[ok]
    ax.set_ylim(-0.02, min(1.02, max(0.1, float(np.nanmax(np.r_[obs, v["blq_sim_upper"].values[ok]])) + 0.05)))
    ax.set_ylabel("fraction < LLOQ")
    ax.set_title(f"fraction below the LLOQ ({int(v.attrs['n_blq'])} BLQ records): observed in the simulated CI "
                 f"in {int(inside.sum())} of {inside.size} bins", fontsize=9)


def _has_finite(ds: xr.Dataset, name: str) -> bool:
    return name in ds and bool(np.isfinite(np.asarray(ds[name].values, dtype=float)).any())


def fit_figures(ds: xr.Dataset, vpc: xr.Dataset | None = None):
    """Yield ``(name, title, make)`` for every plot applicable to the fit ``ds`` (``make()``
    returns the Figure; figures are created one at a time): DV vs PRED/IPRED (linear and log),
    CWRES vs time and PRED, η histograms, η vs covariates, NPDE, and the VPC and pcVPC when
    ``vpc`` is given (each with the BLQ fraction panel when the data have BLQ records)."""
    yield "dv_vs_pred", "DV vs PRED", lambda: plot_dv_vs_pred(ds)
    yield "dv_vs_ipred", "DV vs IPRED", lambda: plot_dv_vs_ipred(ds)
    yield "dv_vs_pred_log", "DV vs PRED (log scale)", lambda: plot_dv_vs_pred(ds, log=True)
    yield "dv_vs_ipred_log", "DV vs IPRED (log scale)", lambda: plot_dv_vs_ipred(ds, log=True)
    if _has_finite(ds, "CWRES"):
        yield "cwres_vs_time", "CWRES vs time", lambda: plot_cwres_vs_time(ds)
        yield "cwres_vs_pred", "CWRES vs PRED", lambda: plot_cwres_vs_pred(ds)
    if ds.sizes.get("eta", 0):
        yield "eta_histograms", "η histograms with N(0, ω²)", lambda: plot_eta_histograms(ds)
        if covariate_names(ds):
            yield "eta_vs_covariates", "η vs covariates", lambda: plot_eta_vs_covariates(ds)
    if _has_finite(ds, "NPDE"):
        yield "npde", "NPDE", lambda: plot_npde(ds)
    if vpc is not None:
        blq = " with the fraction below the LLOQ" if has_blq(vpc) else ""
        yield "vpc", f"visual predictive check{blq}", lambda: plot_vpc(vpc)
        yield "pcvpc", f"prediction-corrected visual predictive check{blq}", lambda: plot_vpc(vpc, corrected=True)

