"""The user's cache folder, its one-copy slots (``Slot``), and file checksums remembered in it.

What is kept there (docs/inference.md): ``gguf/`` (GGUF files converted into transformers folders),
``merged/`` (the shipped student's merged weights), ``llamacpp/`` (students merged into one GGUF file)
and ``sha256.json`` (checksums of big files, by path, size and modification time).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..checksums import sha256_file


def cache_dir() -> Path:
    """``$UNIVERSALNER_CACHE``, else ``$XDG_CACHE_HOME/universalner``, else ``~/.cache/universalner``."""
    root = os.environ.get("UNIVERSALNER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "universalner"
    )
    return Path(root)


def sha256_file_remembered(path: str | os.PathLike) -> str:
    """``sha256_file``, remembered under the cache by the file's path, size and modification time.

    The shipped student checks its 98 MB base on every load; hashing it again is 80 ms of the README
    command's 5 s. A file changed in place gets a new modification time and is hashed again (the same
    trust ``gguf.gguf_to_folder`` puts in them); an unreadable record is ignored and rewritten."""
    import json

    path = os.path.realpath(path)
    st = os.stat(path)
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    record = cache_dir() / "sha256.json"
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    got = known.get(key)
    if isinstance(got, str) and len(got) == 64:
        return got
    got = sha256_file(path)
    known = {k: v for k, v in known.items() if not k.startswith(f"{path}|")} | {key: got}
    tmp = record.with_name(f".{record.name}.{os.getpid()}")
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
        tmp.replace(record)
    except OSError:  # a read-only or full cache: hash again next time
        tmp.unlink(missing_ok=True)
    return got


class Slot:
    """One current copy of something made from other files (a converted or merged model), kept under the
    cache: the slot's folder names what it is made from (a student and its base), ``key`` the exact
    inputs (their bytes, sizes, modification times), so a changed input makes a new copy, and the copy
    it replaces is removed once no process reads it.

    Safe for threads and processes: a copy is written under a unique temporary name and renamed into
    place in one step (a half-written copy is never seen; of two writers the first rename wins), and
    read under a shared lock (``reading``, which also stamps the copy as used) that ``prune`` needs to
    take exclusively before it removes a copy, and only a copy nobody used for ``GRACE`` seconds (a
    process may hold a path it has not opened yet); where locks are not available (Windows) old copies
    are left, never removed under a reader.
    """

    GRACE = 3600.0

    def __init__(self, folder: Path, key: str, suffix: str = ""):
        self.folder = Path(folder)
        self.key = key
        self.path = self.folder / f"{key}{suffix}"

    def _lock(self, key: str) -> Path:
        return self.folder / f".{key}.lock"

    def reading(self) -> _Shared:
        """A context that keeps this copy from being removed while it is read (enter before the
        existence check, leave once the copy is loaded)."""
        return _Shared(self._lock(self.key))

    def put(self, write, complete, required: bool = False) -> Path | None:
        """Write the copy (``write(tmp)`` makes file or folder ``tmp``), rename it into place unless
        ``complete(path)`` already holds (another writer's), then prune older copies. Where the cache
        cannot be written (read-only, full): the error if ``required``, else None (the caller goes on
        without a copy). Nothing half-written is left either way."""
        import logging
        import shutil
        import uuid

        tmp = self.folder / f".tmp-{self.key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write(tmp)
            try:
                os.rename(tmp, self.path)  # a folder onto an existing one fails: never replaces a copy
            except OSError:
                if not complete(self.path):  # a leftover no process can trust (an interrupted rename)
                    raise
        except Exception as e:  # noqa: BLE001 - a full disk or a read-only cache: made again next time
            if required:
                raise
            logging.getLogger(__name__).debug("could not keep %s in the cache: %s", self.path, e)
            return None
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp.exists():
                tmp.unlink(missing_ok=True)
        self.prune()
        return self.path

    def prune(self) -> list[Path]:
        """Remove the slot's other copies that no process is reading, and temporary files a crashed
        writer left more than a day ago; returns what was removed."""
        import shutil
        import time

        gone: list[Path] = []
        try:
            entries = list(self.folder.iterdir())
        except OSError:
            return gone
        for p in entries:
            if p == self.path or p.name.endswith(".lock"):
                continue
            if p.name.startswith(".tmp-"):
                try:
                    if time.time() - p.stat().st_mtime < 86400:
                        continue
                except OSError:
                    continue
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                gone.append(p)
                continue
            key = p.name.split(".", 1)[0]
            try:
                stamp = self._lock(key) if self._lock(key).exists() else p
                if time.time() - stamp.stat().st_mtime < self.GRACE:
                    continue  # used lately: its process may still open it
            except OSError:
                continue
            with _Exclusive(self._lock(key)) as free:
                if not free:
                    continue  # being read, or no locks here: left for a later prune
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                self._lock(key).unlink(missing_ok=True)
                gone.append(p)
        return gone


class _Shared:
    """A shared lock on a file for a block (does nothing where ``fcntl`` is missing)."""

    mode = "LOCK_SH"

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> bool:
        try:
            import fcntl
        except ImportError:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a read-only cache: nothing can be removed from it either
            return False
        try:
            if self.mode == "LOCK_SH":
                os.utime(self.fd)  # the copy's last use, which ``Slot.prune`` respects
            flags = getattr(fcntl, self.mode) | (fcntl.LOCK_NB if self.mode == "LOCK_EX" else 0)
            fcntl.flock(self.fd, flags)
            return True
        except OSError:
            os.close(self.fd)
            self.fd = None
            return False

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases its lock
            self.fd = None


class _Exclusive(_Shared):
    """An exclusive lock, taken only if no one holds the file (True), else not at all (False)."""

    mode = "LOCK_EX"
