"""The template record ``universalner.json``: what ``universalner.tune`` wrote next to a student's weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATE_RECORD = "universalner.json"  # written by `universalner.tune` next to a student


def read_template_record(folder: Path | str) -> dict[str, Any]:
    """What `universalner.tune` recorded about how a student was trained ({} if nothing)."""
    f = Path(folder) / TEMPLATE_RECORD
    if f.is_file():
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def write_template_record(folder: Path | str, **record: Any) -> None:
    """Write ``record`` as the template record of ``folder`` (created if missing)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / TEMPLATE_RECORD).write_text(json.dumps(record, indent=2))
