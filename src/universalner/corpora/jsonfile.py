"""A JSON file read with one clear error: a missing file, or invalid JSON with its line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conll import DataFormatError


def read_json(path: str | Path, what: str) -> Any:
    """The parsed file; ``what`` names it in the error (``"label map file"``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
