"""BLQ fraction of the VPC (Bergstrand & Karlsson 2009; PsN vpc -lloq; vpc_cens of the vpc R
package): the simulated fraction against the analytic P(Y < LLOQ) by Gauss-Hermite quadrature over
eta, each record compared with its own LLOQ; the observed fraction of data from the true model
inside the simulated intervals; the second panel drawn with BLQ data and not without; the fit
report's BLQ table and figure captions. Censored percentiles (quantile_cens of the vpc R package,
PsN vpc -lloq): the observed ones against a direct computation from the data, the coverage of
the true model's VPC, and the simulated median against the analytic median by quadrature.

Data: 1-cmt IV bolus 100 mg, CL log-normal (omega 0.09), V fixed, proportional error 15 %, 8
samples per subject, LLOQ 1.2 mg/L for odd IDs and 1.6 mg/L for even IDs (about 30 % BLQ)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import optimize, stats

from insilico.analysis import fit_plots as FP
from insilico.analysis.fit_report import render_fit_report
from insilico.estimation import FOCEI, fit, vpc
from tests.estimation.conftest import IV_MODEL, IV_TIMES, IV_TRUTH

N_SUBJECTS, N_SIM, DOSE = 40, 200, 100.0
LLOQ = {1: 1.2, 0: 1.6}                      # by ID parity (mg/L)

TRUTH = {"model": {"name": "1cmt_iv"},
         "parameters": {"CL": {"typical": IV_TRUTH["CL"]}, "V": {"typical": IV_TRUTH["V"]}},
         "bsv": {"parameters": ["CL"], "variance": [IV_TRUTH["omega"]]},
         "residual_error": {"type": "proportional", "proportional": IV_TRUTH["prop"]}}


def _conc(cl, t):
    """1-cmt IV bolus closed form (mg/L): DOSE/V exp(-CL/V t)."""
    v = IV_TRUTH["V"]
    return DOSE / v * np.exp(-np.multiply.outer(cl, t) / v)


def _data(n: int, seed: int) -> pd.DataFrame:
    """Records below their subject's LLOQ are BLQ = 1 with DV = LLOQ / 2 (not used)."""
    t = IV_TRUTH
    rng = np.random.default_rng(seed)
    f = _conc(t["CL"] * np.exp(rng.normal(size=n) * np.sqrt(t["omega"])), IV_TIMES)
    y = f * (1 + t["prop"] * rng.normal(size=f.shape))
    rows = []
    for i in range(n):
        lloq = LLOQ[(i + 1) % 2]
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=DOSE, EVID=1, DV=".", BLQ=0, LLOQ=lloq))
        rows += [dict(ID=i + 1, TIME=tt, AMT=0.0, EVID=0, DV=v if v >= lloq else lloq / 2, BLQ=int(v < lloq),
                      LLOQ=lloq) for tt, v in zip(IV_TIMES, y[i])]
    return pd.DataFrame(rows)


def _p_below(lloq: float, t) -> np.ndarray:
    """P(Y < LLOQ) at times ``t``: the integral over eta ~ N(0, omega) of
    Phi((LLOQ / f(t, eta) - 1) / sigma) (Y = f (1 + sigma eps)), by 80-node Gauss-Hermite."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    f = _conc(IV_TRUTH["CL"] * np.exp(np.sqrt(IV_TRUTH["omega"]) * x), np.asarray(t))     # (nodes, times)
    return (w[:, None] * stats.norm.cdf((lloq / f - 1) / IV_TRUTH["prop"])).sum(0) / np.sqrt(2 * np.pi)


def _fit_like(model: dict) -> xr.Dataset:
    return xr.Dataset(attrs={"population_model": json.dumps(model)})


@pytest.fixture(scope="module")
def data():
    return _data(N_SUBJECTS, seed=8)


@pytest.fixture(scope="module")
def true_vpc(data):
    return vpc(_fit_like(TRUTH), data, n_sim=N_SIM, seed=2)


def test_simulated_blq_fraction_matches_quadrature(true_vpc, data):
    """One bin per sampling time. Reference per bin: the mean over its records of P(Y < own LLOQ)
    (half the subjects at each LLOQ). Mean over replicates within 4 Monte Carlo SEs (records in a
    bin are independent subjects: per-replicate SD sqrt(sum p(1-p)) / n); the median (a multiple
    of 1/40) within 4 x 1.2533 SEs plus the 1/40 grid step."""
    v = true_vpc
    assert v.sizes["bin"] == IV_TIMES.size and v.attrs["n_blq"] == int(data.BLQ.sum())
    np.testing.assert_array_equal(v["n_obs"].values + v["n_blq"].values, N_SUBJECTS)
    p1, p2 = _p_below(LLOQ[1], IV_TIMES), _p_below(LLOQ[0], IV_TIMES)
    ref = (p1 + p2) / 2
    sd = np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) * N_SUBJECTS / 2) / N_SUBJECTS
    se = sd / np.sqrt(N_SIM)
    sim = v["blq_sim_fraction"].values
    assert sim.shape == (N_SIM, IV_TIMES.size)
    np.testing.assert_array_less(np.abs(sim.mean(0) - ref), 4 * se + 1e-12)
    np.testing.assert_array_less(np.abs(v["blq_sim_median"].values - ref), 4 * 1.2533 * se + 1 / N_SUBJECTS)
    assert ref[-1] > 0.6 and ref[0] < 1e-3           # the check covers late bins with a large BLQ fraction
    # one LLOQ for every record (the lower one) would be a different reference: the check can fail
    assert np.max(np.abs(sim.mean(0) - p1) / (se + 1e-12)) > 20
    np.testing.assert_allclose(v["blq_sim_lower"].values, np.percentile(sim, 2.5, axis=0))
    np.testing.assert_allclose(v["blq_sim_upper"].values, np.percentile(sim, 97.5, axis=0))


def test_observed_blq_fraction_of_true_model_data_is_inside(true_vpc, data):
    """Observed fraction = BLQ records / records per bin; inside the simulated 95 % interval in at
    least 6 of the 8 bins (nominal 95 % each; 8 of 8 with this seed)."""
    v = true_vpc
    obs = data[data.EVID == 0]
    expected = obs.groupby("TIME").BLQ.mean().to_numpy()
    np.testing.assert_allclose(v["blq_observed"].values, expected)
    assert 0.25 < obs.BLQ.mean() < 0.35
    assert int(v["blq_inside"].sum()) >= 6, v["blq_inside"].values
    # the plotted observations are the quantified records (the percentiles use all records, censored)
    assert v.sizes["observation"] == int((obs.BLQ == 0).sum())
    np.testing.assert_allclose(np.sort(v["obs_dv"].values), np.sort(obs.DV[obs.BLQ == 0].astype(float)))
    assert np.isnan(v.attrs["lloq"])                   # two LLOQs: no single line


def _quantiles(p: float, t: float) -> tuple[float, float]:
    """The p-quantile of Y at time t (P(Y < y) = p by the 80-node Gauss-Hermite mixture over eta)
    and the density of Y there (mg/L, L/mg)."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / np.sqrt(2 * np.pi)
    f = _conc(IV_TRUTH["CL"] * np.exp(np.sqrt(IV_TRUTH["omega"]) * x), np.array([t]))[:, 0]
    s = IV_TRUTH["prop"]
    y = optimize.brentq(lambda y: (w * stats.norm.cdf((y / f - 1) / s)).sum() - p, 1e-6, 100.0, xtol=1e-12)
    with np.errstate(over="ignore"):                  # far tails of tiny f: density 0
        return y, float((w * stats.norm.pdf((y / f - 1) / s) / (f * s)).sum())


def test_observed_percentiles_are_censored_like_quantile_cens(true_vpc, data):
    """Reference computed directly from the data frame: every record of a bin, a BLQ one as -inf,
    `numpy.percentile` (a result touching -inf is not finite: censored), and a result below the
    largest LLOQ of the bin's BLQ records censored too; censored = NaN, also in the pcVPC (one
    bin per time: PRED is the same for all a bin's records, the correction is the identity)."""
    v = true_vpc
    obs = data[data.EVID == 0]
    ref = np.full((IV_TIMES.size, 3), np.nan)
    for k, t in enumerate(IV_TIMES):
        d = obs[obs.TIME == t]
        x = np.where(d.BLQ == 1, -np.inf, d.DV.astype(float))
        with np.errstate(invalid="ignore"):
            p = np.percentile(x, [5, 50, 95])
        thr = d.LLOQ[d.BLQ == 1].max() if d.BLQ.any() else -np.inf
        ref[k] = np.where(np.isfinite(p) & (p >= thr), p, np.nan)
    np.testing.assert_allclose(v["observed"].values, ref, rtol=1e-12)
    np.testing.assert_allclose(v["pc_observed"].values, ref, rtol=1e-12)
    np.testing.assert_array_equal(v["censored"].values, np.isnan(ref))
    assert 4 <= np.isnan(ref).sum() <= 12                 # late bins censored, early ones not
    # a percentile below the LLOQ is NaN in the simulations as well: every finite simulated value
    # (per replicate, median and interval) is at or above the smaller LLOQ
    for name in ("sim_percentiles", "sim_median", "sim_lower", "sim_upper"):
        vals = v[name].values
        assert np.all(vals[np.isfinite(vals)] >= min(LLOQ.values())), name
    assert np.all(np.isnan(v["sim_median"].values[-2:, :2])) and np.all(np.isnan(v["observed"].values[-2:, :2]))
    # a censored observed percentile is inside exactly when the interval's lower bound is censored too
    cens = v["censored"].values
    np.testing.assert_array_equal(v["inside"].values[cens], np.isnan(v["sim_lower"].values[cens]))


def test_true_model_percentiles_inside_in_observable_cells(true_vpc):
    """Data from the true model: with censored percentiles the observed 5/50/95th lie in the
    simulated 95 % interval in >= 85 % of the observable (not censored) cells: 15 of 17 with this
    seed (the uncensored computation of quantified records only: 15 of 24 cells). Also in the
    pcVPC."""
    for pre in ("", "pc_"):
        v = true_vpc
        observable = np.isfinite(v[f"{pre}observed"].values)
        inside = v[f"{pre}inside"].values[observable]
        assert observable.sum() >= 15 and inside.mean() >= 0.85, (pre, int(inside.sum()), int(observable.sum()))


def test_simulated_censored_median_matches_analytic_median(true_vpc):
    """The simulated median of the per-replicate censored sample medians against the population
    median m(t) of Y (quadrature over eta): equal within 4 Monte Carlo SEs where m is above both
    LLOQs (SE of a sample median of 40 records 1 / (2 f(m) sqrt(40)), of the median over 200
    replicates 1.2533 times that / sqrt(200)); NaN where P(Y < LLOQ) > 0.5 for both LLOQs (t = 18,
    24 h), and NaN at 12 h where m (1.48 mg/L) is below the larger LLOQ 1.6 mg/L."""
    med = true_vpc["sim_median"].sel(percentile=50.0).values
    p_below = _p_below(LLOQ[1], IV_TIMES)                       # the smaller LLOQ
    checked = 0
    for k, t in enumerate(IV_TIMES):
        m, dens = _quantiles(0.5, t)
        se = 1.2533 / (2 * dens * np.sqrt(N_SUBJECTS)) / np.sqrt(N_SIM)
        if m > max(LLOQ.values()) + 0.2:
            assert abs(med[k] - m) < 4 * se, (t, med[k], m, se)
            checked += 1
        elif p_below[k] > 0.5 or m < max(LLOQ.values()):
            assert np.isnan(med[k]), (t, med[k])
    assert checked == 5 and np.isnan(med[5:]).all()


def test_vpc_figure_has_the_blq_panel_only_with_blq_data(true_vpc, data):
    fig = FP.plot_vpc(true_vpc)
    assert len(fig.axes) == 2
    ax = fig.axes[1]
    line = next(ln for ln in ax.get_lines() if ln.get_gid() == "blq_observed")
    np.testing.assert_allclose(line.get_xdata(), true_vpc["bin_time"].values)
    np.testing.assert_allclose(line.get_ydata(), true_vpc["blq_observed"].values)
    band = next(c for c in ax.collections if c.get_gid() == "blq_band")
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.max() == pytest.approx(true_vpc["blq_sim_upper"].values.max())
    assert len(FP.plot_vpc(true_vpc, corrected=True).axes) == 2
    # the same subjects with every record quantified (no BLQ/LLOQ columns): one panel
    clean = data[data.BLQ == 0].drop(columns=["BLQ", "LLOQ"])
    v = vpc(_fit_like(TRUTH), clean, n_sim=20, seed=2)
    assert v.attrs["n_blq"] == 0 and not FP.has_blq(v)
    assert np.all(v["blq_observed"].values == 0) and np.all(v["blq_sim_median"].values == 0)
    assert len(FP.plot_vpc(v).axes) == 1


def test_fit_report_shows_the_blq_fraction(data):
    """An M1 FOCE-I fit of 16 subjects (BLQ records dropped from the fit): the VPC still sees them."""
    small = data[data.ID <= 16]
    ds = fit(IV_MODEL, small, FOCEI(covariance=False), npde_samples=0).to_dataset()
    assert ds.attrs["blq"].startswith("m1")
    text = render_fit_report(ds, small, n_sim=20, dpi=30)
    assert ">Fraction below the LLOQ</h3>" in text and 'class="blq-fraction' in text
    table = text[text.index('class="blq-fraction'):]
    assert table[:table.index("</table>")].count("<tr") == 1 + IV_TIMES.size       # header + one row per bin
    assert "visual predictive check with the fraction below the LLOQ" in text
    assert "prediction-corrected visual predictive check with the fraction below the LLOQ" in text
    assert "not drawn" not in text
