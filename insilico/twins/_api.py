"""The twin operations on a twin store: create, update (one patient or a fleet), show, history,
reproduce, and the posterior predictions (forecast, recommend, risk, full posterior); and
`laplace_posteriors`, a fleet's posteriors computed without a store.

Every update appends one version per patient (see `insilico.store` twin layout): the rows
added, a UTC timestamp, the prior's digest, the resulting MAP eta, its Laplace covariance, the
objective (NONMEM scale) and the individual parameters at the MAP. A version is recomputed from
the prior and the rows alone (Newton started at eta = 0), so `reproduce` gives the stored numbers
again. Bad input raises `SpecError` naming the field before anything is written.

Time-varying covariates (`insilico.twins._data`): the covariates given at creation are the
baseline; a row that carries a covariate value changes it from that row on (the prior's
``covariate_interpolation``, LOCF by default). A version stores the values its rows carried
(record ``row_covariates``: {name: [value or null per row]}, in the order of its ``rows``), so
the history, `reproduce`, the posterior and every prediction use the value in force at each
time. Forecasts carry the last value forward unless ``covariates`` ({name: value}, in force
from the regimen's start) are given. A version's ``parameters`` and ``covariates`` are those in
force after its last row.

Several observed outputs (`insilico.twins._data`: a prior with ``outputs`` {DVID: output}): a
version whose rows carried a DVID column stores them in its record (``row_dvid``: [DVID or null
per row], in the order of its ``rows``; null: a dose, an EVID 2 record or a level of the primary
output), so the record digest covers them; a version without (every version written before
DVIDs existed) reads as levels of the primary output. The posterior fits each level with its own
output's prediction and residual error (`insilico.estimation.individual_objective`).

Inter-occasion variability (a prior with ``iov``; `insilico.twins._data` for the occasion of each
row): the stored ``eta`` and ``eta_cov`` are the whole random-effect vector ``[eta, kappa_1, ...,
kappa_K]`` (K = ``iov.occasions``) and its Laplace covariance, so a version reloads and predicts
from them. A version whose rows carried the occasion column stores their occasions (record
``row_occasion``: [occasion per row], in the order of its ``rows``); without it they come from
the prior's ``iov.starts`` and the rows' TIME, so `reproduce` recomputes the same numbers. The
record also holds ``occasions`` (the occasions the history visits), ``latest_occasion`` (in force
at its last row) and ``kappa_names``. A summary (`show`) reports ``eta`` = the between-subject
etas (ETA1, ...), ``eta_cov`` = their Laplace covariance (the eta block of the stored one),
``kappa`` = {occasion: {KAPPA1: value, ...}} for the visited occasions (KAPPA1, ... in the order
of the ``iov`` parameters; unvisited occasions keep kappa = 0) and ``parameters`` = the
individual parameters of the latest occasion (``TV exp(eta + kappa)``; version 0: kappa = 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import jax
import numpy as np
import pandas as pd

from insilico import __version__
from insilico.errors import SpecError
from insilico.jax_config import relieve_map_pressure
from insilico.store import (
    ROW_COLUMNS,
    append_twin_versions,
    check_patient_id,
    create_twin,
    read_twin,
    read_twin_versions,
    twin_ids,
)
from insilico.twins._data import (
    OCC,
    batch_arrays,
    carried,
    check_history,
    covariate_rows,
    covariate_schedule,
    dvid_rows,
    first_values,
    history_columns,
    history_frame,
    in_force,
    normalise_rows,
    occasion_rows,
    occasions_of,
    read_table,
    rows_of,
    varies,
)
from insilico.twins._posterior import Posterior, laplace_batch, sample_posterior
from insilico.twins._predict import forecast_state, next_start, recommend_state, risk_state
from insilico.twins._prior import load_prior, twin_model
from insilico.twins._text import RegimenText, parse_covariates, parse_regimen, parse_target

__all__ = ["TwinState", "create", "forecast", "history", "laplace_posteriors", "load_state", "posterior_sample",
           "recommend", "reproduce", "risk", "show", "update", "update_all"]

OBJECTIVE_CONVENTION = "NONMEM scale: -2 log p(y, eta) at the MAP minus (n_obs + n_eta) log(2 pi)"


@dataclass(frozen=True)
class TwinState:
    """One twin at one version: ``tm`` (compiled prior), ``covariates`` (in force after the last
    row), ``hist`` (all rows up to the version, sorted by TIME, with the covariate values rows
    carried: `TwinModel.code`, NaN where none), ``post`` (`Posterior`), ``version``, the default
    ``start`` of candidate regimens (h), ``baseline`` (the covariates given at creation; default
    ``covariates``) and ``future`` ({name: value} in force from ``start`` on in predictions)."""

    patient_id: str
    tm: object
    covariates: dict
    hist: pd.DataFrame
    post: Posterior
    version: int
    start: float
    baseline: dict | None = None
    future: dict = field(default_factory=dict)

    @property
    def base(self) -> dict:
        return self.covariates if self.baseline is None else self.baseline

    def schedule(self) -> tuple[np.ndarray, dict]:
        """Covariate change times (C,) h and {name: (C+1,) codes} over the history and, with
        ``future``, from ``start`` on (`insilico.twins._data.covariate_schedule`); with IOV the
        occasions too, the new occasion K + 1 from ``start`` on (`insilico.twins._predict`)."""
        future = {**self.future, **({OCC: self.tm.occasions + 1} if self.tm.n_kappa else {})}
        return covariate_schedule(self.tm, self.hist, self.base, (self.start, future) if future else None)

    def _arrays(self):
        return batch_arrays(self.tm, [self.hist], [self.base], 1)

    def subject(self) -> dict:
        """The patient's history as one estimation subject (pytree of NumPy arrays)."""
        return jax.tree.map(lambda a: a[0], self._arrays()[0])

    def flags(self) -> tuple[bool, bool]:
        _, inf, ss = self._arrays()
        return inf, ss


def _posteriors(tm, hists: list, covs: list, chunk_size=None) -> list[Posterior]:
    """Posteriors of histories ``hists`` with baselines ``covs``: patients whose covariates change
    take the piecewise solve in batches of their own; the others keep the time-invariant one."""
    moving = [varies(tm, h, c) for h, c in zip(hists, covs)]
    out = [None] * len(hists)
    for group in (True, False):
        which = [i for i, m in enumerate(moving) if m == group]
        if not which:
            continue
        hs, cs = [hists[i] for i in which], [covs[i] for i in which]

        def build(lo, hi, n_pad, hs=hs, cs=cs):
            return batch_arrays(tm, hs[lo:hi], cs[lo:hi], n_pad)
        for i, p in zip(which, laplace_batch(tm, build, len(which), chunk_size)):
            out[i] = p
    return out


def _parts(tm, versions) -> list[dict]:
    """Each version's rows with the covariate values they carried (`TwinModel.code`; NaN none)
    and, when it stored them, their DVIDs (``DVID``; NaN none)."""
    parts = []
    for v in versions:
        part = dict(v["rows"])
        for c, vals in (v.get("row_covariates") or {}).items():
            if c in tm.covariates:
                part[c] = np.array([np.nan if x is None else tm.code(c, x) for x in vals], float)
        if v.get("row_dvid") is not None:
            part["DVID"] = np.array([np.nan if x is None else float(x) for x in v["row_dvid"]], float)
        if v.get("row_occasion") is not None:
            part[OCC] = np.asarray(v["row_occasion"], float)
        parts.append(part)
    return parts


def _earlier(parts: list[dict], column: str) -> np.ndarray:
    """The values of ``column`` over the earlier parts' rows (NaN where a part has none)."""
    return np.concatenate([np.zeros(0)] + [np.asarray(p[column], float) if column in p
                                           else np.full(np.asarray(p["TIME"]).size, np.nan) for p in parts])


def _with_dvid(new: dict, values: dict, dvid, occ=None) -> dict:
    """A new part: rows, covariate values and (when the rows had a DVID / occasion column) their
    DVIDs and occasions."""
    return {**new, **values, **({} if dvid is None else {"DVID": dvid}), **({} if occ is None else {OCC: occ})}


def _occasion_columns(*tms) -> tuple:
    """The occasion columns (``iov.column``) the priors ``tms`` read."""
    return tuple(dict.fromkeys(tm.spec.iov.column.upper() for tm in tms if tm is not None and tm.n_kappa))


def _row_record(tm, values: dict) -> dict:
    """{name: [value, label or None per row]}: what a version stores of its rows' covariates."""
    return {c: [None if not np.isfinite(x) else tm.value(c, x) for x in v] for c, v in values.items()}


def laplace_posteriors(prior, data, covariates: dict, chunk_size: int | None = None) -> dict:
    """MAP + Laplace posteriors of many patients without a store -- what `update_all` computes
    and stores. ``prior``: population-model YAML path/text/mapping or fit store; ``data``: CSV
    path or DataFrame of NONMEM rows with ``ID`` (checked as an update's rows, each patient's
    rows its whole history, covariate columns time-varying as in `update`); ``covariates``:
    {ID: {name: value}} for every ID in ``data`` (the baseline, in force before a row changes it).
    Returns {ID: `Posterior`} in the order of first appearance."""
    tm = twin_model(load_prior(prior)[0])
    df = normalise_rows(data, tm.covariates, need_id=True, occasions=_occasion_columns(tm))
    codes, ids = pd.factorize(df["ID"])
    order = np.argsort(codes, kind="stable")
    m = df[list(ROW_COLUMNS)].to_numpy(float)[order]
    ends = np.cumsum(np.bincount(codes, minlength=len(ids)))
    varying = tuple(c for c in tm.covariates if c in df.columns)
    extra = (*varying, *((OCC,) if tm.n_kappa else ()), *(("DVID",) if "DVID" in df.columns else ()))
    hists, covs = [], []
    for pid, lo, hi in zip(ids, np.r_[0, ends[:-1]], ends):
        if pid not in covariates:
            raise SpecError("covariates", f"no covariates for patient {pid!r}")
        part = dict(zip(ROW_COLUMNS, m[lo:hi].T))
        if varying:
            part.update(covariate_rows(tm, df.iloc[order[lo:hi]], pid))
        if "DVID" in df.columns:
            part["DVID"] = dvid_rows(tm, df.iloc[order[lo:hi]], pid)
        occ = occasion_rows(tm, df.iloc[order[lo:hi]], pid)
        if occ is not None:
            part[OCC] = occ
        hist = history_columns([part], extra)
        check_history(tm, hist, pid)
        hists.append(hist)
        covs.append(tm.check_covariates(parse_covariates(covariates[pid]), option=f"covariates.{pid}"))
    return dict(zip(ids, _posteriors(tm, hists, covs, chunk_size)))


def _record(tm, covariates: dict, post: Posterior, row_values: dict | None = None, dvid=None,
            occasions: tuple = ([], None), occ=None) -> dict:
    """A version's record; ``covariates``: in force after its last row (the ``parameters``'),
    ``row_values``: the covariate values its rows carried (`covariate_rows`), ``dvid``: their
    DVIDs (`dvid_rows`; None: no DVID column); with IOV ``occasions``: (visited, latest)
    (`occasions_of`) and ``occ``: the occasions its rows carried (`occasion_rows`; None: from
    ``iov.starts``)."""
    visited, latest = occasions
    params = tm.parameters(covariates, post.eta, latest) if post.status in (0, 1, 3) else {}
    rec = {"objective": post.objective, "objective_convention": OBJECTIVE_CONVENTION, "status": post.status,
           "status_text": post.status_text, "n_obs": post.n_obs, "parameters": params, "covariates": covariates,
           "eta_names": list(tm.eta_names), "prior_sha256": tm.sha256, "insilico_version": __version__}
    if tm.n_kappa:
        rec.update(kappa_names=list(tm.kappa_names), occasions=list(visited), latest_occasion=latest)
    if row_values:
        rec["row_covariates"] = _row_record(tm, row_values)
    if dvid is not None:
        rec["row_dvid"] = [None if not np.isfinite(x) else int(x) for x in np.asarray(dvid, float)]
    if occ is not None:
        rec["row_occasion"] = [int(x) for x in np.asarray(occ, float)]
    return rec


def _summary(version) -> dict:
    names = version.get("eta_names", [])
    k = len(names)
    out = {"version": version.number, "timestamp": version["timestamp"],
           "eta": {n: float(v) for n, v in zip(names, version["eta"])},
           "eta_cov": [[None if not np.isfinite(x) else float(x) for x in row[:k]] for row in version["eta_cov"][:k]],
           "objective": version["objective"], "parameters": version["parameters"], "status": version["status_text"],
           "n_obs": version["n_obs"], "covariates": version.get("covariates", {})}
    if version.get("kappa_names"):
        kn = version["kappa_names"]
        kappa = np.asarray(version["eta"])[k:].reshape(-1, len(kn))
        out["kappa"] = {str(o): {n: float(v) for n, v in zip(kn, kappa[o - 1])} for o in version["occasions"]}
        out["latest_occasion"] = version["latest_occasion"]
    return out


def create(store, patient_id: str, prior, covariates) -> dict:
    """Create twin ``patient_id`` in ``store`` (created if absent) from ``prior`` (population-model
    YAML path/text/mapping or fit store) and ``covariates`` ({name: value} or ``"WT=72,..."``).
    Version 0 holds the prior (MAP eta = 0, covariance Omega). Returns {patient_id: summary}."""
    pid = check_patient_id(patient_id)
    mapping, kind = load_prior(prior)
    tm = twin_model(mapping)
    covs = tm.check_covariates(parse_covariates(covariates))
    if pid in _ids_if_store(store):
        raise SpecError("patient_id", f"patient {pid!r} already exists in {store}; use `update`")
    post, = _posteriors(tm, [history_columns([])], [covs])
    info = {"prior": mapping, "prior_sha256": tm.sha256, "prior_kind": kind, "covariates": covs,
            "output": tm.output, **_names_info(tm)}
    if tm.several:
        info["outputs"] = list(tm.outputs)
    create_twin(store, pid, info, _record(tm, covs, post), post.eta, post.eta_cov)
    return show(store, pid)


def _names_info(tm) -> dict:
    """What a twin's attributes say of its random effects: names and the parameters they act on."""
    info = {"eta_names": list(tm.eta_names), "eta_parameters": list(tm.pop.bsv_names)}
    if tm.n_kappa:
        info.update(kappa_names=list(tm.kappa_names), kappa_parameters=list(tm.pop.iov_names),
                    occasions=tm.occasions)
    return info


def _ids_if_store(store) -> list:
    from pathlib import Path
    return twin_ids(store) if Path(store).is_dir() else []


def _twin(store, pid: str, upto: int | None = None):
    info = read_twin(store, pid)
    versions = read_twin_versions(store, pid, upto)
    return info, twin_model(info["prior"]), versions


def update(store, patient_id: str, rows) -> dict:
    """Add ``rows`` (CSV path or DataFrame, NONMEM columns; see `insilico.twins._data`) to twin
    ``patient_id`` and append the new posterior as the next version. Returns {patient_id: summary}."""
    relieve_map_pressure()     # a long session's compiled programs must not exhaust the process's mappings
    pid = check_patient_id(patient_id)
    info, tm, versions = _twin(store, pid)
    df = normalise_rows(rows, tm.covariates, occasions=_occasion_columns(tm))
    if "ID" in df.columns and not (df["ID"] == pid).all():
        other = df.loc[df["ID"] != pid, "ID"].iloc[0]
        raise SpecError("data.ID", f"rows of patient {other!r} in an update of {pid!r}")
    base = info["covariates"]
    values = covariate_rows(tm, df, pid)
    parts = _parts(tm, versions)
    dvid = dvid_rows(tm, df, pid, _earlier(parts, "DVID"))
    occ = occasion_rows(tm, df, pid, _earlier(parts, OCC))
    new = rows_of(df)
    parts = parts + [_with_dvid(new, values, dvid, occ)]
    hist = history_columns(parts, carried(tm, parts))
    check_history(tm, hist, pid)
    post, = _posteriors(tm, [hist], [base])
    record = _record(tm, in_force(tm, hist, base), post, values, dvid, occasions_of(tm, hist, base), occ)
    append_twin_versions(store, [{"patient_id": pid, "rows": new, "record": record,
                                  "eta": post.eta, "eta_cov": post.eta_cov, "parent": versions[-1].number}])
    return show(store, pid)


def update_all(store, batch, prior=None, chunk_size: int | None = None) -> dict:
    """Update every twin with rows in ``batch`` (CSV path or DataFrame with an ``ID`` column) in
    one vmapped batch per prior (chunks of ``chunk_size`` patients). With ``prior``, IDs not in
    the store are created from it, with covariates from their rows' covariate columns; without,
    an unknown ID is an error. Everything is checked before anything is written.
    Returns {patient_id: summary} of the updated twins."""
    relieve_map_pressure()
    existing = set(_ids_if_store(store))
    table = read_table(batch)
    ids_in = list(dict.fromkeys(_id_column(table)))
    new_ids = [i for i in ids_in if i not in existing]
    for i in ids_in:
        check_patient_id(i)
    new_tm = None
    if new_ids:
        if prior is None:
            raise SpecError("data.ID", f"unknown patient {new_ids[0]!r} in {store} (pass a prior to create new "
                                       "twins)")
        mapping, kind = load_prior(prior)
        new_tm = twin_model(mapping)
    twins = {i: _twin(store, i) for i in ids_in if i in existing}
    covariate_names = set(new_tm.covariates if new_tm else ())
    for _, tm, _ in twins.values():
        covariate_names |= set(tm.covariates)
    batch_columns = tuple(sorted(covariate_names))
    occasion_columns = _occasion_columns(new_tm, *(tm for _, tm, _ in twins.values()))
    df = normalise_rows(table, batch_columns, need_id=True, occasions=occasion_columns)
    jobs = []   # (pid, tm, baseline covariates, versions or None, new rows, history, row covariate values, DVIDs,
    #             row occasions)
    for pid, rows in df.groupby("ID", sort=False):
        if pid in twins:
            info, tm, versions = twins[pid]
            values = covariate_rows(tm, rows, pid, batch_columns)
            covs = info["covariates"]
        else:
            tm, versions = new_tm, None
            values = covariate_rows(tm, rows, pid, batch_columns)
            covs = first_values(tm, rows, values, pid)
        parts = _parts(tm, versions) if versions else []
        dvid = dvid_rows(tm, rows, pid, _earlier(parts, "DVID"))
        occ = _occasions_in_batch(tm, rows, pid, _earlier(parts, OCC), occasion_columns)
        new = rows_of(rows)
        parts = parts + [_with_dvid(new, values, dvid, occ)]
        hist = history_columns(parts, carried(tm, parts))
        check_history(tm, hist, pid)
        jobs.append((pid, tm, covs, versions, new, hist, values, dvid, occ))
    posts = {}
    for tm in {id(j[1]): j[1] for j in jobs}.values():
        mine = [j for j in jobs if j[1] is tm]
        for j, p in zip(mine, _posteriors(tm, [j[5] for j in mine], [j[2] for j in mine], chunk_size)):
            posts[j[0]] = p
    creations = [j for j in jobs if j[3] is None]
    if creations:
        empties = _posteriors(new_tm, [history_columns([])] * len(creations), [j[2] for j in creations], chunk_size)
        info0 = {"prior": new_tm.mapping, "prior_sha256": new_tm.sha256, "prior_kind": kind, "output": new_tm.output,
                 **_names_info(new_tm)}
        if new_tm.several:
            info0["outputs"] = list(new_tm.outputs)
        for j, p in zip(creations, empties):
            create_twin(store, j[0], {**info0, "covariates": j[2]}, _record(new_tm, j[2], p), p.eta, p.eta_cov)
    updates = [{"patient_id": pid, "rows": new,
                "record": _record(tm, in_force(tm, hist, covs), posts[pid], values, dvid, occasions_of(tm, hist, covs),
                                  occ),
                "eta": posts[pid].eta, "eta_cov": posts[pid].eta_cov, "parent": versions[-1].number if versions else 0}
               for pid, tm, covs, versions, new, hist, values, dvid, occ in jobs]
    append_twin_versions(store, updates)
    return {pid: _summary(read_twin_versions(store, pid)[-1]) for pid, *_ in jobs}


def _occasions_in_batch(tm, rows: pd.DataFrame, pid: str, earlier, columns: tuple):
    """`occasion_rows` of one twin's rows in a fleet batch; a value in an occasion column for a
    twin whose prior has no IOV is refused (`SpecError` naming the row and the column)."""
    if not tm.n_kappa:
        for c in columns:
            if c in rows.columns:
                given = ~rows[c].isna().to_numpy() & ~rows[c].astype(str).str.strip().isin(["", "."]).to_numpy()
                if given.any():
                    i = int(np.flatnonzero(given)[0])
                    raise SpecError(f"data.{c}", f"row {int(rows.index[i]) + 1}: {pid}: the twin's prior has no "
                                                 "inter-occasion variability (no iov); leave its occasion empty")
        return None
    mine = tm.spec.iov.column.upper()
    return occasion_rows(tm, rows.drop(columns=[c for c in columns if c != mine and c in rows.columns]), pid, earlier)


def _id_column(df: pd.DataFrame) -> list:
    cols = {str(c).strip().upper(): c for c in df.columns}
    if "ID" not in cols:
        raise SpecError("data.ID", "required column missing (one batch holds many patients)")
    return [str(v).strip() for v in df[cols["ID"]]]


def show(store, patient_id: str | None = None, version: int | None = None) -> dict:
    """{patient_id: summary} of one twin (at ``version``, default the latest) or of every twin.
    A summary: version, timestamp, eta {ETA1: ...}, eta_cov, objective, parameters, status, n_obs;
    with IOV also kappa {occasion: {KAPPA1: ...}} and latest_occasion (module docstring)."""
    ids = [check_patient_id(patient_id)] if patient_id is not None else twin_ids(store)
    return {pid: _summary(read_twin_versions(store, pid, version)[-1]) for pid in ids}


def history(store, patient_id: str) -> pd.DataFrame:
    """One row per version of twin ``patient_id``: version, timestamp, rows added, objective,
    status, the MAP etas and the digests that chain the versions."""
    rows = []
    for v in read_twin_versions(store, check_patient_id(patient_id)):
        rows.append({"version": v.number, "timestamp": v["timestamp"], "rows_added": v["n_rows"],
                     "n_obs": v["n_obs"], "objective": v["objective"], "status": v["status_text"],
                     **{n: float(x) for n, x in zip(v["eta_names"], v["eta"])},
                     "rows_sha256": v["rows_sha256"], "history_sha256": v["history_sha256"]})
    return pd.DataFrame(rows)


def load_state(store, patient_id: str, version: int | None = None) -> TwinState:
    """The twin at ``version`` (default latest) as a `TwinState`."""
    pid = check_patient_id(patient_id)
    info, tm, versions = _twin(store, pid, version)
    last = versions[-1]
    cov = np.asarray(last["eta_cov"]).reshape(tm.n_random, tm.n_random)
    post = Posterior(np.asarray(last["eta"]), cov, float(last["objective"] if last["objective"] is not None
                                                         else np.nan), int(last["status"]), int(last["n_obs"]))
    parts = _parts(tm, versions)
    hist = history_frame(parts, carried(tm, parts))
    base = info["covariates"]
    return TwinState(pid, tm, in_force(tm, hist, base), hist, post, last.number, next_start(hist), base)


def reproduce(store, patient_id: str, version: int | None = None) -> dict:
    """Recompute ``version`` (default latest) from the stored prior and rows; returns
    {"version", "max_abs_diff" (eta and eta_cov), "objective_diff", "stored", "recomputed"}."""
    state = load_state(store, patient_id, version)
    post, = _posteriors(state.tm, [state.hist], [state.base])
    d_eta = np.max(np.abs(post.eta - state.post.eta), initial=0.0)
    d_cov = np.nanmax(np.abs(post.eta_cov - state.post.eta_cov), initial=0.0)
    return {"version": state.version, "max_abs_diff": float(max(d_eta, d_cov)),
            "objective_diff": abs(post.objective - state.post.objective),
            "stored": state.post, "recomputed": post}


def _regimens(regimens) -> list:
    if regimens is None or isinstance(regimens, (str, RegimenText)):
        regimens = [regimens]
    return [None if r is None or (isinstance(r, str) and r.strip().lower() == "current")
            else (r if isinstance(r, RegimenText) else parse_regimen(r)) for r in regimens]


def _at(state: TwinState, start, covariates=None) -> TwinState:
    """``state`` with the regimens' ``start`` and the future ``covariates`` ({name: value} or
    ``"CRCL=40,..."``, in force from the start on; names the prior does not use are refused)."""
    if start is not None:
        if not np.isfinite(start) or start < 0:
            raise SpecError("start", "must be a time >= 0 h")
        state = replace(state, start=float(start))
    if covariates is None or (isinstance(covariates, str) and not covariates.strip()):
        return state
    given = parse_covariates(covariates, option="covariates")
    future = {}
    for c, v in given.items():
        if c not in state.tm.covariates:
            raise SpecError(f"covariates.{c}", f"the twin's prior does not use covariate {c} (its covariates: "
                                               f"{', '.join(state.tm.covariates) or 'none'})")
        future[c] = state.tm.check_value(c, v, f"covariates.{c}")
    return replace(state, future=future)


def forecast(store, patient_id: str, regimens=None, until: float = 96.0, *, start: float | None = None,
             version: int | None = None, covariates=None, **kw):
    """Posterior predictive under one or several regimens (texts like ``"1000 mg q12h x6, 1 h
    infusion"``, or None / "current"), from ``start`` (default: when the next dose is due) to
    ``until`` h later; an xarray Dataset (see `insilico.twins._predict`). ``covariates``: future
    values ({name: value}) in force from the start (default: the last values carried forward).
    Keywords: n_draws, seed, points, level, posterior ("laplace" or "full"), times."""
    state = _at(load_state(store, patient_id, version), start, covariates)
    return forecast_state(state, _regimens(regimens), until, **kw)


def recommend(store, patient_id: str, target, doses, intervals, durations=(0.0,), *, until: float = 96.0,
              start: float | None = None, version: int | None = None, covariates=None, **kw) -> dict:
    """The dose (mg), interval (h) and infusion duration (h) from the given sets that maximise
    the posterior probability of attaining ``target`` (``"trough in [10, 20] mg/L"``); the rule
    and the probabilities of the recommendation and the current regimen (`insilico.twins._predict`).
    ``covariates``: future values in force from the start, as in `forecast`."""
    target = parse_target(target) if isinstance(target, str) else target
    state = _at(load_state(store, patient_id, version), start, covariates)
    return recommend_state(state, target, doses, intervals, durations, until=until, **kw)


def risk(store, patient_id: str, output: str, *, below: float | None = None, above: float | None = None,
         within: float = 168.0, regimen=None, start: float | None = None, version: int | None = None,
         covariates=None, **kw) -> dict:
    """P(``output`` < ``below`` (or > ``above``) at some time within ``within`` h of the start)
    under the current regimen or ``regimen``; ``covariates`` as in `forecast`."""
    state = _at(load_state(store, patient_id, version), start, covariates)
    reg, = _regimens(regimen)
    return risk_state(state, output, below=below, above=above, within=within, regimen=reg, **kw)


def posterior_sample(store, patient_id: str, n: int = 2000, seed: int = 0, version: int | None = None,
                     **kw) -> dict:
    """Draws of eta (with IOV: the whole random-effect vector, `insilico.twins._posterior`) from
    the full posterior: importance sampling from the Laplace proposal, NUTS when its effective
    sample size is too low (`insilico.twins._posterior.sample_posterior`)."""
    state = load_state(store, patient_id, version)
    return sample_posterior(state.tm, state.subject(), state.flags(), state.post, n=n, seed=seed, **kw)
