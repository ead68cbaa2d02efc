"""A corpus of malformed trial specs: exit code 2, one clear message naming the field, nothing written."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from insilico.cli import app

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "trials/dose_ranging.yaml").read_text())
BASE["cohort"] = str(ROOT / "cohorts/phase2_patients.yaml")


def mutate(fn):
    d = copy.deepcopy(BASE)
    fn(d)
    return d


def _set(path, value):
    def f(d):
        node = d
        *head, last = path
        for k in head:
            node = node[k]
        node[last] = value
    return f


def _del(path):
    def f(d):
        node = d
        *head, last = path
        for k in head:
            node = node[k]
        del node[last]
    return f


CASES = [
    ("unknown top-level key", _set(["colour"], "red"), "colour", "unknown field"),
    ("unknown arm key", _set(["arms", 1, "dosage"], 5), "arms.1.dosage", "unknown field"),
    ("wrong type for n", _set(["n"], "many"), "n", "integer"),
    ("negative n", _set(["n"], -5), "n", "greater than"),
    ("negative dose", _set(["arms", 1, "regimen", 0, "amt"], -25), "arms.1.regimen.0.amt", "greater than or equal"),
    ("zero-length infusion", _set(["arms", 1, "regimen", 0, "duration"], 0), "arms.1.regimen.0.duration",
     "greater than"),
    ("empty arms", _set(["arms"], []), "arms", "at least 1"),
    ("duplicate arm names", _set(["arms", 2, "name"], "25 mg qd"), "spec", "unique"),
    ("unknown model", _set(["model", "name"], "5cmt_magic"), "model", "unknown model"),
    ("unknown fixed parameter", _set(["model", "parameters"], {"KZ": 1.0}), "model.parameters.KZ", "unknown parameter"),
    ("fixed parameter also in cohort", _set(["model", "parameters"], {"EC50": 1.0}), "model.parameters.EC50",
     "drawn by the cohort"),
    ("negative fixed parameter", lambda d: d["model"].update(name="2cmt_oral+sigmoid_emax",
                                                             parameters={"GAMMA": -1.0}),
     "model.parameters.GAMMA", "> 0"),
    ("unknown endpoint type", _set(["endpoints", 0, "type"], "cmaximum"), "endpoints.0.type", "Input should be"),
    ("endpoint without window", _del(["endpoints", 0, "window"]), "endpoints.0", "window"),
    ("unknown endpoint output", _set(["endpoints", 0, "output"], "ce"), "endpoints.0.output", "unknown output"),
    ("responder of unknown endpoint", _set(["endpoints", 4, "of"], "nothing"), "spec", "earlier endpoint"),
    ("trough beyond the regimen", _set(["endpoints", 2, "dose"], 40), "endpoints.2.dose", "only 28 doses"),
    ("missing cohort file", _set(["cohort"], "/nonexistent/cohort.yaml"), "cohort", "not found"),
    ("unknown reference arm", _set(["analysis", "reference"], "high dose"), "spec", "not an arm"),
    ("success on unknown endpoint", _set(["analysis", "success", "endpoint"], "nope"), "spec", "unknown endpoint"),
    ("non-increasing sampling times", _set(["observations", "times"], [0, 2, 1]), "observations.times",
     "strictly increasing"),
    ("dropout probability above 1", _set(["dropout"], {"intervals": [{"end": 100, "probability": 1.5}]}),
     "dropout.intervals.0.probability", "less than or equal"),
    ("dropout with two definitions", _set(["dropout"], {"hazard": 0.1, "intervals": [{"end": 1, "probability": 0.1}]}),
     "dropout", "exactly one"),
    ("adherence probability negative", _set(["adherence", "probability"], -0.1), "adherence.probability",
     "greater than or equal"),
    ("counterfactual with one arm", lambda d: (d.update(design="counterfactual", arms=d["arms"][:1]),
                                               d.update(analysis={})), "spec", "at least two arms"),
    ("unknown dose compartment", _set(["arms", 1, "regimen", 0, "cmt"], "liver"), "arms.1.regimen.0.cmt",
     "unknown compartment"),
    ("repeated dose without interval", _set(["arms", 1, "regimen", 0, "ii"], 0), "arms.1.regimen.0", "ii"),
    ("dose per unknown covariate", _set(["arms", 1, "regimen", 0, "per"], "SHOE"), "arms.1.regimen.0.per",
     "not in the cohort"),
]


@pytest.mark.parametrize("name, fn, field, words", CASES, ids=[c[0] for c in CASES])
def test_malformed_spec_exit_2(tmp_path, name, fn, field, words):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(mutate(fn), sort_keys=False))
    out = tmp_path / "out.zarr"
    res = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    assert field in res.output and words in res.output, res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_yaml_syntax_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\narms: [\n  - {name: a\n")
    res = CliRunner().invoke(app, ["validate", str(spec)])
    assert res.exit_code == 2 and "YAML syntax error" in res.output


def test_missing_spec_file(tmp_path):
    res = CliRunner().invoke(app, ["run", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o.zarr")])
    assert res.exit_code == 2 and "not found" in res.output and not (tmp_path / "o.zarr").exists()


def test_exit_code_from_a_real_process(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(mutate(_set(["arms", 1, "regimen", 0, "amt"], -1))))
    p = subprocess.run([sys.executable, "-m", "insilico.cli", "run", str(spec), "--out", str(tmp_path / "o.zarr")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert "arms.1.regimen.0.amt" in p.stderr and "Traceback" not in p.stderr + p.stdout
    assert not (tmp_path / "o.zarr").exists()


def test_bad_override(tmp_path):
    res = CliRunner().invoke(app, ["validate", str(ROOT / "trials/dose_ranging.yaml"), "--set", "arms.9.name=x"])
    assert res.exit_code == 2 and "arms.9.name" in res.output
