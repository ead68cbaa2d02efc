"""Shared cohorts (session-scoped: each spec compiles once per test session)."""
from __future__ import annotations

from pathlib import Path

import pytest

import insilico  # noqa: F401
from insilico.cohorts import draw_cohort, load_cohort_spec

COHORTS = Path(__file__).resolve().parents[2] / "cohorts"
EXAMPLES = ("healthy_adults", "renal_impairment", "paediatric")


@pytest.fixture(scope="session")
def specs():
    return {name: load_cohort_spec(COHORTS / f"{name}.yaml") for name in EXAMPLES}


@pytest.fixture(scope="session")
def healthy(specs):
    return specs["healthy_adults"]


@pytest.fixture(scope="session")
def healthy_100(healthy):
    return draw_cohort(healthy, 100, seed=11)


@pytest.fixture(scope="session")
def unconstrained(specs):
    """20,000 unconstrained subjects of each example (targets of the validation report)."""
    return {name: draw_cohort(s, 20_000, seed=5, apply_criteria=False) for name, s in specs.items()}


@pytest.fixture(scope="session")
def constrained(specs):
    return {name: draw_cohort(s, 5_000, seed=5) for name, s in specs.items()}


def tiny_spec(**over) -> dict:
    """A one-covariate spec (cheap to compile) for criteria and error tests."""
    spec = {"name": "tiny", "covariates": {"X": {"dist": "normal", "mean": 0.0, "sd": 1.0, "units": "1"}}}
    spec.update(over)
    return spec
