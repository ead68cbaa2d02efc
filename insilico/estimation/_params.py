"""The estimated quantities of a population model as one vector, on two scales.

* natural: what a modeller reads and NONMEM reports — typical values (parameter units),
  covariate-effect thetas, Omega elements ``OMEGA(i,j)`` (variances/covariances of eta) and
  residual variances ``SIGMA(k,k)``; their names and order are the one convention of
  `insilico.population.population_quantities` (shared with fit stores, trial replicates and
  NONMEM imports); with inter-occasion variability the variances of kappa ``OMEGA_IOV(j,j)``
  (kind ``omega_iov``, 1-based in the order of the ``iov`` parameters; one diagonal Omega_IOV shared
  by every occasion, NONMEM's $OMEGA BLOCK SAME convention) follow the Omega elements, before SIGMA;
* transformed (unconstrained, what the optimiser moves): log of typical values and of
  categorical multipliers; effect thetas as they are; per Omega block the lower Cholesky factor
  with log diagonal (Pinheiro & Bates 1996, "unconstrained parametrizations for variance-covariance
  matrices"); log of the IOV SDs and of residual SDs.

With several observed outputs the SIGMAs of each output's residual model follow one another
(the primary output's first, then the others in order), and ``population(nat)`` is a
:class:`FitPopulation` whose ``residuals`` hold one residual model per output.

Both maps are pure ``jax.numpy`` so the covariance step can differentiate the objective on the
natural scale (NONMEM reports standard errors of THETA, OMEGA and SIGMA elements).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from insilico.errors import SpecError
from insilico.population import SIGMA_FIELDS as _SIGMA_FIELDS
from insilico.population import Effect, PopulationModel, ResidualError, omega_blocks, population_quantities

__all__ = ["Entry", "FitPopulation", "ParameterVector", "omega_blocks"]


@dataclass(frozen=True)
class Entry:
    """One estimated quantity: ``name`` (see `insilico.estimation` naming), ``kind`` (typical,
    effect, multiplier, omega, sigma), ``initial`` value on the natural scale, ``fixed``,
    natural-scale ``bounds`` (lower, upper) or None."""

    name: str
    kind: str
    initial: float
    fixed: bool = False
    bounds: tuple[float, float] | None = None


class FitPopulation(PopulationModel):
    """A :class:`PopulationModel` with one residual model per observed output (``residuals``, in
    `insilico.estimation.Problem.outputs` order; ``residual`` is the first)."""

    residuals: tuple = ()


class ParameterVector:
    """Packing of a :class:`PopulationModel`'s estimated numbers (see module docstring).

    ``entries``: every quantity in a fixed order (typical values and effects per parameter in
    spec order, then Omega elements block by block, then OMEGA_IOV, then SIGMA); ``free``: indices
    not fixed.
    ``to_natural``/``to_transformed`` map full vectors; ``population(nat)`` builds the
    :class:`PopulationModel` with those values (traceable). ``extra_residuals``: {output:
    `ResidualError`} of the observed outputs other than the primary one, in order."""

    def __init__(self, template: PopulationModel, fix=(), bounds=None, extra_residuals=None):
        self.template = template
        bounds = dict(bounds or {})
        if template.residual is None:
            raise SpecError("residual_error", "required for estimation")
        extra = dict(extra_residuals or {})
        where = [("residual_error", template.residual), *((f"residual_errors.{o}", r) for o, r in extra.items())]
        k = 0
        for field, r in where:
            for f in _SIGMA_FIELDS[r.type]:
                k += 1
                if not float(getattr(r, f)) > 0:
                    raise SpecError(f"{field}.{f}", f"must be > 0 to be estimated (or list SIGMA({k},{k}) in "
                                                    "estimate.fix)")
        self.residual_types = tuple(r.type for _, r in where)
        self.sigma_fields = tuple(f for t in self.residual_types for f in _SIGMA_FIELDS[t])
        self.blocks = omega_blocks(np.asarray(template.omega)) if template.bsv_names else []
        # names, order and initial values: the one convention of `insilico.population.population_quantities`
        entries = [Entry(q.name, q.kind, q.value)
                   for q in population_quantities(template, residuals=[r for _, r in where])]
        names = [e.name for e in entries]
        fix = list(fix)
        for i, f in enumerate(fix):
            if f not in names:
                raise SpecError(f"estimate.fix.{i}", f"unknown name {f!r}; estimated quantities: {', '.join(names)}")
        for b in bounds:
            if b not in names:
                raise SpecError(f"estimate.bounds.{b}", f"unknown name; estimated quantities: {', '.join(names)}")
            if names.index(b) >= 0 and entries[names.index(b)].kind in ("omega", "omega_iov", "sigma"):
                raise SpecError(f"estimate.bounds.{b}", "bounds apply to typical values and effects only")
        self._check_block_fix(fix)
        self.entries = tuple(Entry(e.name, e.kind, e.initial, e.name in fix,
                                   tuple(bounds[e.name]) if e.name in bounds else None) for e in entries)
        for e in self.entries:
            if e.bounds and not e.bounds[0] <= e.initial <= e.bounds[1]:
                raise SpecError(f"estimate.bounds.{e.name}", f"initial value {e.initial:g} is outside {e.bounds}")
            if e.bounds and e.kind in ("typical", "multiplier") and e.bounds[0] <= 0:
                raise SpecError(f"estimate.bounds.{e.name}", "the lower bound of a typical value must be > 0")
        self.names = tuple(e.name for e in self.entries)
        self.free = np.array([i for i, e in enumerate(self.entries) if not e.fixed], dtype=int)
        self.initial = np.array([e.initial for e in self.entries])

    def _check_block_fix(self, fix):
        for block in self.blocks:
            names = [f"OMEGA({i + 1},{j + 1})" for a, i in enumerate(block) for j in block[:a + 1]]
            listed = [n for n in names if n in fix]
            if listed and len(listed) != len(names):
                raise SpecError("estimate.fix", f"fix an Omega block as a whole: {', '.join(names)} "
                                                f"(listed: {', '.join(listed)})")

    # -- scales -------------------------------------------------------------------------------------
    def _slices(self):
        """(index of the first Omega element, or of the first variance entry after it, number of
        Omega elements). Entries from the first Omega element on are variances (OMEGA blocks, then
        OMEGA_IOV and SIGMA, both log-SD on the transformed scale)."""
        kinds = [e.kind for e in self.entries]
        first_om = next(i for i, k in enumerate(kinds) if k in ("omega", "omega_iov", "sigma"))
        return first_om, kinds.count("omega")

    def to_transformed(self, nat):
        nat = jnp.asarray(nat)
        first_om, n_om = self._slices()
        out = []
        for i, e in enumerate(self.entries[:first_om]):
            out.append(jnp.log(nat[i]) if e.kind in ("typical", "multiplier") else nat[i])
        pos = first_om
        for block in self.blocks:
            m = len(block)
            om = _fill_lower(nat[pos:pos + m * (m + 1) // 2], m)
            low = jnp.linalg.cholesky(om + jnp.tril(om, -1).T)
            out.extend(_lower_entries(low.at[jnp.diag_indices(m)].set(jnp.log(jnp.diag(low))), m))
            pos += m * (m + 1) // 2
        out.extend(0.5 * jnp.log(nat[pos:]))
        return jnp.stack(out)

    def to_natural(self, tr):
        tr = jnp.asarray(tr)
        first_om, _ = self._slices()
        out = []
        for i, e in enumerate(self.entries[:first_om]):
            out.append(jnp.exp(tr[i]) if e.kind in ("typical", "multiplier") else tr[i])
        pos = first_om
        for block in self.blocks:
            m = len(block)
            low = _fill_lower(tr[pos:pos + m * (m + 1) // 2], m)
            low = low.at[jnp.diag_indices(m)].set(jnp.exp(jnp.diag(low)))
            out.extend(_lower_entries(low @ low.T, m))
            pos += m * (m + 1) // 2
        out.extend(jnp.exp(2.0 * tr[pos:]))
        return jnp.stack(out)

    def transformed_bounds(self) -> list[tuple[float | None, float | None]]:
        """Bounds of the free entries on the transformed scale (for L-BFGS-B)."""
        out = []
        for i in self.free:
            e = self.entries[i]
            if e.bounds is None:
                out.append((None, None))
            elif e.kind in ("typical", "multiplier"):
                out.append((float(np.log(e.bounds[0])), float(np.log(e.bounds[1]))))
            else:
                out.append(tuple(float(b) for b in e.bounds))
        return out

    # -- the population model with given values -----------------------------------------------------
    def omega(self, nat):
        """Omega (k x k) from a natural vector (zeros outside the blocks)."""
        t = self.template
        k = len(t.bsv_names)
        om = jnp.zeros((k, k))
        pos = self._slices()[0]
        for block in self.blocks:
            m = len(block)
            sub = _fill_lower(nat[pos:pos + m * (m + 1) // 2], m)
            sub = sub + jnp.tril(sub, -1).T
            idx = jnp.asarray(block)
            om = om.at[jnp.ix_(idx, idx)].set(sub)
            pos += m * (m + 1) // 2
        return om

    def population(self, nat) -> PopulationModel:
        """The :class:`PopulationModel` whose numbers are the natural vector ``nat``."""
        t = self.template
        nat = jnp.asarray(nat)
        pos, typical, effects = 0, [], []
        for effs in t.effects:
            typical.append(nat[pos])
            pos += 1
            new = []
            for e in effs:
                if e.type == "categorical":
                    m = len(e.labels)
                    new.append(Effect(e.covariate, e.type, ref=e.ref, table=nat[pos:pos + m], labels=e.labels))
                    pos += m
                else:
                    new.append(Effect(e.covariate, e.type, nat[pos], e.ref))
                    pos += 1
            effects.append(tuple(new))
        omega = chol = None
        if t.bsv_names:
            omega = self.omega(nat)
            chol = jnp.linalg.cholesky(omega)
        iov_sd = tuple(jnp.sqrt(nat[i]) for i, e in enumerate(self.entries) if e.kind == "omega_iov")
        return FitPopulation(t.names, t.units, t.long_names, tuple(typical), tuple(effects), t.bsv_names,
                             omega, chol, t.iov_names, iov_sd, t.occasions, *self._residuals(nat))

    def _residuals(self, nat):
        """(first residual model, all of them) from the SIGMAs of ``nat``."""
        sig = jnp.sqrt(nat[len(self.entries) - len(self.sigma_fields):])
        out, pos = [], 0
        for rtype in self.residual_types:
            fields = _SIGMA_FIELDS[rtype]
            sds = {f: sig[pos + k] for k, f in enumerate(fields)}
            pos += len(fields)
            out.append(ResidualError(rtype, sds.get("additive", 0.0), sds.get("proportional", 0.0),
                                     sds.get("exponential", 0.0)))
        return out[0], tuple(out)


def _fill_lower(values, m):
    """m x m lower-triangular matrix from its row-major lower-triangle entries."""
    rows, cols = np.tril_indices(m)
    return jnp.zeros((m, m)).at[rows, cols].set(values)


def _lower_entries(mat, m):
    rows, cols = np.tril_indices(m)
    return [mat[r, c] for r, c in zip(rows, cols)]
