"""Fit report and goodness-of-fit plots: one real small fit (30 subjects, 1-cmt oral), the report
rendered by real headless Chromium, the CLI's exit codes; plot contents against analytic values."""
from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import xarray as xr
from scipy import stats
from typer.testing import CliRunner

from insilico.analysis import fit_plots as FP
from insilico.analysis.fit_report import RHAT_LIMIT, render_fit_report, write_fit_report
from insilico.analysis.formatting import format_value
from insilico.cli import app
from insilico.errors import SpecError
from tests.estimation.conftest import ORAL_MODEL, oral_data

CHROMIUM = Path("/usr/bin/chromium")
N_SIM = 30
SECTIONS = ["Fit", "Estimates", "Random effects", "Subjects", "Visual predictive check", "Figures", "Provenance"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """(fit Dataset, fit store path, data CSV path) of one FOCE-I fit."""
    from insilico.estimation import fit
    from insilico.store import write_fit
    tmp = tmp_path_factory.mktemp("fit_report")
    df, _ = oral_data(30, seed=5)
    data = tmp / "data.csv"
    df.to_csv(data, index=False)
    ds = fit(ORAL_MODEL, data, npde_samples=100).to_dataset()
    path = write_fit(ds, tmp / "fit.zarr")
    return ds, path, data


@pytest.fixture(scope="module")
def report(fitted):
    ds, path, data = fitted
    return write_fit_report(ds, path.parent / "fit.html", data, n_sim=N_SIM, dpi=50)


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium is missing: run scripts/install_chromium.sh")
        pytest.skip("headless Chromium not installed (/usr/bin/chromium); run scripts/install_chromium.sh")
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={user_data}", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)


def _rows(html: str, cls: str) -> list[list[str]]:
    """Cell texts (header and data cells) of the body rows of the table with class ``cls``."""
    table = re.search(rf'<table[^>]*class="[^"]*\b{cls}\b[^"]*"[^>]*>(.*?)</table>', html, flags=re.DOTALL).group(1)
    body = re.search(r"<tbody>(.*?)</tbody>", table, flags=re.DOTALL).group(1)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.DOTALL)]
            for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.DOTALL)]


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------

def test_report_is_self_contained_with_the_estimates(report, fitted):
    ds = fitted[0]
    text = report.read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "<script" not in text.lower() and "<link" not in text.lower()
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert len(imgs) == 11          # DV vs PRED/IPRED x lin/log, CWRES x2, eta hist, eta-cov, NPDE, VPC, pcVPC
    for b in imgs:
        raw = base64.b64decode(b)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and mpimg.imread(io.BytesIO(raw), format="png").shape[0] > 100
    assert "not drawn" not in text
    rows = _rows(text, "estimates")
    assert [r[0] for r in rows] == [str(p) for p in ds["param"].values]
    for r, est, se, lo, fixed in zip(rows, ds["estimate"].values, ds["se"].values, ds["ci_lower"].values,
                                     ds["fixed"].values):
        assert r[2:4] == [format_value(float(est)), format_value(float(se))]
        assert r[5] == format_value(float(lo)) and r[-1] == ("yes" if fixed else "no")
    facts = dict(r[:2] for r in _rows(text, "kv"))
    assert facts["OFV"] == format_value(float(ds.attrs["ofv"])) and facts["subjects"] == "30"
    assert facts["AIC"] == format_value(float(ds.attrs["aic"])) and facts["method"].startswith("FOCE-I")
    vpc_rows = _rows(text, "vpc")
    assert len(vpc_rows) == 8 * 3                                     # 8 nominal times x 3 percentiles


def test_report_renders_in_headless_chromium(report, tmp_path):
    url = report.resolve().as_uri()
    dom = _chromium("--dump-dom", url, user_data=tmp_path / "ud1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "<h1>insilico fit report: focei</h1>" in html
    assert re.findall(r"<h2>([^<]+)</h2>", html) == SECTIONS
    assert len(re.findall(r'<img src="data:image/png;base64,[^"]{100,}"', html)) == len(re.findall(r"<figure", html))
    assert "CL" in [r[0] for r in _rows(html, "estimates")]
    shot = tmp_path / "shot.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,3000", "--hide-scrollbars", url,
                    user_data=tmp_path / "ud2")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    rgb = mpimg.imread(shot)[..., :3]
    assert rgb.shape[:2] == (3000, 1280) and rgb.std() > 0.05
    assert 0.005 < (rgb.mean(axis=-1) < 0.5).mean() < 0.5             # text and table rules, not blank/black


def test_cli_report_of_a_fit(fitted, tmp_path):
    _, path, data = fitted
    runner = CliRunner()
    out = tmp_path / "fit.html"
    res = runner.invoke(app, ["report", str(path), "--out", str(out), "--data", str(data), "--n-sim", "10",
                              "--dpi", "40"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and ">Visual predictive check</h2>" in text and "10 simulations" in text
    res = runner.invoke(app, ["report", str(path), "--out", str(out), "--no-plots"])
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(app, ["report", str(path), "--out", str(out), "--no-plots", "--overwrite"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "<img" not in text and "no VPC" in text
    res = runner.invoke(app, ["report", str(path), "--out", str(tmp_path / "b.html"), "--data",
                              str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(app, ["report", str(tmp_path / "no.zarr"), "--out", str(tmp_path / "c.html"), "--data",
                              str(data)])
    assert res.exit_code == 2 and "--data" in res.output


def test_cli_report_exit_code_subprocess(fitted, report):
    res = subprocess.run([sys.executable, "-m", "insilico.cli", "report", str(fitted[1]), "--out", str(report)],
                         check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "already exists" in res.stderr


def test_nuts_diagnostics_section(fitted):
    """A NUTS-shaped fit (method nuts, draws, R-hat, ESS, divergences; here made up): the
    section flags R-hat above the limit and divergences; the interval is the draws' 2.5-97.5 %."""
    ds = fitted[0]
    p = ds.sizes["param"]
    rng = np.random.default_rng(0)
    draws = ds["estimate"].values + 0.01 * rng.normal(size=(4, 50, p))
    rhat = np.full(p, 1.002)
    rhat[2] = 1.05
    nuts = ds.assign(posterior=(("chain", "draw", "param"), draws), rhat=("param", rhat),
                     ess_bulk=("param", np.full(p, 400.0)), ess_tail=("param", np.full(p, 350.0)))
    nuts.attrs.update(method="nuts", ofv=float("nan"), divergences=3, chains=4, warmup=50, samples=50)
    text = render_fit_report(nuts, plots=False)
    assert ">NUTS diagnostics</h2>" in text and ">OFV<" not in text
    assert '<p class="bad">3 divergent transition(s)</p>' in text
    assert f'<p class="bad">largest R-hat 1.05 (above {RHAT_LIMIT})</p>' in text
    nuts_rows = _rows(text, "nuts")
    assert [r[-1] for r in nuts_rows].count("no") == 1 and nuts_rows[2][-1] == "no"
    lo = np.percentile(draws.reshape(-1, p), 2.5, axis=0)
    assert [r[5] for r in _rows(text, "estimates")] == [format_value(float(x)) for x in lo]
    assert "95 % posterior interval lower" in text


def test_subjects_left_out_are_listed(fitted):
    ds = fitted[0].copy(deep=True)
    ds.attrs["excluded"] = '{"31": "WT is missing or not a number"}'
    ds["eta_status"].values[4] = 2
    text = render_fit_report(ds, plots=False)
    assert _rows(text, "excluded") == [["31", "WT is missing or not a number"]]
    assert _rows(text, "eta-status") == [[str(ds["subject"].values[4]), "solver failed"]]
    assert "no VPC" in text


def test_report_refuses_what_is_not_a_fit(tmp_path):
    with pytest.raises(SpecError) as e:
        render_fit_report(xr.Dataset())
    assert e.value.field == "fit"
    with pytest.raises(SpecError) as e:
        write_fit_report(xr.Dataset(), tmp_path / "x.txt")
    assert e.value.field == "--out"


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------

def _line(fig, gid):
    return next(ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid)


def test_smoother_is_local_linear():
    x = np.linspace(0, 10, 40)
    gx, gy = FP.smooth(x, 2 * x - 1)
    np.testing.assert_allclose(gy, 2 * gx - 1, atol=1e-10)           # reproduces a line exactly
    gx, gy = FP.smooth(x, np.where(x < 5, 0.0, 1.0), frac=0.2)
    assert gy[0] == pytest.approx(0.0, abs=1e-12) and gy[-1] == pytest.approx(1.0, abs=1e-12)
    assert FP.smooth([1, 2], [1, 2])[0].size == 0


def test_dv_and_residual_plots(fitted):
    ds = fitted[0]
    n = int(np.isfinite(ds["DV"].values).sum())
    fig = FP.plot_dv_vs_pred(ds)
    ax = fig.axes[0]
    assert ax.collections[0].get_offsets().shape == (n, 2)
    x, y = _line(fig, "identity").get_data()
    np.testing.assert_allclose(x, y)
    lo = min(np.nanmin(ds["DV"].values), np.nanmin(ds["PRED"].values))
    assert x[0] == pytest.approx(lo)
    bad = ds.copy(deep=True)
    bad["DV"].values[0, 0] = -0.1
    fig = FP.plot_dv_vs_ipred(bad, log=True)
    assert fig.axes[0].get_xscale() == "log" and "1 non-positive values not shown" in \
        fig.axes[0].get_legend().get_texts()[0].get_text()
    for f in (FP.plot_cwres_vs_time, FP.plot_cwres_vs_pred):
        fig = f(ds)
        assert _line(fig, "zero").get_ydata()[0] == 0.0 and _line(fig, "smoother").get_xdata().size == 50


def test_eta_histograms_use_the_estimated_omega(fitted):
    ds = fitted[0]
    fig = FP.plot_eta_histograms(ds)
    assert len(fig.axes) == 3
    names = [str(p) for p in ds["param"].values]
    for i, ax in enumerate(fig.axes):
        var = float(ds["estimate"].values[names.index(f"OMEGA({i + 1},{i + 1})")])
        x, y = next(ln for ln in ax.get_lines() if ln.get_gid() == "density").get_data()
        np.testing.assert_allclose(y, stats.norm.pdf(x, 0, np.sqrt(var)))
        assert y.max() == pytest.approx(1 / np.sqrt(2 * np.pi * var), rel=1e-3)


def test_eta_vs_covariates(fitted):
    ds = fitted[0]
    assert FP.covariate_names(ds) == ["WT"]
    fig = FP.plot_eta_vs_covariates(ds)
    assert len(fig.axes) == 3 and fig.axes[0].collections[0].get_offsets().shape == (30, 2)
    with pytest.raises(SpecError) as e:
        FP.plot_eta_vs_covariates(ds.drop_vars(["covariates", "covariate"]))
    assert e.value.field == "covariates"
    with pytest.raises(SpecError):
        FP.plot_eta_vs_covariates(ds, ["AGE"])


def test_npde_qq(fitted):
    ds = fitted[0]
    fig = FP.plot_npde(ds)
    pts = fig.axes[0].collections[-1].get_offsets()
    n = pts.shape[0]
    np.testing.assert_allclose(pts[:, 0], stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n))
    np.testing.assert_allclose(pts[:, 1], np.sort(ds["NPDE"].values[np.isfinite(ds["NPDE"].values)]))
    with pytest.raises(SpecError):
        FP.plot_npde(ds.drop_vars("NPDE"))


def test_fit_figures_lists_what_applies(fitted):
    ds = fitted[0]
    names = [n for n, _, _ in FP.fit_figures(ds)]
    assert "vpc" not in names and {"eta_vs_covariates", "npde", "cwres_vs_time"} <= set(names)


def test_vpc_plot_draws_the_vpc_statistics(fitted):
    from insilico.estimation import vpc
    ds, _, data = fitted
    v = vpc(ds, data, n_sim=10, seed=1)
    for corrected, pre in ((False, ""), (True, "pc_")):
        fig = FP.plot_vpc(v, corrected=corrected)
        for j in range(3):
            x, y = _line(fig, f"observed{j}").get_data()
            np.testing.assert_allclose(x, v["bin_time"].values)
            np.testing.assert_allclose(y, v[f"{pre}observed"].values[:, j])
        band = next(c for c in fig.axes[0].collections if c.get_gid() == "band1")
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.min() == pytest.approx(v[f"{pre}sim_lower"].values[:, 1].min())
        assert ys.max() == pytest.approx(v[f"{pre}sim_upper"].values[:, 1].max())
