"""Every example YAML loads, draws, and produces a self-describing Dataset."""
import json

import numpy as np
import pytest

from insilico.cohorts import load_cohort_spec
from insilico.errors import SpecError
from insilico.units import is_valid_units
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
    expected = {"AGE": "years", "WT": "kg", "HT": "cm", "SCR": "mg/dL", "CRCL": "mL/min", "BMI": "kg/m**2",
                "BSA": "m**2", "CL": "L/h", "V1": "L", "Q": "L/h", "V2": "L", "KA": "1/h"}
    assert {k: ds[k].attrs["units"] for k in expected} == expected


def test_paediatric_ranges(constrained):
    ds = constrained["paediatric"]
    assert float(ds.AGE.min()) >= 2 and float(ds.AGE.max()) <= 12
    assert (ds.WT >= 10).all()
    # allometric scaling: CL per kg^0.75 constant apart from eta
    np.testing.assert_allclose(ds.CL / np.exp(ds.eta_CL), 5.0 * (ds.WT / 70) ** 0.75, rtol=1e-12)


@pytest.mark.parametrize("name", EXAMPLES)
def test_units_parse_with_pint(constrained, name):
    """Every variable and coordinate has units that pint parses (insilico.units grammar)."""
    pint = pytest.importorskip("pint")
    ureg = pint.UnitRegistry()
    ds = constrained[name]
    for v in list(ds.data_vars) + list(ds.coords):
        units = ds[v].attrs["units"]
        assert is_valid_units(units), (v, units)
        ureg.parse_expression(units)  # raises on anything pint cannot read
    # spot checks of the dimensions
    if "BMI" in ds:
        assert ureg.parse_expression(ds.BMI.attrs["units"]).dimensionality == ureg("kg/m**2").dimensionality


@pytest.mark.parametrize("units", ["kg/m2", "mg L", "mL/min/1.73m2", ""])
def test_bad_user_units_name_the_field(units):
    spec = {"name": "u", "covariates": {"ALT": {"dist": "normal", "mean": 20, "sd": 5, "units": units}}}
    with pytest.raises(SpecError) as e:
        load_cohort_spec(spec)
    assert e.value.field == "covariates.ALT.units" and "units" in e.value.message
