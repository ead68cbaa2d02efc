"""insilico: in-silico clinical trials in JAX."""
from insilico import _jax  # noqa: F401  (float64 + compilation cache before any array exists)

__version__ = "0.1.0"
