"""The ``ds.insilico`` accessor on a small real trial (20 subjects, 2 replicates): every property
against what the store holds, read independently with plain xarray/NumPy/json."""
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import insilico
from insilico.models import get_model


def test_spec_cohort_spec_and_analysis_are_the_stored_documents(ds):
    x = ds.insilico
    assert x.spec == json.loads(ds.attrs["spec"]) and x.spec["n"] == 20
    assert x.cohort_spec == json.loads(ds.attrs["cohort_spec"])
    stored = json.loads(ds.attrs["analysis"])
    tables = x.analysis
    assert set(tables) == {k for k, v in stored.items() if v}
    for kind in ("summary", "comparisons"):
        assert set(tables[kind]) == set(stored[kind])
        for ep, rows in stored[kind].items():
            pd.testing.assert_frame_equal(tables[kind][ep], pd.DataFrame(rows))
    for kind in ("probability_of_success", "power"):
        pd.testing.assert_frame_equal(tables[kind], pd.DataFrame(stored[kind]))


def test_analysis_of_an_unfinished_run_is_computed_from_the_values(ds):
    unfinished = ds.copy()
    unfinished.attrs = {k: v for k, v in ds.attrs.items() if k != "analysis"}
    got = unfinished.insilico.analysis
    want = ds.insilico.analysis
    for ep in want["summary"]:
        pd.testing.assert_frame_equal(got["summary"][ep], want["summary"][ep])
    pd.testing.assert_frame_equal(got["power"], want["power"])


def test_variable_names(ds):
    x = ds.insilico
    spec = json.loads(ds.attrs["spec"])
    assert x.endpoints == [e["name"] for e in spec["endpoints"]]
    assert x.outputs == ["conc", "effect"] and x.observed == ["conc_obs"]
    cohort = json.loads(ds.attrs["cohort_spec"])
    assert set(x.covariates) == set(cohort["covariates"]) | set(cohort["derived"])
    model = get_model(ds.attrs["model"])
    assert set(x.parameters) == {p for p in model.parameter_names if p in ds.data_vars}
    assert {"CL", "V1", "KA"} <= set(x.parameters)


@pytest.mark.parametrize("replicate", [None, 1])
def test_arm_values_are_the_simulated_pairs(ds, replicate):
    status = ds["status"].values
    reps = [0, 1] if replicate is None else [replicate]
    want = [(r, str(ds["arm"].values[a]), s, ds["auc_ss"].values[r, a, s])
            for r in reps for a in range(4) for s in range(20) if status[r, a, s] >= 0]
    got = ds.insilico.arm_values("auc_ss", replicate)
    assert list(got.columns) == ["replicate", "arm", "subject", "value"]
    assert [tuple(r) for r in got[["replicate", "arm", "subject"]].values.tolist()] == [w[:3] for w in want]
    np.testing.assert_array_equal(got["value"].to_numpy(), [w[3] for w in want])
    # parallel design: every subject is in exactly one arm per replicate
    assert len(got) == 20 * len(reps)


def test_arm_values_of_profiles_and_covariates(ds):
    T = ds.sizes["time"]
    conc = ds.insilico.arm_values("conc", 0, arm="100 mg qd")
    subjects = np.flatnonzero(ds["status"].values[0, 3] >= 0)
    assert list(conc.columns) == ["replicate", "arm", "subject", "time", "value"] and len(conc) == len(subjects) * T
    np.testing.assert_array_equal(conc["value"].to_numpy().reshape(-1, T), ds["conc"].values[0, 3, subjects])
    np.testing.assert_array_equal(conc["time"].to_numpy()[:T], ds["time"].values)
    wt = ds.insilico.arm_values("WT", 0)                  # (replicate, subject) repeated for the subject's arm
    alloc = ds["allocated_arm"].values[0]
    order = np.lexsort((np.arange(20), alloc))
    np.testing.assert_array_equal(wt["subject"].to_numpy(), order)
    np.testing.assert_array_equal(wt["value"].to_numpy(), ds["WT"].values[0, order])
    ok = ds.insilico.arm_values("auc_ss", ok_only=True)
    assert len(ok) == int((ds["status"].values == 0).sum())
    with pytest.raises(insilico.errors.SpecError, match="replicate"):
        ds.insilico.arm_values("auc_ss", 7)


def test_complete(ds):
    assert ds.insilico.complete
    partial = ds.copy(deep=True)
    partial["_done"][1, 2, 0] = 0
    assert not partial.insilico.complete


def test_nca_of_the_stored_profiles(ds):
    res = ds.insilico.nca("conc")
    assert res["cmax"].dims == ("replicate", "arm", "subject")
    ok = (ds["status"] == 0).values
    conc = ds["conc"].values
    # Cmax is the largest sampled concentration of each simulated pair; other pairs are NaN, flag no_data
    for r, a, s in zip(*np.nonzero(ok & (np.arange(4) > 0)[None, :, None])):
        assert res["cmax"].values[r, a, s] == np.nanmax(conc[r, a, s])
    assert np.isnan(res["cmax"].values[~ok]).all()
    assert all("no_data" in f for f in res["nca_flags"].values[~ok])
    # default dose: the first dose taken (mg); placebo has none -> clearance NaN, flag no_dose
    first = ds["dose_amt"].values[..., 0]
    treated = ok & (first > 0) & np.isfinite(res["aucinf_obs"].values)
    np.testing.assert_allclose(res["cl_obs"].values[treated], first[treated] / res["aucinf_obs"].values[treated],
                               rtol=1e-12)
    placebo = ok[:, 0]
    assert np.isnan(res["cl_obs"].values[:, 0][placebo]).all()
    assert all("no_dose" in f for f in res["nca_flags"].values[:, 0][placebo])


def test_plots_report_and_export_call_the_library(ds, tmp_path):
    from insilico.analysis import plots
    from insilico.analysis.export import to_nonmem
    from insilico.dosing import write_nonmem_csv
    fig = ds.insilico.plot.profiles("conc", log=True)
    assert isinstance(fig, Figure) and "central concentration" in fig.get_suptitle()
    assert isinstance(ds.insilico.plot.endpoints("responder"), Figure)
    assert isinstance(ds.insilico.plot.power(), Figure)
    paths = ds.insilico.plot.all(tmp_path / "png", dpi=40, n_individual=3)
    assert [p.stem for p in paths] == [n for n, _, _ in plots.figures(ds)]
    html = ds.insilico.report(tmp_path / "r.html", plots=False).read_text()
    assert "Endpoint summary by arm" in html and "Power vs N per arm" in html
    path = ds.insilico.export("nonmem", tmp_path / "nm.csv", dv="conc")
    assert path.read_text() == write_nonmem_csv(to_nonmem(ds, 0, "conc"), tmp_path / "ref.csv").read_text()


def test_pta_table_of_an_infusion_trial(pta_ds):
    stored = json.loads(pta_ds.attrs["analysis"])["pta"]
    pd.testing.assert_frame_equal(pta_ds.insilico.analysis["pta"], pd.DataFrame(stored))
    assert all(" | " in g for g in pta_ds.insilico.analysis["pta"]["group"])
