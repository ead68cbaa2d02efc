"""Posterior predictions of a twin: forecasts under candidate regimens, dose recommendation and
early warning.

All three draw ``eta`` from the twin's posterior (Laplace: ``N(MAP, eta_cov)``; or the full
posterior, `insilico.twins.sample_posterior`), solve the model for every draw and candidate
regimen in one jitted, vmapped kernel, and summarise over draws. A candidate regimen replaces
the history's doses from its ``start`` on (doses before ``start`` are kept).

Default ``start``: when the next dose is due -- the last dose's time plus the current interval
(the last dose's II, else the gap between the last two doses) -- but not before the last record;
with no interval known, the time of the last record. The "current regimen" continues the last
dose (amount, infusion duration) at the current interval.

* Forecast: median and central ``level`` interval (default 90 %) of every model output
  (credible interval of the true value) and, for the prior's fitted output, of a new
  measurement (``DV_*``: the same plus residual error, the posterior predictive). A prior with
  several observed outputs (``outputs``, DVID) also gives ``DV_<output>_*`` for each other
  observed output, its draws with that output's own residual error (``residual_errors``).
* Recommendation (expected utility with a 0/1 utility): each candidate (amount, interval,
  infusion duration) is given every interval from ``start`` until the horizon ``until`` hours
  later; its metric is evaluated on the last full dosing interval in the horizon, ``[t0, t0 +
  tau]`` with ``t0 = start + (floor(until / tau) - 1) tau``, of the target's output (default the
  primary; ``"trough of ANC in [1.5, 4]"``): trough = the value just before ``t0 + tau``; peak =
  the maximum over that interval (97-point grid, the end of the infusion included); AUC24 = 24 /
  tau x the trapezoidal AUC over it; t>mic = the fraction of the interval with the output above
  the MIC, crossings linearly interpolated on that grid (`insilico.twins.Target.evaluate`).
  P(attain) = the fraction of posterior draws whose metric is in the window (the true value: no
  residual error).
  The recommendation maximises P(attain); among candidates within ``tie`` (default 0.01) of the
  best, the one whose median metric is closest to the window's centre, then the smallest daily
  dose.
* Risk: P(min over [start, start + within] of the output < below) (or max > above), on a
  ``points`` grid (default 241), under the current regimen or a candidate.

Covariates: every solve uses the covariates in force at each time (the history's schedule,
`insilico.twins._data`); after the last row the last values carry forward, unless the state
holds future covariates (``TwinState.future``), in force from ``start`` on.

Inter-occasion variability (a prior with ``iov``; Abrantes et al. 2019, Br J Clin Pharmacol
85:1326): the history keeps its occasions and their kappas (drawn with the etas from the
posterior), and the candidate regimen from ``start`` on is a NEW occasion, K + 1: its kappa is
unknown to the history, so each posterior draw takes its own kappa from the prior N(0, Omega_IOV)
(`insilico.twins.TwinModel.with_new_occasion`), which widens the intervals
by the IOV; the ``_map`` line takes the MAP etas and kappas with kappa = 0 for the new occasion
(the typical occasion). Rows of the history after ``start`` take the new occasion too.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from insilico.batching import bucket_size
from insilico.dosing import Dose, Regimen, dose_table, event_slots
from insilico.errors import SpecError
from insilico.population import residual_sd
from insilico.twins._data import schedule_arrays
from insilico.twins._posterior import sample_posterior

__all__ = ["current_regimen", "forecast_state", "next_start", "recommend_state", "risk_state"]

EPS_T = 1e-7        # h after a dose time: the post-dose value (an observation at a dose time is pre-dose)
GRID = 97           # points per dosing interval for recommendations


def _history_doses(hist: pd.DataFrame) -> list[Dose]:
    doses = []
    for r in hist[hist["EVID"] == 1].itertuples():
        cmt = int(r.CMT) if r.CMT > 0 else None
        doses.append(Dose(amt=float(r.AMT), time=float(r.TIME), cmt=cmt, rate=float(r.RATE), ii=float(r.II),
                          addl=int(r.ADDL), ss=int(r.SS)))
    return Regimen(tuple(doses)).expanded()


def current_regimen(hist: pd.DataFrame):
    """(amount mg, interval h, infusion duration h) of the current regimen, or None (module docstring)."""
    doses = _history_doses(hist)
    if not doses:
        return None
    last = doses[-1]
    raw = hist[hist["EVID"] == 1]
    ii = float(raw["II"].to_numpy()[-1]) if len(raw) else 0.0
    if ii <= 0 and len(doses) >= 2:
        ii = last.time - doses[-2].time
    if ii <= 0:
        return None
    dur = last.amt / last.rate if last.rate > 0 else 0.0
    return last.amt, ii, dur


def next_start(hist: pd.DataFrame) -> float:
    """Default start of a candidate regimen (module docstring)."""
    last_record = float(hist["TIME"].max()) if len(hist) else 0.0
    doses = _history_doses(hist)
    cur = current_regimen(hist)
    if doses and cur is not None:
        return max(doses[-1].time + cur[1], last_record)
    return last_record


def _candidate(hist, start, amount, interval, duration, horizon) -> Regimen:
    kept = [d for d in _history_doses(hist) if d.time < start - 1e-9]
    if interval is None:
        times = np.zeros(1)
    else:
        times = interval * np.arange(max(1, math.ceil(horizon / interval - 1e-9)) + 1)
        times = times[times < horizon + 1e-9]
    new = [Dose(amt=amount, time=start + t, duration=duration if duration > 0 else None) for t in times]
    return Regimen(tuple(kept + new))


@functools.lru_cache(maxsize=64)
def _predict_kernel(tm, has_infusion: bool, has_ss: int):
    """jit(nat, cov, dose (C, E), t (C, T), etas (D, k), change) -> ({output: (C, D, T)}, status (C, D));
    ``change``: None (constant covariates) or {"change_t": {"locf" | "nocb": change times}} and
    with IOV "occ" (``cov`` values per interval, `insilico.estimation.Problem.predict_outputs`);
    ``etas`` with IOV: the random-effect vector of the K + 1 occasions (module docstring)."""
    problem = tm.problem_for(has_infusion, has_ss, future=True)

    def run(nat, cov, dose, t, etas, change):
        pop = problem.params.population(nat)
        extra = change or {}

        def one(d, tt, e):
            return problem.predict_outputs(pop, {"cov": cov, "dose": d, "t": tt, **extra}, e)

        per_draw = jax.vmap(one, in_axes=(None, None, 0))
        return jax.vmap(lambda d, tt: per_draw(d, tt, etas))(dose, t)

    return jax.jit(run)


def _eta_draws(state, n: int, seed: int, posterior: str) -> np.ndarray:
    """(n, k) posterior draws of the random effects; with IOV the new occasion's kappa appended,
    drawn from its prior (module docstring)."""
    return state.tm.with_new_occasion(_posterior_draws(state, n, seed, posterior), seed)


def _posterior_draws(state, n: int, seed: int, posterior: str) -> np.ndarray:
    tm, post = state.tm, state.post
    if posterior == "full":
        return sample_posterior(tm, state.subject(), state.flags(), post, n=n, seed=seed)["draws"]
    if posterior != "laplace":
        raise SpecError("posterior", f"{posterior!r}: use laplace or full")
    if not np.all(np.isfinite(post.eta_cov)):
        raise SpecError("posterior", f"{state.patient_id}: the Laplace covariance is not available "
                                     f"({post.status_text}); update the twin or use posterior='full'")
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (n, tm.n_random)))
    return post.eta + z @ np.linalg.cholesky(post.eta_cov).T if tm.n_random else z


def _solve(state, regimens: list[Regimen], times: np.ndarray, etas: np.ndarray) -> tuple[dict, np.ndarray]:
    """Outputs {name: (C, D, T)} for C regimens, D eta draws, times (C, T); status (C, D)."""
    tm = state.tm
    c = len(regimens)
    table = dose_table(regimens, tm.model, c)
    table = table.padded(bucket_size(table.n_events, least=8))
    c_pad = bucket_size(c, least=1)
    idx = np.minimum(np.arange(c_pad), c - 1)
    dose = tuple(jnp.asarray(np.asarray(getattr(table, f))[idx]) for f in ("time", "amt", "rate", "cmt", "ss", "ii"))
    pieces = schedule_arrays(tm, [state.schedule()])
    if pieces is not None:
        cov = {k: jnp.asarray(v[0]) for k, v in pieces.pop("cov").items()}
        change = jax.tree.map(lambda a: jnp.asarray(a[0]), pieces)
    else:
        cov = {k: jnp.asarray(v[0]) for k, v in tm.covariate_arrays([state.base]).items()}
        change = None
    kernel = _predict_kernel(tm, bool(np.any(table.rate != 0)), event_slots(table.ss))
    outs, status = kernel(tm.nat, cov, dose, jnp.asarray(times[idx]), jnp.asarray(etas), change)
    return {k: np.asarray(v)[:c] for k, v in outs.items()}, np.asarray(status)[:c]


def _check_status(state, status):
    bad = status != 0
    if bad.any():
        import warnings
        warnings.warn(f"{state.patient_id}: the solver failed for {int(bad.sum())} of {bad.size} posterior draws; "
                      "they are left out of the summaries", stacklevel=3)


def _residual_draws(tm, f: np.ndarray, seed: int, output: str | None = None) -> np.ndarray:
    """New measurements of ``output`` (default the primary) at predictions ``f``: its residual
    error model, standard normal draws from stream 1 + the output's index in ``tm.outputs``."""
    j = tm.outputs.index(output) if output is not None and tm.outputs else 0
    r = tm.residual(output) if output is not None else tm.pop.residual
    eps = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), 1 + j), f.shape))
    if r.type == "exponential":
        return f * np.exp(float(r.exponential) * eps)
    return f + np.asarray(residual_sd(r, jnp.asarray(f))) * eps


def _labelled(state, regimens, horizon):
    """[(label, Regimen)] for RegimenText entries or None (the current regimen)."""
    out = []
    for r in regimens:
        if r is None:
            cur = current_regimen(state.hist)
            if cur is None:
                out.append(("current (history only)", Regimen(tuple(_history_doses(state.hist)))))
            else:
                amt, ii, dur = cur
                label = f"current: {amt:g} mg q{ii:g}h" + (f", {dur:g} h infusion" if dur > 0 else "")
                out.append((label, _candidate(state.hist, state.start, amt, ii, dur, horizon)))
        else:
            kept = [d for d in _history_doses(state.hist) if d.time < state.start - 1e-9]
            new = [Dose(amt=r.amount, time=state.start + t, duration=r.duration if r.duration > 0 else None)
                   for t in r.dose_times(horizon)]
            out.append((r.label(), Regimen(tuple(kept + new))))
    return out


def forecast_state(state, regimens: list, until: float, *, n_draws: int = 1000, seed: int = 0,
                   points: int = 121, level: float = 0.9, posterior: str = "laplace",
                   times=None) -> xr.Dataset:
    """Forecast (module docstring) as a Dataset over (regimen, time): ``<output>_median``,
    ``_lower``, ``_upper`` and ``_map`` for every model output, ``DV_*`` for new measurements."""
    if not until > 0:
        raise SpecError("until", "must be > 0 h")
    if not 0 < level < 1:
        raise SpecError("level", "must be in (0, 1)")
    labelled = _labelled(state, regimens or [None], until)
    t = np.asarray(times, float) if times is not None else np.linspace(state.start, state.start + until, points)
    if t.ndim != 1 or t.size < 1 or np.any(np.diff(t) <= 0):
        raise SpecError("times", "give increasing times (h)")
    tt = np.broadcast_to(t, (len(labelled), t.size))
    etas = _eta_draws(state, n_draws, seed, posterior)
    map_line = state.tm.with_new_occasion(state.post.eta[None])      # kappa = 0 for the new occasion
    outs, status = _solve(state, [r for _, r in labelled], tt, np.vstack([map_line, etas]))
    _check_status(state, status[:, 1:])
    ok = (status[:, 1:] == 0)[:, :, None]
    q = [(1 - level) / 2, 0.5, (1 + level) / 2]
    data = {}
    tm = state.tm
    for name, f in outs.items():
        units = next((o.units for o in tm.model.outputs if o.name == name), "")
        draws = np.where(ok, f[:, 1:], np.nan)
        lo, med, hi = np.nanquantile(draws, q, axis=1)
        for key, v in (("median", med), ("lower", lo), ("upper", hi), ("map", f[:, 0])):
            data[f"{name}_{key}"] = (("regimen", "time"), v, {"units": units, "long_name": f"{name} ({key})"})
        if name == tm.output or (tm.several and name in tm.outputs):
            y = np.where(ok, _residual_draws(tm, f[:, 1:], seed, name), np.nan)
            lo, med, hi = np.nanquantile(y, q, axis=1)
            prefix = "DV" if name == tm.output else f"DV_{name}"
            for key, v in (("median", med), ("lower", lo), ("upper", hi)):
                data[f"{prefix}_{key}"] = (("regimen", "time"), v,
                                           {"units": units, "long_name": f"new measurement of {name} ({key})"})
    return xr.Dataset(data, coords={"regimen": [lab for lab, _ in labelled], "time": ("time", t, {"units": "h"})},
                      attrs={"patient_id": state.patient_id, "version": state.version, "start": state.start,
                             "output": tm.output, **({"outputs": list(tm.outputs)} if tm.several else {}),
                             "level": level, "n_draws": n_draws, "seed": seed, "posterior": posterior})


def _interval_grid(start: float, tau: float, duration: float, until: float) -> np.ndarray:
    n_full = math.floor(until / tau + 1e-9)
    t0 = start + (n_full - 1) * tau
    u = np.linspace(0.0, tau, GRID)
    u[0] = EPS_T
    if 0 < duration < tau:
        u[np.argmin(np.abs(u[1:-1] - duration)) + 1] = duration
    return t0 + u


def recommend_state(state, target, doses, intervals, durations=(0.0,), *, until: float = 96.0,
                    n_draws: int = 1000, seed: int = 0, tie: float = 0.01, posterior: str = "laplace") -> dict:
    """Dose recommendation (module docstring). Returns {"rule", "recommendation", "current",
    "candidates" (DataFrame: dose, interval, duration, probability, median, lower, upper)}."""
    doses, intervals, durations = (np.atleast_1d(np.asarray(x, float)) for x in (doses, intervals, durations))
    target, output = target.resolve({o.name: o.units for o in state.tm.model.outputs}, state.tm.output)
    if np.any(intervals > until):
        raise SpecError("--intervals", f"an interval is longer than the horizon until={until:g} h")
    cands = [(float(a), float(tau), float(d)) for tau in intervals for d in durations for a in doses if d <= tau]
    if not cands:
        raise SpecError("--durations", "no infusion duration fits within the intervals")
    cur = current_regimen(state.hist)
    rows = list(cands) + ([cur] if cur is not None and cur[1] <= until else [])
    regs = [_candidate(state.hist, state.start, a, tau, d, until) for a, tau, d in rows]
    times = np.stack([_interval_grid(state.start, tau, d, until) for _, tau, d in rows])
    etas = _eta_draws(state, n_draws, seed, posterior)
    outs, status = _solve(state, regs, times, etas)
    _check_status(state, status)
    f = outs[output]
    table = []
    for i, (a, tau, d) in enumerate(rows):
        m = target.evaluate(f[i], times[i], tau)[status[i] == 0]
        hit = (m >= target.low) & (m <= target.high)
        lo, med, hi = np.quantile(m, [0.05, 0.5, 0.95]) if m.size else (np.nan,) * 3
        table.append({"dose": a, "interval": tau, "duration": d, "daily_dose": a * 24.0 / tau,
                      "probability": float(hit.mean()) if m.size else 0.0, "median": med, "lower": lo, "upper": hi})
    df = pd.DataFrame(table)
    cand = df.iloc[:len(cands)].copy()
    best = cand["probability"].max()
    centre = 0.5 * (target.low + target.high)
    near = cand[cand["probability"] >= best - tie].assign(off=lambda x: (x["median"] - centre).abs())
    pick = near.sort_values(["off", "daily_dose"], kind="mergesort").iloc[0]
    rule = (f"maximise P({target.label()}) over posterior draws (0/1 utility); ties within {tie:g}: median "
            "closest to the window centre, then the smallest daily dose; metric on the last full dosing interval "
            f"within {until:g} h of the start ({state.start:g} h)")
    keys = ["dose", "interval", "duration", "probability", "median", "lower", "upper"]
    return {"rule": rule, "target": target.label(), "start": state.start, "until": until,
            "recommendation": {k: float(pick[k]) for k in keys},
            "current": ({k: float(df.iloc[-1][k]) for k in keys} if len(rows) > len(cands) else None),
            "candidates": cand.drop(columns=["daily_dose"]).reset_index(drop=True), "n_draws": n_draws}


def risk_state(state, output: str, *, below: float | None = None, above: float | None = None,
               within: float = 168.0, regimen=None, n_draws: int = 1000, seed: int = 0, points: int = 241,
               posterior: str = "laplace") -> dict:
    """P(output crosses a threshold within ``within`` h of the start) (module docstring)."""
    if output not in state.tm.model.output_names:
        raise SpecError("--output", f"model {state.tm.model.name!r} has no output {output!r} "
                                    f"(outputs: {', '.join(state.tm.model.output_names)})")
    if (below is None) == (above is None):
        raise SpecError("--below", "give exactly one of --below or --above")
    if not within > 0:
        raise SpecError("--within", "must be > 0 h")
    (label, reg), = _labelled(state, [regimen], within)
    t = np.linspace(state.start + EPS_T, state.start + within, points)
    etas = _eta_draws(state, n_draws, seed, posterior)
    outs, status = _solve(state, [reg], t[None], etas)
    _check_status(state, status)
    f = outs[output][0][status[0] == 0]
    crossed = f.min(-1) < below if below is not None else f.max(-1) > above
    p = float(crossed.mean()) if crossed.size else float("nan")
    return {"output": output, "below": below, "above": above, "within": within, "start": state.start,
            "regimen": label, "probability": p, "mc_se": float(np.sqrt(p * (1 - p) / max(1, crossed.size))),
            "n_draws": int(crossed.size)}
