"""The cohort as a NumPyro model.

``cohort_model(spec)`` returns ``model(n_subjects=1, stratum=None, population=None, table=None)``:
every per-subject quantity is a site inside ``numpyro.plate("subject", n_subjects)``:

* distribution covariates: ``numpyro.sample(name, distribution)`` with parameters that may
  depend on earlier covariates, so they can be conditioned on observed covariates with
  ``numpyro.handlers.condition``; members of the Gaussian copula (correlation block) are
  drawn sequentially, each conditional on the scores Phi^-1(F(x)) of those before it, so
  the joint density is the copula density times the marginals;
* the stratum: ``numpyro.sample(name, Categorical(fractions), obs=stratum)``;
* resampled covariates (``resample``): the row ``resample_row`` ~ DiscreteUniform(0, rows - 1)
  and each column's value in that row (``numpyro.deterministic``);
* expression and derived covariates: ``numpyro.deterministic``;
* the parameter model, :func:`insilico.population.sample_parameters`: ``eta`` ~ MVN(0, Omega)
  and per-parameter ``eta_P`` (deterministic), ``kappa_P`` (IOV, event shape (occasions,)),
  individual parameters ``P`` and ``P_occ`` (deterministic, the population forward map).

Inclusion criteria are *not* part of the density: :func:`draw_cohort` applies them by
rejection. Draw with NumPyro's handlers, e.g.
``numpyro.handlers.trace(numpyro.handlers.seed(model, key)).get_trace(100)``.
"""
from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpyro

from insilico.cohorts._compile import CompiledCohort, compile_spec
from insilico.cohorts._covariates import ExprNode, StratumNode
from insilico.cohorts._resample import ColumnNode, RowNode
from insilico.population import sample_parameters

__all__ = ["cohort_model", "criteria_mask"]


def cohort_model(spec) -> Callable[..., dict]:
    """NumPyro model of the cohort described by ``spec`` (spec, path, YAML text or mapping).

    The returned callable ``model(n_subjects=1, stratum=None, population=None, table=None)``
    returns a dict of all covariates, etas, kappas and individual parameters (arrays over
    subjects). ``population``: a :class:`~insilico.population.PopulationModel` of the same
    structure whose numbers replace the spec's (typical values, effects, Omega, IOV, residual
    error: e.g. one replicate's draw from a fit's uncertainty); ``table``: the resampled columns
    (default: the spec's table, ``CompiledCohort.table_arrays``).
    """
    c = compile_spec(spec)

    def model(n_subjects: int = 1, stratum=None, population=None, table=None) -> dict:
        env: dict = {}
        table = c.table_arrays() if table is None else table
        with numpyro.plate("subject", n_subjects):
            copula = None if c.copula_chol is None else (c.copula_chol, [])
            for name in c.order:
                node = c.nodes[name]
                if isinstance(node, StratumNode):
                    env[name] = node.sample(env, copula, stratum)
                elif isinstance(node, ExprNode):
                    env[name] = node.sample(env, copula, n_subjects)
                elif isinstance(node, (RowNode, ColumnNode)):
                    env[name] = node.sample(env, copula, table)
                else:
                    env[name] = node.sample(env, copula)
            like = jnp.zeros(n_subjects) if not env else jnp.zeros(jnp.shape(env[c.order[0]]))
            env.update(sample_parameters(c.population if population is None else population, env, like))
        return env

    model.compiled = c  # type: ignore[attr-defined]
    return model


def criteria_mask(c: CompiledCohort, env: dict) -> jnp.ndarray:
    """True where all inclusion criteria (global and the subject's stratum level) hold and no
    exclusion criterion holds."""
    ok = jnp.ones(jnp.shape(env[c.order[0] if c.order else c.population.names[0]]), dtype=bool)
    for _, f in c.inclusion:
        ok = ok & f(env)
    for _, f in c.exclusion:
        ok = ok & ~f(env)
    if c.stratum is not None:
        s = env[c.stratum]
        for level, crits in enumerate(c.stratum_criteria):
            for _, f in crits:
                ok = ok & jnp.where(s == level, f(env), True)
    return ok
