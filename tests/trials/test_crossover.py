"""Crossover simulation (insilico.trials.simulate_crossover, be_power) against independent
references: the analytic one-compartment oral solution summed over earlier doses (carry-over),
the documented key recipe of between-occasion variability recomputed with jax.random, and the
power of the 2×2 TOST drawn directly from its sampling distribution."""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import integrate, stats

from insilico.errors import SpecError
from insilico.streams import OCCASION
from insilico.trials import CrossoverDesign, Formulation, be_power, simulate_crossover, williams_sequences

TIMES = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 23.0]
BASE = {"CL": np.array([4.0, 5.0, 6.5, 3.0]), "V": np.array([40.0, 55.0, 70.0, 35.0]), "KA": 1.1}


def one_cmt_oral(t, dose, F, CL, V, KA):
    """Analytic 1-compartment oral single-dose concentration (mg/L), 0 before the dose."""
    k = CL / V
    t = np.asarray(t, float)
    c = F * dose * KA / (V * (KA - k)) * (np.exp(-k * t) - np.exp(-KA * t))
    return np.where(t >= 0, c, 0.0)


def design(**kw):
    args = dict(sequences=[["T", "R", "T"], ["R", "T", "R"]],
                formulations={"T": Formulation(multipliers={"F": 0.9, "KA": 1.5}), "R": Formulation()},
                dose=100.0, times=TIMES, washout=24.0)
    return CrossoverDesign(**{**args, **kw})


def test_linear_carry_over_is_the_analytic_superposition():
    d = design()
    r = simulate_crossover("1cmt_oral", BASE, d)
    for i in range(4):
        seq = d.sequences[i % 2]
        for k in range(3):
            expected = sum(one_cmt_oral(np.array(TIMES) + (k - j) * 24.0, 100.0, 0.9 if seq[j] == "T" else 1.0,
                                        BASE["CL"][i], BASE["V"][i], 1.1 * (1.5 if seq[j] == "T" else 1.0))
                           for j in range(k + 1))
            np.testing.assert_allclose(r.conc.values[i, k], expected, rtol=1e-9, atol=1e-12)
    assert np.all(r.residual_fraction[:, 0] == 0) and np.all(r.residual_fraction[:, 1:] > 0.01)
    e = r.endpoints
    assert list(e.columns) == ["subject", "sequence", "period", "treatment", "AUClast", "AUCinf", "Cmax"]
    assert list(e.sequence[:6]) == ["TRT"] * 3 + ["RTR"] * 3 and list(e.treatment[:3]) == ["T", "R", "T"]


def kappa_by_recipe(seed, subject, period, name, omega):
    key = jax.random.fold_in(jax.random.PRNGKey(seed), OCCASION)
    for v in (0, subject, period, zlib.crc32(name.encode()) & 0x7FFFFFFF):
        key = jax.random.fold_in(key, v)
    return omega * float(jax.random.normal(key))


def test_occasion_variability_and_period_effects_follow_the_documented_keys():
    """Only F varies between periods here, so every profile of a subject is proportional to F_ik and
    AUCinf_ik / F_ik is constant within a subject (F_ik = formulation · exp(κ_ik) · period factor)."""
    d = design(washout=400.0, times=TIMES + [48.0, 96.0], bov={"F": 0.2},
               formulations={"T": Formulation(multipliers={"F": 0.9}), "R": Formulation()},
               period_multipliers={"F": [1.0, 1.1, 0.95]})
    r = simulate_crossover("1cmt_oral", BASE, d, seed=7)
    auc = r.endpoints.AUCinf.to_numpy().reshape(4, 3)
    for i in range(4):
        F = np.array([(0.9 if d.sequences[i % 2][k] == "T" else 1.0) * math.exp(kappa_by_recipe(7, i, k, "F", 0.2))
                      * [1.0, 1.1, 0.95][k] for k in range(3)])
        np.testing.assert_allclose(auc[i] / F, auc[i, 0] / F[0], rtol=1e-9)
    # the same patient keeps its occasions whatever N: simulate subjects 1 and 3 alone
    sub = simulate_crossover("1cmt_oral", {k: np.asarray(v)[[1, 3]] if np.ndim(v) else v for k, v in BASE.items()},
                             d, seed=7, sequence_of=[1, 1], subject_index=[1, 3])
    np.testing.assert_allclose(sub.conc.values, r.conc.values[[1, 3]], rtol=1e-12)


def test_residual_error_is_applied_to_the_analysed_samples():
    """The endpoints come from the predictions plus the residual error, drawn as
    `apply_residual_error` documents (root key folded with the replicate, then subject and sample
    index period·T + t); the same seed gives the same samples, another replicate other ones."""
    from insilico.analysis.nca import nca
    from insilico.population import apply_residual_error, residual_root_key

    d = design(washout=400.0, times=TIMES + [48.0, 96.0])
    err = {"type": "proportional", "proportional": 0.1}
    r = simulate_crossover("1cmt_oral", BASE, d, seed=3, residual_error=err, lloq=0.05)
    n, P, T = r.conc.shape
    key = jax.random.fold_in(residual_root_key(3), 0)
    expected = np.asarray(apply_residual_error(r.conc.values.reshape(n, P * T), err, key, np.arange(n)))
    np.testing.assert_allclose(r.observed.values, expected.reshape(n, P, T), rtol=1e-12)
    assert not np.allclose(r.observed.values, r.conc.values)
    doses = np.where(np.array([[s == "T" for s in d.sequences[i % 2]] for i in range(n)]), 100.0, 100.0)
    ref = nca(np.array(d.times), r.observed.values.reshape(n * P, T), doses.reshape(-1), lloq=0.05)
    np.testing.assert_allclose(r.endpoints.AUCinf.to_numpy(), ref["aucinf_obs"].to_numpy(float), rtol=1e-12)
    again = simulate_crossover("1cmt_oral", BASE, d, seed=3, residual_error=err, lloq=0.05)
    np.testing.assert_array_equal(again.observed.values, r.observed.values)
    other = simulate_crossover("1cmt_oral", BASE, d, seed=3, replicate=1, residual_error=err, lloq=0.05)
    assert not np.allclose(other.observed.values, r.observed.values)


def test_per_occasion_parameters_give_each_period_its_value():
    """``occasions`` (a cohort's P_occ): period k uses occasion k's CL; washout long enough that
    carry-over is below 1e-15 of the profile, so each period is the analytic single dose."""
    cl_occ = np.array([[4.0, 4.4, 3.7], [5.0, 5.5, 6.0], [6.5, 6.0, 7.0], [3.0, 2.8, 3.3]])
    d = design(washout=600.0)
    r = simulate_crossover("1cmt_oral", BASE, d, occasions={"CL": cl_occ})
    for i in range(4):
        for k, f in enumerate(d.sequences[i % 2]):
            expected = one_cmt_oral(TIMES, 100.0, 0.9 if f == "T" else 1.0, cl_occ[i, k], BASE["V"][i],
                                    1.1 * (1.5 if f == "T" else 1.0))
            np.testing.assert_allclose(r.conc.values[i, k], expected, rtol=1e-9, atol=1e-15)
    with pytest.raises(SpecError) as e:
        simulate_crossover("1cmt_oral", BASE, design(bov={"CL": 0.1}), occasions={"CL": cl_occ})
    assert e.value.field == "design.bov.CL"
    with pytest.raises(SpecError) as e:
        simulate_crossover("1cmt_oral", BASE, d, occasions={"CL": cl_occ[:, :2]})
    assert e.value.field == "occasions.CL"


def test_nonlinear_model_refuses_carry_over_above_one_percent():
    params = {"V": 50.0, "VMAX": 10.0, "KM": 2.0, "KA": 1.0}
    two = dict(sequences=[["T", "R"], ["R", "T"]])
    with pytest.raises(SpecError) as e:
        simulate_crossover("1cmt_oral_mm", params, design(**two))
    assert e.value.field == "design.washout"
    r = simulate_crossover("1cmt_oral_mm", params, design(washout=120.0, **two))
    assert np.all(r.residual_fraction <= 0.01) and np.all(r.status == 0)


@pytest.mark.parametrize("kw, field", [
    (dict(sequences=[["T", "X"], ["R", "T"]]), "design.sequences.0.1"),
    (dict(times=[0.0, 1.0, 30.0]), "design.washout"),
    (dict(bov={"Q": 0.1}), "design.bov.Q"),
    (dict(period_multipliers={"F": [1.0, 1.1]}), "design.period_multipliers.F"),
    (dict(formulations={"T": Formulation(multipliers={"F": -1.0}), "R": Formulation()}),
     "design.formulations.T.multipliers.F"),
])
def test_bad_design_names_the_field(kw, field):
    with pytest.raises(SpecError) as e:
        simulate_crossover("1cmt_oral", BASE, design(**kw))
    assert e.value.field == field


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_williams_sequences_are_latin_and_carry_over_balanced(k):
    labels = [chr(65 + i) for i in range(k)]
    seqs = williams_sequences(labels)
    assert len(seqs) == (k if k % 2 == 0 else 2 * k)
    assert all(sorted(s) == labels for s in seqs)                                  # each once per sequence
    assert all(sorted(col) == sorted(labels * (len(seqs) // k)) for col in zip(*seqs))  # balanced periods
    pairs = [(a, b) for s in seqs for a, b in zip(s, s[1:])]
    counts = {p: pairs.count(p) for p in set(pairs)}
    assert len(counts) == k * (k - 1) and len(set(counts.values())) == 1          # every ordered pair equally


def tost_power_reference(n, omega, gmr, ci_level=0.90):
    """Exact power of the balanced 2×2 TOST when the within-subject log deviations are N(0, ω²):
    the estimate is N(ln gmr, σ²), σ² = 2ω²/n, and independently its squared SE is σ² X/df with
    X ~ χ²_df, df = n − 2; integrate P(CI within 0.80–1.25 | X) over X (Owen's Q, by quadrature)."""
    df, delta, sigma = n - 2, math.log(gmr), omega * math.sqrt(2.0 / n)
    q = stats.t.ppf(0.5 + ci_level / 2, df)

    def given(x):
        half = q * sigma * math.sqrt(x / df)
        inside = stats.norm.cdf((math.log(1.25) - half - delta) / sigma) - \
            stats.norm.cdf((math.log(0.8) + half - delta) / sigma)
        return max(inside, 0.0) * stats.chi2.pdf(x, df)

    return integrate.quad(given, 0, np.inf, limit=200)[0]


def test_power_matches_the_tost_sampling_distribution():
    """Only F varies within a subject (BOV on F, ω = 0.25), so AUCinf's within-subject log deviations
    are exactly the κ's and the simulated fraction of BE studies estimates the TOST power."""
    d = CrossoverDesign(sequences=[["T", "R"], ["R", "T"]], dose=100.0, times=TIMES, washout=400.0,
                        formulations={"T": Formulation(multipliers={"F": 0.95}), "R": Formulation()}, bov={"F": 0.25})
    p = be_power("1cmt_oral", {"CL": 5.0, "V": 50.0, "KA": 1.1}, {"CL": 0.3, "V": 0.2}, d, [12, 24], n_studies=120,
                 seed=3, metrics=("AUCinf",), alpha=0.001)
    for n in (12, 24):
        ref = tost_power_reference(n, 0.25, 0.95)
        assert p.loc[n, "ci_lower"] <= ref <= p.loc[n, "ci_upper"], (n, ref, p.loc[n].to_dict())
    assert p.loc[24, "power"] > p.loc[12, "power"]


def test_bioequivalence_example_runs_into_a_store(tmp_path):
    """trials/bioequivalence_2x2.yaml end to end; its BE table re-derived from the stored endpoints
    with statsmodels OLS (log metric ~ subject + period + treatment)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    from insilico.trials import be_summary, open_crossover, run_crossover

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "be.zarr"
    power = "analysis.power={n_grid: [4, 6], n_studies: 2, iiv: {CL: 0.3}}"   # 24 rows: the compiled shape
    run_crossover(root / "trials/bioequivalence_2x2.yaml", out, overrides=["n=12", power])
    ds = open_crossover(out)
    table = be_summary(ds)
    assert list(table.index) == ["AUClast", "AUCinf", "Cmax"] and (table.n_subjects == 12).all()
    assert list(table.columns[:3]) == ["gmr_pct", "ci_lower_pct", "ci_upper_pct"]
    assert list(ds.n.values) == [4, 6] and ((ds.power_power >= 0) & (ds.power_power <= 1)).all()
    assert (ds.status == 0).all() and (ds.residual_fraction < 0.01).all()
    for metric in table.index:
        long = pd.DataFrame({"subject": np.repeat(ds.subject.values, 2), "period": np.tile([1, 2], 12),
                             "treatment": ds.treatment.values.ravel(), "ly": np.log(ds[metric].values.ravel())})
        fit = smf.ols("ly ~ C(subject) + C(period) + C(treatment, Treatment('R'))", data=long).fit()
        name = "C(treatment, Treatment('R'))[T.T]"
        lo, hi = np.exp(fit.conf_int(alpha=0.10).loc[name])
        assert table.loc[metric, "gmr_pct"] == pytest.approx(100 * math.exp(fit.params[name]), rel=1e-9)
        assert table.loc[metric, "ci_lower_pct"] == pytest.approx(100 * lo, rel=1e-9)
        assert table.loc[metric, "ci_upper_pct"] == pytest.approx(100 * hi, rel=1e-9)
        assert table.loc[metric, "bioequivalent"] == (80 <= 100 * lo and 100 * hi <= 125)
    with pytest.raises(SpecError) as e:
        run_crossover(root / "trials/bioequivalence_2x2.yaml", out, overrides=["n=12"])
    assert e.value.field == "--out"


def test_crossover_through_the_cli(tmp_path):
    """`insilico validate/run/summary` dispatch a crossover spec; options it cannot honour are refused
    (exit 2 naming the option), and a crossover store can be replaced with --overwrite."""
    from typer.testing import CliRunner

    from insilico.cli import app

    spec = str(Path(__file__).resolve().parents[2] / "trials/bioequivalence_2x2.yaml")
    out = str(tmp_path / "be.zarr")
    cli = CliRunner()
    r = cli.invoke(app, ["validate", spec])
    assert r.exit_code == 0 and "crossover" in r.output
    r = cli.invoke(app, ["validate", spec, "--set", "crossover.washout=20"])
    assert r.exit_code == 2 and "crossover.washout" in r.output
    for extra in (["--resume"], ["--workers", "2"], ["--cluster", "slurm"]):
        r = cli.invoke(app, ["run", spec, "--out", out, "--set", "n=12", *extra])
        assert r.exit_code == 2 and extra[0] in r.output and not Path(out).exists()
    r = cli.invoke(app, ["run", spec, "--out", out, "--set", "n=12", "-q"])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["run", spec, "--out", out, "--set", "n=12", "-q", "--overwrite"])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["summary", out], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "bioequivalence" in r.output and "AUCinf" in r.output
