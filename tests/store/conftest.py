from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def trial_store(tmp_path_factory, client):
    """A small real trial (dose ranging: 4 arms, dropout, missed doses, residual error), 20 subjects,
    2 replicates, written to a real Zarr store."""
    from insilico.trials import run
    out = tmp_path_factory.mktemp("store") / "dr.zarr"
    run(ROOT / "trials/dose_ranging.yaml", out, cluster=client,
        overrides=["n=20", "replicates.n=2", "analysis.sample_size.resamples=20"])
    return out


@pytest.fixture(scope="session")
def ds(trial_store):
    import insilico
    return insilico.open_results(trial_store).load()


@pytest.fixture(scope="session")
def pta_ds(tmp_path_factory, client):
    """A small infusion trial with a PTA analysis by arm and renal group (12 subjects)."""
    from insilico.trials import run
    out = tmp_path_factory.mktemp("store") / "pta.zarr"
    return run(ROOT / "trials/antibiotic_pta.yaml", out, overrides=["n=12"], cluster=client).load()
