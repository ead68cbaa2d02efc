import os

import pytest

os.environ.setdefault("INSILICO_JAX_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))

# The suite compiles thousands of small XLA programs and runs most of them a few times: compilation,
# not execution, is most of its time. XLA:CPU's LLVM back end is told to optimise less (set here,
# before JAX starts its backend; subprocesses, CLI runs and notebook kernels inherit it): measured
# -20 % CPU on tests/engine/test_steady_state.py and -32 % on test_nuts.py + test_execution.py, cold
# cache. No fast-math either way; results move by a few ulps (2.6e-15 relative on a simulate, ODE
# and exact paths), far inside every test's stated tolerance, and tests that need bit-identical
# numbers compare runs made under the same flags. Benchmarks and users run XLA's defaults.
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

# distributed's worker profiler can crash CPython 3.11 (`insilico.cluster.disable_worker_profiler`): off for
# every cluster the tests start themselves, as `insilico.cluster.connect` turns it off for the library's own
from insilico.cluster import disable_worker_profiler

disable_worker_profiler()


# The longest test files (a cold `make test` with --durations), run first so that the two xdist
# workers finish together: `make test` deals whole files (--dist loadfile) in collection order
# (--no-loadscope-reorder; xdist's default order, most tests first, left these few-test, slow files
# to the end, with one worker idle). Longest first; every other file keeps its place after them.
SLOW_FIRST = (
    "tests/engine/test_steady_state.py", "tests/test_notebooks.py", "tests/estimation/test_iov.py",
    "tests/engine/test_events.py", "tests/estimation/test_iov_downstream.py",
    "tests/engine/test_battery.py", "tests/cluster/test_slurm.py", "tests/campaigns/test_campaign.py",
    "tests/trials/test_execution.py", "tests/estimation/test_nuts.py", "tests/estimation/test_nuts_iov.py",
    "tests/estimation/test_objective.py",
    "tests/engine/test_engine_behaviour.py", "tests/estimation/test_blq_dvid.py", "tests/engine/test_shapes.py",
    "tests/estimation/test_nlme_parity.py", "tests/engine/test_exported_engine.py",
    "tests/twins/test_early_warning.py", "tests/twins/test_iov.py",
    "tests/analysis/test_fit_report.py", "tests/estimation/test_fit.py",
    "tests/models/test_library_wave2.py", "tests/engine/test_analytic.py", "tests/safety/test_resume.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))   # stable


@pytest.fixture(autouse=True, scope="module")
def _bounded_memory_mappings():
    """A test process compiles thousands of kernels; drop them between test files before they
    exhaust the process's memory mappings (`insilico.jax_config.relieve_map_pressure`)."""
    yield
    from insilico.jax_config import relieve_map_pressure
    relieve_map_pressure(0.3)


@pytest.fixture(scope="session")
def client():
    """One real distributed LocalCluster (threads) per test process, shared by the tests that run trials."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c, \
            Client(c) as cl:
        yield cl
