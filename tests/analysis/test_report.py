"""HTML report: built from a real small trial, rendered by real headless Chromium."""
from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from insilico.cli import app

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARMS = ["placebo", "25 mg qd", "50 mg qd", "100 mg qd"]


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    import insilico
    tmp = tmp_path_factory.mktemp("report")
    store = tmp / "r.zarr"
    insilico.run(ROOT / "trials" / "dose_ranging.yaml", store,
                 overrides=["n=40", "analysis.sample_size.resamples=50"])
    return store


@pytest.fixture(scope="module")
def report(trial):
    from insilico import open_results
    from insilico.analysis.report import write_report
    path = trial.parent / "report.html"
    write_report(open_results(trial), path, dpi=60)
    return path


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium is missing: run scripts/install_chromium.sh")
        pytest.skip("headless Chromium not installed (/usr/bin/chromium); run scripts/install_chromium.sh")
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={user_data}", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)


def test_report_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    # no external resources: every src/href is a data URI or an in-page anchor; no scripts
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "<script" not in text.lower() and "<link" not in text.lower()
    # every embedded figure is a valid PNG
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert len(imgs) >= 8
    import matplotlib.image as mpimg
    for b in imgs:
        raw = base64.b64decode(b)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        assert mpimg.imread(io.BytesIO(raw), format="png").shape[0] > 100
    for heading in ("Trial", "Arms", "Endpoints", "Cohort validation", "Endpoint summary by arm",
                    "Comparisons with the reference arm", "Probability of success", "Power vs N per arm",
                    "Figures", "Provenance", "Package versions"):
        assert f">{heading}</h" in text, heading
    assert "cohort validation unavailable" not in text


def test_report_renders_in_headless_chromium(report, tmp_path):
    url = report.resolve().as_uri()
    dom = _chromium("--dump-dom", url, user_data=tmp_path / "ud1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "<h1>insilico trial report: dose_ranging</h1>" in html
    h2 = re.findall(r"<h2>([^<]+)</h2>", html)
    assert h2[:2] == ["Trial", "Cohort validation"] and h2[-2:] == ["Figures", "Provenance"]
    assert "Power vs N per arm" in h2
    tables = re.findall(r"<table[^>]*>.*?</table>", html, flags=re.DOTALL)
    arms_table = next(t for t in tables if 'class="arms"' in t)
    summary = [t for t in tables if 'class="summary"' in t]
    assert summary and all(all(f">{a}<" in t for a in ARMS) for t in summary + [arms_table])
    assert any('class="validation"' in t for t in tables)
    imgs = re.findall(r'<img src="(data:image/png;base64,[^"]{100,})"', html)
    assert len(imgs) == len(re.findall(r"<figure", html)) >= 8

    shot = tmp_path / "shot.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,4000", "--hide-scrollbars", url,
                    user_data=tmp_path / "ud2")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)
    assert img.shape[:2] == (4000, 1280)
    rgb = img[..., :3]
    assert rgb.std() > 0.05                                       # not blank
    dark = (rgb.mean(axis=-1) < 0.5).mean()                        # text, rules, table borders
    assert 0.005 < dark < 0.5
    colored = (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.3).mean()   # coloured headings/links/plots
    assert colored > 0.0005
    if os.environ.get("INSILICO_KEEP_SCREENSHOT"):
        import shutil
        shutil.copy(shot, os.environ["INSILICO_KEEP_SCREENSHOT"])


def test_cli_report_and_plot(trial, tmp_path):
    runner = CliRunner()
    out = tmp_path / "rep.html"
    res = runner.invoke(app, ["report", str(trial), "--out", str(out), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    res = runner.invoke(app, ["report", str(trial), "--out", str(out), "--no-plots"])
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(app, ["report", str(trial), "--out", str(out), "--no-plots", "--overwrite"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2

    res = runner.invoke(app, ["plot", str(trial), "--out", str(tmp_path / "figs"), "--dpi", "40",
                              "--individuals", "3"])
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert {"profiles_conc.png", "profiles_effect.png", "endpoint_responder.png", "power.png",
            "exposure_response_responder_vs_auc_ss.png"} <= set(pngs)


def test_cli_report_exit_code_subprocess(report):
    res = subprocess.run([sys.executable, "-m", "insilico.cli", "report", str(report.parent / "r.zarr"),
                          "--out", str(report)], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "already exists" in res.stderr


def _text(html: str) -> str:
    """The visible text of an HTML fragment, cells separated by ' | '."""
    import html as h
    html = re.sub(r"</?(b|code|span)\b[^>]*>", "", html)            # inline tags: no cell break
    return h.unescape(re.sub(r"\s*\|\s*(\|\s*)+", " | ", re.sub(r"<[^>]+>", " | ", html)))


def test_report_says_the_design_in_words(report):
    text = _text(report.read_text(encoding="utf-8"))
    assert "before dose 28 (1-based; dose: 27 in the spec is 0-based)" in text and "dose #" not in text
    assert "dropout | constant hazard 0.0002 per h (exponential dropout times, median 3466 h)" in text
    assert "adherence | each dose taken with probability 0.9" in text
    assert "25 mg every 24 h × 28" in text
    n = int(re.search(r"All (\d+) simulated subject–arm pairs have results", text).group(1))
    assert n == 40                                      # parallel design: each subject in one arm


@pytest.fixture(scope="module")
def flagged_trial(tmp_path_factory, client):
    """A trial with a mg/kg arm, cumulative dropout targets and subjects with WT <= 0 (flagged)."""
    from insilico.trials import run
    spec = {"name": "mgkg", "seed": 3, "n": 40, "model": {"name": "1cmt_oral"}, "design": "counterfactual",
            "cohort": {"name": "c", "covariates": {"WT": {"dist": "normal", "mean": 10, "sd": 10}},
                       "parameters": {"CL": {"typical": 5.0}, "V": {"typical": 40.0}, "KA": {"typical": 1.0}}},
            "arms": [{"name": "weight-based", "regimen": [{"amt": 2, "per": "WT", "ii": 24, "n": 3}]},
                     {"name": "flat", "regimen": [{"amt": 20, "duration": 1, "ii": 24, "n": 3}]}],
            "observations": {"times": [1, 4, 24, 48, 72]},
            "dropout": {"cumulative": [{"end": 24, "probability": 0.1}, {"end": 48, "probability": 0.2}]},
            "endpoints": [{"name": "tr", "type": "trough", "dose": 2}]}
    out = tmp_path_factory.mktemp("flagged") / "r.zarr"
    run(spec, out, cluster=client)
    return out


def test_report_of_a_trial_with_flagged_subjects_in_chromium(flagged_trial, tmp_path):
    from insilico import open_results
    from insilico.analysis.report import write_report
    ds = open_results(flagged_trial)
    n_bad = int((ds["WT"].values <= 0).sum())
    assert 0 < n_bad < 40
    path = write_report(ds, tmp_path / "r.html", plots=False)
    dom = _chromium("--dump-dom", path.resolve().as_uri(), user_data=tmp_path / "ud")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = _text(dom.stdout)
    assert "weight-based | 1 | 2 mg/kg every 24 h × 3 |" in text
    assert "flat | 1 | 20 mg over 1 h every 24 h × 3 |" in text
    assert ("dropout | 0–24 h: 10 % of those still in the trial (cumulative 10 %); 24–48 h: 11.1 % of those "
            "still in the trial (cumulative 20 %); none after 48 h (specified as cumulative targets)") in text
    assert "before dose 3 (1-based; dose: 2 in the spec is 0-based)" in text
    assert f"{n_bad} of 80 simulated subject–arm pairs have no results" in text
    assert f"weight-based | 6 | dose covariate not positive | {n_bad} |" in text
    rows = re.findall(r"\| 0 \| weight-based \| (\d+) \| 6 \| dose covariate not positive \| "
                      r"dose per WT = (-?[0-9.e+-]+) kg \(must be > 0\)", text)
    assert [int(s) for s, _ in rows] == np.flatnonzero(ds["WT"].values[0] <= 0).tolist()
    np.testing.assert_allclose([float(v) for _, v in rows], ds["WT"].values[0][ds["WT"].values[0] <= 0], rtol=1e-3)
