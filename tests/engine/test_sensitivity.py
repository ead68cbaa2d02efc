"""`sensitivity` (d output / d parameter by forward-mode AD) against the analytic derivatives of the
1-compartment IV bolus, on the exact path and the ODE path (forward-mode adjoint)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from insilico.dosing import Regimen
from insilico.engine import SolverOptions, sensitivity, solve_subject
from insilico.errors import SpecError

T = np.array([0.5, 1.0, 2.0, 6.0, 12.0])


def _analytic(cl, v, dose=100.0):
    c = dose / v * np.exp(-cl / v * T)
    return np.stack([-T / v * c, c * (-1.0 / v + cl * T / v ** 2)], axis=-1)   # dC/dCL, dC/dV


@pytest.mark.parametrize("method", ["exact", "ode"])
def test_sensitivity_equals_the_analytic_derivatives(method):
    cl, v = np.array([2.0, 5.0]), np.array([20.0, 40.0])
    s = sensitivity("1cmt_iv", {"CL": cl, "V": v}, Regimen.single(100.0), T, "conc", method=method,
                    solver=SolverOptions(rtol=1e-10, atol=1e-12))
    assert s.dims == ("subject", "time", "parameter") and list(s.parameter.values) == ["CL", "V"]
    ref = np.stack([_analytic(a, b) for a, b in zip(cl, v)])
    np.testing.assert_allclose(s.values, ref, rtol=1e-6 if method == "ode" else 1e-10, atol=1e-12)
    assert s.units_by_parameter.values.tolist() == ["(mg/L)/(L/h)", "(mg/L)/(L)"]
    rel = sensitivity("1cmt_iv", {"CL": cl, "V": v}, Regimen.single(100.0), T, relative=True, method=method)
    np.testing.assert_allclose(rel.sel(parameter="CL").values, -cl[:, None] / v[:, None] * T, rtol=1e-6)


def test_forward_mode_hessian_through_the_ode_path():
    # jax.jacfwd(jax.jacfwd(.)) needs the forward-mode adjoint on the ODE path; check d2C/dCL2 analytically
    from insilico.models import get_model
    m = get_model("1cmt_iv")
    dose = tuple(jnp.asarray(a) for a in ([0.0], [100.0], [0.0], [0], [0], [0.0]))

    def conc(cl):
        outs, _, _ = solve_subject(m, {"CL": cl, "V": 20.0}, dose, jnp.asarray(T), "ode",
                                   solver=SolverOptions(rtol=1e-10, atol=1e-12, adjoint="forward"), has_ss=False,
                                   has_infusion=False)
        return outs["conc"]

    d2 = np.asarray(jax.jacfwd(jax.jacfwd(conc))(2.0))
    np.testing.assert_allclose(d2, (T / 20.0) ** 2 * 100 / 20 * np.exp(-2.0 / 20 * T), rtol=1e-6)


def test_unknown_parameter_and_output_are_refused():
    with pytest.raises(SpecError) as e:
        sensitivity("1cmt_iv", {"CL": 2.0, "V": 20.0}, Regimen.single(100.0), T, parameters=["KA"])
    assert e.value.field == "parameters.0"
    with pytest.raises(SpecError) as e:
        sensitivity("1cmt_iv", {"CL": 2.0, "V": 20.0}, Regimen.single(100.0), T, output="effect")
    assert e.value.field == "output"
