#!/usr/bin/env python
"""Engine throughput benchmark: insilico's exact and ODE paths against libroadrunner and SciPy.

    .venv/bin/python benchmarks/bench_engine.py                 # full run (~2-3 min on 2 cores)
    .venv/bin/python benchmarks/bench_engine.py --n 1000 --subset 50,20 --repeats 1   # quick

Scenarios (same virtual cohort design, log-normal IIV, fixed seed):

* P1: ``2cmt_oral``, 100 mg q12h x 14 doses, 169 observations 0-168 h hourly, IIV on CL, V1, KA.
  insilico exact path, insilico ODE path, SciPy LSODA loop (subset), libroadrunner loop (subset).
* P2: ``2cmt_oral_mm+irm1`` (Michaelis-Menten elimination + indirect response type I), 100 mg
  q24h x 28 doses, 169 observations 0-672 h every 4 h, IIV on VMAX, V1, KA.
  insilico ODE path, SciPy LSODA loop (subset), libroadrunner loop (subset).

All ODE solvers of a scenario share rtol/atol (``--rtol``/``--atol``, default 1e-6/1e-9; atol in
mg, i.e. state units). Throughput = subjects / wall time of the best of at least ``--repeats``
timed runs, repeated until ``--min-time`` seconds are spent (as ``timeit`` does), end to end
(insilico: the public ``simulate`` call returning an xarray Dataset; peers: their
Python loop returning NumPy arrays). JAX compilation happens in a separate warm-up call and is
reported on its own; the persistent compilation cache is disabled (unless
``INSILICO_JAX_CACHE`` is set) so the compile time shown is a real compile.

Agreement: on the subjects shared by two methods (the first ``k`` subjects of the cohort), the
max relative error over points where the reference value exceeds 1e-6 of that subject's max;
exit status 1 when any exceeds ``--agree-tol`` (default 1e-4). Speed targets print PASS/FAIL;
they change the exit status only with ``--strict``. Results go to
``benchmarks/results/engine.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("INSILICO_JAX_CACHE", "off")  # measure a real compile, not a cache hit

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _peers
import jax
from jax import monitoring

from insilico.dosing import Regimen
from insilico.engine import SolverOptions, default_chunk_size, simulate
from insilico.models import get_model

# ---------------------------------------------------------------------------------------------
# compile-time accounting (JAX's own monitoring events: trace + lower + XLA compile)
# ---------------------------------------------------------------------------------------------
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_compile_s = [0.0]


def _on_duration(event, duration, **_):
    if event in _COMPILE_EVENTS:
        _compile_s[0] += duration


monitoring.register_event_duration_secs_listener(_on_duration)


# ---------------------------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    key: str
    title: str
    model: str
    typical: dict
    omega: dict  # log-normal IIV standard deviations
    amt: float
    ii: float
    n_doses: int
    times: np.ndarray
    outputs: tuple
    methods: tuple  # insilico paths
    reference: str  # insilico path the others are compared to
    scipy_system: object
    antimony: str
    rr_init: dict = field(default_factory=dict)

    @property
    def dose_times(self):
        return self.ii * np.arange(self.n_doses)

    def describe(self):
        iiv = ", ".join(f"{k} {v:g}" for k, v in self.omega.items())
        typ = ", ".join(f"{k}={v:g}" for k, v in self.typical.items())
        return (f"{self.title}: {self.model}, {self.amt:g} mg q{self.ii:g}h x {self.n_doses}, "
                f"{self.times.size} obs {self.times[0]:g}-{self.times[-1]:g} h; typical {typ}; "
                f"log-normal IIV (omega) {iiv}")


SCENARIOS = {
    "P1": Scenario(
        "P1", "P1 linear 2-cmt oral PK", "2cmt_oral",
        typical={"CL": 5.0, "V1": 50.0, "Q": 10.0, "V2": 100.0, "KA": 1.2},
        omega={"CL": 0.3, "V1": 0.2, "KA": 0.3},
        amt=100.0, ii=12.0, n_doses=14, times=np.arange(0.0, 169.0, 1.0),
        outputs=("conc",), methods=("exact", "ode"), reference="exact",
        scipy_system=_peers.p1_scipy_system, antimony=_peers.P1_ANTIMONY),
    "P2": Scenario(
        "P2", "P2 2-cmt oral PK, Michaelis-Menten elimination + IRM-I PD", "2cmt_oral_mm+irm1",
        typical={"VMAX": 20.0, "KM": 4.0, "V1": 50.0, "Q": 10.0, "V2": 100.0, "KA": 1.2,
                 "KIN": 10.0, "KOUT": 0.1, "IMAX": 0.9, "IC50": 1.0},
        omega={"VMAX": 0.3, "V1": 0.2, "KA": 0.3},
        amt=100.0, ii=24.0, n_doses=28, times=np.arange(0.0, 673.0, 4.0),
        outputs=("conc", "response"), methods=("ode",), reference="ode",
        scipy_system=_peers.p2_scipy_system, antimony=_peers.P2_ANTIMONY,
        rr_init={"response": "KIN / KOUT"}),
}


def cohort(sc: Scenario, n: int, seed: int) -> dict[str, np.ndarray]:
    """Individual parameters; subject i is the same whatever n (row-major draws)."""
    rng = np.random.default_rng(seed)
    eta = rng.standard_normal((n, len(sc.omega)))
    p = {k: np.full(n, v) for k, v in sc.typical.items()}
    for j, (k, w) in enumerate(sc.omega.items()):
        p[k] = sc.typical[k] * np.exp(w * eta[:, j])
    return p


def max_rel_err(x: np.ndarray, ref: np.ndarray, floor: float = 1e-6) -> float:
    """max |x - ref| / |ref| over points where |ref| > floor * max_t |ref| (per subject)."""
    scale = np.max(np.abs(ref), axis=1, keepdims=True)
    mask = np.abs(ref) > floor * scale
    if not mask.any():
        return 0.0
    return float(np.max(np.abs(x - ref)[mask] / np.abs(ref)[mask]))


# ---------------------------------------------------------------------------------------------
# runners
# ---------------------------------------------------------------------------------------------
MIN_TIME = [2.0]  # seconds of timed runs per method at least (set by --min-time)


def _best_of(fn, repeats):
    """Run ``fn`` at least ``repeats`` times and until ``MIN_TIME`` seconds are spent (at most
    50 runs), like ``timeit``: (last output, wall times, CPU time / wall time of the best run)."""
    times, cpu, out = [], [], None
    while len(times) < repeats or (sum(times) < MIN_TIME[0] and len(times) < 50):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best = int(np.argmin(times))
    return out, times, cpu[best] / times[best]


def run_insilico(sc, method, params, opts, chunk_size, repeats):
    model = get_model(sc.model)
    reg = Regimen.repeated(sc.amt, ii=sc.ii, n=sc.n_doses)
    n = len(next(iter(params.values())))

    def call(m):
        ds = simulate(model, {k: v[:m] for k, v in params.items()}, reg, sc.times, method=method,
                      solver=opts, chunk_size=chunk_size)
        return ds

    # warm-up: the same padded chunk shape as the timed run, so nothing compiles afterwards
    n_warm = min(n, chunk_size)
    c0 = _compile_s[0]
    t0 = time.perf_counter()
    call(n_warm)
    warm_s = time.perf_counter() - t0
    compile_s = _compile_s[0] - c0
    c1 = _compile_s[0]
    ds, times, cpu_util = _best_of(lambda: call(n), repeats)
    if _compile_s[0] - c1 > 0.05:
        print(f"  warning: {method} compiled again during the timed runs "
              f"({_compile_s[0] - c1:.2f} s)", file=sys.stderr)
    status = np.asarray(ds["status"])
    res = {o: np.asarray(ds[o]) for o in sc.outputs}
    return res, {"n": n, "times_s": times, "best_s": min(times), "subjects_per_s": n / min(times),
                 "cpu_per_wall": cpu_util, "compile_s": compile_s, "warmup_call_s": warm_s,
                 "chunk_size": chunk_size,
                 "n_status_not_ok": int(np.sum(status != 0))}


def run_peer(peer, params, repeats):
    n = len(next(iter(params.values())))
    peer.run({k: v[:1] for k, v in params.items()})  # warm-up (lazy initialisation)
    res, times, cpu_util = _best_of(lambda: peer.run(params), repeats)
    return res, {"n": n, "times_s": times, "best_s": min(times), "subjects_per_s": n / min(times),
                 "cpu_per_wall": cpu_util,
                 "setup_s": peer.setup_s, "version": peer.version}


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
TARGETS = [  # (scenario, numerator, denominator, minimum ratio)
    ("P1", "exact", "roadrunner", 100.0),
    ("P1", "exact", "scipy", 1000.0),
    ("P2", "ode", "roadrunner", 5.0),
]


def machine_info():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import diffrax
    import scipy
    info = {"cpu_count": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": getattr(jax.lib, "__version__", None) or __import__("jaxlib").__version__,
            "jax_backend": jax.default_backend(),
            "jax_devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
            "diffrax": diffrax.__version__,
            "scipy": scipy.__version__, "numpy": np.__version__}
    try:
        import roadrunner
        info["libroadrunner"] = roadrunner.__version__
    except ImportError:
        info["libroadrunner"] = None
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def _fmt_rate(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="subjects for the insilico paths (10000)")
    ap.add_argument("--subset", default="300,100",
                    help="subjects for the peers: ROADRUNNER[,SCIPY] (300,100); one value sets both")
    ap.add_argument("--scenarios", default="P1,P2", help="comma-separated: P1,P2")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed runs per method, at least; the best is reported (3)")
    ap.add_argument("--min-time", type=float, default=2.0,
                    help="keep repeating a method's timed run until this many seconds are spent (2)")
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="insilico chunk_size (default: the engine's, 512 on CPU, 65536 on GPU)")
    ap.add_argument("--solver", default="tsit5", help="insilico ODE solver (tsit5)")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-9)
    ap.add_argument("--rr-stiff", action="store_true", help="libroadrunner CVODE BDF instead of Adams")
    ap.add_argument("--no-rr-direct", dest="rr_direct", action="store_false",
                    help="skip the informational libroadrunner row that uses the private _simulate")
    ap.add_argument("--agree-tol", type=float, default=1e-4, help="max relative disagreement (1e-4)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--strict", action="store_true", help="also exit 1 when a speed target fails")
    ap.add_argument("--json", default=str(HERE / "results" / "engine.json"),
                    help="results file ('' for none)")
    args = ap.parse_args(argv)

    MIN_TIME[0] = args.min_time
    sub = [int(s) for s in args.subset.split(",")]
    n_rr, n_sp = (sub[0], sub[0]) if len(sub) == 1 else sub[:2]
    n_rr, n_sp = min(n_rr, args.n), min(n_sp, args.n)
    keys = [k.strip().upper() for k in args.scenarios.split(",") if k.strip()]
    for k in keys:
        if k not in SCENARIOS:
            ap.error(f"unknown scenario {k!r}; choose from {sorted(SCENARIOS)}")

    opts = SolverOptions(solver=args.solver, rtol=args.rtol, atol=args.atol)
    info = machine_info()
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    print(f"insilico engine benchmark: {info['cpu_count']} CPUs ({info['cpu']}), jax {info['jax']} "
          f"({info['jax_backend']}), diffrax {info['diffrax']}, scipy {info['scipy']}, "
          f"libroadrunner {info['libroadrunner']}")
    print(f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; tolerances for every "
          f"ODE solver: rtol={args.rtol:g}, atol={args.atol:g} (mg); agreement tolerance "
          f"{args.agree_tol:g}; best of >= {args.repeats} timed runs (>= {args.min_time:g} s)")

    exe = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    results = {"command": " ".join([exe, *sys.argv]),
               "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "machine": info, "load_average_start": load0,
               "settings": {"n": args.n, "n_roadrunner": n_rr, "n_scipy": n_sp, "repeats": args.repeats,
                            "min_time_s": args.min_time,
                            "chunk_size": args.chunk_size or default_chunk_size(), "solver": args.solver,
                            "rtol": args.rtol,
                            "atol": args.atol, "scipy_method": "LSODA",
                            "roadrunner_integrator": "CVODE BDF" if args.rr_stiff else "CVODE Adams",
                            "agree_tol": args.agree_tol, "seed": args.seed},
               "scenarios": {}, "targets": [], "agreement_ok": True}
    ok_agree = True

    for key in keys:
        sc = SCENARIOS[key]
        print()
        print(sc.describe())
        params = cohort(sc, args.n, args.seed)
        rows, out = {}, {}
        for m in sc.methods:
            out[m], rows[m] = run_insilico(sc, m, params, opts, args.chunk_size or default_chunk_size(),
                                           args.repeats)
        design = _peers.Design(sc.dose_times, sc.amt, sc.times)
        sp = _peers.ScipyPeer(sc.scipy_system, design, sc.outputs, args.rtol, args.atol)
        out["scipy"], rows["scipy"] = run_peer(sp, {k: v[:n_sp] for k, v in params.items()},
                                               args.repeats)
        try:
            rr = _peers.RoadRunnerPeer(sc.antimony, design, {o: o for o in sc.outputs}, args.rtol,
                                       args.atol, stiff=args.rr_stiff, init=sc.rr_init)
        except ImportError as e:
            print(f"  libroadrunner/antimony not available ({e}); skipped")
        else:
            out["roadrunner"], rows["roadrunner"] = run_peer(
                rr, {k: v[:n_rr] for k, v in params.items()}, args.repeats)
            rows["roadrunner"]["integrator"] = rr.integrator
            if args.rr_direct:
                rrd = _peers.RoadRunnerPeer(sc.antimony, design, {o: o for o in sc.outputs}, args.rtol,
                                            args.atol, stiff=args.rr_stiff, init=sc.rr_init, direct=True)
                out["roadrunner_direct"], rows["roadrunner_direct"] = run_peer(
                    rrd, {k: v[:n_rr] for k, v in params.items()}, args.repeats)
                rows["roadrunner_direct"]["integrator"] = rrd.integrator
                rows["roadrunner_direct"]["note"] = "private RoadRunner._simulate; information only"

        label = {"exact": "insilico exact", "ode": f"insilico ODE ({args.solver})",
                 "scipy": "SciPy solve_ivp LSODA",
                 "roadrunner": f"libroadrunner {rows.get('roadrunner', {}).get('integrator', '')}",
                 "roadrunner_direct": "libroadrunner, private _simulate*"}
        print(f"  {'method':<34}{'subjects':>9}{'compile s':>11}{'time s':>9}{'subjects/s':>13}"
              f"{'CPU/wall':>10}")
        for m, r in rows.items():
            comp = f"{r['compile_s']:.2f}" if "compile_s" in r else f"({r['setup_s']:.2f})"
            print(f"  {label[m]:<34}{r['n']:>9}{comp:>11}{r['best_s']:>9.3f}"
                  f"{_fmt_rate(r['subjects_per_s']):>13}{r['cpu_per_wall']:>10.2f}")
            if r.get("n_status_not_ok"):
                print(f"    warning: {r['n_status_not_ok']} subjects with status != 0")
        print("  (compile s: JAX trace + lower + XLA compile in the warm-up call; in parentheses: "
              "libroadrunner's Antimony->SBML->LLVM build;\n   CPU/wall: process CPU time / wall time "
              "of the reported run, i.e. cores used)")
        if "roadrunner_direct" in rows:
            print("  * same libroadrunner loop calling the private RoadRunner._simulate with prepared "
                  "SimulateOptions\n    (skips simulate()'s Python argument handling); information "
                  "only, targets use the public simulate()")

        ratios = {}
        for m in sc.methods:
            for peer in ("roadrunner", "scipy", "roadrunner_direct"):
                if peer in rows:
                    ratios[f"{m}/{peer}"] = rows[m]["subjects_per_s"] / rows[peer]["subjects_per_s"]
        targets = {(num, den): lo for (s, num, den, lo) in TARGETS if s == key}
        print("  speed ratios (subjects/s):")
        for name, v in ratios.items():
            num, den = name.split("/")
            t = targets.get((num, den))
            mark = ""
            if t is not None:
                passed = v >= t
                mark = f"   target >= {t:g}x  {'PASS' if passed else 'FAIL'}"
                results["targets"].append({"scenario": key, "ratio": name, "value": v, "target": t,
                                           "pass": passed})
            print(f"    {name:<26}{v:>10,.1f}x{mark}")

        agree = {}
        ref = sc.reference
        for other in [m for m in rows if m != ref]:
            k = min(rows[ref]["n"], rows[other]["n"])
            for o in sc.outputs:
                agree[f"{ref} vs {other}: {o}"] = (max_rel_err(out[other][o][:k], out[ref][o][:k]), k)
        print("  agreement (max relative error where value > 1e-6 x subject max; "
              f"tolerance {args.agree_tol:g}):")
        for name, (e, k) in agree.items():
            good = e <= args.agree_tol
            ok_agree &= good
            print(f"    {name:<40}{e:>10.2e}  on {k:>5} subjects  {'ok' if good else 'DISAGREE'}")

        results["scenarios"][key] = {
            "description": sc.describe(), "model": sc.model, "typical": sc.typical, "omega": sc.omega,
            "dose_mg": sc.amt, "ii_h": sc.ii, "n_doses": sc.n_doses, "n_obs": int(sc.times.size),
            "obs_times_h": [float(sc.times[0]), float(sc.times[-1])],
            "methods": rows, "ratios": ratios,
            "agreement": {n: {"max_rel_err": e, "subjects": k} for n, (e, k) in agree.items()}}

    total = time.perf_counter() - t_start
    load1 = os.getloadavg()
    results.update(total_s=total, load_average_end=load1, agreement_ok=ok_agree)
    tgt_ok = all(t["pass"] for t in results["targets"])
    print()
    summary = "; ".join(f"{t['scenario']} {t['ratio']} {t['value']:,.1f}x (>= {t['target']:g}x) "
                        f"{'PASS' if t['pass'] else 'FAIL'}" for t in results["targets"])
    print("targets: " + (summary or "none run"))
    print(f"agreement: {'ok' if ok_agree else 'FAILED'}; total {total:.0f} s; load average at end "
          f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=float) + "\n")
        print(f"results written to {path}")
    if not ok_agree:
        return 1
    if args.strict and not tgt_ok:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
