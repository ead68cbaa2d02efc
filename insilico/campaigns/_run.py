"""Run a campaign: every scenario is a trial written as a group of one Zarr hierarchy.

Layout: ``OUT/`` is a Zarr group whose attributes hold the campaign spec and, at the end, the
campaign summary; ``OUT/<scenario>`` is that scenario's trial results store. Scenarios share
one Dask client. A scenario that fails (invalid override, or a simulation error) is recorded
as failed with its reason and the others still run. ``resume`` skips finished scenarios and
resumes unfinished ones (only their missing work units run), after checking that neither the
campaign spec (grid, ``set``) nor the base trial spec changed (digests in ``inputs_sha256``).
The root group is created atomically and carries ``insilico_store: campaign``; the campaign
holds the writer's lock of ``OUT`` while it runs.
"""
from __future__ import annotations

import json
import os
import shutil
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


def _inputs(spec, base: Path) -> dict:
    """Digests of what a campaign's results depend on: its spec (grid and ``set`` included) and
    the base trial spec file (each scenario's store also records its own inputs)."""
    return {"campaign spec": store.digest(spec.model_dump_json()), "base trial spec": store.digest(base.read_bytes())}


def _check_resumable(out: Path, spec, inputs: dict) -> None:
    if store.recognise(out) != "campaign":
        raise SpecError("--out", f"{out} exists but is not an insilico campaign store")
    attrs = store.read_attrs(out)
    recorded = attrs.get("inputs_sha256")
    if recorded is not None:
        changed = store.changed_inputs(json.loads(recorded), inputs)
    else:   # written before per-input digests
        changed = [] if attrs.get("campaign") == spec.model_dump_json() else ["campaign spec"]
    if changed:
        raise SpecError("--resume", f"{out} was written from a different campaign: {', '.join(changed)} changed "
                                    "since it began (grid values would label old scenarios); restore them, or use "
                                    "--overwrite to start again")


def _create_root(out: Path, attrs: dict) -> None:
    """Create the campaign's root group atomically (a hidden sibling renamed into place)."""
    tmp = store.creating_path(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    root = zarr.open_group(str(tmp), mode="w")
    root.attrs.update({store.KIND_ATTR: "campaign", **attrs})
    os.rename(tmp, out)


def run_campaign(path, out, *, cluster=None, resume: bool = False, overwrite: bool = False,
                 progress: bool = False) -> pd.DataFrame:
    """Run every scenario of a campaign on one client; returns (and stores) the campaign summary
    table. ``cluster``: a ``distributed.Client`` or `insilico.cluster.ClusterOptions` (see `insilico.run`).

    ``out`` is replaced only with ``overwrite`` and only when it is an insilico campaign;
    ``resume`` refuses (SpecError) when the campaign spec or the base trial spec changed since
    the campaign began, or when a scenario's own inputs (e.g. its cohort file) changed."""
    spec, base_dir = load_campaign_spec(path)
    base = base_dir / spec.base if not Path(spec.base).is_absolute() else Path(spec.base)
    if not base.is_file():
        raise SpecError("base", f"base trial spec not found: {base}")
    load_trial_spec(base, list(spec.set))   # the base itself must be valid
    if resume and overwrite:
        raise SpecError("--resume", "use either --resume or --overwrite, not both")
    plan = scenarios(spec)
    out = store.check_out(out)
    inputs = _inputs(spec, base)
    rows = []
    t0 = time.perf_counter()
    with store.writer_lock(out):
        if out.exists() and resume:
            _check_resumable(out, spec, inputs)
        else:
            store.replace_owned(out, "campaign", overwrite=overwrite)
            out.parent.mkdir(parents=True, exist_ok=True)
            _create_root(out, {"campaign": spec.model_dump_json(), "scenarios": json.dumps(plan),
                               "inputs_sha256": json.dumps(inputs)})
        root = zarr.open_group(str(out), mode="r+")
        with using(cluster) as c:
            for name, overrides in plan:
                target = out / name
                try:
                    if not _finished(target):
                        run_trial(base, target, overrides=overrides, resume=target.exists(), cluster=c,
                                  progress=progress)
                    rows += _summary_rows(name, overrides[len(spec.set):], store.open_results(target))
                except SpecError as e:
                    if e.field == "--resume":      # a scenario's inputs changed: stop, as for the campaign
                        raise SpecError("--resume", f"scenario {name}: {e.message}") from None
                    rows.append(_failed(name, overrides[len(spec.set):], f"{e}"))
                except Exception as e:    # a failed scenario must not stop the campaign
                    rows.append(_failed(name, overrides[len(spec.set):], f"{type(e).__name__}: {e}"))
        summary = pd.DataFrame(rows)
        root.attrs.update({"summary": summary.to_json(orient="records"),
                           "wall_seconds": time.perf_counter() - t0})
    return summary


def _failed(name: str, overrides: list[str], reason: str) -> dict:
    return {"scenario": name, "overrides": "; ".join(overrides), "status": "failed", "reason": reason}
