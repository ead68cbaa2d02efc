"""`insilico.jax_config.relieve_map_pressure`: compiled programs release their memory mappings."""
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps is Linux-only")


def _maps() -> int:
    with open("/proc/self/maps", "rb") as f:
        return sum(1 for _ in f)


def test_clearing_releases_the_mappings_of_compiled_programs():
    import jax
    import jax.numpy as jnp

    from insilico.jax_config import relieve_map_pressure

    assert relieve_map_pressure(1.0) is False           # far below the kernel's limit: nothing is dropped
    before = _maps()
    for i in range(12):                                 # 12 distinct programs, each with JIT-compiled code
        jax.jit(lambda x, i=i: jnp.sin(x) * i + jnp.cos(x * i))(jnp.ones(i + 1)).block_until_ready()
    grown = _maps()
    assert grown > before + 24                          # about 3.4 mappings per executable on XLA:CPU
    assert relieve_map_pressure(0.0) is True
    assert _maps() < grown - 24
    f = jax.jit(lambda x: 2.0 * x)                      # JAX still works after the clear
    assert float(f(jnp.float64(1.5))) == 3.0
