"""CoNLL / BIO column files: one token per line, a tag column, blank lines between sentences.

Every sentence is rebuilt as ``" ".join(tokens)`` -- the text the reference shows the model --
with character offsets for each gold mention, so that answers can be scored as spans. Shared by
evaluate (gold sets), tune (``--supervised``) and the annotated-corpus converter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..entity import Entity

_TAG = re.compile(r"^(O|[BIESLU]-\S.*)$")
DOCSTART = "-DOCSTART-"


class DataFormatError(ValueError):
    """A data file that cannot be read; the message names the file and line or record."""


@dataclass
class Sentence:
    """One passage with its gold mentions (``text[e.start:e.end] == e.text`` for each)."""

    text: str
    entities: list[Entity]
    tokens: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    source: str = ""  # "file:line" where it starts, for messages


# --- CoNLL / BIO columns -------------------------------------------------------------------------
def _rows(path: Path) -> Iterator[tuple[int, list[str] | None]]:
    """(line number, fields) per line; ``None`` marks a sentence break (blank or -DOCSTART-)."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                yield n, None
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            fields = [x.strip() or x for x in fields]
            if fields[0] == DOCSTART or (len(fields) > 1 and fields[-1] == DOCSTART):
                yield n, None
                continue
            yield n, fields


def _tag_column(path: Path, rows: Sequence[tuple[int, list[str]]], tag_column: str) -> int:
    """-1 (last column, CoNLL) or 0 (first column, MIT); 'auto' picks the one that holds only tags."""
    for n, fields in rows:
        if len(fields) < 2:
            raise DataFormatError(f"{path}:{n}: expected a token and a tag separated by a tab or spaces")
    if tag_column in ("last", -1):
        return -1
    if tag_column in ("first", 0):
        return 0
    if tag_column != "auto":
        raise ValueError(f"tag_column must be 'auto', 'first' or 'last', not {tag_column!r}")
    for col in (-1, 0):
        if all(_TAG.match(fields[col]) for _, fields in rows):
            return col
    bad = next(n for n, fields in rows if not _TAG.match(fields[-1]))
    raise DataFormatError(
        f"{path}:{bad}: neither the last nor the first column holds only BIO tags "
        "(O, B-X, I-X, E-X, S-X); is this a CoNLL/BIO file?"
    )


def decode_tags(tags: Sequence[str], where: str = "") -> list[tuple[int, int, str]]:
    """Token spans ``(start, end, type)`` from IOB2, IOB1 or BIOES tags.

    ``I-X`` after ``O`` or another type opens a mention (IOB1, and lenient IOB2); ``B-X`` always
    does. ``E-``/``L-`` close one, ``S-``/``U-`` are single-token mentions.
    """
    spans: list[tuple[int, int, str]] = []
    cur: list | None = None  # [start, end, type]
    for i, tag in enumerate(tags):
        if tag == "O":
            if cur:
                spans.append(tuple(cur))
            cur = None
            continue
        if not _TAG.match(tag):
            raise DataFormatError(f"{where}: token {i + 1}: {tag!r} is not a BIO tag")
        prefix, typ = tag[0], tag[2:]
        continues = cur is not None and cur[2] == typ and prefix in "IEL"
        if continues:
            cur[1] = i + 1
        else:
            if cur:
                spans.append(tuple(cur))
            cur = [i, i + 1, typ]
        if prefix in "ELSU":
            spans.append(tuple(cur))
            cur = None
    if cur:
        spans.append(tuple(cur))
    return spans


def sentence_from_tokens(tokens: Sequence[str], tags: Sequence[str], source: str = "") -> Sentence:
    """Join tokens with single spaces and place every decoded mention on the joined text."""
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok) + 1
    text = " ".join(tokens)
    ents = []
    for a, b, typ in decode_tags(tags, source):
        start, end = starts[a], starts[b - 1] + len(tokens[b - 1])
        ents.append(Entity(text[start:end], typ, start, end))
    return Sentence(text, ents, list(tokens), list(tags), source)


def read_conll(path: str | Path, tag_column: str = "auto") -> list[Sentence]:
    """Sentences of a CoNLL-style file: one token per line, blank lines between sentences.

    Columns are split on tabs (or on spaces when a line has no tab); the tag is the last column
    (CoNLL-2003's four columns, CrossNER, WNUT, BC5CDR) or the first (MIT Movie/Restaurant).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        rows = list(_rows(path))
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    col = _tag_column(path, [(n, f) for n, f in rows if f is not None], tag_column)
    tok_col = 0 if col == -1 else 1
    sentences, toks, tags, first = [], [], [], 0
    for n, fields in [*rows, (len(rows) + 1, None)]:
        if fields is None:
            if toks:
                sentences.append(sentence_from_tokens(toks, tags, f"{path}:{first}"))
            toks, tags = [], []
            continue
        if not toks:
            first = n
        toks.append(fields[tok_col])
        tags.append(fields[col])
    if not sentences:
        raise DataFormatError(f"{path}: no sentences found")
    return sentences
