"""The ``combined1`` residual error model, SD = a + b f (Monolix combined1; NONMEM
``W = THETA(b)*IPRED + THETA(a)``, ``Y = IPRED + W*EPS(1)``, ``$SIGMA 1 FIX``): its log-density
against scipy, the SD of simulated residuals (Monte Carlo), its SIGMA naming and write-back, a
FOCE-I simulation - re-estimation on the 1-cmt IV model, and the refusal of an unknown type."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.estimation import fit
from insilico.population import (
    SIGMA_FIELDS,
    ParameterSpec,
    ResidualError,
    ResidualErrorSpec,
    apply_residual_error,
    compile_population,
    log_density,
    population_quantities,
    residual_sd,
)

A, B = 0.2, 0.15          # additive SD (mg/L) and proportional coefficient of the truth
CL, V, OMEGA_CL = 2.0, 20.0, 0.09
TIMES = np.array([0.5, 1, 2, 4, 8, 12, 18, 24.0])

MODEL = """
model: {name: 1cmt_iv}
parameters: {CL: {typical: 1.5}, V: {typical: 25}}
bsv: {parameters: [CL], variance: [0.2]}
residual_error: {type: combined1, additive: 0.5, proportional: 0.25}
"""


def _pop(a=A, b=B):
    return compile_population({"CL": ParameterSpec(typical=CL)}, None, None,
                              ResidualErrorSpec(type="combined1", additive=a, proportional=b), covariates=[])


def test_log_density_is_the_normal_with_sd_a_plus_b_f():
    rng = np.random.default_rng(0)
    f = rng.uniform(0.05, 20.0, 12)
    y = f + rng.normal(size=12) * (A + B * f)
    got = float(log_density(_pop(), y=y, f=f))
    want = float(stats.norm.logpdf(y, f, A + B * f).sum())
    assert got == pytest.approx(want, rel=1e-12, abs=1e-10)
    # not the combined (combined2) model: the SDs add, not the variances
    other = float(stats.norm.logpdf(y, f, np.sqrt(A ** 2 + (B * f) ** 2)).sum())
    assert abs(got - other) > 0.1       # measured 0.28
    np.testing.assert_allclose(np.asarray(residual_sd(ResidualError("combined1", A, B), f)), A + B * f, rtol=1e-14)


def test_simulated_residuals_have_sd_a_plus_b_f():
    """n = 20000 draws per level: the SD of the sample SD is sd / sqrt(2 n) = 0.5 % of sd; tolerance
    3 % (6 of those SEs). The mean is 0 within 4 SE (sd / sqrt(n))."""
    n, levels = 20000, np.array([0.0, 1.0, 10.0, 50.0])
    f = np.broadcast_to(levels, (n, levels.size))
    y = np.asarray(apply_residual_error(f, {"type": "combined1", "additive": A, "proportional": B}, 7, np.arange(n)))
    res = y - f
    sd = A + B * levels
    np.testing.assert_allclose(res.std(axis=0, ddof=1), sd, rtol=0.03)
    assert np.all(np.abs(res.mean(axis=0)) < 4 * sd / np.sqrt(n))
    # one eps per observation, eps1 of the residual stream (NONMEM's Y = IPRED + W*EPS(1)): residual / SD is
    # the draw an additive error of SD 1 makes for the same subject and observation
    eps1 = np.asarray(apply_residual_error(f, {"type": "additive", "additive": 1.0}, 7, np.arange(n))) - f
    np.testing.assert_allclose(res / sd, eps1, rtol=1e-9, atol=1e-9)


def test_sigma_names_follow_combined():
    assert SIGMA_FIELDS["combined1"] == SIGMA_FIELDS["combined"] == ("proportional", "additive")
    q = {x.name: x.value for x in population_quantities(_pop()) if x.kind == "sigma"}
    assert q == pytest.approx({"SIGMA(1,1)": B ** 2, "SIGMA(2,2)": A ** 2})


@pytest.mark.parametrize("bad, field", [
    ({"type": "combined3", "additive": 0.1, "proportional": 0.1}, "residual_error.type"),
    ({"type": "combined1", "additive": 0.1}, "residual_error.proportional"),
    ({"type": "combined1", "additive": 0.1, "proportional": 0.1, "exponential": 0.1}, "residual_error.exponential"),
])
def test_unknown_type_or_wrong_fields_are_refused_naming_the_field(bad, field):
    with pytest.raises(SpecError) as e:
        apply_residual_error(np.ones((1, 2)), bad, 0, np.arange(1))
    assert field in str(e.value)


def _data(n=40, seed=11):
    rng = np.random.default_rng(seed)
    eta = rng.normal(size=n) * np.sqrt(OMEGA_CL)
    f = simulate("1cmt_iv", {"CL": CL * np.exp(eta), "V": np.full(n, V)}, Regimen((Dose(amt=100.0),)),
                 TIMES)["conc"].values
    y = f + (A + B * f) * rng.normal(size=f.shape)
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=100.0, EVID=1, DV="."))
        rows += [dict(ID=i + 1, TIME=t, AMT=0.0, EVID=0, DV=v) for t, v in zip(TIMES, y[i])]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fitted():
    return fit(MODEL, _data(), "focei", npde_samples=50)


def test_focei_recovers_a_and_b_within_3_se(fitted):
    r = fitted
    assert r.converged
    truth = {"CL": CL, "V": V, "OMEGA(1,1)": OMEGA_CL, "SIGMA(1,1)": B ** 2, "SIGMA(2,2)": A ** 2}
    for name, true in truth.items():
        est, se = r.estimate(name), r.se[r.names.index(name)]
        assert 0 < se < abs(est), name
        assert abs(est - true) < 3 * se, (name, est, true, se)
    # written back as a combined1 model with the SDs, ready to simulate or to start another fit
    back = r.population_model()["residual_error"]
    assert back["type"] == "combined1"
    assert back["proportional"] == pytest.approx(np.sqrt(r.estimate("SIGMA(1,1)")), rel=1e-12)
    assert back["additive"] == pytest.approx(np.sqrt(r.estimate("SIGMA(2,2)")), rel=1e-12)


def test_fit_diagnostics_use_the_combined1_sd(fitted, tmp_path):
    ds = fitted.to_dataset()
    a, b = np.sqrt(fitted.estimate("SIGMA(2,2)")), np.sqrt(fitted.estimate("SIGMA(1,1)"))
    ipred, dv = ds.IPRED.values, ds.DV.values
    ok = np.isfinite(ds.IWRES.values)
    np.testing.assert_allclose(ds.IWRES.values[ok], ((dv - ipred) / (a + b * np.abs(ipred)))[ok], rtol=1e-6, atol=1e-9)
    assert 0.8 < np.nanstd(ds.IWRES.values) < 1.2 and 0.8 < np.nanstd(ds.CWRES.values) < 1.2
    fitted.write_ext(tmp_path / "fit.ext")
    ext = pd.read_csv(tmp_path / "fit.ext", sep=r"\s+", skiprows=1)
    row = ext[ext.ITERATION == -1000000000].iloc[0]
    assert row["SIGMA(1,1)"] == pytest.approx(b ** 2, rel=1e-6) and row["SIGMA(2,2)"] == pytest.approx(a ** 2, rel=1e-6)
