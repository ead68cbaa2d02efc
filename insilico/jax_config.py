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

__all__ = ["configure", "relieve_map_pressure"]

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


def _map_counts() -> tuple[int, int] | None:
    """(memory mappings of this process, the kernel's ``vm.max_map_count``); None off Linux."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read())
        with open("/proc/self/maps", "rb") as f:
            used = sum(1 for _ in f)
    except (OSError, ValueError):
        return None
    return used, limit


def relieve_map_pressure(fraction: float = 0.5) -> bool:
    """Drop JAX's in-memory compiled programs when this process holds more than ``fraction`` of the
    memory mappings Linux allows it (``vm.max_map_count``, 65,530 by default).

    Every XLA:CPU executable keeps a few mappings of JIT-compiled code (about 3.4 each, measured),
    so a long-lived process that compiles thousands of kernels (a Jupyter session iterating on
    specs, a campaign of many scenarios, a test session) would reach the limit, and LLVM then
    aborts the process with a segmentation fault inside compilation. Clearing (``jax.clear_caches``)
    frees those mappings; later calls recompile, from the persistent compilation cache when it is
    on. Called between runs, fits and fleet updates, never while kernels are running. Returns
    whether the caches were cleared.
    """
    counts = _map_counts()
    if counts is None or counts[0] <= fraction * counts[1]:
        return False
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
    return True


configure()
