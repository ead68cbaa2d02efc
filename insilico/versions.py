"""Versions of the packages a result depends on (recorded in every store's provenance)."""
from __future__ import annotations

from importlib.metadata import version

__all__ = ["package_versions"]


def package_versions(packages) -> dict:
    """``{package: version}``, ``"unknown"`` for one that is not installed."""
    out = {}
    for p in packages:
        try:
            out[p] = version(p)
        except Exception:
            out[p] = "unknown"
    return out
