"""Padded batch sizes: one rule for every compiled kernel that runs over a variable number of rows.

A call over ``n`` rows is padded to ``bucket_size(n)`` rows — the next power of two, at least
``least`` and at most ``most`` — so a handful of compiled shapes serves every chunk, arm and
draw size (no recompilation per N), while a small call stays cheap.
"""
from __future__ import annotations

__all__ = ["bucket_size"]


def bucket_size(n: int, least: int = 64, most: int | None = None) -> int:
    """The padded size of a batch of ``n`` rows (``n`` >= 0)."""
    size = max(int(least), 1 << max(0, int(n) - 1).bit_length())
    return size if most is None else min(int(most), size)
