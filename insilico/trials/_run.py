"""Run a trial: validate, plan (replicate, arm, subject-chunk) work units, execute them on
Dask, write each unit's region of one Zarr store, then analyse and consolidate."""
from __future__ import annotations

import functools
import hashlib
import json
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from insilico import store
from insilico.cluster import using
from insilico.errors import SpecError
from insilico.trials._prepare import TrialContext, context_from_json, prepare
from insilico.trials._spec import load_trial_spec
from insilico.trials._unit import compute_unit, draw_subjects, subject_range

_PACKAGES = ("insilico", "jax", "jaxlib", "diffrax", "equinox", "numpyro", "xarray", "zarr", "dask",
             "distributed", "numpy")


def _versions() -> dict:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = version(p)
        except Exception:
            out[p] = "unknown"
    return out


def _template(ctx: TrialContext) -> tuple[dict, dict]:
    """Variables (dims, dtype, fill, attrs) and coordinates of the results store."""
    spec, model = ctx.spec, ctx.model
    cohort, params, _, _ = draw_subjects(ctx, 0, np.arange(1))
    t = {}
    for k in cohort.data_vars:
        v = cohort[k]
        if v.dims != ("subject",) or k == "attempt" or k in params:
            continue
        fill = np.nan if np.issubdtype(v.dtype, np.floating) else -1
        t[k] = (("replicate", "subject"), v.dtype, fill, dict(v.attrs))
    for k in params:
        par = model.parameter(k)
        t[k] = (("replicate", "subject"), np.float64, np.nan, {"units": par.units, "long_name": par.description})
    t["allocated_arm"] = (("replicate", "subject"), np.int16, -2,
                          {"long_name": "allocated arm index (-1: every arm, counterfactual design)"})
    t["dropout_time"] = (("replicate", "subject"), np.float64, np.nan,
                         {"units": "h", "long_name": "dropout time (inf: completed)"})
    if spec.observations.jitter_sd > 0:
        t["obs_time"] = (("replicate", "subject", "time"), np.float64, np.nan,
                         {"units": "h", "long_name": "actual sampling time"})
    if spec.execution.save_profiles:
        for o in ctx.outputs:
            out = next(x for x in model.outputs if x.name == o)
            t[o] = (("replicate", "arm", "subject", "time"), np.float64, np.nan,
                    {"units": out.units, "long_name": out.long_name})
        if getattr(ctx.cohort, "residual_error", None) is not None and "conc" in ctx.outputs:
            t["conc_obs"] = (("replicate", "arm", "subject", "time"), np.float64, np.nan,
                             {"units": "mg/L", "long_name": "observed concentration (with residual error)"})
    units = {"cmax": "{u}", "cmin": "{u}", "trough": "{u}", "value": "{u}", "change_from_baseline": "{u}",
             "auc": "{u}·h", "tmax": "h", "time_above": "h", "time_below": "h", "fraction_above": "1",
             "fraction_in_window": "1", "responder": "1"}
    out_units = {o.name: o.units for o in model.outputs}
    for e in spec.endpoints:
        u = units[e.type].format(u=out_units.get(e.output, "1"))
        t[e.name] = (("replicate", "arm", "subject"), np.float64, np.nan,
                     {"units": u, "long_name": f"{e.type} of {e.output}" if e.type != "responder"
                      else f"responder ({e.of} {e.direction} {e.threshold})", "endpoint_type": e.type})
    t["status"] = (("replicate", "arm", "subject"), np.int8, -1,
                   {"long_name": "simulation status (0 ok, -1 not simulated in this arm)"})
    t["doses_taken"] = (("replicate", "arm", "subject"), np.int32, 0, {"long_name": "doses taken"})
    t["_done"] = (("replicate", "arm", "chunk"), np.int8, 0, {"long_name": "work unit completed"})
    coords = {
        "replicate": np.arange(spec.replicates.n),
        "arm": np.array([a.name for a in spec.arms], dtype=object),
        "subject": np.arange(spec.n),
        "time": ("time", ctx.nominal, {"units": "h", "long_name": "nominal sampling time"}),
        "chunk": np.arange(ctx.n_chunks),
    }
    return t, coords


@functools.lru_cache(maxsize=8)
def _worker_context(spec_json: str, base: str) -> TrialContext:
    return context_from_json(spec_json, base)


def run_unit(spec_json: str, base: str, out: str, replicate: int, arm: int, chunk: int) -> dict:
    """Compute one work unit and write its region (called on a Dask worker)."""
    t0 = time.perf_counter()
    ctx = _worker_context(spec_json, base)
    res = compute_unit(ctx, replicate, arm, chunk)
    idx = subject_range(ctx, chunk)
    sub = slice(int(idx[0]), int(idx[-1]) + 1)
    keep = set(_template_names(ctx))
    arm_vars = {}
    for k, v in res["arm"].items():
        if k not in keep:
            continue
        dims = ("replicate", "arm", "subject") + (("time",) if v.ndim == 2 else ())
        arm_vars[k] = (dims, v[None, None])
    store.write_region(Path(out), arm_vars, {"replicate": slice(replicate, replicate + 1),
                                             "arm": slice(arm, arm + 1), "subject": sub})
    if res["subject"] is not None:
        subj = {}
        for k, v in res["subject"].items():
            if k not in keep:
                continue
            dims = ("replicate", "subject") + (("time",) if v.ndim == 2 else ())
            subj[k] = (dims, v[None])
        store.write_region(Path(out), subj, {"replicate": slice(replicate, replicate + 1), "subject": sub})
    store.mark_done(Path(out), replicate, arm, chunk)
    return {"unit": (replicate, arm, chunk), "seconds": time.perf_counter() - t0, "n": len(idx)}


@functools.lru_cache(maxsize=8)
def _names_cache(spec_json: str, base: str) -> tuple:
    ctx = _worker_context(spec_json, base)
    return tuple(_template(ctx)[0])


def _template_names(ctx) -> tuple:
    return _names_cache(ctx.spec_json(), str(ctx.base))


def run(spec, out=None, *, cluster=None, resume: bool = False, overwrite: bool = False,
        overrides: list[str] | None = None, progress: bool = False):
    """Run a trial spec (path, YAML text, mapping) and return its results as an xarray Dataset.

    ``out``: Zarr store path (default ``results/<name>.zarr``). An existing store is never
    overwritten unless ``overwrite``; with ``resume`` only units not yet completed are run
    (the store must come from the same spec). ``cluster``: a ``distributed.Client`` (used as is)
    or an `insilico.cluster.ClusterOptions` (default: a LocalCluster started here).
    """
    t_start = time.perf_counter()
    spec_obj, base = load_trial_spec(spec, overrides)
    ctx = prepare(spec_obj, base)
    out = Path(out) if out is not None else Path("results") / f"{spec_obj.name}.zarr"
    spec_json = ctx.spec_json()
    digest = hashlib.sha256(spec_json.encode()).hexdigest()
    if resume and overwrite:
        raise SpecError("--resume", "use either --resume or --overwrite, not both")
    fresh = True
    if out.exists():
        if resume:
            try:
                attrs = store.read_attrs(out)
            except Exception:
                raise SpecError("--out", f"{out} exists but is not a results store") from None
            if attrs.get("spec_sha256") != digest:
                raise SpecError("--resume", f"{out} was written from a different spec; use --overwrite")
            fresh = False
        elif not overwrite:
            raise SpecError("--out", f"{out} already exists; use --overwrite to replace it or --resume to finish it")
    # connect first: a cluster that cannot be reached leaves no store behind
    with using(cluster) as c:
        if fresh:
            store.remove_store(out)
            template, coords = _template(ctx)
            attrs = {"title": f"insilico trial {spec_obj.name}", "trial": spec_obj.name, "spec": spec_json,
                     "spec_sha256": digest, "seed": spec_obj.seed, "model": ctx.model.name,
                     "cohort_spec": ctx.cohort.model_dump_json(by_alias=True, exclude_none=True),
                     "design": spec_obj.design, "versions": json.dumps(_versions()),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            out.parent.mkdir(parents=True, exist_ok=True)
            store.create_store(out, template, coords, attrs, spec_obj.execution.chunk_size)
        done = store.done_units(out)
        todo = [(r, a, k) for r in range(spec_obj.replicates.n) for a in range(ctx.n_arms)
                for k in range(ctx.n_chunks) if not done[r, a, k]]
        unit_times = _execute(c, todo, spec_json, str(base), str(out), progress)
    from insilico.store import open_results
    from insilico.trials._analysis import analyse
    analysis = analyse(open_results(out, dask=False), spec_obj)   # read here, not through the cluster
    store.finalize(out, {"analysis": json.dumps(analysis), "timings": json.dumps({
        "wall_seconds": time.perf_counter() - t_start, "units_run": len(unit_times),
        "unit_seconds_total": float(sum(unit_times))})})
    return open_results(out)


def _execute(client, todo, spec_json, base, out, progress) -> list[float]:
    if not todo:
        return []
    from distributed import as_completed
    futures = [client.submit(run_unit, spec_json, base, out, r, a, k, pure=False) for (r, a, k) in todo]
    times = []
    bar = None
    if progress:
        from rich.progress import Progress
        bar = Progress()
        bar.start()
        task = bar.add_task("simulating", total=len(futures))
    try:
        for fut in as_completed(futures):
            times.append(fut.result()["seconds"])
            if bar:
                bar.advance(task)
    finally:
        if bar:
            bar.stop()
    return times
