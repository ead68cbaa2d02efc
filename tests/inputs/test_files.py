"""File-level input classes: not text, not a file, duplicate keys, alias bombs, strict types,
non-finite numbers. Each case one test; CLI cases exit 2 naming the field."""
from __future__ import annotations

import pytest
import yaml

from insilico.config import MAX_SPEC_NODES, apply_overrides, load_yaml, read_mapping
from insilico.errors import SpecError

from .conftest import BASE, refused, refused_path, trial


def test_binary_spec_file(tmp_path):
    refused(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "path", "binary file")


def test_latin1_spec_file(tmp_path):
    text = yaml.safe_dump(trial(description="caf\u00e9"), sort_keys=False, allow_unicode=True).encode("latin-1")
    refused(tmp_path, text, "path", "not UTF-8")


def test_utf16_spec_file(tmp_path):
    refused(tmp_path, yaml.safe_dump(BASE).encode("utf-16"), "path", "UTF-16")


def test_directory_as_spec(tmp_path):
    (tmp_path / "d.yaml").mkdir()
    refused_path(tmp_path, tmp_path / "d.yaml", "path", "is a directory")


def test_directory_as_cohort(tmp_path):
    (tmp_path / "c.yaml").mkdir()
    refused(tmp_path, yaml.safe_dump(trial(cohort=str(tmp_path / "c.yaml"))), "cohort.path", "is a directory")


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump({"a": 1}).encode())
    assert read_mapping(p)[0] == {"a": 1}


def test_duplicate_top_level_key(tmp_path):
    text = yaml.safe_dump(BASE, sort_keys=False) + "n: 10\n"
    out = refused(tmp_path, text, "yaml", "duplicate key 'n'")
    assert "line" in out


def test_duplicate_nested_key_names_line():
    with pytest.raises(SpecError) as e:
        load_yaml("a:\n  b: 1\n  c: 2\n  b: 3\n")
    assert e.value.field == "yaml" and "'b' at line 4 (first given at line 2)" in e.value.message


def test_merge_key_override_is_not_a_duplicate():
    assert load_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")["other"] == {"x": 1, "y": 3}


def test_alias_bomb_refused(tmp_path):
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    refused(tmp_path, "\n".join(lines) + "\nname: bomb\n", "yaml", f"limit {MAX_SPEC_NODES}")


def test_recursive_alias_refused():
    with pytest.raises(SpecError, match="recursive alias"):
        load_yaml("a: &a [1, *a]\n")


def test_deep_nesting_refused():
    with pytest.raises(SpecError) as e:
        load_yaml("[" * 5000 + "]" * 5000)
    assert e.value.field == "yaml"


def test_override_value_with_duplicate_key():
    with pytest.raises(SpecError) as e:
        apply_overrides({"a": 1}, ["a={x: 1, x: 2}"])
    assert e.value.field == "--set a" and "duplicate key" in e.value.message


@pytest.mark.parametrize("field, value, words", [
    ("n", True, "valid integer"),          # YAML `n: true` once became N = 1
    ("n", 400.0, "valid integer"),         # a float where an integer is meant
    ("seed", 1.5, "valid integer"),
    ("n", ".inf", "valid integer"),
], ids=["n-bool", "n-float", "seed-float", "n-inf"])
def test_strict_integers(tmp_path, field, value, words):
    text = yaml.safe_dump(trial(), sort_keys=False).replace(f"\n{field}: {BASE[field]}\n", f"\n{field}: {value}\n")
    if value == ".inf":
        text = text.replace("n: .inf", "n: .inf")
    refused(tmp_path, text, field, words)


def test_bool_amount_refused(tmp_path):
    d = trial()
    d["arms"][1]["regimen"][0]["amt"] = True
    refused(tmp_path, yaml.safe_dump(d, sort_keys=False), "arms.1.regimen.0.amt", "valid number")


def test_string_number_refused(tmp_path):
    d = trial()
    d["execution"]["grid_step"] = "0.5"
    refused(tmp_path, yaml.safe_dump(d, sort_keys=False), "execution.grid_step", "valid number")


def test_inf_fixed_parameter(tmp_path):
    d = trial()
    d["model"]["parameters"] = {"KA": float("inf")}
    refused(tmp_path, yaml.safe_dump(d, sort_keys=False), "model.parameters.KA", "finite number")


def test_nan_dropout_hazard(tmp_path):
    d = trial()
    d["dropout"] = {"hazard": float("nan")}
    refused(tmp_path, yaml.safe_dump(d, sort_keys=False), "dropout.hazard", "finite number")


def test_inf_window_end(tmp_path):
    d = trial()
    d["endpoints"][0]["window"] = [648, float("inf")]
    refused(tmp_path, yaml.safe_dump(d, sort_keys=False), "endpoints.0.window", "finite number")


def test_cohort_typical_inf(tmp_path):
    from insilico.cohorts import load_cohort_spec
    with pytest.raises(SpecError) as e:
        load_cohort_spec({"name": "c", "covariates": {"X": {"dist": "normal", "mean": 0.0, "sd": 1.0}},
                          "parameters": {"CL": {"typical": float("inf")}}})
    assert e.value.field == "parameters.CL.typical" and "finite" in e.value.message


def test_cohort_occasions_bool():
    from insilico.cohorts import load_cohort_spec
    with pytest.raises(SpecError) as e:
        load_cohort_spec({"name": "c", "covariates": {"X": {"dist": "normal", "mean": 0.0, "sd": 1.0}},
                          "parameters": {"CL": {"typical": 1.0}}, "iov": {"occasions": True,
                                                                           "cv_percent": {"CL": 10.0}}})
    assert e.value.field == "iov.occasions" and "integer" in e.value.message
