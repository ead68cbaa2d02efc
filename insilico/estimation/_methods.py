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
    Newton-decrement tolerance of the eta modes; covariance : run the covariance step;
    matrix : its form, ``sandwich`` (R^-1 S R^-1, NONMEM's default), ``R`` (2 R^-1, the inverse
    observed information, as nlme and most ML software report) or ``S`` (4 S^-1)."""

    max_iter: int = 500
    inner_max_iter: int = 100
    inner_tol: float = 1e-12
    covariance: bool = True
    matrix: str = "sandwich"
    name = "focei"

    def __post_init__(self):
        if self.matrix not in ("sandwich", "R", "S"):
            raise SpecError("method.matrix", f"must be sandwich, R or S, got {self.matrix!r}")


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
    averaging target), max_tree_depth, dense_mass (adapt a dense mass matrix; ``None``, the
    default: dense with the non-centred parametrisation, whose posterior keeps a correlation
    between typical values and etas when individual data are informative (measured on the
    24-subject 1-cmt test problem: max R-hat 1.075 diagonal vs 1.013 dense, same draws), diagonal
    with the centred one, which has no such correlation left (``benchmarks/bench_fit.py``, 30
    subjects, 4 x (500 + 500): min bulk ESS 1893 diagonal vs 2042 dense, in a third of the CPU
    time: each leapfrog step of NumPyro's dense-mass NUTS costs ~1.4 ms more on CPU for 66
    dimensions)), parameterization
    of eta: ``noncentred`` (eta = L z, z ~ N(0, I): best when individual data are sparse),
    ``centred`` (log TV + eta ~ MVN(log TV, Omega), hierarchical centring: best when they are
    informative; Betancourt & Girolami 2013, Gelfand, Sahu & Carlin 1995)
    or ``auto`` (default): centred when subjects have a median of >= 4 observations; inter-occasion
    kappas are non-centred either way (kappa = omega_iov z, z ~ N(0, 1); `insilico.estimation._nuts`). Measured on
    16 subjects x 8 samples, 4 chains x 400 draws: centred max R-hat 1.002, min bulk ESS 1282,
    0 divergences; non-centred 1.049, 54, 22 divergences. Priors: see `insilico.estimation` (weakly informative
    defaults centred on the population model's values)."""

    chains: int = 4
    warmup: int = 500
    samples: int = 500
    seed: int = 0
    target_accept: float = 0.8
    max_tree_depth: int = 8
    dense_mass: bool | None = None
    parameterization: str = "auto"
    name = "nuts"

    def __post_init__(self):
        if self.parameterization not in ("auto", "noncentred", "centred"):
            raise SpecError("method.parameterization",
                            f"must be auto, noncentred or centred, got {self.parameterization!r}")


def method_from(method) -> FOCEI | Laplace | NUTS:
    """An option object from an object or a name (``focei``, ``laplace``, ``nuts``)."""
    if isinstance(method, (FOCEI, NUTS)):
        return method
    table = {"focei": FOCEI, "laplace": Laplace, "nuts": NUTS}
    if not isinstance(method, str) or method.lower() not in table:
        raise SpecError("method", f"unknown estimation method {method!r}; choose from {', '.join(table)}")
    return table[method.lower()]()
