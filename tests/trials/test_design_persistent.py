"""Design and residual-error kernels kept across processes (`insilico.exported.persistent`).

Reference: the same draws through the plain jitted kernels (`jax.jit`, traced in this process, as
before they were kept). A process with an empty cache folder exports each kernel, and a later
process with that folder loads the kept programs (writing nothing): both must equal the reference
bit for bit — allocation, interval dropout, adherence with missed runs, sparse sampling with
jitter, replicate uncertainty factors, subject keys and residual error (combined, exponential).
"""
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from insilico.population import apply_residual_error
from insilico.trials import _design

ROOT = Path(__file__).resolve().parents[2]

DRAWS = r"""
import numpy as np
from insilico.population import apply_residual_error
from insilico.trials import _design
from insilico.trials._spec import AdherenceSpec, DropoutSpec, ObservationSpec, ReplicateSpec


def draws():
    idx = np.arange(37, 101)
    nominal = np.array([0.0, 1, 2, 4, 8, 12, 24])
    out = {
        "keys": np.asarray(_design.subject_keys(11, "residual", 2, idx)),
        "dropout": _design.dropout_times(DropoutSpec(intervals=[{"end": 168, "probability": 0.1},
                                                                {"end": 336, "probability": 0.2}]), 3, 1, idx),
        "taken": _design.doses_taken(AdherenceSpec(probability=0.8,
                                                   missed_run={"length": 3, "start_probability": 0.1}), 4, 0, idx, 20),
        "allocation": _design.allocate(5, 0, idx, [1, 2, 1]),
    }
    out["mask"], out["actual"] = _design.sampling(
        ObservationSpec(times=list(nominal), outputs=["conc"], per_subject=4, jitter_sd=0.3), 6, 0, idx, nominal)
    f = _design.uncertainty_factors(ReplicateSpec(n=3, uncertainty={"CL": 0.2, "V1": 0.1}), 7, 2)
    out["factors"] = np.array([f["CL"], f["V1"]])
    vals = np.linspace(0.1, 10, idx.size * 5).reshape(idx.size, 5)
    key = _design.subject_keys(11, "residual", 0, np.array([3]))[0]
    for kind, sds in [("combined", {"additive": 0.02, "proportional": 0.15}), ("exponential", {"exponential": 0.2})]:
        out[kind] = np.asarray(apply_residual_error(vals, {"type": kind, **sds}, key, idx))
    return out
"""

CHILD = DRAWS + r"""
import json, sys
from pathlib import Path
import jax
from insilico import exported

folder = Path(jax.config.jax_compilation_cache_dir or "-") / exported.SUBDIR
listing = lambda: set(folder.glob("*.bin")) if folder.is_dir() else set()
before = listing()
np.savez(sys.argv[1], **draws())
print(json.dumps({"new": len(listing() - before)}))
"""


def _child(out: Path, cache: str) -> tuple[dict, dict]:
    res = subprocess.run([sys.executable, "-c", CHILD, str(out)], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "INSILICO_JAX_CACHE": cache}, check=False, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    with np.load(out) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(res.stdout.strip().splitlines()[-1]), arrays


def _jitted_draws(monkeypatch) -> dict:
    """`draws()` in this process with the plain jitted kernels instead of the kept ones."""
    monkeypatch.setattr(_design, "_kept", lambda kernel, **static: functools.partial(kernel, **static))
    residual = sys.modules[apply_residual_error.__module__]
    noisy = residual._noisy
    monkeypatch.setattr(residual, "_kept_noisy", lambda kind: lambda f, root, s, o, a, p, e: noisy(
        f, root, s, o, kind, a, p, e))
    ns: dict = {}
    exec(DRAWS, ns)
    return ns["draws"]()


def test_kept_design_and_residual_kernels_give_the_jitted_numbers(tmp_path, monkeypatch):
    first, exported_run = _child(tmp_path / "export.npz", str(tmp_path / "cache"))
    second, loaded_run = _child(tmp_path / "load.npz", str(tmp_path / "cache"))
    # kept (rows padded to 64): subject keys, uniforms (x 64 columns), normals (x 64), key normals, block
    # permutations, and two residual-error types (4096 rows)
    assert first["new"] == 7, first
    assert second["new"] == 0, second      # every program loaded, none exported again
    ref = _jitted_draws(monkeypatch)
    assert set(ref) == set(exported_run) == set(loaded_run)
    assert len(set(ref["allocation"].tolist())) == 3 and np.isfinite(ref["dropout"]).any()   # real draws
    for name, want in ref.items():
        np.testing.assert_array_equal(exported_run[name], want, err_msg=name)
        np.testing.assert_array_equal(loaded_run[name], want, err_msg=name)
