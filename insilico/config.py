"""Reading user specs: YAML (or JSON) text, files and mappings, pydantic validation and dotted
``--set`` overrides, with every problem raised as one :class:`~insilico.errors.SpecError`.

The one home for these rules; cohort, trial and campaign specs all load through it:

* a source is a mapping, a path (``os.PathLike``, or a one-line string ending in ``.yaml``,
  ``.yml`` or ``.json``, or naming an existing file) or YAML text;
* a missing file, a directory, a binary or non-UTF-8 file or one over `MAX_SPEC_BYTES` is field
  ``path``; a YAML syntax error is field ``yaml`` with its line and column, and so are a key given
  twice in one mapping (PyYAML would silently keep the last), a recursive alias and aliases that
  expand to more than `MAX_SPEC_NODES` nodes (a "billion laughs" document); a document that is not
  a mapping is field ``spec``;
* spec models derive from `SpecModel`: unknown fields are refused, types are strict (``n: true``
  or ``n: 2.0`` is not an integer, ``amt: true`` is not a number) and floats must be finite
  (``.inf``/``.nan`` are refused);
* a pydantic error names the dotted field path (union/tag segments dropped), says what is wrong
  and what was given, and counts the further problems.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

from insilico.errors import SpecError

__all__ = ["MAX_SPEC_BYTES", "MAX_SPEC_NODES", "SpecModel", "as_tuple", "apply_overrides", "load_yaml",
           "read_mapping", "spec_error", "validate"]

MAX_SPEC_BYTES = 16 * 2**20     # a spec file larger than this is refused (bytes)
MAX_SPEC_NODES = 200_000        # YAML nodes after expanding aliases (scalars, lists and mappings)

M = TypeVar("M")

_SCALAR_TAGS = {"str", "int", "float", "bool", "none"}


class SpecModel(BaseModel):
    """Base of every spec model: unknown fields refused, frozen, strict types (no bool or float
    where an integer is meant, no bool or string where a number is meant), finite floats only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def as_tuple(t):
    """``Annotated[t, ...]`` accepting a YAML/JSON list for the tuple type ``t`` under strict types."""
    return Annotated[t, BeforeValidator(_tuple)]


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
    return "\n" not in s and (s.endswith((".yaml", ".yml", ".json")) or Path(s).is_file() or Path(s).is_dir())


def _spec_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """PyYAML's safe loader refusing a key given twice in one mapping (merge keys ``<<`` may
        still be overridden, as YAML intends)."""

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:      # unhashable key: the base class reports it
                        continue
                    line = key_node.start_mark.line + 1
                    if first is not None:
                        raise SpecError("yaml", f"duplicate key {key!r} at line {line} (first given at "
                                                f"line {first}); give each key once")
                    seen[key] = line
            return super().construct_mapping(node, deep)
    return Loader


def _expanded_size(node, memo: dict, depth: int = 0) -> int:
    """Nodes of ``node`` with every alias expanded (memoised per node, so linear in the text)."""
    import yaml
    k = id(node)
    if k in memo:
        if memo[k] is None:
            raise SpecError("yaml", f"recursive alias at line {node.start_mark.line + 1}")
        return memo[k]
    memo[k] = None
    if isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_size(c, memo, depth + 1) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_size(a, memo, depth + 1) + _expanded_size(b, memo, depth + 1) for a, b in node.value)
    else:
        n = 1
    memo[k] = n
    return n


def load_yaml(text: str, where: str = "<string>"):
    """The data of YAML ``text`` with the spec rules: duplicate keys, recursive aliases and
    aliases expanding past `MAX_SPEC_NODES` nodes refused (SpecError field ``yaml``)."""
    import yaml

    loader = _spec_loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_SPEC_NODES:
            raise SpecError("yaml", f"{where} expands to {size} YAML nodes through aliases (limit "
                                    f"{MAX_SPEC_NODES}); write the values out instead of using anchors")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError("yaml", f"YAML syntax error in {where}{pos}: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise SpecError("yaml", f"{where} is nested too deeply") from None
    finally:
        loader.dispose()


def _read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a spec file, or SpecError ``path`` saying why it is not one."""
    if path.is_dir():
        raise SpecError("path", f"{path} is a directory; expected a {what} file")
    if not path.is_file():
        raise SpecError("path", f"{what} file not found: {path}")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecError("path", f"{path} is {size} bytes; a {what} file is at most {MAX_SPEC_BYTES} bytes")
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError("path", f"{path} is UTF-16 text; save it as UTF-8")
    if b"\x00" in data:
        raise SpecError("path", f"{path} is a binary file, not YAML/JSON text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SpecError("path", f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}); "
                                "save it as UTF-8") from None


def read_mapping(source, what: str = "spec") -> tuple[dict, Path]:
    """The mapping a spec ``source`` holds and the folder its relative paths refer to.

    ``source``: mapping (base = the working directory), path, or YAML/JSON text. ``what`` names
    the kind of spec in messages ("cohort spec", "trial spec", ...).
    """
    base = Path.cwd()
    if isinstance(source, Mapping):
        return dict(source), base
    if not isinstance(source, (str, os.PathLike)):
        raise SpecError("spec", f"expected a path, YAML text or mapping, got {type(source).__name__}")
    if _is_path(source):
        path = Path(source)
        text, where, base = _read_text(path, what), str(path), path.resolve().parent
    else:
        text, where = str(source), "<string>"
    data = load_yaml(text, where)
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
    data = copy.deepcopy(dict(data))
    for item in overrides:
        if "=" not in item:
            raise SpecError("--set", f"expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = load_yaml(raw)
        except SpecError as e:
            raise SpecError(f"--set {key}", f"cannot parse value {raw!r}: {e.message}") from None
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
