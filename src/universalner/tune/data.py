"""Training conversations: the reference's conversation JSON and supervised NER sets.

The conversation JSON is what ``universalner.distill`` writes and what the public Pile-NER files
hold: a JSON list (or JSON lines) of ``{"id", "conversations": [{"from": "human"|"gpt", "value"}]}``
whose first exchange shows the passage (``Text: ...`` or ``Dataset: X \\n Text: ...``) and is
acknowledged, then alternates ``What describes X in the text?`` and the answer. The human turns are
parsed back into a :class:`~universalner.prompts.Conversation` with patterns built from the very
functions of ``prompts.py`` that write them, so a record is accepted only if the template module
renders it back byte for byte.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..prompts import Conversation, passage_turn, question_turn


class DataError(ValueError):
    """Training data that cannot be used; the message names the file and the record or line."""


@dataclass
class Example:
    """One training conversation and where it came from (for messages about it)."""

    id: str
    conversation: Conversation
    source: str


HUMAN_ROLES = ("human", "user")
GPT_ROLES = ("gpt", "assistant")

_MARK_TEXT, _MARK_NAME = "\x00", "\x01"


def _pattern(rendered: str, groups: dict[str, str]) -> re.Pattern[str]:
    """A regex matching what a prompts.py function renders, with its arguments as groups."""
    out = re.escape(rendered)
    for mark, name in groups.items():
        out = out.replace(re.escape(mark), f"(?P<{name}>.*)", 1)
    return re.compile(out, re.S)


_PASSAGE = _pattern(passage_turn(_MARK_TEXT), {_MARK_TEXT: "text"})
_DATASET_PASSAGE = _pattern(passage_turn(_MARK_TEXT, _MARK_NAME), {_MARK_NAME: "dataset", _MARK_TEXT: "text"})
_QUESTION = _pattern(question_turn(_MARK_TEXT), {_MARK_TEXT: "label"})


def parse_passage_turn(value: str) -> tuple[str, str | None] | None:
    """(text, dataset) of a first user turn, or None when it is not one."""
    m = _DATASET_PASSAGE.fullmatch(value)
    if m and passage_turn(m["text"], m["dataset"]) == value:
        return m["text"], m["dataset"]
    m = _PASSAGE.fullmatch(value)
    if m and passage_turn(m["text"]) == value:
        return m["text"], None
    return None


def parse_question_turn(value: str) -> str | None:
    """The entity type (or definition) asked in a question turn, or None when it is not one."""
    m = _QUESTION.fullmatch(value)
    return m["label"] if m and question_turn(m["label"]) == value else None


# --- reading JSON with line numbers ------------------------------------------------------------
class _Lines:
    """Character offset -> 1-based line number."""

    def __init__(self, text: str):
        self.starts = [m.end() for m in re.finditer("\n", text)]

    def __call__(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos) + 1


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: training data file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; give a conversation JSON file") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def iter_json_records(path: str | os.PathLike) -> Iterator[tuple[int, int, Any]]:
    """(record index, line number, value) for a JSON list file or a JSON lines file."""
    path = Path(path)
    text = _read_text(path)
    line_of = _Lines(text)
    dec = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()
    if pos == len(text):
        raise DataError(f"{path}: the file is empty")

    def bad(at: int, what: str) -> DataError:
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        return DataError(f"{path}:{line_of(at)}:{col}: {what}")

    if text[pos] != "[":  # JSON lines
        index = 0
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}:{e.colno}: not valid JSON ({e.msg}); expected a JSON list of "
                    "conversation records or one record per line"
                ) from None
            yield index, lineno, value
            index += 1
        return
    pos = ws.match(text, pos + 1).end()
    index = 0
    if pos < len(text) and text[pos] == "]":
        pos += 1
    else:
        while True:
            try:
                value, end = dec.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise bad(e.pos, f"not valid JSON ({e.msg})") from None
            yield index, line_of(pos), value
            index += 1
            pos = ws.match(text, end).end()
            if pos < len(text) and text[pos] == ",":
                pos = ws.match(text, pos + 1).end()
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            raise bad(pos, "not valid JSON (expected ',' or ']' after a record)")
    if ws.match(text, pos).end() != len(text):
        raise bad(ws.match(text, pos).end(), "not valid JSON (extra data after the closing ']')")


# --- one record -> one Conversation --------------------------------------------------------------
def parse_record(record: Any, where: str) -> Conversation:
    """A conversation record as a Conversation; ``where`` names file, record and line in errors."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object, not {type(record).__name__}")
    turns = record.get("conversations")
    if not isinstance(turns, list):
        raise DataError(f"{where}: the record has no 'conversations' list")
    roles, values = [], []
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise DataError(f"{where}: conversations[{k}] must be an object with a string 'value'")
        role = turn.get("from", turn.get("role"))
        if role in HUMAN_ROLES:
            roles.append("human")
        elif role in GPT_ROLES:
            roles.append("gpt")
        else:
            raise DataError(f"{where}: conversations[{k}] has 'from': {role!r}; expected 'human' or 'gpt'")
        values.append(turn["value"])
    if len(turns) < 2:
        raise DataError(f"{where}: a conversation needs the passage turn and its acknowledgement")
    for k, role in enumerate(roles):
        want = "human" if k % 2 == 0 else "gpt"
        if role != want:
            raise DataError(
                f"{where}: conversations[{k}] is from {role!r} but turns must alternate human, gpt, "
                "starting with the human passage turn"
            )
    if len(turns) % 2:
        raise DataError(f"{where}: the last question (conversations[{len(turns) - 1}]) has no answer")
    passage = parse_passage_turn(values[0])
    if passage is None:
        raise DataError(
            f"{where}: conversations[0] must be {passage_turn('...')!r} or "
            f"{passage_turn('...', 'NAME')!r}; got {values[0][:60]!r}"
        )
    text, dataset = passage
    questions, answers = [], []
    for k in range(2, len(values), 2):
        label = parse_question_turn(values[k])
        if label is None:
            raise DataError(
                f"{where}: conversations[{k}] must be {question_turn('TYPE')!r}; got {values[k][:60]!r}"
            )
        questions.append(label)
        answers.append(values[k + 1])
    return Conversation(text, questions, answers, dataset)


def read_conversations(path: str | os.PathLike) -> list[Example]:
    """Every record of a conversation JSON file; a bad record stops with file, record and line."""
    path = Path(path)
    out: list[Example] = []
    for index, line, record in iter_json_records(path):
        rid = record.get("id") if isinstance(record, dict) else None
        name = f"{path}:{line}: record {index}" + (f" (id {rid!r})" if rid is not None else "")
        out.append(Example(str(rid if rid is not None else index), parse_record(record, name), str(path)))
    return out


# --- shaping the training set ------------------------------------------------------------------------
def shuffle_queries(examples: Iterable[Example], seed: int) -> list[Example]:
    """Each conversation's question/answer pairs in a seeded random order (the paper shuffles them).

    Each record gets its own generator from (seed, file name, id), so the order does not depend on
    which other files were given or how their paths were spelt, and a resumed run sees exactly the
    same conversations.
    """
    out = []
    for ex in examples:
        conv = ex.conversation
        pairs = list(zip(conv.questions, conv.answers, strict=True))
        random.Random(f"{seed}|{Path(ex.source).name}|{ex.id}").shuffle(pairs)
        shuffled = Conversation(conv.text, [q for q, _ in pairs], [a for _, a in pairs], conv.dataset)
        out.append(Example(ex.id, shuffled, ex.source))
    return out


def parse_supervised_arg(value: str) -> tuple[str, Path]:
    """``NAME=PATH`` from the command line."""
    name, sep, path = value.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise DataError(f"--supervised takes NAME=PATH (e.g. crossner_ai=data/ai/train.txt), not {value!r}")
    return name.strip(), Path(path.strip())


def load_examples(
    data: Sequence[str | os.PathLike],
    supervised: Sequence[tuple[str, str | os.PathLike]] = (),
    seed: int = 0,
    label_map: str | os.PathLike | None = None,
) -> list[Example]:
    """All training conversations: conversation JSON files, then supervised sets, query order shuffled.

    Conversations without a single question carry no loss and are left out.
    """
    examples: list[Example] = []
    for path in data:
        examples.extend(read_conversations(path))
    for name, path in supervised:
        examples.extend(supervised_examples(name, path, label_map))
    return [ex for ex in shuffle_queries(examples, seed) if ex.conversation.questions]


def supervised_examples(
    name: str, path: str | os.PathLike, label_map: str | os.PathLike | None = None
) -> list[Example]:
    """A BIO/CoNLL column file as dataset-specific conversations (``Dataset: NAME`` first turn).

    Every entity type of the data set is asked for every sentence, in natural language through
    the built-in label maps of ``universalner.corpora.labels`` (``label_map``: a JSON file that
    overrides them, as ``--labels-map`` in ``evaluate``). A ``.json``/``.jsonl`` file in the
    reference's evaluation format is regrouped into one conversation per sentence.
    """
    from ..corpora import read_conll
    from ..corpora.conversations import load_supervised, sentences_to_conversations
    from ..corpora.labels import label_map_for, read_label_maps

    path = Path(path)
    try:
        if path.suffix.lower() in (".json", ".jsonl"):
            records = load_supervised(path, name, seed=None)
        else:
            sentences = read_conll(path)
            override = read_label_maps(label_map) if label_map else None
            tags = (e.label for s in sentences for e in s.entities)
            lmap = label_map_for(name, tags, override)
            records = sentences_to_conversations(sentences, name, lmap, dataset_specific=True, seed=None)
    except DataError:
        raise
    except (OSError, ValueError) as e:
        raise DataError(f"--supervised {name}={path}: {e}") from None
    return [
        Example(r["id"], parse_record(r, f"{path}: sentence {i}"), str(path)) for i, r in enumerate(records)
    ]
