"""Estimation methods as immutable option objects (diffrax style: pass one to `fit` as
``method=``, or its name ``"focei"``, ``"laplace"``, ``"nuts"`` for the defaults)."""
from __future__ import annotations

from dataclasses import dataclass

from insilico.errors import SpecError

__all__ = ["FOCEI", "NUTS", "Laplace", "method_from"]


@dataclass(frozen=True)
class FOCEI:
    """First-order conditional estimation with interaction (NONMEM METHOD=1 INTER).

    max_iter : outer (L-BFGS-B) iterations; inner_max_iter, inner_tol : Newton iterations and
    Newton-decrement tolerance of the eta modes; covariance : run the covariance step
    (R^-1 S R^-1, NONMEM's default)."""

    max_iter: int = 500
    inner_max_iter: int = 100
    inner_tol: float = 1e-12
    covariance: bool = True
    name = "focei"


@dataclass(frozen=True)
class Laplace(FOCEI):
    """Laplacian estimation (NONMEM METHOD=1 LAPLACIAN INTER): the exact eta Hessian in the
    marginal likelihood. Options as :class:`FOCEI`."""

    name = "laplace"


@dataclass(frozen=True)
class NUTS:
    """Full Bayes by NumPyro's No-U-Turn sampler on the hierarchical model with non-centred
    eta (eta = L z, z ~ N(0, I)).

    chains (>= 1; >= 4 for R-hat), warmup and samples per chain, seed, target_accept (dual
    averaging target), max_tree_depth. Priors: see `insilico.estimation` (weakly informative
    defaults centred on the population model's values)."""

    chains: int = 4
    warmup: int = 500
    samples: int = 500
    seed: int = 0
    target_accept: float = 0.8
    max_tree_depth: int = 8
    dense_mass: bool = False
    name = "nuts"


def method_from(method) -> FOCEI | Laplace | NUTS:
    """An option object from an object or a name (``focei``, ``laplace``, ``nuts``)."""
    if isinstance(method, (FOCEI, NUTS)):
        return method
    table = {"focei": FOCEI, "laplace": Laplace, "nuts": NUTS}
    if not isinstance(method, str) or method.lower() not in table:
        raise SpecError("method", f"unknown estimation method {method!r}; choose from {', '.join(table)}")
    return table[method.lower()]()
