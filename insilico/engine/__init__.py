"""Simulation engine: exact linear superposition and Diffrax ODE paths, vmapped and jitted."""
from insilico import jax_config  # noqa: F401  (float64 and the compilation cache before any array exists)
from insilico.engine import _status as status
from insilico.engine._ode import DEFAULT_ATOL, DEFAULT_RTOL, SolverOptions
from insilico.engine._schedule import INTERPOLATIONS, ParameterSchedule
from insilico.engine._sensitivity import sensitivity
from insilico.engine._simulate import compile_count, default_chunk_size, simulate, solve_subject

__all__ = ["simulate", "sensitivity", "solve_subject", "compile_count", "default_chunk_size", "SolverOptions",
           "DEFAULT_RTOL", "DEFAULT_ATOL", "status", "ParameterSchedule", "INTERPOLATIONS"]
