"""A self-contained HTML report of a population fit (the fit store of `insilico fit`).

:func:`write_fit_report` writes one HTML file with inline CSS and every figure embedded as a
base64 PNG data URI (no scripts, no external resources), like the trial report
(`insilico.analysis.report`). Sections: fit (method, data size, OFV/AIC/BIC on NONMEM's scale,
convergence and covariance-step messages, condition number), estimates (estimate, SE, RSE %,
95 % interval, fixed) and the correlation of the estimates, random effects (ω², shrinkage),
subjects left out or without a converged EBE, NUTS diagnostics (R-hat, bulk/tail ESS,
divergences) for NUTS fits, goodness-of-fit figures (`insilico.analysis.fit_plots`), the VPC
and pcVPC when the data set is given (`insilico.estimation.vpc`; with BLQ records also the
fraction below the LLOQ per bin, table and panel under each VPC figure), provenance.

NUTS fits: ``estimate`` is the posterior mean and ``SE`` the posterior SD; the interval shown is
the central 95 % posterior interval of the stored draws. R-hat above `RHAT_LIMIT` is flagged.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from insilico import store
from insilico.analysis import html
from insilico.analysis.formatting import format_value
from insilico.errors import SpecError

__all__ = ["RHAT_LIMIT", "render_fit_report", "write_fit_report"]

RHAT_LIMIT = 1.01

_METHODS = {"focei": "FOCE-I (first-order conditional estimation with interaction)",
            "laplace": "Laplace (conditional estimation with interaction, exact Hessian)",
            "nuts": "NUTS (full Bayes, NumPyro)"}


def _attr_json(ds: xr.Dataset, key: str):
    try:
        return json.loads(ds.attrs.get(key) or "null")
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------

def _model_label(ref: dict) -> str | None:
    """The fitted model's source as `insilico.models.ModelRef.label` gives it."""
    from insilico.models import ModelRef
    try:
        return ModelRef.model_validate(ref).label
    except Exception:      # a population model written by another version: show what is there
        return ref.get("name") or ref.get("import") or ref.get("file")


def _is_nuts(ds: xr.Dataset) -> bool:
    return ds.attrs.get("method") == "nuts"


def _summary_section(ds: xr.Dataset) -> str:
    a = ds.attrs
    model = _attr_json(ds, "population_model") or {}
    converged = bool(int(a.get("converged", 0)))
    status = (f'<p class="{"ok" if converged else "bad"}">{"converged" if converged else "NOT converged"}: '
              f"{html.escape(a.get('message', ''))}</p>")
    facts = [("method", _METHODS.get(a.get("method"), a.get("method"))),
             ("structural model", _model_label(model.get("model") or {})),
             ("fitted output", a.get("outputs", model.get("output"))), ("subjects", a.get("n_subjects")),
             ("observations", a.get("n_observations"))]
    if a.get("blq"):
        facts.append(("BLQ records", a["blq"]))
    if not _is_nuts(ds):
        facts += [("OFV", a.get("ofv")), ("AIC", a.get("aic")), ("BIC", a.get("bic")),
                  ("OFV convention", a.get("ofv_convention"))]
    facts += [("covariance step", a.get("covariance_step")),
              ("condition number (correlation of estimates)", a.get("condition_number")),
              ("EPS shrinkage (%)", 100 * float(a.get("eps_shrinkage", np.nan))),
              ("iterations", a.get("iterations")), ("seconds", a.get("seconds"))]
    return status + html.key_values(facts)


def _estimates_section(ds: xr.Dataset) -> str:
    nuts = _is_nuts(ds)
    lo, hi = ds["ci_lower"].values, ds["ci_upper"].values
    if nuts and "posterior" in ds:
        draws = np.asarray(ds["posterior"].values, dtype=float).reshape(-1, ds.sizes["param"])
        lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    se = "posterior SD" if nuts else "SE"
    interval = "95 % posterior interval" if nuts else "95 % CI (Wald)"
    df = pd.DataFrame({"parameter": [str(p) for p in ds["param"].values], "kind": ds["kind"].values.astype(str),
                       "posterior mean" if nuts else "estimate": ds["estimate"].values, se: ds["se"].values,
                       "RSE %": ds["rse"].values, f"{interval} lower": lo, f"{interval} upper": hi,
                       "fixed": ds["fixed"].values.astype(bool)})
    out = [html.table(df, cls="estimates")]
    corr = np.asarray(ds["correlation"].values, dtype=float)
    free = ~ds["fixed"].values.astype(bool)
    if np.isfinite(corr[np.ix_(free, free)]).any():
        names = [str(p) for p, f in zip(ds["param"].values, free) if f]
        c = pd.DataFrame(corr[np.ix_(free, free)], columns=names)
        c.insert(0, "parameter", names)
        out.append("<details><summary>correlation of the estimates</summary>" + html.table(c, cls="correlation")
                   + "</details>")
    else:
        out.append("<p class='note'>no covariance of the estimates (covariance step not available)</p>")
    return "\n".join(out)


def _random_effects_section(ds: xr.Dataset) -> str:
    k = ds.sizes.get("eta", 0)
    if not k:
        return "<p class='note'>no between-subject variability in the model</p>"
    names = [str(p) for p in ds["param"].values]
    var = np.array([float(ds["estimate"].values[names.index(f"OMEGA({i + 1},{i + 1})")]) for i in range(k)])
    df = pd.DataFrame({"η": ds["eta"].values.astype(str), "parameter": ds["eta_parameter"].values.astype(str),
                       "ω²": var, "CV % (√(exp(ω²) − 1))": 100 * np.sqrt(np.expm1(var)),
                       "shrinkage %": 100 * np.asarray(ds["eta_shrinkage"].values, dtype=float)})
    return html.table(df, cls="random-effects") + ("<p class='note'>shrinkage: 1 − SD(EBE)/ω (NONMEM's SD-based "
                                          "definition); EPS shrinkage in the fit section</p>")


def _subjects_section(ds: xr.Dataset) -> str:
    excluded = _attr_json(ds, "excluded") or {}
    out = []
    if excluded:
        out.append(f"<p><b>{len(excluded)}</b> subject(s) left out of the fit:</p>"
                   + html.table(pd.DataFrame({"ID": list(excluded), "reason": list(excluded.values())}),
                                cls="excluded"))
    else:
        out.append("<p>No subject was left out of the fit.</p>")
    if "eta_status" in ds:
        st = np.asarray(ds["eta_status"].values)
        if (st != 0).any():
            meaning = {1: "EBE not converged", 2: "solver failed"}
            bad = np.flatnonzero(st != 0)
            out.append(f"<p><b>{bad.size}</b> subject(s) without a converged EBE at the final estimates:</p>"
                       + html.table(pd.DataFrame({"ID": ds["subject"].values[bad].astype(str),
                                                  "status": [meaning.get(int(s), str(s)) for s in st[bad]]}),
                                    cls="eta-status"))
    return "\n".join(out)


def _nuts_section(ds: xr.Dataset) -> str:
    a = ds.attrs
    div = int(a.get("divergences", 0))
    rhat = np.asarray(ds["rhat"].values, dtype=float)
    worst = np.nanmax(rhat) if np.isfinite(rhat).any() else np.nan
    ok = bool(np.isfinite(worst) and worst <= RHAT_LIMIT)
    facts = [("chains", a.get("chains")), ("warm-up per chain", a.get("warmup")),
             ("draws per chain", a.get("samples")), ("divergent transitions", div),
             ("largest R-hat", worst)]
    head = (f'<p class="{"ok" if ok else "bad"}">largest R-hat {format_value(worst)} '
            f'({"≤" if ok else "above"} {RHAT_LIMIT})</p>'
            f'<p class="{"ok" if div == 0 else "bad"}">{div} divergent transition(s)</p>')
    df = pd.DataFrame({"parameter": [str(p) for p in ds["param"].values], "R-hat": rhat,
                       "bulk ESS": ds["ess_bulk"].values, "tail ESS": ds["ess_tail"].values,
                       f"R-hat ≤ {RHAT_LIMIT}": [bool(r <= RHAT_LIMIT) if np.isfinite(r) else None for r in rhat]})
    return head + html.key_values(facts) + html.table(df, cls="nuts")


def _vpc_section(v: xr.Dataset) -> str:
    q = v["percentile"].values
    rows = []
    for b in range(v.sizes["bin"]):
        for j, p in enumerate(q):
            rows.append({"bin (h)": f"{v['bin_lower'].values[b]:g}–{v['bin_upper'].values[b]:g}",
                         "time (h)": v["bin_time"].values[b],
                         "n obs": int(v["n_obs"].values[b]), "percentile": f"{p:g}th",
                         "observed": _censored(v, "censored", b, j, v["observed"].values[b, j]),
                         "simulated median": v["sim_median"].values[b, j],
                         "CI lower": v["sim_lower"].values[b, j], "CI upper": v["sim_upper"].values[b, j],
                         "inside": bool(v["inside"].values[b, j]),
                         "pc observed": _censored(v, "pc_censored", b, j, v["pc_observed"].values[b, j]),
                         "pc inside": bool(v["pc_inside"].values[b, j])})
    inside, pc = v["inside"].values, v["pc_inside"].values
    seen = ~v["censored"].values if "censored" in v else np.ones(inside.shape, bool)
    pc_seen = ~v["pc_censored"].values if "pc_censored" in v else np.ones(pc.shape, bool)
    below = "" if seen.all() else f"; {int((~seen).sum())} cells below the LLOQ (censored, not counted)"
    ci = 100 * v.attrs["ci"]
    head = (f"<p>{v.attrs['n_sim']} simulations of the fitted model on the data's design (seed "
            f"{v.attrs['seed']}); binning: {html.escape(v.attrs['binning'])}. Observed percentile inside the simulated "
            f"{ci:g} % interval in <b>{int(inside[seen].sum())} of {int(seen.sum())}</b> observable bin × percentile "
            f"cells (prediction-corrected: {int(pc[pc_seen].sum())} of {int(pc_seen.sum())}){below}. "
            f"<span class='note'>{html.escape(v.attrs['method'])}; lower bound {v.attrs['lower_bound']:g}"
            f"{'; ' + str(v.attrs['n_outside']) + ' observations outside the bins' if v.attrs['n_outside'] else ''}"
            "</span></p>")
    return head + html.table(pd.DataFrame(rows), cls="vpc") + _blq_section(v)


def _censored(v: xr.Dataset, var: str, b: int, j: int, value):
    """An observed percentile, or "< LLOQ" where it is censored (below the limit of quantification)."""
    return "< LLOQ" if var in v and bool(v[var].values[b, j]) else value


def _blq_section(v: xr.Dataset) -> str:
    """The BLQ fraction per bin (observed, simulated median and interval) when the data have BLQ
    records; nothing otherwise."""
    if not int(v.attrs.get("n_blq", 0)) or "blq_observed" not in v:
        return ""
    n_rec = v["n_obs"].values + v["n_blq"].values
    df = pd.DataFrame({"bin (h)": [f"{lo:g}–{hi:g}" for lo, hi in zip(v["bin_lower"].values, v["bin_upper"].values)],
                       "time (h)": v["bin_time"].values, "n records": n_rec.astype(int),
                       "n BLQ": v["n_blq"].values.astype(int), "observed fraction BLQ": v["blq_observed"].values,
                       "simulated median": v["blq_sim_median"].values, "CI lower": v["blq_sim_lower"].values,
                       "CI upper": v["blq_sim_upper"].values, "inside": v["blq_inside"].values.astype(bool)})
    inside = v["blq_inside"].values
    lloq = float(v.attrs.get("lloq", np.nan))
    head = (f"<h3>Fraction below the LLOQ</h3><p>{int(v.attrs['n_blq'])} BLQ records, counted below their LLOQ in "
            "the percentiles above (a percentile that falls below it is censored); observed fraction BLQ inside "
            f"the simulated {100 * v.attrs['ci']:g} % interval in "
            f"<b>{int(inside.sum())} of {inside.size}</b> bins. <span class='note'>Each simulated value is compared "
            "with its record's own LLOQ" + (f" ({lloq:g} {html.escape(v.attrs.get('units', ''))})"
                                            if np.isfinite(lloq) else "") + "; BLQ records are binned with the "
            "quantified ones (Bergstrand &amp; Karlsson 2009, AAPS J 11:371; PsN vpc -lloq; vpc_cens of the vpc R "
            "package)</span></p>")
    return head + html.table(df, cls="blq-fraction")


def _figures_section(ds: xr.Dataset, v: xr.Dataset | None, dpi: int) -> str:
    from insilico.analysis.fit_plots import fit_figures
    return html.figures(fit_figures(ds, v), dpi)


def _provenance(ds: xr.Dataset) -> str:
    out = [html.key_values([("data SHA-256", ds.attrs.get("data_sha256") or "– (data not given as a file)")])]
    versions = _attr_json(ds, "versions")
    if versions:
        out.append("<h3>Package versions</h3>" + html.key_values(list(versions.items())))
    for key, title in (("population_model", "fitted population model (JSON)"), ("spec", "population model as "
                                                                                          "given (JSON)")):
        doc = _attr_json(ds, key)
        if doc:
            out.append(f"<details><summary>{title}</summary>"
                       f"<pre>{html.escape(json.dumps(doc, indent=2))}</pre></details>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def render_fit_report(ds: xr.Dataset, data=None, *, plots: bool = True, dpi: int = 90, n_sim: int = 200,
                      seed: int = 0, bins=None) -> str:
    """The fit report as one HTML string (see :func:`write_fit_report`)."""
    if ds.attrs.get(store.KIND_ATTR, "fit") != "fit" or "population_model" not in ds.attrs:
        raise SpecError("fit", "not a fit Dataset (expected the result of insilico.estimation.fit / open_fit)")
    v = None
    if data is not None:
        from insilico.estimation import vpc
        v = vpc(ds, data, n_sim=n_sim, seed=seed, bins=bins)
    method = ds.attrs.get("method", "fit")
    sections = [("fit", "Fit", _summary_section(ds)), ("estimates", "Estimates", _estimates_section(ds)),
                ("random-effects", "Random effects", _random_effects_section(ds)),
                ("subjects", "Subjects", _subjects_section(ds))]
    if _is_nuts(ds) and "rhat" in ds:
        sections.append(("nuts", "NUTS diagnostics", _nuts_section(ds)))
    if v is not None:
        sections.append(("vpc", "Visual predictive check", _vpc_section(v)))
    if plots:
        sections.append(("figures", "Figures", _figures_section(ds, v, dpi)))
    sections.append(("provenance", "Provenance", _provenance(ds)))
    no_vpc = "" if v is not None else ("<p class='note'>no VPC: give the data set (<code>--data DATA.csv</code>) "
                                       "to simulate the fitted model on its design</p>")
    return html.page(f"fit report: {method}", sections, intro=no_vpc)


def write_fit_report(ds: xr.Dataset, path: str | Path, data=None, *, overwrite: bool = False, plots: bool = True,
                     dpi: int = 90, n_sim: int = 200, seed: int = 0, bins=None) -> Path:
    """Write the self-contained HTML report of the fit ``ds`` to ``path``.

    ``data`` (the fitted NONMEM data set: CSV path or DataFrame) adds the VPC and pcVPC
    (``n_sim`` simulations, ``seed``, ``bins``: `insilico.estimation.vpc`). An existing file
    is replaced only with ``overwrite`` and only when it is an insilico report (`SpecError`
    naming ``--out`` otherwise; the CLI exits 2). ``plots=False``: tables only."""
    return html.write_page(path, lambda: render_fit_report(ds, data, plots=plots, dpi=dpi, n_sim=n_sim, seed=seed,
                                                           bins=bins), overwrite=overwrite)
