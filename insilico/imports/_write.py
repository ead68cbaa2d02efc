"""Write the result of a NONMEM import to a folder."""
from __future__ import annotations

from pathlib import Path

import yaml

from insilico.imports._nonmem import NonmemImport

__all__ = ["write_import"]


def write_import(result: NonmemImport, out: str | Path) -> dict[str, Path]:
    """Write ``untranslated.txt`` (always) and, when the import succeeded, ``population.yaml``
    (validated by `insilico.estimation.load_population_model` first) and ``nonmem_names.yaml``
    into the folder ``out``; returns {kind: path}."""
    from insilico.estimation import load_population_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"untranslated": out / "untranslated.txt"}
    paths["untranslated"].write_text("".join(line + "\n" for line in result.untranslated))
    if result.population is not None:
        load_population_model(result.population)
        paths["population"] = out / "population.yaml"
        paths["population"].write_text(yaml.safe_dump(result.population, sort_keys=False))
        paths["names"] = out / "nonmem_names.yaml"
        paths["names"].write_text(yaml.safe_dump(result.names, sort_keys=False))
    return paths
