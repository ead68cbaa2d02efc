"""Interactive latency of `simulate`: 100 subjects, 14 doses q12h, hourly observations to 168 h.

Prints, for the exact path (``2cmt_oral``) and the ODE path (``2cmt_oral_mm``), the first-call
time (compilation, or a load from the persistent compilation cache when it is warm) and the
median of 20 warm calls, each with new parameter values (no recompilation). Target (issue 10):
warm ``2cmt_oral`` <= 50 ms on a 2-core CPU.

    python benchmarks/bench_simulate_latency.py [--calls 20] [--n 100]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

TYPICAL = dict(V1=30.0, Q=8.0, V2=60.0, KA=1.3, CL=4.0, VMAX=40.0, KM=3.0, F=0.8, ALAG=0.0)


def params(model, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: TYPICAL[k] * np.exp(0.25 * rng.standard_normal(n)) if k not in ("F", "ALAG") else TYPICAL[k]
            for k in model.parameter_names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()

    t0 = time.perf_counter()
    from insilico.dosing import Regimen
    from insilico.engine import simulate
    from insilico.models import get_model
    print(f"import: {time.perf_counter() - t0:.2f} s")
    regimen = Regimen.repeated(100.0, 12.0, 14)
    times = np.arange(0, 169.0)
    for name in ("2cmt_oral", "2cmt_oral_mm"):
        model = get_model(name)
        t0 = time.perf_counter()
        simulate(name, params(model, args.n, 0), regimen, times)
        first = time.perf_counter() - t0
        warm = []
        for i in range(args.calls):
            p = params(model, args.n, i + 1)
            t0 = time.perf_counter()
            ds = simulate(name, p, regimen, times)
            warm.append(time.perf_counter() - t0)
        assert (ds["status"].values == 0).all()
        print(f"{name:14s} method={ds.attrs['method']:5s} n={args.n} first call {first:7.2f} s   "
              f"warm median {1e3 * statistics.median(warm):7.1f} ms (min {1e3 * min(warm):.1f}, "
              f"max {1e3 * max(warm):.1f}) over {args.calls} calls")


if __name__ == "__main__":
    main()
