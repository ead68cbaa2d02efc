"""A self-contained HTML report of a results store.

:func:`write_report` writes one HTML file with inline CSS and every figure embedded as a base64
PNG data URI: no scripts, no external resources, so it can be mailed, archived or opened offline.
Sections: trial (spec summary, arms, endpoints), cohort validation, flagged subjects (those without
results and why), endpoint summaries and comparisons, probability of success / target attainment /
power, figures, provenance.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import xarray as xr

from insilico import store
from insilico.analysis import html

__all__ = ["render_report", "write_report"]

_SUMMARY_COLS = ["arm", "n", "n_missing", "mean", "sd", "median", "q05", "q95", "geo_mean", "geo_cv_pct",
                 "responders", "proportion", "ci_lower", "ci_upper"]
_COMPARISON_COLS = ["arm", "reference", "measure", "method", "n", "n_ref", "estimate", "ci_lower", "ci_upper",
                    "p_value"]
_POS_COLS = ["arm", "estimate", "successes", "n_replicates", "n_undefined", "ci_lower", "ci_upper"]
_PTA_COLS = ["group", "n", "n_attained", "pta", "ci_lower", "ci_upper"]
_POWER_COLS = ["arm", "reference", "n", "n_resamples", "power", "mc_se", "ci_lower", "ci_upper"]
_VALIDATION_COLS = ["variable", "statistic", "condition", "n", "target", "achieved", "se", "z", "ok"]


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------

def _per_units(ds: xr.Dataset, per: str | None) -> str:
    """Units of a dose amount: ``mg``, or ``mg/<units of the covariate>`` for a dose ``per`` it
    (``{amt: 2, per: WT}`` is 2 mg/kg); compound units in parentheses (``mg/(mL/min)``)."""
    if per is None:
        return "mg"
    units = ds[per].attrs.get("units") if per in ds.variables else None
    if not units or units == "1":
        return f"mg per unit of {per}"
    return f"mg/({units})" if "/" in units or "*" in units.replace("**", "") else f"mg/{units}"


def _regimen_text(regimen, ds: xr.Dataset) -> str:
    """A regimen in words: ``2 mg/kg every 24 h × 3``, ``100 mg over 1 h``, …"""
    if not regimen:
        return "no drug"
    parts = []
    for d in regimen:
        mg = _per_units(ds, d.per)
        s = f"{d.amt:g} {mg}"
        if d.rate:
            s += f" at {d.rate:g} {mg} per h" if " per " in mg else f" at {d.rate:g} {mg}/h"
        elif d.duration:
            s += f" over {d.duration:g} h"
        n = d.n if d.n is not None else d.addl + 1
        if d.ii and n > 1:
            s += f" every {d.ii:g} h × {n}"
        if d.time:
            s += f" from t = {d.time:g} h"
        if d.cmt is not None:
            s += f" into {d.cmt}"
        if d.ss:
            s += " (steady state)"
        parts.append(s)
    return "; ".join(parts)


def _pct(p: float) -> str:
    return f"{100 * p:.3g} %"


def _dropout_text(dropout) -> str:
    """Dropout in words; interval probabilities are conditional on reaching the interval, and the
    cumulative dropout by each interval's end is given too."""
    from insilico.trials import cumulative_probabilities
    if dropout is None:
        return "none"
    if dropout.hazard is not None:
        if dropout.hazard == 0:
            return "none (hazard 0)"
        return (f"constant hazard {dropout.hazard:g} per h (exponential dropout times, median "
                f"{math.log(2) / dropout.hazard:.4g} h)")
    steps = dropout.interval_probabilities()
    if not steps:
        return "none"
    cumulative = cumulative_probabilities([q for _, q in steps])
    parts, start = [], 0.0
    for (end, q), c in zip(steps, cumulative):
        parts.append(f"{start:g}–{end:g} h: {_pct(q)} of those still in the trial (cumulative {_pct(c)})")
        start = end
    given = "cumulative targets" if dropout.cumulative is not None else "conditional interval probabilities"
    return "; ".join(parts) + f"; none after {start:g} h (specified as {given})"


def _adherence_text(adherence) -> str:
    if adherence is None:
        return "full"
    s = f"each dose taken with probability {adherence.probability:g}"
    if adherence.missed_run:
        run = adherence.missed_run
        s += (f"; a run of {int(run['length'])} missed doses starts at a dose with probability "
              f"{run['start_probability']:g}")
    return s


def _trial_spec(ds: xr.Dataset):
    """The stored trial spec as a `insilico.trials.TrialSpec` (None when the store has none)."""
    spec = ds.insilico.spec
    if spec is None:
        return None
    from insilico.trials import TrialSpec
    return TrialSpec.model_validate(spec)


def _trial_section(ds: xr.Dataset, spec) -> str:
    if spec is None:
        return "<p class='note'>no trial spec stored</p>"
    # mean over replicates of the subjects simulated / simulated with status 0, per arm
    n_arm = store.simulated_pairs(ds).sum("subject").mean("replicate").values
    ok_arm = store.simulated_pairs(ds, ok_only=True).sum("subject").mean("replicate").values
    model = spec.model.label
    if spec.model.parameters:
        model += " (fixed: " + ", ".join(f"{k}={v:g}" for k, v in spec.model.parameters.items()) + ")"
    cohort = spec.cohort if isinstance(spec.cohort, str) else spec.cohort.get("name", "inline")
    obs = spec.observations
    times = (obs.times if isinstance(obs.times, list)
             else f"{obs.times.start:g} to {obs.times.stop:g} every {obs.times.step:g}")
    rep = f"{spec.replicates.n}"
    if spec.replicates.uncertainty:
        rep += " (uncertainty, log-SD: " + ", ".join(f"{k} {v:g}" for k, v in spec.replicates.uncertainty.items()) + ")"
    facts = [("name", spec.name), ("description", spec.description or "–"), ("model", model),
             ("cohort", cohort), ("design", spec.design), ("N (subjects per replicate)", spec.n),
             ("replicates", rep), ("seed", spec.seed),
             ("sampling times (h)", ", ".join(f"{t:g}" for t in times) if isinstance(times, list) else times),
             ("samples per subject", obs.per_subject or "all"),
             ("dropout", _dropout_text(spec.dropout)), ("adherence", _adherence_text(spec.adherence))]
    arms = [{"arm": a.name, "ratio": a.ratio, "regimen": _regimen_text(a.regimen, ds),
             "N simulated": float(n_arm[i]) if i < len(n_arm) else None,
             "N status ok": float(ok_arm[i]) if i < len(ok_arm) else None}
            for i, a in enumerate(spec.arms)]
    eps = []
    for e in spec.endpoints:
        detail = []
        if e.window:
            detail.append(f"window {e.window[0]:g}–{e.window[1]:g} h")
        if e.at is not None:
            detail.append(f"at {e.at:g} h")
        if e.dose is not None:
            detail.append(f"before dose {e.dose + 1} (1-based; dose: {e.dose} in the spec is 0-based)")
        if e.of:
            detail.append(f"of {e.of}")
        if e.threshold is not None:
            detail.append(f"{e.direction} {e.threshold:g}")
        if e.low is not None or e.high is not None:
            detail.append(f"in [{e.low}, {e.high}]")
        units = ds[e.name].attrs.get("units", "") if e.name in ds else ""
        eps.append({"endpoint": e.name, "type": e.type, "output": e.output if e.type != "responder" else "–",
                    "definition": ", ".join(detail) or "–", "units": units or "–"})
    out = [html.key_values(facts), "<h3>Arms</h3>", html.table(arms, cls="arms")]
    if eps:
        out += ["<h3>Endpoints</h3>", html.table(eps, cls="endpoints")]
    return "\n".join(out)


def _cohort_section(ds: xr.Dataset) -> str:
    cs = ds.insilico.cohort_spec
    if not cs:
        return "<p class='note'>no cohort spec stored</p>"
    try:
        from insilico.cohorts import compile_spec, load_cohort_spec, population_from_estimates, validation_report
        spec = load_cohort_spec(cs)
        c = compile_spec(spec)
        drawn = json.loads(ds.attrs.get("replicate_population", "null") or "null")
        population = None   # a fit cohort with uncertainty: replicate 0 was drawn with its own values
        if drawn and drawn.get("source") != "estimate":
            population = population_from_estimates(c.population, dict(zip(drawn["names"], drawn["values"][0])))
        names = list(c.order) + [f"eta_{p}" for p in c.bsv_names] + [f"kappa_{p}" for p in c.iov_sd]
        cohort = ds[[n for n in names if n in ds]]
        if "replicate" in cohort.dims:
            cohort = cohort.isel(replicate=0)
        cohort = cohort.load()
        # trial cohorts are drawn with the cohort's inclusion criteria applied
        cohort.attrs = {"criteria_applied": int(bool(c.has_criteria))}
        df = validation_report(cohort, spec, population=population)
    except Exception as e:
        return f"<p class='note'>cohort validation unavailable: {html.escape(type(e).__name__)}: {html.escape(e)}</p>"
    n_bad = int(df["ok"].eq(False).sum())      # ok is True/False, or missing when not applicable
    n_ok = int(df["ok"].eq(True).sum())
    note = (f"<p>Cohort <b>{html.escape(spec.name)}</b> (replicate 0, {cohort.sizes.get('subject', 0)} subjects): "
            f"{n_ok} checks within tolerance, {n_bad} outside (|z| &gt; 5), "
            f"{int(df['ok'].isna().sum())} not applicable. "
            f"<span class='note'>{html.escape(df.attrs.get('note', ''))}</span></p>")
    g = df.assign(abs_z=df["z"].abs()).groupby("variable", sort=False)
    compact = pd.DataFrame({"checks": g.size(), "within tolerance": g["ok"].apply(lambda s: int(s.eq(True).sum())),
                            "outside": g["ok"].apply(lambda s: int(s.eq(False).sum())),
                            "not applicable": g["ok"].apply(lambda s: int(s.isna().sum())),
                            "max |z|": g["abs_z"].max()}).reset_index()
    compact["variable"] = compact["variable"].astype(object)
    return (note + html.table(compact, cls="validation-summary")
            + "<details><summary>all validation checks</summary>"
            + html.table(df, _VALIDATION_COLS, cls="validation") + "</details>")


LISTED = 200   # flagged subject–arm pairs listed one by one in the report


def _flagged_section(ds: xr.Dataset) -> str:
    """How many simulated subject–arm pairs have no results (status > 0), by arm and reason, and
    the first `LISTED` of them with the values that explain why (`insilico.store.flagged_subjects`)."""
    flagged = store.flagged_subjects(ds)
    total = int(store.simulated_pairs(ds).sum())
    if flagged.empty:
        return f"<p>All {total} simulated subject–arm pairs have results (status ok).</p>"
    out = [f"<p><b>{len(flagged)}</b> of {total} simulated subject–arm pairs have no results (status &gt; 0): "
           "their endpoints are missing (counted in <code>n_missing</code>) and they were not simulated or "
           "the solver failed. The trial went on without them.</p>",
           html.table(store.flagged_counts(flagged), ["arm", "status", "reason", "n"], cls="flagged-counts")]
    shown = flagged.head(LISTED)
    more = (f" (first {LISTED} of {len(flagged)}; all: <code>ds.insilico.flagged</code>)"
            if len(flagged) > LISTED else "")
    out.append(f"<h3>Flagged subjects{more}</h3>" + html.table(shown, cls="flagged"))
    return "\n".join(out)


def _analysis_sections(tables: dict) -> list[tuple[str, str, str]]:
    """Sections of the analysis tables (`ds.insilico.analysis`)."""
    secs = []
    body = [f"<h3>{html.escape(ep)}</h3>" + html.table(df, _SUMMARY_COLS, cls="summary")
            for ep, df in tables.get("summary", {}).items()]
    if body:
        secs.append(("summary", "Endpoint summary by arm", "\n".join(body)))
    body = []
    for ep, df in tables.get("comparisons", {}).items():
        note = ""
        if "replicate" in df and df["replicate"].nunique() > 1:
            df = df[df["replicate"] == 0]
            note = " <span class='note'>(replicate 0)</span>"
        body.append(f"<h3>{html.escape(ep)}{note}</h3>" + html.table(df, _COMPARISON_COLS, cls="comparisons"))
    if body:
        secs.append(("comparisons", "Comparisons with the reference arm", "\n".join(body)))
    for key, title, cols in (("probability_of_success", "Probability of success", _POS_COLS),
                             ("pta", "Probability of target attainment", _PTA_COLS),
                             ("power", "Power vs N per arm", _POWER_COLS)):
        if key in tables:
            secs.append((key.replace("_", "-"), title, html.table(tables[key], cols, cls=key)))
    return secs


def _provenance(ds: xr.Dataset) -> str:
    a = ds.attrs
    facts = [("seed", a.get("seed")), ("spec sha256", a.get("spec_sha256")), ("created", a.get("created"))]
    out = [html.key_values([(k, v) for k, v in facts if v is not None])]
    for key, title in (("versions", "Package versions"), ("timings", "Timings")):
        d = store.stored_json(ds, key)
        if d:
            out.append(f"<h3>{title}</h3>" + html.key_values([(k, d[k]) for k in d]))
    for doc, title in ((ds.insilico.spec, "resolved trial spec (JSON)"),
                       (ds.insilico.cohort_spec, "cohort spec (JSON)")):
        if doc:
            out.append(f"<details><summary>{title}</summary>"
                       f"<pre>{html.escape(json.dumps(doc, indent=2))}</pre></details>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def render_report(ds: xr.Dataset, *, plots: bool = True, dpi: int = 90, n_individual: int = 20,
                  seed: int = 0) -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    from insilico.analysis import plots as P
    ds = P._loaded(ds)
    spec = _trial_spec(ds)
    trial = ds.attrs.get("trial") or (spec.name if spec else "trial")
    sections = [("trial", "Trial", _trial_section(ds, spec)),
                ("cohort", "Cohort validation", _cohort_section(ds)),
                ("flagged", "Flagged subjects", _flagged_section(ds))]
    sections += _analysis_sections(ds.insilico.analysis)
    if plots:
        sections.append(("figures", "Figures", html.figures(P.figures(ds, n_individual=n_individual, seed=seed),
                                                           dpi)))
    sections.append(("provenance", "Provenance", _provenance(ds)))
    desc = f"<p>{html.escape(spec.description)}</p>" if spec is not None and spec.description else ""
    return html.page(f"trial report: {trial}", sections, intro=desc)


def write_report(ds: xr.Dataset, path: str | Path, *, overwrite: bool = False, plots: bool = True,
                 dpi: int = 90, n_individual: int = 20, seed: int = 0) -> Path:
    """Write the self-contained HTML report of results store ``ds`` to ``path``.

    Refuses to replace an existing file unless ``overwrite``, and even then anything but an
    insilico report (recognised by its ``<meta name="generator" content="insilico …">``):
    ``SpecError`` naming ``--out`` (the CLI exits 2), nothing touched.
    ``dpi``, ``n_individual`` and ``seed`` are passed to the figures; ``plots=False`` leaves
    them out (tables only).
    """
    return html.write_page(path, lambda: render_report(ds, plots=plots, dpi=dpi, n_individual=n_individual,
                                                    seed=seed), overwrite=overwrite)
