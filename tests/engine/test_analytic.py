"""Exact and ODE paths against closed-form PK solutions (relative error <= 1e-6)."""
import numpy as np
import pytest

from insilico.dosing import Dose, Regimen
from insilico.engine import simulate

from ._helpers import TIGHT, rel_err

METHODS = ["exact", "ode"]
T = np.array([0.25, 0.5, 1, 2, 3, 5, 8, 12, 16, 23.9, 24, 30, 47, 72])


def run(model, p, reg, t=T, method="exact", **kw):
    return simulate(model, p, reg, t, method=method, solver=TIGHT, **kw)["conc"].values[0]


@pytest.mark.parametrize("method", METHODS)
def test_1cmt_iv_bolus(method):
    CL, V, D = 3.0, 25.0, 100.0
    ref = D / V * np.exp(-CL / V * T)
    assert rel_err(run("1cmt_iv", dict(CL=CL, V=V), Regimen.single(D), method=method), ref) <= 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_1cmt_oral_with_lag_and_f(method):
    CL, V, KA, F, ALAG, D = 3.0, 25.0, 0.9, 0.7, 0.5, 100.0
    k = CL / V
    tt = np.clip(T - ALAG, 0, None)
    ref = F * D * KA / (V * (KA - k)) * (np.exp(-k * tt) - np.exp(-KA * tt))
    got = run("1cmt_oral", dict(CL=CL, V=V, KA=KA, F=F, ALAG=ALAG), Regimen.single(D), method=method)
    assert rel_err(got, ref, floor=1e-9) <= 1e-6


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("spec", [dict(rate=50.0), dict(duration=2.0)])
def test_1cmt_infusion(method, spec):
    CL, V, D = 3.0, 25.0, 100.0
    k = CL / V
    R = spec.get("rate") or D / spec["duration"]
    Tinf = D / R
    during = R / CL * (1 - np.exp(-k * np.minimum(T, Tinf)))
    ref = np.where(T <= Tinf, during, during * np.exp(-k * (T - Tinf)))
    got = run("1cmt_iv", dict(CL=CL, V=V), Regimen((Dose(amt=D, **spec),)), method=method)
    assert rel_err(got, ref) <= 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_2cmt_iv_bolus(method):
    CL, V1, Q, V2, D = 4.0, 30.0, 8.0, 60.0, 100.0
    k10, k12, k21 = CL / V1, Q / V1, Q / V2
    s = k10 + k12 + k21
    alpha = (s + np.sqrt(s * s - 4 * k10 * k21)) / 2
    beta = (s - np.sqrt(s * s - 4 * k10 * k21)) / 2
    A = D / V1 * (alpha - k21) / (alpha - beta)
    B = D / V1 * (k21 - beta) / (alpha - beta)
    ref = A * np.exp(-alpha * T) + B * np.exp(-beta * T)
    got = run("2cmt_iv", dict(CL=CL, V1=V1, Q=Q, V2=V2), Regimen.single(D), method=method)
    assert rel_err(got, ref) <= 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_multiple_dose_superposition(method):
    """q8h x 5 oral doses = sum of shifted single-dose Bateman curves."""
    CL, V, KA, D, tau = 3.0, 25.0, 0.9, 100.0, 8.0
    k = CL / V

    def single(t):
        tt = np.clip(t, 0, None)
        return D * KA / (V * (KA - k)) * (np.exp(-k * tt) - np.exp(-KA * tt))

    t = np.linspace(0.1, 60, 97)
    ref = sum(single(t - i * tau) for i in range(5))
    got = run("1cmt_oral", dict(CL=CL, V=V, KA=KA), Regimen.repeated(D, tau, 5), t=t, method=method)
    assert rel_err(got, ref, floor=1e-9) <= 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_steady_state_bolus_and_oral(method):
    CL, V, KA, D, tau = 3.0, 25.0, 0.9, 100.0, 12.0
    k = CL / V
    t = np.array([0.0, 0.5, 2, 6, 11.99, 12.0])
    ref_iv = D / V * np.exp(-k * t) / (1 - np.exp(-k * tau))
    ref_iv[0] = ref_iv[-1] = D / V * np.exp(-k * tau) / (1 - np.exp(-k * tau))  # pre-dose troughs
    reg = Regimen((Dose(amt=D, ss=1, ii=tau),))
    got = run("1cmt_iv", dict(CL=CL, V=V), reg, t=t, method=method)
    assert rel_err(got, ref_iv) <= 1e-6

    def oral_ss(tt):
        return D * KA / (V * (KA - k)) * (np.exp(-k * tt) / (1 - np.exp(-k * tau))
                                          - np.exp(-KA * tt) / (1 - np.exp(-KA * tau)))
    ref = oral_ss(t)
    ref[-1] = oral_ss(tau)
    got = run("1cmt_oral", dict(CL=CL, V=V, KA=KA), reg, t=t, method=method)
    assert rel_err(got, ref) <= 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_steady_state_infusion(method):
    """SS infusion over 2 h every 12 h against 100 explicit doses (analytic superposition)."""
    CL, V, D, tau, dur = 3.0, 25.0, 100.0, 12.0, 2.0
    k, R = CL / V, D / dur

    def one(t):  # single infusion starting at 0
        during = R / CL * (1 - np.exp(-k * np.clip(t, 0, dur)))
        return np.where(t < 0, 0.0, np.where(t <= dur, during, during * np.exp(-k * (t - dur))))

    t = np.array([0.5, 1.5, 2.0, 5.0, 11.0])
    ref = sum(one(t + i * tau) for i in range(400))
    reg = Regimen((Dose(amt=D, duration=dur, ss=1, ii=tau),))
    assert rel_err(run("1cmt_iv", dict(CL=CL, V=V), reg, t=t, method=method), ref) <= 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_observation_at_dose_time_is_pre_dose(method):
    CL, V, D = 3.0, 25.0, 100.0
    k = CL / V
    t = np.array([12.0, 13.0])
    reg = Regimen.repeated(D, 12.0, 2)
    pre = run("1cmt_iv", dict(CL=CL, V=V), reg, t=t, method=method)
    post = run("1cmt_iv", dict(CL=CL, V=V), reg, t=t, method=method, obs_after_dose=True)
    trough = D / V * np.exp(-k * 12)
    assert rel_err(pre[0], trough) <= 1e-6
    assert rel_err(post[0], trough + D / V) <= 1e-6
    assert rel_err(pre[1], post[1]) <= 1e-9  # only the tie is affected


@pytest.mark.parametrize("method", METHODS)
def test_per_weight_dose(method):
    reg = Regimen((Dose(amt=2.0, per="WT"),))
    wt = np.array([50.0, 100.0])
    ds = simulate("1cmt_iv", dict(CL=3.0, V=25.0), reg, np.array([1.0]), method=method,
                  covariates={"WT": wt}, solver=TIGHT)
    ref = 2.0 * wt / 25.0 * np.exp(-3.0 / 25.0)
    assert rel_err(ds["conc"].values[:, 0], ref) <= 1e-6


def test_mm_at_low_concentration_matches_linear():
    """VMAX*C/(KM+C) ~ (VMAX/KM) C when C << KM: relative difference ~ C/KM."""
    CL, V, KM = 3.0, 25.0, 1e7
    t = np.linspace(0.5, 48, 20)
    lin = run("1cmt_iv", dict(CL=CL, V=V), Regimen.single(100.0), t=t)
    mm = run("1cmt_iv_mm", dict(VMAX=CL * KM, KM=KM, V=V), Regimen.single(100.0), t=t, method="ode")
    assert rel_err(mm, lin) <= 1e-6


def test_exact_path_repeated_eigenvalue_falls_back_to_ode():
    """KA = CL/V: Sylvester's formula is singular; the subject is re-solved on the ODE path and
    matches the degenerate Bateman solution C = F·D·KA·t·exp(-k t)/V, while the other subjects
    of the batch keep their exact-path values."""
    CL, V, D = 4.0, 20.0, 100.0
    k = CL / V
    KA = np.array([0.9, k, k * (1 + 1e-8), 1.7])
    reg = Regimen.repeated(D, 24.0, 2)
    ds = simulate("1cmt_oral", dict(CL=np.full(4, CL), V=np.full(4, V), KA=KA), reg, T, method="exact",
                  solver=TIGHT)
    assert ds.attrs["ode_fallback"] == 2 and (ds["status"].values == 0).all()
    tt = [T, np.clip(T - 24.0, 0, None)]
    degenerate = sum(D * k * s * np.exp(-k * s) / V for s in tt)
    for i in (1, 2):
        assert rel_err(ds["conc"].values[i], degenerate) <= 1e-6
    alone = simulate("1cmt_oral", dict(CL=np.full(2, CL), V=np.full(2, V), KA=KA[[0, 3]]), reg, T,
                     method="exact")
    np.testing.assert_array_equal(ds["conc"].values[[0, 3]], alone["conc"].values)
    assert alone.attrs["ode_fallback"] == 0
