"""Design from rules and budgets: the design notes' five compute tiers as table generators, and advice for a
latency budget on this machine.

    from zoo.design import TIERS, advise_budget
    TIERS[1].table()                       # tier 2's preset architecture table (plain data)
    TIERS[1].table(block="shufflev2")      # another design the tier's rules allow

* :mod:`zoo.design.tiers`: the tiers (input side, downsampling, feature block, activation) and their tables;
* :mod:`zoo.design.advise`: tier latency ranges from the latency table, the networks that fit a budget.

The command line is ``python -m zoo.advise`` (docs/benchmark.md).
"""

from zoo.design.advise import (
    Advice, Fit, TierRange, advise_budget, fitting_models, measure_fits, pick_tier, tier_ranges,
)
from zoo.design.tiers import TIERS, Design, Tier, get_tier

__all__ = [
    "Advice",
    "Design",
    "Fit",
    "TIERS",
    "Tier",
    "TierRange",
    "advise_budget",
    "fitting_models",
    "get_tier",
    "measure_fits",
    "pick_tier",
    "tier_ranges",
]
