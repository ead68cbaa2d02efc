"""Analysis of simulated (or observed) trial data: NCA, summaries, plots, reports."""
from .formatting import format_value
from .nca import AUC_METHODS, BLQ_PRESETS, FLAGS, ROUTES, BLQRule, auc, aumc, nca, nca_ss, parameter_table

__all__ = [
    "AUC_METHODS",
    "BLQ_PRESETS",
    "FLAGS",
    "ROUTES",
    "BLQRule",
    "auc",
    "aumc",
    "format_value",
    "nca",
    "nca_ss",
    "parameter_table",
]
