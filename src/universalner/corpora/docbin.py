"""spaCy's ``DocBin`` files (``.spacy``): what Prodigy's ``data-to-spacy`` and ``spacy convert`` write.

Each ``Doc`` becomes one passage: its text and ``doc.ents`` (or, with ``spans_key``, the span group
of that name, as spancat pipelines annotate). Positions in messages are ``file: doc N`` (a DocBin
has no lines).
"""

from __future__ import annotations

from pathlib import Path

from ..entity import Entity
from .conll import DataFormatError, Sentence


def read_docbin(path: str | Path, spans_key: str | None = None) -> list[Sentence]:
    """Every Doc of a ``.spacy`` file with its entities (``doc.ents``, or ``doc.spans[spans_key]``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty")
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    try:
        docs = list(DocBin().from_disk(path).get_docs(Vocab()))
    except Exception as e:  # noqa: BLE001 - msgpack/zlib errors of a file that is not a DocBin
        raise DataFormatError(
            f"{path}: not a spaCy DocBin file ({type(e).__name__}: {e}); write one with DocBin.to_disk "
            "or `spacy convert`"
        ) from None
    if not docs:
        raise DataFormatError(f"{path}: the DocBin holds no documents")
    out = []
    for i, doc in enumerate(docs):
        where = f"{path}: doc {i}"
        if not doc.text.strip():
            raise DataFormatError(f"{where}: the document's text is empty")
        if spans_key is not None:
            if spans_key not in doc.spans:
                raise DataFormatError(f"{where}: no span group {spans_key!r} (has {sorted(doc.spans)})")
            spans = list(doc.spans[spans_key])
        else:
            spans = list(doc.ents)
        ents = sorted(
            (Entity(s.text, s.label_, s.start_char, s.end_char) for s in spans),
            key=lambda e: (e.start, e.end),
        )
        for e in ents:
            if not e.label:
                raise DataFormatError(f"{where}: the span {e.start}-{e.end} ({e.text!r}) has no label")
        for x, y in zip(ents, ents[1:], strict=False):
            if y.start < x.end:
                raise DataFormatError(
                    f"{where}: overlapping spans {x.start}-{x.end} {x.label!r} ({x.text!r}) and "
                    f"{y.start}-{y.end} {y.label!r} ({y.text!r}); keep one of them"
                )
        out.append(Sentence(doc.text, ents, source=where))
    return out
