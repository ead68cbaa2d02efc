"""Random-number stream ids: the one table of every stream insilico draws from.

Every random draw comes from ``fold_in(PRNGKey(seed), STREAM)`` followed by folds of what the
draw belongs to (replicate, subject index, dose, sample or observation index), never from chunk
or worker identity, so the same seed gives the same virtual patient and the same trial events
whatever N, chunk size or cluster. The ids below are part of the results' reproducibility:
changing one changes every number drawn from that stream.
"""
from __future__ import annotations

__all__ = ["COHORT", "JITTER", "OCCASION", "POPULATION", "RESIDUAL", "TRIAL", "stream_id"]

COHORT = 0x636F68       # b"coh": covariates, criteria attempts, eta and kappa of cohort draws
RESIDUAL = 0x726573     # b"res": residual (observation) error when applied to a cohort draw
OCCASION = 0x626F76     # b"bov": between-occasion kappa of crossover periods (folded with replicate, subject, period)
POPULATION = 0x706F70   # b"pop": inter-individual eta of the virtual patients drawn by BE power simulations

# trial design streams, folded with (replicate, subject index)
TRIAL = {"randomisation": 101, "dropout": 102, "adherence": 103, "schedule": 104,
         "uncertainty": 105, "residual": 106}
JITTER = 1_000_003      # folded into a subject's "schedule" key for sampling-time jitter


def stream_id(name: str) -> int:
    """The id of a trial design stream (``randomisation``, ``dropout``, ...)."""
    try:
        return TRIAL[name]
    except KeyError:
        raise KeyError(f"unknown random stream {name!r}; known: {', '.join(TRIAL)}") from None
