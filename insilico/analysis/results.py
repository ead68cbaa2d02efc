"""The trial analysis of a results store computed from its values (for a store whose run has not
finished, so that no analysis is stored); `ds.insilico.analysis` reads the stored one first."""
from __future__ import annotations

from insilico.errors import SpecError

__all__ = ["analyse_store"]


def analyse_store(ds) -> dict:
    """Summaries, comparisons, probability of success, PTA and power (JSON-able tables, as
    stored by a run) from the values in ``ds`` and its stored trial spec."""
    from insilico.trials import TrialSpec, analyse
    spec = ds.insilico.spec
    if spec is None:
        raise SpecError("results", "not a trial results store (no 'spec' attribute)")
    return analyse(ds, TrialSpec.model_validate(spec))
