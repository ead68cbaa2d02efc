"""The example notebooks run top to bottom (nbclient, fresh kernel) without errors.

Each runs with its working directory and ``INSILICO_OUT`` set to a temporary directory and
``INSILICO_ROOT`` set to the repository, so nothing is written outside ``tmp_path``, and with
``INSILICO_EXAMPLE_DRAWS`` (posterior draws per forecast, risk or recommendation in the twin notebooks;
default 400) at 100: the run checks that every cell works, not Monte Carlo precision, and 400 draws cost
~30 s more CPU in the neutropenia notebook (Friberg's ODE is solved once per draw and regimen).
"""
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
EXAMPLE_DRAWS = 100


def test_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "cohorts.ipynb", "twins_vancomycin.ipynb",
                                           "twins_neutropenia.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("INSILICO_ROOT", str(ROOT))
    monkeypatch.setenv("INSILICO_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("INSILICO_EXAMPLE_DRAWS", str(EXAMPLE_DRAWS))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",   # per-cell hang guard
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert any((tmp_path / "out").iterdir())
    assert not list((ROOT / "examples").glob("out"))
