"""One distillation run per output folder at a time.

Two runs on the same ``--output`` would both append to the journal and both pay the teacher for
the same passages. A run holds an exclusive lock on ``OUTPUT/.distill.lock`` (``flock``, or
``msvcrt.locking`` on Windows: the operating system releases it when the process ends, however it
ends) and writes who it is into the file. A second run fails at once naming that process; a lock
left by a killed run is no lock at all, so the next run takes it over (and says so).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_FILE = ".distill.lock"
log = logging.getLogger(__name__)
_WIN_BYTE = 1 << 20  # Windows locks a byte range: one far past the text, which others may still read


class OutputInUse(RuntimeError):
    """Another run holds the output folder."""


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, _WIN_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        value = json.loads(raw.decode("utf-8", errors="replace").strip("\0 \n") or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "a process that has not written its id yet"
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    since = f", running since {holder['started']}" if holder.get("started") else ""
    return f"process {holder['pid']}{where}{since}"


@contextmanager
def output_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for the duration of the block; raises ``OutputInUse``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--output {folder} is a file; give a folder (it is created if missing)")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            holder = _read(fd)
            os.close(fd)
            raise OutputInUse(
                f"{folder} is in use by another distill run ({_describe(holder)}); wait for it to finish "
                "or stop it, or give another --output"
            )
        try:  # the holder before us may have removed the file between our open and our lock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        left = _read(fd)
        if left.get("pid"):
            log.warning("taking over %s from %s, which ended without releasing it", folder, _describe(left))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.write(fd, json.dumps(me).encode())
        yield folder
    finally:
        try:
            os.unlink(path)  # while still locked: a run that opened it meanwhile sees another inode
        except OSError:
            pass  # Windows does not remove open files; the next run locks it all the same
        os.close(fd)
