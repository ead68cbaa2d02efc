"""Campaign specs: alias bombs and grids too large to enumerate are refused at load."""
from __future__ import annotations

import pytest

from insilico.campaigns._spec import MAX_SCENARIOS, load_campaign_spec
from insilico.errors import SpecError


def test_alias_bomb_in_grid(tmp_path):
    lines = ["name: bomb", "base: t.yaml", 'a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]']
    for i in range(1, 7):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("grid: {n: *a6}")
    (tmp_path / "c.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as e:
        load_campaign_spec(tmp_path / "c.yaml")
    assert e.value.field == "yaml" and "aliases" in e.value.message


def test_grid_too_large(tmp_path):
    (tmp_path / "c.yaml").write_text("name: big\nbase: t.yaml\ngrid:\n  n: [" + ", ".join(map(str, range(2, 202)))
                                     + "]\n  seed: [" + ", ".join(map(str, range(100))) + "]\n")
    with pytest.raises(SpecError) as e:
        load_campaign_spec(tmp_path / "c.yaml")
    assert e.value.field == "grid" and str(MAX_SCENARIOS) in e.value.message


def test_duplicate_grid_key(tmp_path):
    (tmp_path / "c.yaml").write_text("name: d\nbase: t.yaml\ngrid:\n  n: [10]\n  n: [20]\n")
    with pytest.raises(SpecError, match="duplicate key 'n' at line 5"):
        load_campaign_spec(tmp_path / "c.yaml")
