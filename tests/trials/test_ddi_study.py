"""The example drug–drug interaction study `trials/ddi_study.yaml` (fixed sequence: victim alone, then
victim + perpetrator at steady state) run through `insilico.trials.run_crossover` and the CLI: its
geometric-mean ratios and 90 % CIs against statsmodels OLS and a paired t-interval on the stored
per-subject AUCs, its AUC ratio against the FDA (2020) static equation, and the checks on
co-administered doses (compartment, start time, state carry-over)."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from insilico.dosing import Dose
from insilico.errors import SpecError
from insilico.models import fda_static_auc_ratio
from insilico.trials import (
    CrossoverDesign,
    Formulation,
    be_summary,
    load_crossover_spec,
    open_crossover,
    run_crossover,
    simulate_crossover,
)

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "trials/ddi_study.yaml"
N = 10


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddi") / "ddi.zarr"
    run_crossover(SPEC, out, overrides=[f"n={N}"])
    return open_crossover(out)


def test_store_layout(study):
    ds = study
    assert ds.attrs["method"] == "paired" and (ds.status == 0).all()
    assert (ds.treatment.values == np.array([["A", "B"]] * N)).all() and set(ds.sequence.values) == {"AB"}
    assert ds.conc.dims == ("subject", "period", "time") and ds.AUCinf.attrs["units"] == "mg*h/L"
    # the victim's period 1 leaves nothing behind before period 2 (nonlinear model: checked, < 1 %)
    assert (ds.residual_fraction.values < 0.01).all()
    table = be_summary(ds)
    assert list(table.index) == ["AUCinf", "AUClast", "Cmax"] and (table.decided_by == "paired").all()
    assert (table.n_subjects == N).all() and (table.df == N - 1).all()


def test_ratios_match_independent_computations(study):
    ds, table = study, be_summary(study)
    for metric in table.index:
        y = np.log(ds[metric].values)                                  # (subject, period): A, B
        long = pd.DataFrame({"subject": np.repeat(ds.subject.values, 2), "treatment": ds.treatment.values.ravel(),
                             "ly": y.ravel()})
        fit = smf.ols("ly ~ C(subject) + C(treatment, Treatment('A'))", data=long).fit()
        name = "C(treatment, Treatment('A'))[T.B]"
        lo, hi = np.exp(fit.conf_int(alpha=0.10).loc[name])
        assert table.loc[metric, "gmr_pct"] == pytest.approx(100 * math.exp(fit.params[name]), rel=1e-9)
        assert table.loc[metric, "ci_lower_pct"] == pytest.approx(100 * lo, rel=1e-9)
        assert table.loc[metric, "ci_upper_pct"] == pytest.approx(100 * hi, rel=1e-9)
        # paired t-interval (scipy's t distribution) on the per-subject log differences
        d = y[:, 1] - y[:, 0]
        half = stats.t.ppf(0.95, N - 1) * d.std(ddof=1) / math.sqrt(N)
        assert table.loc[metric, "ci_lower_pct"] == pytest.approx(100 * math.exp(d.mean() - half), rel=1e-9)
        assert table.loc[metric, "cv_within_pct"] == pytest.approx(100 * math.sqrt(math.expm1(d.var(ddof=1) / 2)),
                                                                   rel=1e-9)
        assert table.loc[metric, "bioequivalent"] == (80 <= 100 * lo and 100 * hi <= 125)


def test_auc_ratio_agrees_with_the_static_equation(study):
    """Static expectation at the perpetrator's unbound average steady-state concentration
    fu·F·dose/(CL·τ) (its fluctuation, ±16 % over the 24 h interval, is averaged by the enzyme's slow
    turnover): the GMR of AUCinf lies within one CI width of it, and the interaction is clear."""
    spec, _ = load_crossover_spec(SPEC)
    p = spec.model.parameters
    dose = spec.crossover.formulations["B"].doses[0]
    i_u = p["PERP_FU"] * dose.amt / (p["PERP_CL"] * dose.ii)
    expected = fda_static_auc_ratio(p["FM_E"], i_u, kinact=p["KINACT"], ki_mbi=p["KI_MBI"], kdeg=p["KDEG_E"])
    assert expected == pytest.approx(2.0, abs=0.01)                  # the value the spec's comment states
    row = be_summary(study).loc["AUCinf"]
    width = (row.ci_upper_pct - row.ci_lower_pct) / 100
    assert abs(row.gmr_pct / 100 - expected) <= width, (row.gmr_pct, expected, width)
    assert row.ci_lower_pct > 125 and not row.bioequivalent


def test_cli_runs_and_validates_the_example(tmp_path):
    from typer.testing import CliRunner

    from insilico.cli import app

    cli = CliRunner()
    r = cli.invoke(app, ["validate", str(SPEC)])
    assert r.exit_code == 0 and "crossover" in r.output
    r = cli.invoke(app, ["run", str(SPEC), "--out", str(tmp_path / "d.zarr"), "--set", f"n={N}"],
                   env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "paired" in r.output and "AUCinf" in r.output
    # a fixed sequence cannot be analysed by the crossover ANOVA: refused, naming the field (exit 2)
    r = cli.invoke(app, ["validate", str(SPEC), "--set", "analysis.method=abe"])
    assert r.exit_code == 2 and "analysis" in r.output and "paired" in r.output


@pytest.mark.parametrize("override, field", [
    ("crossover.formulations.B.doses.0.cmt=depot", "crossover.formulations.B.doses.0.cmt"),
    ("crossover.formulations.B.doses.0.time=-400", "crossover.formulations.B.doses.0.time"),
    ("crossover.formulations.B.doses.0.amt=-1", "crossover.formulations.B.doses.0"),
    ("crossover.formulations.B.doses.0.ii=0", "crossover.formulations.B.doses.0"),
])
def test_bad_coadministered_doses(override, field):
    from insilico.trials import check_crossover

    with pytest.raises(SpecError) as e:
        spec, base = load_crossover_spec(SPEC, [override])
        check_crossover(spec, base)
    assert e.value.field.startswith(field), e.value


def test_perpetrator_carry_over_is_refused():
    """B before A with a washout shorter than the enzyme's recovery: the enzyme (and perpetrator) of
    period 1 are still away from baseline when period 2 starts, which a per-period simulation cannot
    represent: `SpecError` on design.washout, naming the state; a long enough washout passes."""
    params = dict(CL=5.0, V1=40.0, Q=8.0, V2=60.0, KA=1.2, PERP_CL=2.0, PERP_V=150.0, PERP_KA=1.0, PERP_FU=0.3,
                  FM_E=0.9, KINACT=0.1, KI_MBI=2.0, KDEG_E=0.019)
    perp = (Dose(amt=100.0, time=-96.0, cmt="perp.depot", ii=24.0, addl=4),)
    design = CrossoverDesign(sequences=[["B", "A"]], formulations={"A": Formulation(), "B": Formulation(doses=perp)},
                             dose=200.0, times=[0.0, 1.0, 2.0, 4.0, 8.0, 24.0], washout=240.0)
    with pytest.raises(SpecError) as e:
        simulate_crossover("2cmt_oral+ddi_mbi(1cmt_oral)", params, design)
    assert e.value.field == "design.washout" and ("'enzyme'" in e.value.message or "'perp." in e.value.message)
    ok = simulate_crossover("2cmt_oral+ddi_mbi(1cmt_oral)", params, replace(design, washout=1500.0))
    auc = ok.endpoints.pivot(index="subject", columns="treatment", values="AUCinf")
    assert float(auc["B"].iloc[0] / auc["A"].iloc[0]) > 1.3          # the inhibitor raised the victim's AUC
