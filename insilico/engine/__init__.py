"""Simulation engine: exact linear superposition and Diffrax ODE paths, vmapped and jitted."""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.engine._ode import SolverOptions
from insilico.engine._simulate import compile_count, default_chunk_size, simulate, solve_subject
from insilico.engine import _status as status

__all__ = ["simulate", "solve_subject", "compile_count", "default_chunk_size", "SolverOptions", "status"]
