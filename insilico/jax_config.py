"""JAX settings insilico computes with: float64 and a persistent compilation cache
(``$INSILICO_JAX_CACHE``, default ``~/.cache/insilico/jax``; ``off`` disables it).

``import insilico`` (and the CLI's ``--help``) neither imports JAX nor changes its settings.
They are applied on first use: the packages that compute with JAX (``insilico.models``,
``insilico.engine``, ``insilico.cohorts``, ``insilico.population``, ``insilico.trials``) import
this module first thing, which calls :func:`configure` before any array exists. Note that float64 is a
process-wide JAX setting: after that import, JAX code elsewhere in the process also defaults to
float64 (as with ``jax.config.update("jax_enable_x64", True)``).
"""
from __future__ import annotations

import os

__all__ = ["configure"]

_done = False


def configure() -> None:
    """Enable float64 and the persistent compilation cache (idempotent)."""
    global _done
    if _done:
        return
    import jax

    jax.config.update("jax_enable_x64", True)
    cache = os.environ.get("INSILICO_JAX_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "insilico", "jax"))
    if cache and cache.lower() != "off":
        try:
            os.makedirs(cache, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)   # small kernels too
        except OSError:  # read-only home: run without a persistent cache
            pass
    _done = True


configure()
