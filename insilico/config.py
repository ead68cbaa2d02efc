"""Reading user specs: YAML (or JSON) text, files and mappings, pydantic validation and dotted
``--set`` overrides, with every problem raised as one :class:`~insilico.errors.SpecError`.

The one home for these rules; cohort, trial and campaign specs all load through it:

* a source is a mapping, a path (``os.PathLike``, or a one-line string ending in ``.yaml``,
  ``.yml`` or ``.json``, or naming an existing file) or YAML text;
* a missing file is field ``path`` ("file not found: …"), a YAML syntax error is field ``yaml``
  with its line and column, a document that is not a mapping is field ``spec``;
* a pydantic error names the dotted field path (union/tag segments dropped), says what is wrong
  and what was given, and counts the further problems.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from insilico.errors import SpecError

__all__ = ["apply_overrides", "read_mapping", "spec_error", "validate"]

M = TypeVar("M")

_SCALAR_TAGS = {"str", "int", "float", "bool", "none"}


def _model_names() -> set[str]:
    from pydantic import BaseModel
    names, todo = set(), [BaseModel]
    while todo:
        for c in todo.pop().__subclasses__():
            names.add(c.__name__)
            todo.append(c)
    return names


def _is_field(segment, models: set[str]) -> bool:
    """False for the location segments pydantic adds for union members, validators and tags
    (``function-after[...]``, ``list[int]``, ``str``, a model class name), true for field names."""
    s = str(segment)
    return not ("[" in s or s in _SCALAR_TAGS or s in models)


def _is_path(source) -> bool:
    if isinstance(source, os.PathLike):
        return True
    s = str(source)
    return "\n" not in s and (s.endswith((".yaml", ".yml", ".json")) or Path(s).is_file())


def read_mapping(source, what: str = "spec") -> tuple[dict, Path]:
    """The mapping a spec ``source`` holds and the folder its relative paths refer to.

    ``source``: mapping (base = the working directory), path, or YAML/JSON text. ``what`` names
    the kind of spec in messages ("cohort spec", "trial spec", ...).
    """
    import yaml

    base = Path.cwd()
    if isinstance(source, Mapping):
        return dict(source), base
    if not isinstance(source, (str, os.PathLike)):
        raise SpecError("spec", f"expected a path, YAML text or mapping, got {type(source).__name__}")
    if _is_path(source):
        path = Path(source)
        if not path.is_file():
            raise SpecError("path", f"{what} file not found: {path}")
        text, where, base = path.read_text(), str(path), path.resolve().parent
    else:
        text, where = str(source), "<string>"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError("yaml", f"YAML syntax error in {where}{pos}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, Mapping):
        raise SpecError("spec", f"a {what} must be a mapping, got {type(data).__name__}")
    return dict(data), base


def spec_error(err, prefix: str = "") -> SpecError:
    """One :class:`SpecError` for a pydantic ``ValidationError`` (its first problem, with the
    number of further ones); ``prefix`` is prepended to the field path."""
    e = err.errors()[0]
    models = _model_names()
    loc = ".".join(str(p) for p in e["loc"] if _is_field(p, models))
    field = ".".join(p for p in (prefix, loc) if p)
    msg = e["msg"].removeprefix("Value error, ")
    inner = (e.get("ctx") or {}).get("error")
    if isinstance(inner, SpecError):   # a shared rule (e.g. insilico.dosing.check_dose) names its own field
        field, msg = ".".join(p for p in (field, inner.field) if p), inner.message
    elif e.get("type") == "extra_forbidden":
        msg = "unknown field (not part of the schema)"
    elif e.get("type") != "missing" and "input" in e and not isinstance(e["input"], (dict, list)):
        msg += f" (got {e['input']!r})"
    n = err.error_count()
    if n > 1:
        msg += f" [and {n - 1} more problem{'s' if n > 2 else ''}]"
    return SpecError(field or "spec", msg)


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    """``model.model_validate(data)`` with errors converted by :func:`spec_error`."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise spec_error(err, prefix) from None


def apply_overrides(data: Mapping, overrides: list[str]) -> dict:
    """Apply dotted ``key=value`` overrides (spaCy-style ``--set arms.0.regimen.0.amt=200``) to a
    copy of a nested mapping; values are parsed as YAML. Lists are indexed by position."""
    import yaml

    data = copy.deepcopy(dict(data))
    for item in overrides:
        if "=" not in item:
            raise SpecError("--set", f"expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise SpecError(f"--set {key}", f"cannot parse value {raw!r}") from None
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise SpecError(key, f"no list element {part!r}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise SpecError(key, f"cannot set {part!r} inside a {type(node).__name__}")
    return data
