"""The model library: parameter metadata from one table, validation, linear-system form."""
import numpy as np
import pytest

from insilico.errors import SpecError
from insilico.models import PARAMETER_INFO, builtin_model_names, get_model, parameter_info
from insilico.units import is_valid_units

# typical values (distinct eigenvalues) for the models checked below
TYPICAL = {"CL": 5.0, "V": 40.0, "V1": 30.0, "Q": 8.0, "V2": 60.0, "Q3": 2.0, "V3": 150.0, "KA": 1.3,
           "F": 0.8, "ALAG": 0.25, "KE0": 0.7, "EMAX": 50.0, "EC50": 2.0, "GAMMA": 1.5, "E0": 10.0}


def params_for(model):
    return {k: TYPICAL[k] for k in model.parameter_names}


@pytest.mark.parametrize("name", ["3cmt_iv", "3cmt_oral", "2cmt_oral+ke0+sigmoid_emax"])
def test_closed_form_eigenvalues_match_numpy(name):
    m = get_model(name)
    p = params_for(m)
    lam = np.sort(np.asarray(m.eigenvalues(p)))
    ref = np.sort(np.linalg.eigvals(np.asarray(m.system_matrix(p))).real)
    np.testing.assert_allclose(lam, ref, rtol=1e-10)


def test_model_parameter_validation_lists_known_names():
    with pytest.raises(SpecError) as e:
        get_model("2cmt_oral").validate_params({"CL": 1, "V": 2})
    assert "parameters.V" in str(e.value) and "V1" in str(e.value)


@pytest.mark.parametrize("name", builtin_model_names())
def test_parameter_units_and_names_come_from_the_one_table(name):
    """Every standard parameter of a built-in model carries the table's units and long name,
    and every unit string follows the units grammar."""
    m = get_model(name)
    assert m.parameters
    for p in m.parameters:
        assert is_valid_units(p.units), (name, p.name, p.units)
        if p.name in PARAMETER_INFO:
            info = parameter_info(p.name)
            assert (p.units, p.description) == (info.units, info.long_name), (name, p.name)
