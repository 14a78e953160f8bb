"""File checksums: the shipped student names its base and the recipe its data by sha256."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (a 98 MB GGUF takes a fraction of a second)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file_remembered(path: str | os.PathLike) -> str:
    """``sha256_file``, remembered under the cache by the file's path, size and modification time.

    The shipped student checks its 98 MB base on every load; hashing it again is 80 ms of the README
    command's 5 s. A file changed in place gets a new modification time and is hashed again (the same
    trust ``loading.gguf_to_folder`` puts in them); an unreadable record is ignored and rewritten."""
    import json

    from .loading import cache_dir

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
