"""Sentences with gold mentions -> the reference's conversation records.

Two shapes, both ``{"id", "conversations": [{"from": "human"|"gpt", "value": ...}, ...]}``:

* evaluation records (``eval_records``/``records_to_reference``): one per sentence *and* type,
  four turns, as in the reference's ``src/eval/test_data`` files;
* training conversations (``sentences_to_conversations``): one per sentence, asking every type of
  the data set in turn (absent types answered ``[]``), in the supervised "dataset-specific" form
  ``Dataset: {name} \\n Text: {text}``. ``tune --supervised NAME=PATH`` uses ``load_supervised``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..prompts import ACK, format_answer, passage_turn, question_turn
from .conll import Sentence, read_conll
from .labels import asked_labels, label_map_for
from .reference import Record, read_reference_json


def conversation_turns(text: str, qa: Sequence[tuple[str, str]], dataset: str | None) -> list[dict[str, str]]:
    turns = [{"from": "human", "value": passage_turn(text, dataset)}, {"from": "gpt", "value": ACK}]
    for label, answer in qa:
        turns += [{"from": "human", "value": question_turn(label)}, {"from": "gpt", "value": answer}]
    return turns


def mentions_by_label(sentence: Sentence, label_map: Mapping[str, str | None] | None = None) -> dict:
    """label -> mention strings in text order (tags mapped to ``None`` dropped)."""
    out: dict[str, list[str]] = {}
    for e in sorted(sentence.entities, key=lambda e: (e.start, e.end)):
        label = label_map.get(e.label, e.label) if label_map is not None else e.label
        if label:
            out.setdefault(label, []).append(e.text)
    return out


def sentences_to_conversations(
    sentences: Sequence[Sentence],
    dataset_name: str,
    label_map: Mapping[str, str | None] | None = None,
    dataset_specific: bool = True,
    seed: int | None = 0,
    ask: Callable[[str, random.Random], str] | None = None,
) -> list[dict]:
    """One multi-turn training conversation per sentence, every type of the data set asked.

    ``label_map`` maps the sentences' tags to the types asked (default: the built-in map for
    ``dataset_name``, see ``labels``). With ``seed`` set, the question order is shuffled per
    sentence (reproducibly), as in the reference's training data; ``None`` keeps map order.
    ``ask(label, rng)`` may phrase a question otherwise than by the label (a definition, a variant).
    """
    if label_map is None:
        label_map = label_map_for(dataset_name, (e.label for s in sentences for e in s.entities))
    labels = asked_labels(label_map)
    if not labels:
        raise ValueError(f"data set {dataset_name!r}: the label map asks no type")
    rng = random.Random(seed) if seed is not None else None
    ask_rng = random.Random(f"{seed}:ask")
    out = []
    for i, sentence in enumerate(sentences):
        found = mentions_by_label(sentence, label_map)
        order = list(labels)
        if rng is not None:
            rng.shuffle(order)
        qa = [(ask(label, ask_rng) if ask else label, format_answer(found.get(label, []))) for label in order]
        dataset = dataset_name if dataset_specific else None
        out.append(
            {"id": f"{dataset_name}_{i}", "conversations": conversation_turns(sentence.text, qa, dataset)}
        )
    return out


def eval_records(sentences: Sequence[Sentence], labels: Sequence[str], name: str) -> list[Record]:
    """One record per sentence and type, ids ``{name}_{k}`` as in the reference's files.

    The sentences' entities must already carry the asked (natural-language) labels.
    """
    records = []
    for i, sentence in enumerate(sentences):
        found = mentions_by_label(sentence)
        for label in labels:
            records.append(Record(f"{name}_{len(records)}", i, label, format_answer(found.get(label, []))))
    return records


def records_to_reference(
    records: Sequence[Record], sentences: Sequence[Sentence], dataset: str | None = None
) -> list[dict]:
    """Evaluation records in the reference's JSON layout (four turns each)."""
    return [
        {
            "id": r.id,
            "conversations": conversation_turns(sentences[r.sentence].text, [(r.label, r.gold)], dataset),
        }
        for r in records
    ]


def load_supervised(
    path: str | Path,
    name: str,
    label_map: Mapping[str, str | None] | None = None,
    dataset_specific: bool = True,
    seed: int | None = 0,
    tag_column: str = "auto",
) -> list[dict]:
    """Training conversations from a CoNLL/BIO file or a reference-format JSON file.

    A JSON file's questions are already in natural language; its passages are regrouped into one
    conversation per sentence asking every type found in the file.
    """
    path = Path(path)
    if path.suffix.lower() in (".json", ".jsonl"):
        sentences, records, _ = read_reference_json(path)
        label_map = {r.label: r.label for r in records}
    else:
        sentences = read_conll(path, tag_column)
    return sentences_to_conversations(sentences, name, label_map, dataset_specific, seed)
