"""What insilico may write, replace and resume: ownership markers, ``--out`` checks, the writer's
lock, input digests and incomplete-results errors.

Rules (one mechanism each):

* **Ownership.** Everything insilico writes is recognisable as its own: Zarr stores carry the
  group attribute ``insilico_store`` (``trial``, ``campaign``, ``cohort``) from their first
  byte on; the HTML report carries ``<meta name="generator" content="insilico …">``; folders of
  plots and exports hold a manifest ``insilico-manifest.json`` listing the files written;
  a NONMEM export CSV starts with insilico's own header; cohort CSV / Parquet files carry
  insilico's cohort metadata (sidecar / schema). `replace_owned` removes only such things.
* **``--out`` sanity.** An empty path, ``.``, the working directory or one of its parents, the
  home folder, or an existing file where a folder is expected (and vice versa) is refused.
* **Lock.** A writer holds ``.<name>.lock`` beside ``--out`` (JSON: pid, host, start time) for
  the whole write; a second writer refuses, naming the holder. A lock left by a dead process on
  this host is taken over.
* **Inputs.** A store records a SHA-256 digest per input (``inputs_sha256``); `changed_inputs`
  names those that differ, so ``--resume`` can refuse a changed input.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from insilico.errors import SpecError

KIND_ATTR = "insilico_store"
MANIFEST = "insilico-manifest.json"
GENERATOR = "insilico"
STORE_KINDS = ("trial", "campaign", "cohort", "fit", "twin", "crossover")
NONMEM_HEADER_TAIL = ",ARM,ARMN,SUBJ,REP,NTIME"


class IncompleteResults(SpecError):
    """A results store whose run did not finish (``done`` of ``total`` work units written)."""

    def __init__(self, path, done: int, total: int):
        self.path, self.done, self.total = Path(path), int(done), int(total)
        super().__init__("results", f"{path} is an unfinished run ({done} of {total} work units done); "
                                    "finish it with `insilico run SPEC --out PATH --resume`, or pass --partial "
                                    "(Python: partial=True) to read the units written so far")


class DamagedStore(SpecError):
    """A results store with unreadable or missing chunks of work units recorded as done."""

    def __init__(self, path, damage: list):
        self.path, self.damage = Path(path), damage
        shown = "; ".join(f"{v} chunk {'.'.join(map(str, c))}" for v, c, _ in damage[:5])
        more = f" and {len(damage) - 5} more" if len(damage) > 5 else ""
        super().__init__("results", f"{path} is damaged: {shown}{more} missing or unreadable; "
                                    "`insilico run SPEC --out PATH --resume` recomputes the affected units")


# -- --out ------------------------------------------------------------------------------------
def check_out(path, *, option: str = "--out", folder: bool = True) -> Path:
    """``path`` as a Path when it is a sensible place to write; otherwise `SpecError` naming
    ``option``. ``folder``: the output is a folder (a store, plots, a table directory) rather
    than a file."""
    if path is None or str(path).strip() == "":
        raise SpecError(option, "is empty; give the path to write")
    path = Path(path)
    where = path.resolve()
    cwd = Path.cwd().resolve()
    if where == cwd or where in cwd.parents:
        raise SpecError(option, f"{str(path)!r} is the working directory or one of its parents; "
                                "give a new path inside it")
    if where == Path.home().resolve() or where == Path(where.anchor):
        raise SpecError(option, f"{str(path)!r} is the home or root folder; give a new path inside it")
    if folder and path.is_file():
        raise SpecError(option, f"{path} is an existing file; a folder is written here")
    if not folder and path.is_dir():
        raise SpecError(option, f"{path} is an existing folder; a file is written here")
    return path


# -- recognising our own outputs ----------------------------------------------------------------
def _zarr_attrs(path: Path) -> dict | None:
    for meta in ("zarr.json", ".zattrs"):
        f = path / meta
        if f.is_file():
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError, UnicodeDecodeError):
                return None
            return doc.get("attributes", {}) if meta == "zarr.json" else doc
    return None


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a folder insilico wrote (``{"insilico": kind, "files": [...]}``), or None."""
    f = Path(folder) / MANIFEST
    try:
        doc = json.loads(f.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("files"), list) else None


def write_manifest(folder, kind: str, files) -> None:
    """Record that insilico wrote ``files`` (names inside ``folder``) as an output of ``kind``;
    files of an earlier manifest of the same kind that are still there stay recorded."""
    from insilico import __version__
    folder = Path(folder)
    old = read_manifest(folder)
    kept = [f for f in old["files"] if (folder / f).exists()] if old and old.get("insilico") == kind else []
    doc = {"insilico": kind, "version": __version__, "files": sorted({Path(f).name for f in [*kept, *files]})}
    (Path(folder) / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n")


def _file_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    try:
        if suffix in (".html", ".htm"):
            head = path.read_bytes()[:4096].decode("utf-8", "replace")
            return "report" if f'<meta name="generator" content="{GENERATOR}' in head else None
        if suffix == ".csv":
            side = Path(str(path) + ".json")
            if side.is_file() and '"insilico-cohort/' in side.read_text(errors="replace")[:200_000]:
                return "cohort"
            with path.open("r", errors="replace") as fh:
                header = fh.readline().rstrip("\r\n")
            return "export" if header.startswith("ID,") and NONMEM_HEADER_TAIL in header else None
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq
            md = pq.read_schema(path).metadata or {}
            return "cohort" if b"insilico.cohort" in md else None
    except (OSError, ValueError):
        return None
    return None


def recognise(path) -> str | None:
    """What insilico output ``path`` is (``trial``, ``campaign``, ``cohort``, ``report``,
    ``plots``, ``export``), or None when it is not something insilico wrote."""
    path = Path(path)
    if path.is_symlink():
        return None
    if path.is_dir():
        attrs = _zarr_attrs(path)
        if attrs is not None:
            kind = attrs.get(KIND_ATTR)
            if kind in STORE_KINDS:
                return kind
            if "spec_sha256" in attrs and "trial" in attrs:      # stores written before the marker
                return "trial"
            if "campaign" in attrs and "scenarios" in attrs:
                return "campaign"
            return None
        manifest = read_manifest(path)
        return manifest.get("insilico") if manifest else None
    if path.is_file():
        return _file_kind(path)
    return None


def _remove_tree(path: Path) -> None:
    """Remove a folder: renamed aside first (atomic), so a kill mid-removal never leaves a
    half-deleted store at ``path``."""
    aside = path.with_name(f".{path.name}.removing-{os.getpid()}")
    os.replace(path, aside)
    shutil.rmtree(aside)


def replace_owned(path, kind: str | tuple[str, ...], *, overwrite: bool, option: str = "--out") -> None:
    """Make way for a new output of ``kind`` at ``path``: nothing to do when it does not exist;
    without ``overwrite`` `SpecError` (exists); with it, remove ``path`` only when it is an
    output of ``kind`` insilico wrote, else `SpecError` naming ``option`` (nothing touched)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise SpecError(option, f"{path} already exists; use --overwrite to replace it")
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    found = recognise(path)
    if found not in kinds:
        what = f"an insilico {found} output" if found else "not something insilico wrote"
        raise SpecError(option, f"{path} is {what}, not an insilico {' or '.join(kinds)}; "
                                "--overwrite only replaces insilico's own outputs (nothing was touched)")
    if path.is_dir():
        manifest = read_manifest(path) if _zarr_attrs(path) is None else None
        if manifest is None:
            _remove_tree(path)
            return
        for name in manifest["files"]:
            (path / Path(name).name).unlink(missing_ok=True)
        (path / MANIFEST).unlink(missing_ok=True)
        if not any(path.iterdir()):
            path.rmdir()
        return
    path.unlink()
    side = Path(str(path) + ".json")
    if found == "cohort" and side.is_file():
        side.unlink()


def clear_owned_files(folder, kind: str, targets, *, overwrite: bool, option: str = "--out") -> None:
    """Make way for files ``targets`` (names) in ``folder``, which may hold the user's other
    files. Without ``overwrite`` an existing target is refused; with it, only files recorded in
    insilico's manifest of ``kind`` are removed (all of them: a new set replaces the old), and a
    target insilico did not write is refused (nothing touched)."""
    folder = Path(folder)
    if not folder.exists():
        return
    existing = [t for t in targets if (folder / t).exists()]
    manifest = read_manifest(folder)
    ours = set(manifest["files"]) if manifest and manifest.get("insilico") == kind else set()
    if existing and not overwrite:
        raise SpecError(option, f"{folder / existing[0]} already exists; use --overwrite to replace it")
    foreign = [t for t in existing if t not in ours]
    if foreign:
        raise SpecError(option, f"{folder / foreign[0]} was not written by insilico; --overwrite only replaces "
                                "insilico's own outputs (nothing was touched)")
    if overwrite:
        for name in ours:
            (folder / name).unlink(missing_ok=True)


# -- the writer's lock --------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_path(path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextmanager
def writer_lock(path, *, option: str = "--out"):
    """Hold the writer's lock of output ``path`` (``.<name>.lock`` beside it) while the block runs.
    Another live holder → `SpecError` naming ``option`` with its pid and host; a lock whose pid
    is dead on this host is taken over."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) \
                    and not _alive(holder["pid"]):
                lock.unlink(missing_ok=True)          # stale: its process is gone
                continue
            if not holder:                            # being written this instant: look again
                time.sleep(0.2)
                continue
            raise SpecError(option, f"{path} is being written by another run (pid {holder.get('pid')} on host "
                                    f"{holder.get('host')}, since {holder.get('since')}); wait for it to "
                                    f"finish, or remove {lock} if that run is gone") from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    else:
        raise SpecError(option, f"cannot take the lock {lock} of {path}")
    try:
        yield lock
    finally:
        try:
            if json.loads(lock.read_text()).get("pid") == me["pid"]:
                lock.unlink()
        except (OSError, ValueError):
            pass


# -- inputs ---------------------------------------------------------------------------------------
def digest(data: bytes | str) -> str:
    """SHA-256 hex digest of ``data`` (text encoded as UTF-8)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def changed_inputs(recorded: dict | None, current: dict) -> list[str]:
    """Names of the inputs whose digest in ``current`` differs from ``recorded`` (an input only
    one side has counts as changed)."""
    recorded = recorded or {}
    return [k for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k)]
