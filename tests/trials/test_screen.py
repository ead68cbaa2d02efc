"""Screening subjects before simulation (`insilico.trials._screen`): the per-subject rules agree
with the model's own batch rule (`Parameter.check`) applied to each value alone."""
import dataclasses

import numpy as np
import pytest

from insilico.engine import status as codes
from insilico.errors import SpecError
from insilico.models import Parameter
from insilico.trials._screen import Problem, parameter_ok, subject_status

VALUES = np.array([-np.inf, -2.0, -1e-300, 0.0, 1e-300, 0.5, 1.0, 1.5, 7.0, np.inf, np.nan])


def _one_by_one(par, values):
    out = []
    for v in values:
        try:
            par.check(np.asarray(v), par.name)
            out.append(True)
        except SpecError:
            out.append(False)
    return np.array(out)


@pytest.mark.parametrize("constraint", ["positive", "nonnegative", "real", "fraction"])
def test_parameter_ok_is_the_models_rule_per_value(constraint):
    par = Parameter("P", "1", "a parameter", constraint)
    np.testing.assert_array_equal(parameter_ok(par, VALUES), _one_by_one(par, VALUES))


def test_parameter_ok_defers_to_a_rule_it_does_not_know():
    @dataclasses.dataclass(frozen=True)
    class Capped(Parameter):
        def check(self, value, where):
            super().check(value, where)
            if np.any(np.asarray(value) > 5):
                raise SpecError(where, "must be <= 5")

    par = Capped("P", "1", "capped", "positive")
    np.testing.assert_array_equal(parameter_ok(par, VALUES), _one_by_one(par, VALUES))
    assert parameter_ok(par, VALUES).tolist() == [False] * 4 + [True] * 4 + [False] * 3


def test_subject_status_takes_the_first_failing_check():
    n = 5
    problems = [Problem(codes.INVALID_COVARIATE, "X", "cohort.covariates.X", "must be finite",
                        np.array([1, 0, 0, 1, 0], bool)),
                Problem(codes.INVALID_DOSE_SCALE, "WT", "arms.0.regimen.0.per", "must be > 0",
                        np.array([1, 1, 0, 0, 0], bool)),
                Problem(codes.INVALID_PARAMETER, "CL", "cohort.parameters.CL", "must be > 0",
                        np.array([1, 1, 1, 0, 0], bool))]
    assert subject_status(problems, n).tolist() == [5, 6, 7, 5, 0]
    assert subject_status([], n).tolist() == [0] * n
