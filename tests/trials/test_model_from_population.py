"""A trial spec without ``model`` takes the structural model of its population-model cohort
(``cohort: {population: FILE}`` or ``cohort: FILE``); a ``model`` that differs from the population
file's is refused naming ``model``; without a population cohort ``model`` stays required."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from insilico.errors import SpecError
from insilico.trials import load_trial_spec, prepare

POPULATION = {
    "name": "oral_pk",
    "model": {"name": "1cmt_oral", "parameters": {"F": 0.8}},
    "parameters": {"CL": {"typical": 4.2}, "V": {"typical": 35.0}, "KA": {"typical": 1.3}},
    "bsv": {"parameters": ["CL", "V"], "omega": [[0.09, 0.0], [0.0, 0.05]]},
    "residual_error": {"type": "proportional", "proportional": 0.1},
}
TEXT_MODEL = {
    "name": "one_text", "states": ["central"], "parameters": {"CL": {}, "V": {}}, "doses": ["central"],
    "equations": ["d/dt(central) = -CL / V * central"],
    "outputs": {"conc": {"expr": "central / V", "units": "mg/L"}},
}


def _trial(cohort, **extra) -> dict:
    return {"name": "from_population", "seed": 3, "n": 4, "cohort": cohort,
            "arms": [{"name": "20 mg", "regimen": [{"amt": 20}]}], "observations": {"times": [1, 4]}, **extra}


def _write(folder: Path, name: str, data: dict) -> Path:
    (folder / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / name


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "pop").mkdir()
    _write(tmp_path / "pop", "population.yaml", POPULATION)
    _write(tmp_path / "pop", "model.yaml", TEXT_MODEL)
    text = {**POPULATION, "model": {"file": "model.yaml"}, "bsv": {"parameters": ["CL"], "omega": [[0.09]]},
            "parameters": {"CL": {"typical": 4.2}, "V": {"typical": 35.0}}}
    _write(tmp_path / "pop", "text_population.yaml", text)
    return tmp_path


@pytest.mark.parametrize("cohort", [{"population": "pop/population.yaml"}, "pop/population.yaml"])
def test_the_model_comes_from_the_population_file(folder, cohort):
    spec, base = load_trial_spec(_write(folder, "trial.yaml", _trial(cohort)))
    assert spec.model.name == "1cmt_oral" and spec.model.parameters == {}
    ctx = prepare(spec, base, screen=False)
    assert ctx.model.name == "1cmt_oral"
    assert ctx.fixed == {"F": 0.8, "ALAG": 0.0}      # the population file's fixed F is inherited


def test_a_text_model_file_is_found_next_to_the_population_file(folder):
    spec, base = load_trial_spec(_write(folder, "trial.yaml", _trial({"population": "pop/text_population.yaml"})))
    assert Path(spec.model.file) == folder / "pop" / "model.yaml"
    assert prepare(spec, base, screen=False).model.name == "one_text"


def test_a_model_other_than_the_population_files_is_refused(folder):
    spec = _trial({"population": "pop/population.yaml"}, model={"name": "1cmt_iv"})
    with pytest.raises(SpecError, match="1cmt_oral") as e:
        prepare(*load_trial_spec(_write(folder, "trial.yaml", spec)), screen=False)
    assert e.value.field == "model.name"
    same = _trial({"population": "pop/population.yaml"}, model={"name": "1cmt_oral"})   # given and equal: fine
    assert prepare(*load_trial_spec(_write(folder, "trial.yaml", same)), screen=False).model.name == "1cmt_oral"


def test_without_a_population_cohort_model_is_required(folder):
    _write(folder, "cohort.yaml", {"name": "c", "covariates": {"WT": {"dist": "normal", "mean": 70, "sd": 5}}})
    for cohort in ("cohort.yaml", {"name": "inline"}, "missing.yaml"):
        with pytest.raises(SpecError, match="required") as e:
            load_trial_spec(_write(folder, "trial.yaml", _trial(cohort)))
        assert e.value.field == "model"
