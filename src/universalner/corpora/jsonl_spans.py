"""JSON lines with character-offset spans: what doccano, Prodigy and Label Studio export.

One record per line (a file holding one JSON list of records is read too). Accepted shapes:

* ``{"text": ..., "spans": [{"start": 0, "end": 5, "label": "X"}, ...]}`` (Prodigy, spaCy's own);
* ``{"text": ..., "label": [[0, 5, "X"], ...]}`` (doccano's sequence-labelling export; ``"labels"``
  as well);
* ``{"text": ..., "entities": [{"start_offset": 0, "end_offset": 5, "label": "X"}, ...]}`` (doccano's
  relation export);
* a Label Studio task: ``{"data": {"text": ...}, "annotations": [{"result": [{"value": {"start": 0,
  "end": 5, "labels": ["X"]}}]}]}`` (the first annotation is read).

Offsets count characters of ``text`` (Python string indices), end exclusive. Spans that do not fall
on the text, overlap, or are missing a label stop the read with the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..entity import Entity
from .conll import DataFormatError, Sentence


def _spans_of(rec: dict, where: str) -> list[tuple[Any, Any, Any]]:
    """(start, end, label) triples of one record, whatever the exporter called them."""
    if isinstance(rec.get("spans"), list):
        out = []
        for k, s in enumerate(rec["spans"]):
            if not isinstance(s, dict):
                raise DataFormatError(f"{where}: spans[{k}] must be an object with start, end and label")
            out.append((s.get("start"), s.get("end"), s.get("label")))
        return out
    for key in ("label", "labels"):
        if isinstance(rec.get(key), list):
            out = []
            for k, s in enumerate(rec[key]):
                if not isinstance(s, (list, tuple)) or len(s) != 3:
                    raise DataFormatError(f"{where}: {key}[{k}] must be [start, end, label], not {s!r}")
                out.append(tuple(s))
            return out
    if isinstance(rec.get("entities"), list):
        out = []
        for k, s in enumerate(rec["entities"]):
            if not isinstance(s, dict):
                raise DataFormatError(f"{where}: entities[{k}] must be an object")
            out.append(
                (s.get("start_offset", s.get("start")), s.get("end_offset", s.get("end")), s.get("label"))
            )
        return out
    if isinstance(rec.get("annotations"), list):  # Label Studio task
        out = []
        anns = rec["annotations"]
        for r in anns[0].get("result", []) if anns and isinstance(anns[0], dict) else []:
            v = r.get("value", {}) if isinstance(r, dict) else {}
            if "start" not in v:
                continue  # relations, choices: not spans
            labels = v.get("labels") or [None]
            out.append((v.get("start"), v.get("end"), labels[0]))
        return out
    return []


def _text_of(rec: dict) -> Any:
    if "text" in rec:
        return rec["text"]
    data = rec.get("data")
    return data.get("text") if isinstance(data, dict) else None


def record_to_sentence(rec: Any, where: str) -> Sentence:
    """One annotated record as a Sentence; every problem names ``where`` (file:line)."""
    if not isinstance(rec, dict):
        raise DataFormatError(f"{where}: a record must be a JSON object, not {type(rec).__name__}")
    text = _text_of(rec)
    if "conversations" in rec and text is None:
        raise DataFormatError(
            f"{where}: this is conversation JSON (training conversations), not annotated text with spans; "
            "give it to tune --data without --from, or to --replay"
        )
    if not isinstance(text, str):
        raise DataFormatError(f'{where}: the record has no "text" string')
    if not text.strip():
        raise DataFormatError(f"{where}: the record's text is empty")
    ents = []
    for start, end, label in _spans_of(rec, where):
        if (
            isinstance(start, bool)
            or isinstance(end, bool)
            or not isinstance(start, int)
            or not isinstance(end, int)
        ):
            raise DataFormatError(f"{where}: span offsets must be integers, not start={start!r} end={end!r}")
        if not isinstance(label, str) or not label.strip():
            raise DataFormatError(f"{where}: the span {start}-{end} has no label")
        if not 0 <= start < end <= len(text):
            raise DataFormatError(
                f"{where}: the span {start}-{end} ({label!r}) does not fall on the text "
                f"({len(text)} characters; offsets count characters, end exclusive)"
            )
        a, b = start, end  # annotation tools often take a space or two along
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a == b:
            raise DataFormatError(f"{where}: the span {start}-{end} ({label!r}) covers only spaces")
        ents.append(Entity(text[a:b], label.strip(), a, b))
    ents.sort(key=lambda e: (e.start, e.end))
    for x, y in zip(ents, ents[1:], strict=False):
        if y.start < x.end:
            raise DataFormatError(
                f"{where}: overlapping spans {x.start}-{x.end} {x.label!r} ({x.text!r}) and "
                f"{y.start}-{y.end} {y.label!r} ({y.text!r}); keep one of them"
            )
    return Sentence(text, ents, source=where)


def read_jsonl_spans(path: str | Path) -> list[Sentence]:
    """Every record of a JSON lines (or JSON list) file of texts with character-offset spans."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not raw.strip():
        raise DataFormatError(f"{path}: the file is empty")
    if raw.lstrip().startswith("["):  # one JSON list (Label Studio's JSON export)
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        out = [record_to_sentence(r, f"{path}: record {i}") for i, r in enumerate(data)]
    else:
        out = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(
                    f"{path}:{n}: not valid JSON ({e.msg}); expected one record per line"
                ) from None
            out.append(record_to_sentence(rec, f"{path}:{n}"))
    if not out:
        raise DataFormatError(f"{path}: no records found")
    return out
