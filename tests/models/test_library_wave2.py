"""Wave-2 model library: myelosuppression, TMDD, parent-metabolite, tumour growth, and the CLI listing.

Every model runs through `insilico.engine.simulate` unchanged and is checked against an independent
reference: closed forms in analytic limits, scipy `solve_ivp` on the same equations written here,
conservation of mass, and the agreement of the TMDD approximations where they hold.
"""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from typer.testing import CliRunner

from insilico.cli import app
from insilico.dosing import Dose, Regimen
from insilico.engine import SolverOptions, simulate
from insilico.errors import SpecError
from insilico.models import (
    PARAMETER_INFO,
    Model,
    builtin_model_names,
    get_model,
    qss_free_concentration,
    tmdd_reduced_parameters,
)
from insilico.units import is_valid_units

TIGHT = SolverOptions(rtol=1e-10, atol=1e-12)
STIFF = SolverOptions(solver="kvaerno5", rtol=1e-10, atol=1e-13, max_steps=100000)
# for the TMDD approximation errors (>= 1e-4): 100x finer than what is measured, 4x faster than STIFF
STIFF_MODERATE = SolverOptions(solver="kvaerno5", rtol=1e-8, atol=1e-11, max_steps=100000)
BOLUS = Regimen((Dose(amt=100.0, time=0.0),))

NEW_MODELS = ["1cmt_iv_tmdd", "2cmt_iv_tmdd", "1cmt_iv_tmdd_qss", "2cmt_iv_tmdd_qss", "1cmt_iv_tmdd_mm",
              "2cmt_iv_tmdd_mm", "1cmt_iv+met1", "2cmt_oral+met2", "1cmt_iv+friberg", "1cmt_oral+friberg_emax",
              "1cmt_iv+simeoni"]


def rel_err(a, b, floor=0.0):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


# ---------------------------------------------------------------- myelosuppression (Friberg 2002)
FRIBERG = dict(CL=4.0, V=30.0, CIRC0=5.0, MTT=125.0, GAMMA=0.17, SLOPE=0.6)


def friberg_reference(p, dose, times, edrug):
    """The Friberg system written out here, 1-cmt IV bolus concentration in closed form, solved by
    scipy's Radau at rtol 1e-12."""
    ktr, k = 4.0 / p["MTT"], p["CL"] / p["V"]

    def f(t, y):
        c = dose / p["V"] * np.exp(-k * t)
        prol, t1, t2, t3, circ = y
        return [ktr * prol * (1 - edrug(c)) * (p["CIRC0"] / circ) ** p["GAMMA"] - ktr * prol,
                ktr * (prol - t1), ktr * (t1 - t2), ktr * (t2 - t3), ktr * (t3 - circ)]

    sol = solve_ivp(f, (0.0, times[-1]), [p["CIRC0"]] * 5, method="Radau", t_eval=times, rtol=1e-12, atol=1e-14)
    assert sol.success
    return sol.y[4]


def test_friberg_baseline_is_a_steady_state_without_drug():
    """With no drug effect (SLOPE = 0; EMAX = 0) every state starts and stays at CIRC0."""
    times = np.linspace(1.0, 1500.0, 60)
    no_drug = {k: v for k, v in FRIBERG.items() if k != "SLOPE"}
    for name, p in (("1cmt_iv+friberg", dict(no_drug, SLOPE=0.0)),
                    ("1cmt_iv+friberg_emax", dict(no_drug, EMAX=0.0, EC50=1.0))):
        ds = simulate(name, p, BOLUS, times, method="ode", solver=TIGHT)
        assert int(ds["status"][0]) == 0
        assert np.max(np.abs(ds["ANC"].values[0] - p["CIRC0"])) <= 1e-8 * p["CIRC0"], name


@pytest.mark.parametrize("name,drug", [("1cmt_iv+friberg", None), ("1cmt_iv+friberg_emax", (1.5, 2.0))])
def test_friberg_profile_and_nadir_match_scipy(name, drug):
    p = dict(FRIBERG)
    if drug is None:
        def edrug(c):
            return p["SLOPE"] * c
    else:
        p.pop("SLOPE")
        p.update(EMAX=drug[0], EC50=drug[1])

        def edrug(c):
            return p["EMAX"] * c / (p["EC50"] + c)
    dose = 400.0
    times = np.arange(2.0, 1000.0, 2.0)
    ds = simulate(name, p, Regimen((Dose(amt=dose, time=0.0),)), times, method="ode", solver=TIGHT)
    anc, ref = ds["ANC"].values[0], friberg_reference(p, dose, times, edrug)
    assert int(ds["status"][0]) == 0
    assert rel_err(anc, ref) <= 1e-7
    nadir = int(np.argmin(ref))
    assert int(np.argmin(anc)) == nadir and 50 < nadir < len(times) - 50  # an interior nadir, same time
    assert ref[nadir] < 0.6 * p["CIRC0"]  # the dose is myelosuppressive: the comparison is not trivial


def test_friberg_parameters_are_validated():
    m = get_model("1cmt_iv+friberg")
    for bad, field in (({"MTT": 0.0}, "MTT"), ({"CIRC0": -1.0}, "CIRC0"), ({"SLOPE": -0.1}, "SLOPE")):
        with pytest.raises(SpecError) as e:
            m.validate_params({**FRIBERG, **bad})
        assert f"parameters.{field}" in str(e.value)


# ---------------------------------------------------------------- TMDD (Mager & Jusko 2001; Gibiansky 2008)
TMDD_T = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 24.0, 48.0, 96.0, 168.0, 336.0])


@pytest.mark.parametrize("name", ["1cmt_iv_tmdd", "1cmt_iv_tmdd_qss", "1cmt_iv_tmdd_mm"])
def test_tmdd_without_target_is_linear_one_compartment(name):
    """R0 = KSYN/KDEG = 1e-12 mg/L: binding is negligible and C = D/V·exp(−CL/V·t) (relative error
    1e-8, absolute 1e-12 mg/L below 1e-4 mg/L)."""
    full = dict(CL=0.2, V=3.0, KON=1.0, KOFF=0.05, KINT=0.04, KSYN=1e-14, KDEG=0.01)
    p = full if name.endswith("tmdd") else tmdd_reduced_parameters(full, "qss")
    ds = simulate(name, p, BOLUS, TMDD_T, solver=STIFF)
    assert int(ds["status"][0]) == 0
    ref = 100.0 / 3.0 * np.exp(-0.2 / 3.0 * TMDD_T)
    assert rel_err(ds["conc"].values[0], ref, floor=1e-4) <= 1e-8


def test_tmdd_starts_at_target_baseline_without_drug():
    p = dict(CL=0.2, V1=3.0, Q=0.5, V2=2.0, KON=1.0, KOFF=0.05, KINT=0.04, KSYN=0.02, KDEG=0.01)
    ds = simulate("2cmt_iv_tmdd", p,
                  Regimen((Dose(amt=0.0, time=0.0),)), TMDD_T, solver=STIFF)
    np.testing.assert_allclose(ds["target"].values[0], 2.0, rtol=1e-10)
    np.testing.assert_allclose(ds["complex"].values[0], 0.0, atol=1e-14)


@pytest.mark.parametrize("n_cmt", [1, 2])
def test_tmdd_qss_converges_to_full_model_as_binding_gets_fast(n_cmt):
    """Scaling KON and KOFF by s keeps KSS and makes binding s times faster: the QSS error on the
    free concentration, total target and complex falls like 1/s and is < 2e-3 at s = 1000."""
    base = dict(CL=0.2, KINT=0.04, KSYN=0.02, KDEG=0.01)  # R0 = 2 mg/L, doses of 30 mg in V = 3 L
    base |= {"V": 3.0} if n_cmt == 1 else {"V1": 3.0, "Q": 0.5, "V2": 2.0}
    reg = Regimen((Dose(amt=30.0, time=0.0), Dose(amt=30.0, time=168.0)))
    s = np.array([10.0, 1000.0])  # two subjects, one per speed-up
    full = dict(base, KON=1.0 * s, KOFF=0.05 * s)
    f = simulate(f"{n_cmt}cmt_iv_tmdd", full, reg, TMDD_T, solver=STIFF_MODERATE)
    q = simulate(f"{n_cmt}cmt_iv_tmdd_qss", tmdd_reduced_parameters(full, "qss"), reg, TMDD_T, solver=STIFF_MODERATE)
    assert (f["status"] == 0).all() and (q["status"] == 0).all()
    errs = [max(rel_err(q[o].values[i], f[o].values[i]) for o in ("conc", "target_total", "complex"))
            for i in range(2)]
    assert errs[1] <= 2e-3
    assert errs[1] <= errs[0] / 30.0


def test_tmdd_mm_converges_to_full_model_when_target_is_negligible():
    """KINT = KDEG (total target constant) and R0 ≪ C: the MM approximation's error on the free
    concentration falls with R0 and is < 3e-2 for R0 = 1e-4 mg/L (KSS = 0.05 mg/L), while the
    target-mediated elimination (VMAX = KINT·R0·V = 1.2e-3 mg/h) dominates the linear one at
    low concentrations (the model is far from linear)."""
    kss, kon, reg = 0.05, 1000.0, Regimen((Dose(amt=3.0, time=0.0),))
    times = np.array([1.0, 8.0, 48.0, 168.0, 504.0, 1000.0])
    errs = []
    for r0, k in ((1e-2, 0.04), (1e-4, 4.0)):
        full = dict(CL=0.005, V=3.0, KINT=k, KDEG=k, KSYN=r0 * k, KON=kon, KOFF=kss * kon - k)
        f = simulate("1cmt_iv_tmdd", full, reg, times, solver=STIFF_MODERATE)
        m = simulate("1cmt_iv_tmdd_mm", tmdd_reduced_parameters(full, "mm"), reg, times, solver=STIFF_MODERATE)
        assert int(f["status"][0]) == 0 and int(m["status"][0]) == 0
        errs.append(rel_err(m["conc"].values[0], f["conc"].values[0]))
        linear = 1.0 * np.exp(-0.005 / 3.0 * times)
        assert f["conc"].values[0, -1] < 0.5 * linear[-1]
    assert errs[1] <= 3e-2 and errs[1] <= errs[0] / 10.0


def test_qss_free_concentration_solves_the_binding_equilibrium():
    """Ctot = C + Rtot·C/(KSS + C) (free + bound) to 1e-12, including the cancellation-prone regime
    Ctot ≪ Rtot where the naive root loses every digit (then C → KSS·Ctot/(Rtot + KSS))."""
    ctot = np.array([1e-12, 1e-6, 0.1, 1.0, 10.0, 1e4])
    rtot, kss = 50.0, 0.02
    c = np.asarray(qss_free_concentration(jnp.asarray(ctot), rtot, kss))
    assert np.all((c > 0) & (c <= ctot))
    np.testing.assert_allclose(c + rtot * c / (kss + c), ctot, rtol=1e-12)
    np.testing.assert_allclose(c[:2], kss * ctot[:2] / (rtot + kss), rtol=1e-7)


def test_tmdd_reduced_parameters_and_validation():
    full = dict(CL=0.2, V=3.0, KON=2.0, KOFF=0.06, KINT=0.04, KSYN=0.02, KDEG=0.01)
    red = tmdd_reduced_parameters(full, "qss")
    assert set(red) == {"CL", "V", "KSS", "KINT", "KSYN", "KDEG"} and red["KSS"] == pytest.approx(0.05)
    with pytest.raises(SpecError) as e:
        get_model("1cmt_iv_tmdd").validate_params({**full, "KON": 0.0})
    assert "parameters.KON" in str(e.value)
    with pytest.raises(SpecError) as e:
        get_model("1cmt_iv_tmdd+met1")
    assert e.value.field == "model"


def test_pd_is_driven_by_the_free_concentration_of_a_tmdd_model():
    """In the QSS model ``central`` holds the total drug; a PD block must see the free drug."""
    p = dict(CL=0.2, V=3.0, KSS=0.5, KINT=0.04, KSYN=0.2, KDEG=0.01, E0=1.0, EMAX=10.0, EC50=2.0)
    ds = simulate("1cmt_iv_tmdd_qss+emax", p, Regimen((Dose(amt=30.0, time=0.0),)), TMDD_T, keep_states=True)
    c, total = ds["conc"].values[0], ds["amount"].values[0][:, 0] / p["V"]
    assert np.all(total - c > 0.1 * c)  # the bound drug is not negligible: the check can fail
    np.testing.assert_allclose(ds["effect"].values[0], 1.0 + 10.0 * c / (2.0 + c), rtol=1e-12)


# ---------------------------------------------------------------- parent-metabolite
MET = dict(CL=4.0, V=30.0, FM=0.6, CLM=2.0, VM=12.0)


@pytest.mark.parametrize("method", ["exact", "ode"])
def test_metabolite_matches_bateman_closed_form(method):
    """1-cmt IV parent, 1-cmt metabolite: M(t) = FM·D·k/(km − k)·(e^{−k t} − e^{−km t})."""
    times = np.array([0.25, 1.0, 3.0, 8.0, 24.0, 48.0])
    p = dict(MET, MWR=1.5)
    ds = simulate("1cmt_iv+met1", p, BOLUS, times, method=method, solver=TIGHT)
    k, km = p["CL"] / p["V"], p["CLM"] / p["VM"]
    m = p["FM"] * 100.0 * k / (km - k) * (np.exp(-k * times) - np.exp(-km * times))
    assert rel_err(ds["conc_met"].values[0], 1.5 * m / p["VM"]) <= 1e-9
    assert rel_err(ds["conc"].values[0], 100.0 / p["V"] * np.exp(-k * times)) <= 1e-9


def test_metabolite_exact_matches_ode_for_two_compartments():
    p = dict(CL=4.0, V1=30.0, Q=8.0, V2=60.0, KA=1.3, F=0.8, FM=0.4, CLM=2.0, VM=10.0, QM=3.0, VM2=25.0)
    reg = Regimen((Dose(amt=100.0, time=0.0), Dose(amt=50.0, time=12.0)))
    times = np.array([0.5, 2.0, 6.0, 12.0, 13.0, 24.0, 72.0])
    ex = simulate("2cmt_oral+met2", p, reg, times, method="exact")
    od = simulate("2cmt_oral+met2", p, reg, times, method="ode", solver=TIGHT)
    assert rel_err(ex["conc_met"].values, od["conc_met"].values) <= 1e-7


def test_metabolite_mass_balance_with_nonlinear_parent():
    """Everything the parent loses (F·dose − parent amounts) times FM is in the metabolite or has
    been eliminated by it (∫ CLM·M/VM dt, accumulated in an extra state): checked at every time,
    for a Michaelis–Menten, oral, 2-cmt parent and a 2-cmt metabolite."""
    m = get_model("2cmt_oral_mm+met2")
    n_met = m.states.index("metabolite")

    def rhs(t, y, p):
        return jnp.concatenate([m.rhs(t, y[:-1], p), p["CLM"] / p["VM"] * y[n_met:n_met + 1]])

    acc = Model(name="met+acc", states=m.states + ("met_eliminated",), parameters=m.parameters, rhs=rhs,
                outputs=m.outputs, dose_compartments=m.dose_compartments,
                default_dose_compartment=m.default_dose_compartment,
                bioavailability=lambda p: jnp.concatenate([m.bioavailability(p), jnp.ones(1)]),
                lag=lambda p: jnp.concatenate([m.lag(p), jnp.zeros(1)]))
    p = dict(V1=30.0, Q=8.0, V2=60.0, VMAX=40.0, KM=3.0, KA=1.3, F=0.8, FM=0.35, CLM=2.0, VM=10.0, QM=3.0,
             VM2=25.0)
    times = np.array([0.5, 2.0, 6.0, 12.0, 24.0, 96.0, 400.0])
    ds = simulate(acc, p, BOLUS, times, method="ode", solver=TIGHT, keep_states=True)
    y = ds["amount"].values[0]
    parent_lost = 0.8 * 100.0 - y[:, :n_met].sum(axis=1)
    in_metabolite = y[:, n_met:].sum(axis=1)
    assert int(ds["status"][0]) == 0 and parent_lost[-1] > 79.0
    assert rel_err(in_metabolite, p["FM"] * parent_lost) <= 1e-8


def test_metabolite_parameters_are_validated():
    m = get_model("1cmt_iv+met1")
    for bad, field in (({"FM": 1.5}, "FM"), ({"FM": -0.1}, "FM"), ({"VM": 0.0}, "VM"), ({"MWR": -1.0}, "MWR")):
        with pytest.raises(SpecError) as e:
            m.validate_params({**MET, **bad})
        assert f"parameters.{field}" in str(e.value)
    assert float(m.validate_params(MET)["MWR"]) == 1.0  # parent-mass equivalents by default


# ---------------------------------------------------------------- tumour growth (Simeoni 2004)
SIMEONI = dict(CL=4.0, V=30.0, W0=0.05, LAMBDA0=0.01, LAMBDA1=0.004, K1=0.05, K2=0.02)


def test_simeoni_without_drug_grows_exponentially_then_linearly():
    """K2 = 0: w = W0·e^{LAMBDA0·t} while w ≪ wth = LAMBDA1/LAMBDA0 (here 0.4 g), then dw/dt = LAMBDA1;
    with PSI = 20 the closed forms hold to 1e-6 away from the switch."""
    p = dict(SIMEONI, K2=0.0)
    lam0, lam1, w0 = p["LAMBDA0"], p["LAMBDA1"], p["W0"]
    t_switch = np.log(lam1 / lam0 / w0) / lam0  # 208 h
    t_exp = np.linspace(5.0, 0.7 * t_switch, 12)  # w <= 0.22 g
    t_lin = np.linspace(t_switch + 150.0, t_switch + 1500.0, 12)  # w >= 1 g
    ds = simulate("1cmt_iv+simeoni", p, BOLUS, np.concatenate([t_exp, t_lin]), method="ode", solver=TIGHT)
    w = ds["TUMOR"].values[0]
    assert rel_err(w[:12], w0 * np.exp(lam0 * t_exp)) <= 1e-6
    slopes = np.diff(w[12:]) / np.diff(t_lin)
    assert rel_err(slopes, lam1) <= 1e-6
    # the linear phase continues the exponential one: w = wth + LAMBDA1·(t − t_switch) up to the
    # smoothing of the switch (PSI = 20), small compared with wth
    assert rel_err(w[12:], lam1 / lam0 + lam1 * (t_lin - t_switch)) <= 0.02


def test_simeoni_with_drug_matches_scipy():
    p = dict(SIMEONI, PSI=20.0)
    times = np.linspace(2.0, 600.0, 40)
    reg = Regimen(tuple(Dose(amt=300.0, time=t) for t in (0.0, 24.0, 48.0)))
    ds = simulate("1cmt_iv+simeoni", p, reg, times, method="ode", solver=TIGHT)
    k = p["CL"] / p["V"]

    def f(t, x):
        c = sum(300.0 / p["V"] * np.exp(-k * (t - td)) for td in (0.0, 24.0, 48.0) if t >= td)
        w = x.sum()
        grow = p["LAMBDA0"] * x[0] / (1 + (p["LAMBDA0"] / p["LAMBDA1"] * w) ** p["PSI"]) ** (1 / p["PSI"])
        return [grow - p["K2"] * c * x[0], p["K2"] * c * x[0] - p["K1"] * x[1],
                p["K1"] * (x[1] - x[2]), p["K1"] * (x[2] - x[3])]

    ref, x, t0 = [], [p["W0"], 0.0, 0.0, 0.0], 0.0
    for t1 in (24.0, 48.0, 600.0):  # integrate from dose to dose (the concentration jumps)
        sol = solve_ivp(f, (t0, t1), x, method="Radau", dense_output=True, rtol=1e-12, atol=1e-14)
        assert sol.success
        ref.append(sol.sol(times[(times > t0) & (times <= t1)]).sum(axis=0))
        x, t0 = sol.y[:, -1], t1
    ref = np.concatenate(ref)
    w = ds["TUMOR"].values[0]
    assert int(ds["status"][0]) == 0 and np.any(np.diff(w) < 0)  # the drug shrinks the tumour for a while
    assert rel_err(w, ref) <= 1e-7


def test_simeoni_growth_switch_does_not_overflow():
    """A huge tumour relative to wth with a sharp switch (PSI = 200): (LAMBDA0·w/LAMBDA1)^PSI
    overflows in floating point, the growth rate must still be LAMBDA1 (linear phase)."""
    p = dict(SIMEONI, K2=0.0, PSI=200.0, W0=50.0)  # w/wth = 125: 125**200 = inf
    ds = simulate("1cmt_iv+simeoni", p, BOLUS, np.array([10.0, 20.0]), method="ode", solver=TIGHT)
    w = ds["TUMOR"].values[0]
    assert int(ds["status"][0]) == 0
    assert (w[1] - w[0]) / 10.0 == pytest.approx(p["LAMBDA1"], rel=1e-9)


# ---------------------------------------------------------------- library-wide and CLI
def test_new_models_are_listed_with_units_and_references():
    names = builtin_model_names()
    for name in NEW_MODELS:
        m = get_model(name)
        # the list is representative (the engine battery runs it): one model of each new family
        family = next(f for f in ("_tmdd", "+met", "+friberg", "+simeoni") if f in name)
        assert any(family in n for n in names), family
        for p in m.parameters:
            assert p.name in PARAMETER_INFO and is_valid_units(p.units), (name, p.name)
        for o in m.outputs:
            assert is_valid_units(o.units), (name, o.name)
    assert {"ANC", "TUMOR", "conc_met", "target_total", "complex"} <= {
        o for n in NEW_MODELS for o in get_model(n).output_names}


def test_unknown_composition_is_refused():
    for bad in ("1cmt_iv+met3", "1cmt_iv+friberg+met1", "1cmt_iv_tmdd_xyz", "1cmt_iv+met1+met1"):
        with pytest.raises(SpecError) as e:
            get_model(bad)
        assert e.value.field == "model", bad


def test_cli_models_shows_every_unit_and_no_empty_part(monkeypatch):
    from insilico.cli._common import console
    monkeypatch.setattr(console, "width", 400)    # the CLI's console: wide enough that no cell is cut or wrapped
    runner = CliRunner()
    res = runner.invoke(app, ["models"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    out = res.output
    # (the console width is fixed when the CLI is first imported: long cells may be cut, so CIRC0's
    # units are checked in the one-model description below)
    for text in ("VMAX [mg/h]", "KM [mg/L]", "ALAG [h]", "KON [L/(mg*h)]", "parameters [units]",
                 "1cmt_iv_tmdd_qss", "2cmt_oral+met1", "1cmt_iv+friberg", "PK[+met1|+met2][+ke0][+PD]"):
        assert text in out, text
    assert "+  +" not in out and " [] " not in out
    for line in out.splitlines():  # every parameter of every row carries its units
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 3 and cells[1] and cells[2] and cells[1] != "model":
            for par in cells[2].split(", "):
                assert "[" in par and par.endswith("]"), (cells[1], par)
    res = runner.invoke(app, ["models", "1cmt_oral_mixed+friberg"])
    assert res.exit_code == 0
    for text in ("VMAX    [mg/h]", "ALAG    [h]", "MTT     [h]", "CIRC0   [10**9/L]", "output ANC [10**9/L]"):
        assert text in res.output, text
