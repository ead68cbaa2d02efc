"""The twin store: one Zarr store for a fleet of patient twins (a ward, a hospital), one group
per patient, each holding an append-only list of versions.

Layout (Zarr v3, group attribute ``insilico_store: twin``)::

    twins.zarr/                     attrs: insilico_store, twin_format
      <patient_id>/                 attrs: patient_id, created, prior (population model, JSON),
                                           prior_sha256, prior_kind, covariates {name: value}
        v000000/                    creation (prior only, no rows)
        v000001/                    one update: attrs = the version record (below); arrays
        ...                                 rows (n, 10: the NONMEM rows added, columns
                                            `ROW_COLUMNS`), eta (k,), eta_cov (k, k)

A version record (group attributes) holds ``version``, ``timestamp`` (UTC, ISO 8601),
``parent_sha256`` (the digest of the previous record; empty for version 0), ``prior_sha256``,
``rows_sha256`` (the rows added), ``history_sha256`` (chain: digest of the parent's history
digest and this version's rows), the resulting ``objective``, ``parameters``, ``status`` and
anything else the caller puts in; ``record_sha256`` is the digest of the record itself. Twins put
in ``covariates`` (the values in force after the version's last row) and, when the rows carried
covariate columns, ``row_covariates``: {name: [value, category label or null per row]} in the
order of ``rows`` (null: the row gave no value; time-varying covariates, `insilico.twins`), so
the record digest and the parent chain cover them as they cover the estimates. Likewise, when
the rows carried a ``DVID`` column (a prior with several observed outputs), ``row_dvid``: [DVID or
null per row] in the order of ``rows`` (null: a dose, an EVID 2 record, or a level of the prior's
primary output). A version without ``row_dvid`` (every store written before it existed) holds
levels of the primary output only, so old stores read unchanged; the ``rows`` array keeps its
10 columns and ``rows_sha256`` its definition.

Append-only and crash-safe: a version is written whole in a hidden sibling
``.vNNNNNN.writing-<pid>`` and published by one atomic ``rename`` to ``vNNNNNN``; a patient is
created the same way. A process killed mid-write leaves only a hidden folder that readers ignore
(and the next writer removes), so the previous version stays the latest and intact. Nothing is
ever overwritten: publishing onto an existing version number fails. Writers hold the store's
writer lock (`insilico.store.writer_lock`).

Reading is incremental: published versions never change, and each record pins every earlier one
(``parent_sha256`` chains the record digests, ``rows_sha256`` the rows), so a process keeps the
versions it has read in memory (`read_twin_versions`) and on the next call reads only the latest
version's record (one small JSON file) to confirm its cached prefix, then only versions added
since. A mismatch (the store was replaced) drops the cache and everything is read again.

Privacy: patient IDs must be pseudonyms (letters, digits, ``_ - .``; no spaces, at most 64
characters); the store holds no names, dates of birth or clock dates of care: record times are
hours from the twin's own time origin, covariates are numbers (or category labels of the model).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import zarr
from zarr.api.asynchronous import open_group as open_group_async
from zarr.core.sync import sync

from insilico.errors import SpecError
from insilico.store._safety import KIND_ATTR, check_out, digest, writer_lock

__all__ = ["ROW_COLUMNS", "TWIN_FORMAT", "TwinVersion", "append_twin_versions", "check_patient_id", "create_twin",
           "open_twin_store", "read_twin", "read_twin_versions", "rows_digest", "twin_ids"]

TWIN_FORMAT = 1
CACHE_PATIENTS = 4096      # twins whose read versions a process keeps (least recently used dropped first)
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^v(\d{6})$")
ROW_COLUMNS = ("TIME", "AMT", "RATE", "CMT", "EVID", "II", "ADDL", "SS", "MDV", "DV")


class TwinVersion(dict):
    """One version of a twin: the record (a dict of its attributes) plus ``rows`` ({column: array},
    the rows it added), ``eta`` (k,) and ``eta_cov`` (k, k) as NumPy arrays."""

    @property
    def number(self) -> int:
        return int(self["version"])

    @property
    def row_covariates(self) -> dict:
        """{name: [value or None per row]}: the covariate values the added rows carried ({} when none)."""
        return dict(self.get("row_covariates") or {})

    @property
    def row_dvid(self) -> list | None:
        """[DVID or None per row]: which observed output each added level measures (None: the
        primary output, or not a level); None when the rows had no DVID column."""
        v = self.get("row_dvid")
        return None if v is None else list(v)


def check_patient_id(patient_id) -> str:
    """``patient_id`` as a string when it is a valid pseudonymous ID, else `SpecError` ``patient_id``."""
    pid = str(patient_id)
    if not _ID.match(pid):
        raise SpecError("patient_id", f"{pid!r} is not a valid pseudonymous ID: use 1-64 letters, digits, '_', "
                                      "'-' or '.' (no spaces, not starting with '.' or '-'); never a name")
    return pid


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _root(path: Path, *, create: bool) -> Path:
    if create and not path.exists():
        tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        zarr.open_group(tmp, mode="w", zarr_format=3, attributes={KIND_ATTR: "twin", "twin_format": TWIN_FORMAT})
        os.rename(tmp, path)
    return _check_store(path)


def open_twin_store(path) -> zarr.Group:
    """The root group of twin store ``path`` (read-only); `SpecError` ``store`` if it is not one."""
    path = _check_store(path)
    try:
        return zarr.open_group(path, mode="r", zarr_format=3)
    except Exception as e:
        raise SpecError("store", f"{path} is not a readable twin store: {type(e).__name__}: {e}") from None


def _check_store(path) -> Path:
    """``path`` as a Path when it is a twin store (its root metadata read directly), else `SpecError` ``store``."""
    path = Path(path)
    if not path.is_dir():
        raise SpecError("store", f"{path} is not a twin store (no such folder)")
    try:
        attrs = _attributes(path)
    except SpecError:
        raise SpecError("store", f"{path} is not a readable twin store (no Zarr v3 group metadata)") from None
    if attrs.get(KIND_ATTR) != "twin":
        kind = attrs.get(KIND_ATTR) or "not an insilico store"
        raise SpecError("store", f"{path} is not a twin store (it is {kind})")
    return path


def twin_ids(path) -> list[str]:
    """The patient IDs in the store, sorted."""
    path = _check_store(path)
    return sorted(p.name for p in path.iterdir() if p.is_dir() and _ID.match(p.name) and (p / "zarr.json").is_file())


def _patient_dir(path: Path, patient_id: str, *, must_exist: bool = True) -> Path:
    d = path / check_patient_id(patient_id)
    if must_exist and not (d / "zarr.json").is_file():
        raise SpecError("patient_id", f"unknown patient {patient_id!r} in {path} (create the twin first)")
    return d


def _version_dirs(pdir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in pdir.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def _clean_partial(pdir: Path) -> None:
    """Remove hidden folders left by writers that were killed (never a published version)."""
    for p in pdir.iterdir():
        if p.name.startswith(".v") and ".writing-" in p.name:
            shutil.rmtree(p, ignore_errors=True)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    return v


def _write_version(pdir: Path, number: int, record: dict, rows: dict, eta, eta_cov) -> dict:
    """Write version ``number`` beside the published ones and publish it by rename."""
    final = pdir / f"v{number:06d}"
    if final.exists():
        raise SpecError("store", f"version {number} of {pdir.name} already exists; a twin's history is append-only")
    tmp = pdir / f".v{number:06d}.writing-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    record = _jsonable({**record, "version": number})
    record["record_sha256"] = digest(json.dumps(record, sort_keys=True))
    k = np.asarray(eta).size
    arrays = (("rows", _row_matrix(rows), {"columns": list(ROW_COLUMNS)}),
              ("eta", np.asarray(eta, dtype=np.float64).reshape(-1), None),
              ("eta_cov", np.asarray(eta_cov, dtype=np.float64).reshape(k, k), None))
    sync(_write_group(tmp, record, arrays))
    os.rename(tmp, final)          # publish: atomic on POSIX; a kill before it leaves v(n-1) the latest
    return record


async def _write_group(folder: Path, attributes: dict, arrays) -> None:
    """A Zarr v3 group with ``attributes`` and ``arrays`` ((name, data, attributes), written in
    order) in one trip to Zarr's I/O loop (the synchronous API waits on it once per call)."""
    g = await open_group_async(folder, mode="w", zarr_format=3, attributes=attributes)
    for name, data, attrs in arrays:
        await g.create_array(name, data=data, attributes=attrs)


def _version_of(record: dict, rows: dict, eta, eta_cov) -> TwinVersion:
    """The `TwinVersion` a reader would get back for what was just written (read-only arrays)."""
    v = TwinVersion(record)
    m = _row_matrix(rows)
    v["rows"] = {c: m[:, j] for j, c in enumerate(ROW_COLUMNS)}
    k = np.asarray(eta).size
    v["eta"] = np.array(eta, dtype=np.float64).reshape(-1)
    v["eta_cov"] = np.array(eta_cov, dtype=np.float64).reshape(k, k)
    return _frozen(v)


def _frozen(v: TwinVersion) -> TwinVersion:
    for a in (*v["rows"].values(), v["eta"], v["eta_cov"]):
        a.setflags(write=False)
    return v


def _row_matrix(rows: dict) -> np.ndarray:
    n = np.asarray(rows["TIME"]).size
    return np.stack([np.asarray(rows.get(c, np.zeros(n)), dtype=np.float64).reshape(n) for c in ROW_COLUMNS], axis=1)


def rows_digest(rows: dict) -> str:
    """SHA-256 of rows ({column: array}): the (n, 10) float64 matrix in `ROW_COLUMNS` order,
    C order, little-endian bytes."""
    return digest(np.ascontiguousarray(_row_matrix(rows), dtype="<f8").tobytes())


def create_twin(path, patient_id: str, info: dict, record: dict, eta, eta_cov) -> dict:
    """Create the store if needed and the twin ``patient_id`` with patient attributes ``info``
    and version 0 (``record``, ``eta``, ``eta_cov``; no rows). `SpecError` if it exists."""
    path = check_out(path, option="store")
    pid = check_patient_id(patient_id)
    with writer_lock(path, option="store"):
        _root(path, create=True)
        final = path / pid
        if final.exists():
            raise SpecError("patient_id", f"patient {pid!r} already exists in {path}; use `update`")
        tmp = path / f".{pid}.creating-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        zarr.open_group(tmp, mode="w", zarr_format=3, attributes=_jsonable({"patient_id": pid, "created": _now(),
                                                                              **info}))
        empty = {c: np.zeros(0) for c in ROW_COLUMNS}
        h = digest("")
        rec = {**record, "timestamp": _now(), "parent_sha256": "", "rows_sha256": rows_digest(empty),
               "history_sha256": digest(h + rows_digest(empty)), "n_rows": 0}
        rec = _write_version(tmp, 0, rec, empty, eta, eta_cov)
        os.rename(tmp, final)
        _CACHE.put(final, [_version_of(rec, empty, eta, eta_cov)])
    return rec


def append_twin_versions(path, updates: list[dict]) -> list[dict]:
    """Append the next version of several twins under one writer lock. Each update is a dict
    with ``patient_id``, ``rows`` ({column: array}, the rows added), ``record`` (estimates
    etc.), ``eta``, ``eta_cov`` and ``parent`` (the version the estimate was computed from).
    Every parent is checked before anything is written: if another writer appended meanwhile,
    `SpecError` ``store`` and nothing is written. Returns the published records, in order."""
    path = Path(path)
    with writer_lock(path, option="store"):
        _check_store(path)
        parents = []
        for u in updates:
            pdir = _patient_dir(path, u["patient_id"])
            parent = _attributes(_version_dirs(pdir)[-1])
            if parent["version"] != u["parent"]:
                raise SpecError("store", f"{u['patient_id']}: version {parent['version']} was written meanwhile "
                                         f"(this update was computed from version {u['parent']}); run it again")
            parents.append((pdir, parent))
        out = []
        for u, (pdir, parent) in zip(updates, parents):
            _clean_partial(pdir)
            rh = rows_digest(u["rows"])
            rec = {**u["record"], "timestamp": _now(), "parent_sha256": parent["record_sha256"], "rows_sha256": rh,
                   "history_sha256": digest(parent["history_sha256"] + rh),
                   "n_rows": int(np.asarray(u["rows"]["TIME"]).size)}
            rec = _write_version(pdir, parent["version"] + 1, rec, u["rows"], u["eta"], u["eta_cov"])
            _CACHE.extend(pdir, parent, _version_of(rec, u["rows"], u["eta"], u["eta_cov"]))
            out.append(rec)
        return out


def _attributes(folder: Path) -> dict:
    """A Zarr v3 group's attributes, read straight from its metadata file ``zarr.json``."""
    try:
        return json.loads((folder / "zarr.json").read_text())["attributes"]
    except (OSError, ValueError, KeyError) as e:
        raise SpecError("store", f"{folder} is not a readable twin group: {type(e).__name__}: {e}") from None


def _read_version(vdir: Path) -> TwinVersion:
    g = zarr.open_group(vdir, mode="r", zarr_format=3)
    v = TwinVersion(g.attrs)
    m = np.asarray(g["rows"][:])
    v["rows"] = {c: m[:, j] for j, c in enumerate(ROW_COLUMNS)}
    v["eta"] = np.asarray(g["eta"][:])
    v["eta_cov"] = np.asarray(g["eta_cov"][:])
    return _frozen(v)


class _VersionCache:
    """{patient folder: its versions read so far, oldest first}, least recently used dropped
    beyond `CACHE_PATIENTS` (module docstring: why a cached prefix is checked by one record)."""

    def __init__(self, size: int):
        self.size = size
        self.data: OrderedDict[str, list[TwinVersion]] = OrderedDict()

    def put(self, pdir: Path, versions: list[TwinVersion]) -> None:
        key = str(pdir.resolve())
        self.data[key] = versions
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)

    def extend(self, pdir: Path, parent: dict, version: TwinVersion) -> None:
        """Add a version just written on top of ``parent`` when the cache ends at that parent."""
        cached = self.data.get(str(pdir.resolve()))
        if cached and cached[-1]["record_sha256"] == parent["record_sha256"]:
            self.put(pdir, cached + [version])

    def versions(self, pdir: Path, dirs: list[Path]) -> list[TwinVersion]:
        """All versions in ``dirs``: the cached prefix when its last record is still on disk
        unchanged, plus the versions read now (their parent chain checked)."""
        cached = self.data.get(str(pdir.resolve()), [])
        n = len(cached)
        if n and not (n <= len(dirs) and _attributes(dirs[n - 1]).get("record_sha256") == cached[-1]["record_sha256"]):
            cached, n = [], 0
        new = [_read_version(d) for d in dirs[n:]]
        chain = cached[-1:] + new
        if any(b["parent_sha256"] != a["record_sha256"] for a, b in zip(chain, chain[1:])):
            raise SpecError("store", f"{pdir}: the versions' parent digests do not chain (the history was altered)")
        out = cached + new
        self.put(pdir, out)
        return out

    def clear(self) -> None:
        self.data.clear()


_CACHE = _VersionCache(CACHE_PATIENTS)


def read_twin(path, patient_id: str) -> dict:
    """The patient attributes of twin ``patient_id`` (`SpecError` ``patient_id`` if unknown)."""
    return _attributes(_patient_dir(_check_store(path), patient_id))


def read_twin_versions(path, patient_id: str, upto: int | None = None) -> list[TwinVersion]:
    """The published versions 0..``upto`` (default: all) of twin ``patient_id``, oldest first.
    `SpecError` ``version`` when ``upto`` does not exist."""
    pdir = _patient_dir(_check_store(path), patient_id)
    dirs = _version_dirs(pdir)
    if upto is not None:
        if not 0 <= upto < len(dirs):
            raise SpecError("version", f"{patient_id} has versions 0..{len(dirs) - 1}, not {upto}")
    versions = _CACHE.versions(pdir, dirs)
    return versions if upto is None else versions[:upto + 1]
