"""Non-compartmental analysis against analytic PK profiles, hand calculations and a naive reference.

Tolerances (each test states its own):
* mono-exponential data: log-down trapezoid and log-linear regression are *exact*, so only
  floating-point rounding remains -> rtol 1e-10 (sums of ~10 terms, ~1e-15 each);
* densely sampled curved profiles: the trapezoid error is the Euler-Maclaurin term
  h^2/12 * (C'(b) - C'(a)); the tolerance is twice that estimate;
* hand examples: every number is written out; rtol 1e-12.
"""
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insilico.analysis import BLQRule, auc, aumc, nca, nca_ss, parameter_table
from insilico.analysis.nca import FLAGS
from insilico.errors import SpecError

EXACT = 1e-10  # rounding only (see module docstring)

# 1-compartment parameters used throughout
D, V, K = 100.0, 25.0, 0.12  # mg, L, 1/h
CL = K * V  # 3 L/h
T_IV = np.array([0.0, 0.5, 1, 2, 4, 6, 8, 12, 24])


def flags_of(df, i=0):
    f = df["nca_flags"].iloc[i]
    return set(f.split(";")) if f else set()


# --------------------------------------------------------------------------------------------
# analytic profiles
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample_t0", [True, False])
def test_iv_bolus_one_compartment_exact(sample_t0):
    """C = D/V e^{-kt}: log trapezoid and log-linear regression are exact -> rtol 1e-10."""
    t = T_IV if sample_t0 else T_IV[1:]
    c = D / V * np.exp(-K * t)
    r = nca(t, c, D, route="iv-bolus").iloc[0]
    assert r.c0 == pytest.approx(D / V, rel=EXACT)  # observed or back-extrapolated (exact for 1 exp)
    assert r.lambda_z == pytest.approx(K, rel=EXACT)
    assert r.lambda_z_n_points == len(t) - 1  # all after Tmax (= first sample): adj R2 = 1 for every n
    r_tmax = nca(t, c, D, route="iv-bolus", allow_tmax_in_lambda_z=True).iloc[0]
    assert r_tmax.lambda_z_n_points == len(t) and r_tmax.lambda_z == pytest.approx(K, rel=EXACT)
    assert r.adj_r_squared == pytest.approx(1.0, abs=1e-12)
    assert r.lambda_z_intercept == pytest.approx(np.log(D / V), rel=EXACT)
    assert r.half_life == pytest.approx(np.log(2) / K, rel=EXACT)
    for kind in ("obs", "pred"):
        assert r[f"aucinf_{kind}"] == pytest.approx(D / (V * K), rel=EXACT)
        assert r[f"aumcinf_{kind}"] == pytest.approx(D / (V * K**2), rel=EXACT)
        assert r[f"mrtinf_{kind}"] == pytest.approx(1 / K, rel=EXACT)
        assert r[f"cl_{kind}"] == pytest.approx(CL, rel=EXACT)
        assert r[f"vz_{kind}"] == pytest.approx(V, rel=EXACT)
        assert r[f"vss_{kind}"] == pytest.approx(V, rel=EXACT)
    assert r.auclast == pytest.approx(D / (V * K) * (1 - np.exp(-K * 24)), rel=EXACT)
    assert r.auc_pct_extrap_obs == pytest.approx(100 * np.exp(-K * 24), rel=1e-8)
    assert r.clast_pred == pytest.approx(r.clast, rel=EXACT)
    assert r.span_ratio == pytest.approx((24 - t[1]) * K / np.log(2), rel=EXACT)
    assert r["nca_flags"] == ""


def test_iv_bolus_linear_trapezoid_is_the_closed_form_trapezoid_sum():
    """Linear method: AUClast must equal sum dt (C1+C2)/2 evaluated here independently (rtol 1e-12)."""
    c = D / V * np.exp(-K * T_IV)
    r = nca(T_IV, c, D, route="iv-bolus", auc_method="linear").iloc[0]
    expected = np.sum(np.diff(T_IV) * (c[1:] + c[:-1]) / 2)
    assert r.auclast == pytest.approx(expected, rel=1e-12)
    assert r.auclast > D / (V * K) * (1 - np.exp(-K * 24))  # linear overestimates a convex decline


@pytest.mark.parametrize("method", ["linear-up/log-down", "linear"])
def test_oral_bateman_dense(method):
    """1-cmt first-order absorption (Bateman), h = 0.1 h to 96 h.

    AUC0-inf = F D / CL. The composite trapezoid error is ~ h^2/12 (C'(0) - C'(96)) = h^2/12 F D ka / V
    (Euler-Maclaurin; C'(96) ~ 0); tolerance = 2 x that relative to AUC (~2.4e-4).
    """
    F, KA, h = 0.8, 1.2, 0.1
    t = np.arange(0, 96 + h / 2, h)
    c = F * D * KA / (V * (KA - K)) * (np.exp(-K * t) - np.exp(-KA * t))
    auc_true = F * D / CL
    tol = 2 * h**2 / 12 * (F * D * KA / V) / auc_true
    r = nca(t, c, D, auc_method=method).iloc[0]
    assert r.c0 == 0.0  # sampled at t = 0 (value 0)
    assert r.aucinf_obs == pytest.approx(auc_true, rel=tol)
    assert r.aucinf_pred == pytest.approx(auc_true, rel=tol)
    assert r.cl_obs == pytest.approx(CL / F, rel=tol)  # apparent clearance CL/F
    # MRT (extravascular) = 1/k + 1/ka; AUMC has the same O(h^2) trapezoid error plus a ~1e-4 term
    # from the lambda_z bias below, so 2e-3.
    assert r.mrtinf_obs == pytest.approx(1 / K + 1 / KA, rel=2e-3)
    # With automatic selection on dense data the adj-R2 rule keeps points shortly after Tmax whose
    # e^{-ka t} contamination biases lambda_z by ~5e-4 (a property of the rule, as in Phoenix/PKNCA):
    # tolerance 1e-3. Vz/F inherits it.
    assert r.lambda_z == pytest.approx(K, rel=1e-3)
    assert r.vz_obs == pytest.approx(V / F, rel=1e-3 + tol)
    # The last 20 points (t >= 94 h) carry e^{-(ka-k) 94} ~ 1e-44 contamination: exact.
    r20 = nca(t, c, D, auc_method=method, lambda_z_points=20).iloc[0]
    assert r20.lambda_z == pytest.approx(K, rel=EXACT)
    assert r20.lambda_z_n_points == 20
    assert np.isnan(r20.vss_obs)  # Vss is defined for IV routes only


def test_two_compartment_terminal_phase():
    """C = A e^{-alpha t} + B e^{-beta t} sampled early and deep in the terminal phase.

    From 24 h on A e^{-alpha t}/(B e^{-beta t}) < 1e-14, so the selected points are log-linear with
    slope beta up to rounding (rtol 1e-10); the 2 h sample (alpha term ~20%) must be rejected.
    """
    A, ALPHA, B, BETA = 8.0, 1.5, 2.0, 0.1
    t = np.array([0, 0.25, 0.5, 1, 2, 24, 36, 48, 72, 96.0])
    c = A * np.exp(-ALPHA * t) + B * np.exp(-BETA * t)
    r = nca(t, c, 100.0, route="iv-bolus").iloc[0]
    assert r.lambda_z == pytest.approx(BETA, rel=EXACT)
    assert r.lambda_z_n_points == 5 and r.lambda_z_t_first == 24.0
    assert r.lambda_z_intercept == pytest.approx(np.log(B), rel=1e-9)

    # dense grid: AUCinf = A/alpha + B/beta within the Euler-Maclaurin estimate of the *linear*
    # trapezoid, h^2/12 |C'(0)| (log-down is exact on each exponential and does better).
    h = 0.05
    td = np.arange(0, 150 + h / 2, h)
    cd = A * np.exp(-ALPHA * td) + B * np.exp(-BETA * td)
    auc_true = A / ALPHA + B / BETA
    tol = 2 * h**2 / 12 * (A * ALPHA + B * BETA) / auc_true
    rd = nca(td, cd, 100.0, route="iv-bolus").iloc[0]
    assert rd.aucinf_obs == pytest.approx(auc_true, rel=tol)
    assert rd.cl_obs == pytest.approx(100.0 / auc_true, rel=tol)


def test_iv_infusion_one_compartment():
    """Zero-order input of D over Tinf = 2 h; dense sampling (h = 0.05 h).

    AUCinf = D/CL; MRT (corrected by Tinf/2) = 1/k; Vss = V. The kink at Tinf is sampled and both
    pieces are smooth: linear-trapezoid error < h^2/12 * R/V (C' jumps at most by R/V) -> tolerance
    2 x that relative to AUC plus lambda_z exactness (post-infusion points are mono-exponential).
    """
    TINF, h = 2.0, 0.05
    R = D / TINF
    t = np.arange(0, 96 + h / 2, h)
    during = R / (K * V) * (1 - np.exp(-K * np.minimum(t, TINF)))
    c = np.where(t <= TINF, during, R / (K * V) * (1 - np.exp(-K * TINF)) * np.exp(-K * (t - TINF)))
    tol = 2 * 2 * h**2 / 12 * (R / V) / (D / CL)
    r = nca(t, c, D, route="iv-infusion", duration=TINF).iloc[0]
    assert r.lambda_z == pytest.approx(K, rel=EXACT)
    assert r.lambda_z_t_first > TINF
    assert r.aucinf_obs == pytest.approx(D / CL, rel=tol)
    assert r.mrtinf_obs == pytest.approx(1 / K, rel=10 * tol)  # AUMC error ~ t * AUC error, t ~ 10 h
    assert r.vss_obs == pytest.approx(V, rel=10 * tol)
    with pytest.raises(SpecError, match="duration"):
        nca(t, c, D, route="iv-infusion")


# --------------------------------------------------------------------------------------------
# hand-computed examples
# --------------------------------------------------------------------------------------------
T5 = np.array([0.0, 1.0, 2.0, 4.0, 8.0])
C5 = np.array([0.0, 10.0, 8.0, 4.0, 1.0])  # after Tmax = 1 h: 8, 4, 1 = 16 * 2^(-t/2) exactly


def test_hand_example_linear():
    """Segments: 1*(0+10)/2 + 1*(10+8)/2 + 2*(8+4)/2 + 4*(4+1)/2 = 5 + 9 + 12 + 10 = 36."""
    r = nca(T5, C5, 50.0, auc_method="linear").iloc[0]
    assert r.auclast == pytest.approx(36.0, rel=1e-12)
    # AUMC: 1*(0*0 + 1*10)/2 + 1*(1*10 + 2*8)/2 + 2*(2*8 + 4*4)/2 + 4*(4*4 + 8*1)/2 = 5 + 13 + 32 + 48
    assert r.aumclast == pytest.approx(98.0, rel=1e-12)
    assert (r.cmax, r.tmax, r.clast, r.tlast) == (10.0, 1.0, 1.0, 8.0)
    # lambda_z on (2, 8), (4, 4), (8, 1): ln C = ln 16 - (ln2/2) t exactly -> lambda_z = ln2/2, t1/2 = 2 h
    assert r.lambda_z == pytest.approx(np.log(2) / 2, rel=1e-12)
    assert r.half_life == pytest.approx(2.0, rel=1e-12)
    assert r.lambda_z_intercept == pytest.approx(np.log(16.0), rel=1e-12)
    assert r.lambda_z_n_points == 3 and r.lambda_z_t_first == 2.0 and r.lambda_z_t_last == 8.0
    assert r.span_ratio == pytest.approx(6.0 / 2.0, rel=1e-12)
    # AUCinf = 36 + 1/(ln2/2) = 36 + 2.885390...; AUMCinf = 98 + 1*8/lz + 1/lz^2
    lz = np.log(2) / 2
    assert r.aucinf_obs == pytest.approx(36.0 + 2.8853900817779268, rel=1e-12)
    assert r.aumcinf_obs == pytest.approx(98.0 + 8 / lz + 1 / lz**2, rel=1e-12)
    assert r.mrtinf_obs == pytest.approx((98.0 + 8 / lz + 1 / lz**2) / (36.0 + 1 / lz), rel=1e-12)
    assert r.cl_obs == pytest.approx(50.0 / (36.0 + 1 / lz), rel=1e-12)
    assert r.vz_obs == pytest.approx(50.0 / (lz * (36.0 + 1 / lz)), rel=1e-12)
    assert r.auc_pct_extrap_obs == pytest.approx(100 * (1 / lz) / (36.0 + 1 / lz), rel=1e-12)


def test_hand_example_linear_up_log_down():
    """Up 0->10 linear: 5; down segments dt (C1-C2)/ln(C1/C2): 2/ln(1.25) + 8/ln 2 + 12/ln 4.

    = 5 + 8.962840235... + 11.541560327... + 8.656170245... = 34.160570808...
    """
    expected = 5.0 + 2.0 / np.log(10 / 8) + 8.0 / np.log(2) + 12.0 / np.log(4)
    assert expected == pytest.approx(34.16057080, rel=1e-9)
    r = nca(T5, C5, 50.0).iloc[0]
    assert r.auclast == pytest.approx(expected, rel=1e-12)
    # AUMC log segment: dt (t1 C1 - t2 C2)/L + dt^2 (C1 - C2)/L^2, L = ln(C1/C2)
    def log_aumc(t1, t2, c1, c2):
        L = np.log(c1 / c2)
        return (t2 - t1) * (t1 * c1 - t2 * c2) / L + (t2 - t1) ** 2 * (c1 - c2) / L**2

    exp_aumc = 5.0 + log_aumc(1, 2, 10, 8) + log_aumc(2, 4, 8, 4) + log_aumc(4, 8, 4, 1)
    assert r.aumclast == pytest.approx(exp_aumc, rel=1e-12)
    # the helpers give the same areas over the whole profile
    assert auc(T5, C5) == pytest.approx(expected, rel=1e-12)
    assert aumc(T5, C5) == pytest.approx(exp_aumc, rel=1e-12)
    assert auc(T5, C5, method="linear") == pytest.approx(36.0, rel=1e-12)


def test_hand_example_lin_log_and_log_up_segments():
    """'lin-log' uses the log trapezoid after Tmax even for a rising segment; before Tmax linear.

    t = 0, 1, 2, 3; C = 1, 4, 2, 3 (Tmax = 1): 1*(1+4)/2 + 1*(4-2)/ln 2 + 1*(2-3)/ln(2/3).
    linear-up/log-down uses linear for the last (rising) segment: 2.5 + 2/ln2 + 2.5.
    """
    t, c = np.array([0, 1, 2, 3.0]), np.array([1, 4, 2, 3.0])
    assert auc(t, c, "lin-log") == pytest.approx(2.5 + 2 / np.log(2) + (-1) / np.log(2 / 3), rel=1e-12)
    assert auc(t, c, "linear-up/log-down") == pytest.approx(2.5 + 2 / np.log(2) + 2.5, rel=1e-12)


def test_log_segment_stable_when_concentrations_nearly_equal():
    """C1/C2 = 1 + 1e-9. Reference: the textbook log-trapezoid formulas evaluated with 50-digit
    decimals. The implementation must agree to 1e-13 (rounding only); the same textbook AUMC
    formula in float64 is off by ~5e-10 here because its two 1/L^2-sized terms cancel."""
    from decimal import Decimal, getcontext

    getcontext().prec = 50
    t1, t2, c1, c2 = Decimal(10), Decimal(12), Decimal(1.0 + 1e-9), Decimal(1)  # exact binary values
    L = (c1 / c2).ln()
    dt = t2 - t1
    auc_ref = float(dt * (c1 - c2) / L)
    aumc_ref = float(dt * (t1 * c1 - t2 * c2) / L + dt**2 * (c1 - c2) / L**2)
    t = np.array([10.0, 12.0])
    c = np.array([1.0 + 1e-9, 1.0])
    assert auc(t, c) == pytest.approx(auc_ref, rel=1e-13)
    assert aumc(t, c) == pytest.approx(aumc_ref, rel=1e-13)


# --------------------------------------------------------------------------------------------
# lambda_z selection rule
# --------------------------------------------------------------------------------------------
def _reference_lambda_z(t, c, min_points=3, tol=1e-4):
    """Plain-loop implementation of the best-fit rule (independent of the vectorised one)."""
    imax = int(np.argmax(c))
    keep = (np.arange(len(c)) > imax) & (c > 0)
    tt, lc = t[keep], np.log(c[keep])
    fits = []
    for n in range(min_points, len(tt) + 1):
        slope, intercept = np.polyfit(tt[-n:], lc[-n:], 1)
        resid = lc[-n:] - (intercept + slope * tt[-n:])
        r2 = 1 - np.sum(resid**2) / np.sum((lc[-n:] - lc[-n:].mean()) ** 2)
        adj = 1 - (1 - r2) * (n - 1) / (n - 2)
        if -slope > 0:
            fits.append((n, -slope, intercept, adj))
    if not fits:
        return np.nan, 0, np.nan
    best = max(f[3] for f in fits)
    n, lam, icpt, _ = max((f for f in fits if f[3] > best - tol), key=lambda f: f[0])
    return lam, n, icpt


def test_lambda_z_selection_matches_reference_loop():
    """Noisy bi-exponential oral-like profiles (CV 15%): vectorised selection == loop (rtol 1e-8,
    the two least-squares solvers differ in rounding only)."""
    rng = np.random.default_rng(11)
    t = np.array([0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 10, 12, 16, 24, 36, 48])
    n_sub = 60
    ka = rng.uniform(0.5, 3, n_sub)[:, None]
    k = rng.uniform(0.05, 0.3, n_sub)[:, None]
    c = (np.exp(-k * t) - np.exp(-ka * t)) * rng.lognormal(0, 0.15, (n_sub, t.size)) * 10
    df = nca(t, c)
    for i in range(n_sub):
        lam, n, icpt = _reference_lambda_z(t, c[i])
        assert df.lambda_z_n_points.iloc[i] == n, i
        np.testing.assert_allclose(df.lambda_z.iloc[i], lam, rtol=1e-8)
        np.testing.assert_allclose(df.lambda_z_intercept.iloc[i], icpt, rtol=1e-8)


def test_lambda_z_rule_prefers_more_points_within_tolerance():
    """Last 3 points exactly log-linear (adj R2 = 1). A 4th point 0.1% off the line keeps adj R2
    within 1e-4 -> 4 points; 10% off -> adj R2 drops by > 1e-4 -> 3 points."""
    t = np.array([0.0, 1, 2, 4, 6, 8])
    line = 10 * np.exp(-0.2 * t)
    for bump, n_expected in [(1.001, 4), (1.10, 3)]:
        c = line.copy()
        c[0] = 0.0
        c[1] = 20.0  # Tmax at 1 h
        c[2] = line[2] * bump
        r = nca(t, c).iloc[0]
        assert r.lambda_z_n_points == n_expected, bump
    r = nca(t, np.where(t == 1, 20.0, np.where(t == 0, 0, line))).iloc[0]
    assert r.lambda_z == pytest.approx(0.2, rel=EXACT)


# --------------------------------------------------------------------------------------------
# BLQ handling
# --------------------------------------------------------------------------------------------
T_BLQ = np.array([0.0, 0.5, 1, 2, 4, 6, 8, 12, 24])
C_BLQ = np.array([0.01, 0.02, 1.5, 3.0, 2.0, 0.03, 1.0, 0.5, 0.04])  # LLOQ 0.05: 4 BLQ values
LLOQ = 0.05


def test_blq_default_zero_before_first_then_drop():
    """Leading BLQ (0, 0.5 h) -> 0; the one at 6 h (middle) and 24 h (trailing) are excluded."""
    r = nca(T_BLQ, C_BLQ, 10.0, lloq=LLOQ, auc_method="linear").iloc[0]
    t_ref = np.array([0.0, 0.5, 1, 2, 4, 8, 12])
    c_ref = np.array([0.0, 0.0, 1.5, 3.0, 2.0, 1.0, 0.5])
    ref = nca(t_ref, c_ref, 10.0, auc_method="linear").iloc[0]
    assert r.n_blq == 4 and r.n_obs == 7
    assert (r.tlast, r.clast) == (12.0, 0.5)
    # hand: 0 + 0.5*0.75 + 2.25 + 5 + 2*3 + 2*1.5 = 16.625
    assert r.auclast == pytest.approx(0.5 * 1.5 / 2 + 1 * 4.5 / 2 + 2 * 5 / 2 + 4 * 3 / 2 + 4 * 1.5 / 2, rel=1e-12)
    assert r.auclast == pytest.approx(ref.auclast, rel=1e-12)
    assert r.lambda_z == pytest.approx(ref.lambda_z, rel=1e-12)


def test_blq_other_rules():
    lin = {"auc_method": "linear", "lloq": LLOQ}
    zero = nca(T_BLQ, C_BLQ, **lin, blq_rule="zero").iloc[0]
    # all BLQ -> 0: the 6 h sample becomes 0, the 24 h one adds nothing to AUClast (Tlast = 12 h)
    assert zero.auclast == pytest.approx(0.375 + 2.25 + 5 + 2 * 2 / 2 + 2 * 1 / 2 + 3.0, rel=1e-12)
    assert zero.tlast == 12.0
    half = nca(T_BLQ, C_BLQ, **lin, blq_rule="half-lloq").iloc[0]
    assert half.tlast == 24.0 and half.clast == LLOQ / 2
    dropped = nca(T_BLQ, C_BLQ, **lin, blq_rule="drop").iloc[0]
    assert dropped.n_obs == 5 and dropped.c0 == 0.0  # C(0) = 0 inserted for extravascular
    pk = nca(T_BLQ, C_BLQ, **lin, blq_rule="pknca").iloc[0]
    default = nca(T_BLQ, C_BLQ, **lin).iloc[0]
    assert pk.auclast == default.auclast and pk.tlast == default.tlast  # trailing zero is harmless
    custom = nca(T_BLQ, C_BLQ, **lin, blq_rule={"first": "zero", "middle": 0.025, "last": "drop"}).iloc[0]
    assert custom.n_obs == 8 and custom.tlast == 12.0
    assert nca(T_BLQ, C_BLQ, **lin, blq_rule=BLQRule(middle=0.025)).iloc[0].auclast == custom.auclast
    with pytest.raises(SpecError, match="blq_rule"):
        nca(T_BLQ, C_BLQ, lloq=LLOQ, blq_rule="sometimes")
    with pytest.raises(SpecError, match="blq_rule.middle"):
        BLQRule(middle="maybe")


def test_no_lloq_means_values_used_as_given():
    r = nca(T_BLQ, C_BLQ, auc_method="linear").iloc[0]
    assert r.n_blq == 0 and r.n_obs == 9 and r.tlast == 24.0


# --------------------------------------------------------------------------------------------
# non-estimable subjects: NaN + flag, never an exception
# --------------------------------------------------------------------------------------------
def test_problem_subjects_flagged_not_raised():
    t = np.array([0.0, 1, 2, 4, 8, 12])
    c = np.array([
        [0.0, 2.0, 5.0, 4.0, 3.0, 2.0],          # 0: fine
        [0.0, 1.0, 2.0, 3.0, 4.0, 3.5],          # 1: only 1 point after Tmax -> too few
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],          # 2: no positive concentration
        [np.nan] * 6,                             # 3: no data
        [0.0, 1.0, 0.5, 0.6, 0.7, 0.8],          # 4: rising after Tmax -> lambda_z not > 0
        [0.0, 0.01, 0.01, 0.01, 0.01, 0.01],     # 5: BLQ everywhere (lloq below)
    ])
    lloq = [0, 0, 0, 0, 0, 0.05]
    df = nca(t, c, dose=[10, 10, 10, 10, 10, np.nan], lloq=lloq)
    assert len(df) == 6
    warnings_only = {"span_ratio_low", "auc_extrap_high"}  # short profile: warnings, values kept
    assert flags_of(df, 0) <= warnings_only and np.isfinite(df.aucinf_obs.iloc[0])
    assert "lambda_z_too_few_points" in flags_of(df, 1)
    assert np.isnan(df.lambda_z.iloc[1]) and df.lambda_z_n_points.iloc[1] == 0
    assert np.isnan(df.aucinf_obs.iloc[1]) and np.isnan(df.cl_obs.iloc[1])
    assert df.auclast.iloc[1] == pytest.approx(0.5 + 1.5 + 5 + 14 + 4 * 0.5 / np.log(4 / 3.5), rel=1e-12)
    assert flags_of(df, 2) == {"no_positive_conc"}
    assert df.auclast.iloc[2] == 0.0 and np.isnan(df.tlast.iloc[2]) and np.isnan(df.tmax.iloc[2])
    assert flags_of(df, 3) == {"no_data"} and df.drop(columns="nca_flags").iloc[3].isna().sum() >= 30
    assert "lambda_z_not_positive" in flags_of(df, 4) and np.isnan(df.lambda_z.iloc[4])
    assert {"no_positive_conc", "no_dose"} <= flags_of(df, 5) and df.n_blq.iloc[5] == 6  # 0 < LLOQ too
    assert set().union(*(flags_of(df, i) for i in range(6))) <= set(FLAGS)


def test_too_few_points_single_subject_one_dimensional():
    r = nca([0, 1, 2, 3], [0, 1, 4, 2], dose=5).iloc[0]
    assert np.isnan(r.lambda_z) and "lambda_z_too_few_points" in r["nca_flags"]
    assert r.auclast == pytest.approx(0.5 + 2.5 + 2 / np.log(2), rel=1e-12)


def test_warning_flags_keep_values():
    t = np.array([0.0, 1, 2, 3, 4])
    c = np.array([0, 10.0, 8, 6.4, 5.12])  # lambda_z = ln(1.25) ~ 0.223, t1/2 ~ 3.1 h, span 2 h
    r = nca(t, c, 1.0).iloc[0]
    assert {"span_ratio_low", "auc_extrap_high"} <= flags_of(pd.DataFrame([r]))
    assert r.lambda_z == pytest.approx(np.log(1.25), rel=1e-12) and np.isfinite(r.aucinf_obs)


def test_iv_bolus_c0_first_observed_when_not_declining():
    r = nca([1.0, 2, 4, 8], [2.0, 3.0, 1.5, 0.75], route="iv-bolus").iloc[0]
    assert r.c0 == 2.0 and "c0_first_observed" in r["nca_flags"]


# --------------------------------------------------------------------------------------------
# layouts: 2-D == row by row, ragged, xarray
# --------------------------------------------------------------------------------------------
def _random_batch(seed=3, n=25):
    rng = np.random.default_rng(seed)
    t = np.array([0.0, 0.5, 1, 2, 3, 4, 6, 8, 12, 24, 36])
    ka = rng.uniform(0.4, 3, (n, 1))
    k = rng.uniform(0.03, 0.4, (n, 1))
    c = 5 * (np.exp(-k * t) - np.exp(-ka * t)) * rng.lognormal(0, 0.2, (n, t.size))
    c[rng.random(c.shape) < 0.08] = np.nan  # missing samples
    c[:3, 4:] = np.nan  # subjects with too few points
    lloq = rng.choice([0.05, 0.1, 0.2], n)
    dose = rng.uniform(50, 150, n)
    return t, c, lloq, dose


@pytest.mark.parametrize("method", ["linear-up/log-down", "linear", "lin-log"])
def test_two_dimensional_equals_row_by_row(method):
    """Identical arithmetic per row, so equality to rtol 1e-13."""
    t, c, lloq, dose = _random_batch()
    df = nca(t, c, dose, lloq=lloq, auc_method=method)
    rows = pd.concat([nca(t, c[i], dose[i], lloq=lloq[i], auc_method=method) for i in range(len(c))])
    rows.index = df.index
    pd.testing.assert_frame_equal(df, rows, rtol=1e-13, check_exact=False)


def test_ragged_per_subject_times_equal_padded():
    t, c, lloq, dose = _random_batch(seed=5, n=6)
    keep = [np.isfinite(ci) for ci in c]
    times = [t[k] for k in keep]
    concs = [ci[k] for ci, k in zip(c, keep)]
    ragged = nca(times, concs, dose, lloq=lloq)
    padded = nca(t, c, dose, lloq=lloq)
    pd.testing.assert_frame_equal(ragged, padded, rtol=1e-13, check_exact=False)
    # unsorted per-subject times are sorted first
    shuffled = nca([ti[::-1] for ti in times], [ci[::-1] for ci in concs], dose, lloq=lloq)
    pd.testing.assert_frame_equal(shuffled, padded, rtol=1e-13, check_exact=False)


def test_xarray_dataset_with_units_and_extra_dims():
    t, c, _, _ = _random_batch(seed=7, n=8)
    da = xr.DataArray(c.reshape(2, 4, -1), dims=("arm", "subject", "time"),
                      coords={"arm": ["low", "high"], "subject": np.arange(4), "time": t},
                      attrs={"units": "mg/L"})
    dose_da = xr.DataArray([50.0, 100.0], dims="arm", coords={"arm": ["low", "high"]}, attrs={"units": "mg"})
    ds = nca(da, dose=dose_da, lloq=0.1)
    assert isinstance(ds, xr.Dataset) and dict(ds.sizes) == {"arm": 2, "subject": 4}
    assert ds["auclast"].attrs["units"] == "mg*h/L" and "AUC" in ds["auclast"].attrs["long_name"]
    assert ds["cl_obs"].attrs["units"] == "L/h" and ds["vz_obs"].attrs["units"] == "L"
    assert ds["lambda_z"].attrs["units"] == "1/h" and ds["aumclast"].attrs["units"] == "mg*h**2/L"
    assert all("long_name" in v.attrs for v in ds.data_vars.values())
    flat = nca(t, c, np.repeat([50.0, 100.0], 4), lloq=0.1)
    for name in ("auclast", "lambda_z", "cl_obs", "cmax"):
        np.testing.assert_allclose(ds[name].values.ravel(), flat[name].values, rtol=1e-13)
    assert list(ds["nca_flags"].values.ravel()) == list(flat["nca_flags"])
    # (subject, time) DataArray passed as conc with explicit keyword
    ds2 = nca(conc=da.isel(arm=0), dose=50.0, lloq=0.1)
    assert ds2["auclast"].dims == ("subject",)
    np.testing.assert_allclose(ds2["auclast"].values, flat["auclast"].values[:4], rtol=1e-13)


def test_dataframe_metadata_and_parameter_table():
    df = nca(T5, C5, 50.0, subjects=["S1"])
    assert df.index.name == "subject" and list(df.index) == ["S1"]
    assert df.attrs["units"]["cl_obs"] == "L/h" and df.attrs["units"]["auclast"] == "mg*h/L"
    assert set(df.columns) == set(df.attrs["long_name"])
    tab = parameter_table(time_unit="min", conc_unit="ng/mL", dose_unit="ng")
    assert tab.loc["auclast", "units"] == "ng*min/mL" and tab.loc["vz_obs", "units"] == "mL"
    assert parameter_table(steady_state=True).loc["auctau", "units"] == "mg*h/L"


def test_input_errors_are_spec_errors():
    with pytest.raises(SpecError, match="time"):
        nca([0, 1, 2], [[1, 2, 3, 4]])
    with pytest.raises(SpecError, match="auc_method"):
        nca(T5, C5, auc_method="cubic")
    with pytest.raises(SpecError, match="dose"):
        nca(T5, np.vstack([C5, C5]), dose=[1, 2, 3])
    with pytest.raises(SpecError, match="route"):
        nca(T5, C5, route="oral")
    with pytest.raises(SpecError, match="min_points"):
        nca(T5, C5, min_points=2)


# --------------------------------------------------------------------------------------------
# steady state
# --------------------------------------------------------------------------------------------
def test_steady_state_iv_bolus_exact():
    """Bolus every tau: C_ss(s) = D/V e^{-ks}/(1 - e^{-k tau}) for s in [0, tau] (s after START).

    AUCtau = D/CL exactly (log-down is exact on one exponential) -> rtol 1e-10; Cmax = C_ss(0),
    Cmin = Ctau = C_ss(tau) (the pre-dose trough of the next dose sampled at START + tau).
    """
    TAU, START = 12.0, 48.0
    s = np.array([0.0, 1, 2, 4, 6, 8, 10, 12])
    acc = 1 / (1 - np.exp(-K * TAU))
    c = D / V * np.exp(-K * s) * acc
    # samples outside the interval (previous and next interval) must be ignored
    t_all = np.concatenate([[START - 6], START + s, [START + TAU + 1]])
    c_all = np.concatenate([[D / V * np.exp(-K * 6) * acc], c, [D / V * np.exp(-K) * acc]])
    r = nca_ss(t_all, c_all, TAU, D, start=START).iloc[0]
    cmin_true = D / V * np.exp(-K * TAU) * acc
    assert r.n_obs == len(s)
    assert r.auctau == pytest.approx(D / CL, rel=EXACT)
    assert r.c0 == pytest.approx(D / V * acc, rel=EXACT) and r.ctau == pytest.approx(cmin_true, rel=EXACT)
    assert r.cmax == pytest.approx(D / V * acc, rel=EXACT) and r.tmax == 0.0
    assert r.cmin == pytest.approx(cmin_true, rel=EXACT) and r.tmin == TAU
    assert r.cavg == pytest.approx(D / (CL * TAU), rel=EXACT)
    assert r.fluctuation_pct == pytest.approx(100 * (r.cmax - r.cmin) / r.cavg, rel=1e-12)
    assert r.swing_pct == pytest.approx(100 * (r.cmax - r.cmin) / r.cmin, rel=1e-12)
    assert r.cl_ss == pytest.approx(CL, rel=EXACT)
    assert r.lambda_z == pytest.approx(K, rel=EXACT)  # points after Tmax (= 0) within the interval
    assert r.vz_ss == pytest.approx(V, rel=EXACT)
    assert r["nca_flags"] == "span_ratio_low"  # lambda_z span 11 h < 2 half-lives (5.8 h): warning only


def test_steady_state_interval_ends_interpolated():
    """Interval [1.5, 7.5] of C = e^{-0.3 t} sampled at integers: both ends are log-interpolated,
    exact for one exponential, so AUCtau = (e^{-0.45} - e^{-2.25})/0.3 (rtol 1e-10). With the
    linear method the ends are linearly interpolated: checked against the hand formula."""
    t = np.arange(0.0, 10.0)
    c = np.exp(-0.3 * t)
    r = nca_ss(t, c, tau=6.0, start=1.5).iloc[0]
    assert r.auctau == pytest.approx((np.exp(-0.45) - np.exp(-2.25)) / 0.3, rel=EXACT)
    assert r.c0 == pytest.approx(np.exp(-0.45), rel=EXACT) and r.ctau == pytest.approx(np.exp(-2.25), rel=EXACT)
    assert {"interval_start_interpolated", "interval_end_interpolated"} <= set(r["nca_flags"].split(";"))
    assert r.cmax == pytest.approx(np.exp(-0.6), rel=1e-12) and r.tmax == pytest.approx(0.5)  # observed only
    rl = nca_ss(t, c, tau=6.0, start=1.5, auc_method="linear").iloc[0]
    c_start = (c[1] + c[2]) / 2
    c_end = (c[7] + c[8]) / 2
    pts = np.concatenate([[c_start], c[2:8], [c_end]])
    tt = np.concatenate([[1.5], t[2:8], [7.5]])
    assert rl.auctau == pytest.approx(np.sum(np.diff(tt) * (pts[1:] + pts[:-1]) / 2), rel=1e-12)


def test_steady_state_oral_dense():
    """Oral dosing at steady state, h = 0.05 h within tau = 24 h: AUCtau = F D/CL, tolerance twice the
    Euler-Maclaurin trapezoid estimate h^2/12 |C'(0) - C'(tau)| relative to AUCtau."""
    F, KA, TAU, h = 0.8, 1.2, 24.0, 0.05
    s = np.arange(0, TAU + h / 2, h)
    a = F * D * KA / (V * (KA - K))
    c = a * (np.exp(-K * s) / (1 - np.exp(-K * TAU)) - np.exp(-KA * s) / (1 - np.exp(-KA * TAU)))
    dc0 = a * (-K / (1 - np.exp(-K * TAU)) + KA / (1 - np.exp(-KA * TAU)))
    tol = 2 * h**2 / 12 * 2 * abs(dc0) / (F * D / CL)
    r = nca_ss(s, c, TAU, D).iloc[0]
    assert r.auctau == pytest.approx(F * D / CL, rel=tol)
    assert r.cavg == pytest.approx(F * D / (CL * TAU), rel=tol)
    assert r.cl_ss == pytest.approx(CL / F, rel=tol)
    assert r.cmin == pytest.approx(min(c), rel=1e-12) and r.c0 == c[0] and r.ctau == c[-1]
    assert r["nca_flags"] == ""


def test_steady_state_uncovered_interval_is_nan_with_flag():
    df = nca_ss(np.array([0.0, 1, 2, 4, 6]), np.array([[1.0, 3, 2, 1.5, 1.0]]), tau=12.0, dose=10.0)
    r = df.iloc[0]
    assert np.isnan(r.auctau) and np.isnan(r.cl_ss) and "interval_end_missing" in r["nca_flags"]
    assert r.cmax == 3.0 and r.cmin == 1.0
    with pytest.raises(SpecError, match="tau"):
        nca_ss([0, 1], [1, 2])


def test_steady_state_xarray():
    t = np.arange(0, 24.5, 0.5)
    c = np.exp(-0.1 * t)[None, :] * np.array([[1.0], [2.0]])
    da = xr.DataArray(c, dims=("subject", "time"), coords={"time": t})
    ds = nca_ss(da, tau=24.0, dose=10.0)
    assert ds["auctau"].attrs["units"] == "mg*h/L" and ds["fluctuation_pct"].attrs["units"] == "percent"
    np.testing.assert_allclose(ds["auctau"].values, np.array([1, 2]) * (1 - np.exp(-2.4)) / 0.1, rtol=EXACT)
