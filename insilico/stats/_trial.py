"""Statistics of simulated trial endpoints: summaries, arm comparisons, probability of
success, probability of target attainment and power versus N.

Pure functions of numpy arrays (or anything array-like) returning pandas objects; nothing
here knows about stores or specs, except that invalid success rules raise
:class:`insilico.errors.SpecError` with the field ``analysis.success.<key>``.

Conventions shared by every function
------------------------------------
* **Missing values.** An endpoint value of NaN (subject dropped out, failed simulation) is
  excluded from every statistic and *counted* (``n_missing``). Only NaN means missing;
  ``±inf`` is passed through (it is a bug upstream, not an absence of data).
* **Arm order.** Output rows follow the order in which arms (or groups) first appear.
* **Binary endpoints** take the values 0/1 (or False/True); anything else raises ValueError.
* **Confidence level** is ``1 - alpha`` (two-sided); ``alpha=0.05`` gives 95 % intervals,
  ``alpha=0.1`` the 90 % interval of the bioequivalence convention.
* **Vectorised cores.** Every test statistic is computed by one private function vectorised
  over arrays of summary statistics (means, variances, counts). :func:`compare` calls it on
  one comparison and :func:`power_curve` on thousands of resamples at once, so both always
  apply exactly the same test; the tests check these cores against scipy.

Methods (and references)
------------------------
* Two-sample continuous: Welch's unequal-variance t test and interval with the
  Welch–Satterthwaite degrees of freedom (Welch 1947, *Biometrika* 34:28–35); identical to
  ``scipy.stats.ttest_ind(equal_var=False)``.
* Ratio of geometric means: Welch t on log values, back-transformed (the average
  bioequivalence convention: FDA 2001 guidance *Statistical Approaches to Establishing
  Bioequivalence*; Schuirmann 1987 two one-sided tests = the 90 % CI within 0.80–1.25, i.e.
  ``alpha=0.1`` with the rule ``{"ci_lower_above": 0.8, "ci_upper_below": 1.25}``).
* Paired (counterfactual designs, every subject in every arm): paired t on the
  within-subject differences (of logs for ratios); identical to ``scipy.stats.ttest_rel``.
* One proportion: Wilson score interval (Wilson 1927, *JASA* 22:209–212).
* Difference of independent proportions: Newcombe's hybrid score interval (Newcombe 1998a,
  *Stat Med* 17:873–890, method 10), built from the two Wilson intervals. P-value: Fisher's
  exact test (two-sided, summing table probabilities no larger than the observed one, as
  ``scipy.stats.fisher_exact``) when the smallest expected cell count is below 5 (Cochran's
  rule), otherwise Pearson's chi-square test without continuity correction (equal to the
  pooled two-proportion z test). The ``method`` column names which one was used.
* Difference of paired proportions: Newcombe's hybrid score interval for paired data with
  the continuity-corrected phi (Newcombe 1998b, *Stat Med* 17:2635–2650, method 10);
  p-value from McNemar's exact (conditional binomial) test on the discordant pairs.

Degenerate cases give NaN rather than raising: fewer than two values in an arm for a t
test, zero variance in both arms (the t statistic is 0/0 or ±inf with undefined degrees of
freedom), an empty arm for proportions.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special

from insilico.errors import SpecError


def _scipy_stats():
    """scipy.stats, imported on first use (it costs ~0.5 s at import) and only for the exact
    binomial tail; the normal, t and chi-square tails use scipy.special directly (the same
    functions scipy.stats' ``sf``/``isf`` call), the hypergeometric pmf log-gamma."""
    from scipy import stats
    return stats


__all__ = [
    "summarise",
    "compare",
    "probability_of_success",
    "target_attainment",
    "power_curve",
    "wilson_ci",
    "RULE_KEYS",
]

#: Success-rule keys -> (column of the comparison table, comparison). All are strict
#: inequalities; a NaN statistic never satisfies a condition.
RULE_KEYS: dict[str, tuple[str, str]] = {
    "p_value_below": ("p_value", "<"),
    "estimate_above": ("estimate", ">"),
    "estimate_below": ("estimate", "<"),
    "ci_lower_above": ("ci_lower", ">"),
    "ci_upper_below": ("ci_upper", "<"),
}

_COMPARE_COLUMNS = [
    "arm", "reference", "measure", "method", "paired", "level",
    "n", "n_ref", "n_missing", "n_missing_ref", "value", "value_ref",
    "estimate", "ci_lower", "ci_upper", "statistic", "df", "p_value",
]


# ---------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------

def _as_values(values, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
    return v


def _as_labels(labels, n: int, name: str) -> np.ndarray:
    a = np.asarray(labels, dtype=object)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must be one-dimensional with one entry per value ({n}), "
                         f"got shape {a.shape}")
    return a


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return alpha


def _check_binary(v: np.ndarray, what: str) -> None:
    ok = v[~np.isnan(v)]
    if not np.all((ok == 0) | (ok == 1)):
        bad = np.unique(ok[(ok != 0) & (ok != 1)])[:5]
        raise ValueError(f"binary endpoint {what} must be 0/1 (or NaN), got e.g. {bad.tolist()}")


def _check_positive(v: np.ndarray, what: str) -> None:
    ok = v[~np.isnan(v)]
    if np.any(ok <= 0):
        raise ValueError(f"a ratio comparison needs positive values; {what} has "
                         f"{int(np.sum(ok <= 0))} value(s) <= 0 (use kind='difference')")


def _zcrit(alpha: float) -> float:
    return float(-special.ndtri(alpha / 2.0))   # = scipy.stats.norm.isf


# ---------------------------------------------------------------------------------------
# vectorised cores
# ---------------------------------------------------------------------------------------

def wilson_ci(successes, n, alpha: float = 0.05):
    """Wilson (1927) score interval for a binomial proportion, vectorised.

    ``centre = (x + z²/2) / (n + z²)``, ``half = z / (n + z²) · sqrt(x (n − x) / n + z²/4)``
    with ``z = Φ⁻¹(1 − alpha/2)``. Returns ``(lower, upper)`` arrays (scalars for scalar
    input); NaN where ``n == 0``. Unlike the Wald interval it stays inside [0, 1] and keeps
    close to nominal coverage for small n and proportions near 0 or 1.
    """
    alpha = _check_alpha(alpha)
    x = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    z = _zcrit(alpha)
    z2 = z * z
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (x + z2 / 2.0) / (n + z2)
        half = z / (n + z2) * np.sqrt(np.maximum(x * (n - x) / n, 0.0) + z2 / 4.0)
        lo = np.clip(centre - half, 0.0, 1.0)
        hi = np.clip(centre + half, 0.0, 1.0)
    lo = np.where(n > 0, lo, np.nan)
    hi = np.where(n > 0, hi, np.nan)
    # exact limits at the boundaries (avoid 1e-17 round-off)
    lo = np.where((x == 0) & (n > 0), 0.0, lo)
    hi = np.where((x == n) & (n > 0), 1.0, hi)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def _t_interval(estimate, se, df, alpha: float) -> dict:
    """Two-sided t test of estimate = 0 and the (1 − alpha) interval, vectorised."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = estimate / se
        p = 2.0 * special.stdtr(df, -np.abs(t))       # = 2 * scipy.stats.t.sf(|t|, df)
        q = -special.stdtrit(df, alpha / 2.0)         # = scipy.stats.t.isf(alpha / 2, df)
        lo = estimate - q * se
        hi = estimate + q * se
    return {"estimate": estimate, "se": se, "df": df, "statistic": t, "p_value": p,
            "ci_lower": lo, "ci_upper": hi}


def _welch(m1, v1, n1, m0, v0, n0, alpha: float) -> dict:
    """Welch (1947) two-sample t for mean(1) − mean(0) from means, variances (ddof=1) and
    sizes, vectorised over any broadcastable shape. NaN when an arm has fewer than 2 values
    or both variances are 0."""
    m1, v1, n1, m0, v0, n0 = (np.asarray(a, dtype=float) for a in (m1, v1, n1, m0, v0, n0))
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (n1 >= 2) & (n0 >= 2)
        a1 = np.where(ok, v1 / n1, np.nan)
        a0 = np.where(ok, v0 / n0, np.nan)
        se2 = a1 + a0
        df = se2 * se2 / (a1 * a1 / (n1 - 1.0) + a0 * a0 / (n0 - 1.0))
        se = np.sqrt(se2)
        se = np.where(se2 > 0, se, np.nan)
    return _t_interval(np.where(ok, m1 - m0, np.nan), se, df, alpha)


def _paired_t(md, vd, n, alpha: float) -> dict:
    """Paired t on within-subject differences from their mean, variance (ddof=1) and the
    number of pairs, vectorised. NaN for fewer than 2 pairs or zero variance."""
    md, vd, n = (np.asarray(a, dtype=float) for a in (md, vd, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (n >= 2) & (vd > 0)
        se = np.where(ok, np.sqrt(vd / n), np.nan)
        df = np.where(n >= 2, n - 1.0, np.nan)
    return _t_interval(np.where(n >= 2, md, np.nan), se, df, alpha)


def _log_comb(n, k):
    return special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)


def _hypergeom_pmf(k, total, succ, draws):
    """P(K = k) for K ~ Hypergeometric(total, succ, draws): C(succ, k) C(total−succ, draws−k) /
    C(total, draws) from log-gamma (0 outside the support; matches scipy.stats.hypergeom.pmf to
    ~1e-13 relative)."""
    k, total, succ, draws = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (k, total, succ, draws)))
    inside = (k >= np.maximum(0, draws + succ - total)) & (k <= np.minimum(succ, draws))
    kk = np.where(inside, k, 0.0)
    lp = _log_comb(succ, kk) + _log_comb(total - succ, draws - kk) - _log_comb(total, draws)
    return np.where(inside, np.exp(lp), 0.0)


def _fisher_two_sided(x1, n1, x0, n0) -> np.ndarray:
    """Two-sided Fisher exact p-value for the tables [[x1, n1−x1], [x0, n0−x0]], vectorised:
    the sum of hypergeometric probabilities of all tables with the same margins that are no
    more probable than the observed one (relative tolerance 1e-7, as R's fisher.test)."""
    x1, n1, x0, n0 = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (x1, n1, x0, n0)))
    shape = x1.shape
    x1, n1, x0, n0 = (a.ravel() for a in (x1, n1, x0, n0))
    out = np.full(x1.shape, np.nan)
    if x1.size == 0:
        return out.reshape(shape)
    total, succ = n1 + n0, x1 + x0
    kmax = int(n1.max())
    k = np.arange(kmax + 1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        pk = _hypergeom_pmf(k, total[:, None], succ[:, None], n1[:, None])
        pobs = _hypergeom_pmf(x1, total, succ, n1)
    pk = np.where(np.isnan(pk), 0.0, pk)
    p = np.sum(np.where(pk <= pobs[:, None] * (1.0 + 1e-7), pk, 0.0), axis=1)
    out = np.where(total > 0, np.minimum(p, 1.0), np.nan)
    return out.reshape(shape)


def _two_proportions(x1, n1, x0, n0, alpha: float) -> dict:
    """Difference of independent proportions p1 − p0: Newcombe (1998a, method 10) hybrid
    score interval; p-value from Fisher's exact test when the smallest expected count is < 5
    (Cochran), else Pearson chi-square without continuity correction. Vectorised."""
    x1, n1, x0, n0 = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x1, n1, x0, n0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p0 = x1 / n1, x0 / n0
        l1, u1 = wilson_ci(x1, n1, alpha)
        l0, u0 = wilson_ci(x0, n0, alpha)
        d = p1 - p0
        lo = d - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
        hi = d + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
        total, succ = n1 + n0, x1 + x0
        fail = total - succ
        min_expected = np.minimum(n1, n0) * np.minimum(succ, fail) / total
        use_fisher = min_expected < 5.0
        pbar = succ / total
        z2 = d * d / (pbar * (1.0 - pbar) * (1.0 / n1 + 1.0 / n0))
        p_chi = special.chdtrc(1, z2)                 # = scipy.stats.chi2.sf(z2, 1)
    valid = (n1 > 0) & (n0 > 0)
    p = np.where(use_fisher, np.nan, p_chi)
    if np.any(use_fisher & valid):
        sel = use_fisher & valid
        p = np.array(p, dtype=float)
        p[sel] = _fisher_two_sided(x1[sel], n1[sel], x0[sel], n0[sel])
    nan = np.full(d.shape, np.nan)
    return {
        "estimate": np.where(valid, d, nan),
        "ci_lower": np.where(valid, np.maximum(lo, -1.0), nan),
        "ci_upper": np.where(valid, np.minimum(hi, 1.0), nan),
        "p_value": np.where(valid, p, nan),
        "statistic": np.where(valid & ~use_fisher, z2, nan),
        "fisher": use_fisher,
        "p1": p1, "p0": p0,
    }


def _paired_proportions(a, b, c, d, alpha: float) -> dict:
    """Paired proportions: a = both 1, b = arm 1 / reference 0, c = arm 0 / reference 1,
    d = both 0. Estimate (b − c)/n; Newcombe (1998b, method 10) interval with the
    continuity-corrected phi; McNemar exact p-value ``min(1, 2·Binom(min(b, c); b + c, ½))``.
    Vectorised."""
    a, b, c, d = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (a, b, c, d)))
    n = a + b + c + d
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = (a + b) / n, (a + c) / n
        l1, u1 = wilson_ci(a + b, n, alpha)
        l2, u2 = wilson_ci(a + c, n, alpha)
        den = (a + b) * (c + d) * (a + c) * (b + d)
        num = a * d - b * c
        num = np.where(num > 0, np.maximum(num - n / 2.0, 0.0), num)
        phi = np.where(den > 0, num / np.sqrt(den), 0.0)
        dl1, du1 = p1 - l1, u1 - p1
        dl2, du2 = p2 - l2, u2 - p2
        est = (b - c) / n
        lo = est - np.sqrt(np.maximum(dl1 ** 2 - 2 * phi * dl1 * du2 + du2 ** 2, 0.0))
        hi = est + np.sqrt(np.maximum(du1 ** 2 - 2 * phi * du1 * dl2 + dl2 ** 2, 0.0))
        m = b + c
        pv = np.where(m > 0, np.minimum(1.0, 2.0 * _scipy_stats().binom.cdf(np.minimum(b, c), m, 0.5)), 1.0)
    valid = n > 0
    nan = np.full(est.shape, np.nan)
    return {
        "estimate": np.where(valid, est, nan),
        "ci_lower": np.where(valid, np.maximum(lo, -1.0), nan),
        "ci_upper": np.where(valid, np.minimum(hi, 1.0), nan),
        "p_value": np.where(valid, pv, nan),
        "p1": p1, "p0": p2,
    }


# ---------------------------------------------------------------------------------------
# success rules
# ---------------------------------------------------------------------------------------

def _check_rule(rule: Mapping) -> dict[str, float]:
    if not isinstance(rule, Mapping):
        raise SpecError("analysis.success", f"a success rule must be a mapping, got {type(rule).__name__}")
    out: dict[str, float] = {}
    for key, value in rule.items():
        if key not in RULE_KEYS:
            raise SpecError(f"analysis.success.{key}",
                            f"unknown success condition; expected one of {sorted(RULE_KEYS)}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise SpecError(f"analysis.success.{key}", f"must be a number, got {value!r}") from None
        if not math.isfinite(v):
            raise SpecError(f"analysis.success.{key}", f"must be finite, got {value!r}")
        if key == "p_value_below" and not 0.0 < v <= 1.0:
            raise SpecError(f"analysis.success.{key}", f"must be in (0, 1], got {value!r}")
        out[key] = v
    if not out:
        raise SpecError("analysis.success", "no success condition given; use one or more of "
                        f"{sorted(RULE_KEYS)}")
    return out


def _rule_mask(rule: dict[str, float], cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """True where every condition of the (checked) rule holds; NaN never satisfies one."""
    mask = None
    for key, thr in rule.items():
        col, op = RULE_KEYS[key]
        x = np.asarray(cols[col], dtype=float)
        with np.errstate(invalid="ignore"):
            m = (x < thr) if op == "<" else (x > thr)
        mask = m if mask is None else (mask & m)
    return mask


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------

def summarise(values, arms, *, binary: bool = False, alpha: float = 0.05) -> pd.DataFrame:
    """Per-arm summary of an endpoint.

    Parameters
    ----------
    values : 1-D array-like of endpoint values, NaN = missing (excluded and counted).
    arms : arm label of each value (same length).
    binary : the endpoint is 0/1 (responder).
    alpha : 1 − level of the Wilson interval (binary only).

    Returns
    -------
    DataFrame, one row per arm (order of first appearance), RangeIndex.

    * continuous: ``arm, n, n_missing, mean, sd, median, q05, q25, q75, q95, geo_mean,
      geo_cv_pct``. ``sd`` uses ddof=1; quantiles are numpy's default (linear interpolation,
      Hyndman–Fan type 7). ``geo_mean = exp(mean(log x))`` and
      ``geo_cv_pct = 100·sqrt(exp(s²_log) − 1)`` are reported only when every value of the
      arm is positive (NaN otherwise, e.g. for change-from-baseline endpoints).
    * binary: ``arm, n, n_missing, responders, proportion, ci_lower, ci_upper``
      (Wilson 1927 score interval at level 1 − alpha).
    """
    alpha = _check_alpha(alpha)
    v = _as_values(values)
    a = _as_labels(arms, v.shape[0], "arms")
    if binary:
        _check_binary(v, "values")
    rows = []
    for arm in pd.unique(a):
        x = v[a == arm]
        miss = int(np.isnan(x).sum())
        x = x[~np.isnan(x)]
        n = int(x.size)
        if binary:
            r = int(x.sum())
            lo, hi = wilson_ci(r, n, alpha)
            rows.append({"arm": arm, "n": n, "n_missing": miss, "responders": r,
                         "proportion": r / n if n else np.nan, "ci_lower": lo, "ci_upper": hi})
            continue
        row = {"arm": arm, "n": n, "n_missing": miss}
        if n:
            q = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
            row.update(mean=float(x.mean()), sd=float(x.std(ddof=1)) if n > 1 else np.nan,
                       median=float(q[2]), q05=float(q[0]), q25=float(q[1]),
                       q75=float(q[3]), q95=float(q[4]))
            if np.all(x > 0):
                lx = np.log(x)
                row["geo_mean"] = float(np.exp(lx.mean()))
                row["geo_cv_pct"] = float(100.0 * np.sqrt(np.expm1(lx.var(ddof=1)))) if n > 1 else np.nan
            else:
                row["geo_mean"] = row["geo_cv_pct"] = np.nan
        else:
            row.update(dict.fromkeys(["mean", "sd", "median", "q05", "q25", "q75", "q95",
                                      "geo_mean", "geo_cv_pct"], np.nan))
        rows.append(row)
    cols = (["arm", "n", "n_missing", "responders", "proportion", "ci_lower", "ci_upper"] if binary else
            ["arm", "n", "n_missing", "mean", "sd", "median", "q05", "q25", "q75", "q95",
             "geo_mean", "geo_cv_pct"])
    return pd.DataFrame(rows, columns=cols)


def compare(values, arms, reference, *, kind: str = "difference", binary: bool = False,
            alpha: float = 0.05, subject=None, paired: bool = False) -> pd.DataFrame:
    """Compare every non-reference arm with ``reference``.

    Parameters
    ----------
    values : 1-D array-like of endpoint values, NaN = missing (excluded and counted).
    arms : arm label of each value.
    reference : label of the reference (control) arm.
    kind : ``"difference"`` (arm − reference) or ``"ratio"`` (arm / reference, geometric
        means; continuous positive endpoints only).
    binary : the endpoint is 0/1; the estimate is the difference in proportions
        (``kind`` must be ``"difference"``).
    alpha : two-sided level: intervals are 1 − alpha (use 0.1 for the 90 % bioequivalence
        interval); p-values are two-sided whatever alpha.
    subject : subject id of each value; required when ``paired``.
    paired : counterfactual design (every subject in every arm): values are matched by
        subject id; only subjects with a value in both arms enter a comparison.

    Methods (``method`` column)
    ---------------------------
    * difference: mean difference, Welch t interval and test (``welch_t``).
    * ratio: exp(mean log difference) = geometric mean ratio, Welch t on logs (``welch_t_log``).
    * difference, paired: mean within-subject difference, paired t (``paired_t``).
    * ratio, paired: exp(mean within-subject log ratio), paired t on logs (``paired_t_log``).
    * binary: p − p_ref with the Newcombe (1998a) hybrid score interval; Fisher's exact test
      when the smallest expected count is < 5 (``fisher_exact``), else Pearson χ² without
      continuity correction (``pearson_chi2``).
    * binary, paired: (b − c)/n with the Newcombe (1998b, method 10) paired interval;
      McNemar's exact test (``mcnemar_exact``).

    Returns
    -------
    DataFrame, one row per non-reference arm (order of first appearance), RangeIndex, with
    columns ``arm, reference, measure, method, paired, level, n, n_ref, n_missing,
    n_missing_ref, value, value_ref, estimate, ci_lower, ci_upper, statistic, df, p_value``.

    * ``measure``: ``mean_difference``, ``geometric_mean_ratio`` or ``proportion_difference``.
    * ``n``/``n_ref``: values used (paired: number of complete pairs, equal in both).
    * ``n_missing``/``n_missing_ref``: subjects of that arm not used (NaN value or, when
      paired, no value in the other arm).
    * ``value``/``value_ref``: mean, geometric mean or proportion of each arm over the values
      used. ``statistic``: t (or χ²; NaN for exact tests); ``df``: t degrees of freedom.
    """
    alpha = _check_alpha(alpha)
    if kind not in ("difference", "ratio"):
        raise ValueError(f"kind must be 'difference' or 'ratio', got {kind!r}")
    if binary and kind != "difference":
        raise ValueError("binary endpoints are compared as a difference in proportions (kind='difference')")
    v = _as_values(values)
    a = _as_labels(arms, v.shape[0], "arms")
    labels = list(pd.unique(a))
    if reference not in labels:
        raise SpecError("analysis.reference", f"reference arm {reference!r} not among arms {labels}")
    if binary:
        _check_binary(v, "values")
    if kind == "ratio":
        _check_positive(v, "the endpoint")
    if paired:
        if subject is None:
            raise ValueError("paired=True needs subject ids (subject=...)")
        s = _as_labels(subject, v.shape[0], "subject")
        df = pd.DataFrame({"subject": s, "arm": a, "value": v})
        dup = df.duplicated(["subject", "arm"])
        if dup.any():
            raise ValueError(f"paired comparison: subject {df.loc[dup, 'subject'].iloc[0]!r} appears "
                             "more than once in one arm")
        wide = df.pivot(index="subject", columns="arm", values="value")
    level = 1.0 - alpha
    rows = []
    for arm in labels:
        if arm == reference:
            continue
        row = {"arm": arm, "reference": reference, "paired": bool(paired), "level": level}
        if paired:
            in_a = wide.index.isin(df.loc[df["arm"] == arm, "subject"])
            in_r = wide.index.isin(df.loc[df["arm"] == reference, "subject"])
            xa = wide[arm].to_numpy(dtype=float)
            xr = wide[reference].to_numpy(dtype=float)
            both = ~np.isnan(xa) & ~np.isnan(xr)
            xa, xr = xa[both], xr[both]
            n = int(both.sum())
            row.update(n=n, n_ref=n, n_missing=int((in_a & ~both).sum()),
                       n_missing_ref=int((in_r & ~both).sum()))
            if binary:
                r = _paired_proportions(np.sum((xa == 1) & (xr == 1)), np.sum((xa == 1) & (xr == 0)),
                                        np.sum((xa == 0) & (xr == 1)), np.sum((xa == 0) & (xr == 0)), alpha)
                row.update(measure="proportion_difference", method="mcnemar_exact",
                           value=float(r["p1"]), value_ref=float(r["p0"]),
                           statistic=np.nan, df=np.nan)
            else:
                ya, yr = (np.log(xa), np.log(xr)) if kind == "ratio" else (xa, xr)
                dd = ya - yr
                r = _paired_t(dd.mean() if n else np.nan, dd.var(ddof=1) if n > 1 else np.nan, n, alpha)
                row.update(statistic=float(r["statistic"]), df=float(r["df"]))
        else:
            xa, xr = v[a == arm], v[a == reference]
            row.update(n_missing=int(np.isnan(xa).sum()), n_missing_ref=int(np.isnan(xr).sum()))
            xa, xr = xa[~np.isnan(xa)], xr[~np.isnan(xr)]
            row.update(n=int(xa.size), n_ref=int(xr.size))
            if binary:
                r = _two_proportions(xa.sum(), xa.size, xr.sum(), xr.size, alpha)
                row.update(measure="proportion_difference",
                           method="fisher_exact" if bool(r["fisher"]) else "pearson_chi2",
                           value=float(r["p1"]), value_ref=float(r["p0"]),
                           statistic=float(r["statistic"]), df=np.nan if bool(r["fisher"]) else 1.0)
            else:
                ya, yr = (np.log(xa), np.log(xr)) if kind == "ratio" else (xa, xr)
                r = _welch(*_moments(ya), *_moments(yr), alpha)
                row.update(statistic=float(r["statistic"]), df=float(r["df"]))
        if not binary:
            if kind == "ratio":
                row.update(measure="geometric_mean_ratio",
                           method="paired_t_log" if paired else "welch_t_log",
                           value=_gmean(xa), value_ref=_gmean(xr),
                           estimate=float(np.exp(r["estimate"])), ci_lower=float(np.exp(r["ci_lower"])),
                           ci_upper=float(np.exp(r["ci_upper"])), p_value=float(r["p_value"]))
            else:
                row.update(measure="mean_difference", method="paired_t" if paired else "welch_t",
                           value=float(xa.mean()) if xa.size else np.nan,
                           value_ref=float(xr.mean()) if xr.size else np.nan,
                           estimate=float(r["estimate"]), ci_lower=float(r["ci_lower"]),
                           ci_upper=float(r["ci_upper"]), p_value=float(r["p_value"]))
        else:
            row.update(estimate=float(r["estimate"]), ci_lower=float(r["ci_lower"]),
                       ci_upper=float(r["ci_upper"]), p_value=float(r["p_value"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=_COMPARE_COLUMNS)


def _moments(x: np.ndarray):
    n = x.size
    return (x.mean() if n else np.nan, x.var(ddof=1) if n > 1 else np.nan, n)


def _gmean(x: np.ndarray) -> float:
    return float(np.exp(np.log(x).mean())) if x.size else np.nan


def probability_of_success(table, rule: Mapping, *, alpha: float = 0.05) -> dict:
    """Probability of (trial) success: the fraction of replicates whose comparison meets
    ``rule``.

    Parameters
    ----------
    table : per-replicate comparison results — a DataFrame (or list of records) with a
        ``replicate`` column and the columns the rule uses (``estimate``, ``ci_lower``,
        ``ci_upper``, ``p_value``), one row per replicate (filter :func:`compare`'s output to
        one arm first).
    rule : mapping of conditions, all of which must hold (strict inequalities):
        ``p_value_below`` (p < v), ``estimate_above`` (estimate > v), ``estimate_below``,
        ``ci_lower_above`` (ci_lower > v), ``ci_upper_below`` (ci_upper < v). E.g.
        ``{"p_value_below": 0.05, "estimate_above": 0.0}`` for superiority or, for
        bioequivalence with ``alpha=0.1`` ratios, ``{"ci_lower_above": 0.8,
        "ci_upper_below": 1.25}``. Unknown keys raise ``SpecError("analysis.success.<key>")``.
    alpha : 1 − level of the Wilson interval of the probability.

    A replicate whose needed statistic is NaN/missing (e.g. too few subjects) counts as a
    failure, and is counted in ``n_undefined``.

    Returns
    -------
    dict with ``estimate`` (successes / replicates; NaN for an empty table), ``successes``,
    ``n_replicates``, ``n_undefined``, ``ci_lower``, ``ci_upper`` (Wilson 1927).
    """
    rule = _check_rule(rule)
    t = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    if "replicate" not in t.columns:
        raise ValueError("probability_of_success needs a 'replicate' column (one row per replicate)")
    if t["replicate"].duplicated().any():
        raise ValueError("probability_of_success needs one row per replicate; "
                         "filter the comparison table to one arm first")
    needed = {RULE_KEYS[k][0] for k in rule}
    missing = needed - set(t.columns)
    if missing:
        raise ValueError(f"comparison table lacks column(s) {sorted(missing)} needed by the rule")
    cols = {c: pd.to_numeric(t[c], errors="coerce").to_numpy(dtype=float) for c in needed}
    ok = _rule_mask(rule, cols) if len(t) else np.zeros(0, bool)
    undefined = np.zeros(len(t), bool)
    for c in needed:
        undefined |= np.isnan(cols[c])
    n = int(len(t))
    s = int(ok.sum())
    lo, hi = wilson_ci(s, n, alpha)
    return {"estimate": s / n if n else float("nan"), "successes": s, "n_replicates": n,
            "n_undefined": int(undefined.sum()), "ci_lower": lo, "ci_upper": hi}


def target_attainment(values, groups, threshold: float, *, above: bool = True,
                      alpha: float = 0.05) -> pd.DataFrame:
    """Probability of target attainment (PTA) per group, e.g. per dose × renal stratum.

    Parameters
    ----------
    values : 1-D array-like of an exposure metric (e.g. fT>MIC, AUC/MIC), NaN = missing.
    groups : one group label per value (1-D), or a DataFrame (or mapping of equal-length
        arrays) whose columns jointly define the groups (e.g. ``{"dose": ..., "renal": ...}``).
    threshold : the target. A subject attains it when ``value >= threshold`` (``above``) or
        ``value <= threshold`` (``above=False``) — inclusive, as targets are usually stated
        ("fT>MIC ≥ 40 %").
    alpha : 1 − level of the Wilson interval.

    Returns
    -------
    DataFrame, one row per group (order of first appearance), RangeIndex: the group column(s)
    (``group`` for 1-D labels), ``n, n_missing, n_attained, pta, ci_lower, ci_upper``.
    """
    alpha = _check_alpha(alpha)
    v = _as_values(values)
    if isinstance(groups, (pd.DataFrame, Mapping)):
        g = pd.DataFrame(groups).reset_index(drop=True)
        if len(g) != v.shape[0]:
            raise ValueError(f"groups must have one row per value ({v.shape[0]}), got {len(g)}")
        keys = [str(c) for c in g.columns]
        g.columns = keys
    else:
        g = pd.DataFrame({"group": _as_labels(groups, v.shape[0], "groups")})
        keys = ["group"]
    thr = float(threshold)
    with np.errstate(invalid="ignore"):
        hit = (v >= thr) if above else (v <= thr)
    d = g.assign(_n=~np.isnan(v), _miss=np.isnan(v), _hit=hit & ~np.isnan(v))
    agg = d.groupby(keys, sort=False, dropna=False)[["_n", "_miss", "_hit"]].sum().reset_index()
    n = agg["_n"].to_numpy(dtype=int)
    x = agg["_hit"].to_numpy(dtype=int)
    lo, hi = wilson_ci(x, n, alpha)
    out = agg[keys].copy()
    out["n"] = n
    out["n_missing"] = agg["_miss"].to_numpy(dtype=int)
    out["n_attained"] = x
    with np.errstate(invalid="ignore", divide="ignore"):
        out["pta"] = np.where(n > 0, x / np.maximum(n, 1), np.nan)
    out["ci_lower"] = lo
    out["ci_upper"] = hi
    return out


_CHUNK_ELEMENTS = 2_000_000  # resampled values held at once per arm (16 MB of float64)


def power_curve(values_by_arm: Mapping, reference, n_grid: Sequence[int], rule: Mapping,
                n_resamples: int, seed, *, kind: str = "difference", binary: bool = False,
                alpha: float = 0.05, paired: bool = False) -> pd.DataFrame:
    """Power versus sample size by resampling the simulated subjects.

    For each non-reference arm and each ``n`` in ``n_grid``, draw ``n_resamples`` trials of
    ``n`` subjects per arm *with replacement* from the arm's and the reference's simulated
    endpoint values (NaN dropped first), compare them exactly as :func:`compare` does (the
    same vectorised Welch / paired t / Newcombe–Fisher–χ² / McNemar cores, with ``kind``,
    ``binary``, ``alpha`` and ``paired`` meaning the same), and apply the success ``rule``
    (see :func:`probability_of_success`). Power is the fraction of resamples that succeed.

    Parameters
    ----------
    values_by_arm : mapping arm -> 1-D array of endpoint values (NaN = missing). When
        ``paired``, the arrays are aligned by subject (same length); subjects are resampled
        jointly across arm and reference, keeping only subjects with a value in both.
    reference : the reference arm's key.
    n_grid : sample sizes per arm (each >= 2).
    rule : success rule, e.g. ``{"p_value_below": 0.05}``; unknown keys raise SpecError.
    n_resamples : resampled trials per (arm, n).
    seed : integer seed. The stream of each (arm, n) is ``numpy.random.default_rng(
        SeedSequence(seed, spawn_key=(crc32(str(arm)), n)))``, so a result depends only on
        (seed, arm, n, n_resamples) — not on the other entries of the grid or their order.

    Returns
    -------
    DataFrame with columns ``arm, reference, n, n_resamples, successes, power, mc_se,
    ci_lower, ci_upper``: ``mc_se = sqrt(power (1 − power) / n_resamples)`` is the Monte-Carlo
    standard error and (ci_lower, ci_upper) the Wilson 95 % interval of the Monte-Carlo
    estimate. Resampling reflects the simulated population, so power at ``n`` larger than the
    number of simulated subjects is still estimable but no more informative than the data.
    """
    rule = _check_rule(rule)
    alpha = _check_alpha(alpha)
    if kind not in ("difference", "ratio"):
        raise ValueError(f"kind must be 'difference' or 'ratio', got {kind!r}")
    if binary and kind != "difference":
        raise ValueError("binary endpoints are compared as a difference in proportions (kind='difference')")
    R = int(n_resamples)
    if R < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    grid = [int(n) for n in n_grid]
    if any(n < 2 for n in grid):
        raise ValueError(f"every n in n_grid must be >= 2, got {list(n_grid)}")
    if reference not in values_by_arm:
        raise SpecError("analysis.reference", f"reference arm {reference!r} not among arms "
                        f"{list(values_by_arm)}")
    data = {arm: _as_values(x, f"values of arm {arm!r}") for arm, x in values_by_arm.items()}
    for arm, x in data.items():
        if binary:
            _check_binary(x, f"arm {arm!r}")
        if kind == "ratio":
            _check_positive(x, f"arm {arm!r}")
    xr_all = data[reference]
    rows = []
    for arm, xa_all in data.items():
        if arm == reference:
            continue
        if paired:
            if xa_all.shape != xr_all.shape:
                raise ValueError(f"paired: arm {arm!r} and reference must be aligned by subject "
                                 f"(lengths {xa_all.size} and {xr_all.size})")
            both = ~np.isnan(xa_all) & ~np.isnan(xr_all)
            xa, xr = xa_all[both], xr_all[both]
        else:
            xa, xr = xa_all[~np.isnan(xa_all)], xr_all[~np.isnan(xr_all)]
        if xa.size == 0 or xr.size == 0:
            raise ValueError(f"power_curve: no values to resample in arm {arm!r} or the reference")
        if kind == "ratio":
            xa, xr = np.log(xa), np.log(xr)
        for n in grid:
            ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(str(arm).encode()), n))
            rng = np.random.default_rng(ss)
            chunk = max(1, min(R, _CHUNK_ELEMENTS // n))
            succ = 0
            for start in range(0, R, chunk):
                c = min(chunk, R - start)
                res = _resampled_stats(rng, xa, xr, c, n, kind, binary, alpha, paired)
                succ += int(_rule_mask(rule, res).sum())
            p = succ / R
            lo, hi = wilson_ci(succ, R, 0.05)
            rows.append({"arm": arm, "reference": reference, "n": n, "n_resamples": R,
                         "successes": succ, "power": p, "mc_se": math.sqrt(p * (1.0 - p) / R),
                         "ci_lower": lo, "ci_upper": hi})
    return pd.DataFrame(rows, columns=["arm", "reference", "n", "n_resamples", "successes", "power",
                                       "mc_se", "ci_lower", "ci_upper"])


def _resampled_stats(rng: np.random.Generator, xa: np.ndarray, xr: np.ndarray, c: int, n: int,
                     kind: str, binary: bool, alpha: float, paired: bool) -> dict:
    """Comparison statistics of ``c`` resampled trials of ``n`` per arm (vectorised)."""
    if paired:
        idx = rng.integers(0, xa.size, size=(c, n))
        sa, sr = xa[idx], xr[idx]
        if binary:
            return _paired_proportions(np.sum((sa == 1) & (sr == 1), 1), np.sum((sa == 1) & (sr == 0), 1),
                                       np.sum((sa == 0) & (sr == 1), 1), np.sum((sa == 0) & (sr == 0), 1),
                                       alpha)
        d = sa - sr
        res = _paired_t(d.mean(1), d.var(1, ddof=1), n, alpha)
    else:
        sa = xa[rng.integers(0, xa.size, size=(c, n))]
        sr = xr[rng.integers(0, xr.size, size=(c, n))]
        if binary:
            return _two_proportions(sa.sum(1), n, sr.sum(1), n, alpha)
        res = _welch(sa.mean(1), sa.var(1, ddof=1), n, sr.mean(1), sr.var(1, ddof=1), n, alpha)
    if kind == "ratio":
        res = dict(res, estimate=np.exp(res["estimate"]), ci_lower=np.exp(res["ci_lower"]),
                   ci_upper=np.exp(res["ci_upper"]))
    return res
