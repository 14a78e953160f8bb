"""The two Pile-NER side files of ``../shared/data/pilener``: one-type examples and type definitions.

* ``pilener_391_examples.json``: ``{type: {"positive_examples": [{"sentence", "entities"}],
  "negative_examples": [...]}}``. Each text is labelled for that one type only, so it may be asked
  that type and no other (its other mentions were never annotated).
* ``pilener_391_definitions.json``: ``{type: {"gpt_answer": "{\\"Definition\\": ..., ...}"}}``: a
  written definition of each type, the question a definition student is asked instead of the name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .conll import DataFormatError
from .jsonfile import read_json


@dataclass(frozen=True)
class TypedExample:
    """A text asked one type: ``mentions`` are its mentions of that type (empty for a negative)."""

    text: str
    label: str
    mentions: tuple[str, ...]


def _load(path: Path) -> dict:
    data = read_json(path, "Pile-NER file")
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a JSON object of types")
    return data


def read_typed_examples(path: str | Path) -> list[TypedExample]:
    """Every positive and negative example, in file order; mentions not found in their text are refused."""
    path = Path(path)
    out = []
    for label, groups in _load(path).items():
        for kind in ("positive_examples", "negative_examples"):
            for k, ex in enumerate(groups.get(kind, [])):
                text, mentions = ex.get("sentence"), ex.get("entities", [])
                if not isinstance(text, str) or not isinstance(mentions, list):
                    raise DataFormatError(f"{path}: [{label!r}][{kind}][{k}] needs a sentence and entities")
                missing = [m for m in mentions if m not in text]
                if missing:
                    raise DataFormatError(f"{path}: [{label!r}][{kind}][{k}]: {missing} not in its sentence")
                out.append(TypedExample(text, label, tuple(dict.fromkeys(mentions))))
    return out


def read_definitions(path: str | Path) -> dict[str, str]:
    """type -> its one-sentence definition (the ``Definition`` field of the written answer)."""
    path = Path(path)
    out = {}
    for label, entry in _load(path).items():
        try:
            answer = json.loads(entry["gpt_answer"])
            definition = answer["Definition"].strip()
        except (KeyError, TypeError, json.JSONDecodeError):
            raise DataFormatError(f"{path}: [{label!r}] has no readable Definition") from None
        if definition:
            out[label] = definition
    return out
