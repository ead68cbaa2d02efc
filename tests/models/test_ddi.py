"""Drug–drug interaction models (insilico.models.ddi_model, library names ``VICTIM+ddi_<mech>(PERP)``)
and the FDA (2020) static mechanistic equation (insilico.models.fda_static_auc_ratio) against
independent references: hand-computed values of the static equation; the dynamic model's victim
AUC ratio at a constant perpetrator concentration (loading bolus + infusion of a one-compartment
perpetrator) against the static equation, where the two must agree (constant I, enzyme at steady
state, Fg = 1); the analytic enzyme turnover solution at constant I; and the plain library models
(victim alone, KI → ∞, the perpetrator's own profile) solved on the exact path."""
from __future__ import annotations

from dataclasses import replace

import jax.numpy as jnp
import numpy as np
import pytest

from insilico.dosing import Dose, Regimen
from insilico.engine import SolverOptions, simulate
from insilico.errors import SpecError
from insilico.models import PARAMETER_INFO, Model, Output, Parameter, ddi_model, fda_static_auc_ratio, get_model
from insilico.units import is_valid_units

TIGHT = SolverOptions(rtol=1e-10, atol=1e-12)
ALL = "1cmt_oral+ddi_competitive_mbi_induction(1cmt_iv)"


# ------------------------------------------------------------------------------------------------
# the static equation by hand
# ------------------------------------------------------------------------------------------------

def test_static_equation_hand_values():
    # reversible: I = Ki halves the enzyme's clearance; fm = 1 doubles the AUC, fm = 0.5 gives 1/(0.25 + 0.5)
    assert fda_static_auc_ratio(1.0, 1.0, ki=1.0) == pytest.approx(2.0, rel=1e-14)
    assert fda_static_auc_ratio(0.5, 1.0, ki=1.0) == pytest.approx(4.0 / 3.0, rel=1e-14)
    # inactivation: B = 0.02 / (0.02 + 0.1 * 1/(1 + 1)) = 2/7
    assert fda_static_auc_ratio(1.0, 1.0, kinact=0.1, ki_mbi=1.0, kdeg=0.02) == pytest.approx(3.5, rel=1e-14)
    # induction: C = 1 + d * 4 * 1/(1 + 1) = 3 (d = 1) or 2 (d = 0.5)
    assert fda_static_auc_ratio(1.0, 1.0, emax=4.0, ec50=1.0) == pytest.approx(1.0 / 3.0, rel=1e-14)
    assert fda_static_auc_ratio(1.0, 1.0, emax=4.0, ec50=1.0, d=0.5) == pytest.approx(0.5, rel=1e-14)
    # all three: A·B·C = 1/2 · 2/7 · 3 = 3/7; fm = 0.7: 1 / (0.3 + 0.3)
    both = fda_static_auc_ratio(0.7, 1.0, ki=1.0, kinact=0.1, ki_mbi=1.0, kdeg=0.02, emax=4.0, ec50=1.0)
    assert both == pytest.approx(1.0 / 0.6, rel=1e-14)
    # gut term: [I]g = 3 Ki gives Ag = 1/4; Fg = 0.5: 1/(0.25·0.5 + 0.5) = 1.6, times the hepatic 2
    assert fda_static_auc_ratio(1.0, 1.0, ki=1.0, fg=0.5, i_g=3.0) == pytest.approx(3.2, rel=1e-14)
    # no perpetrator or no enzyme pathway: no interaction; arrays broadcast
    np.testing.assert_allclose(fda_static_auc_ratio(np.array([0.0, 0.3, 1.0]), 0.0, ki=1.0), 1.0, rtol=1e-15)
    assert fda_static_auc_ratio(0.0, 5.0, ki=1.0, emax=3.0, ec50=1.0) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("kwargs, field", [
    (dict(fm=1.5, i_h=1.0, ki=1.0), "fm"),
    (dict(fm=0.5, i_h=-1.0, ki=1.0), "i_h"),
    (dict(fm=0.5, i_h=1.0, ki=0.0), "ki"),
    (dict(fm=0.5, i_h=1.0, kinact=0.1, ki_mbi=1.0), "kdeg"),
    (dict(fm=0.5, i_h=1.0, emax=2.0), "ec50"),
    (dict(fm=0.5, i_h=1.0, ki=1.0, fg=0.5), "i_g"),
    (dict(fm=0.5, i_h=1.0, kinact=0.1, ki_mbi=1.0, kdeg=0.02, fg=0.5, i_g=1.0), "kdeg_g"),
])
def test_static_equation_refuses_bad_input(kwargs, field):
    with pytest.raises(SpecError) as e:
        fda_static_auc_ratio(**kwargs)
    assert e.value.field == field


# ------------------------------------------------------------------------------------------------
# dynamic model vs static equation at constant perpetrator concentration
# ------------------------------------------------------------------------------------------------

CSS, PERP_V, PERP_CL, FU = 0.8, 20.0, 2.0, 0.5      # mg/L, L, L/h; I = FU·CSS = 0.4 mg/L unbound
T0 = 400.0            # h: victim dose, after 20 enzyme half-lives (KDEG_E 0.05/h) of constant perpetrator
VICTIM = dict(CL=10.0, V=50.0, KA=1.0, F=0.9)
INTERACTION = dict(PERP_CL=PERP_CL, PERP_V=PERP_V, PERP_FU=FU, FM_E=0.8, KDEG_E=0.05)
OFF = dict(KI=1e30, KINACT=1e-30, KI_MBI=1.0, EMAX_IND=0.0, EC50_IND=1.0)     # every mechanism switched off
ON = dict(competitive=dict(KI=0.2),                                # A = 1/3
          mbi=dict(KINACT=0.2, KI_MBI=0.4),                        # B = 0.05/(0.05 + 0.2·0.5) = 1/3
          induction=dict(EMAX_IND=2.0, EC50_IND=0.4))              # C = 1 + 2·0.5 = 2
SCENARIOS = ["none", "competitive", "mbi", "induction", "all"]
EARLY = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0])         # h: enzyme time course
AFTER = np.concatenate([np.arange(0.01, 12.0, 0.01), np.arange(12.0, 800.0, 0.25)])  # h after the victim dose


def scenario_params(name):
    p = {**VICTIM, **INTERACTION, **OFF}
    for mech, values in ON.items():
        if name in (mech, "all"):
            p.update(values)
    return p


def static(name):
    kw = {}
    if name in ("competitive", "all"):
        kw.update(ki=ON["competitive"]["KI"])
    if name in ("mbi", "all"):
        kw.update(kinact=ON["mbi"]["KINACT"], ki_mbi=ON["mbi"]["KI_MBI"], kdeg=INTERACTION["KDEG_E"])
    if name in ("induction", "all"):
        kw.update(emax=ON["induction"]["EMAX_IND"], ec50=ON["induction"]["EC50_IND"])
    return fda_static_auc_ratio(INTERACTION["FM_E"], FU * CSS, **kw)


@pytest.fixture(scope="module")
def constant_exposure():
    """Rows: each scenario with the perpetrator at a constant concentration from t = 0 (bolus CSS·V
    plus an infusion at CSS·CL), then the victim alone; victim dose 100 mg at T0."""
    victim = Regimen.single(100.0, T0, cmt="victim.depot")
    perp = Regimen((Dose(amt=CSS * PERP_V, cmt="perp.central"),
                    Dose(amt=CSS * PERP_CL * 2000.0, rate=CSS * PERP_CL, cmt="perp.central")))
    rows = [scenario_params(s) for s in SCENARIOS] + [scenario_params("all")]
    params = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    times = np.concatenate([EARLY, T0 + AFTER])
    ds = simulate(get_model(ALL), params, [victim + perp] * len(SCENARIOS) + [victim], times, solver=TIGHT)
    assert (ds["status"].values == 0).all()
    return ds


def victim_auc(ds):
    """AUC0-∞ of the victim (mg·h/L): trapezoids on the fine grid (the tail beyond it is < 1e-12)."""
    c = ds["conc"].values[:, len(EARLY):]
    return np.trapezoid(np.concatenate([np.zeros((c.shape[0], 1)), c], axis=1),
                        np.concatenate([[0.0], AFTER]), axis=1)


def test_dynamic_auc_ratio_equals_static_equation(constant_exposure):
    ds = constant_exposure
    auc = victim_auc(ds)
    alone = auc[-1]
    # the victim alone: F·Dose/CL (independent analytic value; the trapezoid error is ~1e-5)
    assert alone == pytest.approx(0.9 * 100.0 / 10.0, rel=1e-4)
    for i, name in enumerate(SCENARIOS):
        expected = static(name)
        assert auc[i] / alone == pytest.approx(expected, rel=1e-4), name
        # at steady state the model's own clearance ratio is the reciprocal of the static AUC ratio
        assert ds["cl_ratio"].values[i, len(EARLY)] == pytest.approx(1.0 / expected, rel=1e-8), name
    assert static("none") == 1.0 and static("all") == pytest.approx(1.0 / (0.8 * 2.0 / 9.0 + 0.2), rel=1e-14)
    # the perpetrator stays at CSS (the loading dose + infusion is exact for one compartment)
    np.testing.assert_allclose(ds["conc_perp"].values[:-1], CSS, rtol=1e-8)


def test_enzyme_turnover_matches_analytic_solution(constant_exposure):
    """dE/dt = kdeg·C − (kdeg + kinact·I/(KI + I))·E at constant I: E(t) = Ess + (1 − Ess)·exp(−k·t),
    k = kdeg + kinact·I/(KI + I), Ess = kdeg·C/k (Mayhew 2000 turnover model)."""
    ds = constant_exposure
    i_u, kdeg = FU * CSS, INTERACTION["KDEG_E"]
    for name, row in (("mbi", 2), ("induction", 3), ("all", 4)):
        p = scenario_params(name)
        k = kdeg + p["KINACT"] * i_u / (p["KI_MBI"] + i_u)
        ess = kdeg * (1.0 + p["EMAX_IND"] * i_u / (p["EC50_IND"] + i_u)) / k
        expected = ess + (1.0 - ess) * np.exp(-k * EARLY)
        np.testing.assert_allclose(ds["enzyme"].values[row, :len(EARLY)], expected, rtol=1e-7, err_msg=name)
    np.testing.assert_allclose(ds["enzyme"].values[[0, 1, 5]], 1.0, rtol=1e-9)   # no enzyme mechanism active


# ------------------------------------------------------------------------------------------------
# limits: the plain library models
# ------------------------------------------------------------------------------------------------

def test_victim_alone_and_ki_to_infinity_equal_the_plain_models():
    m = get_model("2cmt_oral+ddi_competitive(1cmt_oral)")
    victim = dict(CL=5.0, V1=30.0, Q=8.0, V2=60.0, KA=1.3, F=0.8)
    perp = dict(CL=3.0, V=40.0, KA=0.9, F=0.7)
    p = {**victim, **{f"PERP_{k}": v for k, v in perp.items()}, "FM_E": 1.0, "PERP_FU": 1.0}
    times = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 13.0, 24.0, 36.0, 48.0])
    both = Regimen((Dose(100.0, 0.0, cmt="victim.depot"), Dose(50.0, 12.0, cmt="victim.depot"),
                    Dose(200.0, 0.0, cmt="perp.depot", ii=12.0, addl=3)))
    alone = Regimen((Dose(100.0, 0.0, cmt="victim.depot"), Dose(50.0, 12.0, cmt="victim.depot")))
    # rows: victim alone (potent KI), victim + perpetrator with KI → ∞, victim + perpetrator with KI = 1 mg/L
    params = {**p, "KI": np.array([0.01, 1e12, 1.0])}
    ds = simulate(m, params, [alone, both, both], times, solver=TIGHT)
    assert (ds["status"].values == 0).all()
    plain = Regimen((Dose(100.0, 0.0), Dose(50.0, 12.0)))
    ref = simulate("2cmt_oral", victim, plain, times, method="exact")["conc"].values[0]
    scale = ref.max()
    assert np.max(np.abs(ds["conc"].values[0] - ref)) <= 1e-8 * scale
    assert np.max(np.abs(ds["conc"].values[1] - ref)) <= 1e-8 * scale        # KI → ∞: ratio 1
    np.testing.assert_allclose(ds["cl_ratio"].values[:2], 1.0, rtol=0, atol=1e-8)
    assert ds["conc"].values[2, -1] > 1.5 * ref[-1]                           # a real inhibitor raises it
    perp_ref = simulate("1cmt_oral", perp, Regimen.single(200.0, ii=12.0, addl=3), times, method="exact")
    np.testing.assert_allclose(ds["conc_perp"].values[1:], np.broadcast_to(perp_ref["conc"].values, (2, times.size)),
                               rtol=1e-8, atol=1e-10 * perp_ref["conc"].values.max())
    assert np.all(ds["conc_perp"].values[0] == 0.0)


def test_mixed_elimination_victim_scales_cl_and_vmax():
    """Right-hand side against the plain models: the victim's CL and VMAX times cl_ratio, the
    perpetrator's own right-hand side with its unprefixed parameters, the enzyme's turnover."""
    victim, perp = get_model("1cmt_iv_mixed"), get_model("1cmt_iv")
    m = ddi_model(victim, perp, ["mbi", "competitive"])
    assert m.name == "1cmt_iv_mixed+ddi_competitive_mbi(1cmt_iv)"
    p = dict(CL=2.0, V=30.0, VMAX=20.0, KM=2.0, PERP_CL=4.0, PERP_V=25.0, FM_E=0.6, PERP_FU=0.4, KI=0.3,
             KINACT=0.5, KI_MBI=0.7, KDEG_E=0.03)
    y = jnp.array([40.0, 50.0, 0.6])          # victim central, perpetrator central (2 mg/L), enzyme E/E0
    i_u = 0.4 * 50.0 / 25.0
    ratio = 0.4 + 0.6 * 0.6 / (1.0 + i_u / 0.3)
    dy = np.asarray(m.rhs(0.0, y, p))
    scaled = dict(CL=2.0 * ratio, V=30.0, VMAX=20.0 * ratio, KM=2.0)
    assert dy[0] == pytest.approx(float(victim.rhs(0.0, y[:1], scaled)[0]), rel=1e-14)
    assert dy[1] == pytest.approx(float(perp.rhs(0.0, y[1:2], dict(CL=4.0, V=25.0))[0]), rel=1e-14)
    assert dy[2] == pytest.approx(0.03 * (1 - 0.6) - 0.5 * i_u / (0.7 + i_u) * 0.6, rel=1e-14)
    outs = m.evaluate_outputs(y, p)
    assert float(outs["cl_ratio"]) == pytest.approx(ratio, rel=1e-14)
    assert float(outs["conc_perp"]) == pytest.approx(2.0, rel=1e-14)
    assert float(outs["conc"]) == pytest.approx(40.0 / 30.0, rel=1e-14)


# ------------------------------------------------------------------------------------------------
# names, parameters, errors
# ------------------------------------------------------------------------------------------------

def test_names_states_parameters_and_units():
    m = get_model("2cmt_oral+ddi_induction_mbi(1cmt_oral)")
    assert m.name == "2cmt_oral+ddi_mbi_induction(1cmt_oral)"          # canonical mechanism order
    assert m.states == ("victim.depot", "victim.central", "victim.periph1", "perp.depot", "perp.central", "enzyme")
    assert m.dose_compartments == ("victim.depot", "victim.central", "perp.depot", "perp.central")
    assert m.default_dose_compartment == "victim.depot"
    assert set(m.output_names) == {"conc", "conc_perp", "cl_ratio", "enzyme"}
    assert {"PERP_CL", "PERP_V", "PERP_KA", "PERP_F", "PERP_ALAG", "KINACT", "KI_MBI", "KDEG_E", "EMAX_IND",
            "EC50_IND", "FM_E", "PERP_FU"} <= set(m.parameter_names)
    assert "KI" not in m.parameter_names and "CL" in m.parameter_names
    for q in m.parameters:
        info = PARAMETER_INFO[q.name]
        assert (q.units, q.description) == (info.units, info.long_name) and is_valid_units(q.units), q.name
    assert all(is_valid_units(o.units) for o in m.outputs)
    assert m.parameter("PERP_F").default == 1.0 and m.parameter("FM_E").constraint == "fraction"
    assert not m.is_linear and get_model("1cmt_oral+ddi_competitive(2cmt_oral)").meta["mechanisms"] == ("competitive",)
    with pytest.raises(SpecError) as e:
        m.validate_params(dict(CL=5.0, V1=30.0, Q=8.0, V2=60.0, KA=1.0))
    assert e.value.field == "parameters.PERP_CL"
    with pytest.raises(SpecError, match="unknown compartment 'depot'"):
        m.compartment_index("depot")


@pytest.mark.parametrize("name, message", [
    ("1cmt_oral+ddi_foo(1cmt_iv)", "unknown DDI mechanism 'foo'"),
    ("1cmt_oral+ddi_mbi_mbi(1cmt_iv)", "given twice"),
    ("1cmt_oral+ddi_mbi", "malformed DDI part"),
    ("1cmt_oral+ddi_mbi(9cmt_iv)", "unknown model"),
    ("1cmt_oral+ddi_mbi(1cmt_iv)+emax", "nothing may follow"),
])
def test_bad_names(name, message):
    with pytest.raises(SpecError, match=message):
        get_model(name)


def test_bad_compositions():
    ddi = get_model("1cmt_oral+ddi_mbi(1cmt_iv)")
    with pytest.raises(SpecError, match="already a DDI model"):
        ddi_model(ddi, get_model("1cmt_iv"), "competitive")
    no_cl = Model(name="ke", states=("central",), parameters=(Parameter("KE", "1/h", "rate"), Parameter("V", "L", "v")),
                  rhs=lambda t, y, p: -p["KE"] * y, dose_compartments=("central",),
                  outputs=(Output("conc", "mg/L", "c", lambda y, p: y[..., 0] / p["V"]),))
    with pytest.raises(SpecError, match="no clearance parameter"):
        ddi_model(no_cl, get_model("1cmt_iv"), "competitive")
    with pytest.raises(SpecError, match="no `conc` output"):
        ddi_model(get_model("1cmt_iv"), replace(get_model("1cmt_iv"), outputs=()), "competitive")
