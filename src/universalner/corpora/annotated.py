"""A user's own annotations, whatever tool wrote them, and the label names the student is asked.

``read_annotated`` picks the reader by the file's suffix: ``.spacy``/``.docbin`` (spaCy DocBin,
``docbin.py``), ``.jsonl``/``.json`` (character-offset spans, ``jsonl_spans.py``), anything else
CoNLL/BIO columns (``conll.py``). ``label_map_from`` reads what the user says about the labels:
nothing (ask each label as it is written in the data), a list of names (``"chemical,disease"``:
the label set; a label outside it is an error), a map (``"CHEM=chemical,DIS=disease"``, or a JSON
file ``{"CHEM": "chemical", "DIS": "disease", "MISC": null}``: ask ``CHEM`` as "chemical", never
ask ``MISC``). ``relabel`` applies the map and stops at the first label the map does not know,
naming the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..entity import Entity
from .conll import DataFormatError, Sentence, read_conll
from .jsonfile import read_json
from .labels import LabelMap, asked_labels

FORMATS = ("auto", "spacy", "jsonl", "conll")
_SUFFIX = {".spacy": "spacy", ".docbin": "spacy", ".jsonl": "jsonl", ".json": "jsonl"}


def format_of(path: str | Path, fmt: str = "auto") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    return _SUFFIX.get(Path(path).suffix.lower(), "conll") if fmt == "auto" else fmt


def read_annotated(path: str | Path, fmt: str = "auto", spans_key: str | None = None) -> list[Sentence]:
    """The annotated passages of one file (DocBin, JSON lines with spans, or CoNLL/BIO)."""
    kind = format_of(path, fmt)
    if kind == "spacy":
        from .docbin import read_docbin

        return read_docbin(path, spans_key)
    if kind == "jsonl":
        from .jsonl_spans import read_jsonl_spans

        return read_jsonl_spans(path)
    path = Path(path)
    if path.is_file() and not path.read_text(encoding="utf-8", errors="replace").strip():
        raise DataFormatError(f"{path}: the file is empty")
    return read_conll(path)


def label_map_from(spec: str | None) -> LabelMap | None:
    """``--labels``: None, ``"a,b"`` (the label set), ``"TAG=name,..."`` or a JSON map file."""
    if spec is None or not str(spec).strip():
        return None
    spec = str(spec).strip()
    if spec.endswith(".json") or Path(spec).is_file():
        path = Path(spec)
        data = read_json(path, "label map file")
        if isinstance(data, list):
            data = {x: x for x in data}
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and (v is None or (isinstance(v, str) and v.strip())) for k, v in data.items()
        ):
            raise DataFormatError(
                f'{path}: a label map is a JSON object {{"TAG": "natural name" or null}} or a list of names'
            )
        return {k: (v.strip() if v else None) for k, v in data.items()}
    out: LabelMap = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        tag, sep, name = part.partition("=")
        tag, name = tag.strip(), name.strip()
        if not tag or (sep and not name):
            raise DataFormatError(f"--labels: {part!r} must be NAME or TAG=natural name")
        out[tag] = (None if name.lower() in ("null", "none", "-") else name) if sep else tag
    if not out:
        raise DataFormatError("--labels names no label")
    return out


def relabel(sentences: Sequence[Sentence], label_map: LabelMap | None) -> tuple[list[Sentence], list[str]]:
    """(sentences whose entities carry the asked names, the label set asked of every sentence).

    Without a map every label is asked as written, in the order first seen. A label the map does not
    know stops with the sentence's file and line.
    """
    if label_map is None:
        label_map = {e.label: e.label for s in sentences for e in s.entities}
    out = []
    for s in sentences:
        ents = []
        for e in s.entities:
            if e.label not in label_map:
                known = ", ".join(repr(k) for k in label_map)
                raise DataFormatError(
                    f"{s.source}: label {e.label!r} ({e.text!r}) is not in --labels ({known}); "
                    "add it (TAG=name, or TAG=null to leave it out)"
                )
            name = label_map[e.label]
            if name:
                ents.append(Entity(e.text, name, e.start, e.end))
        out.append(replace(s, entities=ents))
    labels = asked_labels(label_map)
    if not labels:
        raise DataFormatError("no label to ask: the data has no annotated span and --labels names none")
    return out, labels
