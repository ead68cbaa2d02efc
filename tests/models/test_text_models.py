"""Models written as text equations (`insilico.models.text_model`): equal to the built-ins they
restate on both solver paths, linear ones detected and solved exactly, errors naming the field
and the symbol, and a trial spec using ``model: {file: ...}``."""
from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from insilico.config import validate
from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.models import ModelRef, describe_text_model, get_model, load_text_model, resolve_model, text_model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "models" / "1cmt_oral_text.yaml"

TWO_CMT_ORAL = {
    "name": "2cmt_oral_text",
    "states": ["depot", "central", "periph1"],
    "parameters": {"CL": {}, "V1": {}, "Q": {}, "V2": {}, "KA": {}, "F": {"default": 1.0},
                   "ALAG": {"default": 0.0, "constraint": "nonnegative"}},
    "doses": {"depot": {"bioavailability": "F", "lag": "ALAG"}, "central": None},
    "equations": ["flow = Q * (central / V1 - periph1 / V2)",      # an assignment used before it is defined
                  "d/dt(depot) = -KA * depot",
                  "d/dt(central) = KA * depot - CL / V1 * central - flow",
                  "d/dt(periph1) = flow"],
    "outputs": {"conc": {"expr": "central / V1", "units": "mg/L"}},
}

MM_ORAL = {
    "name": "1cmt_oral_mm_text",
    "states": ["depot", "central"],
    "parameters": {"V": {}, "VMAX": {}, "KM": {}, "KA": {}, "F": {"default": 1.0},
                   "ALAG": {"default": 0.0, "constraint": "nonnegative"}},
    "doses": {"depot": {"bioavailability": "F", "lag": "ALAG"}, "central": {}},
    "equations": ["C = central / V",
                  "d/dt(depot) = -KA * depot",
                  "d/dt(central) = KA * depot - VMAX * C / (KM + C)"],
    "outputs": {"conc": {"expr": "C", "units": "mg/L"}},
}

# three subjects with distinct eigenvalues; oral doses with F and ALAG, an IV infusion, repeated dosing
PARAMS = {"CL": [2.0, 5.0, 9.0], "V": [30.0, 45.0, 60.0], "V1": [20.0, 30.0, 40.0], "Q": [4.0, 8.0, 1.5],
          "V2": [50.0, 80.0, 120.0], "KA": [1.1, 0.6, 2.5], "F": [0.7, 1.0, 0.9], "ALAG": [0.0, 0.4, 0.25],
          "VMAX": [20.0, 35.0, 50.0], "KM": [1.5, 3.0, 0.8]}
REGIMEN = Regimen((Dose(amt=100.0, ii=12.0, addl=2), Dose(amt=50.0, time=30.0, cmt="central", duration=2.0)))
TIMES = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 12.5, 24.0, 30.0, 31.0, 32.0, 36.0, 48.0, 72.0])


def params_for(model):
    return {k: np.asarray(PARAMS[k]) for k in model.parameter_names}


@pytest.fixture(scope="module")
def one_cmt():
    return load_text_model(EXAMPLE)


@pytest.fixture(scope="module")
def two_cmt():
    return text_model(TWO_CMT_ORAL)


@pytest.mark.parametrize("which, builtin", [("one_cmt", "1cmt_oral"), ("two_cmt", "2cmt_oral")])
def test_linear_text_model_equals_the_builtin_on_both_paths(request, which, builtin):
    """Concentrations of the text model and the built-in it restates agree to 1e-10 on the exact
    path and on the ODE path (same solver, same tolerances: only rounding differs)."""
    text, ref = request.getfixturevalue(which), get_model(builtin)
    assert text.is_linear and ref.is_linear
    assert text.parameter_names == ref.parameter_names and text.dose_compartments == ref.dose_compartments
    p = params_for(ref)
    for method in ("exact", "ode"):
        a = simulate(text, p, REGIMEN, TIMES, method=method)
        b = simulate(ref, p, REGIMEN, TIMES, method=method)
        assert (a["status"].values == 0).all() and a.attrs["method"] == method
        np.testing.assert_allclose(a["conc"].values, b["conc"].values, rtol=1e-10, atol=1e-12, err_msg=method)
    assert a["conc"].attrs["units"] == "mg/L"


@pytest.mark.parametrize("which", ["one_cmt", "two_cmt"])
def test_linear_form_is_the_right_hand_side(request, which):
    """The system matrix K is the right-hand side's Jacobian at every state (f(y) = K y at random
    states and parameters) and the eigenvalues are K's (numpy, non-symmetric solver)."""
    m = request.getfixturevalue(which)
    rng = np.random.default_rng(3)
    for _ in range(3):
        p = {k: jnp.asarray(rng.uniform(0.2, 5.0)) for k in m.parameter_names}
        K = np.asarray(m.system_matrix(p))
        for y in rng.uniform(-10, 10, size=(3, m.n_states)):
            np.testing.assert_allclose(np.asarray(m.rhs(0.0, jnp.asarray(y), p)), K @ y, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(np.asarray(jax.jacfwd(m.rhs, argnums=1)(0.0, jnp.asarray(y), p)), K,
                                       rtol=0, atol=1e-14)
        np.testing.assert_allclose(np.sort(np.asarray(m.eigenvalues(p))), np.sort(np.linalg.eigvals(K).real),
                                   rtol=1e-10)


def test_exact_path_gradients_equal_the_builtin(two_cmt):
    """Estimation differentiates through the exact path: d(sum of conc)/d(parameter) of the text
    2-compartment model equals the built-in's (closed-form eigenvalues) to 1e-10."""
    from insilico.engine import solve_subject
    dose = tuple(jnp.asarray(a) for a in ([0.0, 12.0], [100.0, 100.0], [0.0, 0.0], [0, 0], [0, 0], [0.0, 0.0]))
    obs = jnp.asarray([0.5, 1.0, 4.0, 13.0, 24.0])
    p = {"CL": 3.0, "V1": 30.0, "Q": 5.0, "V2": 60.0, "KA": 1.2, "F": 0.9, "ALAG": 0.1}

    def gradient(model):
        def total(q):
            return jnp.sum(solve_subject(model, q, dose, obs, "exact", has_infusion=False, has_ss=False)[0]["conc"])
        return jax.jit(jax.grad(total))(p)
    got, ref = gradient(two_cmt), gradient(get_model("2cmt_oral"))
    for k in p:
        np.testing.assert_allclose(float(got[k]), float(ref[k]), rtol=1e-10, err_msg=k)


def _variant(base: dict, **changes) -> dict:
    out = yaml.safe_load(yaml.safe_dump(base, sort_keys=False))
    out.update(changes)
    return out


@pytest.mark.parametrize("equations, linear", [
    (TWO_CMT_ORAL["equations"], True),
    # a condition on a parameter keeps it linear; on a state or with time it does not
    (["flow = Q * (central / V1 - periph1 / V2)", "d/dt(depot) = -where(KA > 1, KA, 1.0 * KA) * depot",
      "d/dt(central) = KA * depot - CL / V1 * central - flow", "d/dt(periph1) = flow"], True),
    (["flow = Q * (central / V1 - periph1 / V2)", "d/dt(depot) = -KA * depot",
      "d/dt(central) = KA * depot - (CL if central > 1 else 2 * CL) / V1 * central - flow",
      "d/dt(periph1) = flow"], False),
    (["flow = Q * (central / V1 - periph1 / V2)", "d/dt(depot) = -KA * depot * exp(-0.01 * t)",
      "d/dt(central) = KA * depot - CL / V1 * central - flow", "d/dt(periph1) = flow"], False),
    # a zero-order input (no exact path for constant inputs) and a product of states
    (["flow = Q * (central / V1 - periph1 / V2)", "d/dt(depot) = -KA * depot + 1",
      "d/dt(central) = KA * depot - CL / V1 * central - flow", "d/dt(periph1) = flow"], False),
    (["flow = Q * (central / V1 - periph1 / V2)", "d/dt(depot) = -KA * depot",
      "d/dt(central) = KA * depot - CL / V1 * central * central - flow", "d/dt(periph1) = flow"], False),
], ids=["linear", "where-on-parameter", "if-on-state", "time", "zero-order-input", "quadratic"])
def test_linear_detection(equations, linear):
    assert text_model(_variant(TWO_CMT_ORAL, equations=equations)).is_linear is linear


def test_cyclic_exchange_uses_the_ode_path():
    """Three compartments exchanging in a ring have no symmetrisable form: solved by ODE."""
    m = text_model({"states": ["a", "b", "c"], "parameters": {"K1": {"units": "1/h"}},
                    "doses": ["a"], "equations": ["d/dt(a) = K1 * (b + c - 2 * a)", "d/dt(b) = K1 * (a + c - 2 * b)",
                                                  "d/dt(c) = K1 * (a + b - 2 * c)"],
                    "outputs": {"total": {"expr": "a + b + c", "units": "mg"}}})
    assert not m.is_linear


def test_michaelis_menten_text_model_equals_the_builtin():
    """A Michaelis-Menten model (ODE path) equals the built-in 1cmt_oral_mm to 1e-7."""
    text, ref = text_model(MM_ORAL), get_model("1cmt_oral_mm")
    assert not text.is_linear
    p = params_for(ref)
    a = simulate(text, p, REGIMEN, TIMES)
    b = simulate(ref, p, REGIMEN, TIMES)
    assert a.attrs["method"] == "ode" and (a["status"].values == 0).all()
    np.testing.assert_allclose(a["conc"].values, b["conc"].values, rtol=1e-7, atol=1e-10)


def test_initial_state_and_outputs():
    """An indirect-response baseline R(0) = KIN/KOUT is a steady state without drug; outputs over
    a time axis, one reading an assignment."""
    m = text_model({"states": {"central": None, "R": {"units": "1", "initial": "KIN / KOUT"}},
                    "parameters": {"CL": {}, "V": {}, "KIN": {"units": "1/h"}, "KOUT": {},
                                   "IC50": {}},
                    "doses": ["central"],
                    "equations": ["C = central / V", "d/dt(central) = -CL * C",
                                  "d/dt(R) = KIN * (1 - C / (IC50 + C)) - KOUT * R"],
                    "outputs": {"response": {"expr": "R", "units": "1"}, "conc": {"expr": "C", "units": "mg/L"}}})
    p = {"CL": 1.0, "V": 10.0, "KIN": 4.0, "KOUT": 0.5, "IC50": 1.0}
    y0 = m.y0(p)
    np.testing.assert_allclose(np.asarray(y0), [0.0, 8.0], rtol=1e-15)
    np.testing.assert_allclose(np.asarray(m.rhs(0.0, y0, p)), 0.0, atol=1e-15)      # baseline is a steady state
    y = jnp.asarray([[20.0, 8.0], [5.0, 6.0]])                                     # two time points
    out = m.evaluate_outputs(y, p)
    np.testing.assert_allclose(np.asarray(out["conc"]), [2.0, 0.5], rtol=1e-15)
    np.testing.assert_allclose(np.asarray(out["response"]), [8.0, 6.0], rtol=1e-15)
    assert not m.is_linear
    assert m.parameter("KIN").units == "1/h" and m.parameter("CL").units == "L/h"


def _refused(mapping, field, *words):
    with pytest.raises(SpecError) as e:
        text_model(mapping)
    assert e.value.field == field, str(e.value)
    for w in words:
        assert w in e.value.message, str(e.value)


BASE_EQS = TWO_CMT_ORAL["equations"]


@pytest.mark.parametrize("changes, field, words", [
    ({"equations": BASE_EQS[:2] + ["d/dt(central) = KA * depot - KZ * central - flow"] + BASE_EQS[3:]},
     "equations.2", ("unknown symbol 'KZ'", "parameters: CL")),
    ({"equations": BASE_EQS + ["d/dt(gut) = -KA * gut"]}, "equations.4", ("'gut' is not a state",)),
    ({"equations": BASE_EQS[:3]}, "equations", ("'periph1' has no equation",)),
    ({"equations": ["flow = Q * (central / V1 - x)", "x = flow / V2"] + BASE_EQS[1:]}, "equations.0",
     ("cyclic assignment", "flow -> x -> flow")),
    ({"equations": BASE_EQS + ["d/dt(depot) = 0"]}, "equations.4", ("second equation for d/dt(depot)",)),
    ({"equations": BASE_EQS + ["central = 1"]}, "equations.4", ("cannot assign to state 'central'",)),
    ({"equations": BASE_EQS + ["KA = 1"]}, "equations.4", ("cannot assign to parameter 'KA'",)),
    ({"equations": BASE_EQS + ["d/dt(depot) 3"]}, "equations.4", ("expected `d/dt(state) = expression`",)),
    ({"equations": BASE_EQS + ["y = __import__('os')"]}, "equations.4", ("unknown function",)),
    ({"doses": {"gut": {}}}, "doses.gut", ("'gut' is not a state",)),
    ({"doses": {"depot": {"bioavailability": "FF"}}}, "doses.depot.bioavailability", ("'FF' is not a parameter",)),
    ({"parameters": {**TWO_CMT_ORAL["parameters"], "K12": {}}}, "parameters.K12.units", ("missing",)),
    ({"parameters": {**TWO_CMT_ORAL["parameters"], "exp": {"units": "1"}}}, "parameters.exp", ("reserved",)),
    ({"outputs": {"conc": {"expr": "central / V1 * t", "units": "mg/L"}}}, "outputs.conc", ("'t'",)),
    ({"outputs": {"conc": {"expr": "central / V1", "units": "mg/"}}}, "outputs.conc.units", ("invalid units",)),
    ({"outputs": {"conc": {"expr": "central > 1", "units": "1"}}}, "outputs.conc.expr", ("is a condition",)),
    ({"states": {"depot": {"initial": "KA * central"}, "central": {}, "periph1": {}}}, "states.depot.initial",
     ("unknown symbol 'central'",)),
    ({"extra": 1}, "extra", ("unknown field",)),
], ids=["unknown-symbol", "undefined-state", "state-without-equation", "cycle", "two-equations",
        "assign-state", "assign-parameter", "syntax", "no-python", "dose-into-non-state", "dose-bioavailability",
        "units-missing", "reserved-name", "output-with-time", "output-units", "output-condition", "initial-reads-state",
        "unknown-field"])
def test_errors_name_the_field_and_symbol(changes, field, words):
    _refused(_variant(TWO_CMT_ORAL, **changes), field, *words)


def test_model_reference_sources(tmp_path):
    """One of name | import | file | text; errors in a file name the field inside it, inline ones
    sit under model.text."""
    with pytest.raises(SpecError) as e:
        validate(ModelRef, {"name": "1cmt_oral", "file": "m.yaml"}, prefix="model")
    assert e.value.field == "model" and "exactly one of" in e.value.message and "got name, file" in e.value.message
    assert resolve_model(ModelRef(file=str(EXAMPLE))).name == "1cmt_oral_text"
    assert resolve_model(ModelRef(file="1cmt_oral_text.yaml"), base=EXAMPLE.parent).is_linear
    with pytest.raises(SpecError) as e:
        resolve_model(ModelRef(file="missing.yaml"), base=tmp_path)
    assert e.value.field == "model.file" and "not found" in e.value.message
    bad = _variant(TWO_CMT_ORAL, equations=BASE_EQS[:1] + ["d/dt(depot) = -KA * dpot"] + BASE_EQS[2:])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(SpecError) as e:
        resolve_model(ModelRef(file="bad.yaml"), base=tmp_path)
    assert e.value.field == "model.equations.1" and "bad.yaml" in e.value.message and "'dpot'" in e.value.message
    with pytest.raises(SpecError) as e:
        resolve_model(ModelRef(text=bad))
    assert e.value.field == "model.text.equations.1"
    assert ModelRef(text=TWO_CMT_ORAL).label == "text model 2cmt_oral_text"


def test_population_model_with_a_text_model_file(tmp_path):
    """A population model (estimation, twins) names a text model file relative to its folder; the
    problem takes the model's parameter units and solves it on the exact path."""
    import pandas as pd

    from insilico.estimation import build_problem, load_population_model
    shutil.copy(EXAMPLE, tmp_path / "oral.yaml")
    (tmp_path / "pop.yaml").write_text(yaml.safe_dump({
        "model": {"file": "oral.yaml"}, "parameters": {"CL": {"typical": 2.0}, "V": {"typical": 20.0},
                                                        "KA": {"typical": 1.0}},
        "bsv": {"parameters": ["CL"], "variance": [0.1]},
        "residual_error": {"type": "proportional", "proportional": 0.1}}))
    data = pd.DataFrame({"ID": [1, 1, 1], "TIME": [0.0, 1.0, 4.0], "AMT": [100.0, 0, 0], "EVID": [1, 0, 0],
                         "DV": [".", 2.0, 1.5], "CMT": [1, 2, 2]})
    spec, base = load_population_model(tmp_path / "pop.yaml")
    problem = build_problem(spec, data, base=base)
    assert problem.model.name == "1cmt_oral_text" and problem.method == "exact"
    assert problem.spec.parameters["CL"].units == "L/h"


def test_describe_prints_units(one_cmt):
    text = describe_text_model(one_cmt)
    for piece in ("exact (linear) path", "depot [mg]", "CL [L/h]", "d/dt(central) = KA * depot - CL * C    [mg/h]",
                  "conc = central / V    [mg/L]", "depot F=F ALAG=ALAG"):
        assert piece in text, piece


def test_cli_show(tmp_path):
    from typer.testing import CliRunner

    from insilico.cli import app
    res = CliRunner().invoke(app, ["models", "--show", str(EXAMPLE)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "KA [1/h]" in res.output and "conc = central / V" in res.output
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(_variant(TWO_CMT_ORAL, doses=["gut"])))
    res = CliRunner().invoke(app, ["models", "--show", str(tmp_path / "bad.yaml")])
    assert res.exit_code == 2 and "doses.gut" in res.output


def test_trial_with_a_text_model_file(tmp_path, client):
    """A trial spec with ``model: {file: ...}`` validates and runs; every subject's AUC(0-400 h) of
    one oral dose equals the closed form from its stored CL, V and KA (F = 1)."""
    from insilico.trials import load_trial_spec, prepare, run
    shutil.copy(EXAMPLE, tmp_path / "oral.yaml")
    spec = {"name": "text_model_trial", "seed": 5, "n": 12, "model": {"file": "oral.yaml"},
            "cohort": {"name": "c", "parameters": {"CL": {"typical": 5.0}, "V": {"typical": 40.0},
                                                   "KA": {"typical": 1.5}},
                       "bsv": {"parameters": ["CL", "V"], "cv_percent": [30, 20]}},
            "arms": [{"name": "a", "regimen": [{"amt": 100}]}], "observations": {"times": [1, 2, 4, 8]},
            "endpoints": [{"name": "auc", "type": "auc", "window": [0, 400]}],
            "execution": {"grid_step": 0.25}}
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(spec))
    ctx = prepare(*load_trial_spec(tmp_path / "trial.yaml"))
    assert ctx.model.name == "1cmt_oral_text" and ctx.model.is_linear
    ds = run(tmp_path / "trial.yaml", tmp_path / "r.zarr", cluster=client).load()
    assert (ds["status"].values == 0).all()
    cl, v, ka = (ds[k].values[0] for k in ("CL", "V", "KA"))
    k = cl / v     # AUC(0-400) of a 1-compartment oral dose, closed form (Gibaldi & Perrier)
    auc = 100 / cl * (1 - (ka * np.exp(-k * 400) - k * np.exp(-ka * 400)) / (ka - k))
    np.testing.assert_allclose(ds["auc"].values[0, 0], auc, rtol=1e-4)
