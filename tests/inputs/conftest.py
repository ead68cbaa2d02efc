"""Shared helpers of the adversarial input corpus: a valid trial spec to break, and the CLI check
(exit 2, one line naming the field, no traceback, nothing written)."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml
from typer.testing import CliRunner

from insilico.cli import app

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "trials/dose_ranging.yaml").read_text())
BASE["cohort"] = str(ROOT / "cohorts/phase2_patients.yaml")


def trial(**changes) -> dict:
    """A copy of the dose-ranging spec with top-level ``changes``."""
    d = copy.deepcopy(BASE)
    d.update(changes)
    return d


def refused(tmp_path: Path, spec_text: str | bytes, field: str, words: str, command: str = "run") -> str:
    """Write ``spec_text`` as a spec, run the CLI on it and check the refusal; returns the output."""
    spec = tmp_path / "spec.yaml"
    if isinstance(spec_text, bytes):
        spec.write_bytes(spec_text)
    else:
        spec.write_text(spec_text)
    return refused_path(tmp_path, spec, field, words, command)


def refused_path(tmp_path: Path, spec: Path, field: str, words: str, command: str = "run") -> str:
    out = tmp_path / "out.zarr"
    args = [command, str(spec)] + (["--out", str(out), "--quiet"] if command == "run" else [])
    res = CliRunner().invoke(app, args)
    text = res.output
    assert res.exit_code == 2, text
    assert field in text and words in text, text
    assert "Traceback" not in text
    assert len([ln for ln in text.strip().splitlines() if ln.strip()]) == 1, text
    assert not out.exists()
    return text
