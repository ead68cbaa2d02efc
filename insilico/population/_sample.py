"""NumPyro sites of the population model (used inside the cohort's subject plate)."""
from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from insilico.population._forward import individual_parameters
from insilico.population._model import PopulationModel

__all__ = ["MultivariateNormalRows", "sample_parameters"]


class MultivariateNormalRows(dist.MultivariateNormal):
    """NumPyro's MultivariateNormal (same density, same standard-normal draws ``z``) whose
    ``sample`` forms ``loc + L z`` as a fixed-order sum of columns with elementwise operations.

    Why: vmapped over subjects, ``L @ z`` is a batched matmul whose summation order XLA may
    choose by batch size, so a subject's eta could differ in the last bits between a draw of
    100 and of 3000 subjects. Elementwise arithmetic does not depend on the batch size.
    """

    def sample(self, key, sample_shape=()):
        z = jax.random.normal(key, shape=sample_shape + self.batch_shape + self.event_shape)
        lower = jnp.broadcast_to(self.scale_tril, z.shape + z.shape[-1:])
        acc = lower[..., :, 0] * z[..., :1]
        for k in range(1, z.shape[-1]):
            acc = acc + lower[..., :, k] * z[..., k:k + 1]
        return self.loc + acc


def sample_parameters(pop: PopulationModel, covariates: Mapping, like) -> dict:
    """Sample the random effects and record the individual parameters, inside a plate.

    Sites: ``eta`` ~ MVN(0, Omega) (:class:`MultivariateNormalRows`, ``(..., n_bsv)``, with deterministic ``eta_P`` per
    parameter), ``kappa_P`` ~ N(0, omega_iov^2) with event shape ``(occasions,)``, and the
    deterministic ``P`` and ``P_occ`` from :func:`individual_parameters` (broadcast to the
    shape of ``like``, an array with the subject batch shape). Returns all of them by name.
    """
    out = {}
    eta = kappa = None
    if pop.bsv_names:
        k = len(pop.bsv_names)
        eta = numpyro.sample("eta", MultivariateNormalRows(jnp.zeros(k), scale_tril=jnp.asarray(pop.omega_chol)))
        for j, n in enumerate(pop.bsv_names):
            out[f"eta_{n}"] = numpyro.deterministic(f"eta_{n}", eta[..., j])
    if pop.iov_names:
        kappas = [numpyro.sample(f"kappa_{n}", dist.Normal(0.0, sd).expand([pop.occasions]).to_event(1))
                  for n, sd in zip(pop.iov_names, pop.iov_sd)]
        out.update({f"kappa_{n}": k for n, k in zip(pop.iov_names, kappas)})
        kappa = jnp.stack(kappas, axis=-1)
    shape = jnp.shape(like)
    for name, value in individual_parameters(pop, covariates, eta, kappa).items():
        target = shape + ((pop.occasions,) if name.endswith("_occ") else ())
        out[name] = numpyro.deterministic(name, jnp.broadcast_to(jnp.asarray(value, float), target))
    return out
