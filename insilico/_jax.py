"""JAX configuration applied when insilico is imported: float64 and a persistent
compilation cache (``$INSILICO_JAX_CACHE`` or ``~/.cache/insilico/jax``)."""
from __future__ import annotations

import os

import jax

jax.config.update("jax_enable_x64", True)
_cache = os.environ.get("INSILICO_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "insilico", "jax"))
if _cache and _cache.lower() != "off":
    try:
        os.makedirs(_cache, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", _cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except OSError:  # read-only home: run without a persistent cache
        pass
