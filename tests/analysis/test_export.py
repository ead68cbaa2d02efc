"""Exports of a results store: NONMEM round trip through read_nonmem + simulate, record counts,
ADaM-like flags and labels, Parquet read-back, and the `insilico export` CLI."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import insilico
from insilico.analysis.export import SIMULATED_LABEL, read_parquet, tables, to_adam, to_nonmem, to_parquet
from insilico.cli import app
from insilico.dosing import write_nonmem_csv

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "r.zarr"
    insilico.run(ROOT / "trials/dose_ranging.yaml", out, overrides=["n=40", "analysis.sample_size.resamples=50"])
    return out


@pytest.fixture(scope="module")
def ds(store):
    return insilico.open_results(store).load()


def test_design_has_missed_doses_and_dropout(ds):
    """The fixture trial must exercise what the exporter reconstructs."""
    taken = ds["doses_taken"].isel(replicate=0)
    treated = ds["status"].isel(replicate=0) >= 0
    assert int(((taken < 28) & treated & (taken > 0)).sum()) > 0           # missed doses
    assert np.isfinite(ds["dropout_time"].values).any()
    assert (ds["dropout_time"].values < 672).any()                          # dropout during dosing


def test_nonmem_round_trip_reproduces_stored_concentrations(ds):
    from insilico.dosing import read_nonmem
    from insilico.engine import simulate
    from insilico.models import get_model
    df = to_nonmem(ds, dv="conc")
    model = get_model(ds.attrs["model"])
    data = read_nonmem(df, model)
    subj = df.groupby("ID", sort=False)["SUBJ"].first().reindex(data.ids).to_numpy()
    arm = df.groupby("ID", sort=False)["ARMN"].first().reindex(data.ids).to_numpy() - 1
    params = {p: ds[p].isel(replicate=0).values[subj] for p in model.parameter_names if p in ds}
    sim = simulate(model, params, data.doses, data.times)
    got = sim["conc"].values
    stored = ds["conc"].isel(replicate=0).values                             # (arm, subject, time)
    nominal = ds["time"].values
    n_checked = 0
    for i in range(len(data.ids)):
        t = data.times[i][data.observed[i]]
        want = stored[arm[i], subj[i], np.searchsorted(nominal, t)]
        np.testing.assert_allclose(got[i][data.observed[i]], want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(data.dv[i][data.observed[i]], want, rtol=0, atol=0)
        n_checked += len(t)
    assert n_checked == np.isfinite(stored).sum() > 0


def test_nonmem_record_counts_and_semantics(ds, tmp_path):
    df = to_nonmem(ds)                                                        # DV = conc_obs (residual error)
    assert list(df.columns[:11]) == ["ID", "TIME", "AMT", "DV", "EVID", "MDV", "CMT", "RATE", "II", "ADDL", "SS"]
    doses, obs = df[df.EVID == 1], df[df.EVID == 0]
    assert len(doses) == int(ds["doses_taken"].isel(replicate=0).sum())
    assert len(obs) == int(np.isfinite(ds["conc_obs"].isel(replicate=0).values).sum())
    assert (doses.MDV == 1).all() and doses.DV.isna().all() and (doses.AMT > 0).all()
    assert (doses.CMT == 1).all()                                             # depot of 2cmt_oral
    assert (obs.MDV == 0).all() and obs.DV.notna().all()
    np.testing.assert_array_equal(np.sort(obs.DV.to_numpy()),
                                  np.sort(ds["conc_obs"].isel(replicate=0).values[
                                      np.isfinite(ds["conc_obs"].isel(replicate=0).values)]))
    # per subject: no dose at or after dropout, dose count = doses_taken
    drop = ds["dropout_time"].isel(replicate=0).values
    assert (doses.TIME.to_numpy() < drop[doses.SUBJ.to_numpy()]).all()
    taken = ds["doses_taken"].isel(replicate=0).values
    per = doses.groupby(["ARMN", "SUBJ"]).size()
    for (armn, s), k in per.items():
        assert taken[armn - 1, s] == k
    assert df.groupby("ID")[["ARMN", "SUBJ"]].nunique().max().max() == 1
    assert {"WT", "AGE", "SEX", "ARM"} <= set(df.columns)
    path = write_nonmem_csv(df, tmp_path / "nm.csv")
    back = pd.read_csv(path, na_values=["."])
    assert len(back) == len(df) and back.DV.isna().sum() == len(doses)


def test_adam_tables_are_flagged_simulated(ds):
    ad = to_adam(ds)
    assert {"ADSL", "ADPC", "ADPD", "ADPP"} <= set(ad)
    for name, df in ad.items():
        assert (df["SIMFL"] == "Y").all() and len(df) > 0, name
        assert SIMULATED_LABEL in df.attrs["label"]
    adpc = ad["ADPC"]
    assert set(adpc.PARAMCD) == {"CONC", "CONCOBS"}
    assert {"USUBJID", "ARM", "AVISIT", "ATPT", "ATPTN", "AVAL", "AVALU", "PARAM", "PARAMCD"} <= set(adpc.columns)
    assert (adpc.AVALU == "mg/L").all()
    assert (adpc.PARAMCD == "CONC").sum() == np.isfinite(ds["conc"].values).sum()
    adpp = ad["ADPP"]
    assert set(adpp.PARAMCD) >= {"AUCSS", "CMAXSS", "RESPONDE"}
    assert len(ad["ADSL"]) == ds.sizes["subject"] and ad["ADSL"].USUBJID.is_unique
    assert ad["ADSL"].DOSESTK.sum() == int(ds["doses_taken"].sum())


def test_parquet_reads_back_equal(ds, tmp_path):
    want = tables(ds)
    path = to_parquet(ds, tmp_path / "pq")
    got = read_parquet(path)
    assert set(got) == {"subjects", "observations", "endpoints", "doses"}
    for name, df in want.items():
        pd.testing.assert_frame_equal(got[name], df.reset_index(drop=True), check_dtype=False)
        assert SIMULATED_LABEL in got[name].attrs["label"]
    assert len(got["doses"]) == int(ds["doses_taken"].sum())
    import pyarrow.parquet as pq
    assert pq.read_schema(path / "doses.parquet").metadata[b"insilico.simulated"] == b"true"


def test_cli_export_formats_and_exit_codes(store, tmp_path):
    nm = tmp_path / "nm.csv"
    res = runner.invoke(app, ["export", str(store), "--format", "nonmem", "--out", str(nm), "--dv", "conc"])
    assert res.exit_code == 0, res.output
    assert nm.exists() and "EVID" in nm.read_text().splitlines()[0]
    again = runner.invoke(app, ["export", str(store), "--format", "nonmem", "--out", str(nm)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(app, ["export", str(store), "--format", "nonmem", "--out", str(nm),
                               "--overwrite"]).exit_code == 0
    ad = tmp_path / "adam"
    res = runner.invoke(app, ["export", str(store), "-f", "adam", "-o", str(ad)])
    assert res.exit_code == 0, res.output
    assert {"adsl.csv", "adpc.csv", "adpp.csv", "labels.json"} <= {p.name for p in ad.iterdir()}
    assert runner.invoke(app, ["export", str(store), "-f", "parquet", "-o", str(tmp_path / "pq")]).exit_code == 0
    bad = runner.invoke(app, ["export", str(store), "--format", "sas", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown format" in bad.output and not (tmp_path / "x").exists()
    assert runner.invoke(app, ["export", str(tmp_path / "none.zarr"), "-f", "nonmem",
                               "-o", str(tmp_path / "y.csv")]).exit_code == 2
    assert runner.invoke(app, ["export", str(store), "-f", "nonmem", "-o", str(tmp_path / "z.csv"),
                               "--dv", "nope"]).exit_code == 2
    proc = subprocess.run([sys.executable, "-m", "insilico.cli", "export", str(store), "--format", "xpt",
                           "--out", str(tmp_path / "w")], check=False, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown format" in proc.stderr
