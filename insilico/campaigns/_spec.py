"""Campaign specification: a grid of trial scenarios over a base trial spec.

```yaml
name: dose_by_n
base: ../trials/dose_ranging.yaml        # relative to this file
grid:                                    # dotted trial-spec paths -> values; cartesian product
  arms.3.regimen.0.amt: [100, 150]
  n: [40, 80]
set: ["analysis.sample_size=null"]       # overrides applied to every scenario
```
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from insilico.config import SpecModel, read_mapping, validate
from insilico.errors import SpecError

MAX_SCENARIOS = 10_000   # grid points of one campaign


class CampaignSpec(SpecModel):

    name: str = Field(min_length=1)
    base: str
    grid: dict[str, list[Any]] = {}
    set: list[str] = []


def load_campaign_spec(path) -> tuple[CampaignSpec, Path]:
    """Load and validate a campaign spec file; returns it with the folder ``base`` is relative to."""
    data, base = read_mapping(Path(path), "campaign spec")
    spec = validate(CampaignSpec, data)
    for key, values in spec.grid.items():
        if not values:
            raise SpecError(f"grid.{key}", "needs at least one value")
    total = 1
    for values in spec.grid.values():
        total *= len(values)
    if total > MAX_SCENARIOS:
        raise SpecError("grid", f"{total} scenarios (at most {MAX_SCENARIOS})")
    return spec, base


def scenarios(spec: CampaignSpec) -> list[tuple[str, list[str]]]:
    """(scenario name, overrides) for every point of the grid, in a stable order."""
    keys = list(spec.grid)
    out = []
    for i, values in enumerate(itertools.product(*(spec.grid[k] for k in keys))):
        overrides = list(spec.set) + [f"{k}={json.dumps(v)}" for k, v in zip(keys, values)]  # JSON is YAML
        out.append((f"s{i:03d}", overrides))
    return out
