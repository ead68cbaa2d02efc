"""Cohort specs refused clearly: truncation without mass, invalid per-subject parameters from
expressions, pathological expressions; a constant expression is a per-subject covariate."""
from __future__ import annotations

import numpy as np
import pytest

from insilico.cohorts import draw_cohort, load_cohort_spec
from insilico.errors import SpecError
from insilico.expressions import MAX_DEPTH, MAX_NODES, parse_expr


def spec(**covs) -> dict:
    return {"name": "t", "covariates": {"X": {"dist": "normal", "mean": 0.0, "sd": 1.0, "units": "1"}, **covs}}


def _err(s, n=5):
    with pytest.raises(SpecError) as e:
        draw_cohort(load_cohort_spec(s), n, seed=1)
    return e.value


def test_truncation_far_above_the_mean():
    e = _err(spec(Y={"dist": "truncnormal", "mean": 0.0, "sd": 1.0, "low": 40.0, "high": 41.0, "units": "1"}))
    assert e.field == "covariates.Y.low" and "no probability mass" in e.message


def test_truncation_far_below_the_mean():
    e = _err(spec(Y={"dist": "truncnormal", "mean": 0.0, "sd": 1.0, "low": -41.0, "high": -40.0, "units": "1"}))
    assert e.field == "covariates.Y.high" and "40 SD" in e.message


def test_truncation_without_mass_in_one_category():
    s = spec(S={"dist": "categorical", "probs": {"a": 0.5, "b": 0.5}},
             Y={"dist": "truncnormal", "given": "S", "mean": {"a": 0.0, "b": 100.0}, "sd": 1.0, "low": 0.0,
                "high": 1.0, "units": "1"})
    e = _err(s)
    assert e.field == "covariates.Y.high" and "'b'" in e.message


def test_truncation_at_30_sd_still_draws_inside():
    """Up to the limit the sampler is exact: every draw lies in [low, high] (independent check)."""
    d = draw_cohort(load_cohort_spec(spec(Y={"dist": "truncnormal", "mean": 0.0, "sd": 1.0, "low": 30.0,
                                              "high": 31.0, "units": "1"})), 500, seed=3)
    y = d["Y"].values
    assert np.all((y >= 30) & (y <= 31)) and np.unique(y).size == 500


def test_truncation_without_mass_from_an_expression():
    e = _err(spec(Y={"dist": "truncnormal", "mean": "X * 100", "sd": 1.0, "low": 0.0, "high": 1.0, "units": "1"}))
    assert e.field == "covariates.Y" and "no probability mass" in e.message and "subject" in e.message


def test_negative_sd_from_an_expression():
    e = _err(spec(Y={"dist": "normal", "mean": 0.0, "sd": "X", "units": "1"}))
    assert e.field == "covariates.Y.sd" and "> 0" in e.message


def test_uniform_bounds_crossing_from_an_expression():
    e = _err(spec(Y={"dist": "uniform", "low": "X", "high": 0.5, "units": "1"}), n=50)
    assert e.field == "covariates.Y.high"


def test_constant_expression_is_per_subject():
    d = draw_cohort(load_cohort_spec(spec(Y={"expr": "5", "units": "1"})), 4, seed=1)
    assert d["Y"].dims == ("subject",) and d["Y"].values.tolist() == [5.0] * 4


def test_expression_too_long():
    with pytest.raises(SpecError, match="characters"):
        load_cohort_spec(spec(Y={"expr": "+".join(["X"] * 2000), "units": "1"}))


def test_expression_nested_too_deeply():
    src = "X" + "".join(f" + (1 * ({i}" for i in range(MAX_DEPTH)) + "))" * MAX_DEPTH
    with pytest.raises(SpecError) as e:
        parse_expr(src, "covariates.Y.expr")
    assert e.value.field == "covariates.Y.expr" and "nested too deeply" in e.value.message


def _balanced(leaves: list[str]) -> str:
    if len(leaves) == 1:
        return leaves[0]
    h = len(leaves) // 2
    return f"({_balanced(leaves[:h])}+{_balanced(leaves[h:])})"


def test_expression_with_too_many_nodes():
    src = _balanced(["X"] * (MAX_NODES // 2 + 6))      # shallow (depth ~9) but > MAX_NODES nodes
    with pytest.raises(SpecError, match="too large"):
        parse_expr(src, "covariates.Y.expr")


def test_unary_recursion_bomb():
    with pytest.raises(SpecError) as e:
        load_cohort_spec(spec(Y={"expr": "-" * 1500 + "X", "units": "1"}))
    assert e.value.field == "covariates.Y.expr"


@pytest.mark.parametrize("expr, words", [("min(X)", "takes 2 arguments"), ("(X, X)", "Tuple"),
                                         ("[X]", "List"), ("X if X else", "invalid")])
def test_expression_shape_errors(expr, words):
    with pytest.raises(SpecError) as e:
        load_cohort_spec(spec(Y={"expr": expr, "units": "1"}))
    assert e.value.field == "covariates.Y.expr" and words in e.value.message
