"""Write the result of a NONMEM import to a folder."""
from __future__ import annotations

from pathlib import Path

import yaml

from insilico.imports._nonmem import NonmemImport

__all__ = ["COVARIANCE_FILE", "write_import"]

COVARIANCE_FILE = "covariance.yaml"

_COVARIANCE_HEADER = """\
# Covariance of the estimates, from NONMEM's .cov file (insilico import nonmem --cov), carried onto
# the quantities insilico estimates (names as in population.yaml's estimate section and a fit store's
# `param`: typical values, PARAM.COV effects, PARAM.COV[level] multipliers, OMEGA(i,j), SIGMA(k,k))
# on the natural scale, by the delta method (nonmem: each name as an expression of NONMEM's names).
# Fixed quantities have zero rows. A trial whose cohort has this parameter model draws each
# replicate's values from it with `replicates: {covariance: covariance.yaml}`.
"""


def write_import(result: NonmemImport, out: str | Path) -> dict[str, Path]:
    """Write ``untranslated.txt`` (always) and, when the import succeeded, ``population.yaml``
    (validated by `insilico.estimation.load_population_model` first), ``nonmem_names.yaml``, the
    text model file ``population["model"]["file"]`` of an ADVAN6/13 import (validated by
    `insilico.models.text_model` first) and ``covariance.yaml`` (with ``--cov``) into the folder
    ``out``; returns {kind: path}."""
    from insilico.estimation import load_population_model
    from insilico.models import text_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"untranslated": out / "untranslated.txt"}
    if result.population is not None:
        load_population_model(result.population)
        if result.text_model is not None:
            text_model(result.text_model)
    paths["untranslated"].write_text("".join(line + "\n" for line in result.untranslated))
    if result.population is not None:
        if result.text_model is not None:
            paths["model"] = out / result.text_model_file
            paths["model"].write_text(yaml.safe_dump(result.text_model, sort_keys=False))
        paths["population"] = out / "population.yaml"
        paths["population"].write_text(yaml.safe_dump(result.population, sort_keys=False))
        paths["names"] = out / "nonmem_names.yaml"
        paths["names"].write_text(yaml.safe_dump(result.names, sort_keys=False))
        if result.covariance is not None:
            paths["covariance"] = out / COVARIANCE_FILE
            body = yaml.safe_dump(result.covariance, sort_keys=False, default_flow_style=None, width=1000)
            paths["covariance"].write_text(_COVARIANCE_HEADER + body)
    return paths
