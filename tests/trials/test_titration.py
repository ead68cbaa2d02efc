"""Titration and adaptive dosing rules (``arms.<i>.titration``) against hand-simulated cases.

References: a 1-compartment IV bolus model, C(t) = sum over doses d_k at t_k < t of
d_k / V · exp(−CL/V · (t − t_k)) (pre-dose at a dose time, analytic superposition), with the
rules re-applied by hand in a plain loop; the oncology example re-simulated from its stored dose
records by `insilico.engine.simulate` and its hold/reduction rules re-derived from the stored ANC.
"""
from pathlib import Path

import numpy as np
import pytest

from insilico.dosing import Dose, Regimen
from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.trials import load_trial_spec, prepare, run
from insilico.trials._titration import check_titration
from insilico.trials._unit import compute_unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "trials/oncology_titration.yaml"
COHORT = {"name": "iv", "covariates": {"WT": {"dist": "normal", "mean": 70, "sd": 18}},
          "parameters": {"CL": {"typical": 2.0, "effects": [{"covariate": "WT", "type": "power", "ref": 70,
                                                               "theta": 1.5}]},
                         "V": {"typical": 50.0}},
          "residual_error": {"type": "proportional", "proportional": 0.1}}
ESCALATE = {"name": "up", "at": [168, 264], "observe": {"output": "conc"}, "if": "value < 1.0",
            "then": {"scale": 1.5, "max": 200}}
HOLD = {"name": "hold_high", "at": "doses", "observe": {"output": "conc", "error": "none"}, "if": "value > 2.2",
        "then": {"hold": True}}


def iv_spec(n=16, **extra):
    spec = {"name": "iv_titration", "seed": 11, "n": n, "model": {"name": "1cmt_iv"}, "cohort": COHORT,
            "arms": [{"name": "escalate", "regimen": [{"amt": 100, "ii": 24, "n": 14}], "titration": [ESCALATE]},
                     {"name": "hold", "regimen": [{"amt": 100, "ii": 12, "n": 14}], "titration": [HOLD]}],
            "design": "counterfactual", "observations": {"times": [24, 168, 264, 336]}}
    spec.update(extra)
    return spec


def conc(t, dose_times, amounts, cl, v):
    """Analytic 1-cmt IV bolus concentration (mg/L) at ``t`` (pre-dose at a dose time)."""
    dose_times, amounts = np.asarray(dose_times), np.asarray(amounts)
    past = dose_times < t
    return float(np.sum(amounts[past] / v * np.exp(-cl / v * (t - dose_times[past]))))


@pytest.fixture(scope="module")
def iv_units():
    spec, base = load_trial_spec(iv_spec())
    ctx = prepare(spec, base)
    return ctx, [compute_unit(ctx, 0, arm, 0, n_doses=14) for arm in range(2)]


def test_escalation_matches_hand_simulation(iv_units):
    ctx, units = iv_units
    res, subj = units[0]["arm"], units[0]["subject"]
    times = np.arange(14) * 24.0
    nominal = list(ctx.nominal)
    fired_count = np.zeros(2, int)
    for s in range(16):
        cl, v = subj["CL"][s], subj["V"][s]
        amounts = np.full(14, 100.0)
        for i, t in enumerate((168.0, 264.0)):
            pred = conc(t, times, amounts, cl, v)
            j = nominal.index(t)
            np.testing.assert_allclose(res["conc"][s, j], pred, rtol=1e-10)
            observed = res["conc_obs"][s, j]          # the trial's residual draw at that sampling time
            assert res["titration_conc"][s, i] == observed
            fire = observed < 1.0
            fired_count[i] += fire
            assert res["titration_fired"][s, i] == int(fire)
            if fire:
                amounts[times >= t] = np.minimum(amounts[times >= t] * 1.5, 200.0)
            assert res["titration_dose"][s, i] == amounts[times >= t][0]
            assert res["titration_time"][s, i] == t
        np.testing.assert_array_equal(res["dose_amt"][s], amounts)
        np.testing.assert_allclose(res["conc"][s, nominal.index(336.0)], conc(336.0, times, amounts, cl, v),
                                   rtol=1e-10)
    # the hand case exercises both outcomes at both decisions, and the 200 mg cap (100 → 150 → 200)
    assert 0 < fired_count[0] < 16 and 0 < fired_count[1] < 16
    assert np.any(res["dose_amt"][:, -1] == 200.0)


def test_hold_rule_matches_explicit_regimen_without_the_held_doses(iv_units):
    ctx, units = iv_units
    res, subj = units[1]["arm"], units[0]["subject"]
    times = np.arange(14) * 12.0
    held_any = resumed = 0
    for s in range(16):
        cl, v = subj["CL"][s], subj["V"][s]
        given = np.ones(14, bool)
        for k, t in enumerate(times):        # hold while the pre-dose concentration is above 2.2 mg/L
            given[k] = not conc(t, times[:k], 100.0 * given[:k], cl, v) > 2.2
        np.testing.assert_array_equal(np.isfinite(res["dose_time"][s]), given)
        np.testing.assert_array_equal(res["titration_fired"][s], (~given).astype(int))
        held_any += (~given).any()
        resumed += bool((~given).any() and given[np.argmax(~given):].any())
        # the explicit regimen with the held doses removed, simulated directly by the engine
        reg = Regimen(tuple(Dose(amt=100.0, time=float(t)) for t in times[given]))
        direct = simulate("1cmt_iv", {"CL": np.array([cl]), "V": np.array([v])}, reg, ctx.nominal)
        np.testing.assert_allclose(res["conc"][s], direct["conc"].values[0], rtol=1e-10)
    assert 0 < held_any < 16 and resumed > 0


def test_same_results_whatever_the_chunk_size(tmp_path, client):
    common = ["dropout={hazard: 0.003}", "adherence={probability: 0.85}", "design=parallel"]
    a = run(iv_spec(n=20), tmp_path / "a.zarr", overrides=common + ["execution.chunk_size=20"], cluster=client)
    b = run(iv_spec(n=20), tmp_path / "b.zarr", overrides=common + ["execution.chunk_size=6"], cluster=client)
    a, b = a.drop_vars("_done").load(), b.drop_vars("_done").load()
    assert set(a.data_vars) == set(b.data_vars)
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)
    assert np.isfinite(a["dose_time"].values).sum() > 0
    # the decisions themselves, unit by unit (chunk 20 vs chunks of 6)
    whole, parts = (prepare(load_trial_spec(iv_spec(n=20), common + [f"execution.chunk_size={c}"])[0], ROOT)
                    for c in (20, 6))
    for arm in range(2):
        ref = compute_unit(whole, 0, arm, 0, n_doses=14)["arm"]
        got = [compute_unit(parts, 0, arm, k, n_doses=14)["arm"] for k in range(4)]
        for k in ("titration_time", "titration_fired", "titration_conc", "titration_dose", "dose_amt"):
            np.testing.assert_array_equal(np.concatenate([g[k] for g in got]), ref[k], err_msg=k)
        assert (ref["titration_fired"] == 1).any()


def test_oncology_example_against_direct_simulation_and_the_rules(tmp_path, client):
    ds = run(EXAMPLE, tmp_path / "onc.zarr", cluster=client).isel(replicate=0, arm=0).load()
    spec, _ = load_trial_spec(EXAMPLE)
    nominal = list(ds["time"].values)
    dose_times = np.arange(42) * 24.0
    assert (ds["status"].values == 0).all()
    held_subjects = resumed = 0
    for s in range(spec.n):
        anc = ds["ANC"].values[s]
        # the rules re-derived from the stored ANC at each weekly count (error: none → the prediction)
        amount, expected = 300.0, np.full(42, 300.0)
        for w in range(1, 6):
            t = 168.0 * w
            value = anc[nominal.index(t)]
            week = (dose_times >= t) & (dose_times < t + 168)
            if value < 0.5:
                amount = max(amount * 0.75, 100.0)
                expected[dose_times >= t] = amount
            if value < 1.0:
                expected[week] = 0.0
        np.testing.assert_allclose(ds["dose_amt"].values[s], expected, rtol=1e-12)
        held = expected == 0
        held_subjects += held.any()
        resumed += bool(held.any() and (expected[np.argmax(held):] > 0).any())
    assert 0 < held_subjects < spec.n and resumed > 0
    # the store keeps every decision: its time, the ANC it read (the stored profile there, to the ODE
    # tolerance) and the rule
    t_dec, anc_dec = ds["titration_time"].values, ds["titration_ANC"].values
    checked = 0
    for s in range(spec.n):
        for d in np.flatnonzero(np.isin(t_dec[s], nominal)):
            # the interim solve up to the decision vs the final one: the same ODE, its tolerances apart
            np.testing.assert_allclose(anc_dec[s, d], ds["ANC"].values[s][nominal.index(t_dec[s, d])], rtol=1e-6)
            checked += 1
    assert checked >= spec.n * 5 and ds["titration_ANC"].attrs["units"] == ds["ANC"].attrs["units"]
    assert set(ds["titration_rule"].attrs["flag_meanings"].split()) >= {"hold_anc"}
    # three subjects' final doses re-simulated directly by the engine (ODE, same tolerances)
    names = ["CL", "V", "KA", "CIRC0", "MTT", "GAMMA", "SLOPE"]
    for s in (0, spec.n // 2, spec.n - 1):
        given = np.isfinite(ds["dose_time"].values[s])
        reg = Regimen(tuple(Dose(amt=float(a), time=float(t)) for t, a in
                            zip(ds["dose_time"].values[s][given], ds["dose_amt"].values[s][given])))
        direct = simulate("1cmt_oral+friberg", {k: np.array([float(ds[k].values[s])]) for k in names}, reg,
                          np.asarray(nominal))
        for out in ("conc", "ANC"):
            np.testing.assert_allclose(ds[out].values[s], direct[out].values[0], rtol=1e-5, atol=1e-9,
                                       err_msg=f"{out} subject {s}")


@pytest.mark.parametrize("rule, field", [
    ({**ESCALATE, "observe": {"output": "AUC"}}, "arms.0.titration.0.observe.output"),
    ({**ESCALATE, "observe": {"output": "conc", "lag": 200}}, "arms.0.titration.0.observe.lag"),
])
def test_rules_the_model_cannot_apply_are_refused(rule, field):
    spec, base = load_trial_spec(iv_spec(n=4, design="parallel",
                                         arms=[{"name": "a", "regimen": [{"amt": 1}], "titration": [rule]}]))
    for screen in (True, False):              # refused before anything is written (`insilico validate`)
        with pytest.raises(SpecError) as e:
            prepare(spec, base, screen=screen)
        assert e.value.field == field


def test_an_endpoint_named_like_a_decision_variable_is_refused():
    spec, base = load_trial_spec(iv_spec(n=4, endpoints=[{"name": "titration_dose", "type": "cmax",
                                                          "window": [0, 24]}]))
    with pytest.raises(SpecError) as e:
        prepare(spec, base)
    assert e.value.field == "endpoints.0.name"


def test_residual_error_of_the_cohort_is_for_conc_only():
    spec, base = load_trial_spec(EXAMPLE, ["arms.0.titration.0.observe.error=residual"])
    with pytest.raises(SpecError) as e:
        check_titration(prepare(spec, base, screen=False))
    assert e.value.field == "arms.0.titration.0.observe.error"


@pytest.mark.parametrize("rule, field", [
    ({**ESCALATE, "if": "conc < 1"}, "arms.0.titration.0.if"),
    ({**ESCALATE, "if": "value"}, "arms.0.titration.0.if"),
    ({**ESCALATE, "if": "value <"}, "arms.0.titration.0.if"),
    ({**ESCALATE, "every": 24}, "arms.0.titration.0"),
    ({**ESCALATE, "then": {"hold": True, "max": 5}}, "arms.0.titration.0.then.max"),
    ({**ESCALATE, "then": {"scale": 2, "set": 5}}, "arms.0.titration.0.then"),
    ({**ESCALATE, "then": {"set": 5, "min": 6, "max": 4}}, "arms.0.titration.0.then.max"),
    ({**ESCALATE, "at": [10, 5]}, "arms.0.titration.0.at"),
    ({**ESCALATE, "start": 5}, "arms.0.titration.0.start"),
    ({**ESCALATE, "observe": {"output": "conc", "error": {"type": "proportional"}}},
     "arms.0.titration.0.observe.error"),
])
def test_malformed_rules_name_the_field(rule, field):
    with pytest.raises(SpecError) as e:
        load_trial_spec(iv_spec(design="parallel", arms=[{"name": "a", "regimen": [{"amt": 1}], "titration": [rule]}]))
    assert e.value.field == field, e.value


def test_arm_level_rule_errors():
    with pytest.raises(SpecError) as e:
        load_trial_spec(iv_spec(design="parallel", arms=[{"name": "a", "titration": [ESCALATE]}]))
    assert e.value.field == "arms.0.titration"
    with pytest.raises(SpecError) as e:
        load_trial_spec(iv_spec(design="parallel",
                                arms=[{"name": "a", "regimen": [{"amt": 1}], "titration": [ESCALATE, ESCALATE]}]))
    assert e.value.field == "arms.0.titration.1.name"


def test_add_on_an_infusion_keeps_its_duration_and_reads_the_planned_dose():
    rule = {"at": [48, 72], "observe": {"output": "conc", "error": "none"}, "if": "value < 100 and dose < 120",
            "then": {"add": 50}}
    spec, base = load_trial_spec(iv_spec(n=3, design="parallel", arms=[
        {"name": "inf", "regimen": [{"amt": 100, "duration": 2, "ii": 24, "n": 5}], "titration": [rule]}]))
    ctx = prepare(spec, base)
    unit = compute_unit(ctx, 0, 0, 0, n_doses=5)
    res, subj = unit["arm"], unit["subject"]
    expected = np.array([100, 100, 150, 150, 150.0])     # 48 h: 100 mg < 120 → +50; 72 h: 150 mg, not met
    for s in range(3):
        np.testing.assert_array_equal(res["titration_fired"][s], [1, 0])
        np.testing.assert_array_equal(res["dose_amt"][s], expected)
        np.testing.assert_array_equal(res["dose_rate"][s], expected / 2)   # 2 h infusions stay 2 h
        reg = Regimen(tuple(Dose(amt=float(a), time=24.0 * k, duration=2.0) for k, a in enumerate(expected)))
        direct = simulate("1cmt_iv", {"CL": subj["CL"][s:s + 1], "V": subj["V"][s:s + 1]}, reg, ctx.nominal)
        np.testing.assert_allclose(res["conc"][s], direct["conc"].values[0], rtol=1e-10)
