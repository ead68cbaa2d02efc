import os

os.environ.setdefault("INSILICO_JAX_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
