"""Bioequivalence (BE) analysis of crossover studies: average BE by a fixed-effects ANOVA on the
log scale, and reference-scaled average BE (RSABE) for highly variable drugs.

Input: one row per subject × period (long format) with the subject, its sequence, the period,
the treatment given (``test`` or ``reference`` label) and a positive PK metric (AUC, Cmax, on
the natural scale). NaN is a missing observation. The analysis is on ln(metric).

Average BE (``method="abe"``)
----------------------------
The model of the FDA guidance *Statistical Approaches to Establishing Bioequivalence* (2001;
draft revision 2022) and of the EMA *Guideline on the Investigation of Bioequivalence*
(CPMP/EWP/QWP/1401/98 Rev. 1, 2010) with its Q&A "method A": ln y = sequence + subject(sequence)
+ period + treatment + ε, every effect fixed. Subject(sequence) spans sequence, so the fit
absorbs both by centring y and the period/treatment columns within each subject (Frisch–Waugh);
the treatment coefficient is the estimated ln(μT/μR) and its standard error uses the residual
mean square (MSE) with ``n_obs − n_subjects − (n_periods − 1) − 1`` degrees of freedom. The
``ci_level`` (default 90 %) interval of the geometric-mean ratio T/R is exp(estimate ± t·SE);
BE is concluded when it lies within ``limits`` (80.00–125.00 %), which is Schuirmann's (1987) two
one-sided tests at α = (1 − ci_level)/2 each (both TOST p-values are reported). Within-subject
CV = sqrt(exp(MSE) − 1). For replicate designs (TRTR/RTRT, TRT/RTR, partial TRR/RTR/RRT) the same
all-fixed-effects model is fitted to every observation (EMA method A; the FDA's mixed model with
separate T and R variances is not implemented).

ANOVA table: sequence and subject(sequence) are sequential (type I) sums of squares of the
between-subject stratum (sequence tested against subject(sequence), subject(sequence) against
the MSE); period and treatment are drop-one (type III) sums of squares tested against the MSE.
For complete designs with balanced periods these equal SAS PROC GLM's type III table.

Missing observations and other treatments
-----------------------------------------
Rows of treatments other than ``test`` and ``reference`` (a Williams design with three or more
formulations) are left out: each comparison uses only the data of the two treatments compared
(EMA guideline, section 4.1.8). Period codes are those of the rows kept.

A subject without at least one observation on T and one on R carries no information on the
treatment contrast and is dropped (counted in ``n_dropped``): for the 2×2 this is the EMA rule
that subjects without evaluable data in both periods are excluded. In replicate designs the same
rule applies (a subject left with, e.g., only its two T periods is dropped, although under the
fixed-effects model it would add a little information on the period effects); every observation
of the remaining subjects is used (EMA method A).

Reference-scaled average BE (``method="rsabe"``)
------------------------------------------------
The FDA procedure for highly variable drugs (draft guidance on progesterone, 2008/2011; Davit
et al. 2012, *AAPS J* 14:915–924), for designs in which subjects receive R twice:

* s_wR² = Σ(D_i − D̄_seq)² / (2 (n_D − n_seq)), D_i = the difference of a subject's two ln R
  values (subjects with both R observations), D̄_seq the mean of D in the subject's sequence;
* I_i = mean ln T − mean ln R of the subjects with every observation of their sequence;
  the point estimate is the unweighted mean over sequences of the sequence means of I, its
  variance s_I² Σ_seq(1/n_seq)/n_sequences², df_I = n_I − n_sequences;
* Howe's (1974) linearised criterion (μT − μR)² − θ σ²_wR ≤ 0, θ = (ln 1.25 / σ_w0)² with
  σ_w0 = 0.25: its 95 % upper bound (`_howe_bound`, the FDA SAS steps: E_m = pe² − SE²,
  χ²_{0.95} for the lower bound of σ²_wR) must be ≤ 0, and the point estimate of the ratio
  exp(pe) must lie within 0.80–1.25 (the point-estimate constraint);
* when s_wR < 0.294 (CV_wR ≈ 30 %) the unscaled average BE above decides instead.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from insilico.errors import SpecError

__all__ = ["BEResult", "RSABE_SWITCH", "SIGMA_W0", "average_be", "be_table"]

SIGMA_W0 = 0.25          # regulatory constant σ_w0 of the FDA RSABE criterion
RSABE_SWITCH = 0.294     # s_wR at and above which the FDA reference-scaled criterion applies
METHODS = ("abe", "rsabe")


@dataclass(frozen=True)
class BEResult:
    """Result of one BE analysis of one PK metric.

    Attributes (ratios are T/R geometric-mean ratios; log values are natural logs)
    ----------
    metric, method : what was analysed and how (``"abe"`` or ``"rsabe"``).
    decided_by : ``"abe"`` or ``"rsabe"``: the criterion that decided (RSABE falls back to ABE
        when s_wR < 0.294).
    estimate, se, df : ln(GMR), its standard error and residual degrees of freedom (ANOVA).
    ratio, ci_lower, ci_upper : GMR and its ``ci_level`` interval.
    p_tost_lower, p_tost_upper : one-sided p-values of H0: GMR ≤ lower limit, H0: GMR ≥ upper limit.
    mse, cv_within : residual mean square (log scale) and within-subject CV (fraction).
    n_subjects, n_dropped, n_obs : subjects analysed, subjects dropped, observations analysed.
    swr, rsabe_bound, pe_constraint : RSABE s_wR, the 95 % upper bound of Howe's criterion and
        whether the point estimate is within the limits (NaN / None for ``method="abe"``).
    bioequivalent : the decision.
    anova : the ANOVA table (pandas DataFrame: source, df, ss, ms, f, p_value).
    """

    metric: str
    method: str
    decided_by: str
    estimate: float
    se: float
    df: float
    ratio: float
    ci_lower: float
    ci_upper: float
    ci_level: float
    p_tost_lower: float
    p_tost_upper: float
    mse: float
    cv_within: float
    n_subjects: int
    n_dropped: int
    n_obs: int
    swr: float
    rsabe_bound: float
    pe_constraint: bool | None
    bioequivalent: bool
    anova: pd.DataFrame = field(repr=False, compare=False)

    def as_dict(self) -> dict:
        """Every scalar attribute (not the ANOVA table), e.g. for one row of a table."""
        return {k: v for k, v in self.__dict__.items() if k != "anova"}


# ------------------------------------------------------------------------------------------------
# input
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Data:
    y: np.ndarray          # ln(metric), (n_obs,)
    subj: np.ndarray       # subject codes 0..n_subj-1
    seq: np.ndarray        # sequence codes 0..n_seq-1 per observation
    per: np.ndarray        # period codes 0..n_per-1
    is_test: np.ndarray    # bool per observation
    n_dropped: int


def _codes(values) -> np.ndarray:
    return pd.factorize(pd.Series(values), sort=True)[0]


def _prepare(data: pd.DataFrame, metric: str, cols: dict[str, str], test, reference) -> _Data:
    if not isinstance(data, pd.DataFrame):
        raise SpecError("data", "must be a pandas DataFrame with one row per subject × period")
    for role, name in {**cols, "metric": metric}.items():
        if name not in data.columns:
            raise SpecError(role, f"column {name!r} not in the data (columns: {[str(c) for c in data.columns]})")
    values = pd.to_numeric(data[metric], errors="coerce").to_numpy(float)
    if np.any(values[np.isfinite(values)] <= 0) or np.any(np.isinf(values)):
        raise SpecError(metric, "must be > 0 and finite (NaN marks a missing observation); BE is analysed on "
                                "the log scale")
    trt = data[cols["treatment"]].to_numpy().astype(str)
    for role, label in (("test", test), ("reference", reference)):
        if str(label) not in trt:
            raise SpecError(role, f"no row has treatment {label!r} (treatments: {sorted(set(trt))})")
    subject = _codes(data[cols["subject"]].to_numpy())
    sequence, period = _codes(data[cols["sequence"]].to_numpy()), _codes(data[cols["period"]].to_numpy())
    n_subj, n_per = int(subject.max()) + 1, int(period.max()) + 1
    if np.unique(subject * n_per + period).size < subject.size:
        raise SpecError("period", "a subject has more than one row for the same period")
    if np.unique(subject * (int(sequence.max()) + 1) + sequence).size > n_subj:
        raise SpecError("sequence", "a subject is assigned to more than one sequence")
    is_test, is_ref = trt == str(test), trt == str(reference)
    keep = np.isfinite(values) & (is_test | is_ref)
    has_t = np.bincount(subject, weights=keep & is_test, minlength=n_subj) > 0
    has_r = np.bincount(subject, weights=keep & is_ref, minlength=n_subj) > 0
    n_dropped = int(n_subj - (has_t & has_r).sum())
    keep &= (has_t & has_r)[subject]
    if not keep.any():
        raise SpecError(metric, "no subject has an observation on both test and reference")
    return _Data(y=np.log(values[keep]), subj=_codes(subject[keep]), seq=_codes(sequence[keep]),
                 per=_codes(period[keep]), is_test=is_test[keep], n_dropped=n_dropped)


# ------------------------------------------------------------------------------------------------
# fixed-effects fit with subject effects absorbed
# ------------------------------------------------------------------------------------------------

def _within(x: np.ndarray, subj: np.ndarray) -> np.ndarray:
    """``x`` (n,) or (n, k) minus its mean within each subject."""
    n_subj = int(subj.max()) + 1
    counts = np.bincount(subj, minlength=n_subj).astype(float)
    x2 = x.reshape(len(subj), -1)
    means = np.stack([np.bincount(subj, weights=c, minlength=n_subj) for c in x2.T], axis=1) / counts[:, None]
    return (x2 - means[subj]).reshape(x.shape)


def _rss(y: np.ndarray, X: np.ndarray) -> tuple[float, int]:
    """Residual sum of squares of the least-squares fit of ``y`` on ``X`` and the rank of ``X``."""
    if X.shape[1] == 0:
        return float(y @ y), 0
    coef, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ coef
    return float(r @ r), int(rank)


def _period_columns(per: np.ndarray) -> np.ndarray:
    n_per = int(per.max()) + 1
    return (per[:, None] == np.arange(1, n_per)[None, :]).astype(float)


def _fit(d: _Data):
    """ln(GMR), its SE, residual df, MSE and the ANOVA table."""
    yc = _within(d.y, d.subj)
    P = _within(_period_columns(d.per), d.subj)
    t = _within(d.is_test.astype(float), d.subj)[:, None]
    X = np.hstack([P, t])
    rss_full, rank = _rss(yc, X)
    rss_no_trt, rank_no_trt = _rss(yc, P)
    if rank == rank_no_trt:
        raise SpecError("treatment", "the treatment effect is not estimable (confounded with subject and period)")
    n_subj = int(d.subj.max()) + 1
    df = len(d.y) - n_subj - rank
    if df < 1:
        raise SpecError("data", f"no residual degrees of freedom ({len(d.y)} observations, {n_subj} subjects)")
    mse = rss_full / df
    # treatment coefficient and its variance from the normal equations of the centred fit
    coef, *_ = np.linalg.lstsq(X, yc, rcond=None)
    xtx_inv = np.linalg.pinv(X.T @ X)
    est, se = float(coef[-1]), math.sqrt(mse * xtx_inv[-1, -1])
    anova = _anova(d, yc, t, P, rss_full, df, rank_no_trt, rss_no_trt)
    return est, se, df, mse, anova


def _anova(d: _Data, yc, t, P, rss_full, df, rank_period, rss_no_trt) -> pd.DataFrame:
    ybar = d.y.mean()
    ss_subjects = float(((d.y - ybar) ** 2).sum() - yc @ yc)
    seq_n = np.bincount(d.seq).astype(float)
    seq_mean = np.bincount(d.seq, weights=d.y) / seq_n
    ss_seq = float((seq_n * (seq_mean - ybar) ** 2).sum())
    n_seq, n_subj = len(seq_n), int(d.subj.max()) + 1
    rss_no_per, _ = _rss(yc, t)
    mse = rss_full / df
    rows = [("sequence", n_seq - 1, ss_seq),
            ("subject(sequence)", n_subj - n_seq, ss_subjects - ss_seq),
            ("period", rank_period, rss_no_per - rss_full),
            ("treatment", 1, rss_no_trt - rss_full),
            ("residual", df, rss_full)]
    table = pd.DataFrame(rows, columns=["source", "df", "ss"]).set_index("source")
    with np.errstate(invalid="ignore", divide="ignore"):
        table["ms"] = table["ss"] / table["df"]
        denom = np.array([table.loc["subject(sequence)", "ms"], mse, mse, mse, np.nan])
        denom_df = np.array([n_subj - n_seq, df, df, df, np.nan])
        table["f"] = table["ms"] / denom
        table["p_value"] = special.fdtrc(table["df"].to_numpy(float), denom_df, table["f"].to_numpy(float))
    table.loc["residual", ["f", "p_value"]] = np.nan
    table.attrs["units"] = "sums of squares of ln(metric)"
    return table


# ------------------------------------------------------------------------------------------------
# reference scaling (FDA RSABE)
# ------------------------------------------------------------------------------------------------

def _swr(d: _Data) -> tuple[float, int]:
    """s_wR and its degrees of freedom from subjects with two reference observations."""
    diffs, seqs = [], []
    for s in range(int(d.subj.max()) + 1):
        mine = (d.subj == s) & ~d.is_test
        if mine.sum() >= 2:
            order = np.argsort(d.per[mine])
            r = d.y[mine][order]
            diffs.append(r[0] - r[1])
            seqs.append(d.seq[mine][0])
    diffs, seqs = np.asarray(diffs), np.asarray(seqs, dtype=int)
    groups = np.unique(seqs)
    dof = len(diffs) - len(groups)
    if dof < 1:
        raise SpecError("method", "reference-scaled BE needs a replicate design in which subjects receive the "
                                  "reference twice (e.g. TRTR/RTRT, TRR/RTR/RRT)")
    ss = sum(float(((diffs[seqs == g] - diffs[seqs == g].mean()) ** 2).sum()) for g in groups)
    return math.sqrt(ss / (2.0 * dof)), dof


def _intra_subject(d: _Data) -> tuple[float, float, int]:
    """Point estimate of ln(μT/μR) from complete subjects, its SE and df (sequence-mean average)."""
    per_seq_n = {}
    counts = np.bincount(d.subj)
    seq_of = np.zeros(len(counts), dtype=int)
    seq_of[d.subj] = d.seq
    for g in np.unique(seq_of):
        per_seq_n[g] = counts[seq_of == g].max()
    complete = np.array([counts[s] == per_seq_n[seq_of[s]] for s in range(len(counts))])
    ilat, iseq = [], []
    for s in np.flatnonzero(complete):
        mine = d.subj == s
        ilat.append(d.y[mine & d.is_test].mean() - d.y[mine & ~d.is_test].mean())
        iseq.append(seq_of[s])
    ilat, iseq = np.asarray(ilat), np.asarray(iseq)
    groups = np.unique(iseq)
    dof = len(ilat) - len(groups)
    if dof < 1:
        raise SpecError("data", "too few complete subjects for the reference-scaled analysis")
    means = np.array([ilat[iseq == g].mean() for g in groups])
    ns = np.array([(iseq == g).sum() for g in groups])
    s2 = sum(float(((ilat[iseq == g] - m) ** 2).sum()) for g, m in zip(groups, means)) / dof
    return float(means.mean()), math.sqrt(s2 * (1.0 / ns).sum()) / len(groups), dof


def _howe_bound(pe: float, se_pe: float, df_i: int, swr: float, df_r: int, alpha: float = 0.05) -> float:
    """Upper (1 − alpha) confidence bound of (μT − μR)² − θ σ²_wR by Howe's (1974) method, as the
    FDA's SAS code computes it: E_m = pe² − SE² (unbiased for (μT − μR)²), E_s = −θ s²_wR,
    C_m = (|pe| + t_{1−α, df_I}·SE)², C_s = E_s·df_R / χ²_{1−α, df_R} (from the lower bound of σ²_wR),
    bound = E_m + E_s + sqrt((C_m − E_m)² + (C_s − E_s)²)."""
    theta = (math.log(1.25) / SIGMA_W0) ** 2
    em, es = pe * pe - se_pe * se_pe, -theta * swr * swr
    cm = (abs(pe) + float(special.stdtrit(df_i, 1.0 - alpha)) * se_pe) ** 2
    cs = es * df_r / float(special.chdtri(df_r, alpha))          # χ² upper α quantile
    return (em + es) + math.sqrt((cm - em) ** 2 + (cs - es) ** 2)


# ------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------

def _check_options(method, ci_level, limits):
    if method not in METHODS:
        raise SpecError("method", f"must be one of {METHODS}, got {method!r}")
    if not 0.0 < ci_level < 1.0:
        raise SpecError("ci_level", f"must be within (0, 1), got {ci_level!r}")
    lo, hi = limits
    if not 0.0 < lo < 1.0 < hi:
        raise SpecError("limits", f"must be (lower < 1 < upper) ratios, got {limits!r}")


def average_be(data: pd.DataFrame, metric: str, *, test="T", reference="R", method: str = "abe",
               ci_level: float = 0.90, limits: tuple[float, float] = (0.80, 1.25), subject: str = "subject",
               sequence: str = "sequence", period: str = "period", treatment: str = "treatment") -> BEResult:
    """Bioequivalence of ``test`` vs ``reference`` on the column ``metric`` of a crossover study.

    Parameters
    ----------
    data : one row per subject × period with columns ``subject``, ``sequence``, ``period``,
        ``treatment`` (labels ``test``/``reference``) and ``metric`` (> 0, e.g. AUC in mg·h/L;
        NaN = missing). Any 2×2, replicate or partial-replicate design.
    method : ``"abe"`` (average BE, fixed-effects ANOVA) or ``"rsabe"`` (FDA reference-scaled
        average BE for highly variable drugs, with ABE when s_wR < 0.294); module docstring.
    ci_level : level of the interval of the GMR (0.90: TOST at 5 % each side).
    limits : BE acceptance limits of the GMR (default 0.80–1.25).

    Returns
    -------
    `BEResult`. Raises `SpecError` naming the column or option for invalid input.
    """
    _check_options(method, ci_level, limits)
    cols = {"subject": subject, "sequence": sequence, "period": period, "treatment": treatment}
    d = _prepare(data, metric, cols, test, reference)
    est, se, df, mse, anova = _fit(d)
    q = float(special.stdtrit(df, 0.5 + ci_level / 2.0))
    lo_lim, hi_lim = math.log(limits[0]), math.log(limits[1])
    ci = (math.exp(est - q * se), math.exp(est + q * se))
    abe = limits[0] <= ci[0] and ci[1] <= limits[1]
    swr, bound, pe_ok, decided, decision = math.nan, math.nan, None, "abe", abe
    if method == "rsabe":
        swr, df_r = _swr(d)
        pe, se_pe, df_i = _intra_subject(d)
        bound = _howe_bound(pe, se_pe, df_i, swr, df_r)
        pe_ok = bool(lo_lim <= pe <= hi_lim)
        if swr >= RSABE_SWITCH:
            decided, decision = "rsabe", bool(bound <= 0.0 and pe_ok)
    return BEResult(
        metric=metric, method=method, decided_by=decided, estimate=est, se=se, df=float(df), ratio=math.exp(est),
        ci_lower=ci[0], ci_upper=ci[1], ci_level=ci_level,
        p_tost_lower=float(special.stdtr(df, -(est - lo_lim) / se)),
        p_tost_upper=float(special.stdtr(df, (est - hi_lim) / se)),
        mse=mse, cv_within=math.sqrt(math.expm1(mse)), n_subjects=int(d.subj.max()) + 1, n_dropped=d.n_dropped,
        n_obs=len(d.y), swr=swr, rsabe_bound=bound, pe_constraint=pe_ok, bioequivalent=bool(decision), anova=anova)


def be_table(data: pd.DataFrame, metrics: Sequence[str] = ("AUClast", "AUCinf", "Cmax"), **options) -> pd.DataFrame:
    """`average_be` for each of ``metrics`` (keyword ``options`` as there), one row per metric:
    GMR and CI in %, CV within in %, decision and counts (index ``metric``)."""
    rows = []
    for m in metrics:
        r = average_be(data, m, **options)
        rows.append({"metric": m, "gmr_pct": 100 * r.ratio, "ci_lower_pct": 100 * r.ci_lower,
                     "ci_upper_pct": 100 * r.ci_upper, "cv_within_pct": 100 * r.cv_within, "swr": r.swr,
                     "df": r.df, "n_subjects": r.n_subjects, "n_dropped": r.n_dropped, "decided_by": r.decided_by,
                     "bioequivalent": r.bioequivalent})
    return pd.DataFrame(rows).set_index("metric")
