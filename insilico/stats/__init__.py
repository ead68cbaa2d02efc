"""Statistics of simulated endpoints: summaries, arm comparisons, probability of success,
probability of target attainment and power versus N, bioequivalence of crossover studies. Pure
functions of arrays, used by trial analysis and reports (see `insilico.stats._trial` and
`insilico.stats._be` for methods and references)."""
from insilico.stats._be import RSABE_SWITCH, SIGMA_W0, BEResult, average_be, be_table
from insilico.stats._trial import (
    RULE_KEYS,
    compare,
    power_curve,
    probability_of_success,
    summarise,
    target_attainment,
    wilson_ci,
)

__all__ = ["BEResult", "RSABE_SWITCH", "SIGMA_W0", "average_be", "be_table", "RULE_KEYS", "compare", "power_curve",
           "probability_of_success", "summarise", "target_attainment", "wilson_ci"]
