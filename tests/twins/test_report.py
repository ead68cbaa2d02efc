"""`insilico twin report`: one self-contained HTML page whose tables repeat the twin's stored
history (with digests), posterior and levels, and the recommendation and risk the library gives
for the same seed; rendered in headless Chromium; the CLI writes it and refuses a bad --out."""
from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from typer.testing import CliRunner

from insilico import twins
from insilico.analysis.formatting import format_value
from insilico.analysis.twin_report import write_twin_report
from insilico.cli import app
from tests.twins.conftest import DOSES, LEVELS, PRIOR, WT, rows

CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ["Twin", "History", "Posterior", "Forecast", "Dose recommendation", "Early warning"]
TARGET, DOSE_GRID, RISK = "trough in [4, 8] mg/L", [250.0, 500.0, 750.0, 1000.0], {"output": "conc", "above": 30.0,
                                                                                  "within": 48.0}
DRAWS = 300


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    store = tmp_path_factory.mktemp("report") / "twins.zarr"
    twins.create(store, "R7", PRIOR, {"WT": WT})
    twins.update(store, "R7", rows(DOSES[:1], LEVELS[:1]))
    twins.update(store, "R7", rows(DOSES[1:], LEVELS[1:]))
    out = write_twin_report(store, "R7", store.parent / "r7.html", regimens=["750 mg q12h"], until=48,
                            target=TARGET, doses=DOSE_GRID, intervals=[12.0], risk=RISK, n_draws=DRAWS, seed=2,
                            dpi=50)
    return store, out


def _rows(html: str, cls: str) -> list[list[str]]:
    """Cell texts of the body rows of every table with class ``cls``, in page order."""
    out = []
    for table in re.findall(rf'<table[^>]*class="[^"]*\b{cls}\b[^"]*"[^>]*>(.*?)</table>', html, flags=re.DOTALL):
        body = re.search(r"<tbody>(.*?)</tbody>", table, flags=re.DOTALL).group(1)
        out += [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r,
                                                                       flags=re.DOTALL)]
                for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.DOTALL)]
    return out


def test_report_is_self_contained_and_repeats_the_stored_twin(twin):
    store, out = twin
    text = out.read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "<script" not in text.lower() and "<link" not in text.lower() and "not drawn" not in text
    img, = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.findall(r"<h2>([^<]+)</h2>", text) == SECTIONS
    hist = twins.history(store, "R7")
    table = _rows(text, "history")
    assert [r[0] for r in table] == ["0", "1", "2"]
    for r, (_, h) in zip(table, hist.iterrows()):
        assert h["rows_sha256"] in r and h["history_sha256"] in r
    s = twins.show(store, "R7")["R7"]
    (post,) = _rows(text, "posterior")
    assert post[:4] == ["ETA1", "CL", format_value(s["eta"]["ETA1"]), format_value(float(np.sqrt(s["eta_cov"][0][0])))]
    assert [r[:2] for r in _rows(text, "levels")] == [[format_value(t), format_value(y)] for t, y in LEVELS]
    rec = twins.recommend(store, "R7", TARGET, DOSE_GRID, [12.0], until=48, n_draws=DRAWS, seed=2)
    facts = dict(r[:2] for r in _rows(text, "kv"))
    assert facts["recommended dose (mg)"] == format_value(rec["recommendation"]["dose"])
    assert facts["P(attain)"] == format_value(rec["recommendation"]["probability"])
    assert facts["probability"] == format_value(twins.risk(store, "R7", n_draws=DRAWS, seed=2, **RISK)["probability"])
    assert facts["version"] == "2" and facts["covariate WT"] == format_value(float(WT))


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium is missing: run scripts/install_chromium.sh")
        pytest.skip("headless Chromium not installed (/usr/bin/chromium); run scripts/install_chromium.sh")
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={user_data}", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)


def test_report_renders_in_headless_chromium(twin, tmp_path):
    url = twin[1].resolve().as_uri()
    dom = _chromium("--dump-dom", url, user_data=tmp_path / "ud1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>insilico twin report: R7 (version 2)</h1>" in dom.stdout
    assert re.findall(r"<h2>([^<]+)</h2>", dom.stdout) == SECTIONS
    shot = tmp_path / "shot.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars", url,
                    user_data=tmp_path / "ud2")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    rgb = mpimg.imread(shot)[..., :3]
    assert rgb.shape[:2] == (2400, 1280) and rgb.std() > 0.05
    assert 0.005 < (rgb.mean(axis=-1) < 0.5).mean() < 0.5             # text and rules, not blank or black


def test_cli_report_writes_the_page_and_refuses_a_bad_out(twin, tmp_path):
    store, _ = twin
    runner = CliRunner()
    out = tmp_path / "p.html"
    res = runner.invoke(app, ["twin", "report", str(store), "R7", "--out", str(out), "--version", "1",
                              "--draws", "50", "--dpi", "40"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "twin report: R7 (version 1)" in text and ">Dose recommendation</h2>" not in text
    assert [r[0] for r in _rows(text, "history")] == ["0", "1"]
    for args, field in ((["--out", str(tmp_path / "p.txt")], "--out"), (["--out", str(out)], "--out"),
                        (["--out", str(tmp_path / "q.html"), "--target", TARGET], "--doses")):
        res = runner.invoke(app, ["twin", "report", str(store), "R7", *args])
        assert res.exit_code == 2 and field in res.output, res.output
    assert not (tmp_path / "p.txt").exists() and not (tmp_path / "q.html").exists()
