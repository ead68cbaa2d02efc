"""--overwrite removes only what insilico wrote; --out that cannot be a destination is refused.
Every refusal: exit 2 naming --out, nothing touched."""
import os

import pytest
import zarr
from typer.testing import CliRunner

from insilico.cli import app
from insilico.errors import SpecError
from insilico.store import recognise, replace_owned
from tests.safety.conftest import ROOT, SMALL, SPEC, intact, user_folder

runner = CliRunner()
COHORT = ROOT / "cohorts/healthy_adults.yaml"


def _sets():
    return [a for o in SMALL for a in ("--set", o)]


def refused(res, *words):
    assert res.exit_code == 2, res.output
    for w in ("--out", *words):
        assert w in res.output, res.output


def test_run_overwrite_of_a_user_folder_is_refused(tmp_path):
    d = user_folder(tmp_path / "mine")
    res = runner.invoke(app, ["run", str(SPEC), "--out", str(d), "--overwrite", "--quiet", *_sets()])
    refused(res, "not something insilico wrote")
    assert intact(d)


def test_run_out_is_an_existing_file(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep")
    refused(runner.invoke(app, ["run", str(SPEC), "--out", str(f), "--overwrite", "--quiet", *_sets()]),
            "existing file")
    assert f.read_text() == "keep"


@pytest.mark.parametrize("out", ["", ".", ".."])
def test_run_out_empty_dot_or_a_parent_of_the_working_directory(tmp_path, monkeypatch, out):
    work = tmp_path / "work"
    user_folder(work)
    monkeypatch.chdir(work)
    res = runner.invoke(app, ["run", str(SPEC), "--out", out, "--overwrite", "--quiet", *_sets()])
    assert res.exit_code == 2 and "--out" in res.output, res.output
    assert intact(work)


def test_run_overwrite_of_another_insilico_kind_is_refused(tmp_path):
    d = tmp_path / "c.zarr"
    zarr.open_group(str(d), mode="w").attrs["insilico_store"] = "cohort"
    res = runner.invoke(app, ["run", str(SPEC), "--out", str(d), "--overwrite", "--quiet", *_sets()])
    refused(res, "cohort")
    assert d.exists()


def test_plain_zarr_store_without_marker_is_not_ours(tmp_path):
    d = tmp_path / "theirs.zarr"
    zarr.open_group(str(d), mode="w").attrs["title"] = "someone else's data"
    assert recognise(d) is None
    with pytest.raises(SpecError, match="not something insilico wrote"):
        replace_owned(d, "trial", overwrite=True)
    assert (d / "zarr.json").exists()


def test_symlink_out_is_never_followed_for_removal(tmp_path):
    real = user_folder(tmp_path / "real")
    link = tmp_path / "link.zarr"
    os.symlink(real, link)
    with pytest.raises(SpecError, match="--out"):
        replace_owned(link, "trial", overwrite=True)
    assert intact(real)


def test_trial_store_is_marked_and_replaced(finished, store_copy, client):
    from insilico.trials import run
    assert zarr.open_group(str(finished), mode="r").attrs["insilico_store"] == "trial"
    ds = run(SPEC, store_copy, overrides=SMALL[:1] + ["replicates.n=2"], overwrite=True, cluster=client)
    assert ds.sizes["replicate"] == 2


def test_cohort_overwrite_of_a_user_csv_is_refused(tmp_path):
    f = tmp_path / "patients.csv"
    f.write_text("id,age\n1,50\n")
    refused(runner.invoke(app, ["cohort", str(COHORT), "--out", str(f), "--n", "5", "--overwrite"]),
            "not something insilico wrote")
    assert f.read_text() == "id,age\n1,50\n"


@pytest.mark.parametrize("name", ["c.csv", "c.zarr", "c.parquet"])
def test_cohort_overwrite_of_an_earlier_cohort(tmp_path, name):
    out = tmp_path / name
    assert runner.invoke(app, ["cohort", str(COHORT), "--out", str(out), "--n", "5"]).exit_code == 0
    assert recognise(out) == "cohort"
    again = runner.invoke(app, ["cohort", str(COHORT), "--out", str(out), "--n", "5"])
    refused(again, "already exists")
    res = runner.invoke(app, ["cohort", str(COHORT), "--out", str(out), "--n", "6", "--overwrite"])
    assert res.exit_code == 0, res.output


def test_report_overwrite_of_a_user_html_is_refused(finished, tmp_path):
    f = tmp_path / "index.html"
    f.write_text("<html>my homepage</html>")
    refused(runner.invoke(app, ["report", str(finished), "--out", str(f), "--overwrite", "--no-plots"]),
            "not something insilico wrote")
    assert f.read_text() == "<html>my homepage</html>"


def test_report_carries_generator_and_replaces_itself(finished, tmp_path):
    f = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(finished), "--out", str(f), "--no-plots"]).exit_code == 0
    assert '<meta name="generator" content="insilico' in f.read_text()
    res = runner.invoke(app, ["report", str(finished), "--out", str(f), "--no-plots", "--overwrite"])
    assert res.exit_code == 0, res.output


def test_plot_refuses_to_replace_without_overwrite(finished, tmp_path):
    d = tmp_path / "figs"
    args = ["plot", str(finished), "--out", str(d), "--dpi", "30", "--individuals", "2"]
    assert runner.invoke(app, args).exit_code == 0
    pngs = sorted(p.name for p in d.glob("*.png"))
    assert pngs and (d / "insilico-manifest.json").exists()
    refused(runner.invoke(app, args), "already exists")
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert sorted(p.name for p in d.glob("*.png")) == pngs


def test_plot_overwrite_never_replaces_a_user_png(finished, tmp_path):
    first = tmp_path / "first"
    args = ["plot", str(finished), "--dpi", "30", "--individuals", "2"]
    assert runner.invoke(app, [*args, "--out", str(first)]).exit_code == 0
    name = sorted(p.name for p in first.glob("*.png"))[0]
    mine = user_folder(tmp_path / "mine")
    (mine / name).write_bytes(b"my own figure")
    refused(runner.invoke(app, [*args, "--out", str(mine), "--overwrite"]), "not written by insilico")
    assert (mine / name).read_bytes() == b"my own figure" and intact(mine)


def test_plot_into_a_user_folder_keeps_the_user_files(finished, tmp_path):
    mine = user_folder(tmp_path / "mine")
    res = runner.invoke(app, ["plot", str(finished), "--out", str(mine), "--dpi", "30", "--individuals", "2"])
    assert res.exit_code == 0, res.output
    assert intact(mine) and list(mine.glob("*.png"))


def test_export_nonmem_overwrite_of_a_user_csv_is_refused(finished, tmp_path):
    f = tmp_path / "data.csv"
    f.write_text("ID,TIME,DV\n1,0,3\n")
    args = ["export", str(finished), "--format", "nonmem", "--out", str(f)]
    refused(runner.invoke(app, args), "already exists")
    refused(runner.invoke(app, [*args, "--overwrite"]), "not something insilico wrote")
    assert f.read_text() == "ID,TIME,DV\n1,0,3\n"


@pytest.mark.parametrize("fmt", ["parquet", "adam"])
def test_export_folder_overwrite_of_a_user_folder_is_refused(finished, tmp_path, fmt):
    d = user_folder(tmp_path / "mine")
    refused(runner.invoke(app, ["export", str(finished), "--format", fmt, "--out", str(d), "--overwrite"]),
            "not something insilico wrote")
    assert intact(d)


@pytest.mark.parametrize("fmt, out", [("nonmem", "nm.csv"), ("parquet", "pq"), ("adam", "adam")])
def test_export_replaces_an_earlier_export(finished, tmp_path, fmt, out):
    args = ["export", str(finished), "--format", fmt, "--out", str(tmp_path / out)]
    assert runner.invoke(app, args).exit_code == 0
    assert recognise(tmp_path / out) == "export"
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output


def test_campaign_overwrite_of_a_user_folder_is_refused(tmp_path):
    import yaml
    spec = tmp_path / "c.yaml"
    spec.write_text(yaml.safe_dump({"name": "c", "base": str(SPEC), "grid": {"n": [10]}, "set": SMALL[1:]}))
    d = user_folder(tmp_path / "mine")
    refused(runner.invoke(app, ["campaign", str(spec), "--out", str(d), "--overwrite", "--quiet"]),
            "not something insilico wrote")
    assert intact(d)


@pytest.mark.parametrize("args, option", [
    (["run", str(SPEC), "--workers", "-1"], "--workers"),
    (["run", str(SPEC), "--jobs", "0", "--cluster", "slurm"], "--jobs"),
    (["run", str(SPEC), "--cores", "0", "--cluster", "slurm"], "--cores"),
    (["cohort", str(COHORT), "--out", "x.csv", "--n", "0"], "--n"),
    (["cohort", str(COHORT), "--out", "x.csv", "--seed", "-3"], "--seed"),
    (["export", "x.zarr", "--format", "nonmem", "--out", "y.csv", "--replicate", "-1"], "--replicate"),
    (["plot", "x.zarr", "--out", "figs", "--individuals", "-1"], "--individuals"),
])
def test_cli_option_out_of_range(args, option, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and option in res.output, res.output
    assert not list(tmp_path.iterdir())
