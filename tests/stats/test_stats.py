"""Tests of insilico.stats against scipy, hand computations and published values."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from insilico.errors import SpecError
from insilico.stats import _trial as S

TOL = 1e-10


def _two_arm(rng, na=12, nb=9, shift=1.0):
    a = rng.normal(10.0 + shift, 2.0, na)
    b = rng.normal(10.0, 3.0, nb)
    values = np.concatenate([b, a])
    arms = np.array(["placebo"] * nb + ["active"] * na, dtype=object)
    return a, b, values, arms


# --------------------------------------------------------------------------- Wilson

def test_wilson_hand_computed():
    # x = 8, n = 10, 95 %: z² = 3.8414588...; centre = (8 + z²/2)/(10 + z²);
    # half = z/(10 + z²)·sqrt(8·2/10 + z²/4)
    z = stats.norm.ppf(0.975)
    z2 = z * z
    centre = (8 + z2 / 2) / (10 + z2)
    half = z / (10 + z2) * math.sqrt(1.6 + z2 / 4)
    lo, hi = S.wilson_ci(8, 10)
    assert lo == pytest.approx(centre - half, abs=1e-14)
    assert hi == pytest.approx(centre + half, abs=1e-14)
    # the textbook value (e.g. Newcombe 1998c, Table I)
    assert round(lo, 4) == 0.4902 and round(hi, 4) == 0.9433


def test_wilson_edges_and_vectorised():
    lo, hi = S.wilson_ci(np.array([0, 10, 0]), np.array([10, 10, 0]))
    assert lo[0] == 0.0 and hi[1] == 1.0
    assert hi[0] == pytest.approx(0.2775, abs=5e-5)  # 3.84/(10+3.84)
    assert np.isnan(lo[2]) and np.isnan(hi[2])
    # 90 % interval is narrower
    lo90, hi90 = S.wilson_ci(8, 10, alpha=0.1)
    assert S.wilson_ci(8, 10)[0] < lo90 < hi90 < S.wilson_ci(8, 10)[1]


# --------------------------------------------------------------------------- summarise

def test_summarise_continuous_and_nan_counts():
    v = np.array([1.0, 2.0, np.nan, 4.0, 8.0, np.nan, 3.0, 5.0, 7.0])
    arms = ["A", "A", "A", "A", "A", "B", "B", "B", "B"]
    t = S.summarise(v, arms)
    assert list(t["arm"]) == ["A", "B"]
    a = t.iloc[0]
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert (a["n"], a["n_missing"]) == (4, 1)
    assert a["mean"] == pytest.approx(x.mean(), abs=TOL)
    assert a["sd"] == pytest.approx(np.std(x, ddof=1), abs=TOL)
    assert a["median"] == pytest.approx(3.0, abs=TOL)
    assert a["q25"] == pytest.approx(np.quantile(x, 0.25), abs=TOL)
    assert a["q95"] == pytest.approx(np.quantile(x, 0.95), abs=TOL)
    assert a["geo_mean"] == pytest.approx(stats.gmean(x), abs=TOL)  # = 2.828...
    assert a["geo_cv_pct"] == pytest.approx(100 * math.sqrt(math.exp(np.var(np.log(x), ddof=1)) - 1), abs=TOL)
    b = t.iloc[1]
    assert (b["n"], b["n_missing"]) == (3, 1)
    assert b["mean"] == pytest.approx(5.0)


def test_summarise_geometric_only_for_positive_and_empty_arm():
    t = S.summarise([-1.0, 2.0, np.nan, np.nan], ["A", "A", "B", "B"])
    assert np.isnan(t.loc[0, "geo_mean"]) and np.isnan(t.loc[0, "geo_cv_pct"])
    assert t.loc[1, "n"] == 0 and t.loc[1, "n_missing"] == 2 and np.isnan(t.loc[1, "mean"])


def test_summarise_binary():
    v = [1, 0, 1, 1, np.nan, 0, 0, 0, 1, 0, 0]
    arms = ["T"] * 5 + ["R"] * 6
    t = S.summarise(v, arms, binary=True)
    assert list(t.columns) == ["arm", "n", "n_missing", "responders", "proportion", "ci_lower", "ci_upper"]
    r = t.set_index("arm")
    assert (r.loc["T", "n"], r.loc["T", "n_missing"], r.loc["T", "responders"]) == (4, 1, 3)
    assert r.loc["T", "proportion"] == 0.75
    lo, hi = S.wilson_ci(1, 6)
    assert (r.loc["R", "ci_lower"], r.loc["R", "ci_upper"]) == (lo, hi)
    with pytest.raises(ValueError, match="0/1"):
        S.summarise([0, 2], ["A", "A"], binary=True)


# --------------------------------------------------------------------------- compare: continuous

def test_compare_difference_matches_scipy_welch():
    rng = np.random.default_rng(1)
    a, b, v, arms = _two_arm(rng)
    v = np.append(v, [np.nan, np.nan, np.nan])
    arms = np.append(arms, ["active", "active", "placebo"])
    t = S.compare(v, arms, "placebo", alpha=0.05)
    assert len(t) == 1
    r = t.iloc[0]
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (r["arm"], r["reference"], r["method"], r["measure"]) == ("active", "placebo", "welch_t", "mean_difference")
    assert (r["n"], r["n_ref"], r["n_missing"], r["n_missing_ref"]) == (12, 9, 2, 1)
    assert r["estimate"] == pytest.approx(a.mean() - b.mean(), abs=TOL)
    assert r["statistic"] == pytest.approx(ref.statistic, abs=TOL)
    assert r["df"] == pytest.approx(ref.df, abs=TOL)
    assert r["p_value"] == pytest.approx(ref.pvalue, abs=TOL)
    assert r["ci_lower"] == pytest.approx(ci.low, abs=TOL)
    assert r["ci_upper"] == pytest.approx(ci.high, abs=TOL)
    assert r["value"] == pytest.approx(a.mean(), abs=TOL) and r["level"] == 0.95


def test_compare_ratio_is_welch_on_logs_90pct():
    rng = np.random.default_rng(2)
    a = rng.lognormal(np.log(100.0), 0.3, 14)
    b = rng.lognormal(np.log(95.0), 0.25, 11)
    v = np.concatenate([a, b])
    arms = ["test"] * 14 + ["ref"] * 11
    r = S.compare(v, arms, "ref", kind="ratio", alpha=0.1).iloc[0]
    ref = stats.ttest_ind(np.log(a), np.log(b), equal_var=False)
    ci = ref.confidence_interval(0.90)
    assert r["method"] == "welch_t_log" and r["measure"] == "geometric_mean_ratio" and r["level"] == 0.9
    assert r["estimate"] == pytest.approx(stats.gmean(a) / stats.gmean(b), rel=TOL)
    assert r["ci_lower"] == pytest.approx(math.exp(ci.low), rel=TOL)
    assert r["ci_upper"] == pytest.approx(math.exp(ci.high), rel=TOL)
    assert r["p_value"] == pytest.approx(ref.pvalue, abs=TOL)
    assert r["value"] == pytest.approx(stats.gmean(a), rel=TOL)
    with pytest.raises(ValueError, match="positive"):
        S.compare([1.0, 0.0, 2.0, 3.0], ["a", "a", "b", "b"], "b", kind="ratio")


def test_compare_several_arms_order_and_unknown_reference():
    rng = np.random.default_rng(3)
    v = rng.normal(size=30)
    arms = np.repeat(["low", "pbo", "high"], 10)
    t = S.compare(v, arms, "pbo")
    assert list(t["arm"]) == ["low", "high"]
    assert list(t.columns) == S._COMPARE_COLUMNS
    assert isinstance(t.index, pd.RangeIndex)
    with pytest.raises(SpecError) as e:
        S.compare(v, arms, "placebo")
    assert e.value.field == "analysis.reference"


def test_compare_too_few_values_gives_nan():
    r = S.compare([1.0, np.nan, 2.0, 3.0], ["a", "a", "b", "b"], "b").iloc[0]
    assert r["n"] == 1 and r["n_missing"] == 1
    assert np.isnan(r["estimate"]) and np.isnan(r["p_value"]) and np.isnan(r["ci_lower"])


# --------------------------------------------------------------------------- compare: paired

def _counterfactual(rng, n=15):
    subj = np.arange(n)
    base = rng.normal(50, 10, n)
    x_ref = base + rng.normal(0, 2, n)
    x_act = base + 1.5 + rng.normal(0, 2, n)
    # shuffle row order so matching must go by subject id
    values = np.concatenate([x_act, x_ref])
    arms = np.array(["act"] * n + ["ref"] * n, dtype=object)
    subject = np.concatenate([subj, subj])
    perm = rng.permutation(2 * n)
    return x_act, x_ref, values[perm], arms[perm], subject[perm]


def test_paired_matches_ttest_rel_and_beats_unpaired():
    rng = np.random.default_rng(4)
    xa, xr, v, arms, subj = _counterfactual(rng)
    r = S.compare(v, arms, "ref", subject=subj, paired=True).iloc[0]
    ref = stats.ttest_rel(xa, xr)
    ci = ref.confidence_interval(0.95)
    assert r["method"] == "paired_t" and bool(r["paired"])
    assert r["n"] == r["n_ref"] == 15
    assert r["estimate"] == pytest.approx(np.mean(xa - xr), abs=TOL)
    assert r["statistic"] == pytest.approx(ref.statistic, abs=TOL)
    assert r["df"] == 14
    assert r["p_value"] == pytest.approx(ref.pvalue, abs=TOL)
    assert r["ci_lower"] == pytest.approx(ci.low, abs=TOL)
    assert r["ci_upper"] == pytest.approx(ci.high, abs=TOL)
    # same point estimate unpaired, but the between-subject variance widens the interval
    u = S.compare(v, arms, "ref").iloc[0]
    assert u["estimate"] == pytest.approx(r["estimate"], abs=TOL)
    assert (u["ci_upper"] - u["ci_lower"]) > 2 * (r["ci_upper"] - r["ci_lower"])
    assert u["p_value"] > r["p_value"]


def test_paired_ratio_and_incomplete_pairs_counted():
    rng = np.random.default_rng(5)
    n = 12
    base = rng.lognormal(3, 0.5, n)
    xa = base * rng.lognormal(0.1, 0.1, n)
    xr = base * rng.lognormal(0.0, 0.1, n)
    xa[0] = np.nan          # subject 0: missing in the active arm
    xr[1] = np.nan          # subject 1: missing in the reference arm
    values = np.concatenate([xa, xr[:-1]])           # subject 11 absent from the reference
    arms = ["act"] * n + ["ref"] * (n - 1)
    subj = np.concatenate([np.arange(n), np.arange(n - 1)])
    r = S.compare(values, arms, "ref", kind="ratio", alpha=0.1, subject=subj, paired=True).iloc[0]
    keep = np.arange(2, n - 1)
    ref = stats.ttest_rel(np.log(xa[keep]), np.log(xr[keep]))
    ci = ref.confidence_interval(0.90)
    assert r["n"] == len(keep) == 9
    assert r["n_missing"] == 3       # subjects 0 (NaN), 1 (no partner), 11 (no partner)
    assert r["n_missing_ref"] == 2   # subjects 0 (no partner), 1 (NaN)
    assert r["method"] == "paired_t_log"
    assert r["estimate"] == pytest.approx(math.exp(np.mean(np.log(xa[keep] / xr[keep]))), rel=TOL)
    assert r["ci_lower"] == pytest.approx(math.exp(ci.low), rel=TOL)
    assert r["ci_upper"] == pytest.approx(math.exp(ci.high), rel=TOL)
    assert r["p_value"] == pytest.approx(ref.pvalue, abs=TOL)


def test_paired_needs_subject_and_unique_ids():
    with pytest.raises(ValueError, match="subject"):
        S.compare([1.0, 2.0], ["a", "b"], "b", paired=True)
    with pytest.raises(ValueError, match="more than once"):
        S.compare([1.0, 2.0, 3.0], ["a", "a", "b"], "b", subject=[1, 1, 1], paired=True)


# --------------------------------------------------------------------------- compare: binary

def test_binary_newcombe_published_values():
    # Newcombe (1998a) Table II, method 10 (hybrid score), 95 %
    cases = [((56, 70, 48, 80), (0.0524, 0.3339)), ((9, 10, 3, 10), (0.1705, 0.8090)),
             ((5, 56, 0, 29), (-0.0381, 0.1926)), ((0, 10, 0, 20), (-0.1611, 0.2775)),
             ((0, 10, 0, 10), (-0.2775, 0.2775)), ((10, 10, 0, 20), (0.6791, 1.0)),
             ((10, 10, 0, 10), (0.6075, 1.0))]
    for (x1, n1, x0, n0), (lo, hi) in cases:
        v = [1] * x1 + [0] * (n1 - x1) + [1] * x0 + [0] * (n0 - x0)
        arms = ["t"] * n1 + ["c"] * n0
        r = S.compare(v, arms, "c", binary=True).iloc[0]
        assert r["estimate"] == pytest.approx(x1 / n1 - x0 / n0, abs=TOL)
        assert r["ci_lower"] == pytest.approx(lo, abs=5.1e-5), (x1, n1, x0, n0)
        assert r["ci_upper"] == pytest.approx(hi, abs=5.1e-5), (x1, n1, x0, n0)


def test_binary_pvalue_rule_fisher_or_chi2():
    # large expected counts: Pearson chi-square without continuity correction
    r = S.compare([1] * 56 + [0] * 14 + [1] * 48 + [0] * 32, ["t"] * 70 + ["c"] * 80, "c", binary=True).iloc[0]
    chi2, p, _, _ = stats.chi2_contingency([[56, 14], [48, 32]], correction=False)
    assert r["method"] == "pearson_chi2"
    assert r["statistic"] == pytest.approx(chi2, abs=TOL)
    assert r["p_value"] == pytest.approx(p, abs=TOL)
    # a small expected count: Fisher's exact test
    r = S.compare([1] * 9 + [0] + [1] * 3 + [0] * 7, ["t"] * 10 + ["c"] * 10, "c", binary=True).iloc[0]
    assert r["method"] == "fisher_exact" and np.isnan(r["statistic"])
    assert r["p_value"] == pytest.approx(stats.fisher_exact([[9, 1], [3, 7]]).pvalue, abs=TOL)


def test_vectorised_fisher_matches_scipy_exhaustively():
    rows = [(x1, n1, x0, n0) for n1 in (1, 3, 7, 12) for n0 in (2, 5, 12)
            for x1 in range(n1 + 1) for x0 in range(n0 + 1)]
    x1, n1, x0, n0 = (np.array(c) for c in zip(*rows))
    p = S._fisher_two_sided(x1, n1, x0, n0)
    ref = np.array([stats.fisher_exact([[a, b - a], [c, d - c]]).pvalue for a, b, c, d in rows])
    np.testing.assert_allclose(p, ref, atol=TOL, rtol=0)


def test_binary_paired_newcombe_and_mcnemar():
    # Newcombe (1998b) paired examples, method 10: (a, b, c, d) -> 95 % CI
    cases = [((36, 12, 2, 0), (0.0569, 0.3404)), ((18, 12, 2, 18), (0.0562, 0.3290)),
             ((53, 0, 0, 1), (-0.0729, 0.0729)), ((0, 30, 0, 0), (0.8395, 1.0))]
    for (a, b, c, d), (lo, hi) in cases:
        xa = [1] * a + [1] * b + [0] * c + [0] * d
        xr = [1] * a + [0] * b + [1] * c + [0] * d
        n = a + b + c + d
        subj = np.arange(n)
        r = S.compare(np.r_[xa, xr], ["act"] * n + ["ref"] * n, "ref", binary=True,
                      subject=np.r_[subj, subj], paired=True).iloc[0]
        assert r["method"] == "mcnemar_exact"
        assert r["estimate"] == pytest.approx((b - c) / n, abs=TOL)
        assert r["ci_lower"] == pytest.approx(lo, abs=5.1e-5)
        assert r["ci_upper"] == pytest.approx(hi, abs=5.1e-5)
        exp_p = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
        assert r["p_value"] == pytest.approx(exp_p, abs=TOL)


# --------------------------------------------------------------------------- probability of success

def _pos_table():
    return pd.DataFrame({
        "replicate": range(6),
        "arm": "act",
        "estimate": [0.5, 0.3, -0.1, 0.8, 0.2, np.nan],
        "p_value": [0.01, 0.04, 0.03, 0.20, 0.049, np.nan],
        "ci_lower": [0.85, 0.81, 0.70, 0.90, 0.95, np.nan],
        "ci_upper": [1.10, 1.30, 1.20, 1.24, 1.05, np.nan],
    })


def test_probability_of_success_counts():
    t = _pos_table()
    r = S.probability_of_success(t, {"p_value_below": 0.05, "estimate_above": 0.0})
    # replicates 0, 1, 4 succeed; 2 has a negative estimate, 3 p = 0.2, 5 undefined
    assert (r["successes"], r["n_replicates"], r["n_undefined"]) == (3, 6, 1)
    assert r["estimate"] == 0.5
    assert (r["ci_lower"], r["ci_upper"]) == S.wilson_ci(3, 6)
    be = S.probability_of_success(t, {"ci_lower_above": 0.8, "ci_upper_below": 1.25})
    assert be["successes"] == 3      # replicates 0, 3, 4
    assert S.probability_of_success(t, {"estimate_below": 0.25})["successes"] == 2  # 2, 4
    # also from a list of records with None for missing values
    recs = [{k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in row.items()}
            for row in t.to_dict("records")]
    assert S.probability_of_success(recs, {"p_value_below": 0.05})["successes"] == 4


def test_probability_of_success_rule_errors():
    t = _pos_table()
    with pytest.raises(SpecError) as e:
        S.probability_of_success(t, {"p_below": 0.05})
    assert e.value.field == "analysis.success.p_below"
    with pytest.raises(SpecError) as e:
        S.probability_of_success(t, {"p_value_below": 1.5})
    assert e.value.field == "analysis.success.p_value_below"
    with pytest.raises(SpecError):
        S.probability_of_success(t, {})
    with pytest.raises(ValueError, match="one row per replicate"):
        S.probability_of_success(pd.concat([t, t]), {"p_value_below": 0.05})


# --------------------------------------------------------------------------- target attainment

def test_target_attainment():
    v = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 0.5, 5.0, 6.0])
    g = ["a", "a", "a", "a", "a", "b", "b", "b"]
    t = S.target_attainment(v, g, 3.0)
    assert list(t.columns) == ["group", "n", "n_missing", "n_attained", "pta", "ci_lower", "ci_upper"]
    a, b = t.iloc[0], t.iloc[1]
    assert (a["n"], a["n_missing"], a["n_attained"], a["pta"]) == (4, 1, 2, 0.5)  # 3 >= 3 counts
    assert (b["n"], b["n_attained"]) == (3, 2)
    assert (b["ci_lower"], b["ci_upper"]) == S.wilson_ci(2, 3)
    below = S.target_attainment(v, g, 3.0, above=False)
    assert list(below["n_attained"]) == [3, 1]
    two = S.target_attainment(v, pd.DataFrame({"dose": [1, 1, 2, 2, 2, 1, 1, 2],
                                               "renal": ["n", "n", "n", "n", "n", "i", "i", "i"]}), 3.0)
    assert list(two.columns[:2]) == ["dose", "renal"]
    assert two["n"].sum() == 7 and two["n_missing"].sum() == 1 and len(two) == 4


# --------------------------------------------------------------------------- power

def test_vectorised_welch_and_paired_cores_match_scipy():
    rng = np.random.default_rng(6)
    xa = rng.normal(0.4, 1.0, (40, 17))
    xr = rng.normal(0.0, 1.7, (40, 23))
    r = S._welch(xa.mean(1), xa.var(1, ddof=1), 17, xr.mean(1), xr.var(1, ddof=1), 23, 0.05)
    ref = stats.ttest_ind(xa, xr, axis=1, equal_var=False)
    ci = ref.confidence_interval(0.95)
    np.testing.assert_allclose(r["p_value"], ref.pvalue, atol=TOL, rtol=0)
    np.testing.assert_allclose(r["statistic"], ref.statistic, atol=TOL, rtol=0)
    np.testing.assert_allclose(r["ci_lower"], ci.low, atol=TOL, rtol=0)
    np.testing.assert_allclose(r["ci_upper"], ci.high, atol=TOL, rtol=0)
    d = xa - xr[:, :17]
    r = S._paired_t(d.mean(1), d.var(1, ddof=1), 17, 0.05)
    ref = stats.ttest_rel(xa, xr[:, :17], axis=1)
    np.testing.assert_allclose(r["p_value"], ref.pvalue, atol=TOL, rtol=0)
    np.testing.assert_allclose(r["ci_lower"], ref.confidence_interval(0.95).low, atol=TOL, rtol=0)


def test_power_matches_analytic_two_sample_t():
    # populations standardised exactly: effect size d = 0.5, sd 1
    rng = np.random.default_rng(7)
    pops = {}
    for arm, mu in (("pbo", 0.0), ("act", 0.5)):
        z = rng.normal(size=20000)
        pops[arm] = mu + (z - z.mean()) / z.std()
    pops["act"] = np.append(pops["act"], [np.nan] * 50)   # missing values are dropped
    R = 2000
    t = S.power_curve(pops, "pbo", [20, 50], {"p_value_below": 0.05}, R, seed=11)
    assert list(t.columns) == ["arm", "reference", "n", "n_resamples", "successes", "power",
                               "mc_se", "ci_lower", "ci_upper"]
    for _, row in t.iterrows():
        n = row["n"]
        df = 2 * n - 2
        ncp = 0.5 * math.sqrt(n / 2)
        q = stats.t.isf(0.025, df)
        analytic = stats.nct.sf(q, df, ncp) + stats.nct.cdf(-q, df, ncp)
        se = math.sqrt(analytic * (1 - analytic) / R)
        assert row["mc_se"] == pytest.approx(math.sqrt(row["power"] * (1 - row["power"]) / R))
        assert abs(row["power"] - analytic) < 4 * se, (n, row["power"], analytic)
    assert t.loc[t["n"] == 50, "power"].iloc[0] == pytest.approx(0.697, abs=0.05)


def test_power_deterministic_and_grid_invariant():
    rng = np.random.default_rng(8)
    by_arm = {"pbo": rng.normal(0, 1, 500), "act": rng.normal(0.4, 1, 500)}
    rule = {"p_value_below": 0.05, "estimate_above": 0.0}
    t1 = S.power_curve(by_arm, "pbo", [10, 25, 50, 100], rule, 500, seed=3)
    t2 = S.power_curve(by_arm, "pbo", [100, 25], rule, 500, seed=3)
    assert t2.set_index("n").loc[25, "power"] == t1.set_index("n").loc[25, "power"]
    assert t2.set_index("n").loc[100, "power"] == t1.set_index("n").loc[100, "power"]
    pd.testing.assert_frame_equal(t1, S.power_curve(by_arm, "pbo", [10, 25, 50, 100], rule, 500, seed=3))
    assert np.all(np.diff(t1["power"].to_numpy()) > 0)


def test_power_ratio_binary_paired_and_errors():
    rng = np.random.default_rng(9)
    # bioequivalence: true GMR 1.0, CV ~ 20 % -> power rises with n
    by_arm = {"R": rng.lognormal(0, 0.2, 400), "T": rng.lognormal(0.0, 0.2, 400)}
    be = S.power_curve(by_arm, "R", [6, 60], {"ci_lower_above": 0.8, "ci_upper_below": 1.25}, 300,
                       seed=1, kind="ratio", alpha=0.1)
    assert be["power"].iloc[0] < be["power"].iloc[1] and be["power"].iloc[1] > 0.95
    # binary, unpaired: a large effect is detected at n = 100
    bb = S.power_curve({"c": (rng.random(400) < 0.3).astype(float), "t": (rng.random(400) < 0.6).astype(float)},
                       "c", [100], {"p_value_below": 0.05}, 200, seed=2, binary=True)
    assert bb["power"].iloc[0] > 0.9
    # paired (counterfactual) beats unpaired for strongly correlated subjects
    base = rng.normal(0, 3, 400)
    pa = {"ref": base + rng.normal(0, 0.5, 400), "act": base + 0.3 + rng.normal(0, 0.5, 400)}
    pp = S.power_curve(pa, "ref", [20], {"p_value_below": 0.05}, 300, seed=5, paired=True)
    pu = S.power_curve(pa, "ref", [20], {"p_value_below": 0.05}, 300, seed=5)
    assert pp["power"].iloc[0] > pu["power"].iloc[0] + 0.3
    pb = S.power_curve({"ref": (base > 0).astype(float), "act": (base > -0.5).astype(float)}, "ref", [30],
                       {"p_value_below": 0.05}, 100, seed=5, binary=True, paired=True)
    assert 0.0 <= pb["power"].iloc[0] <= 1.0
    with pytest.raises(SpecError) as e:
        S.power_curve(pa, "ref", [20], {"alpha": 0.05}, 10, seed=0)
    assert e.value.field == "analysis.success.alpha"
    with pytest.raises(ValueError):
        S.power_curve(pa, "ref", [1], {"p_value_below": 0.05}, 10, seed=0)
