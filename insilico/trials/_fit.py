"""Population-parameter uncertainty of a trial's replicates: a population fit as the cohort
(``cohort: fit.zarr``, `FitSource`), or a covariance of the estimates written next to a
population model (``replicates.covariance``, e.g. the ``covariance.yaml`` of ``insilico import
nonmem --cov``, `CovarianceSource`).

A fit cohort is the fitted population model with covariates resampled from the fitted subjects
(`insilico.cohorts.fit_cohort_spec`). With ``replicates.fit_uncertainty`` (the default for a fit
cohort), or with ``replicates.covariance``, each replicate r simulates its own values of the
estimated quantities (typical values, effects, Omega, Omega_IOV, sigma; named by the one convention of
`insilico.population.population_quantities`, which estimation uses too: ``CL``, ``CL.WT``,
``V.SEX[F]``, ``OMEGA(i,j)``, ``OMEGA_IOV(j,j)``, ``SIGMA(k,k)``), the same for all its subjects:

* a covariance of the estimates (a maximum-likelihood fit's, FOCE-I or Laplace, or the
  covariance file's): theta_r ~ MVN(estimate, covariance of the estimates) over the estimated
  quantities (fixed ones, and a covariance file's rows of zeros, stay at their value), on the
  natural scale the covariance is reported on. A draw with a typical value, multiplier,
  inter-occasion or residual variance <= 0, or an Omega that is not positive definite, is not a
  valid population: it is redrawn. Attempt a = 0, 1, ... of replicate r uses the standard normals
  ``normal(fold_in(fold_in(fold_in(fold_in(PRNGKey(seed), UNCERTAINTY), r), a)), (q,))`` and the
  first valid attempt is kept, so the draws follow the MVN truncated to the valid region
  (rejection sampling); after `MAX_ATTEMPTS` invalid attempts the spec is refused. The factor
  L (L L^T = covariance) is the Cholesky factor, or for a singular covariance (e.g. several
  quantities that are one NONMEM THETA) V diag(sqrt(w)) of its eigendecomposition, eigenvalues
  below the numerical rank's threshold set to 0 (`_factor`); theta = estimate + L z.
  One function draws for both sources (`_Estimates.covariance_draws`).
* a Bayesian fit (NUTS, variable ``posterior (chain, draw, param)``): one posterior draw per
  replicate, chosen uniformly with replacement among all chains' draws by
  ``randint(fold_in(fold_in(fold_in(PRNGKey(seed), UNCERTAINTY), r), 0), 0, chains * draws)``
  (posterior draws are valid by construction).

UNCERTAINTY is the trial stream ``uncertainty`` (`insilico.streams`). A replicate's values
depend only on (seed, r): not on the number of replicates, chunking or workers (the product
with the covariance factor is a fixed-order sum of elementwise terms).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from insilico.batching import bucket_size
from insilico.config import load_yaml
from insilico.errors import SpecError
from insilico.population import population_quantities
from insilico.streams import stream_id

__all__ = ["MAX_ATTEMPTS", "CovarianceSource", "FitSource", "tree_digest"]

MAX_ATTEMPTS = 1000      # invalid draws of one replicate before the uncertainty is refused
_POSITIVE = ("typical", "multiplier", "omega_iov", "sigma")
_SYMMETRY_RTOL = 1e-6    # a covariance file's |C_ij - C_ji| <= this x sqrt(C_ii C_jj)
_PSD_RTOL = 1e-9         # and its eigenvalues >= -this x the largest


def tree_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for f in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


@functools.partial(jax.jit, static_argnames=("q",))
def _normals(seed, stream, replicates, attempt, q: int):
    """(n, q) standard normals of ``replicates`` on ``attempt`` (module docstring)."""
    root = jax.random.fold_in(jax.random.PRNGKey(seed), stream)
    return jax.vmap(lambda r: jax.random.normal(jax.random.fold_in(jax.random.fold_in(root, r), attempt), (q,)))(
        replicates)


@jax.jit
def _indices(seed, stream, replicates, m):
    root = jax.random.fold_in(jax.random.PRNGKey(seed), stream)
    return jax.vmap(lambda r: jax.random.randint(jax.random.fold_in(jax.random.fold_in(root, r), 0), (), 0, m))(
        replicates)


def _padded(replicates: np.ndarray) -> np.ndarray:
    r = np.asarray(replicates, dtype=np.uint32)
    return np.concatenate([r, np.zeros(bucket_size(r.size) - r.size, np.uint32)])


def _stream_args(seed: int) -> tuple:
    return np.int64(seed), np.uint32(stream_id("uncertainty"))


def _factor(cov: np.ndarray) -> np.ndarray:
    """A matrix L with L L^T = ``cov``: the Cholesky factor, or for a positive semi-definite
    (singular) ``cov`` = V diag(w) V^T (`numpy.linalg.eigh`) L = V diag(sqrt(w)) with the
    eigenvalues below the numerical rank's threshold (q x machine epsilon x the largest, as
    `numpy.linalg.matrix_rank`) set to 0, so that quantities that are one linear function of the
    same estimates (e.g. several multipliers from one NONMEM THETA) stay equal up to rounding."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(cov)
        cut = cov.shape[0] * np.finfo(float).eps * max(float(w.max()), 0.0)
        return v * np.sqrt(np.where(w > cut, w, 0.0))


@dataclass(frozen=True)
class _Estimates:
    """Estimated quantities (``names``, ``kinds``: typical, effect, multiplier, omega, omega_iov, sigma;
    ``estimate`` on the natural scale; ``free``: varied by the uncertainty) and the covariance of
    the free ones (None: none). Shared by `FitSource` and `CovarianceSource`."""

    path: Path
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    estimate: np.ndarray
    free: np.ndarray
    covariance: np.ndarray | None

    # -- validity -----------------------------------------------------------------------------------
    def valid(self, values: np.ndarray) -> np.ndarray:
        """(n,) whether each row of ``values`` (n, p) is a valid population: typical values,
        multipliers, inter-occasion (OMEGA_IOV) and residual variances > 0, every Omega positive definite."""
        values = np.atleast_2d(values)
        kinds = np.asarray(self.kinds)
        ok = np.all(values[:, np.isin(kinds, _POSITIVE)] > 0, axis=1) & np.all(np.isfinite(values), axis=1)
        omega = self._omegas(values)
        if omega is not None:
            with np.errstate(invalid="ignore"):
                ok &= np.linalg.eigvalsh(np.where(np.isfinite(omega), omega, 0.0)).min(axis=1) > 0
        return ok

    def _omegas(self, values: np.ndarray) -> np.ndarray | None:
        """(n, k, k) Omega of each row (elements not named are 0), or None without BSV."""
        idx = [(i, *map(int, n[6:-1].split(","))) for i, n in enumerate(self.names) if n.startswith("OMEGA(")]
        if not idx:
            return None
        k = max(max(a, b) for _, a, b in idx)
        out = np.zeros((values.shape[0], k, k))
        for i, a, b in idx:
            out[:, a - 1, b - 1] = out[:, b - 1, a - 1] = values[:, i]
        return out

    # -- draws --------------------------------------------------------------------------------------
    def covariance_draws(self, seed: int, replicates, field: str, hint: str) -> np.ndarray:
        """(n, p) rows theta_r ~ MVN(estimate, covariance) over the free quantities, redrawn until
        valid (module docstring); fixed quantities at the estimate. No valid draw in
        `MAX_ATTEMPTS`: `SpecError` ``field`` ending with ``hint``."""
        reps = np.asarray(replicates, dtype=np.int64).reshape(-1)
        out = np.tile(self.estimate, (reps.size, 1))
        lower = _factor(self.covariance)
        mean = self.estimate[self.free]
        pending = np.arange(reps.size)
        for attempt in range(MAX_ATTEMPTS):
            z = np.asarray(_normals(*_stream_args(seed), _padded(reps[pending]), np.uint32(attempt),
                                    q=mean.size))[: pending.size]
            theta = np.broadcast_to(mean, z.shape).copy()
            for j in range(mean.size):     # fixed-order sum: a row does not depend on the others
                theta += lower[:, j] * z[:, j:j + 1]
            rows = np.tile(self.estimate, (pending.size, 1))
            rows[:, self.free] = theta
            ok = self.valid(rows)
            out[pending[ok]] = rows[ok]
            pending = pending[~ok]
            if pending.size == 0:
                return out
        raise SpecError(field, f"the covariance of the estimates in {self.path.name} gives no valid population "
                               f"(typical values and variances > 0, Omega positive definite) in {MAX_ATTEMPTS} "
                               f"draws for replicate {int(reps[pending[0]])}; {hint}")

    def values(self, row: np.ndarray) -> dict[str, float]:
        """``{name: value}`` of one row of ``draws``."""
        return {n: float(v) for n, v in zip(self.names, row)}


@dataclass(frozen=True)
class FitSource(_Estimates):
    """What a trial takes from a fit store: the fitted quantities (``names``, ``kinds``,
    ``estimate`` on the natural scale, ``free`` = not fixed), the covariance of the estimated
    ones (None without a covariance step), the posterior draws (m, p) of a Bayesian fit,
    the fitted structural ``model`` (``{name | import, parameters}``), the ``method`` and the
    store's ``digest``."""

    posterior: np.ndarray | None
    covariance_step: str
    model: dict
    method: str
    digest: str

    @classmethod
    def from_dataset(cls, ds, path) -> FitSource:
        """The fit source of the fit store ``ds`` (`insilico.store.open_fit`) read from ``path``."""
        path = Path(path)
        free = ~np.asarray(ds["fixed"].values, bool)
        cov = np.asarray(ds["covariance"].values, float)[np.ix_(free, free)]
        posterior = None
        if "posterior" in ds:
            post = np.asarray(ds["posterior"].transpose("chain", "draw", "param").values, float)
            posterior = post.reshape(-1, post.shape[-1])
        pm = json.loads(ds.attrs.get("population_model", "{}"))
        return cls(path, tuple(map(str, ds["param"].values)), tuple(map(str, ds["kind"].values)),
                   np.asarray(ds["estimate"].values, float), free,
                   cov if cov.size and np.all(np.isfinite(cov)) else None, posterior,
                   str(ds.attrs.get("covariance_step", "")), dict(pm.get("model", {})),
                   str(ds.attrs.get("method", "")), tree_digest(path))

    @property
    def uncertainty(self) -> str | None:
        """Where the replicate uncertainty comes from: ``posterior``, ``covariance`` or None."""
        if self.posterior is not None:
            return "posterior"
        return "covariance" if self.covariance is not None else None

    def draws(self, seed: int, replicates) -> np.ndarray:
        """(n, p) the fitted quantities of each of ``replicates`` (module docstring); rows are
        the estimates when the fit has no uncertainty."""
        reps = np.asarray(replicates, dtype=np.int64).reshape(-1)
        if self.posterior is not None:
            m = self.posterior.shape[0]
            pick = np.asarray(_indices(*_stream_args(seed), _padded(reps), np.int32(m)))[: reps.size]
            return self.posterior[pick]
        if self.covariance is None:
            return np.tile(self.estimate, (reps.size, 1))
        return self.covariance_draws(seed, reps, "replicates.fit_uncertainty",
                                     "set replicates.fit_uncertainty: false to simulate at the estimates")


_COVARIANCE_KEYS = {"names", "matrix", "source", "scale", "nonmem"}


@dataclass(frozen=True)
class CovarianceSource(_Estimates):
    """A covariance of the estimates of a cohort's population model, from a file
    (``replicates.covariance``): the quantities it names (``names``, ``kinds``), their values in
    the cohort's population model (``estimate``: the mean of the draws), ``free`` (a row that is
    not all zero), the covariance of the free ones, the file's ``source`` (what it was computed
    from, e.g. ``run1.cov``) and its ``digest`` (SHA-256 of its bytes)."""

    source: str
    digest: str
    uncertainty = "covariance"

    @classmethod
    def from_file(cls, path, pop, field: str = "replicates.covariance") -> CovarianceSource:
        """Read ``path``: YAML with ``names`` (the estimated quantities,
        `insilico.population.population_quantities`)
        and ``matrix`` (their covariance on the natural scale, square, symmetric, positive
        semi-definite; rows of zeros for fixed quantities), optionally ``source``, ``scale`` and
        ``nonmem`` (descriptions; the file ``insilico import nonmem --cov`` writes). Its names must
        be exactly the estimated quantities of ``pop`` (the cohort's population model; its
        ``OMEGA_IOV(j,j)`` may be left out: they then stay at the cohort's values): a name it lacks
        or has in excess is a `SpecError` ``field`` naming it."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise SpecError(field, f"cannot read the covariance file {path}: {e.strerror or e}") from None
        try:
            data = load_yaml(raw.decode("utf-8", errors="replace"), str(path))
        except SpecError as e:
            raise SpecError(field, e.message) from None
        if not isinstance(data, dict) or "names" not in data or "matrix" not in data:
            raise SpecError(field, f"{path.name} is not a covariance of the estimates: expected a mapping with "
                                   "`names` and `matrix` (as insilico import nonmem --cov writes)")
        extra = sorted(map(str, set(data) - _COVARIANCE_KEYS))
        if extra:
            raise SpecError(field, f"{path.name}: unknown key {extra[0]!r} (known: "
                                   f"{', '.join(sorted(_COVARIANCE_KEYS))})")
        names = data["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
            raise SpecError(field, f"{path.name}: `names` must be a non-empty list of names")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SpecError(field, f"{path.name}: name {dup[0]!r} appears more than once")
        try:
            cov = np.array(data["matrix"], dtype=float)
        except (TypeError, ValueError):
            raise SpecError(field, f"{path.name}: `matrix` must be a list of rows of numbers") from None
        if cov.shape != (len(names), len(names)):
            raise SpecError(field, f"{path.name}: `matrix` must be {len(names)} x {len(names)} (one row and column "
                                   f"per name), got shape {cov.shape}")
        quantities = {n: (k, v) for n, k, v in population_quantities(pop)}
        optional = {f"OMEGA({i + 1},{j + 1})" for i in range(len(pop.bsv_names)) for j in range(i)}
        optional |= {n for n, (k, _) in quantities.items() if k == "omega_iov"}
        for n in names:
            if n not in quantities and n not in optional:
                raise SpecError(field, f"{path.name}: {n!r} is not an estimated quantity of the cohort's population "
                                       f"model (its quantities: {', '.join(quantities)})")
        for n, (kind, v) in quantities.items():
            # an Omega covariance of 0 and the OMEGA_IOV variances may be left out
            if n not in names and not (n in optional and (v == 0 or kind == "omega_iov")):
                raise SpecError(field, f"{path.name} has no row for {n!r}, an estimated quantity of the cohort's "
                                       "population model (the covariance must be of this model's estimates)")
        _check_matrix(cov, names, path.name, field)
        cov = (cov + cov.T) / 2
        free = np.diag(cov) > 0
        kinds = tuple(quantities[n][0] if n in quantities else "omega" for n in names)
        estimate = np.array([quantities[n][1] if n in quantities else 0.0 for n in names])
        return cls(path, tuple(names), kinds, estimate, free, cov[np.ix_(free, free)] if free.any() else None,
                   str(data.get("source", "")), hashlib.sha256(raw).hexdigest())

    def draws(self, seed: int, replicates) -> np.ndarray:
        """(n, p) the quantities of each of ``replicates`` (module docstring)."""
        reps = np.asarray(replicates, dtype=np.int64).reshape(-1)
        if self.covariance is None:    # every row of zeros: nothing is uncertain
            return np.tile(self.estimate, (reps.size, 1))
        return self.covariance_draws(seed, reps, "replicates.covariance",
                                     "check the covariance and the cohort's values, or remove replicates.covariance")


def _check_matrix(cov: np.ndarray, names, where: str, field: str) -> None:
    """Refuse a covariance that is not finite, symmetric (`_SYMMETRY_RTOL`), with variances >= 0
    and positive semi-definite (`_PSD_RTOL`)."""
    if not np.all(np.isfinite(cov)):
        raise SpecError(field, f"{where}: `matrix` has a value that is not finite")
    d = np.diag(cov)
    if np.any(d < 0):
        raise SpecError(field, f"{where}: the variance of {names[int(np.flatnonzero(d < 0)[0])]!r} is negative")
    scale = np.sqrt(np.outer(d, d))
    bad = np.abs(cov - cov.T) > _SYMMETRY_RTOL * scale
    if np.any(bad):
        i, j = np.argwhere(bad)[0]
        raise SpecError(field, f"{where}: `matrix` is not symmetric ({names[i]!r}, {names[j]!r}: {cov[i, j]:.6g} "
                               f"vs {cov[j, i]:.6g})")
    w = np.linalg.eigvalsh((cov + cov.T) / 2)
    if w.size and w.min() < -_PSD_RTOL * max(w.max(), 0.0):
        raise SpecError(field, f"{where}: `matrix` is not positive semi-definite (smallest eigenvalue {w.min():.3g})")
