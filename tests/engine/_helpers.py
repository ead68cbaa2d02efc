"""Shared test fixtures: typical parameters for every built-in model."""
import numpy as np

from insilico.engine import SolverOptions

TIGHT = SolverOptions(rtol=1e-10, atol=1e-12)

TYPICAL = dict(CL=4.0, V=30.0, V1=30.0, Q=8.0, V2=60.0, Q3=2.0, V3=150.0, KA=1.3, KTR=3.0,
               VMAX=40.0, KM=3.0, KE0=0.7, E0=10.0, EMAX=50.0, EC50=1.5, GAMMA=2.0, SLOPE=2.0,
               KIN=5.0, KOUT=0.25, IMAX=0.8, IC50=1.2, F=0.8, ALAG=0.0,
               KON=1.0, KOFF=0.05, KINT=0.04, KSYN=0.02, KDEG=0.01, KSS=0.09,
               FM=0.5, CLM=2.0, VM=10.0, QM=3.0, VM2=25.0, MWR=1.0,
               CIRC0=5.0, MTT=125.0, W0=0.05, LAMBDA0=0.01, LAMBDA1=0.004, PSI=20.0, K1=0.05, K2=0.02)


def params_for(model, n=None, seed=0):
    """Typical values for ``model``; with ``n``, log-normal IIV (CV ~25 %) on every parameter."""
    p = {k: TYPICAL[k] for k in model.parameter_names}
    if n is None:
        return p
    rng = np.random.default_rng(seed)
    return {k: v * np.exp(0.25 * rng.standard_normal(n)) if k not in ("ALAG", "F", "FM") else v
            for k, v in p.items()}


def rel_err(a, b, floor=1e-12):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))
