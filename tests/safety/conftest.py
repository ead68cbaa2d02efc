import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "trials/counterfactual_regimens.yaml"
SMALL = ["n=10", "replicates.n=1", "execution.chunk_size=5"]


@pytest.fixture(scope="session")
def finished(tmp_path_factory, client):
    """A small finished trial store (2 arms × 2 chunks of 5 subjects)."""
    from insilico.trials import run
    out = tmp_path_factory.mktemp("safety") / "done.zarr"
    run(SPEC, out, overrides=SMALL, cluster=client)
    return out


@pytest.fixture
def store_copy(finished, tmp_path):
    """A private copy of the finished store."""
    out = tmp_path / "copy.zarr"
    shutil.copytree(finished, out)
    return out


@pytest.fixture
def unfinished(store_copy):
    """The copy with one work unit marked not done (as a run stopped before its last unit)."""
    import zarr
    zarr.open_array(str(store_copy / "_done"), mode="r+")[0, 1, 1] = 0
    return store_copy


def user_folder(path: Path) -> Path:
    """A folder of the user's (not written by insilico) with two files."""
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    (path / "data.csv").write_text("a,b\n1,2\n")
    return path


def intact(path: Path) -> bool:
    return (path / "thesis.tex").read_text() == "years of work" and (path / "data.csv").exists()
