"""Units and CF flags: every variable and coordinate of a trial store and of an NCA result has
``units`` in the `insilico.units` grammar that pint parses; coded variables carry matching
``flag_values`` / ``flag_meanings``."""
import numpy as np
import pint
import pytest

from insilico.units import is_valid_units

UREG = pint.UnitRegistry()
FLAGGED = ("status", "allocated_arm", "_done", "dose_cmt", "SEX")


def _check_units(ds):
    for name, var in ds.variables.items():
        units = var.attrs.get("units")
        assert units is not None, f"{name} has no units"
        assert is_valid_units(units), f"{name}: {units!r}"
        UREG.parse_expression(units)                       # raises if pint cannot read it
        assert var.attrs.get("long_name"), f"{name} has no long_name"


def _check_flags(var):
    values, meanings = var.attrs["flag_values"], var.attrs["flag_meanings"].split()
    assert len(values) == len(meanings) == len(set(values))
    assert np.isin(np.unique(var.values), values).all()     # every stored code is declared


@pytest.mark.parametrize("which", ["ds", "pta_ds"])
def test_every_variable_of_a_trial_store_has_units_and_flags(which, request):
    ds = request.getfixturevalue(which)
    _check_units(ds)
    for name in FLAGGED:
        if name in ds:
            _check_flags(ds[name])
    assert ds["auc_ss" if "auc_ss" in ds else "ft_mic"].attrs["units"] in ("mg*h/L", "1")


def test_every_variable_of_an_nca_result_has_units(ds):
    res = ds.insilico.nca("conc")
    _check_units(res)
    assert res["aumclast"].attrs["units"] == "mg*h**2/L" and res["auc_pct_extrap_obs"].attrs["units"] == "percent"
    assert res["cl_obs"].attrs["units"] == "L/h" and res["vz_obs"].attrs["units"] == "L"
    assert set(res["nca_flags"].attrs["flag_meanings"].split()) >= {"no_data", "no_dose"}
