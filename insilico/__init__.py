"""insilico: in-silico clinical trials in JAX."""
__version__ = "0.1.0"
