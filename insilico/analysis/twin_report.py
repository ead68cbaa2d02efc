"""A self-contained HTML report of one patient's digital twin (`insilico twin report`).

:func:`write_twin_report` writes one HTML file (inline CSS, the forecast figure embedded as a
base64 PNG, no scripts or external resources; `insilico.analysis.html`). Sections:

* twin: pseudonymous ID, version, prior (kind, SHA-256), covariates, fitted output, objective
  (NONMEM POSTHOC scale), status;
* history: one row per version (UTC time, rows added, levels, objective, status, MAP etas)
  with the digests that chain the versions (``rows_sha256``, ``history_sha256``);
* posterior: per eta the MAP, the Laplace SD and the 90 % interval of the individual
  parameter ``TV exp(eta)`` (``TV exp(MAP +- 1.645 SD)``); with inter-occasion variability the
  MAP and SD of each visited occasion's kappas; and the parameters at the MAP (with IOV: of
  the latest occasion, ``TV exp(eta + kappa)``, as `insilico.twins.show` reports them);
* forecast: median and central 90 % interval of a new measurement of the fitted output (the
  posterior predictive, residual error included) from time 0 to ``until`` h after the start of
  the next dose, under the current regimen and each given regimen, with the observed levels;
* recommendation (with ``target``) and risk (with ``risk``): `insilico.twins.recommend` /
  `insilico.twins.risk` results, with the rule stated.

Privacy: the page shows the pseudonymous ID, hours from the twin's time origin, covariates and
numbers only -- the same content as the twin store, no free text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from insilico.analysis import html
from insilico.errors import SpecError

__all__ = ["render_twin_report", "write_twin_report"]

Z90 = 1.6448536269514722


def _twin_section(state, info: dict) -> str:
    post = state.post
    pairs = [("patient (pseudonymous ID)", state.patient_id), ("version", state.version),
             ("prior", info.get("prior_kind", "")), ("prior SHA-256", info.get("prior_sha256", "")),
             ("structural model", state.tm.model.name), ("fitted output", state.tm.output),
             *((f"covariate {k}", v) for k, v in state.covariates.items()),
             ("levels", post.n_obs), ("objective (NONMEM POSTHOC scale)", post.objective),
             ("status", post.status_text), ("next dose due (h)", state.start)]
    return html.key_values(pairs)


def _history_section(hist: pd.DataFrame) -> str:
    note = ("<p class='note'>Every update appends a version; nothing is overwritten. <code>rows_sha256</code>: "
            "SHA-256 of the rows the version added; <code>history_sha256</code>: SHA-256 chaining the parent's "
            "history digest and these rows (see <code>insilico.store</code>, twin layout).</p>")
    return note + '<div style="overflow-x:auto">' + html.table(hist, cls="history") + "</div>"


def _kappa_table(state, summary: dict) -> str:
    """MAP and Laplace SD of the kappas of the visited occasions (empty without IOV)."""
    tm, post = state.tm, state.post
    if not tm.n_kappa or not summary.get("kappa"):
        return ""
    m, sd = len(tm.kappa_names), np.sqrt(np.diag(post.eta_cov))
    rows = [{"occasion": int(occ), "kappa": name, "parameter": par, "MAP": values[name],
             "SD": float(sd[tm.n_eta + (int(occ) - 1) * m + j])}
            for occ, values in summary["kappa"].items()
            for j, (name, par) in enumerate(zip(tm.kappa_names, tm.pop.iov_names))]
    return ("<h3>Inter-occasion variability: kappas of the visited occasions</h3>"
            + html.table(rows, cls="kappa"))


def _posterior_section(state, summary: dict) -> str:
    tm, post = state.tm, state.post
    typical = tm.parameters(state.covariates, np.zeros(tm.n_eta))
    sd = np.sqrt(np.diag(post.eta_cov)) if tm.n_eta else np.zeros(0)
    rows = []
    for i, (name, par) in enumerate(zip(tm.eta_names, tm.pop.bsv_names)):
        tv = typical[par]
        rows.append({"eta": name, "parameter": par, "MAP": float(post.eta[i]), "SD": float(sd[i]),
                     "typical": tv, "individual (MAP)": tv * np.exp(post.eta[i]),
                     "90% lower": tv * np.exp(post.eta[i] - Z90 * sd[i]),
                     "90% upper": tv * np.exp(post.eta[i] + Z90 * sd[i])})
    latest = summary.get("latest_occasion")
    params = tm.parameters(state.covariates, post.eta, latest)
    units = {p.name: p.units for p in tm.model.parameters}
    table = html.table(rows, cls="posterior") if rows else "<p>The prior has no random effects.</p>"
    heading = "Individual parameters at the MAP" + (f" (occasion {latest})" if latest is not None else "")
    return (table + _kappa_table(state, summary) + f"<h3>{heading}</h3>"
            + html.table([{"parameter": k, "value": v, "units": units.get(k, "")} for k, v in params.items()],
                         cls="parameters"))


def _levels(hist: pd.DataFrame) -> pd.DataFrame:
    obs = hist[(hist["EVID"] == 0) & np.isfinite(hist["DV"].to_numpy())]
    return obs[["TIME", "DV"]].reset_index(drop=True)


def _forecast_figure(ds, levels: pd.DataFrame, doses: pd.DataFrame, output: str, units: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8.5, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    t = ds["time"].values
    for i, reg in enumerate(ds["regimen"].values):
        colour = f"C{i}"
        ax.fill_between(t, ds["DV_lower"].values[i], ds["DV_upper"].values[i], color=colour, alpha=0.18, lw=0)
        ax.plot(t, ds["DV_median"].values[i], color=colour, lw=1.6, label=f"{reg}: median, 90 % interval")
    ax.plot(levels["TIME"], levels["DV"], "ko", ms=5, label="observed levels", zorder=5)
    for d in doses["TIME"]:
        ax.axvline(d, color="0.6", lw=0.6, ls=":")
    ax.axvline(float(ds.attrs["start"]), color="0.3", lw=1.0, ls="--", label="start of the regimen")
    ax.set_xlabel("time (h)")
    ax.set_ylabel(f"{output} ({units})" if units else output)
    ax.legend(fontsize=8, loc="best")
    return fig


def _recommendation_section(rec: dict) -> str:
    r = rec["recommendation"]
    pairs = [("target", rec["target"]), ("rule", rec["rule"]),
             ("recommended dose (mg)", r["dose"]), ("interval (h)", r["interval"]),
             ("infusion duration (h)", r["duration"]), ("P(attain)", r["probability"]),
             ("median metric", r["median"])]
    if rec.get("current"):
        c = rec["current"]
        pairs += [("current regimen", f"{c['dose']:g} mg q{c['interval']:g}h"), ("P(attain), current",
                                                                                 c["probability"])]
    best = rec["candidates"].sort_values("probability", ascending=False, kind="mergesort").head(10)
    return html.key_values(pairs) + "<h3>Best candidates</h3>" + html.table(best, cls="candidates")


def _risk_section(res: dict) -> str:
    side = f"< {res['below']:g}" if res.get("below") is not None else f"> {res['above']:g}"
    return html.key_values([("event", f"{res['output']} {side} within {res['within']:g} h of {res['start']:g} h"),
                            ("regimen", res["regimen"]), ("probability", res["probability"]),
                            ("Monte Carlo SE", res["mc_se"]), ("posterior draws", res["n_draws"])])


def render_twin_report(store, patient_id: str, *, version: int | None = None, regimens=None, until: float = 96.0,
                       target=None, doses=None, intervals=None, durations=(0.0,), risk: dict | None = None,
                       n_draws: int = 1000, seed: int = 0, dpi: int = 90) -> str:
    """The report page of twin ``patient_id`` (module docstring) as an HTML string.

    ``regimens``: candidate regimen texts forecast beside the current regimen; ``target`` with
    ``doses``/``intervals``/``durations``: a dose recommendation (`insilico.twins.recommend`);
    ``risk``: keyword arguments of `insilico.twins.risk` (``output``, ``below``/``above``,
    ``within``, ``regimen``)."""
    from insilico import twins
    from insilico.store import read_twin
    if target is not None and (doses is None or intervals is None):
        raise SpecError("--doses", "a target needs the admissible doses and intervals (--doses, --intervals)")
    state = twins.load_state(store, patient_id, version)
    summary = twins.show(store, state.patient_id, state.version)[state.patient_id]
    info = read_twin(store, state.patient_id)
    hist = twins.history(store, state.patient_id)
    if version is not None:
        hist = hist[hist["version"] <= state.version]
    regs = ["current", *([regimens] if isinstance(regimens, str) else (regimens or []))]
    times = np.linspace(0.0, state.start + until, 241)
    ds = twins.forecast(store, state.patient_id, regs, until=until, version=version, n_draws=n_draws, seed=seed,
                        times=times)
    levels = _levels(state.hist)
    units = next((o.units for o in state.tm.model.outputs if o.name == state.tm.output), "")
    given = state.hist[state.hist["EVID"] == 1]
    sections = [("twin", "Twin", _twin_section(state, info)),
                ("history", "History", _history_section(hist)),
                ("posterior", "Posterior", _posterior_section(state, summary)),
                ("forecast", "Forecast", html.figures(
                    [("forecast", f"{state.tm.output}: posterior predictive of a new measurement (median, 90 % "
                                  "interval) and the observed levels",
                      lambda: _forecast_figure(ds, levels, given, state.tm.output, units))], dpi)
                 + "<h3>Observed levels</h3>" + html.table(levels, cls="levels"))]
    if target is not None:
        rec = twins.recommend(store, state.patient_id, target, doses, intervals, durations, until=until,
                              version=version, n_draws=n_draws, seed=seed)
        sections.append(("recommendation", "Dose recommendation", _recommendation_section(rec)))
    if risk is not None:
        sections.append(("risk", "Early warning",
                         _risk_section(twins.risk(store, state.patient_id, version=version, n_draws=n_draws,
                                                  seed=seed, **risk))))
    intro = ("<p class='note'>Pseudonymous ID; times in h from the twin's time origin; concentrations in the "
             "prior's output units. The twin holds no names, dates of birth or clock dates.</p>")
    return html.page(f"twin report: {state.patient_id} (version {state.version})", sections, intro=intro)


def write_twin_report(store, patient_id: str, path: str | Path, *, overwrite: bool = False, **kw) -> Path:
    """Write the report of twin ``patient_id`` to ``path`` (.html); keywords as
    :func:`render_twin_report`. An existing file is replaced only with ``overwrite`` and only
    when it is an insilico report (`SpecError` naming ``--out`` otherwise)."""
    return html.write_page(path, lambda: render_twin_report(store, patient_id, **kw), overwrite=overwrite)
