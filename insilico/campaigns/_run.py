"""Run a campaign: every scenario is a trial written as a group of one Zarr hierarchy.

Layout: ``OUT/`` is a Zarr group whose attributes hold the campaign spec and, at the end, the
campaign summary; ``OUT/<scenario>`` is that scenario's trial results store. Scenarios share
one Dask client. A scenario that fails (invalid override, or a simulation error) is recorded
as failed with its reason and the others still run. ``resume`` skips finished scenarios and
resumes unfinished ones (only their missing work units run).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import zarr

from insilico import store
from insilico.campaigns._spec import load_campaign_spec, scenarios
from insilico.cluster import using
from insilico.errors import SpecError
from insilico.trials import load_trial_spec
from insilico.trials import run as run_trial


def _finished(path: Path) -> bool:
    try:
        return "analysis" in store.read_attrs(path)
    except Exception:
        return False


def _summary_rows(name: str, overrides: list[str], ds) -> list[dict]:
    analysis = json.loads(ds.attrs["analysis"])
    base = {"scenario": name, "overrides": "; ".join(overrides), "status": "ok", "reason": ""}
    rows = []
    for r in analysis.get("probability_of_success") or []:
        rows.append({**base, "arm": r["arm"], "n": int(ds.sizes["subject"]),
                     "replicates": int(ds.sizes["replicate"]), "pos": r["estimate"],
                     "pos_ci_lower": r["ci_lower"], "pos_ci_upper": r["ci_upper"]})
    if not rows:
        rows.append({**base, "n": int(ds.sizes["subject"]), "replicates": int(ds.sizes["replicate"])})
    return rows


def run_campaign(path, out, *, cluster=None, resume: bool = False, overwrite: bool = False,
                 progress: bool = False) -> pd.DataFrame:
    """Run every scenario of a campaign on one client; returns (and stores) the campaign summary
    table. ``cluster``: a ``distributed.Client`` or `insilico.cluster.ClusterOptions` (see `insilico.run`)."""
    spec, base_dir = load_campaign_spec(path)
    base = base_dir / spec.base if not Path(spec.base).is_absolute() else Path(spec.base)
    if not base.exists():
        raise SpecError("base", f"base trial spec not found: {base}")
    load_trial_spec(base, list(spec.set))   # the base itself must be valid
    plan = scenarios(spec)
    out = Path(out)
    if out.exists() and not resume:
        if not overwrite:
            raise SpecError("--out", f"{out} already exists; use --overwrite or --resume")
        store.remove_store(out)
    root = zarr.open_group(str(out), mode="a")
    root.attrs.update({"campaign": spec.model_dump_json(), "scenarios": json.dumps(plan)})
    rows = []
    t0 = time.perf_counter()
    with using(cluster) as c:
        for name, overrides in plan:
            target = out / name
            try:
                if not _finished(target):
                    run_trial(base, target, overrides=overrides, resume=target.exists(), cluster=c,
                              progress=progress)
                rows += _summary_rows(name, overrides[len(spec.set):], store.open_results(target))
            except Exception as e:
                reason = f"{e}" if isinstance(e, SpecError) else f"{type(e).__name__}: {e}"
                rows.append({"scenario": name, "overrides": "; ".join(overrides[len(spec.set):]), "status": "failed",
                             "reason": reason})
    summary = pd.DataFrame(rows)
    root.attrs.update({"summary": summary.to_json(orient="records"),
                       "wall_seconds": time.perf_counter() - t0})
    return summary
