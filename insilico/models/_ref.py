"""A reference to a model in a spec (trial spec ``model:``, population-model ``model:``) and its
resolution to a `Model`: the one home of these rules for trials, estimation and twins.

A reference gives exactly one source:

* ``name``: a built-in (`insilico.models.get_model`, e.g. ``2cmt_oral+emax``);
* ``import: pkg.module:attribute``: a user model in Python (a `Model` or a callable returning one);
  the module is imported with the spec's folder first on ``sys.path`` — this runs the user's code;
* ``file: mymodel.yaml``: a model written as text equations (`insilico.models.load_text_model`),
  relative to the spec's folder;
* ``text: {states: ..., parameters: ..., equations: ...}``: the same text model written inline.

``parameters`` fixes values (in the model's units) for parameters the cohort or population model
does not provide.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from insilico.config import SpecModel
from insilico.errors import SpecError
from insilico.models._base import Model
from insilico.models._registry import get_model
from insilico.models._text import load_text_model, text_model

__all__ = ["ModelRef", "resolve_model"]

_SOURCES = ("name", "import", "file", "text")


class ModelRef(SpecModel):
    """Exactly one of ``name`` (built-in), ``import`` (``pkg.module:attribute``), ``file`` (a text
    model file) or ``text`` (a text model written inline); ``parameters`` fixes model parameters
    (model units) that the cohort or population model does not provide."""

    name: str | None = None
    import_: str | None = Field(None, alias="import")
    file: str | None = None
    text: dict[str, Any] | None = None
    parameters: dict[str, float] = {}

    model_config = ConfigDict(populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self):
        given = [s for s, v in zip(_SOURCES, (self.name, self.import_, self.file, self.text)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `name` (built-in), `import` (pkg.module:attribute), `file` "
                             "(a text model file) or `text` (a text model written inline)"
                             + (f"; got {', '.join(given)}" if given else ""))
        return self

    @property
    def label(self) -> str:
        """A short description of the source for reports: the built-in name, the import target,
        ``file <path>`` or ``text model <its name>``."""
        if self.name is not None:
            return self.name
        if self.import_ is not None:
            return self.import_
        if self.file is not None:
            return f"file {self.file}"
        return f"text model {self.text.get('name', '')}".rstrip()


def _user_code(target: str, what: str, fn):
    """``fn()`` (importing or calling the user's code), with anything it raises — an exception,
    a syntax error, ``sys.exit`` — as SpecError ``model.import`` naming the cause."""
    try:
        return fn()
    except SystemExit as e:
        raise SpecError("model.import", f"{what} {target!r} tried to exit the process (sys.exit({e.code!r}))") \
            from None
    except SyntaxError as e:
        raise SpecError("model.import", f"{what} {target!r}: syntax error in {e.filename}, line {e.lineno}: "
                                        f"{e.msg}") from None
    except Exception as e:
        raise SpecError("model.import", f"{what} {target!r} failed: {type(e).__name__}: {e}") from None


def _import(module: str, base: Path | None):
    """Import ``module`` with ``base`` (the spec's folder) first on ``sys.path`` for the import."""
    if base is None:
        return importlib.import_module(module)
    folder = str(Path(base).resolve())
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(module)
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def _imported_model(target: str, base: Path | None):
    mod, _, attr = target.partition(":")
    if not mod.strip() or not attr.strip():
        raise SpecError("model.import", f"expected pkg.module:attribute, got {target!r}")
    module = _user_code(target, "importing", lambda: _import(mod.strip(), base))
    if not hasattr(module, attr.strip()):
        raise SpecError("model.import", f"cannot import {target!r}: module {mod!r} has no attribute {attr!r}")
    obj = getattr(module, attr.strip())
    if callable(obj) and not isinstance(obj, Model):
        obj = _user_code(target, "calling", obj)
    if not isinstance(obj, Model):
        raise SpecError("model.import", f"{target!r} is not an insilico Model (got {type(obj).__name__}); "
                                        "give a Model or a callable returning one")
    return obj


def _file_model(file: str, base: Path | None):
    path = Path(file)
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    try:
        return load_text_model(path)
    except SpecError as e:
        if e.field == "path":
            raise SpecError("model.file", e.message) from None
        raise SpecError(f"model.{e.field}", f"{path.name}: {e.message}") from None


def _inline_model(text: dict):
    try:
        return text_model(text)
    except SpecError as e:
        raise SpecError(f"model.text.{e.field}" if e.field else "model.text", e.message) from None


def resolve_model(ref: ModelRef, base: Path | None = None):
    """The `Model` a reference names (see the module docstring); ``base`` is the spec's folder
    (relative ``file`` paths and ``import`` modules are looked up there).

    An import that fails (missing module or attribute, a syntax error, an exception, ``sys.exit``),
    a callable that fails, or an object that is not an `insilico.models.Model` is a `SpecError` on
    ``model.import`` naming the cause; a text model's errors name ``model.file`` (file not
    readable) or the field inside it (``model.equations.2`` for a file, ``model.text.equations.2``
    inline)."""
    if ref.name is not None:
        return get_model(ref.name)
    if ref.import_ is not None:
        return _imported_model(ref.import_, base)
    if ref.file is not None:
        return _file_model(ref.file, base)
    return _inline_model(ref.text)
