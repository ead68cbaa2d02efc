"""Visual predictive check (VPC) and prediction-corrected VPC (pcVPC) of a fit.

The fitted population model (``fit_ds.attrs["population_model"]``: typical values, covariate
effects, Omega and residual error at their estimates) is simulated ``n_sim`` times on the data
set's own design: every subject keeps its doses, observation times and covariates; each
replicate draws new random effects eta ~ N(0, Omega) and new residual errors (the population
model's error type, NONMEM $ERROR convention, `insilico.population.apply_residual_error`). With
inter-occasion variability each replicate also draws, per subject, one kappa ~ N(0, Omega_IOV) per
occasion (independent over occasions; the whole vector [eta, kappa_1, ..., kappa_K] ~ N(0,
diag(Omega, Omega_IOV, ..., Omega_IOV)), `random_effects_omega`) and every record takes the kappa
of its occasion in the data (the ``OCC`` column, or ``iov.starts`` on the data's TIME), as in the
fit. The
predictions come from the same engine call the fit used (`insilico.estimation.build_problem`,
``problem.predict``). Parameter uncertainty is not simulated (the usual VPC: point estimates).

One observed output at a time (``output``, default the population model's ``output``): with
several outputs (DVID) the records of the others are left out and the output's own residual model
is simulated. Censored (BLQ) records, whether the fit dropped them (M1) or censored them (M3),
take part in the percentiles as censored values (below) and in the BLQ fraction.

Random streams: eta (with IOV: the whole vector, etas then the kappas occasion by occasion) of
replicate r, subject index i is L z with L the Cholesky factor of its prior covariance and
``z = normal(fold_in(fold_in(fold_in(PRNGKey(seed), COHORT), r), i))``; residual error of
observation j from ``fold_in(fold_in(fold_in(fold_in(PRNGKey(seed), RESIDUAL), r), i), j)``
(`insilico.streams`), so a replicate does not depend on ``n_sim``.

Binning (:func:`bin_edges`), on observation time (h):

* ``bins=None``: one bin per distinct observation time when there are at most
  `MAX_NOMINAL_BINS` of them (edges half-way between consecutive times), else
  `MAX_NOMINAL_BINS` quantile bins;
* ``bins=n`` (int): ``n`` bins with edges at the quantiles of the observation times (about
  equal numbers of observations per bin; coinciding edges merged, so fewer bins can result);
* ``bins=[e0, e1, ...]``: these edges (h), strictly increasing; observations outside
  ``[e0, e_last]`` are left out (counted in ``attrs["n_outside"]``).

Bins are ``[e_b, e_b+1)``, the last one closed. BLQ records take part in the binning: the
edges come from the times of all the output's records, quantified and BLQ (as PsN's vpc and the
``vpc`` R package bin all observations), so the percentiles and the BLQ fraction share bins and a
late bin holding only BLQ records still exists (its percentiles NaN). A bin is drawn at the median
time of its records (quantified and BLQ); ``n_obs`` counts its quantified observations, ``n_blq``
its BLQ records. Without BLQ records this is the binning of the observations alone.

Statistics: in every bin the observed 5th/50th/95th percentiles (``percentiles``, linear
interpolation, `numpy.percentile`) of DV; the same percentiles of each simulated replicate
(same observations, same bins), and across replicates their median and central ``ci`` interval
(default 95 %: 2.5th and 97.5th percentiles over replicates). ``inside`` says whether the
observed percentile lies in the simulated interval. A simulated subject whose solve fails
(engine status > 0) has no simulated values; percentiles are taken over the others, and
``attrs["n_failed"]`` counts those subject-replicates.

Censored percentiles (Bergstrand & Karlsson, AAPS J 2009;11:371; the rule of PsN's ``vpc -lloq``
and of ``quantile_cens`` in the ``vpc`` R package): the percentiles of a bin are taken over ALL
its records, a censored one counting as -inf (below every value): an observed record is
censored when it is BLQ (or its DV is below its own LLOQ), a simulated value when it is below
its record's LLOQ (the record limits of the BLQ fraction below), so the observed data and every
replicate are treated identically. A percentile is censored, reported NaN and not drawn, when
its linear interpolation involves a censored value, or (several LLOQs in one bin) when it lies
below the largest LLOQ of the bin's censored records, where its rank would depend on the unknown
censored values; with one LLOQ this is exactly ``quantile_cens``. Across replicates a censored
replicate percentile counts as below all the others in the same way, so ``sim_median`` is NaN
when at least half of the replicates' percentiles are censored and ``sim_lower`` when more than
(1 - ci)/2 of them are (the interval then reaches below the LLOQ). ``censored`` flags the
censored observed percentiles; ``inside`` compares with a censored value as -inf (a censored
observed percentile is inside when ``sim_lower`` is censored too, a finite one never is when
``sim_upper`` is). ``bin_lloq``: the largest LLOQ of a bin's records (the plot shades an
interval with a censored lower bound from it). Without censored values (no LLOQ, or nothing
below it) these are the plain percentiles, bit for bit.

Prediction correction (Bergstrand, Hooker, Wallin & Karlsson, AAPS J 2011;13:143, eq. 1):
with PRED_ij the population prediction (eta = 0) of observation j of subject i, PRED_bin the
median PRED of the bin's observations and lb a lower bound (0 by default, the usual case of
untransformed concentrations)::

    pcY_ij = lb + (Y_ij - lb) * (PRED_bin - lb) / (PRED_ij - lb)

applied alike to the observations and to every simulated replicate
(:func:`prediction_correct`), PRED_bin over all the bin's records (quantified and BLQ). Whether a
value is censored is decided on the uncorrected scale; each record's LLOQ is corrected like its
values and the censored percentiles (``pc_observed``, ``pc_censored``, ...) use the corrected
limits (``pc_bin_lloq``). The variability correction (pvcVPC) is not applied.

BLQ fraction (the "fraction of BLQ observations" VPC of Bergstrand & Karlsson, AAPS J
2009;11:371; PsN's ``vpc -lloq``; the ``vpc`` R package's ``vpc_cens``, "Probability of <LOQ"):
in every bin the observed fraction of records
below the limit of quantification, ``blq_observed`` = (BLQ records)/(quantified + BLQ records);
per replicate the simulated fraction ``blq_sim_fraction``: the share of the bin's records whose
simulated value is below that record's own limit (strictly, ``y_sim < LLOQ``, as a DV below its
LLOQ is BLQ in the data); across replicates its median ``blq_sim_median`` and central ``ci``
interval ``blq_sim_lower``/``blq_sim_upper`` (the VPC's ``ci``, 95 % by default; ``vpc_cens``
defaults to 90 %: pass ``ci=0.9``), and ``blq_inside``. A record's limit: its ``LLOQ`` value; a BLQ
record without one has its DV as limit (as in the fit, `insilico.estimation.build_problem`); a
quantified record without an LLOQ value takes the smallest limit of the same output's BLQ records
(the usual one-assay case of BLQ flags with DV = LLOQ), and with no BLQ record and no LLOQ at all
no simulated value counts as BLQ. Simulations whose solve failed are left out of the denominator.
``attrs["n_blq"]`` counts the output's BLQ records in the bins; the plot draws the BLQ panel only
when it is > 0. ``attrs["lloq"]``: the one limit shared by every record, NaN when they differ or
there is none.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from insilico import streams
from insilico.dosing import NonmemData, read_nonmem
from insilico.errors import SpecError
from insilico.estimation._objective import random_effects_omega
from insilico.estimation._problem import build_problem
from insilico.estimation._spec import load_population_model
from insilico.models import resolve_model
from insilico.population import apply_residual_error

__all__ = ["MAX_NOMINAL_BINS", "assign_bins", "bin_edges", "prediction_correct", "vpc"]

MAX_NOMINAL_BINS = 10
PERCENTILES = (5.0, 50.0, 95.0)


# ----------------------------------------------------------------------------------------------
# binning and the correction: small pure functions
# ----------------------------------------------------------------------------------------------

def bin_edges(times, bins=None) -> np.ndarray:
    """Edges (h) of the time bins of observations at ``times`` (see module docstring for the
    rules of ``bins``: None, an int or a sequence of edges). `SpecError` (field ``bins``) for
    edges that are not strictly increasing, fewer than 2 edges or a count < 1."""
    t = np.asarray(times, dtype=float)
    t = t[np.isfinite(t)]
    if t.size == 0:
        raise SpecError("bins", "no observation times to bin")
    if bins is None:
        distinct = np.unique(t)
        if distinct.size <= MAX_NOMINAL_BINS:
            mid = (distinct[1:] + distinct[:-1]) / 2
            return np.concatenate([[distinct[0]], mid, [distinct[-1]]])
        bins = MAX_NOMINAL_BINS
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise SpecError("bins", f"the number of bins must be >= 1, got {bins}")
        return np.unique(np.quantile(t, np.linspace(0.0, 1.0, int(bins) + 1)))
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)):
        raise SpecError("bins", "give a number of bins or at least 2 finite bin edges (h)")
    if np.any(np.diff(edges) <= 0):
        raise SpecError("bins", f"bin edges must be strictly increasing, got {edges.tolist()}")
    return edges


def assign_bins(times, edges) -> np.ndarray:
    """Bin index of each time (bins ``[e_b, e_b+1)``, the last one closed); -1 outside."""
    t = np.asarray(times, dtype=float)
    edges = np.asarray(edges, dtype=float)
    idx = np.searchsorted(edges, t, side="right") - 1
    idx = np.where(t == edges[-1], edges.size - 2, idx)
    return np.where((t >= edges[0]) & (t <= edges[-1]) & (idx >= 0), np.minimum(idx, edges.size - 2), -1)


def prediction_correct(y, pred, bin_index, lower_bound: float = 0.0) -> np.ndarray:
    """Prediction-corrected values (Bergstrand et al. 2011): ``lb + (y - lb) (PRED_bin - lb) /
    (PRED - lb)`` with PRED_bin the median of ``pred`` over the observations of each bin.

    ``y`` (..., n_obs) observed or simulated values; ``pred`` (n_obs,) population predictions;
    ``bin_index`` (n_obs,) bin of each observation (-1: no bin, result NaN)."""
    pred = np.asarray(pred, dtype=float)
    b = np.asarray(bin_index)
    pred_bin = np.full(pred.shape, np.nan)
    for k in np.unique(b[b >= 0]):
        pred_bin[b == k] = np.median(pred[b == k])
    lb = float(lower_bound)
    return lb + (np.asarray(y, dtype=float) - lb) * (pred_bin - lb) / (pred - lb)


def _censored_percentiles(x, censored, limit, q):
    """Percentiles ``q`` (%) along the last axis of ``x`` with left-censored entries, the rule of
    ``quantile_cens`` of the ``vpc`` R package and PsN's ``vpc -lloq`` (Bergstrand & Karlsson,
    AAPS J 2009;11:371): a censored entry counts as -inf (below every value), the percentile is
    the linear-interpolation one (`numpy.percentile`) and it is censored (returned NaN) when it
    involves a censored entry (the lower order statistic of the interpolation is censored) or lies
    below the largest ``limit`` of the row's censored entries (with several LLOQs in a row: a value
    below it could rank differently depending on where the censored values lie; with one LLOQ
    this never applies). NaN entries of ``x`` (failed simulations) are left out; NaN for a row
    without entries (not censored).

    Returns ``(p, c, thr)``, each (..., len(q)): the percentiles (NaN where censored), whether
    censored, and the row's largest censoring limit (-inf without censored entries), which a
    percentile of these percentiles uses as the ``limit`` of a censored one. Without censored
    entries ``p`` is `numpy.nanpercentile` bit for bit."""
    x = np.asarray(x, dtype=float)
    cens = np.broadcast_to(censored, x.shape)
    shape = x.shape[:-1] + (len(q),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # a row without entries: NaN
        if not cens.any():
            return (np.moveaxis(np.nanpercentile(x, q, axis=-1), 0, -1), np.zeros(shape, dtype=bool),
                    np.full(shape, -np.inf))
        fin = x[~cens & np.isfinite(x)]
        fill = (fin.min() - 1.0 - (fin.max() - fin.min())) if fin.size else -1.0   # below every entry
        p = np.moveaxis(np.nanpercentile(np.where(cens, fill, x), q, axis=-1), 0, -1)
        lowest = np.nanmin(np.where(cens, np.nan, x), axis=-1, keepdims=True)      # smallest uncensored
    lim = np.broadcast_to(limit, x.shape)
    thr = np.max(np.where(cens & np.isfinite(lim), lim, -np.inf), axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        c = ~np.isnan(p) & (~(p >= lowest) | (p < thr))
    return np.where(c, np.nan, p), c, np.broadcast_to(thr, shape).copy()


def _bin_percentiles(values, censored, limit, bin_index, n_bins: int, q):
    """`_censored_percentiles` of ``values`` (..., n_obs) in each bin: each of ``p``, ``c``,
    ``thr`` (..., n_bins, len(q)); NaN (not censored) for an empty bin."""
    values = np.asarray(values, dtype=float)
    censored = np.broadcast_to(censored, values.shape)
    limit = np.broadcast_to(limit, values.shape)
    shape = values.shape[:-1] + (n_bins, len(q))
    p, c, thr = np.full(shape, np.nan), np.zeros(shape, dtype=bool), np.full(shape, -np.inf)
    for k in range(n_bins):
        sel = bin_index == k
        if sel.any():
            p[..., k, :], c[..., k, :], thr[..., k, :] = _censored_percentiles(
                values[..., sel], censored[..., sel], limit[..., sel], q)
    return p, c, thr


# ----------------------------------------------------------------------------------------------
# simulation on the data's design
# ----------------------------------------------------------------------------------------------

def _simulate(problem, pop, residual, n_sim: int, seed: int):
    """Population predictions (N, T) and ``n_sim`` simulated data sets (n_sim, N, T) with the
    residual error spec ``residual``. Random effects: the whole vector of a subject (etas, then
    with IOV the kappas occasion by occasion, ``problem.n_eta`` long) ~ N(0, `random_effects_omega`)."""
    n, k = problem.n_subjects, problem.n_eta
    root = jax.random.fold_in(jax.random.PRNGKey(seed), streams.COHORT)
    replicates = jnp.arange(n_sim, dtype=jnp.uint32)
    subjects = jnp.arange(n, dtype=jnp.uint32)
    if problem.n_kappa:     # diag(Omega, Omega_IOV, ..., Omega_IOV): block-diagonal, so its factor is blockwise
        chol = jnp.linalg.cholesky(jnp.asarray(random_effects_omega(problem, pop)))
    else:
        chol = jnp.asarray(pop.omega_chol) if k else None

    def eta_draw(r, i):
        z = jax.random.normal(jax.random.fold_in(jax.random.fold_in(root, r), i), (k,))
        return chol @ z if k else z

    etas = jax.vmap(lambda r: jax.vmap(lambda i: eta_draw(r, i))(subjects))(replicates)
    etas = jnp.concatenate([jnp.zeros((1, n, k)), etas])          # replicate "-1": eta = 0, PRED
    data = problem.subjects()

    def one(subject, eta):
        f, status = problem.predict(pop, subject, eta)
        return jnp.where(status == 0, f, jnp.nan)          # a failed solve: no simulated values

    @jax.jit
    def predict_all(etas):
        return jax.lax.map(lambda e: jax.vmap(one)(data, e), etas)

    f = np.asarray(predict_all(etas))
    res_root = jax.random.fold_in(jax.random.PRNGKey(seed), streams.RESIDUAL)
    sims = np.stack([np.asarray(apply_residual_error(f[r + 1], residual,
                                                     jax.random.fold_in(res_root, r), np.arange(n)))
                     for r in range(n_sim)])
    return f[0], sims


def _check_data(fit_ds: xr.Dataset, data) -> None:
    """Warn when ``data`` is a file whose SHA-256 differs from the one the fit recorded."""
    want = fit_ds.attrs.get("data_sha256") or ""
    if want and isinstance(data, (str, Path)) and Path(data).is_file():
        got = hashlib.sha256(Path(data).read_bytes()).hexdigest()
        if got != want:
            warnings.warn(f"{data} is not the data set the fit was made from (SHA-256 differs): the VPC "
                          "simulates the fitted model on this data set's design", RuntimeWarning, stacklevel=3)


def _check_arguments(fit_ds: xr.Dataset, n_sim, ci, percentiles) -> np.ndarray:
    """`SpecError` for arguments `vpc` cannot use; the percentiles as an array."""
    if "population_model" not in fit_ds.attrs:
        raise SpecError("fit", "the fit has no population_model attribute (not a fit Dataset?)")
    if not isinstance(n_sim, (int, np.integer)) or n_sim < 2:
        raise SpecError("n_sim", f"needs at least 2 simulated replicates, got {n_sim!r}")
    if not 0 < ci < 1:
        raise SpecError("ci", f"must be in (0, 1), got {ci}")
    q = np.asarray(percentiles, dtype=float)
    if q.ndim != 1 or q.size == 0 or np.any((q < 0) | (q > 100)):
        raise SpecError("percentiles", "give percentiles between 0 and 100")
    return q


def _summary(obs_values, obs_cens, obs_limit, sim_values, sim_cens, sim_limit, bin_index, n_bins: int, q,
             ci: float, prefix: str) -> dict:
    """Observed percentiles per bin, the simulated ones per replicate and their median and
    central ``ci`` interval over replicates (each censored the same way, `_censored_percentiles`:
    a replicate whose percentile is censored counts as below every uncensored one), and whether
    the observed one is inside (a censored value as -inf: a censored observed percentile is inside
    when the interval's lower bound is censored too)."""
    alpha = 100 * (1 - ci) / 2
    obs_p, obs_c, _ = _bin_percentiles(obs_values, obs_cens, obs_limit, bin_index, n_bins, q)
    sim_p, sim_c, sim_thr = _bin_percentiles(sim_values, sim_cens, sim_limit, bin_index, n_bins, q)  # (n_sim, bins, q)
    s, sc, st = _censored_percentiles(np.moveaxis(sim_p, 0, -1), np.moveaxis(sim_c, 0, -1),
                                      np.moveaxis(sim_thr, 0, -1), [alpha, 50.0, 100 - alpha])
    (lo, med, hi), (lo_c, _, hi_c) = np.moveaxis(s, -1, 0), np.moveaxis(sc, -1, 0)
    with np.errstate(invalid="ignore"):
        o = np.where(obs_c, -np.inf, obs_p)
        inside = (o >= np.where(lo_c, -np.inf, lo)) & (o <= np.where(hi_c, -np.inf, hi))
    dims = ("bin", "percentile")
    return {f"{prefix}observed": (dims, obs_p), f"{prefix}sim_median": (dims, med),
            f"{prefix}sim_lower": (dims, lo), f"{prefix}sim_upper": (dims, hi),
            f"{prefix}inside": (dims, inside), f"{prefix}censored": (dims, obs_c),
            f"{prefix}sim_percentiles": (("replicate", *dims), sim_p)}


def vpc(fit_ds: xr.Dataset, data, n_sim: int = 200, seed: int = 0, bins=None, *, ci: float = 0.95,
        percentiles=PERCENTILES, lower_bound: float = 0.0, base: str | Path | None = None,
        output: str | None = None) -> xr.Dataset:
    """VPC and pcVPC of a fit (see the module docstring for the simulation, binning and the
    correction).

    Parameters
    ----------
    fit_ds : the fit Dataset (`FitResult.to_dataset` or `insilico.store.open_fit`); only its
        ``population_model`` attribute is used.
    data : the NONMEM-format data set (CSV path, DataFrame or `NonmemData`) whose design is
        simulated and whose DV are compared; normally the fitted data.
    n_sim : simulated replicates of the whole data set; ``seed`` their seed.
    bins : None, a number of quantile bins or bin edges (h).
    ci : coverage of the simulated intervals; ``percentiles`` the summary percentiles (%).
    lower_bound : lb of the prediction correction (same units as DV).
    base : folder a relative ``model.import`` of the population model resolves against.
    output : the observed output to check (default: the population model's ``output``).

    Returns a Dataset over ``bin`` and ``percentile`` (``observed``, ``sim_median``,
    ``sim_lower``, ``sim_upper``, ``inside``, ``censored`` and their prediction-corrected ``pc_*``
    versions, NaN where censored; ``sim_percentiles``/``pc_sim_percentiles`` per ``replicate``;
    ``bin_time``, ``bin_lower``, ``bin_upper``, ``n_obs``, ``bin_lloq``, ``pc_bin_lloq``), the BLQ
    fraction over ``bin`` (``blq_observed``, ``blq_sim_median``, ``blq_sim_lower``,
    ``blq_sim_upper``, ``blq_inside``, ``n_blq``; ``blq_sim_fraction`` per ``replicate``;
    fractions in [0, 1]) and over ``observation``, the quantified observations (``obs_subject``,
    ``obs_time``, ``obs_dv``, ``obs_pred``, ``obs_pcdv``, ``obs_bin``); attrs ``n_sim``, ``seed``,
    ``ci``, ``binning``, ``n_outside`` (records, quantified and BLQ), ``n_failed``, ``n_blq``,
    ``lloq``, ``output``, ``units``.
    """
    q = _check_arguments(fit_ds, n_sim, ci, percentiles)
    _check_data(fit_ds, data)
    spec, _ = load_population_model(json.loads(fit_ds.attrs["population_model"]))
    base = Path(base) if base is not None else None
    model = resolve_model(spec.model, base)
    nm = data if isinstance(data, NonmemData) else read_nonmem(data, model)
    # BLQ records kept as censored whatever the fit did with them (M1 drops them): the BLQ fraction needs them
    spec = spec.model_copy(update={"estimate": spec.estimate.model_copy(update={"blq": "m3"})})
    problem = build_problem(spec, nm, base=base, model=model)
    output = output or spec.output
    if output not in problem.outputs:
        raise SpecError("output", f"{output!r} is not an observed output (observed: {', '.join(problem.outputs)})")
    m_all = problem.mask.copy()                 # the output's records, quantified and BLQ
    if "out" in problem.records:
        m_all &= problem.records["out"] == problem.outputs.index(output)
    cens_grid = problem.records.get("cens", np.zeros_like(problem.mask))
    residual = spec.residual_error if output == spec.output else spec.residual_errors[output]
    t_all, cens = problem.times[m_all], cens_grid[m_all]
    quant = ~cens
    edges = bin_edges(t_all, bins)
    b_all = assign_bins(t_all, edges)
    y_all = problem.y[m_all]
    t, dv, b = t_all[quant], y_all[quant], b_all[quant]
    pop = problem.params.template            # the population model at the fitted values
    pred_grid, sims_grid = _simulate(problem, pop, residual, int(n_sim), int(seed))
    subject = np.broadcast_to(problem.ids[:, None], m_all.shape)[m_all][quant]
    pred_all, sims_all = pred_grid[m_all], sims_grid[:, m_all]
    pred = pred_all[quant]
    n_bins = edges.size - 1
    limit = _record_limits(problem, nm, cens_grid, m_all)
    with np.errstate(invalid="ignore"):         # NaN limit (none known): never censored
        obs_cens = cens | (y_all < limit)       # a quantified DV below its own LLOQ counts as censored too
        sim_cens = sims_all < limit
    # prediction correction over all the bin's records (PRED_bin their median); a record's limit corrected alike
    pc_all = prediction_correct(y_all, pred_all, b_all, lower_bound)
    pc_sims = prediction_correct(sims_all, pred_all, b_all, lower_bound)
    pc_limit = prediction_correct(limit, pred_all, b_all, lower_bound)
    pc_dv = pc_all[quant]

    counts = np.array([(b == k).sum() for k in range(n_bins)])
    in_bin = [b_all == k for k in range(n_bins)]
    bin_time = np.array([np.median(t_all[s]) if s.any() else np.nan for s in in_bin])
    units = next(o.units for o in problem.model.outputs if o.name == output)
    ds = xr.Dataset(
        {**_summary(y_all, obs_cens, limit, sims_all, sim_cens, limit, b_all, n_bins, q, ci, ""),
         **_summary(pc_all, obs_cens, pc_limit, pc_sims, sim_cens, pc_limit, b_all, n_bins, q, ci, "pc_"),
         **_blq_summary(cens, sims_all, limit, b_all, n_bins, ci, units),
         "bin_lloq": ("bin", _bin_max(limit, b_all, n_bins),
                      {"units": units, "long_name": "largest LLOQ of the bin's records"}),
         "pc_bin_lloq": ("bin", _bin_max(pc_limit, b_all, n_bins),
                         {"units": units, "long_name": "largest prediction-corrected LLOQ of the bin's records"}),
         "bin_time": ("bin", bin_time, {"units": "h", "long_name": "median time of the bin's records"}),
         "bin_lower": ("bin", edges[:-1], {"units": "h"}), "bin_upper": ("bin", edges[1:], {"units": "h"}),
         "n_obs": ("bin", counts),
         "obs_subject": ("observation", subject), "obs_time": ("observation", t, {"units": "h"}),
         "obs_dv": ("observation", dv, {"units": units, "long_name": output}),
         "obs_pred": ("observation", pred, {"units": units, "long_name": "PRED"}),
         "obs_pcdv": ("observation", pc_dv, {"units": units, "long_name": f"prediction-corrected {output}"}),
         "obs_bin": ("observation", b)},
        coords={"bin": np.arange(n_bins), "percentile": q, "replicate": np.arange(int(n_sim))})
    finite = limit[np.isfinite(limit)]
    ds.attrs.update({"n_sim": int(n_sim), "seed": int(seed), "ci": float(ci), "lower_bound": float(lower_bound),
                     "output": output, "units": units or "", "n_outside": int((b_all < 0).sum()),
                     "n_failed": int(np.isnan(np.where(m_all, sims_grid, 0.0)).any(-1).sum()),
                     "n_blq": int((cens & (b_all >= 0)).sum()),
                     "lloq": float(finite[0]) if finite.size and np.all(finite == finite[0]) else float("nan"),
                     "binning": _binning_text(bins, edges, np.unique(t_all).size),
                     "method": "VPC on the data's design; pcVPC per Bergstrand et al. 2011 (AAPS J 13:143); BLQ "
                               "fraction per Bergstrand & Karlsson 2009 (AAPS J 11:371)"})
    return ds


def _record_limits(problem, nm: NonmemData, cens_grid, m_all) -> np.ndarray:
    """The limit of quantification of each of the output's records (module docstring): its LLOQ
    value; a BLQ record without one its DV (``problem.records["lloq"]``); a quantified record
    without one the smallest limit of the output's BLQ records; NaN when there is none."""
    keep = np.isin(nm.ids, problem.ids)
    lloq = nm.records.get("LLOQ")
    grid = np.asarray(lloq, dtype=float)[keep] if lloq is not None else np.full(m_all.shape, np.nan)
    if "lloq" in problem.records:
        grid = np.where(cens_grid, problem.records["lloq"], grid)
    limit = grid[m_all]
    cens = cens_grid[m_all]
    if cens.any():
        limit = np.where(np.isfinite(limit), limit, limit[cens].min())
    return limit


def _blq_summary(cens, sims, limit, bin_index, n_bins: int, ci: float, units) -> dict:
    """Observed BLQ fraction per bin, the simulated one per replicate (a simulated value below its
    record's ``limit``; failed simulations, NaN, left out) and its median and central ``ci``
    interval over replicates."""
    alpha = 100 * (1 - ci) / 2
    valid = np.isfinite(sims)
    below = valid & (sims < limit)                       # NaN limit: never below
    obs = np.full(n_bins, np.nan)
    sim = np.full((sims.shape[0], n_bins), np.nan)
    n_blq = np.zeros(n_bins, dtype=int)
    for k in range(n_bins):
        sel = bin_index == k
        if sel.any():
            obs[k] = cens[sel].mean()
            n_blq[k] = int(cens[sel].sum())
            with np.errstate(invalid="ignore", divide="ignore"):
                sim[:, k] = below[:, sel].sum(-1) / valid[:, sel].sum(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # an empty bin: all-NaN column
        lo, med, hi = np.nanpercentile(sim, [alpha, 50.0, 100 - alpha], axis=0)
    frac = {"units": "1", "long_name": f"fraction of records below the LLOQ ({units})" if units else
            "fraction of records below the LLOQ"}
    return {"blq_observed": ("bin", obs, frac), "blq_sim_median": ("bin", med, frac),
            "blq_sim_lower": ("bin", lo, frac), "blq_sim_upper": ("bin", hi, frac),
            "blq_inside": ("bin", (obs >= lo) & (obs <= hi)),
            "blq_sim_fraction": (("replicate", "bin"), sim, frac), "n_blq": ("bin", n_blq)}


def _bin_max(values, bin_index, n_bins: int) -> np.ndarray:
    """Largest finite value per bin (NaN: none)."""
    out = np.full(n_bins, np.nan)
    for k in range(n_bins):
        v = values[(bin_index == k) & np.isfinite(values)]
        if v.size:
            out[k] = v.max()
    return out


def _binning_text(bins, edges, n_distinct: int) -> str:
    kind = ("one bin per distinct observation time" if bins is None and n_distinct <= MAX_NOMINAL_BINS
            else "user-given edges" if not isinstance(bins, (int, np.integer, type(None)))
            else "quantile bins of observation time")
    return f"{kind}; edges (h): " + ", ".join(f"{e:g}" for e in edges)
