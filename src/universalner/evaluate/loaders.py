"""Read benchmark data: CoNLL/BIO column files and the reference's conversation JSON.

Every sentence is rebuilt as ``" ".join(tokens)`` -- the text the reference shows the model --
with character offsets for each gold mention, so that answers can be scored as spans.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..entity import Entity
from ..prompts import passage_turn, question_turn

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


# --- the reference's conversation JSON ---------------------------------------------------------------
@dataclass
class Record:
    """One (passage, type) question: the unit the official metric counts over."""

    id: str
    sentence: int  # index into the data set's sentences
    label: str  # the type asked, in natural language
    gold: str  # the gold answer string, a JSON list


def _template_regex(rendered: str, *slots: str) -> re.Pattern:
    """A regex for a prompt built by ``prompts`` with placeholder slots (keeps wording in one place)."""
    pattern = re.escape(rendered)
    for slot in slots:
        pattern = pattern.replace(re.escape(slot), "(.*)", 1)
    return re.compile(f"^{pattern}$", re.S)


_PASSAGE = _template_regex(passage_turn("\x00"), "\x00")
_PASSAGE_DS = _template_regex(passage_turn("\x00", "\x01"), "\x01", "\x00")
_QUESTION = _template_regex(question_turn("\x00"), "\x00")


def parse_passage_turn(value: str) -> tuple[str, str | None]:
    """(text, data set name or None) from the first user turn."""
    m = _PASSAGE_DS.match(value)
    if m:
        return m.group(2), m.group(1)
    m = _PASSAGE.match(value)
    if m:
        return m.group(1), None
    raise ValueError(f"not a passage turn: {value[:60]!r}")


def _read_json_records(path: Path) -> list:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if path.suffix == ".jsonl" or e.msg == "Extra data":  # JSON lines
            data = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        data.append(json.loads(line))
                    except json.JSONDecodeError as e2:
                        raise DataFormatError(f"{path}:{n}: not valid JSON ({e2.msg})") from None
        else:
            raise DataFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a list of conversation records, not {type(data).__name__}")
    return data


def read_reference_json(path: str | Path) -> tuple[list[Sentence], list[Record], list[str]]:
    """Sentences, records and unplaced gold mentions of a reference-format file.

    The format is a JSON list (or JSON lines) of ``{"id", "conversations": [...]}``. Each
    question/answer pair of a conversation is a record (the benchmark files have one per
    conversation; training files have several). Consecutive records about the same passage form
    one sentence; their gold strings are placed on it at token boundaries, in order. Gold strings
    found nowhere in the text are listed as ``"record id: mention"`` (they still count for the
    official metric, but have no span).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    data = _read_json_records(path)
    sentences: list[Sentence] = []
    records: list[Record] = []
    asked: set[str] = set()
    for i, rec in enumerate(data):
        where = f"{path}: record {i}"
        conv = rec.get("conversations") if isinstance(rec, dict) else None
        if not isinstance(conv, list) or len(conv) < 4 or len(conv) % 2:
            raise DataFormatError(
                f"{where}: expected 'conversations' with a passage turn and question/answer pairs"
            )
        try:
            values = [str(turn["value"]) for turn in conv]
        except (TypeError, KeyError):
            raise DataFormatError(f"{where}: every turn needs a 'value'") from None
        try:
            text, _ = parse_passage_turn(values[0])
        except ValueError as e:
            raise DataFormatError(f"{where}: {e}") from None
        rid = str(rec.get("id", f"{path.stem}_{i}"))
        pairs = list(zip(values[2::2], values[3::2], strict=True))
        for k, (question, answer) in enumerate(pairs):
            m = _QUESTION.match(question)
            if not m:
                raise DataFormatError(f"{where}: turn {2 + 2 * k} is not a question: {question[:60]!r}")
            label = m.group(1)
            if not sentences or sentences[-1].text != text or label in asked:
                sentences.append(Sentence(text, [], text.split(" "), [], where))
                asked = set()
            asked.add(label)
            records.append(
                Record(rid if len(pairs) == 1 else f"{rid}_{k}", len(sentences) - 1, label, answer)
            )
    by_sentence: dict[int, list[Record]] = {}
    for r in records:
        by_sentence.setdefault(r.sentence, []).append(r)
    unplaced: list[str] = []
    for i, recs in by_sentence.items():
        unplaced += _place(sentences[i], recs, path)
    return sentences, records, unplaced


def _place(sentence: Sentence, records: list[Record], path: Path) -> list[str]:
    """Give the gold strings of one sentence offsets at token boundaries; returns those not found.

    Longer mentions go first, and each takes the first occurrence that overlaps no mention
    placed already (in flat NER, ``Shanghai`` the location is not the one inside
    ``Komatsu ( Shanghai ) Ltd.`` the organisation); repeated strings take successive occurrences.
    """
    wanted: list[tuple[str, str, str]] = []  # (mention, label, record id)
    for record in records:
        try:
            mentions = json.loads(record.gold)
        except json.JSONDecodeError:
            raise DataFormatError(f"{path}: record {record.id}: gold answer is not a JSON list") from None
        if not isinstance(mentions, list):
            raise DataFormatError(f"{path}: record {record.id}: gold answer is not a JSON list")
        wanted += [(m, record.label, record.id) for m in mentions if isinstance(m, str) and m]
    placed: list[tuple[int, int]] = []
    missing = []
    for m, label, rid in sorted(wanted, key=lambda w: -len(w[0])):
        spots = [s for s in _occurrences(sentence.text, m) if (s, s + len(m)) not in placed]
        if not spots:
            missing.append(f"{rid}: {m}")
            continue
        free = [s for s in spots if all(s + len(m) <= a or s >= b for a, b in placed)]
        start = (free or spots)[0]
        placed.append((start, start + len(m)))
        sentence.entities.append(Entity(m, label, start, start + len(m)))
    return missing


def _occurrences(text: str, mention: str) -> list[int]:
    out, i = [], text.find(mention)
    while i >= 0:
        end = i + len(mention)
        if (i == 0 or text[i - 1] == " ") and (end == len(text) or text[end] == " "):
            out.append(i)
        i = text.find(mention, i + 1)
    return out
