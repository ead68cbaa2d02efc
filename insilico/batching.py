"""Padded batch sizes: one rule for every compiled kernel that runs over a variable number of rows.

A call over ``n`` rows is padded to ``bucket_size(n)`` rows — the next power of two, at least
``least`` and at most ``most`` — so a handful of compiled shapes serves every chunk, arm and
draw size (no recompilation per N), while a small call stays cheap. ``per_octave`` splits each
octave ``(2^(k-1), 2^k]`` into that many equal steps, for axes where padding costs work in
proportion (an ODE integrates to every padded observation time): at most ``1/per_octave`` extra
rows instead of up to 100 %, for ``per_octave`` times as many shapes.
"""
from __future__ import annotations

__all__ = ["bucket_size"]


def bucket_size(n: int, least: int = 64, most: int | None = None, per_octave: int = 1) -> int:
    """The padded size of a batch of ``n`` rows (``n`` >= 0); ``per_octave`` a power of two."""
    if per_octave < 1 or per_octave & (per_octave - 1):
        raise ValueError(f"per_octave must be a power of two, got {per_octave}")
    size = 1 << max(0, int(n) - 1).bit_length()
    if size >= 2 * per_octave:
        step = size // (2 * per_octave)
        size = -(-int(n) // step) * step
    size = max(int(least), size)
    return size if most is None else min(int(most), size)
