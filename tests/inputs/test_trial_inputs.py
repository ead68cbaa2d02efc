"""Trial specs refused before anything is written: reserved names, designs that leave an arm
empty, resource exhaustion, user models that fail, and specs `validate` accepts that used to crash."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from insilico.errors import SpecError
from insilico.trials import load_trial_spec, prepare
from insilico.trials._design import doses_taken
from insilico.trials._prepare import MAX_SUBJECTS, check_resources, reserved_names
from insilico.trials._spec import AdherenceSpec

from .conftest import ROOT, refused, trial


def _dump(d) -> str:
    return yaml.safe_dump(d, sort_keys=False)


def test_reserved_names_cover_the_store():
    assert {"time", "status", "_done", "arm", "subject", "replicate", "dose", "chunk", "dose_time",
            "dose_amt", "allocated_arm", "dropout_time", "doses_taken"} <= reserved_names()


def test_endpoint_named_like_a_store_variable(tmp_path):
    d = trial()
    d["endpoints"][0]["name"] = "dose_amt"
    d["analysis"]["endpoints"] = ["effect_change", "responder"]
    refused(tmp_path, _dump(d), "endpoints.0.name", "reserved by the results store", "validate")


def test_covariate_named_like_a_coordinate(tmp_path):
    cohort = yaml.safe_load((ROOT / "cohorts/phase2_patients.yaml").read_text())
    cohort["covariates"]["time"] = {"dist": "uniform", "low": 0.0, "high": 1.0, "units": "1"}
    (tmp_path / "c.yaml").write_text(_dump(cohort))
    refused(tmp_path, _dump(trial(cohort="c.yaml")), "cohort.covariates.time", "reserved", "validate")


def test_covariate_named_like_an_output(tmp_path):
    cohort = yaml.safe_load((ROOT / "cohorts/phase2_patients.yaml").read_text())
    cohort["covariates"]["conc"] = {"dist": "uniform", "low": 0.0, "high": 1.0, "units": "1"}
    (tmp_path / "c.yaml").write_text(_dump(cohort))
    refused(tmp_path, _dump(trial(cohort="c.yaml")), "observations.outputs", "also a cohort variable", "validate")


def test_ratio_that_rounds_to_zero(tmp_path):
    d = trial()
    d["arms"][1]["ratio"] = 0.001
    refused(tmp_path, _dump(d), "arms.1.ratio", "rounds to 0")


def test_ratios_needing_a_huge_block(tmp_path):
    d = trial()
    for arm, r in zip(d["arms"], (1 / 97, 1 / 89, 1 / 83, 1 / 79)):
        arm["ratio"] = r
    refused(tmp_path, _dump(d), "ratio", "randomisation block")


def test_fewer_subjects_than_arms(tmp_path):
    refused(tmp_path, _dump(trial(n=3)), "n", "cannot fill 4 arms")


def test_n_below_one_block_leaves_an_arm_empty(tmp_path):
    d = trial(n=6)
    for arm, r in zip(d["arms"], (1, 1, 1, 97)):
        arm["ratio"] = r
    refused(tmp_path, _dump(d), "n", "gets no subjects")


def test_ratio_rounding_is_warned():
    """Ratios are taken to the nearest fraction with denominator <= 100: 0.0055 becomes 1/100."""
    import warnings
    d = trial()
    spec, base = load_trial_spec(d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(spec, base)
    d["arms"][3]["ratio"] = 0.0055
    spec, base = load_trial_spec(d)
    with pytest.warns(UserWarning, match="allocated as \\[100, 100, 100, 1\\]"):
        prepare(spec, base)


def test_too_many_subjects(tmp_path):
    refused(tmp_path, _dump(trial(n=MAX_SUBJECTS + 1)), "n", "32-bit", "validate")


def test_sampling_grid_too_fine(tmp_path):
    d = trial()
    d["observations"]["times"] = {"start": 0, "stop": 672, "step": 1e-5}
    refused(tmp_path, _dump(d), "observations.times.step", "sampling times", "validate")


def test_endpoint_window_too_fine_for_grid_step(tmp_path):
    d = trial()
    d["execution"]["grid_step"] = 1e-6
    refused(tmp_path, _dump(d), "endpoints.0.window", "grid points", "validate")


def test_dose_count_too_large(tmp_path):
    d = trial()
    d["arms"][1]["regimen"][0]["n"] = 10**9
    refused(tmp_path, _dump(d), "arms.1.regimen.0.n", "doses from one record", "validate")


def test_replicates_exhaust_memory(tmp_path):
    d = trial()
    d["replicates"] = {"n": 10**9}
    refused(tmp_path, _dump(d), "replicates.n", "of memory", "run")


def test_work_unit_memory_estimate():
    spec, base = load_trial_spec(trial())
    ctx = prepare(spec, base)
    res = check_resources(ctx)
    # the estimate is of the right order: the densest arm's grid is known exactly
    from insilico.trials._endpoints import endpoint_grid
    dose_times = np.array([d.time for d in ctx.regimens[1].expanded()])
    g = endpoint_grid(spec, dose_times, ctx.nominal).size
    assert g <= res.grid_points <= 3 * g        # an upper bound (overlapping points counted once each)
    with pytest.raises(SpecError) as e:
        check_resources(ctx, memory=res.unit)          # needs more than half of this "machine"
    assert e.value.field == "execution.grid_step" and "GiB" in e.value.message


def test_store_larger_than_free_disk(tmp_path):
    spec, base = load_trial_spec(trial())
    ctx = prepare(spec, base)
    with pytest.raises(SpecError) as e:
        check_resources(ctx, tmp_path / "out.zarr", disk=1000)
    assert e.value.field == "n" and "free" in e.value.message


def test_missed_run_longer_than_regimen():
    """A missed-dose run longer than the regimen (a negative slice before) misses the rest."""
    spec = AdherenceSpec(probability=1.0, missed_run={"start_probability": 0.3, "length": 50})
    taken = doses_taken(spec, 7, 0, np.arange(200), 5)
    assert taken.shape == (200, 5)
    # with probability 1 only runs miss doses, and a run lasts to the end: once missed, all later missed
    assert np.all(np.diff(taken.astype(int), axis=1) <= 0)
    assert 0 < (~taken).any(axis=1).mean() < 1


def test_missed_run_longer_than_regimen_validates(tmp_path):
    d = trial(n=8)
    d["adherence"] = {"probability": 1.0, "missed_run": {"start_probability": 0.5, "length": 100}}
    spec, base = load_trial_spec(d)
    prepare(spec, base)


@pytest.mark.parametrize("source, words", [
    ("def f(:\n", "syntax error"),
    ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    ("import sys\nsys.exit(3)\n", "tried to exit the process"),
    ("X = 42\n", "is not an insilico Model"),
    ("import sys\ndef X():\n    sys.exit(0)\n", "tried to exit the process"),
    ("def X():\n    return 1 / 0\n", "ZeroDivisionError"),
], ids=["syntax", "raises", "exits-on-import", "not-a-model", "callable-exits", "callable-raises"])
def test_model_import_failures(tmp_path, source, words):
    mod = f"usermodel_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{mod}.py").write_text(source)
    d = trial()
    d["model"] = {"import": f"{mod}:X"}
    refused(tmp_path, _dump(d), "model.import", words, "validate")


def test_model_import_resolves_next_to_the_spec(tmp_path):
    """The spec's folder is searched first (and only during the import)."""
    import sys
    mod = f"usermodel_ok_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{mod}.py").write_text("from insilico.models import get_model\nX = get_model('2cmt_oral+emax')\n")
    d = trial()
    d["model"] = {"import": f"{mod}:X"}
    (tmp_path / "spec.yaml").write_text(_dump(d))
    spec, base = load_trial_spec(tmp_path / "spec.yaml")
    ctx = prepare(spec, base)
    assert ctx.model.name == "2cmt_oral+emax"
    assert str(tmp_path.resolve()) not in sys.path


def test_model_import_without_attribute(tmp_path):
    d = trial()
    d["model"] = {"import": "json"}
    refused(tmp_path, _dump(d), "model.import", "pkg.module:attribute", "validate")
