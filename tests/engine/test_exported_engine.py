"""Engine kernels kept across processes (`insilico.exported.persistent`, keyed by `fingerprint`).

Reference: the same simulation with ``INSILICO_JAX_CACHE=off`` (plain `jax.jit`, nothing kept),
run in its own process. Each case is then run in a process that exports its kernel (empty cache
folder) and in a later process that loads the kept program; both must equal the reference bit
for bit. Changing only what a kernel closes over (the ODE tolerances, a coefficient of a text
model's equation) leaves the arguments' shapes unchanged, so only the key can tell the programs
apart: those runs must equal their own references, not the kept program of the first model.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from insilico import exported
from insilico.dosing import Regimen
from insilico.engine import SolverOptions, simulate
from insilico.models import Model, Output, Parameter, get_model, load_text_model, text_model

ROOT = Path(__file__).resolve().parents[2]
TEXT = ROOT / "models" / "1cmt_oral_text.yaml"

CHILD = r"""
import json, sys
from pathlib import Path
import numpy as np, pandas as pd, yaml
import jax
from insilico import exported
from insilico.dosing import Regimen
from insilico.engine import SolverOptions, simulate
from insilico.models import text_model

out, text_file, cases = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
spec = yaml.safe_load(Path(text_file).read_text())
v1 = text_model(spec)
spec["equations"] = [e.replace("- CL * C", "- 2 * CL * C") for e in spec["equations"]]
v2 = text_model(spec)
n = 8
p = {"CL": np.linspace(3, 6, n), "V": np.linspace(30, 50, n), "KA": np.linspace(0.8, 1.6, n)}
reg, t = Regimen.repeated(100, 12, 4), np.linspace(0, 72, 13)
run = {
    "ode": lambda: simulate(v1, p, reg, t, method="ode"),
    "exact": lambda: simulate(v1, p, reg, t, method="exact"),
    "ode_rtol": lambda: simulate(v1, p, reg, t, method="ode", solver=SolverOptions(rtol=1e-4, atol=1e-6)),
    "exact_v2": lambda: simulate(v2, p, reg, t, method="exact"),
    "varying": lambda: simulate(v1, pd.DataFrame({   # CL changes at 24 h: the micro-batched lax.map kernel
        "ID": np.repeat(np.arange(n), 2), "TIME": np.tile([0.0, 24.0], n),
        "CL": np.repeat(p["CL"], 2) * np.tile([1.0, 0.5], n), "V": np.repeat(p["V"], 2),
        "KA": np.repeat(p["KA"], 2)}), reg, t, method="exact"),
}
folder = Path(jax.config.jax_compilation_cache_dir or "-") / exported.SUBDIR
listing = lambda: set(folder.glob("*.bin")) if folder.is_dir() else set()
report = {}
for case in cases:
    before = listing()
    ds = run[case]()
    np.savez(out / f"{case}.npz", conc=ds["conc"].values, status=ds["status"].values)
    report[case] = sorted(str(f) for f in listing() - before)
# a kernel JAX cannot export (a host callback): jitted as is, nothing kept
before = listing()
twice = lambda a: np.asarray(a) * 2.0
cb = exported.persistent(lambda x: jax.pure_callback(twice, jax.ShapeDtypeStruct((3,), np.float64), x) + 1.0,
                         "test callback", "k")
report["callback"] = {"value": np.asarray(cb(np.arange(3.0))).tolist(),
                      "new": sorted(str(f) for f in listing() - before)}
print(json.dumps(report))
"""


def _child(out: Path, cache: str, cases: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([sys.executable, "-c", CHILD, str(out), str(TEXT), *cases], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "INSILICO_JAX_CACHE": cache}, check=False, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _load(out: Path, case: str) -> dict:
    with np.load(out / f"{case}.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Reference (no cache), exporting and loading processes; the loading process first damages the
    kept file of the exact-path kernel, which must then be exported anew."""
    root = tmp_path_factory.mktemp("kept")
    cache = root / "cache"
    ref = _child(root / "ref", "off", ["ode", "exact", "varying", "ode_rtol", "exact_v2"])
    first = _child(root / "first", str(cache), ["ode", "exact", "varying"])
    kept = {f: os.stat(f) for case in ("ode", "exact", "varying") for f in first[case]}
    damaged = first["exact"][0]
    Path(damaged).write_bytes(b"not an exported program")
    damaged_stat = os.stat(damaged)
    second = _child(root / "second", str(cache), ["ode", "exact", "varying", "ode_rtol", "exact_v2"])
    return {"root": root, "ref": ref, "first": first, "second": second, "kept": kept, "damaged": damaged,
            "damaged_stat": damaged_stat}


def _same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in ("conc", "status"))


def test_kept_program_equals_plain_jit(runs):
    root = runs["root"]
    for case in ("ode", "exact", "varying"):
        assert len(runs["first"][case]) == 1, (case, runs["first"][case])   # one kernel exported per case
        ref = _load(root / "ref", case)
        assert np.all(ref["status"] == 0) and np.all(np.isfinite(ref["conc"]))
        assert _same(_load(root / "first", case), ref), case
        assert _same(_load(root / "second", case), ref), case
    assert runs["ref"]["ode"] == []   # INSILICO_JAX_CACHE=off keeps nothing


def test_second_process_loads_kept_programs(runs):
    second = runs["second"]
    for f, st in runs["kept"].items():
        now = os.stat(f)
        if f == runs["damaged"]:
            # unreadable: exported anew (a new file replaced it) and the results above still matched
            assert (now.st_ino, now.st_mtime_ns) != (runs["damaged_stat"].st_ino, runs["damaged_stat"].st_mtime_ns)
            assert Path(f).read_bytes() != b"not an exported program"
        else:
            assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), f   # loaded, not rewritten
    assert second["ode"] == [] and second["varying"] == []


def test_changed_closure_is_not_reused(runs):
    """Same argument shapes, another tolerance or equation: a new kept program, the right numbers."""
    root, second = runs["root"], runs["second"]
    for case, base in (("ode_rtol", "ode"), ("exact_v2", "exact")):
        assert len(second[case]) == 1, case
        got, ref, other = _load(root / "second", case), _load(root / "ref", case), _load(root / "ref", base)
        assert _same(got, ref), case
        assert not np.allclose(got["conc"], other["conc"], rtol=1e-9, atol=0), case
    # the doubled clearance of v2 is visible: lower concentrations after the first hours
    assert np.all(_load(root / "ref", "exact_v2")["conc"][:, 2:] < _load(root / "ref", "exact")["conc"][:, 2:])


def test_unexportable_kernel_is_jitted(runs):
    for run in ("first", "second"):
        assert runs[run]["callback"] == {"value": [1.0, 3.0, 5.0], "new": []}


def test_fingerprint_covers_model_and_options():
    fp = exported.fingerprint
    v1 = load_text_model(TEXT)
    assert fp(v1) is not None and fp(v1) == fp(load_text_model(TEXT))   # rebuilt: same key
    spec = {"name": "m", "states": ["central"], "parameters": {"CL": None, "V": None}, "doses": ["central"],
            "equations": ["d/dt(central) = -CL / V * central"], "outputs": {"conc": {"expr": "central / V",
                                                                                       "units": "mg/L"}}}
    changed = {**spec, "equations": ["d/dt(central) = -0.5 * CL / V * central"]}
    assert fp(text_model(spec)) != fp(text_model(changed))
    assert fp((get_model("2cmt_oral"), SolverOptions())) != fp((get_model("2cmt_oral"), SolverOptions(rtol=1e-6)))
    assert fp(get_model("1cmt_oral")) != fp(get_model("2cmt_oral"))
    assert fp(get_model("2cmt_oral")) != fp(get_model("2cmt_oral").with_dose_parameters("R2"))
    assert fp((1, True)) != fp((True, 1)) and fp(1) != fp(True) and fp(np.zeros(2)) != fp(np.zeros(3))


def _user_model() -> Model:
    """One-compartment IV bolus written in Python here: its code is not insilico's."""
    return Model(name="user_1cmt", states=("central",),
                 parameters=(Parameter("CL", "L/h", "clearance"), Parameter("V", "L", "volume")),
                 rhs=lambda t, y, p: -p["CL"] / p["V"] * y,
                 outputs=(Output("conc", "mg/L", "concentration", lambda y, p: y[..., 0] / p["V"]),),
                 dose_compartments=("central",))


def test_user_model_is_jitted_not_kept():
    model = _user_model()
    assert exported.fingerprint(model) is None
    cl, v, t = np.array([2.0, 5.0]), np.array([20.0, 40.0]), np.array([0.5, 2.0, 8.0])
    ds = simulate(model, {"CL": cl, "V": v}, Regimen.single(100), t, method="ode")
    exact = 100 / v[:, None] * jnp.exp(-(cl / v)[:, None] * t[None, :])   # C(t) = D/V exp(-CL/V t)
    np.testing.assert_allclose(ds["conc"].values, exact, rtol=1e-6)
