"""Bad input -> SpecError naming the field."""
import numpy as np
import pytest

from insilico.dosing import Dose, Regimen
from insilico.engine import SolverOptions, simulate
from insilico.errors import SpecError

P = dict(CL=3.0, V=25.0)
T = np.array([1.0, 2.0])


@pytest.mark.parametrize("kwargs, field, words", [
    (dict(params={**P, "CL": -1.0}), "parameters.CL", "> 0"),
    (dict(params={**P, "V": float("nan")}), "parameters.V", "finite"),
    (dict(params={**P, "CL": np.array([1.0, np.inf])}), "parameters.CL", "finite"),
    (dict(params={"CL": 3.0}), "parameters.V", "missing"),
    (dict(params={**P, "VMAX": 2.0}), "parameters.VMAX", "unknown parameter"),
    (dict(params={**P, "CL": "abc"}), "parameters.CL", "number"),
    (dict(model="4cmt_iv"), "model", "unknown model"),
    (dict(model="1cmt_iv+foo"), "model", "unknown PD"),
    (dict(regimen=Regimen.single(-100.0)), "amt", ">= 0"),
    (dict(regimen=Regimen((Dose(amt=100.0, duration=0.0),))), "duration", "zero-length infusion"),
    (dict(regimen=Regimen((Dose(amt=100.0, rate=-2.0),))), "rate", "model parameter D1"),
    (dict(regimen=Regimen((Dose(amt=100.0, addl=3),))), "ii", "> 0"),
    (dict(regimen=Regimen((Dose(amt=100.0, time=-1.0),))), "time", ">= 0"),
    (dict(regimen=Regimen((Dose(amt=100.0, cmt="depot"),))), "cmt", "unknown compartment"),
    (dict(regimen=Regimen((Dose(amt=100.0, per="WT"),))), "per", "WT"),
    (dict(times=np.array([2.0, 1.0])), "times", "strictly increasing"),
    (dict(times=np.array([1.0, 1.0])), "times", "strictly increasing"),
    (dict(times=np.array([-1.0, 1.0])), "times", ">= 0"),
    (dict(times=np.array([])), "times", "non-empty"),
    (dict(method="euler"), "method", "auto, exact or ode"),
    (dict(model="1cmt_iv_mm", params=dict(VMAX=1.0, KM=1.0, V=1.0), method="exact"), "method", "not linear"),
])
def test_bad_input_names_the_field(kwargs, field, words):
    args = dict(model="1cmt_iv", params=P, regimen=Regimen.single(100.0), times=T)
    args.update(kwargs)
    with pytest.raises(SpecError) as e:
        simulate(args.pop("model"), args.pop("params"), args.pop("regimen"), args.pop("times"), **args)
    assert e.value.field.endswith(field) or field in e.value.field, str(e.value)
    assert words in str(e.value)


def test_bad_solver_options():
    with pytest.raises(SpecError, match="solver.solver"):
        SolverOptions(solver="rk99")
    with pytest.raises(SpecError, match="solver.rtol"):
        SolverOptions(rtol=0.0)
