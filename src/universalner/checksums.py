"""File checksums: the shipped student names its base and the recipe its data by sha256.

``weights.cache.sha256_file_remembered`` keeps them under the cache for big files read at every load.
"""

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
