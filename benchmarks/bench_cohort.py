"""Benchmark: draw a virtual cohort of 1,000,000 subjects.

Default spec: 5 covariates (AGE truncated normal, SEX categorical, HT normal given SEX,
WT log-normal given SEX, SCR log-normal given SEX), inclusion criteria (18-65 y, WT >= 45 kg,
CRCL >= 30 mL/min, so a derived Cockcroft-Gault CRCL too), 3 parameters with allometric
effects and a full 3x3 Omega. Prints wall time (first call incl. compilation, then warm
calls), throughput, acceptance rate and peak memory (process peak RSS from getrusage, plus
the RSS increase over the draw; JAX buffers are not visible to tracemalloc).

    .venv/bin/python benchmarks/bench_cohort.py [--n 1000000] [--spec cohorts/healthy_adults.yaml]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import psutil

import insilico  # noqa: F401  (float64, compilation cache)
from insilico.cohorts import draw_cohort, load_cohort_spec

BENCH_SPEC = {
    "name": "bench_5cov",
    "covariates": {
        "AGE": {"dist": "truncnormal", "mean": 42, "sd": 14, "low": 16, "high": 85},
        "SEX": {"dist": "categorical", "probs": {"male": 0.5, "female": 0.5}},
        "HT": {"dist": "normal", "given": "SEX", "mean": {"male": 176, "female": 163},
               "sd": {"male": 7, "female": 6.5}},
        "WT": {"dist": "lognormal", "given": "SEX", "median": {"male": 80, "female": 67}, "sdlog": 0.18},
        "SCR": {"dist": "lognormal", "given": "SEX", "median": {"male": 0.95, "female": 0.75}, "sdlog": 0.2},
    },
    "derived": ["CRCL"],
    "criteria": {"inclusion": ["18 <= AGE <= 65", "WT >= 45", "CRCL >= 30"]},
    "parameters": {
        "CL": {"typical": 5.0, "effects": [{"covariate": "WT", "type": "power", "ref": 70, "theta": 0.75}]},
        "V": {"typical": 50.0, "effects": [{"covariate": "WT", "type": "power", "ref": 70, "theta": 1.0}]},
        "KA": {"typical": 1.2},
    },
    "bsv": {"parameters": ["CL", "V", "KA"],
            "omega": [[0.09, 0.03, 0.0], [0.03, 0.0625, 0.0], [0.0, 0.0, 0.2]]},
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--spec", default=None, help="cohort YAML (default: built-in 5-covariate spec)")
    ap.add_argument("--repeat", type=int, default=2, help="warm repetitions after the first call")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = ap.parse_args(argv)

    spec = load_cohort_spec(a.spec or BENCH_SPEC)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss / 2**20
    print(f"spec={spec.name} n={a.n:,} seed={a.seed} cpus={os.cpu_count()} python={sys.version.split()[0]}")

    t = time.perf_counter()
    ds = draw_cohort(spec, a.n, a.seed)
    first = time.perf_counter() - t
    print(f"first call (incl. JIT compile or persistent-cache load): {first:.2f} s")
    warm = []
    for _ in range(a.repeat):
        del ds
        t = time.perf_counter()
        ds = draw_cohort(spec, a.n, a.seed)
        warm.append(time.perf_counter() - t)
    best = min(warm) if warm else first
    rss1 = proc.memory_info().rss / 2**20
    print(f"warm draw: best {best:.2f} s of {len(warm)} ({a.n / best / 1e6:.2f} M subjects/s)")
    print(f"acceptance rate {ds.attrs['acceptance_rate']:.4f} ({ds.attrs['n_draws']:,} draws)")
    print(f"dataset size {ds.nbytes / 2**20:.0f} MiB; RSS before {rss0:.0f} MiB, after {rss1:.0f} MiB, "
          f"peak {peak_rss_mib():.0f} MiB")
    if a.json:
        import jax
        doc = {"spec": spec.name, "n": a.n, "seed": a.seed, "cpu_count": os.cpu_count(),
               "python": sys.version.split()[0], "jax": jax.__version__, "jax_backend": jax.default_backend(),
               "jax_devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
               "first_call_s": first, "warm_s": warm, "best_warm_s": best, "subjects_per_s": a.n / best,
               "acceptance_rate": float(ds.attrs["acceptance_rate"]), "n_draws": int(ds.attrs["n_draws"]),
               "dataset_mib": ds.nbytes / 2**20, "rss_before_mib": rss0, "rss_after_mib": rss1,
               "peak_rss_mib": peak_rss_mib(),
               "device_peak_mib": (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**20}
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
