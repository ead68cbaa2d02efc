"""Run a trial: validate, plan (replicate, arm, subject-chunk) work units, execute them on
Dask, write each unit's region of one Zarr store, then analyse and consolidate."""
from __future__ import annotations

import functools
import json
import sys
import time
import warnings
from pathlib import Path

from insilico import store, units
from insilico.cluster import using
from insilico.cohorts import compile_spec
from insilico.engine import status as engine_status
from insilico.errors import SpecError
from insilico.jax_config import relieve_map_pressure
from insilico.trials._fit import tree_digest
from insilico.trials._prepare import TrialContext, check_resources, context_from_json, prepare
from insilico.trials._spec import load_trial_spec
from insilico.trials._titration import layout_entry
from insilico.trials._unit import compute_unit, subject_range
from insilico.versions import package_versions

_PACKAGES = ("insilico", "jax", "jaxlib", "diffrax", "equinox", "numpyro", "xarray", "zarr", "dask",
             "distributed", "numpy")


def _endpoint_units(kind: str, output_units: str) -> str:
    """Units of an endpoint of type ``kind`` of an output in ``output_units`` (time in h)."""
    if kind == "auc":
        return units.multiply(output_units, "h")
    if kind in ("tmax", "time_above", "time_below"):
        return "h"
    if kind in ("fraction_above", "fraction_in_window", "responder"):
        return units.DIMENSIONLESS
    return output_units       # cmax, cmin, trough, value, change_from_baseline


def _endpoint(e, out_units: dict) -> store.Endpoint:
    long_name = (f"{e.type} of {e.output}" if e.type != "responder"
                 else f"responder ({e.of} {e.direction} {e.threshold})")
    return store.Endpoint(e.name, e.type, _endpoint_units(e.type, out_units.get(e.output, units.DIMENSIONLESS)),
                          long_name)


def _layout(ctx: TrialContext) -> store.Layout:
    """The results-store layout of a trial: the store's `trial_layout` fed from the spec, model and
    compiled cohort (no draw needed)."""
    spec, model = ctx.spec, ctx.model
    params = [k for k in model.parameter_names if k in ctx.cohort_params or k in ctx.fixed]
    subject_vars = {k: v for k, v in compile_spec(ctx.cohort).subject_variables().items() if k not in params}
    outputs = {o.name: (o.units, o.long_name) for o in model.outputs}
    observed = {}
    if spec.execution.save_profiles and getattr(ctx.cohort, "residual_error", None) is not None \
            and "conc" in ctx.outputs:
        observed["conc_obs"] = (outputs["conc"][0], "observed concentration (with residual error)")
    doses = [d for reg in ctx.regimens for d in reg.expanded()]
    iov = getattr(ctx.cohort, "iov", None)
    starts = list(iov.starts) if iov is not None and iov.starts else []
    iov_names = compile_spec(ctx.cohort).population.iov_names if starts else ()
    occasion_parameters = {f"{k}_occ": (model.parameter(k).units, f"{model.parameter(k).description} per occasion "
                                                                  "(with inter-occasion variability)")
                           for k in model.parameter_names if k in ctx.cohort_params and k in iov_names}
    return store.trial_layout(
        arms=[a.name for a in spec.arms], n_subjects=spec.n, n_replicates=spec.replicates.n, times=ctx.nominal,
        chunk_size=spec.execution.chunk_size, subject_variables=subject_vars,
        parameters={k: (model.parameter(k).units, model.parameter(k).description, model.parameter(k).constraint)
                    for k in params},
        outputs={o: outputs[o] for o in ctx.outputs} if spec.execution.save_profiles else {},
        observed=observed,
        endpoints=[_endpoint(e, {k: u for k, (u, _) in outputs.items()}) for e in spec.endpoints],
        status_meanings=engine_status.TRIAL_MEANINGS, states=model.states,
        n_doses=max(len(reg.expanded()) for reg in ctx.regimens),
        infusions=any(d.infusion_rate != 0 for d in doses), steady_state=any(d.ss for d in doses),
        jittered=spec.observations.jitter_sd > 0, occasion_parameters=occasion_parameters,
        occasion_starts=starts, titration=layout_entry(ctx))


@functools.lru_cache(maxsize=8)
def _worker_context(spec_json: str, base: str) -> TrialContext:
    return context_from_json(spec_json, base)


def run_unit(spec_json: str, base: str, out: str, replicate: int, arm: int, chunk: int) -> dict:
    """Compute one work unit and write its region (called on a Dask worker)."""
    t0 = time.perf_counter()
    ctx = _worker_context(spec_json, base)
    layout = _worker_layout(spec_json, base)
    res = compute_unit(ctx, replicate, arm, chunk, n_doses=layout.sizes["dose"])
    idx = subject_range(ctx, chunk)
    sub = slice(int(idx[0]), int(idx[-1]) + 1)
    rep = slice(replicate, replicate + 1)
    for part, region, lead in (("arm", {"arm": slice(arm, arm + 1)}, 2), ("subject", {}, 1)):
        if res[part] is None:
            continue
        variables = {k: (layout.variables[k].dims, v[(None,) * lead]) for k, v in res[part].items()
                     if k in layout.variables}
        store.write_region(Path(out), variables, {"replicate": rep, **region, "subject": sub})
    store.mark_done(Path(out), replicate, arm, chunk)
    return {"unit": (replicate, arm, chunk), "seconds": time.perf_counter() - t0, "n": len(idx)}


@functools.lru_cache(maxsize=8)
def _worker_layout(spec_json: str, base: str) -> store.Layout:
    return _layout(_worker_context(spec_json, base))


def replicate_population(ctx: TrialContext) -> dict:
    """The estimated quantities each replicate simulates with (cohort: a fit store, or
    ``replicates.covariance``): ``{"fit": path, "method", "source": "posterior" | "covariance" |
    "estimate", "names": [...], "values": [[...] per replicate]}``, or with a covariance file
    ``{"covariance": path, "from": its source, "source": "covariance", "names", "values"}`` (stored
    as the results' attribute ``replicate_population``)."""
    n = ctx.spec.replicates.n
    if ctx.covariance is not None:
        cov = ctx.covariance
        return {"covariance": str(cov.path), "from": cov.source, "source": "covariance", "names": list(cov.names),
                "values": [[float(v) for v in row] for row in cov.draws(ctx.spec.seed, range(n))]}
    fit = ctx.fit
    source = fit.uncertainty if ctx.fit_draws else "estimate"
    rows = fit.draws(ctx.spec.seed, range(n)) if ctx.fit_draws else [fit.estimate] * n
    return {"fit": str(fit.path), "method": fit.method, "source": source, "names": list(fit.names),
            "values": [[float(v) for v in row] for row in rows]}


def input_digests(spec_obj, base: Path, ctx: TrialContext, spec_json: str, overrides) -> dict:
    """SHA-256 digests of everything a trial's stored results depend on: the resolved spec, the
    seed, the ``--set`` overrides, the cohort spec (its file's bytes when it is a file, and as
    resolved), the fit store of a fit cohort, the table a cohort resamples, the covariance file of
    ``replicates.covariance``, a user model's source file (``model.import``) and a text model's
    file (``model.file``)."""
    d = {"trial spec": store.digest(spec_json), "seed": store.digest(str(spec_obj.seed)),
         "--set overrides": store.digest(json.dumps(list(overrides or []))),
         "cohort spec": store.digest(ctx.cohort.model_dump_json(by_alias=True, exclude_none=True))}
    cohort = ctx.spec.cohort       # as resolved by `prepare`
    if isinstance(cohort, str):
        cpath = Path(cohort) if Path(cohort).is_absolute() else Path(base) / cohort
        if cpath.is_file():
            d["cohort spec file"] = store.digest(cpath.read_bytes())
    if ctx.fit is not None:
        d["fit store"] = ctx.fit.digest
    elif getattr(ctx.cohort, "resample", None) is not None:
        d["resample table"] = tree_digest(Path(ctx.cohort.resample.table))
    if ctx.covariance is not None:
        d["replicates.covariance"] = ctx.covariance.digest
    target = getattr(spec_obj.model, "import_", None)
    if target:
        source = getattr(sys.modules.get(target.split(":", 1)[0]), "__file__", None)
        if source and Path(source).is_file():
            d["model source"] = store.digest(Path(source).read_bytes())
    mfile = getattr(spec_obj.model, "file", None)
    if mfile:
        mpath = Path(mfile) if Path(mfile).is_absolute() else Path(base) / mfile
        if mpath.is_file():
            d["model file"] = store.digest(mpath.read_bytes())
    return d


def _check_resumable(out: Path, inputs: dict) -> None:
    """Refuse (SpecError) to resume ``out`` unless it is an insilico trial store written from the
    same inputs; names the inputs that changed."""
    if store.recognise(out) != "trial":
        raise SpecError("--out", f"{out} exists but is not an insilico trial results store")
    try:
        attrs = store.read_attrs(out)
    except Exception:
        raise SpecError("--out", f"{out} exists but is not a readable results store") from None
    recorded = attrs.get("inputs_sha256")
    if recorded is not None:
        changed = store.changed_inputs(json.loads(recorded), inputs)
    else:   # a store written before per-input digests
        changed = [] if attrs.get("spec_sha256") == inputs["trial spec"] else ["trial spec"]
    if changed:
        raise SpecError("--resume", f"{out} was written from a different spec: {', '.join(changed)} changed "
                                    "since the run began; restore them, or use --overwrite to start again")


def _repair(out: Path) -> None:
    """Mark the done units whose chunks are missing or unreadable as not done (they are recomputed)."""
    damage = store.damaged_chunks(out)
    if damage:
        units = sorted({u for _, _, u in damage})
        names = ", ".join(sorted({f"{v} chunk {'.'.join(map(str, c))}" for v, c, _ in damage})[:5])
        warnings.warn(f"{out} is damaged ({names}); recomputing {len(units)} work unit(s)", stacklevel=3)
        store.reset_units(out, units)


def run(spec, out=None, *, cluster=None, resume: bool = False, overwrite: bool = False,
        overrides: list[str] | None = None, progress: bool = False):
    """Run a trial spec (path, YAML text, mapping) and return its results as an xarray Dataset.

    ``out``: Zarr store path (default ``results/<name>.zarr``). An existing store is never
    replaced unless ``overwrite`` (and then only an insilico trial store: anything else is
    refused); with ``resume`` only units not yet completed are run, after checking that no
    input changed (spec, seed, overrides, cohort file, model source; see `input_digests`) and
    recomputing units whose chunks are damaged. While running, ``out`` is locked against other
    writers (`insilico.store.writer_lock`). ``cluster``: a ``distributed.Client`` (used as is)
    or an `insilico.cluster.ClusterOptions` (default: a LocalCluster started here).
    """
    t_start = time.perf_counter()
    relieve_map_pressure()     # a long session's compiled programs must not exhaust the process's mappings
    spec_obj, base = load_trial_spec(spec, overrides)
    ctx = prepare(spec_obj, base)
    if resume and overwrite:
        raise SpecError("--resume", "use either --resume or --overwrite, not both")
    out = store.check_out(Path(out) if out is not None else Path("results") / f"{spec_obj.name}.zarr")
    check_resources(ctx, out)     # free disk for the store, before anything is written
    spec_json = ctx.spec_json()
    inputs = input_digests(spec_obj, base, ctx, spec_json, overrides)
    with store.writer_lock(out):
        fresh = True
        if out.exists():
            if resume:
                _check_resumable(out, inputs)
                fresh = False
            elif not overwrite:
                raise SpecError("--out", f"{out} already exists; use --overwrite to replace it or --resume to "
                                         "finish it")
            elif store.recognise(out) != "trial":
                store.replace_owned(out, "trial", overwrite=True)   # refuses, naming --out
        # connect first: a cluster that cannot be reached leaves no store behind
        with using(cluster) as c:
            if fresh:
                store.replace_owned(out, "trial", overwrite=overwrite)
                layout = _layout(ctx)
                attrs = {"title": f"insilico trial {spec_obj.name}", "trial": spec_obj.name, "spec": spec_json,
                         "spec_sha256": inputs["trial spec"], "inputs_sha256": json.dumps(inputs),
                         "seed": spec_obj.seed, "model": ctx.model.name,
                         "cohort_spec": ctx.cohort.model_dump_json(by_alias=True, exclude_none=True),
                         "design": spec_obj.design, "versions": json.dumps(package_versions(_PACKAGES)),
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                if ctx.fit is not None or ctx.covariance is not None:
                    attrs["replicate_population"] = json.dumps(replicate_population(ctx))
                out.parent.mkdir(parents=True, exist_ok=True)
                store.create_store(out, layout, attrs)
            else:
                _repair(out)
            done = store.done_units(out, tolerant=True)
            todo = [(r, a, k) for r in range(spec_obj.replicates.n) for a in range(ctx.n_arms)
                    for k in range(ctx.n_chunks) if not done[r, a, k]]
            unit_times = _execute(c, todo, spec_json, str(base), str(out), progress)
        from insilico.trials._analysis import analyse
        analysis = analyse(store.open_results(out, dask=False), spec_obj)   # read here, not through the cluster
        store.finalize(out, {"analysis": json.dumps(analysis), "timings": json.dumps({
            "wall_seconds": time.perf_counter() - t_start, "units_run": len(unit_times),
            "unit_seconds_total": float(sum(unit_times))})})
    return store.open_results(out)


def _execute(client, todo, spec_json, base, out, progress) -> list[float]:
    if not todo:
        return []
    from distributed import as_completed

    def submit(units):
        return [client.submit(run_unit, spec_json, base, out, r, a, k, pure=False) for (r, a, k) in units]

    times = []
    bar = None
    if progress:
        from rich.progress import Progress
        bar = Progress()
        bar.start()
        task = bar.add_task("simulating", total=len(todo))
    try:
        # The first unit runs alone: it traces the JAX kernels (or loads them from the persistent
        # cache) once; thread workers then share them instead of tracing them side by side.
        for batch in (submit(todo[:1]), submit(todo[1:])):
            for fut in as_completed(batch):
                times.append(fut.result()["seconds"])
                if bar:
                    bar.advance(task)
    finally:
        if bar:
            bar.stop()
    return times
