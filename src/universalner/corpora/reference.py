"""The reference's conversation JSON: one record per (sentence, type), four turns each.

``read_reference_json`` regroups the records into sentences with gold mentions placed on the text,
so the official metric and strict span F1 can both be computed from one file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..entity import Entity
from ..prompts import passage_turn, question_turn
from .conll import DataFormatError, Sentence


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
