"""NONMEM output tables: the final estimates of a ``.ext`` file, the EBEs of a ``.phi`` file and the
covariance matrix of the estimates of a ``.cov`` file (`read_cov`).

Both files are written by NONMEM 7 (NONMEM Users Guide VIII, "Raw output files"): one or more
``TABLE NO. n`` blocks, each a whitespace-separated table with a header line. In ``.ext`` the row
with ``ITERATION = -1000000000`` holds the final estimates, named ``THETA1``, ``OMEGA(i,j)``,
``SIGMA(i,j)``; the last table (last $ESTIMATION step) is used. ``.phi`` lists ``ETA(k)`` per subject.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from insilico.errors import SpecError

__all__ = ["read_cov", "read_ext", "read_phi"]

_FINAL = -1000000000


def _last_table(path: Path, what: str) -> pd.DataFrame:
    """The last ``TABLE NO.`` block of a NONMEM raw output file as a DataFrame."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(what, f"cannot read {path}: {e.strerror or e}") from None
    blocks = [b for b in re.split(r"^TABLE NO\.[^\n]*\n", text, flags=re.M) if b.strip()]
    if not blocks:
        raise SpecError(what, f"{path}: no table found (expected NONMEM 'TABLE NO.' blocks)")
    return pd.read_csv(io.StringIO(blocks[-1]), sep=r"\s+")


def read_ext(path: str | Path) -> dict[str, float]:
    """Final estimates ``{THETA1: ..., OMEGA(1,1): ..., SIGMA(1,1): ...}`` of a NONMEM ``.ext``
    file (last table, row ``ITERATION = -1000000000``), in the model's units."""
    df = _last_table(Path(path), "ext")
    if "ITERATION" not in df.columns:
        raise SpecError("ext", f"{path}: no ITERATION column; not a NONMEM .ext file")
    final = df[df["ITERATION"] == _FINAL]
    if final.empty:
        raise SpecError("ext", f"{path}: no final-estimate row (ITERATION = {_FINAL})")
    row = final.iloc[-1]
    return {c: float(row[c]) for c in df.columns if re.fullmatch(r"THETA\d+|OMEGA\(\d+,\d+\)|SIGMA\(\d+,\d+\)", c)}


def read_phi(path: str | Path) -> pd.DataFrame:
    """EBEs of a NONMEM ``.phi`` file: one row per subject indexed by ID, columns ``ETA1``…
    (NONMEM's ``ETA(k)``, last table)."""
    df = _last_table(Path(path), "phi")
    etas = [c for c in df.columns if re.fullmatch(r"ETA\(\d+\)", c)]
    if "ID" not in df.columns or not etas:
        raise SpecError("phi", f"{path}: expected ID and ETA(k) columns; not a NONMEM .phi file")
    out = df.set_index("ID")[etas]
    out.columns = [c.replace("(", "").replace(")", "") for c in etas]
    return out


_COV_NAME = re.compile(r"THETA\d+|OMEGA\(\d+,\d+\)|SIGMA\(\d+,\d+\)")


def read_cov(path: str | Path) -> pd.DataFrame:
    """NONMEM's covariance matrix of the estimates, a ``.cov`` file (NONMEM Users Guide VIII,
    "Raw output files": a ``TABLE NO.`` header line, then a ``NAME`` column and one column per
    estimated element, ``THETA1``…, ``SIGMA(i,j)``…, ``OMEGA(i,j)``… in NONMEM's order; fixed
    elements are rows/columns of zeros). Last table. Returns a square DataFrame indexed and
    columned by those names, on NONMEM's scale (THETA as written, OMEGA/SIGMA variances and
    covariances). Not square, not symmetric (relative 1e-6), or unknown names: `SpecError`."""
    df = _last_table(Path(path), "cov")
    if "NAME" not in df.columns:
        raise SpecError("cov", f"{path}: no NAME column; not a NONMEM .cov file")
    df = df.set_index("NAME")
    df.index = [str(i) for i in df.index]
    bad = [c for c in [*df.columns, *df.index] if not _COV_NAME.fullmatch(str(c))]
    if bad:
        raise SpecError("cov", f"{path}: unknown names {', '.join(map(str, bad[:5]))} (expected THETAk, OMEGA(i,j), "
                               "SIGMA(i,j))")
    if list(df.index) != list(df.columns):
        raise SpecError("cov", f"{path}: the rows ({len(df.index)}) and columns ({len(df.columns)}) do not name the "
                               "same elements in the same order")
    m = df.to_numpy(dtype=float)
    if not np.all(np.isfinite(m)):
        raise SpecError("cov", f"{path}: a value is not finite")
    scale = max(float(np.abs(m).max()), 1e-300)
    if float(np.abs(m - m.T).max()) > 1e-6 * scale:
        raise SpecError("cov", f"{path}: the matrix is not symmetric")
    return df
