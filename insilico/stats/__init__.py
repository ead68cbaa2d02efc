"""Statistics of simulated endpoints: summaries, arm comparisons, probability of success,
probability of target attainment and power versus N. Pure functions of arrays, used by trial
analysis and reports (see `insilico.stats._trial` for methods and references)."""
from insilico.stats._trial import (
    RULE_KEYS,
    compare,
    power_curve,
    probability_of_success,
    summarise,
    target_attainment,
    wilson_ci,
)

__all__ = ["RULE_KEYS", "compare", "power_curve", "probability_of_success", "summarise", "target_attainment",
           "wilson_ci"]
