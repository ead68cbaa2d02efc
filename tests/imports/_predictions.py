"""Individual predictions of an imported population model at its file's values, for parity tests."""
import jax
import jax.numpy as jnp
import numpy as np


def predictions(problem, eta_of=None) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, time) at every fitted record of ``problem`` (`insilico.estimation.build_problem`),
    subject by subject in data order, at the population's initial values; ``eta_of(subject id)``
    gives the subject's random effects (default: zeros, i.e. PRED)."""
    pop = problem.params.population(jnp.asarray(problem.params.initial))
    subjects = problem.subjects()
    got, times = [], []
    for i, sid in enumerate(problem.ids):
        sub = jax.tree_util.tree_map(lambda a, i=i: a[i], subjects)
        eta = jnp.zeros(problem.n_eta) if eta_of is None else jnp.asarray(eta_of(sid))
        pred, _ = problem.predict(pop, sub, eta)
        m = np.asarray(problem.mask[i])
        got.append(np.asarray(pred)[m])
        times.append(np.asarray(problem.times[i])[m])
    return np.concatenate(got), np.concatenate(times)
