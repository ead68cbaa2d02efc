"""A population-model file as a trial's cohort: ``cohort: {population: population.yaml,
covariates: cohort.yaml}`` (`insilico.cohorts.load_population_cohort`).

References, computed here in numpy from the YAML files' own numbers (not through
`insilico.population`):

* a hand-written population model (the file `insilico fit` takes, here with IOV too): each drawn
  subject's parameters are TV * exp(eta) and TV * exp(eta + kappa) with TV = typical x
  (WT/70)**0.75 x multiplier[SEX] (CL), typical x exp(-0.01 (AGE - 40)) (V), typical (KA); the
  etas' sample covariance is the file's Omega (within 4 standard errors); relative 1e-12;
* the NONMEM import of pheno (``tests/data/nonmem``: pheno.mod, NONMEM 7.5.1's pheno.ext and
  pheno.cov) run as a trial with a cohort file of WGT/APGR distributions and the imported
  ``covariance.yaml`` as ``replicates.covariance``: each replicate's values are the documented
  recipe (population.yaml's values + L z, z from the replicate's ``uncertainty`` stream, L from the
  eigendecomposition of the covariance of the free quantities, the first valid attempt), every
  subject's CL, V from its WGT, APGR, etas and its replicate's values, and its concentrations the
  one-compartment bolus solution (dose 20 mg per kg WGT) C(t) = D / V exp(-CL / V t); relative 1e-10.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from insilico.cli import app
from insilico.cohorts import draw_cohort, load_cohort_spec
from insilico.errors import SpecError
from insilico.estimation import load_population_model
from insilico.streams import stream_id
from insilico.trials import load_trial_spec, prepare, run

DATA = Path(__file__).resolve().parents[1] / "data" / "nonmem"
SEED, REPS, N = 5, 3, 6

POPULATION = {   # a hand-written population model: what `insilico fit` takes
    "name": "oral_pk",
    "model": {"name": "1cmt_oral", "parameters": {"F": 0.8}},
    "output": "conc",
    "parameters": {
        "CL": {"typical": 4.2, "effects": [{"covariate": "WT", "type": "power", "ref": 70, "theta": 0.75},
                                           {"covariate": "SEX", "type": "categorical", "multipliers": {"F": 0.85}}]},
        "V": {"typical": 35.0, "effects": [{"covariate": "AGE", "type": "exponential", "ref": 40, "theta": -0.01}]},
        "KA": {"typical": 1.3},
    },
    "bsv": {"parameters": ["CL", "V", "KA"], "omega": [[0.09, 0.03, 0.0], [0.03, 0.05, 0.0], [0.0, 0.0, 0.2]]},
    "iov": {"occasions": 2, "variance": {"CL": 0.02}, "starts": [0, 48]},
    "residual_error": {"type": "combined", "additive": 0.05, "proportional": 0.12},
    "estimate": {"fix": ["CL.WT"], "bounds": {"KA": [0.1, 10]}},
}
ADULTS = {   # covariates and criteria only
    "name": "adults",
    "covariates": {"WT": {"dist": "lognormal", "median": 72, "sdlog": 0.2},
                   "AGE": {"dist": "uniform", "low": 18, "high": 80},
                   "SEX": {"dist": "categorical", "probs": {"M": 0.5, "F": 0.5}}},
    "criteria": {"inclusion": ["WT >= 45"]},
}
NEONATES = {
    "name": "neonates",
    "covariates": {"WGT": {"dist": "lognormal", "median": 1.3, "sdlog": 0.35, "units": "kg"},
                   "APGR": {"dist": "categorical", "probs": {str(k): 0.1 for k in range(1, 11)}}},
}


def _trial(cohort, model="1cmt_oral", **extra) -> dict:
    dose = {"amt": 20, "per": "WGT"} if model == "1cmt_iv" else {"amt": 20}
    return {"name": "population_cohort", "seed": SEED, "n": N, "model": {"name": model}, "cohort": cohort,
            "arms": [{"name": "20 mg", "regimen": [dose]}], "observations": {"times": [1, 4, 12]}, **extra}


def _write(folder: Path, name: str, data: dict) -> Path:
    (folder / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / name


def _prepare(folder: Path, spec: dict):
    return prepare(*load_trial_spec(_write(folder, "trial.yaml", spec)), screen=False)


@pytest.fixture(scope="module")
def handwritten(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("handwritten")
    _write(folder, "population.yaml", POPULATION)
    _write(folder, "adults.yaml", ADULTS)
    return folder


def test_handwritten_population_is_a_trial_cohort(handwritten):
    """The file `insilico fit` reads is the trial's parameter model, number for number (numpy
    forward map of the drawn covariates, etas and kappas); its fixed F is inherited."""
    load_population_model({k: v for k, v in POPULATION.items() if k != "iov"})   # a fit input (IOV: not yet)
    ctx = _prepare(handwritten, _trial({"population": "population.yaml", "covariates": "adults.yaml"}))
    assert ctx.fixed["F"] == 0.8
    assert ctx.cohort.iov.starts == [0, 48]
    assert ctx.cohort.residual_error.proportional == 0.12
    simple = _write(handwritten, "simple.yaml", {**POPULATION, "parameters": {n: {"typical": p["typical"]} for n, p in
                                                                            POPULATION["parameters"].items()}})
    alone = _prepare(handwritten, _trial(simple.name))      # no effect uses a covariate: a cohort by itself
    assert alone.cohort.parameters["CL"].typical == 4.2 and not alone.cohort.covariates
    ds = draw_cohort(ctx.cohort, n=400, seed=11)
    wt, age = ds.WT.values, ds.AGE.values
    sex = np.array(ds.SEX.attrs["flag_meanings"].split())[ds.SEX.values]
    assert np.all(wt >= 45) and set(sex) == {"M", "F"}
    p = POPULATION["parameters"]
    tv = {"CL": p["CL"]["typical"] * (wt / 70) ** 0.75 * np.where(sex == "F", 0.85, 1.0),
          "V": p["V"]["typical"] * np.exp(-0.01 * (age - 40)), "KA": np.full(wt.shape, p["KA"]["typical"])}
    for name in ("CL", "V", "KA"):
        np.testing.assert_allclose(ds[name].values, tv[name] * np.exp(ds[f"eta_{name}"].values), rtol=1e-12)
    np.testing.assert_allclose(ds.CL_occ.values, ds.CL.values[:, None] * np.exp(ds.kappa_CL.values), rtol=1e-12)
    eta = np.stack([ds[f"eta_{n}"].values for n in ("CL", "V", "KA")], axis=1)
    omega = np.array(POPULATION["bsv"]["omega"])
    se = np.sqrt((omega ** 2 + np.outer(np.diag(omega), np.diag(omega))) / eta.shape[0])
    assert np.all(np.abs(np.cov(eta, rowvar=False) - omega) < 4 * se)


def test_bad_population_cohorts(handwritten):
    """Each problem is a SpecError naming the field (and the covariate or model)."""
    def error(cohort, **kw) -> SpecError:
        with pytest.raises(SpecError) as e:
            _prepare(handwritten, _trial(cohort, **kw))
        return e.value

    no_sex = _write(handwritten, "no_sex.yaml", {**ADULTS, "covariates": {k: v for k, v in ADULTS["covariates"].items()
                                                                          if k != "SEX"}, "criteria": []})
    e = error({"population": "population.yaml", "covariates": no_sex.name})
    assert e.field == "cohort.covariates" and "'SEX'" in e.message and "parameters.CL.effects.1" in e.message
    e = error("population.yaml")                                             # no covariates at all
    assert e.field == "cohort.covariates" and "'WT'" in e.message
    e = error({"population": "population.yaml", "covariates": "adults.yaml"}, model="2cmt_oral")
    assert e.field == "model.name" and "1cmt_oral" in e.message
    spec = _trial({"population": "population.yaml", "covariates": "adults.yaml"})
    spec["model"]["parameters"] = {"F": 0.9}                                 # the population fixes F = 0.8
    with pytest.raises(SpecError) as err:
        _prepare(handwritten, spec)
    assert err.value.field == "model.parameters.F"
    numeric_sex = {**ADULTS, "covariates": {**ADULTS["covariates"], "SEX": {"dist": "uniform", "low": 0, "high": 1}}}
    e = error({"population": "population.yaml", "covariates": numeric_sex})  # inline covariate spec
    assert e.field == "cohort.population.parameters.CL.effects.1.covariate" and "SEX" in e.message
    with_params = _write(handwritten, "with_params.yaml", {**ADULTS, "parameters": {"CL": {"typical": 1.0}}})
    assert error({"population": "population.yaml", "covariates": with_params.name}).field == \
        "cohort.covariates.parameters"
    assert error({"population": "population.yaml", "covariate": "adults.yaml"}).field == "cohort.covariate"
    assert error({"population": "missing.yaml", "covariates": "adults.yaml"}).field == "cohort.population"
    bad = _write(handwritten, "bad_population.yaml", {**POPULATION, "bsv": {**POPULATION["bsv"], "omega": [[-1.0]]}})
    assert error({"population": bad.name, "covariates": "adults.yaml"}).field.startswith("cohort.population.bsv")
    with pytest.raises(SpecError) as err:                                    # not a cohort spec by itself
        load_cohort_spec(handwritten / "population.yaml")
    assert err.value.field == "model" and "population:" in err.value.message
    # the CLI: one line naming the field, exit 2
    _write(handwritten, "trial.yaml", _trial({"population": "population.yaml", "covariates": no_sex.name}))
    res = CliRunner().invoke(app, ["validate", str(handwritten / "trial.yaml")])
    assert res.exit_code == 2 and "cohort.covariates" in res.output and "SEX" in res.output


# ---------------------------------------------------------------------- pheno: import -> trial -> run
@pytest.fixture(scope="module")
def pheno(tmp_path_factory) -> Path:
    """insilico import nonmem of pheno with --ext and --cov, a neonates cohort file, a trial."""
    out = tmp_path_factory.mktemp("pheno")
    res = CliRunner().invoke(app, ["import", "nonmem", str(DATA / "pheno.mod"), "--ext", str(DATA / "pheno.ext"),
                                   "--cov", str(DATA / "pheno.cov"), "--out", str(out / "run1")])
    assert res.exit_code == 0, res.output
    _write(out, "neonates.yaml", NEONATES)
    _write(out, "trial.yaml", _trial({"population": "run1/population.yaml", "covariates": "neonates.yaml"},
                                     model="1cmt_iv", replicates={"n": REPS, "covariance": "run1/covariance.yaml"}))
    return out


def _values(population: dict) -> dict[str, float]:
    """The estimated quantities population.yaml writes (natural scale; SIGMA = SD^2; Omega diagonal)."""
    out = {}
    for p, spec in population["parameters"].items():
        out[p] = spec["typical"]
        for e in spec.get("effects", []):
            if e["type"] == "categorical":
                out.update({f"{p}.{e['covariate']}[{k}]": m for k, m in e["multipliers"].items()})
            else:
                out[f"{p}.{e['covariate']}"] = e["theta"]
    om = population["bsv"]["omega"]
    out.update({f"OMEGA({i + 1},{i + 1})": om[i][i] for i in range(len(om))})
    out["SIGMA(1,1)"] = population["residual_error"]["proportional"] ** 2
    return out


def _recipe(folder: Path) -> tuple[list[str], np.ndarray]:
    """Replicate values by the documented recipe, from population.yaml and covariance.yaml."""
    cov = yaml.safe_load((folder / "run1" / "covariance.yaml").read_text())
    names, c = cov["names"], np.array(cov["matrix"], float)
    values = _values(yaml.safe_load((folder / "run1" / "population.yaml").read_text()))
    est = np.array([values[n] for n in names])
    free = np.diag(c) > 0
    w, v = np.linalg.eigh(c[np.ix_(free, free)])
    lower = v * np.sqrt(np.where(w > free.sum() * np.finfo(float).eps * w.max(), w, 0.0))
    root = jax.random.fold_in(jax.random.PRNGKey(SEED), stream_id("uncertainty"))
    rows = []
    for r in range(REPS):
        for a in range(1000):   # every pheno quantity must stay > 0 (two fixed effect thetas are 1)
            z = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(root, r), a), (int(free.sum()),)))
            row = est.copy()
            row[free] = est[free] + lower @ z
            if np.all(row > 0):
                rows.append(row)
                break
    return names, np.array(rows)


def test_pheno_import_runs_as_a_trial_with_its_covariance(pheno, client):
    results = run(pheno / "trial.yaml", pheno / "results.zarr", cluster=client).load()
    stored = json.loads(results.attrs["replicate_population"])
    names, expected = _recipe(pheno)
    assert stored["source"] == "covariance" and stored["from"] == "pheno.cov" and stored["names"] == names
    got = np.array(stored["values"])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert np.all(np.ptp(got[:, [names.index(n) for n in ("CL", "V", "OMEGA(1,1)")]], axis=0) > 0)
    population = yaml.safe_load((pheno / "run1" / "population.yaml").read_text())
    ref = {e["covariate"]: e["ref"] for p in population["parameters"].values() for e in p.get("effects", [])
           if e["type"] == "power"}
    times = results.time.values
    for r in range(REPS):
        d, v = results.isel(replicate=r), dict(zip(names, got[r]))
        wgt = d.WGT.values
        level = np.array(d.APGR.attrs["flag_meanings"].split())[d.APGR.values]
        cl = v["CL"] * (wgt / ref["WGT"]) ** v["CL.WGT"] * np.exp(d.eta_CL.values)
        vol = v["V"] * np.array([v[f"V.APGR[{k}]"] for k in level]) * (wgt / ref["WGT"]) ** v["V.WGT"] \
            * np.exp(d.eta_V.values)
        np.testing.assert_allclose(d.CL.values, cl, rtol=1e-10)
        np.testing.assert_allclose(d.V.values, vol, rtol=1e-10)
        conc = 20 * wgt[:, None] / vol[:, None] * np.exp(-(cl / vol)[:, None] * times[None, :])
        np.testing.assert_allclose(d.conc.isel(arm=0).values, conc, rtol=1e-10)
    assert np.all(results.status.values == 0)
    assert "conc_obs" in results      # the imported proportional error applies to conc
