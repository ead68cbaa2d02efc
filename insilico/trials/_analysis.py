"""Trial analysis from a results store: per-arm summaries, comparisons with a reference
arm (per replicate), probability of success across replicates, probability of target
attainment and power versus N. Returns JSON-able tables (stored in the store's attributes).

Summaries pool all replicates; comparisons are made per replicate (paired by subject in a
counterfactual design) and probability of success is the fraction of replicates meeting the
success rule. A ``ratio`` comparison applies to endpoints whose values are all positive;
others (e.g. a time above threshold that can be 0) are compared as differences, which the
``measure`` column records.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from insilico import stats, store


def _records(df: pd.DataFrame) -> list[dict]:
    df = df.reset_index() if df.index.name or not isinstance(df.index, pd.RangeIndex) else df
    recs = df.to_dict(orient="records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else (v.item() if hasattr(v, "item") else v))
             for k, v in r.items()} for r in recs]


def _arm_values(ds, name: str, replicate=None):
    """(values, arm labels, subject ids) of the simulated subject-arm pairs (NaN = missing), in
    (replicate, arm, subject) order."""
    df = store.arm_values(ds, name, replicate)
    return df["value"].to_numpy(), df["arm"].to_numpy(), df["subject"].to_numpy()


def analyse(ds, spec) -> dict:
    ds = ds.load(scheduler="threads")   # in this process, never as tasks on a cluster
    a = spec.analysis
    binary = {e.name: e.type == "responder" for e in spec.endpoints}
    names = a.endpoints or [e.name for e in spec.endpoints]
    out: dict = {"summary": {}, "comparisons": {}}
    for name in names:
        vals, labs, _ = _arm_values(ds, name)
        out["summary"][name] = _records(stats.summarise(vals, labs, binary=binary[name]))
        if a.reference is None:
            continue
        out["comparisons"][name] = _comparisons(ds, spec, name, binary[name])
    if a.success is not None:
        s = a.success
        table = pd.DataFrame(out["comparisons"].get(s.endpoint)
                             or _comparisons(ds, spec, s.endpoint, binary[s.endpoint]))
        arms = [s.arm] if s.arm else [x for x in table["arm"].unique()]
        out["probability_of_success"] = [
            {"arm": arm, **stats.probability_of_success(table[table["arm"] == arm], s.rule())} for arm in arms]
    if a.pta is not None:
        vals, arms, _ = _arm_values(ds, a.pta.endpoint)
        parts = [arms.astype(str) if g == "arm" else _arm_values(ds, g)[0].astype(str) for g in a.pta.by]
        groups = np.array([" | ".join(t) for t in zip(*parts)], dtype=object)
        out["pta"] = _records(stats.target_attainment(vals, groups, a.pta.threshold,
                                                      above=a.pta.direction == "above"))
    if a.sample_size is not None:
        ep = a.success.endpoint if a.success else names[0]
        vals, labs, _ = _arm_values(ds, ep, ds["replicate"].values[0])
        by_arm = {arm: vals[labs == arm] for arm in ds["arm"].values}
        rule = a.success.rule() if a.success else {"p_value_below": a.alpha}
        out["power"] = _records(stats.power_curve(
            by_arm, a.reference, a.sample_size.n, rule, a.sample_size.resamples, spec.seed,
            kind=_kind(a.comparison, binary[ep], vals), binary=binary[ep], alpha=a.alpha,
            paired=spec.design == "counterfactual"))   # counterfactual: every arm holds the same subjects
    return out


def _kind(comparison: str, binary: bool, values: np.ndarray) -> str:
    """Ratios (geometric mean ratio) only for positive endpoints; differences otherwise."""
    if binary or comparison != "ratio":
        return "difference"
    v = values[np.isfinite(values)]
    return "ratio" if v.size and np.all(v > 0) else "difference"


def _comparisons(ds, spec, name: str, binary: bool) -> list[dict]:
    """Comparison of every arm with the reference, per replicate (paired if counterfactual)."""
    a = spec.analysis
    paired = spec.design == "counterfactual"
    kind = _kind(a.comparison, binary, _arm_values(ds, name)[0])
    rows = []
    for r in ds["replicate"].values:
        v, lab, sub = _arm_values(ds, name, r)
        t = stats.compare(v, lab, a.reference, kind=kind, binary=binary, alpha=a.alpha,
                           subject=sub if paired else None, paired=paired)
        t["replicate"] = int(r)
        rows.append(t)
    return _records(pd.concat(rows))
