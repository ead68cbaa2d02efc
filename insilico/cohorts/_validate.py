"""Validation report: achieved vs specified distributions, with sample-size standard errors.

Rows (one statistic each), columns ``variable, statistic, condition, n, target, achieved,
se, z, target_applies, ok``:

* categorical covariates: frequency of each category, SE = sqrt(p (1 - p) / n); strata:
  fraction of each level (the assignment is deterministic, so it is much closer than that);
* continuous covariates with constant parameters (or a ``{category: value}`` table, then per
  category): mean (SE = sd / sqrt(n)), SD (SE = sqrt(m4 - s^4) / (2 s sqrt(n)), which is
  sd / sqrt(2n) for a normal), quantiles 5/50/95 % (SE = sqrt(p (1 - p) / n) / f(q_p));
* every continuous distribution covariate, whatever its parameters (including expressions of
  other covariates): the probability integral transform u = F(x | its parents), which must be
  Uniform(0, 1): mean 1/2, SD sqrt(1/12), quantiles 10/50/90 %;
* copula correlations: Pearson correlation of the normal scores Phi^-1(u), SE = (1 - r^2)/sqrt(n);
* etas: mean 0, SD omega, pairwise correlations from Omega; kappas (pooled over occasions):
  mean 0, SD omega_iov.

``z = (achieved - target) / se``; ``ok`` is ``|z| <= z_tol`` (default 5).

The covariate targets describe the *unconstrained* draw (``draw_cohort(...,
apply_criteria=False)``): inclusion criteria truncate the distributions, so on a cohort drawn
with criteria those rows have ``target_applies = False`` (and ``ok`` = NA). Etas and kappas
are drawn independently of the covariates, so their targets apply either way.
"""
from __future__ import annotations

import json
import math

import numpy as np
import numpyro.distributions as dist
import pandas as pd
import xarray as xr

from insilico.cohorts._compile import compile_spec
from insilico.cohorts._covariates import DistNode, StratumNode

__all__ = ["validation_report"]

_Q_MARGINAL = (0.05, 0.5, 0.95)
_Q_PIT = (0.1, 0.5, 0.9)


def validation_report(ds: xr.Dataset, spec=None, *, z_tol: float = 5.0, population=None) -> pd.DataFrame:
    """Compare the cohort ``ds`` with ``spec`` (default: the spec stored in ``ds.attrs``).
    ``population``: the :class:`~insilico.population.PopulationModel` ``ds`` was drawn with when
    it was not the spec's (``draw_cohort(..., population=...)``, e.g. a trial replicate drawn from
    a fit's uncertainty): the eta and kappa targets are then its Omega and IOV SDs."""
    c = compile_spec(json.loads(ds.attrs["spec"]) if spec is None else spec)
    pop = c.population if population is None else population
    constrained = bool(int(ds.attrs.get("criteria_applied", 0))) and c.has_criteria
    rows: list[dict] = []
    env = {n: np.asarray(ds[n].values) for n in c.order}
    scores = {}
    for name in c.order:
        node = c.nodes[name]
        x = env[name]
        cov_applies = not constrained
        if isinstance(node, StratumNode):
            for code, (lab, p) in enumerate(zip(node.labels, node.probs)):
                rows.append(_prop(name, "fraction", lab, x == code, p, True))
        elif isinstance(node, DistNode) and node.categorical:
            for code, (lab, p) in enumerate(zip(node.labels, node.probs)):
                rows.append(_prop(name, "frequency", lab, x == code, p, cov_applies))
        elif isinstance(node, DistNode):
            getters = node.params.values()
            if all(g.is_const for g in getters):
                p = {k: g.const for k, g in node.params.items()}
                rows += _marginal(name, node.dist, p, x, "", cov_applies)
            elif all(g.is_const or g.table is not None for g in getters):
                labels = c.categories[node.given]
                for code, lab in enumerate(labels):
                    sel = env[node.given] == code
                    if sel.sum() < 2:
                        continue
                    p = {k: (g.const if g.is_const else g.table[code]) for k, g in node.params.items()}
                    rows += _marginal(name, node.dist, p, x[sel], f"{node.given}={lab}", cov_applies)
            u = np.clip(node.cdf(x, env), 1e-300, 1 - 1e-16)
            scores[name] = np.asarray(dist.Normal(0.0, 1.0).icdf(u))
            rows += _pit(name, u, cov_applies)
    for i, a in enumerate(c.copula_names):
        for j in range(i + 1, len(c.copula_names)):
            b = c.copula_names[j]
            if a in scores and b in scores:
                r = float(c.copula_r[i, j])
                rows.append(_corr(f"{a},{b}", "normal-score correlation", scores[a], scores[b], r,
                                  not constrained))
    if c.bsv_names:
        om = np.asarray(pop.omega, dtype=float)
        for j, p in enumerate(c.bsv_names):
            e = ds[f"eta_{p}"].values
            sd = math.sqrt(om[j, j])
            rows += _eta_rows(f"eta_{p}", e, sd)
        for j, p in enumerate(c.bsv_names):
            for k in range(j + 1, len(c.bsv_names)):
                q = c.bsv_names[k]
                r = om[j, k] / math.sqrt(om[j, j] * om[k, k])
                rows.append(_corr(f"eta_{p},eta_{q}", "correlation", ds[f"eta_{p}"].values,
                                  ds[f"eta_{q}"].values, r, True))
    for p, sd in zip(pop.iov_names, (float(x) for x in pop.iov_sd)):
        rows += _eta_rows(f"kappa_{p}", ds[f"kappa_{p}"].values.ravel(), sd, "pooled over occasions")
    df = pd.DataFrame(rows, columns=["variable", "statistic", "condition", "n", "target", "achieved",
                                     "se", "target_applies"])
    df["z"] = (df["achieved"] - df["target"]) / df["se"]
    ok = (df["z"].abs() <= z_tol).astype("boolean")
    ok[~df["target_applies"]] = pd.NA
    df["ok"] = ok
    df.attrs["note"] = ("covariate targets are those of the unconstrained draw (criteria not "
                        "applied); rows with target_applies=False were computed on a cohort drawn "
                        "with criteria, which truncate the distributions")
    return df[["variable", "statistic", "condition", "n", "target", "achieved", "se", "z",
               "target_applies", "ok"]]


def _row(var, stat, cond, n, target, achieved, se, applies):
    return {"variable": var, "statistic": stat, "condition": cond, "n": int(n), "target": float(target),
            "achieved": float(achieved), "se": float(se), "target_applies": bool(applies)}


def _prop(var, stat, label, hit, p, applies):
    n = hit.size
    return _row(var, stat, label, n, p, hit.mean(), math.sqrt(max(p * (1 - p), 1e-300) / n), applies)


def _sd_se(x, s):
    n = x.size
    m4 = np.mean((x - x.mean()) ** 4)
    return math.sqrt(max(m4 - s ** 4, 0.0)) / (2 * s * math.sqrt(n))


def _marginal(var, kind, p, x, cond, applies) -> list[dict]:
    n = x.size
    mean, sd, q, pdf = _moments(kind, p)
    s = x.std(ddof=1)
    out = [_row(var, "mean", cond, n, mean, x.mean(), sd / math.sqrt(n), applies),
           _row(var, "sd", cond, n, sd, s, _sd_se(x, s), applies)]
    for pr in _Q_MARGINAL:
        qt = q(pr)
        out.append(_row(var, f"q{round(pr * 100):02d}", cond, n, qt, np.quantile(x, pr),
                        math.sqrt(pr * (1 - pr) / n) / pdf(qt), applies))
    return out


def _moments(kind, p):
    """(mean, sd, quantile(p), pdf(x)) of the marginal distribution with constant parameters
    (NumPyro's ``mean``, ``variance``, ``icdf`` and ``log_prob``)."""
    if kind == "normal":
        d = dist.Normal(p["mean"], p["sd"])
    elif kind == "lognormal":
        d = dist.LogNormal(p["meanlog"], p["sdlog"])
    elif kind == "uniform":
        d = dist.Uniform(p["low"], p["high"])
    else:
        d = dist.TruncatedNormal(p["mean"], p["sd"], low=p["low"], high=p["high"])
    return (float(d.mean), math.sqrt(float(d.variance)), lambda pr: float(d.icdf(pr)),
            lambda x: math.exp(float(d.log_prob(x))))


def _pit(var, u, applies) -> list[dict]:
    n = u.size
    s = u.std(ddof=1)
    sd = math.sqrt(1 / 12)
    out = [_row(var, "PIT mean", "given parents", n, 0.5, u.mean(), sd / math.sqrt(n), applies),
           _row(var, "PIT sd", "given parents", n, sd, s,
                math.sqrt(1 / 80 - 1 / 144) / (2 * sd * math.sqrt(n)), applies)]
    for pr in _Q_PIT:
        out.append(_row(var, f"PIT q{round(pr * 100):02d}", "given parents", n, pr, np.quantile(u, pr),
                        math.sqrt(pr * (1 - pr) / n), applies))
    return out


def _corr(var, stat, a, b, r, applies):
    n = a.size
    return _row(var, stat, "", n, r, np.corrcoef(a, b)[0, 1], (1 - r * r) / math.sqrt(n), applies)


def _eta_rows(var, e, sd, cond=""):
    n = e.size
    s = e.std(ddof=1)
    return [_row(var, "mean", cond, n, 0.0, e.mean(), sd / math.sqrt(n), True),
            _row(var, "sd", cond, n, sd, s, sd / math.sqrt(2 * n), True)]
