"""Expressions: every function's number of arguments is checked when the spec is loaded."""
import pytest

from insilico.cohorts import load_cohort_spec
from insilico.errors import SpecError
from insilico.expressions import ARITY, FUNCTIONS
from tests.cohorts.conftest import tiny_spec

GOOD = {"exp": "exp(X)", "log": "log(2 + X ** 2)", "log10": "log10(2 + X ** 2)", "sqrt": "sqrt(1 + X ** 2)",
        "abs": "abs(X)", "min": "min(X, 1)", "max": "max(X, 1)", "where": "where(X > 0, X, 0)"}


def _spec(expr):
    return tiny_spec(covariates={"X": {"dist": "normal", "mean": 0.0, "sd": 1.0, "units": "1"},
                                 "Y": {"expr": expr, "units": "1"}})


def test_every_function_has_an_arity_and_a_case():
    assert set(ARITY) == set(FUNCTIONS) == set(GOOD)


@pytest.mark.parametrize("fn", sorted(ARITY))
def test_right_number_of_arguments_loads(fn):
    load_cohort_spec(_spec(GOOD[fn]))


@pytest.mark.parametrize("fn", sorted(ARITY))
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_number_of_arguments_names_field_and_function(fn, delta):
    n = ARITY[fn] + delta
    expr = f"{fn}({', '.join(['X'] * n)})"
    with pytest.raises(SpecError) as e:
        load_cohort_spec(_spec(expr))
    assert e.value.field == "covariates.Y.expr"
    plural = "s" if ARITY[fn] > 1 else ""
    assert e.value.message.startswith(f"{fn} takes {ARITY[fn]} argument{plural}, got {n}"), e.value.message


def test_exp_with_two_arguments_in_a_distribution_parameter():
    """The reported bug: exp(AGE, AGE) used to load and fail later with a TypeError."""
    spec = tiny_spec(covariates={"X": {"dist": "normal", "mean": 0.0, "sd": 1.0, "units": "1"},
                                 "Z": {"dist": "normal", "mean": "exp(X, X)", "sd": 1.0, "units": "1"}})
    with pytest.raises(SpecError, match="exp takes 1 argument, got 2") as e:
        load_cohort_spec(spec)
    assert e.value.field == "covariates.Z.mean"
