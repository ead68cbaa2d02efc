"""Power of a 2×2 bioequivalence study vs N: simulation (`insilico.trials.be_power`) against the
exact TOST power (Owen's Q by quadrature), plus the time it takes.

The design makes the exact power known: only F varies within a subject (between-occasion SD ω on
F, T/R = ``--gmr``), so the within-subject log deviations of AUCinf are exactly N(0, ω²) and the
simulated fraction of studies concluding BE estimates the TOST power of a 2×2 with σ_w = ω.

    .venv/bin/python benchmarks/bench_be_power.py                       # 1000 studies, ~1–2 min
    .venv/bin/python benchmarks/bench_be_power.py --studies 200 --n 12,24

Exit status 1 when an exact power lies outside the simulated power's 99.9 % Wilson interval.
Writes benchmarks/results/be_power.json.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from scipy import integrate, stats

from insilico.trials import CrossoverDesign, Formulation, be_power


def exact_power(n: int, omega: float, gmr: float, ci_level: float = 0.90) -> float:
    """TOST power of a balanced 2×2: estimate N(ln gmr, 2ω²/n), SE² = (2ω²/n)·χ²_df/df, df = n − 2."""
    df, delta, sigma = n - 2, math.log(gmr), omega * math.sqrt(2.0 / n)
    q = stats.t.ppf(0.5 + ci_level / 2, df)

    def given(x):
        half = q * sigma * math.sqrt(x / df)
        inside = stats.norm.cdf((math.log(1.25) - half - delta) / sigma) - \
            stats.norm.cdf((math.log(0.8) + half - delta) / sigma)
        return max(inside, 0.0) * stats.chi2.pdf(x, df)

    return integrate.quad(given, 0, np.inf, limit=200)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=1000)
    ap.add_argument("--n", default="12,18,24,36,48")
    ap.add_argument("--omega", type=float, default=0.25, help="between-occasion SD of ln F")
    ap.add_argument("--gmr", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default="benchmarks/results/be_power.json")
    a = ap.parse_args()
    grid = [int(x) for x in a.n.split(",")]
    design = CrossoverDesign(sequences=[["T", "R"], ["R", "T"]], dose=100.0, washout=400.0,
                             times=[0, 0.5, 1, 2, 4, 8, 12, 24, 48, 72], bov={"F": a.omega},
                             formulations={"T": Formulation(multipliers={"F": a.gmr}), "R": Formulation()})
    t0 = time.perf_counter()
    sim = be_power("1cmt_oral", {"CL": 5.0, "V": 50.0, "KA": 1.1}, {"CL": 0.3, "V": 0.2}, design, grid,
                   n_studies=a.studies, seed=a.seed, metrics=("AUCinf",), alpha=0.001)
    seconds = time.perf_counter() - t0
    rows, ok = [], True
    print(f"{'n':>4} {'simulated':>10} {'99.9 % CI':>17} {'exact':>8}")
    for n in grid:
        ref = exact_power(n, a.omega, a.gmr)
        r = sim.loc[n]
        inside = bool(r.ci_lower <= ref <= r.ci_upper)
        ok &= inside
        flag = "" if inside else "  OUTSIDE"
        print(f"{n:>4} {r.power:>10.3f} [{r.ci_lower:.3f}, {r.ci_upper:.3f}] {ref:>8.3f}{flag}")
        rows.append({"n": n, "power": float(r.power), "ci_lower": float(r.ci_lower), "ci_upper": float(r.ci_upper),
                     "exact": ref, "inside": inside})
    print(f"{a.studies} studies x {max(grid)} subjects x 2 periods: {seconds:.1f} s")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"settings": vars(a), "seconds": seconds, "rows": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
