"""Bad input raises SpecError naming the field (str() = "field: message")."""
import copy

import pytest

from insilico.cohorts import draw_cohort, load_cohort_spec
from insilico.errors import SpecError

BASE = {
    "name": "base",
    "covariates": {
        "AGE": {"dist": "uniform", "low": 18, "high": 65},
        "SEX": {"dist": "categorical", "probs": {"male": 0.5, "female": 0.5}},
        "HT": {"dist": "normal", "given": "SEX", "mean": {"male": 176, "female": 163}, "sd": 7},
        "BMI": {"dist": "lognormal", "median": 24, "sdlog": 0.15},
        "WT": {"expr": "BMI * (HT / 100) ** 2"},
        "SCR": {"dist": "lognormal", "median": 0.9, "sdlog": 0.2},
    },
    "correlation": {"covariates": ["AGE", "SCR"], "matrix": [[1, 0.2], [0.2, 1]]},
    "derived": ["CRCL"],
    "criteria": {"inclusion": ["CRCL >= 30"]},
    "parameters": {"CL": {"typical": 5, "effects": [{"covariate": "WT", "type": "power", "ref": 70, "theta": 0.75}]},
                   "V": {"typical": 50}},
    "bsv": {"parameters": ["CL", "V"], "cv_percent": [30, 20]},
}


def with_(path, value):
    spec = copy.deepcopy(BASE)
    *head, last = path.split(".")
    d = spec
    for k in head:
        d = d[int(k)] if isinstance(d, list) else d[k]
    if value is _DEL:
        del d[last]
    elif isinstance(d, list):
        d[int(last)] = value
    else:
        d[last] = value
    return spec


_DEL = object()

CASES = [
    # (mutation path, new value, expected field, words in the message)
    ("covariates.AGE.dist", "gamma", "covariates.AGE.dist", "gamma"),
    ("covariates.WT.expr", "BMI * (HGT / 100) ** 2", "covariates.WT.expr", "HGT"),
    ("covariates.WT.expr", "BMI * foo(HT)", "covariates.WT.expr", "foo"),
    ("covariates.WT.expr", "BMI * (HT / 100", "covariates.WT.expr", "invalid expression"),
    ("covariates.HT.given", "RACE", "covariates.HT.given", "RACE"),
    ("covariates.HT.given", "AGE", "covariates.HT.given", "not categorical"),
    ("covariates.HT.mean", {"male": 176}, "covariates.HT.mean.female", "missing"),
    ("covariates.HT.sd", -1, "covariates.HT.sd", "> 0"),
    ("covariates.HT.sd", "0.04 * nope", "covariates.HT.sd", "nope"),
    ("covariates.AGE.high", 10, "covariates.AGE.high", "> low"),
    ("covariates.AGE.mean", 40, "covariates.AGE.mean", "not a parameter of uniform"),
    ("covariates.AGE.extra", 1, "covariates.AGE.extra", "unknown field"),
    ("covariates.SEX.probs", {"male": 0.5, "female": 0.6}, "covariates.SEX.probs", "sum to 1"),
    ("covariates.BMI", {"dist": "lognormal", "sdlog": 0.1}, "covariates.BMI.median", "median"),
    ("covariates.BMI", {"expr": "WT / (HT / 100) ** 2"}, "covariates.BMI", "circular dependency"),
    ("covariates.AGE", {"expr": "CRCL / 2"}, "covariates.AGE", "circular dependency: AGE -> CRCL -> AGE"),
    ("derived", ["CRCL", "LBW", "EGFR", "BSA", "BMI"], "derived.4", "already used"),
    ("correlation.matrix", [[1, 1.5], [1.5, 1]], "correlation.matrix", "[-1, 1]"),
    ("correlation.covariates", ["AGE", "WT"], "correlation.covariates.1", "not drawn from a distribution"),
    ("criteria.inclusion", ["CRCL >= 30", "EGFR > 60"], "criteria.inclusion.1", "EGFR"),
    ("criteria.inclusion", ["SEX == 'other'"], "criteria.inclusion.0", "not a category"),
    ("criteria.inclusion", ["AGE + 1"], "criteria.inclusion.0", "comparison"),
    ("parameters.CL.effects.0.covariate", "WGT", "parameters.CL.effects.0.covariate", "WGT"),
    ("parameters.CL.effects.0.ref", _DEL, "parameters.CL.effects.0.ref", "required"),
    ("parameters.CL.effects.0.type", "sigmoid", "parameters.CL.effects.0.type", "sigmoid"),
    ("parameters.EMAX2", {"typical": 1}, "parameters.EMAX2.units", "units"),
    ("parameters.V.typical", -3, "parameters.V.typical", "greater than 0"),
    ("bsv.parameters", ["CL", "KA"], "bsv.parameters.1", "KA"),
    ("bsv.cv_percent", [30], "bsv.cv_percent", "2 values"),
    ("bsv", {"parameters": ["CL", "V"], "omega": [[0.09, 0.2], [0.2, 0.04]]}, "bsv.omega", "not positive definite"),
    ("bsv", {"parameters": ["CL", "V"], "omega": [[0.09, 0.01], [0.02, 0.04]]}, "bsv.omega", "symmetric"),
    ("bsv", {"parameters": ["CL", "V"], "cv_percent": [30, 20], "correlation": [[1, 0.9, 0], [0.9, 1, 0], [0, 0, 1]]},
     "bsv.correlation", "2x2"),
    ("bsv", {"parameters": ["CL", "V"], "variance": [0.1, 0.1], "omega": [[0.1, 0], [0, 0.1]]}, "bsv", "exactly one"),
    ("iov", {"occasions": 2, "cv_percent": {"KA": 10}}, "iov.cv_percent.KA", "unknown parameter"),
    ("residual_error", {"type": "combined", "additive": 0.1}, "residual_error.proportional", "required"),
    ("strata", {"name": "G", "levels": {"a": {"fraction": 0.5}, "b": {"fraction": 0.4}}}, "strata.levels", "sum to 1"),
    ("covariates.eta_X", {"dist": "normal", "mean": 0, "sd": 1, "units": "1"}, "covariates.eta_X", "reserved"),
    ("covariates.ALT", {"dist": "normal", "mean": 20, "sd": 5}, "covariates.ALT.units", "units"),
]


@pytest.mark.parametrize("path, value, field, words", CASES, ids=[f"{c[0]}:{c[3]}" for c in CASES])
def test_bad_spec_names_field(path, value, field, words):
    with pytest.raises(SpecError) as e:
        load_cohort_spec(with_(path, value))
    assert e.value.field == field, str(e.value)
    assert words in e.value.message, str(e.value)
    assert str(e.value) == f"{field}: {e.value.message}"


def test_base_is_valid():
    load_cohort_spec(BASE)


def test_yaml_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\ncovariates:\n  AGE: {dist: normal, mean: 40\n")
    with pytest.raises(SpecError) as e:
        load_cohort_spec(p)
    assert e.value.field == "yaml" and "line" in e.value.message
    with pytest.raises(SpecError) as e:
        load_cohort_spec(tmp_path / "missing.yaml")
    assert e.value.field == "path"
    with pytest.raises(SpecError) as e:
        load_cohort_spec("- just\n- a list\n")
    assert e.value.field == "spec"


def test_spec_error_is_value_error():
    assert issubclass(SpecError, ValueError)


def test_bad_draw_arguments():
    with pytest.raises(SpecError) as e:
        draw_cohort(BASE, 0, seed=1)
    assert e.value.field == "n"
    with pytest.raises(SpecError) as e:
        draw_cohort(BASE, 5, seed=-1)
    assert e.value.field == "seed"
