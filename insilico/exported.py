"""Traced kernels kept across processes (`jax.export`), so a new process skips tracing and lowering.

JAX's persistent compilation cache (`insilico.jax_config`) saves only the XLA compilation: every
new process still traces a kernel to a jaxpr and lowers it to StableHLO before it can look the
compiled code up. For a NumPyro cohort model or a Diffrax engine kernel that is most of a warm
trial's first second; the trial-design draws (`insilico.trials`) and the residual error
(`insilico.population.apply_residual_error`) are kept the same way. A kernel wrapped with
:func:`persistent` is exported once (`jax.export.export`, the traced and lowered program, serialised) into
``<compilation cache>/insilico-exported/`` and, in later processes, deserialised and called
(`jax.export.Exported.call`), which compiles through the persistent cache as before.

The file of a kernel is found by a SHA-256 key of everything its program depends on: the
kernel's name and the caller's ``key`` (e.g. a cohort spec's structure, or :func:`fingerprint` of
the model and solver options an engine kernel closes over), the arguments' pytree structure,
shapes and dtypes, the JAX backend, the JAX settings that change how a function is traced
(float64, PRNG implementation, default matmul precision, dtype promotion), the versions of
JAX, jaxlib, NumPy, NumPyro, Diffrax, Equinox, Optimistix and Lineax, and the source of every
module of the insilico package. Any change to the code gives new keys, so a stale program is
never reused. Without a compilation cache (``INSILICO_JAX_CACHE=off``, or a cache folder that
cannot be written) or when export, deserialisation or the first call of a deserialised program
fails, the kernel is simply jitted: the result is the same program either way (tested bit for
bit in ``tests/engine/test_exported_engine.py``).
"""
from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import importlib.metadata
import os
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

__all__ = ["persistent", "source_digest", "fingerprint"]

SUBDIR = "insilico-exported"
_LOCK = threading.Lock()
_LOADED: dict[str, Callable] = {}
_SOURCE: list[str] = []
_VERSIONED = ("jax", "jaxlib", "numpy", "numpyro", "diffrax", "equinox", "optimistix", "lineax")
# JAX settings that change the traced program of a function (not only its compilation)
_TRACE_FLAGS = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable",
                "jax_default_matmul_precision", "jax_numpy_dtype_promotion")


def source_digest() -> str:
    """SHA-256 of the insilico package's source files and of the versions of the libraries its
    kernels are traced with (computed once per process)."""
    if not _SOURCE:
        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.py")):
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
        for lib in _VERSIONED:
            h.update(f"{lib}={_version(lib)};".encode())
        _SOURCE.append(h.hexdigest())
    return _SOURCE[0]


def _version(lib: str) -> str:
    """A library's version without importing it (NumPyro alone takes ~0.5 s to import)."""
    mod = sys.modules.get(lib)
    if getattr(mod, "__version__", None):
        return str(mod.__version__)
    try:
        return importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _settings() -> str:
    return repr([(f, str(getattr(jax.config, f, None))) for f in _TRACE_FLAGS])


def _folder() -> Path | None:
    cache = jax.config.jax_compilation_cache_dir
    return Path(cache) / SUBDIR if cache else None


def persistent(fn: Callable, name: str, key: str = "") -> Callable:
    """``fn`` (a pure JAX function of array pytrees) as a callable whose traced program is kept on
    disk between processes (module docstring). ``key`` must identify everything ``fn`` closes over
    that changes its program (its arguments' shapes and dtypes are added here).

    The callable's ``cache_size()`` is the number of programs it has compiled in this process
    (one per argument signature, like a jitted function's ``_cache_size()``)."""
    mine: set[str] = set()

    def call(*args):
        leaves, tree = jax.tree_util.tree_flatten(args)
        sig = repr((name, key, str(tree), [(np.shape(x), _dtype(x).str) for x in leaves],
                    jax.default_backend(), _settings()))
        k = hashlib.sha256((source_digest() + sig).encode()).hexdigest()[:40]
        f = _LOADED.get(k)
        if f is None:
            with _LOCK:
                f = _LOADED.get(k)
                if f is None:
                    f = _LOADED[k] = _load_or_export(k, fn, tree, leaves)
        mine.add(k)
        return f(*leaves)

    def cache_size() -> int:
        return sum(_LOADED[k]._cache_size() for k in list(mine) if k in _LOADED)

    call.cache_size = cache_size
    return call


def _dtype(x) -> np.dtype:
    """The dtype of an argument: an array's own (``np.result_type`` of a JAX array is deprecated), a Python or
    NumPy scalar's as NumPy gives it."""
    d = getattr(x, "dtype", None)
    return np.dtype(d) if d is not None else np.result_type(x)


def _load_or_export(k: str, fn: Callable, tree, leaves) -> Callable:
    def flat(*ls):
        return fn(*jax.tree_util.tree_unflatten(tree, ls))

    plain = jax.jit(flat)
    folder = _folder()
    if folder is None:
        return plain
    path = folder / f"{k}.bin"
    try:
        exp = None
        if path.is_file():
            try:
                exp = jax.export.deserialize(bytearray(path.read_bytes()))
            except Exception:   # damaged or foreign file: export it anew below
                exp = None
        if exp is None:
            specs = [jax.ShapeDtypeStruct(np.shape(x), _dtype(x)) for x in leaves]
            exp = jax.export.export(plain)(*specs)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(exp.serialize())
            os.replace(tmp, path)
        kept = jax.jit(exp.call)
        kept.lower(*leaves)   # lowers the deserialised program now, inside this try
        return kept
    except Exception:   # no flatbuffers, a program JAX cannot export or call back, a read-only cache: plain jit
        return plain


# ------------------------------------------------------------------------------------------------
# fingerprints of what a kernel closes over
# ------------------------------------------------------------------------------------------------

_LIBRARIES = frozenset({"jax", "jaxlib", "numpy", "numpyro", "diffrax", "equinox", "optimistix", "lineax",
                        "math", "operator", "builtins", "functools"})


class _Opaque(Exception):
    """A value whose program meaning a fingerprint cannot vouch for (e.g. a function of user code)."""


def _package(obj) -> str:
    return (getattr(obj, "__module__", None) or "").partition(".")[0]


def _qualname(x) -> str:
    return getattr(x, "__qualname__", None) or getattr(x, "__name__", None) or "<locals>"


def fingerprint(obj) -> str | None:
    """A SHA-256 hex digest of ``obj`` that is equal in every process for equal values, or None
    when ``obj`` holds something it cannot vouch for.

    ``obj`` may hold numbers, strings, NumPy/JAX arrays, tuples, lists, dicts, sets, enums,
    syntax trees (`ast`), dataclasses and pydantic models of the insilico package, and
    functions: a function of the insilico package counts by its bytecode, constants, default
    arguments and closure (recursively), whose module source is in :func:`source_digest`; a
    top-level function of JAX, NumPy, Diffrax, Equinox, Optimistix, Lineax or the standard
    library by its qualified name (their versions are in the digest). Anything else, notably a
    function of user code, whose global names this cannot follow, gives None: its kernel is
    then jitted in every process instead of being kept (`persistent`). Used as the ``key`` of
    engine kernels, which close over a `insilico.models.Model` (built-in or text-equation
    models are fingerprinted; a model written in Python outside insilico is not)."""
    h = hashlib.sha256()
    try:
        _fp(obj, h.update, {})
    except (_Opaque, RecursionError):
        return None
    return h.hexdigest()


def _fp(x, out, seen: dict) -> None:
    if x is None or x is Ellipsis or isinstance(x, (bool, int, float, complex, str, bytes, slice)):
        out(f"{type(x).__name__}:{x!r};".encode())
        return
    if id(x) in seen:                  # shared or cyclic reference: its position in the walk
        out(f"ref:{seen[id(x)][0]};".encode())
        return
    seen[id(x)] = (len(seen), x)       # x kept alive while walking, so ids stay unique
    t = type(x)
    if isinstance(x, (tuple, list)):
        out(f"{t.__name__}[{len(x)}](".encode())
        for v in x:
            _fp(v, out, seen)
        out(b")")
    elif isinstance(x, (set, frozenset)):
        parts = []
        for v in x:
            h = hashlib.sha256()
            _fp(v, h.update, {})
            parts.append(h.hexdigest())
        out(f"{t.__name__}({','.join(sorted(parts))});".encode())
    elif isinstance(x, (dict, types.MappingProxyType)):
        out(f"dict[{len(x)}](".encode())
        for k, v in x.items():
            _fp(k, out, seen)
            _fp(v, out, seen)
        out(b")")
    elif isinstance(x, (np.ndarray, np.generic, jax.Array)):
        try:
            a = np.asarray(x)
        except Exception:   # a traced value
            raise _Opaque("an abstract array") from None
        out(f"array:{a.dtype.str}{a.shape}:".encode() + hashlib.sha256(np.ascontiguousarray(a).tobytes()).digest())
    elif isinstance(x, enum.Enum):
        out(f"enum:{t.__module__}.{t.__qualname__}.{x.name};".encode())
    elif isinstance(x, ast.AST):
        out(f"ast:{ast.dump(x, include_attributes=False)};".encode())
    elif isinstance(x, types.CodeType):
        out(f"code:{x.co_name}:{x.co_argcount}:{x.co_kwonlyargcount}:{x.co_flags}:{x.co_names}:"
            f"{x.co_varnames}:{x.co_freevars}:".encode() + x.co_code)
        _fp(x.co_consts, out, seen)
    elif isinstance(x, type):
        if _package(x) != "insilico" and _package(x) not in _LIBRARIES:
            raise _Opaque(f"class {x!r}")
        out(f"class:{x.__module__}.{x.__qualname__};".encode())
    elif isinstance(x, types.FunctionType):
        pkg = _package(x)
        if pkg in _LIBRARIES and "<locals>" not in x.__qualname__:
            out(f"fn:{x.__module__}.{x.__qualname__};".encode())
            return
        if pkg != "insilico":
            raise _Opaque(f"function {x.__module__}.{x.__qualname__}")
        out(f"fn:{x.__module__}.{x.__qualname__}(".encode())
        _fp(x.__code__, out, seen)
        _fp(x.__defaults__, out, seen)
        _fp(x.__kwdefaults__, out, seen)
        _fp(tuple(c.cell_contents for c in x.__closure__ or ()), out, seen)
        out(b")")
    elif isinstance(x, types.MethodType):
        out(b"method(")
        _fp(x.__func__, out, seen)
        _fp(x.__self__, out, seen)
        out(b")")
    elif isinstance(x, functools.partial):
        out(b"partial(")
        _fp(x.func, out, seen)
        _fp(x.args, out, seen)
        _fp(x.keywords, out, seen)
        out(b")")
    elif _package(t) == "insilico" and dataclasses.is_dataclass(x):
        out(f"dataclass:{t.__module__}.{t.__qualname__}(".encode())
        for f in dataclasses.fields(x):
            out(f"{f.name}=".encode())
            _fp(getattr(x, f.name), out, seen)
        out(b")")
    elif _package(t) == "insilico" and hasattr(x, "model_dump_json"):   # a pydantic spec
        out(f"spec:{t.__module__}.{t.__qualname__}:{x.model_dump_json()};".encode())
    elif callable(x) and hasattr(x, "__wrapped__") and _package(x) == "insilico":   # a jitted insilico function
        out(b"wrapped(")
        _fp(x.__wrapped__, out, seen)
        out(b")")
    elif callable(x) and _package(x) in _LIBRARIES and "<locals>" not in _qualname(x):
        out(f"fn:{x.__module__}.{_qualname(x)};".encode())   # a library's built-in, ufunc, jitted function
    else:
        raise _Opaque(f"{t.__module__}.{t.__qualname__}")
