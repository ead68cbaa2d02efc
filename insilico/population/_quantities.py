"""The names of a population model's estimated quantities: one convention for estimation
(`insilico.estimation`: fixing, bounds, results, ``--json``, the fit store's ``param``), trial
replicates (a fit's or a covariance file's uncertainty), `insilico.cohorts.population_from_estimates`
and ``insilico import nonmem --cov``.

In this order (NONMEM's THETA, OMEGA, SIGMA grouping; values on the natural scale):

* per parameter, in spec order: its typical value ``P`` (kind ``typical``, the parameter's units),
  then each covariate effect in spec order: the theta ``P.COV`` (kind ``effect``) or, for a
  categorical effect, one multiplier per category ``P.COV[level]`` (kind ``multiplier``, in the
  category order of the covariate);
* Omega, block by block (`omega_blocks`: the connected components of its nonzero pattern, NONMEM's
  $OMEGA BLOCK structure), each block's lower triangle row by row: ``OMEGA(i,j)`` (kind ``omega``),
  i >= j, 1-based in the order of ``bsv.parameters``; a variance for i = j, a covariance otherwise
  (an element inside a block may be 0: it is estimated with its block);
* with inter-occasion variability, the kappa variances ``OMEGA_IOV(j,j)`` (kind
  ``omega_iov``, 1-based in the order of the ``iov`` parameters: the diagonal of the one Omega_IOV
  that every occasion shares, NONMEM's ``$OMEGA BLOCK(n) SAME``);
* the residual variances ``SIGMA(k,k)`` (kind ``sigma``; NONMEM's EPS variances): per residual
  model its SDs squared in `SIGMA_FIELDS` order (k = 1 the proportional or only error, k = 2 the
  additive error of a combined model), numbered on over several observed outputs. A ``combined1``
  model (SD = a + b f) is named like ``combined``: SIGMA(1,1) = b^2, SIGMA(2,2) = a^2, the squares of
  its two SD coefficients. Here these are not the variances of two EPS: NONMEM writes this model
  with THETAs, ``W = THETA(b)*IPRED + THETA(a)`` and ``$SIGMA 1 FIX``, whose values are the square
  roots of these SIGMAs.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insilico.population._model import PopulationModel

__all__ = ["SIGMA_FIELDS", "Quantity", "omega_blocks", "population_quantities"]

SIGMA_FIELDS = {"additive": ("additive",), "proportional": ("proportional",),
                "combined": ("proportional", "additive"), "combined1": ("proportional", "additive"),
                "exponential": ("exponential",)}
"""Residual type -> the `ResidualError` SD fields whose squares are its SIGMA(k,k), in k order
(``combined1``: the squared SD coefficients, module docstring)."""


class Quantity(NamedTuple):
    """One estimated quantity: ``name`` (module docstring), ``kind`` (typical, effect, multiplier,
    omega, omega_iov, sigma) and ``value`` on the natural scale (a SIGMA is a variance: the SD squared)."""

    name: str
    kind: str
    value: float


def omega_blocks(omega) -> list[list[int]]:
    """Index sets of the blocks of ``omega`` (k x k): connected components of its nonzero pattern,
    each sorted, in order of their first index (NONMEM $OMEGA BLOCK structure)."""
    omega = np.asarray(omega)
    k = omega.shape[0]
    seen, blocks = set(), []
    for start in range(k):
        if start in seen:
            continue
        todo, block = [start], set()
        while todo:
            i = todo.pop()
            if i in block:
                continue
            block.add(i)
            todo.extend(j for j in range(k) if j not in block and omega[i, j] != 0)
        seen |= block
        blocks.append(sorted(block))
    return blocks


def population_quantities(pop: PopulationModel, residuals=None) -> tuple[Quantity, ...]:
    """The estimated quantities of ``pop`` (module docstring), as :class:`Quantity` tuples
    ``(name, kind, value)``.

    ``residuals``: the residual models whose SIGMAs are listed, in order (several observed
    outputs: the primary output's first); default ``pop.residuals`` when ``pop`` has them (a fit's
    population), else ``(pop.residual,)``, or none without a residual model."""
    out = []
    for name, typical, effects in zip(pop.names, pop.typical, pop.effects):
        out.append(Quantity(name, "typical", float(typical)))
        for e in effects:
            if e.type == "categorical":
                out += [Quantity(f"{name}.{e.covariate}[{lab}]", "multiplier", float(m))
                        for lab, m in zip(e.labels, np.asarray(e.table))]
            else:
                out.append(Quantity(f"{name}.{e.covariate}", "effect", float(e.theta)))
    if pop.bsv_names:
        omega = pop.omega
        for block in omega_blocks(np.asarray(omega)):
            for a, i in enumerate(block):
                out += [Quantity(f"OMEGA({i + 1},{j + 1})", "omega", float(omega[i, j])) for j in block[:a + 1]]
    out += [Quantity(f"OMEGA_IOV({j + 1},{j + 1})", "omega_iov", float(sd) ** 2) for j, sd in enumerate(pop.iov_sd)]
    if residuals is None:
        residuals = tuple(getattr(pop, "residuals", ()) or ()) or ((pop.residual,) if pop.residual is not None else ())
    k = 0
    for r in residuals:
        for f in SIGMA_FIELDS[r.type]:
            k += 1
            sd = float(getattr(r, f))
            out.append(Quantity(f"SIGMA({k},{k})", "sigma", sd * sd))
    return tuple(out)
