"""A population fit as a trial's cohort (``cohort: fit.zarr``) and its uncertainty as the
replicates' population-parameter uncertainty.

The cohort is the fitted population model with covariates resampled from the fitted subjects
(`insilico.cohorts.fit_cohort_spec`). With ``replicates.fit_uncertainty`` (the default for a fit
cohort) each replicate r simulates its own values of the fitted quantities (typical values,
effects, Omega, sigma), the same for all its subjects:

* a maximum-likelihood fit (FOCE-I, Laplace): theta_r ~ MVN(estimate, covariance of the
  estimates) over the estimated quantities (fixed ones stay at their value), on the natural
  scale the covariance is reported on. A draw with a typical value, multiplier or residual
  variance <= 0, or an Omega that is not positive definite, is not a valid population: it is
  redrawn. Attempt a = 0, 1, ... of replicate r uses the standard normals
  ``normal(fold_in(fold_in(fold_in(fold_in(PRNGKey(seed), UNCERTAINTY), r), a)), (q,))`` and the
  first valid attempt is kept, so the draws follow the MVN truncated to the valid region
  (rejection sampling); after `MAX_ATTEMPTS` invalid attempts the spec is refused.
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
from insilico.errors import SpecError
from insilico.streams import stream_id

__all__ = ["MAX_ATTEMPTS", "FitSource", "tree_digest"]

MAX_ATTEMPTS = 1000      # invalid draws of one replicate before the fit's uncertainty is refused
_POSITIVE = ("typical", "multiplier", "sigma")


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


def _factor(cov: np.ndarray) -> np.ndarray:
    """A matrix L with L L^T = ``cov``: the Cholesky factor, or for a positive semi-definite
    (singular) ``cov`` the symmetric square root with negative eigenvalues set to 0."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(cov)
        return v * np.sqrt(np.maximum(w, 0.0))


@dataclass(frozen=True)
class FitSource:
    """What a trial takes from a fit store: the fitted quantities (``names``, ``kinds``,
    ``estimate`` on the natural scale, ``free`` = not fixed), the covariance of the estimated
    ones (None without a covariance step), the posterior draws (m, p) of a Bayesian fit,
    the fitted structural ``model`` (``{name | import, parameters}``), the ``method`` and the
    store's ``digest``."""

    path: Path
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    estimate: np.ndarray
    free: np.ndarray
    covariance: np.ndarray | None
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

    # -- validity -----------------------------------------------------------------------------------
    def valid(self, values: np.ndarray) -> np.ndarray:
        """(n,) whether each row of ``values`` (n, p) is a valid population: typical values,
        multipliers and residual variances > 0, every Omega positive definite."""
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
    def draws(self, seed: int, replicates) -> np.ndarray:
        """(n, p) the fitted quantities of each of ``replicates`` (module docstring); rows are
        the estimates when the fit has no uncertainty."""
        reps = np.asarray(replicates, dtype=np.int64).reshape(-1)
        args = (np.int64(seed), np.uint32(stream_id("uncertainty")))
        if self.posterior is not None:
            m = self.posterior.shape[0]
            pick = np.asarray(_indices(*args, _padded(reps), np.int32(m)))[: reps.size]
            return self.posterior[pick]
        out = np.tile(self.estimate, (reps.size, 1))
        if self.covariance is None:
            return out
        lower = _factor(self.covariance)
        mean = self.estimate[self.free]
        pending = np.arange(reps.size)
        for attempt in range(MAX_ATTEMPTS):
            z = np.asarray(_normals(*args, _padded(reps[pending]), np.uint32(attempt), q=mean.size))[: pending.size]
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
        raise SpecError("replicates.fit_uncertainty", f"the covariance of the estimates in {self.path.name} gives no "
                                                      f"valid population (typical values and variances > 0, Omega "
                                                      f"positive definite) in {MAX_ATTEMPTS} draws for replicate "
                                                      f"{int(reps[pending[0]])}; set replicates.fit_uncertainty: "
                                                      "false to simulate at the estimates")

    def values(self, row: np.ndarray) -> dict[str, float]:
        """``{name: value}`` of one row of :meth:`draws`."""
        return {n: float(v) for n, v in zip(self.names, row)}
