"""Traced kernels kept across processes (`jax.export`), so a new process skips tracing and lowering.

JAX's persistent compilation cache (`insilico.jax_config`) saves only the XLA compilation: every
new process still traces a kernel to a jaxpr and lowers it to StableHLO before it can look the
compiled code up. For a NumPyro cohort model that is most of a warm trial's first second. A
kernel wrapped with :func:`persistent` is exported once (`jax.export.export`, the traced and
lowered program, serialised) into ``<compilation cache>/insilico-exported/`` and, in later
processes, deserialised and called (`jax.export.Exported.call`), which compiles through the
persistent cache as before.

The file of a kernel is found by a SHA-256 key of everything its program depends on: the
kernel's name and the caller's ``key`` (e.g. a cohort spec's structure), the arguments' pytree
structure, shapes and dtypes, the JAX backend, the versions of JAX, jaxlib, NumPyro, Diffrax and
Equinox, and the source of every module of the insilico package. Any change to the code gives
new keys, so a stale program is never reused. Without a compilation cache (``INSILICO_JAX_CACHE=off``,
or a cache folder that cannot be written) or when export or deserialisation fails, the kernel is
simply jitted: the result is the same program either way.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

__all__ = ["persistent", "source_digest"]

SUBDIR = "insilico-exported"
_LOCK = threading.Lock()
_LOADED: dict[str, Callable] = {}
_SOURCE: list[str] = []


def source_digest() -> str:
    """SHA-256 of the insilico package's source files and of the versions of the libraries its
    kernels are traced with (computed once per process)."""
    if not _SOURCE:
        import diffrax
        import equinox
        import jaxlib
        import numpyro

        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.py")):
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
        for lib in (jax, jaxlib, numpyro, diffrax, equinox):
            h.update(f"{lib.__name__}={getattr(lib, '__version__', '?')};".encode())
        _SOURCE.append(h.hexdigest())
    return _SOURCE[0]


def _folder() -> Path | None:
    cache = jax.config.jax_compilation_cache_dir
    return Path(cache) / SUBDIR if cache else None


def persistent(fn: Callable, name: str, key: str = "") -> Callable:
    """``fn`` (a pure JAX function of array pytrees) as a callable whose traced program is kept on
    disk between processes (module docstring). ``key`` must identify everything ``fn`` closes over
    that changes its program (its arguments' shapes and dtypes are added here)."""

    def call(*args):
        leaves, tree = jax.tree_util.tree_flatten(args)
        sig = repr((name, key, str(tree), [(np.shape(x), np.result_type(x).str) for x in leaves],
                    jax.default_backend()))
        k = hashlib.sha256((source_digest() + sig).encode()).hexdigest()[:40]
        f = _LOADED.get(k)
        if f is None:
            with _LOCK:
                f = _LOADED.get(k)
                if f is None:
                    f = _LOADED[k] = _load_or_export(k, fn, tree, leaves)
        return f(*leaves)

    return call


def _load_or_export(k: str, fn: Callable, tree, leaves) -> Callable:
    def flat(*ls):
        return fn(*jax.tree_util.tree_unflatten(tree, ls))

    folder = _folder()
    if folder is None:
        return jax.jit(flat)
    path = folder / f"{k}.bin"
    try:
        if path.is_file():
            exp = jax.export.deserialize(bytearray(path.read_bytes()))
        else:
            specs = [jax.ShapeDtypeStruct(np.shape(x), np.result_type(x)) for x in leaves]
            exp = jax.export.export(jax.jit(flat))(*specs)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(exp.serialize())
            os.replace(tmp, path)
        return jax.jit(exp.call)
    except Exception:   # no flatbuffers, an unreadable or foreign file, a read-only cache: plain jit
        return jax.jit(flat)
