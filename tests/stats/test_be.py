"""Bioequivalence analysis (insilico.stats.average_be) against independent references:
statsmodels OLS (estimate, SE, df, CI, sums of squares) to 1e-8, the closed form of the 2×2
(period differences), and a hand computation of the FDA RSABE criterion with scipy.stats."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from insilico.errors import SpecError
from insilico.stats import RSABE_SWITCH, average_be, be_table

TOL = 1e-8


def crossover_data(sequences, n_per_seq, *, seed=0, gmr=0.95, sd_between=0.3, sd_within=0.2, sd_within_ref=None,
                   period_effect=0.05, missing=0):
    """Long data (subject, sequence, period, treatment, AUC) of a crossover with log-normal noise;
    ``missing`` observations set to NaN at random."""
    rng = np.random.default_rng(seed)
    rows, sid = [], 0
    for seq, n in zip(sequences, n_per_seq):
        for _ in range(n):
            b = rng.normal(0, sd_between)
            for k, trt in enumerate(seq):
                sd = sd_within if trt == "T" or sd_within_ref is None else sd_within_ref
                ly = math.log(100) + b + k * period_effect + (math.log(gmr) if trt == "T" else 0) + rng.normal(0, sd)
                rows.append((f"s{sid}", seq, k + 1, trt, math.exp(ly)))
            sid += 1
    df = pd.DataFrame(rows, columns=["subject", "sequence", "period", "treatment", "AUC"])
    if missing:
        df.loc[rng.choice(len(df), missing, replace=False), "AUC"] = np.nan
    return df


def ols_reference(df):
    """statsmodels fit of the same fixed-effects model (subject spans sequence) to the subjects
    with at least one T and one R observation (the documented rule)."""
    d = df.dropna().assign(ly=lambda x: np.log(x.AUC))
    d = d[d.groupby("subject").treatment.transform("nunique") == 2]
    fit = smf.ols("ly ~ C(subject) + C(period) + C(treatment, Treatment('R'))", data=d).fit()
    name = "C(treatment, Treatment('R'))[T.T]"
    return fit, name, d


def check_against_ols(df, r):
    fit, name, _ = ols_reference(df)
    assert r.estimate == pytest.approx(fit.params[name], abs=TOL)
    assert r.se == pytest.approx(fit.bse[name], abs=TOL)
    assert r.df == fit.df_resid
    assert r.mse == pytest.approx(fit.mse_resid, abs=TOL)
    lo, hi = fit.conf_int(alpha=0.10).loc[name]
    assert math.log(r.ci_lower) == pytest.approx(lo, abs=TOL)
    assert math.log(r.ci_upper) == pytest.approx(hi, abs=TOL)


@pytest.mark.parametrize("sequences, n, missing", [
    (["TR", "RT"], [10, 14], 0),                       # unbalanced 2x2
    (["TRTR", "RTRT"], [9, 8], 5),                     # full replicate, with missing observations
    (["TRR", "RTR", "RRT"], [6, 7, 6], 3),             # partial replicate
])
def test_abe_matches_statsmodels_ols(sequences, n, missing):
    df = crossover_data(sequences, n, seed=len(sequences) + missing, missing=missing)
    r = average_be(df, "AUC")
    check_against_ols(df, r)
    # TOST and the CI decide alike
    assert r.bioequivalent == (0.8 <= r.ci_lower and r.ci_upper <= 1.25)
    assert r.bioequivalent == (max(r.p_tost_lower, r.p_tost_upper) < 0.05)


def test_anova_sums_of_squares_match_model_comparisons():
    df = crossover_data(["TRTR", "RTRT"], [9, 8], seed=3, missing=5)
    r = average_be(df, "AUC")
    d = ols_reference(df)[2]

    def ssr(formula):
        return smf.ols("ly ~ " + formula, data=d).fit().ssr

    full = "C(subject) + C(period) + C(treatment)"
    expected = {
        "sequence": ssr("1") - ssr("C(sequence)"),
        "subject(sequence)": ssr("C(sequence)") - ssr("C(subject)"),
        "period": ssr("C(subject) + C(treatment)") - ssr(full),
        "treatment": ssr("C(subject) + C(period)") - ssr(full),
        "residual": ssr(full),
    }
    for source, ss in expected.items():
        assert r.anova.loc[source, "ss"] == pytest.approx(ss, abs=TOL), source
    a = r.anova
    assert a.loc["treatment", "f"] == pytest.approx(a.loc["treatment", "ms"] / a.loc["residual", "ms"], rel=1e-12)
    assert a.loc["sequence", "p_value"] == pytest.approx(
        stats.f.sf(a.loc["sequence", "f"], a.loc["sequence", "df"], a.loc["subject(sequence)", "df"]), rel=1e-10)
    # the treatment F equals the squared t statistic of the estimate
    assert a.loc["treatment", "f"] == pytest.approx((r.estimate / r.se) ** 2, rel=1e-9)


def test_2x2_closed_form_period_differences():
    """2×2 (complete, unbalanced): ln GMR = mean d(RT) − mean d(TR), d = (P2 − P1)/2,
    SE² = s_d² (1/n1 + 1/n2) with pooled s_d², df = n1 + n2 − 2, MSE = 2 s_d²."""
    df = crossover_data(["TR", "RT"], [11, 13], seed=7)
    r = average_be(df, "AUC")
    w = df.assign(ly=np.log(df.AUC)).pivot(index="subject", columns="period", values="ly")
    seq = df.groupby("subject").sequence.first()
    d = (w[2] - w[1]) / 2
    d_tr, d_rt = d[seq == "TR"], d[seq == "RT"]
    n1, n2 = len(d_tr), len(d_rt)
    s2 = (((d_tr - d_tr.mean()) ** 2).sum() + ((d_rt - d_rt.mean()) ** 2).sum()) / (n1 + n2 - 2)
    est, se = d_rt.mean() - d_tr.mean(), math.sqrt(s2 * (1 / n1 + 1 / n2))
    q = stats.t.ppf(0.95, n1 + n2 - 2)
    assert r.estimate == pytest.approx(est, abs=TOL)
    assert r.se == pytest.approx(se, abs=TOL)
    assert r.df == n1 + n2 - 2
    assert r.mse == pytest.approx(2 * s2, abs=TOL)
    assert r.ci_lower == pytest.approx(math.exp(est - q * se), rel=TOL)
    assert r.ci_upper == pytest.approx(math.exp(est + q * se), rel=TOL)
    assert r.cv_within == pytest.approx(math.sqrt(math.exp(2 * s2) - 1), rel=TOL)


def test_2x2_subject_with_a_missing_period_is_dropped():
    df = crossover_data(["TR", "RT"], [8, 8], seed=11)
    df.loc[(df.subject == "s3") & (df.period == 2), "AUC"] = np.nan
    r = average_be(df, "AUC")
    r_without = average_be(df[df.subject != "s3"], "AUC")
    assert (r.n_dropped, r.n_subjects, r.n_obs) == (1, 15, 30)
    for k in ("estimate", "se", "df", "mse"):
        assert getattr(r, k) == pytest.approx(getattr(r_without, k), abs=1e-12)
    pd.testing.assert_frame_equal(r.anova, r_without.anova)


def rsabe_by_hand(df):
    """FDA RSABE (progesterone guidance SAS steps) written out directly."""
    d = df.assign(ly=np.log(df.AUC))
    theta = (math.log(1.25) / 0.25) ** 2
    dlat, ilat = [], []
    for _, g in d.groupby("subject"):
        g = g.sort_values("period")
        r, t = g[g.treatment == "R"].ly.to_numpy(), g[g.treatment == "T"].ly.to_numpy()
        dlat.append((g.sequence.iloc[0], r[0] - r[1]))
        ilat.append((g.sequence.iloc[0], t.mean() - r.mean()))
    dl = pd.DataFrame(dlat, columns=["seq", "v"])
    il = pd.DataFrame(ilat, columns=["seq", "v"])
    nseq = dl.seq.nunique()
    dfr = len(dl) - nseq
    s2wr = dl.groupby("seq").v.apply(lambda v: ((v - v.mean()) ** 2).sum()).sum() / dfr / 2
    means, ns = il.groupby("seq").v.mean(), il.groupby("seq").v.size()
    dfi = len(il) - nseq
    s2i = il.groupby("seq").v.apply(lambda v: ((v - v.mean()) ** 2).sum()).sum() / dfi
    pe = means.mean()
    stderr = math.sqrt(s2i / nseq ** 2 * (1 / ns).sum())
    # the FDA's SAS statements (progesterone guidance), transcribed
    x = pe ** 2 - stderr ** 2
    y = -theta * s2wr
    boundx = (abs(pe) + stats.t.ppf(0.95, dfi) * stderr) ** 2
    boundy = y * dfr / stats.chi2.ppf(0.95, dfr)
    bound = (x + y) + math.sqrt((boundx - x) ** 2 + (boundy - y) ** 2)
    return math.sqrt(s2wr), pe, bound


@pytest.mark.parametrize("sequences, n", [(["TRTR", "RTRT"], [12, 12]), (["TRR", "RTR", "RRT"], [8, 8, 7])])
def test_rsabe_matches_hand_computation(sequences, n):
    df = crossover_data(sequences, n, seed=5, gmr=1.08, sd_within=0.45, sd_within_ref=0.5)
    r = average_be(df, "AUC", method="rsabe")
    swr, pe, bound = rsabe_by_hand(df)
    assert r.swr == pytest.approx(swr, abs=TOL)
    assert r.rsabe_bound == pytest.approx(bound, abs=TOL)
    assert r.swr >= RSABE_SWITCH and r.decided_by == "rsabe"
    assert r.bioequivalent == (bound <= 0 and 0.8 <= math.exp(pe) <= 1.25)
    check_against_ols(df, r)          # the ANOVA part is unchanged by the option


def test_rsabe_switches_to_abe_below_0294():
    df = crossover_data(["TRTR", "RTRT"], [10, 10], seed=2, sd_within=0.1)
    r = average_be(df, "AUC", method="rsabe")
    assert r.swr < RSABE_SWITCH and r.decided_by == "abe"
    assert r.bioequivalent == (0.8 <= r.ci_lower and r.ci_upper <= 1.25)


def test_williams_design_compares_only_the_two_treatments():
    """A 3-formulation Williams design (6 sequences): T vs R uses only the T and R rows (EMA)."""
    seqs = ["TRX", "RXT", "XTR", "XRT", "RTX", "TXR"]
    df = crossover_data(seqs, [3] * 6, seed=9)
    r = average_be(df, "AUC")
    check_against_ols(df[df.treatment != "X"], r)
    assert r.n_obs == 36 and r.n_subjects == 18


def test_be_table_one_row_per_metric():
    df = crossover_data(["TR", "RT"], [12, 12], seed=1).assign(Cmax=lambda x: x.AUC / 10)
    t = be_table(df, ["AUC", "Cmax"])
    assert list(t.index) == ["AUC", "Cmax"]
    assert t.loc["AUC", "gmr_pct"] == pytest.approx(t.loc["Cmax", "gmr_pct"], rel=1e-12)
    assert t.loc["AUC", "gmr_pct"] == pytest.approx(100 * average_be(df, "AUC").ratio, rel=1e-12)


@pytest.mark.parametrize("change, kwargs, field", [
    (lambda d: d.assign(AUC=d.AUC.where(d.index != 0, 0.0)), {}, "AUC"),
    (lambda d: d.assign(treatment=d.treatment.replace("T", "X")), {}, "test"),
    (lambda d: d.drop(columns="period"), {}, "period"),
    (lambda d: d, {"method": "rsabe"}, "method"),
    (lambda d: d, {"method": "scaled"}, "method"),
    (lambda d: d, {"limits": (1.1, 1.25)}, "limits"),
])
def test_bad_input_names_the_field(change, kwargs, field):
    df = crossover_data(["TR", "RT"], [5, 5])
    with pytest.raises(SpecError) as e:
        average_be(change(df), "AUC", **kwargs)
    assert e.value.field == field
