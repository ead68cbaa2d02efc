"""`sensitivity`: how each model output responds to each parameter over time (local sensitivity,
d y(t) / d p), by forward-mode automatic differentiation through the solve — exact, not finite
differences. On the ODE path the solver is differentiated with ``diffrax.ForwardMode``
(`SolverOptions.adjoint = "forward"`), which also makes ``jax.jacfwd``/``jax.hessian`` of any
user function of the solution work there."""
from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from insilico.dosing import DoseTable, dose_table, event_slots
from insilico.engine._ode import SolverOptions
from insilico.engine._simulate import solve_subject
from insilico.errors import SpecError
from insilico.models import Model, get_model

__all__ = ["sensitivity"]


def sensitivity(model: Model | str, params, regimen, times, output: str | None = None, *,
                parameters=None, method: str = "auto", solver: SolverOptions | None = None,
                relative: bool = False) -> xr.DataArray:
    """Sensitivity of ``output`` to ``parameters`` at ``times`` for each subject.

    Parameters
    ----------
    model, params, regimen : as `insilico.engine.simulate` (``params``: ``{name: scalar or (N,)}``;
        ``regimen``: a `Regimen`, one per subject or a `DoseTable`).
    times : shared observation times (h), strictly increasing.
    output : model output (default: the first, e.g. ``conc``).
    parameters : the parameters to differentiate by (default: every parameter given in ``params``).
    relative : ``True`` gives the normalised sensitivity d log y / d log p (dimensionless).

    Returns a DataArray ``(subject, time, parameter)`` with units ``output units / parameter units``.
    """
    if isinstance(model, str):
        model = get_model(model)
    output = output or model.output_names[0]
    if output not in model.output_names:
        raise SpecError("output", f"model {model.name!r} has no output {output!r} ({', '.join(model.output_names)})")
    if method == "auto":
        method = "exact" if model.is_linear else "ode"
    if method not in ("exact", "ode"):
        raise SpecError("method", f"must be auto, exact or ode, got {method!r}")
    solver = replace(solver or SolverOptions(), adjoint="forward")
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or t.size == 0 or np.any(np.diff(t) <= 0) or np.any(t < 0):
        raise SpecError("times", "must be a non-empty, strictly increasing 1-D array of times >= 0 (h)")
    lengths = {np.size(v) for v in params.values() if np.ndim(v) == 1}
    n = lengths.pop() if len(lengths) == 1 else 1
    p = model.validate_params(params, n=n)
    names = list(parameters) if parameters is not None else [k for k in model.parameter_names if k in params]
    for i, k in enumerate(names):
        if k not in model.parameter_names:
            raise SpecError(f"parameters.{i}", f"unknown parameter {k!r} of model {model.name!r}")
    table = regimen if isinstance(regimen, DoseTable) else dose_table(regimen, model, n)
    table = table.broadcast(n)
    has_inf, slots = bool(np.any(table.rate != 0)), event_slots(table.ss)
    rest = {k: jnp.asarray(v) for k, v in p.items() if k not in names}
    theta = jnp.stack([jnp.asarray(p[k]) for k in names], axis=-1)
    dose = tuple(jnp.asarray(getattr(table, f)) for f in ("time", "amt", "rate", "cmt", "ss", "ii"))

    def one(th, others, d):
        full = {**others, **{k: th[i] for i, k in enumerate(names)}}
        outs, _, _ = solve_subject(model, full, d, jnp.asarray(t), method, solver=solver, has_infusion=has_inf,
                                   has_ss=slots)
        return outs[output]

    jac, y = jax.jit(jax.vmap(lambda th, o, d: (jax.jacfwd(one)(th, o, d), one(th, o, d))))(theta, rest, dose)
    jac = np.asarray(jac)
    out_units = next(o.units for o in model.outputs if o.name == output)
    if relative:
        jac = jac * np.asarray(theta)[:, None, :] / np.asarray(y)[:, :, None]
        unit_list = ["1"] * len(names)
    else:
        unit_list = [_ratio(out_units, model.parameter(k).units) for k in names]
    return xr.DataArray(jac, dims=("subject", "time", "parameter"),
                        coords={"subject": np.arange(n), "time": t, "parameter": names,
                                "units_by_parameter": ("parameter", unit_list)},
                        name=f"d{output}", attrs={"long_name": f"sensitivity of {output}" +
                                                  (" (d log y / d log p)" if relative else " (dy/dp)")})


def _ratio(a: str, b: str) -> str:
    """Units of d a / d b."""
    return a if b in ("1", "") else f"({a})/({b})"
