"""Every example YAML loads, draws, and produces a self-describing Dataset."""
import json

import numpy as np
import pytest

from insilico.cohorts import load_cohort_spec
from tests.cohorts.conftest import COHORTS, EXAMPLES


@pytest.mark.parametrize("path", sorted(COHORTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_cohort_yaml_loads(path):
    """Every spec in cohorts/ passes the schema and semantic checks (the three examples of this
    module are also drawn below)."""
    spec = load_cohort_spec(path)
    assert spec.name == path.stem


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_draws(constrained, specs, name):
    ds = constrained[name]
    spec = specs[name]
    assert ds.sizes["subject"] == 5000 and ds.subject.dtype == np.int64
    assert load_cohort_spec(json.loads(ds.attrs["spec"])) == spec
    assert ds.attrs["seed"] == 5 and 0 < ds.attrs["acceptance_rate"] <= 1
    for v in list(ds.data_vars) + list(ds.coords):
        assert ds[v].attrs.get("units") and ds[v].attrs.get("long_name"), v
        assert np.all(np.isfinite(ds[v].values)), v
    for p in spec.parameters:
        assert p in ds and (ds[p] > 0).all()
    for cov, c in spec.covariates.items():
        if c.dist == "categorical":
            assert ds[cov].dtype == np.int64
            assert ds[cov].attrs["flag_meanings"].split() == list(c.probs)
            assert ds[cov].attrs["flag_values"] == list(range(len(c.probs)))


def test_units(constrained):
    ds = constrained["healthy_adults"]
    expected = {"AGE": "years", "WT": "kg", "HT": "cm", "SCR": "mg/dL", "CRCL": "mL/min", "BMI": "kg/m2",
                "BSA": "m2", "CL": "L/h", "V1": "L", "Q": "L/h", "V2": "L", "KA": "1/h"}
    assert {k: ds[k].attrs["units"] for k in expected} == expected


def test_paediatric_ranges(constrained):
    ds = constrained["paediatric"]
    assert float(ds.AGE.min()) >= 2 and float(ds.AGE.max()) <= 12
    assert (ds.WT >= 10).all()
    # allometric scaling: CL per kg^0.75 constant apart from eta
    np.testing.assert_allclose(ds.CL / np.exp(ds.eta_CL), 5.0 * (ds.WT / 70) ** 0.75, rtol=1e-12)
