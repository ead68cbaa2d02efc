"""Loading a cohort spec: parse (schema) then compile (checks across sections)."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping

from insilico.cohorts._compile import compile_spec
from insilico.cohorts._spec import CohortSpec, parse_cohort_spec

__all__ = ["load_cohort_spec", "spec_from_json"]


def load_cohort_spec(source: CohortSpec | Mapping | str | os.PathLike,
                     base: str | os.PathLike | None = None) -> CohortSpec:
    """Load and check a cohort spec from a YAML file path, a YAML string, a mapping, or a spec.
    ``base``: the folder a mapping's relative paths (``resample.table``) refer to
    (:func:`~insilico.cohorts._spec.parse_cohort_spec`).

    Raises :class:`insilico.errors.SpecError` (``str()`` = ``"field: message"``) on a missing
    file (field ``path``), YAML errors (``yaml``), a document that is not a mapping (``spec``),
    schema errors and semantic errors (unknown covariates, cycles, Ω not positive definite, ...).
    """
    spec = parse_cohort_spec(source, base)
    compile_spec(spec)  # checks across sections
    return spec


def spec_from_json(text: str) -> CohortSpec:
    """Rebuild a spec from :meth:`CohortSpec.to_json` output (as stored in a cohort's attrs)."""
    return load_cohort_spec(json.loads(text))
