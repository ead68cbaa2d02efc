"""`insilico.jax_config.relieve_map_pressure`: compiled programs release their memory mappings.

Measured in a fresh process: in a long-lived one (a test worker after thousands of kernels) new
code can land in already-mapped regions, so the count of new mappings says little there.
"""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps is Linux-only")

CHILD = r"""
import json
import jax, jax.numpy as jnp
from insilico.jax_config import relieve_map_pressure

def maps():
    with open("/proc/self/maps", "rb") as f:
        return sum(1 for _ in f)

far = relieve_map_pressure(1.0)                 # far below the kernel's limit: nothing is dropped
before = maps()
for i in range(20):                             # 20 distinct programs, each with JIT-compiled code
    jax.jit(lambda x, i=i: jnp.sin(x) * i + jnp.cos(x * i))(jnp.ones(i + 1)).block_until_ready()
grown = maps()
cleared = relieve_map_pressure(0.0)
after = maps()
works = float(jax.jit(lambda x: 2.0 * x)(jnp.float64(1.5)))   # JAX still works after the clear
print(json.dumps(dict(far=far, before=before, grown=grown, cleared=cleared, after=after, works=works)))
"""


def test_clearing_releases_the_mappings_of_compiled_programs():
    env = {**os.environ, "INSILICO_JAX_CACHE": "off"}
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["far"] is False and r["cleared"] is True
    assert r["grown"] > r["before"] + 20        # about 3.4 mappings per executable on XLA:CPU
    assert r["after"] < r["grown"] - 20         # released by the clear
    assert r["works"] == 3.0
