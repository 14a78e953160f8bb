"""``evaluate score``: the official metric for stored answers against reference-format gold."""

from __future__ import annotations

import json
from pathlib import Path

from ..corpora import DataFormatError, read_reference_json
from .metrics import Scores, official_scores, reference_response


def read_answers(path: str | Path) -> dict[str, str]:
    """``{"id": ..., "output": ...}`` JSON lines -> id -> output; errors name the line."""
    path = Path(path)
    out: dict[str, str] = {}
    try:
        f = open(path, encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(f"predictions file not found: {path}") from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict) or "id" not in rec or "output" not in rec:
                raise DataFormatError(f'{path}:{n}: expected {{"id": ..., "output": ...}}')
            if not isinstance(rec["output"], str):
                raise DataFormatError(f"{path}:{n}: 'output' must be a string (the raw model answer)")
            rid = str(rec["id"])
            if rid in out:
                raise DataFormatError(f"{path}:{n}: id {rid!r} appears twice")
            out[rid] = rec["output"]
    return out


def score_files(gold: str | Path, predictions: str | Path, allow_missing: bool = False) -> tuple[Scores, int]:
    """Official scores (micro and per type) and the number of records scored.

    Answers go through the reference's own clean-up (text after ``ASSISTANT:``, stripped) first;
    a record without an answer is an error unless ``allow_missing`` (then it is scored as empty).
    """
    _, records, _ = read_reference_json(gold)
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataFormatError(f"{gold}: record id {dup!r} appears more than once")
    answers = read_answers(predictions)
    unknown = answers.keys() - set(ids)
    if unknown:
        raise DataFormatError(
            f"{predictions}: {len(unknown)} ids are not in {gold}, e.g. {sorted(unknown)[:3]}"
        )
    missing = [i for i in ids if i not in answers]
    if missing and not allow_missing:
        raise DataFormatError(
            f"{predictions}: no answer for {len(missing)} of {len(ids)} gold records, e.g. {missing[:3]} "
            "(--allow-missing scores them as empty answers)"
        )
    outputs = [reference_response(answers.get(r.id, "")) for r in records]
    scores = official_scores(outputs, [r.gold for r in records], [r.label for r in records])
    return scores, len(records)
