"""Inter-occasion variability in trials: a cohort's ``P_occ`` is applied by occasion (``iov.starts``), and a
cohort with IOV but no occasion start times is refused instead of its IOV being ignored."""
import copy

import numpy as np
import pytest

from insilico.engine import simulate
from insilico.errors import SpecError
from insilico.trials import load_trial_spec, prepare
from insilico.trials._unit import compute_unit, draw_subjects, subject_range

STARTS = [0.0, 48.0]
COHORT = {
    "name": "iov_small",
    "covariates": {"WT": {"dist": "normal", "mean": 70, "sd": 10}},
    "parameters": {"CL": {"typical": 5.0}, "V": {"typical": 40.0}, "KA": {"typical": 1.2}},
    "bsv": {"parameters": ["CL"], "cv_percent": [20]},
    "iov": {"occasions": 2, "cv_percent": {"CL": 40, "KA": 30}, "starts": STARTS},
}
TRIAL = {"name": "iov_trial", "seed": 5, "n": 6, "model": {"name": "1cmt_oral"}, "cohort": COHORT,
         "arms": [{"name": "qd", "regimen": [{"amt": 100, "ii": 24, "n": 4}]}],
         "observations": {"times": {"start": 0, "stop": 96, "step": 4}},
         "endpoints": [{"name": "cmax", "type": "cmax", "window": [72, 96]}]}


def test_trial_applies_p_occ_by_occasion():
    ctx = prepare(*load_trial_spec(copy.deepcopy(TRIAL)), screen=False)
    arm = compute_unit(ctx, 0, 0, 0, 4)["arm"]
    assert (arm["status"] == 0).all()
    cohort, params, _, _ = draw_subjects(ctx, 0, subject_range(ctx, 0))
    occ = {f"{k}_occ": cohort[f"{k}_occ"].values for k in ("CL", "KA")}
    assert np.all(occ["CL_occ"][:, 0] != occ["CL_occ"][:, 1])
    reg = ctx.regimens[0]
    expected = simulate(ctx.model, {**params, **occ}, reg, ctx.nominal, occasions=STARTS).conc.values
    np.testing.assert_allclose(arm["conc"], expected, rtol=1e-12)
    # occasion 1 alone: equal to simulating with the occasion-1 values throughout, before 48 h only
    first = simulate(ctx.model, {**params, "CL": occ["CL_occ"][:, 0], "KA": occ["KA_occ"][:, 0]}, reg,
                     ctx.nominal).conc.values
    before = ctx.nominal < STARTS[1]
    np.testing.assert_allclose(arm["conc"][:, before], first[:, before], rtol=1e-12)
    assert np.max(np.abs(arm["conc"][:, ~before] / first[:, ~before] - 1)) > 0.05


def test_cohort_with_iov_but_no_occasion_starts_is_refused():
    spec = copy.deepcopy(TRIAL)
    del spec["cohort"]["iov"]["starts"]
    with pytest.raises(SpecError, match="no occasion start times") as e:
        prepare(*load_trial_spec(spec), screen=False)
    assert e.value.field == "cohort.iov.starts"


@pytest.mark.parametrize("starts", [[0.0], [48.0, 0.0]])
def test_bad_occasion_starts_are_refused(starts):
    spec = copy.deepcopy(TRIAL)
    spec["cohort"]["iov"]["starts"] = starts
    with pytest.raises(SpecError) as e:
        prepare(*load_trial_spec(spec), screen=False)
    assert e.value.field.startswith("cohort.iov")
