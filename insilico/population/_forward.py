"""The forward map of the population model: covariates and random effects -> individual
parameters. Pure ``jax.numpy``, so it can be jitted, vmapped over subjects and differentiated
with respect to eta, kappa and the model's numbers (the :class:`PopulationModel` is a pytree).

Cohort draws (:func:`~insilico.population.sample_parameters`), estimation and twins all use
these two functions.
"""
from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp

from insilico.population._model import PopulationModel

__all__ = ["individual_parameters", "typical_values"]


def typical_values(pop: PopulationModel, covariates: Mapping) -> dict:
    """``{P: TV_P}``: typical value times the product of its covariate effects, in the
    parameter's units. ``covariates``: name -> array (categorical ones as integer codes);
    only those the effects use are read. Parameters without effects are Python floats."""
    out = {}
    for name, typical, effects in zip(pop.names, pop.typical, pop.effects):
        tv = typical
        for e in effects:
            tv = tv * e(covariates)
        out[name] = tv
    return out


def individual_parameters(pop: PopulationModel, covariates: Mapping, eta=None, kappa=None) -> dict:
    """Individual parameters ``{P: TV_P * exp(eta_P)}``, and with ``kappa`` also
    ``{P_occ: TV_P * exp(eta_P + kappa_P)}`` for the IOV parameters.

    Parameters
    ----------
    covariates : name -> array of batch shape ``(...)`` (see :func:`typical_values`).
    eta : ``(..., len(pop.bsv_names))``, log-scale random effects in the order of
        ``pop.bsv_names`` (parameters without BSV use eta = 0). None: all zero.
    kappa : ``(..., occasions, len(pop.iov_names))``, inter-occasion effects in the order of
        ``pop.iov_names``; ``P_occ`` then has shape ``(..., occasions)``.

    ``P_occ`` is computed as ``P * exp(kappa)`` (= TV exp(eta + kappa)).
    """
    tv = typical_values(pop, covariates)
    out = {}
    for name in pop.names:
        if eta is not None and name in pop.bsv_names:
            out[name] = tv[name] * jnp.exp(eta[..., pop.bsv_names.index(name)])
        else:
            out[name] = tv[name]
    if kappa is not None:
        for j, name in enumerate(pop.iov_names):
            out[f"{name}_occ"] = out[name][..., None] * jnp.exp(kappa[..., j])
    return out
