"""A NONMEM import's covariance of the estimates as a trial's replicate uncertainty
(``replicates.covariance``: the ``covariance.yaml`` of ``insilico import nonmem --cov``).

The shipped phenobarbital model (``tests/data/nonmem``: pheno.mod, NONMEM 7.5.1's pheno.ext and
pheno.cov) is imported through the CLI; the trial's cohort is its population model (typical
values, effects, Omega, residual error as imported) with drawn covariates WGT and APGR. References,
computed here independently of `insilico.trials._fit`:

* each replicate's values: the estimates read from ``population.yaml``, the standard normals
  ``jax.random.normal(fold_in(fold_in(fold_in(PRNGKey(seed), uncertainty), r), a))`` of attempt a,
  times the factor L = V diag(sqrt(w)) of the eigendecomposition of the (singular: V.APGR[1..4]
  are one NONMEM THETA) covariance of the free quantities (eigenvalues below q x eps x the largest
  set to 0), the first attempt whose typical values,
  multipliers, Omega diagonal (Omega is diagonal here) and SIGMA are > 0 kept (relative 1e-12);
* the distribution of 4000 replicates against 200 000 draws of numpy's own multivariate normal
  (SVD factor, numpy's generator) with the same validity rule: means within 5 standard errors of
  the difference, covariances within 5 x sqrt((C_ii C_jj + C_ij^2)(1/n1 + 1/n2));
* each simulated subject's CL and V rebuilt from its covariates, etas and its replicate's values
  (CL = CL_r WGT exp(eta_CL), V = V_r mult_r[APGR] WGT exp(eta_V); relative 1e-10).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from insilico.cli import app
from insilico.errors import SpecError
from insilico.streams import stream_id
from insilico.trials import load_trial_spec, prepare, run

DATA = Path(__file__).resolve().parents[1] / "data" / "nonmem"
SEED, REPS, N = 7, 5, 6


def _trial(**replicates) -> dict:
    return {"name": "pheno_uncertainty", "seed": SEED, "n": N, "model": {"name": "1cmt_iv"}, "cohort": "cohort.yaml",
            "arms": [{"name": "20 mg", "regimen": [{"amt": 20}]}], "observations": {"times": [1, 4, 12]},
            "replicates": {"n": REPS, "covariance": "covariance.yaml", **replicates}}


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """The pheno import (population.yaml, covariance.yaml), a cohort from its population model and
    a trial spec, all in one folder."""
    out = tmp_path_factory.mktemp("pheno")
    res = CliRunner().invoke(app, ["import", "nonmem", str(DATA / "pheno.mod"), "--ext", str(DATA / "pheno.ext"),
                                   "--cov", str(DATA / "pheno.cov"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    pop = yaml.safe_load((out / "population.yaml").read_text())
    cohort = {"name": "pheno neonates",
              "covariates": {"WGT": {"dist": "lognormal", "median": 1.3, "sdlog": 0.35, "units": "kg"},
                             "APGR": {"dist": "categorical", "probs": {str(k): 0.1 for k in range(1, 11)}}},
              **{k: pop[k] for k in ("parameters", "bsv", "residual_error")}}
    (out / "cohort.yaml").write_text(yaml.safe_dump(cohort, sort_keys=False))
    (out / "trial.yaml").write_text(yaml.safe_dump(_trial(), sort_keys=False))
    return out


def _estimates(folder: Path, names) -> np.ndarray:
    """The imported value of each name, read from population.yaml (natural scale; SIGMA = SD^2)."""
    pop = yaml.safe_load((folder / "population.yaml").read_text())
    values = {}
    for p, spec in pop["parameters"].items():
        values[p] = spec["typical"]
        for e in spec.get("effects", []):
            if e["type"] == "categorical":
                values.update({f"{p}.{e['covariate']}[{k}]": m for k, m in e["multipliers"].items()})
            else:
                values[f"{p}.{e['covariate']}"] = e["theta"]
    om = pop["bsv"]["omega"]
    values.update({f"OMEGA({i + 1},{i + 1})": om[i][i] for i in range(len(om))})
    values["SIGMA(1,1)"] = pop["residual_error"]["proportional"] ** 2
    return np.array([values[n] for n in names], float)


def _valid(rows) -> np.ndarray:
    """Typical values, multipliers, Omega diagonal (Omega is diagonal) and SIGMA > 0: here every
    quantity (the two effect thetas are fixed at 1)."""
    return np.all(rows > 0, axis=-1)


def reference_draws(folder: Path, seed: int, replicates) -> tuple[list[str], np.ndarray]:
    """Replicate values by the documented recipe (module docstring), written out here."""
    cov = yaml.safe_load((folder / "covariance.yaml").read_text())
    names, c = cov["names"], np.array(cov["matrix"], float)
    est = _estimates(folder, names)
    free = np.diag(c) > 0
    w, v = np.linalg.eigh(c[np.ix_(free, free)])
    lower = v * np.sqrt(np.where(w > free.sum() * np.finfo(float).eps * w.max(), w, 0.0))   # numerical rank
    root = jax.random.fold_in(jax.random.PRNGKey(seed), stream_id("uncertainty"))
    out = []
    for r in replicates:
        for a in range(1000):
            z = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(root, r), a), (int(free.sum()),)))
            row = est.copy()
            row[free] = est[free] + lower @ z
            if _valid(row):
                out.append(row)
                break
    return names, np.array(out)


@pytest.fixture(scope="module")
def results(imported, client):
    return run(imported / "trial.yaml", imported / "results.zarr", cluster=client).load()


def _prepare(folder: Path, spec: dict | None = None):
    return prepare(*load_trial_spec(spec if spec is not None else folder / "trial.yaml"), screen=False)


def test_replicates_draw_the_imported_covariance(imported, results):
    stored = json.loads(results.attrs["replicate_population"])
    names, expected = reference_draws(imported, SEED, range(REPS))
    assert stored["source"] == "covariance" and stored["from"] == "pheno.cov" and stored["names"] == names
    got = np.array(stored["values"])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    free = [n for n in names if n in ("CL", "V", "V.APGR[1]", "OMEGA(1,1)", "OMEGA(2,2)", "SIGMA(1,1)")]
    assert np.all(np.ptp(got[:, [names.index(n) for n in free]], axis=0) > 0)     # the draws differ by replicate
    fixed = [names.index(n) for n in ("CL.WGT", "V.WGT", "V.APGR[5]", "V.APGR[10]")]
    np.testing.assert_array_equal(got[:, fixed], 1.0)
    apgr = [names.index(f"V.APGR[{k}]") for k in range(1, 5)]                      # one THETA in NONMEM
    np.testing.assert_allclose(got[:, apgr], np.repeat(got[:, apgr[:1]], 4, axis=1), rtol=1e-13)
    # every subject of replicate r simulates with replicate r's values
    for r in range(REPS):
        d, v = results.isel(replicate=r), dict(zip(names, got[r]))
        wgt = d.WGT.values
        apgr_level = np.array(d.APGR.attrs["flag_meanings"].split())[d.APGR.values]
        np.testing.assert_allclose(d.CL.values, v["CL"] * wgt * np.exp(d.eta_CL.values), rtol=1e-10)
        mult = np.array([v[f"V.APGR[{lv}]"] for lv in apgr_level])
        np.testing.assert_allclose(d.V.values, v["V"] * mult * wgt * np.exp(d.eta_V.values), rtol=1e-10)
    ctx = _prepare(imported)
    for r in (0, 3):
        v = dict(zip(names, got[r]))
        assert ctx.residual_error(r)["proportional"] == pytest.approx(math.sqrt(v["SIGMA(1,1)"]), rel=1e-12)
        np.testing.assert_allclose(np.diag(ctx.population(r).omega), [v["OMEGA(1,1)"], v["OMEGA(2,2)"]], rtol=1e-12)


def test_draws_are_reproducible_per_replicate(imported, results):
    """A replicate's values depend only on (seed, replicate): the same with fewer replicates, in
    another order, and in a second run; another seed gives others."""
    src = _prepare(imported).covariance
    stored = np.array(json.loads(results.attrs["replicate_population"])["values"])
    np.testing.assert_array_equal(src.draws(SEED, range(REPS)), stored)
    np.testing.assert_array_equal(src.draws(SEED, [4, 1]), stored[[4, 1]])
    fewer = _prepare(imported, {**_trial(), "cohort": str(imported / "cohort.yaml"),
                                "replicates": {"n": 2, "covariance": str(imported / "covariance.yaml")}})
    np.testing.assert_array_equal(fewer.covariance.draws(SEED, range(2)), stored[:2])
    assert not np.allclose(src.draws(SEED + 1, range(REPS)), stored)


def test_rerun_is_identical(imported, results, client, tmp_path):
    again = run(imported / "trial.yaml", tmp_path / "again.zarr", cluster=client).load()
    assert again.attrs["replicate_population"] == results.attrs["replicate_population"]
    for var in ("CL", "V", "conc_obs"):
        np.testing.assert_array_equal(again[var].values, results[var].values)


def test_distribution_matches_numpy_mvn(imported):
    """4000 replicates vs 200 000 draws of numpy's multivariate normal, both truncated to valid
    populations (OMEGA(1,1) is 2.2 SE above 0: about 1.4 % of draws are redrawn)."""
    src = _prepare(imported).covariance
    n1, n2 = 4000, 200_000
    ours = src.draws(11, range(n1))
    cov = yaml.safe_load((imported / "covariance.yaml").read_text())
    names, c = cov["names"], np.array(cov["matrix"], float)
    est = _estimates(imported, names)
    ref = np.random.default_rng(0).multivariate_normal(est, c, size=n2, method="svd", check_valid="ignore")
    ref = ref[_valid(ref)]
    assert 0.005 < 1 - ref.shape[0] / n2 < 0.03
    n2 = ref.shape[0]
    free = np.diag(c) > 0
    a, b = ours[:, free], ref[:, free]
    sd = b.std(axis=0)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 5 * sd * math.sqrt(1 / n1 + 1 / n2)), (a.mean(0), b.mean(0))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    tol = 5 * np.sqrt((np.outer(np.diag(cb), np.diag(cb)) + cb ** 2) * (1 / n1 + 1 / n2))
    assert np.all(np.abs(ca - cb) < tol), np.max(np.abs(ca - cb) / tol)


def test_resume_refused_when_the_covariance_changes(imported, results, client, tmp_path):
    """The covariance file's digest is one of the store's inputs: a copy of the finished run resumes
    with it unchanged and is refused, naming it, once one variance changes."""
    folder = tmp_path / "copy"
    shutil.copytree(imported, folder)
    inputs = json.loads(results.attrs["inputs_sha256"])
    assert "replicates.covariance" in inputs
    text = (folder / "covariance.yaml").read_text()
    assert "4.4086e-08" in text
    (folder / "covariance.yaml").write_text(text.replace("4.4086e-08", "4.5e-08", 1))
    with pytest.raises(SpecError) as e:
        run(folder / "trial.yaml", folder / "results.zarr", cluster=client, resume=True)
    assert e.value.field == "--resume" and ": replicates.covariance changed" in e.value.message, str(e.value)


def _write_cov(source: Path, target: Path, edit) -> str:
    cov = yaml.safe_load((source / "covariance.yaml").read_text())
    edit(cov)
    target.write_text(yaml.safe_dump(cov, sort_keys=False))
    return str(target)


def _drop_sigma(cov):
    k = cov["names"].index("SIGMA(1,1)")
    del cov["names"][k]
    cov["matrix"] = [[x for j, x in enumerate(row) if j != k] for i, row in enumerate(cov["matrix"]) if i != k]


def _asymmetric(cov):
    cov["matrix"][0][2] *= 2


def _indefinite(cov):
    cov["matrix"][0][2] = cov["matrix"][2][0] = 10 * math.sqrt(cov["matrix"][0][0] * cov["matrix"][2][2])


@pytest.mark.parametrize("edit, words", [
    (lambda cov: cov["names"].__setitem__(0, "CLX"), ["'CLX'", "not an estimated quantity"]),
    (_drop_sigma, ["'SIGMA(1,1)'", "no row"]),
    (_asymmetric, ["not symmetric"]),
    (_indefinite, ["not positive semi-definite"]),
    (lambda cov: cov.__setitem__("matrix", [[1.0]]), ["must be 17 x 17"]),
    (lambda cov: cov.__setitem__("extra", 1), ["unknown key 'extra'"]),
])
def test_bad_covariance_files(imported, tmp_path, edit, words):
    path = _write_cov(imported, tmp_path / "bad.yaml", edit)
    spec = {**_trial(), "cohort": str(imported / "cohort.yaml"), "replicates": {"n": 2, "covariance": path}}
    with pytest.raises(SpecError) as e:
        _prepare(imported, spec)
    assert e.value.field == "replicates.covariance", str(e.value)
    for w in words:
        assert w in e.value.message, str(e.value)


@pytest.mark.parametrize("extra, words", [
    ({"uncertainty": {"CL": 0.1}}, "replicates.uncertainty"),
    ({"fit_uncertainty": True}, "replicates.fit_uncertainty"),
    ({"fit_uncertainty": False}, "replicates.fit_uncertainty"),
    ({"covariance": "missing.yaml"}, "not found"),
])
def test_refused_combinations(imported, extra, words):
    with pytest.raises(SpecError) as e:
        _prepare(imported, {**_trial(**extra), "cohort": str(imported / "cohort.yaml")})
    assert e.value.field == "replicates.covariance" and words in e.value.message, str(e.value)


def test_cli_names_the_field(imported):
    res = CliRunner().invoke(app, ["validate", str(imported / "trial.yaml"), "--set",
                                   "replicates.covariance=population.yaml"])
    assert res.exit_code == 2 and "replicates.covariance" in res.output, res.output
