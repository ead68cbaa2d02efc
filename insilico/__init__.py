"""insilico: in-silico clinical trials in JAX.

Importing the package is cheap and leaves JAX alone; see `insilico.jax_config`."""

__version__ = "0.1.0"


def run(spec, out=None, **kwargs):
    """Run a trial spec; see `insilico.trials.run`."""
    from insilico.trials import run as _run
    return _run(spec, out, **kwargs)


def open_results(path, **kwargs):
    """Open a results store as an xarray Dataset; see `insilico.store.open_results` (``partial=True``
    opens a store whose run has not finished)."""
    from insilico.store import open_results as _open
    return _open(path, **kwargs)
