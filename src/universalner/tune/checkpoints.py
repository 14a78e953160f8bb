"""Trainer checkpoints in the output folder: which one a resumed run continues from.

No torch or transformers import here, so a wrong ``--resume`` fails in a fraction of a second.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the ``checkpoint-N`` folders, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    return sorted(found)


def is_complete(ckpt: Path) -> bool:
    """The Trainer writes ``trainer_state.json`` last: a checkpoint with a readable one is whole."""
    try:
        json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(folder: Path, remove_partial: bool = False) -> tuple[int, Path] | None:
    """The newest complete checkpoint; newer, half-written ones (a kill during saving) are removed."""
    complete = None
    for step, path in reversed(checkpoints(folder)):
        if is_complete(path):
            complete = (step, path)
            break
        if remove_partial:
            shutil.rmtree(path, ignore_errors=True)
    return complete
