"""Dose-recommendation targets beyond trough/peak/AUC24 of the primary output: the time above the
MIC (``t>mic``) against closed forms (1-cmt IV bolus and infusion at steady state; a piecewise-
linear curve, where linear interpolation of the crossings is exact) and against the exact
posterior attainment probability of a twin (the fraction is monotone in eta on CL); a target on
another model output (``of effect``) against the same target on the concentration mapped through
the Emax relation; and refused target texts naming ``--target``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insilico import twins
from insilico.errors import SpecError
from tests.twins.conftest import conc
from tests.twins.test_predict import _exact_probability

K, TAU = 0.15, 12.0                      # 1/h, h
U = np.linspace(0.0, TAU, 97)            # the recommendation's grid of one interval (97 points)


def _fraction(mic: float, f: np.ndarray, t: np.ndarray = U) -> float:
    return float(twins.parse_target(f"t>mic({mic:g} mg/L) in [0.5, 1]").evaluate(f, t, TAU))


def test_time_above_mic_of_a_bolus_at_steady_state_is_ln_c0_over_mic_over_k():
    c0 = 20.0 / (1 - np.exp(-K * TAU))                          # 20 mg/L per dose, steady-state peak
    f = c0 * np.exp(-K * U)
    for mic in (c0 * 0.9, 10.0, 6.0, f[-1] * 1.01):
        exact = np.log(c0 / mic) / K / TAU
        # linear interpolation of an exponential: crossing error <= h^2 k / 8 h (h = 0.125 h): 2e-5 of tau
        assert _fraction(mic, f) == pytest.approx(exact, abs=5e-5)
    assert _fraction(c0 * 1.01, f) == 0.0 and _fraction(f[-1] * 0.99, f) == 1.0


def test_time_above_mic_of_an_infusion_at_steady_state_matches_the_closed_form():
    t_inf, v, dose = 1.5, 30.0, 600.0                           # h (on the grid), L, mg
    css = dose / t_inf / (K * v)                                # plateau of an endless infusion
    c_end = css * (1 - np.exp(-K * t_inf)) / (1 - np.exp(-K * TAU))
    c_min = c_end * np.exp(-K * (TAU - t_inf))
    f = np.where(U <= t_inf, css + (c_min - css) * np.exp(-K * U), c_end * np.exp(-K * (U - t_inf)))
    for mic in (c_min + 0.5, 0.5 * (c_min + c_end), c_end - 0.5):
        rise = -np.log((css - mic) / (css - c_min)) / K         # crossing up during the infusion
        fall = t_inf + np.log(c_end / mic) / K                  # crossing down after it
        assert _fraction(mic, f) == pytest.approx((fall - rise) / TAU, abs=2e-4)


def test_time_above_mic_is_exact_for_a_piecewise_linear_curve_and_batched():
    t = np.arange(9.0)
    f = np.stack([10.0 - t, np.abs(t - 4.0)])                   # falls through 3.5 at 6.5; V-shaped
    got = twins.parse_target("t>mic(3.5) in [0.5, 1]").evaluate(f, t, 8.0)
    np.testing.assert_allclose(got, [6.5 / 8, (0.5 + 0.5) / 8], rtol=0, atol=1e-14)


E0, EMAX, EC50 = 10.0, 50.0, 2.0
PRIOR_PKPD = {"model": {"name": "1cmt_iv+emax"}, "output": "conc",
              "parameters": {"CL": {"typical": 2.0}, "V": {"typical": 20.0}, "E0": {"typical": E0},
                             "EMAX": {"typical": EMAX}, "EC50": {"typical": EC50}},
              "bsv": {"parameters": ["CL"], "variance": [0.09]},
              "residual_error": {"type": "proportional", "proportional": 0.1}}


def emax(c):
    return E0 + EMAX * c / (EC50 + c)


@pytest.fixture(scope="module")
def pkpd(tmp_path_factory):
    store = tmp_path_factory.mktemp("targets") / "twins.zarr"
    twins.create(store, "E1", PRIOR_PKPD, {})
    twins.update(store, "E1", pd.DataFrame([dict(TIME=0.0, AMT=100.0, EVID=1, DV="."),
                                            dict(TIME=6.0, AMT=0.0, EVID=0, DV=2.9)]))
    return store


def test_time_above_mic_recommendation_matches_the_exact_attainment_probability(pkpd):
    """The conc of the PK/PD twin is a 1-cmt IV bolus (CL = 2 exp(eta), V = 20 L); candidates start
    at the last record (6 h; one dose, no interval), so the last full interval of 96 h is [90, 102] h,
    where the concentration is one exponential: fraction above = clip(ln(C(90+) / MIC) / k, 0, tau)
    / tau, decreasing in eta."""
    s = twins.show(pkpd, "E1")["E1"]
    m, sd = s["eta"]["ETA1"], np.sqrt(s["eta_cov"][0][0])
    mic, lo, hi = 4.0, 0.4, 0.7
    doses = np.arange(60.0, 201.0, 10.0)
    res = twins.recommend(pkpd, "E1", f"t>mic({mic:g} mg/L) in [{lo:g}, {hi:g}]", doses, [12.0], until=96,
                          n_draws=2000, seed=3)
    times = np.r_[0.0, 6 + 12 * np.arange(8)]                          # doses up to the interval's start

    def fraction(d):
        def f(e):
            cl = 2.0 * np.exp(e)
            c0 = float(conc(90.0 + 1e-9, cl, 20.0, times, np.r_[100.0, [d] * 8]))
            return float(np.clip(np.log(c0 / mic) / (cl / 20.0), 0.0, TAU)) / TAU
        return f

    exact = np.array([_exact_probability(fraction(d), lo, hi, m, sd) for d in doses])
    assert exact.max() > 0.5 and exact.min() < 0.2                  # the grid spans the window
    got = res["candidates"].set_index("dose")["probability"].reindex(doses).to_numpy()
    np.testing.assert_allclose(got, exact, atol=0.045)               # 4 Monte Carlo SEs at n = 2000
    rec = res["recommendation"]
    assert exact[list(doses).index(rec["dose"])] >= exact.max() - 0.03
    assert rec["median"] == pytest.approx(fraction(rec["dose"])(m), abs=0.02)
    assert "maximise P(t>mic(4 mg/L) in [0.4, 0.7])" in res["rule"]


@pytest.mark.parametrize("metric, lo, hi", [("trough", 1.0, 2.0), ("peak", 5.5, 7.0)])
def test_target_of_another_output_is_computed_on_that_output(pkpd, metric, lo, hi):
    """effect = Emax(conc) is increasing in conc with no BSV of its own, so on the same draws
    (same seed) "<metric> of effect in [Emax(lo), Emax(hi)]" attains exactly when "<metric> in
    [lo, hi] mg/L" does; n_draws odd, so the quantiles are order statistics and map through Emax."""
    doses, kw = [60.0, 100.0, 140.0], dict(until=48, n_draws=401, seed=5)
    on_conc = twins.recommend(pkpd, "E1", f"{metric} in [{lo:g}, {hi:g}] mg/L", doses, [12.0], **kw)
    on_effect = twins.recommend(pkpd, "E1", f"{metric} of effect in [{emax(lo)!r}, {emax(hi)!r}]", doses, [12.0],
                                **kw)
    a, b = on_conc["candidates"], on_effect["candidates"]
    assert a["probability"].between(0.05, 0.95).any()                # informative, not all 0 or 1
    np.testing.assert_allclose(b["probability"], a["probability"], atol=1e-12)
    for q in ("median", "lower", "upper"):
        np.testing.assert_allclose(b[q], emax(a[q].to_numpy()), rtol=1e-9)
    assert on_effect["target"].startswith(f"{metric} of effect in [") and on_effect["target"].endswith("]")


@pytest.mark.parametrize("text, message", [
    ("trough of ANC in [1, 2]", r"--target: .*no output 'ANC' \(outputs: conc, effect\)"),
    ("trough of effect in [20, 40] mg/L", r"--target: .*trough of effect is in 1, not 'mg/L'"),
    ("t>mic(2 ng/mL) in [0.5, 1]", r"--target: .*the MIC of conc is in mg/L, not 'ng/mL'"),
    ("auc24 in [400, 600] mg/L", r"--target: .*auc24 of conc is in mg\*h/L, not 'mg/L'"),
])
def test_target_on_an_unknown_output_or_in_other_units_is_refused(pkpd, text, message):
    with pytest.raises(SpecError, match=message):
        twins.recommend(pkpd, "E1", text, [100.0], [12.0], until=24, n_draws=11)


@pytest.mark.parametrize("text, message", [
    ("fT>MIC(2 mg/L) in [0.5, 1]", "free concentration"),
    ("t>mic(2) in [50, 100]", r"0 <= low < high <= 1"),
    ("t>mic(2) in [0.5, 1] h", "fraction of the dosing interval"),
    ("t>mic(0) in [0.5, 1]", "MIC must be > 0"),
    ("trough of in [1, 2]", "is not a target"),
])
def test_bad_target_texts_are_refused_naming_the_option(text, message):
    with pytest.raises(SpecError, match=message) as e:
        twins.parse_target(text)
    assert e.value.field == "--target"


def test_percent_window_and_labels():
    a, b = twins.parse_target("T>MIC(2)in[50, 100] %"), twins.parse_target("t>mic(2) in [0.5, 1]")
    assert a == b and (a.metric, a.mic, a.low, a.high) == ("t>mic", 2.0, 0.5, 1.0)
    resolved, output = b.resolve({"conc": "mg/L"}, "conc")
    assert output == "conc" and resolved.label() == "t>mic(2 mg/L) in [0.5, 1]"
    resolved, output = twins.parse_target("auc24 of ANC in [1, 2] h * 10^9/L").resolve(
        {"conc": "mg/L", "ANC": "10**9/L"}, "conc")
    assert output == "ANC" and resolved.units == "10**9*h/L"
