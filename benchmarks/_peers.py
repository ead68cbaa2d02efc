"""Peer implementations for `bench_engine.py`: SciPy ``solve_ivp`` (LSODA) and libroadrunner.

Both follow the insilico conventions so their results can be compared point for point:
amounts in mg, time in h, ``conc = central / V1``, a dose is a bolus into ``depot`` and an
observation at exactly a dose time is pre-dose. Both integrate dose interval by dose interval
(never across a bolus), and both are used the fast way for a Python loop over subjects:

* SciPy: the right-hand side and its analytic Jacobian are plain-float Python closures built once
  per subject; one ``solve_ivp(method="LSODA")`` call per dose interval with ``t_eval`` at the
  observation times in that interval (plus the interval end, to carry the state on).
* libroadrunner: the model is written in Antimony, compiled to a `RoadRunner` once; per subject
  ``resetAll()`` then the individual parameters are set; per dose interval the depot amount is
  incremented and ``simulate(start, end, points)`` is called with only ``time`` and the
  needed outputs selected. CVODE in its non-stiff (Adams) mode is used: it is the faster CVODE
  mode for these non-stiff problems (BDF is selectable with ``stiff=True``). ``direct=True``
  calls the private ``RoadRunner._simulate`` with prepared options instead (information only).
"""
from __future__ import annotations

import itertools
import time

import numpy as np

__all__ = [
    "P1_ANTIMONY",
    "P2_ANTIMONY",
    "Design",
    "RoadRunnerPeer",
    "ScipyPeer",
    "p1_scipy_system",
    "p2_scipy_system",
]


class Design:
    """Dose times (bolus ``amt`` mg into depot) and shared observation times, split into the
    dose intervals both peers integrate over."""

    def __init__(self, dose_times, amt: float, obs_times):
        self.dose_times = np.asarray(dose_times, float)
        self.amt = float(amt)
        self.obs = np.asarray(obs_times, float)
        t_end = self.obs[-1]
        if self.dose_times[0] < 0 or np.any(np.diff(self.dose_times) <= 0):
            raise ValueError("dose times must be >= 0 and increasing")
        # observations at or before the first dose see the (pre-dose) initial state
        self.pre = np.flatnonzero(self.obs <= self.dose_times[0])
        self.intervals = []  # (t_start, t_end, obs indices in (t_start, t_end], t_end is an obs)
        bounds = [d for d in self.dose_times if d < t_end] + [t_end]
        for a, b in itertools.pairwise(bounds):
            idx = np.flatnonzero((self.obs > a) & (self.obs <= b))
            self.intervals.append((float(a), float(b), idx, bool(idx.size and self.obs[idx[-1]] == b)))


# ---------------------------------------------------------------------------------------------
# SciPy solve_ivp (LSODA)
# ---------------------------------------------------------------------------------------------

def p1_scipy_system(p):
    """2-cmt oral, linear elimination: states (depot, central, periph)."""
    ka = float(p["KA"])
    v1, q, v2 = float(p["V1"]), float(p["Q"]), float(p["V2"])
    k10, k12, k21 = float(p["CL"]) / v1, q / v1, q / v2
    kc = k10 + k12

    def f(t, y):
        a, c, q = y
        return [-ka * a, ka * a - kc * c + k21 * q, k12 * c - k21 * q]

    jac = np.array([[-ka, 0.0, 0.0], [ka, -kc, k21], [0.0, k12, -k21]])
    return f, (lambda t, y: jac), np.zeros(3), (lambda Y: {"conc": Y[:, 1] / v1})


def p2_scipy_system(p):
    """2-cmt oral, Michaelis-Menten elimination + indirect response type I:
    states (depot, central, periph, response)."""
    ka, v1, q, v2 = float(p["KA"]), float(p["V1"]), float(p["Q"]), float(p["V2"])
    vmax, km = float(p["VMAX"]), float(p["KM"])
    kin, kout, imax, ic50 = float(p["KIN"]), float(p["KOUT"]), float(p["IMAX"]), float(p["IC50"])
    k12, k21 = q / v1, q / v2

    def f(t, y):
        a, x, z, r = y
        c = x / v1
        return [-ka * a,
                ka * a - vmax * c / (km + c) - k12 * x + k21 * z,
                k12 * x - k21 * z,
                kin * (1.0 - imax * c / (ic50 + c)) - kout * r]

    def jac(t, y):
        c = y[1] / v1
        return np.array([
            [-ka, 0.0, 0.0, 0.0],
            [ka, -vmax * km / (km + c) ** 2 / v1 - k12, k21, 0.0],
            [0.0, k12, -k21, 0.0],
            [0.0, -kin * imax * ic50 / (ic50 + c) ** 2 / v1, 0.0, -kout]])

    y0 = np.array([0.0, 0.0, 0.0, kin / kout])
    return f, jac, y0, (lambda Y: {"conc": Y[:, 1] / v1, "response": Y[:, 3]})


class ScipyPeer:
    name = "scipy LSODA"

    def __init__(self, system, design: Design, outputs, rtol: float, atol: float, method: str = "LSODA"):
        import scipy
        from scipy.integrate import solve_ivp

        self._solve_ivp = solve_ivp
        self.version = scipy.__version__
        self.system, self.design, self.outputs = system, design, tuple(outputs)
        self.rtol, self.atol, self.method = rtol, atol, method
        self.setup_s = 0.0

    def subject(self, p):
        f, jac, y0, out = self.system(p)
        d = self.design
        Y = np.empty((d.obs.size, y0.size))
        y = np.array(y0, float)
        Y[d.pre] = y
        for a, b, idx, end_is_obs in d.intervals:
            y[0] += d.amt  # bolus into depot (state 0)
            t_eval = d.obs[idx] if end_is_obs else np.append(d.obs[idx], b)
            sol = self._solve_ivp(f, (a, b), y, method=self.method, t_eval=t_eval, rtol=self.rtol,
                                  atol=self.atol, jac=jac)
            if sol.status != 0:
                raise RuntimeError(f"solve_ivp failed: {sol.message}")
            Y[idx] = sol.y[:, : idx.size].T
            y = sol.y[:, -1].copy()
        return out(Y)

    def run(self, params: dict[str, np.ndarray]):
        n = len(next(iter(params.values())))
        res = {o: np.empty((n, self.design.obs.size)) for o in self.outputs}
        for i in range(n):
            r = self.subject({k: v[i] for k, v in params.items()})
            for o in self.outputs:
                res[o][i] = r[o]
        return res


# ---------------------------------------------------------------------------------------------
# libroadrunner
# ---------------------------------------------------------------------------------------------

P1_ANTIMONY = """
model bench_p1
  // 2-compartment oral PK, amounts in mg, time in h, volumes in L
  compartment body = 1;
  substanceOnly species depot in body = 0;
  substanceOnly species central in body = 0;
  substanceOnly species periph in body = 0;
  absorption:     depot -> central; KA * depot;
  elimination:    central -> ;      CL / V1 * central;
  distribution:   central -> periph; Q / V1 * central;
  redistribution: periph -> central; Q / V2 * periph;
  conc := central / V1;
  CL = 5; V1 = 50; Q = 10; V2 = 100; KA = 1.2;
end
"""

P2_ANTIMONY = """
model bench_p2
  // 2-compartment oral PK with Michaelis-Menten elimination + indirect response type I
  compartment body = 1;
  substanceOnly species depot in body = 0;
  substanceOnly species central in body = 0;
  substanceOnly species periph in body = 0;
  substanceOnly species response in body;
  absorption:     depot -> central; KA * depot;
  elimination:    central -> ;      VMAX * conc / (KM + conc);
  distribution:   central -> periph; Q / V1 * central;
  redistribution: periph -> central; Q / V2 * periph;
  production:     -> response;      KIN * (1 - IMAX * conc / (IC50 + conc));
  loss:           response -> ;     KOUT * response;
  conc := central / V1;
  VMAX = 20; KM = 4; V1 = 50; Q = 10; V2 = 100; KA = 1.2;
  KIN = 10; KOUT = 0.1; IMAX = 0.9; IC50 = 1;
  response = KIN / KOUT;
end
"""


class RoadRunnerPeer:
    name = "libroadrunner"

    def __init__(self, antimony_src: str, design: Design, outputs: dict[str, str], rtol: float,
                 atol: float, stiff: bool = False, init: dict[str, str] | None = None,
                 direct: bool = False):
        """``outputs``: insilico output name -> roadrunner symbol; ``init``: state -> expression
        in the subject's parameters evaluated after the parameters are set (e.g. R(0) = KIN/KOUT).

        ``direct``: call the private ``RoadRunner._simulate`` with a `SimulateOptions` prepared
        once per dose interval instead of the public ``simulate`` (whose Python argument handling
        and integrator-setting round trips cost ~40-70 us per call). Not public API: reported
        for information only."""
        import antimony
        import roadrunner

        self.version = roadrunner.__version__
        t0 = time.perf_counter()
        antimony.clearPreviousLoads()
        if antimony.loadAntimonyString(antimony_src) < 0:
            raise RuntimeError(antimony.getLastError())
        sbml = antimony.getSBMLString(antimony.getMainModuleName())
        rr = roadrunner.RoadRunner(sbml)
        self.setup_s = time.perf_counter() - t0  # Antimony -> SBML -> LLVM JIT, once
        integ = rr.integrator
        integ.relative_tolerance = rtol
        integ.absolute_tolerance = atol
        integ.stiff = stiff
        self.outputs = dict(outputs)
        rr.timeCourseSelections = ["time"] + list(self.outputs.values())
        self.rr, self.design, self.init = rr, design, dict(init or {})
        self.integrator = f"CVODE ({'BDF' if stiff else 'Adams'})"
        self.direct = direct
        # observations inside each interval must be evenly spaced from its start for
        # simulate(start, end, points); otherwise pass explicit times
        self._plan = []
        for a, b, idx, end_is_obs in design.intervals:
            ts = np.concatenate([[a], design.obs[idx], [] if end_is_obs else [b]])
            pts = ts.size
            even = np.allclose(ts, np.linspace(a, b, pts), rtol=0, atol=1e-12)
            opt = None
            if direct:
                opt = roadrunner.SimulateOptions()
                opt.start, opt.duration, opt.steps = a, b - a, pts - 1
                if not even:
                    rr._setSimulateOptionsTimes(opt, list(ts))
            self._plan.append((a, b, pts, None if even else ts, idx, opt))

    def run(self, params: dict[str, np.ndarray]):
        rr, d = self.rr, self.design
        n = len(next(iter(params.values())))
        names = list(params)
        cols = list(self.outputs)
        res = {o: np.zeros((n, d.obs.size)) for o in cols}
        for i in range(n):
            rr.resetAll()
            for k in names:
                rr[k] = float(params[k][i])
            for state, expr in self.init.items():
                rr[state] = float(eval(expr, {}, {k: float(params[k][i]) for k in names}))
            if d.pre.size:
                pre_vals = [rr[self.outputs[o]] for o in cols]
                for j, o in enumerate(cols):
                    res[o][i, d.pre] = pre_vals[j]
            for a, b, pts, ts, idx, opt in self._plan:
                rr["depot"] = rr["depot"] + d.amt
                if opt is not None:
                    m = rr._simulate(opt)
                else:
                    m = rr.simulate(a, b, pts) if ts is None else rr.simulate(times=ts)
                for j, o in enumerate(cols):
                    res[o][i, idx] = m[1: 1 + idx.size, j + 1]
        return res
