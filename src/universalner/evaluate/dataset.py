"""One benchmark data set, ready to score: sentences, the types asked, and the records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..corpora import Record, Sentence, read_conll, read_reference_json
from ..corpora.conversations import eval_records
from ..corpora.labels import LabelMap, asked_labels, label_map_for
from ..entity import Entity

JSON_SUFFIXES = (".json", ".jsonl")


@dataclass
class EvalSet:
    """Sentences whose entities carry the asked labels, and one record per (sentence, type)."""

    name: str
    path: Path
    sentences: list[Sentence]
    labels: list[str]
    records: list[Record]
    label_map: LabelMap = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)  # JSON gold strings not found in their text
    # the types asked of each sentence when they differ between sentences (a dev split asking each
    # passage its own types and some absent ones); None: every sentence is asked ``labels``
    asked: list[list[str]] | None = None

    def labels_of(self, i: int) -> list[str]:
        """The types asked of sentence ``i``."""
        return self.labels if self.asked is None else self.asked[i]

    def head(self, n: int | None) -> EvalSet:
        """The first ``n`` sentences and their records (all when ``n`` is None)."""
        if n is None or n >= len(self.sentences):
            return self
        return replace(
            self,
            sentences=self.sentences[:n],
            records=[r for r in self.records if r.sentence < n],
            asked=None if self.asked is None else self.asked[:n],
        )

    def gold_spans(self) -> list[list[tuple[int, int, str]]]:
        return [[(e.start, e.end, e.label) for e in s.entities] for s in self.sentences]


def _relabel(sentence: Sentence, label_map: Mapping[str, str | None]) -> Sentence:
    ents = [
        Entity(e.text, label_map[e.label], e.start, e.end)
        for e in sentence.entities
        if label_map.get(e.label)
    ]
    return replace(sentence, entities=ents)


def load_eval_set(
    path: str | Path, name: str, override: Mapping | None = None, tag_column: str = "auto"
) -> EvalSet:
    """A CoNLL/BIO file (tags mapped by ``labels``) or a reference-format JSON file (used as is)."""
    path = Path(path)
    if path.suffix.lower() in JSON_SUFFIXES:
        sentences, records, unplaced = read_reference_json(path)
        labels = list(dict.fromkeys(r.label for r in records))
        asked: list[list[str]] = [[] for _ in sentences]
        for r in records:
            if r.label not in asked[r.sentence]:
                asked[r.sentence].append(r.label)
        same = all(a == labels for a in asked)
        return EvalSet(name, path, sentences, labels, records, {x: x for x in labels}, unplaced,
                       None if same else asked)  # fmt: skip
    raw = read_conll(path, tag_column)
    label_map = label_map_for(name, (e.label for s in raw for e in s.entities), override)
    labels = asked_labels(label_map)
    if not labels:
        raise ValueError(f"data set {name!r} ({path}): the label map asks no entity type")
    sentences = [_relabel(s, label_map) for s in raw]
    return EvalSet(name, path, sentences, labels, eval_records(sentences, labels, name), label_map)
