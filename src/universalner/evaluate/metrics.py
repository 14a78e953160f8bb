"""The two scores of the benchmark.

* ``official_*``: the UniversalNER paper's metric (``src/eval/evaluate.py`` of universal-ner),
  reproduced rule for rule so that numbers are comparable with the published ones. It compares
  normalised *strings* per (passage, type) record, not positions: a mention found at the wrong
  place, or found once for two gold occurrences, still counts.
* ``strict_*``: span-level scores on character offsets: a prediction is correct only when its
  start, end and label all equal a gold mention's. The reference cannot compute this.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

_PUNCT = frozenset(string.punctuation)  # ASCII only, as in SQuAD
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# re.match: the list must open the (stripped) answer; non-greedy and without DOTALL, it ends at
# the first "]" on the first line. Anything else is scored as an empty answer.
_LEADING_LIST = re.compile(r"\[(.*?)\]")
_EPS = 1e-10


@dataclass
class PRF:
    """Counts and micro precision/recall/F1; the reference's 1e-10 smoothing keeps 0/0 at 0."""

    correct: int = 0
    predicted: int = 0
    gold: int = 0

    @property
    def precision(self) -> float:
        return self.correct / (self.predicted + _EPS)

    @property
    def recall(self) -> float:
        return self.correct / (self.gold + _EPS)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r + _EPS)

    def add(self, correct: int, predicted: int, gold: int) -> None:
        self.correct += correct
        self.predicted += predicted
        self.gold += gold

    def to_dict(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, **asdict(self)}


@dataclass
class Scores:
    """Micro scores over everything plus the same per entity type."""

    micro: PRF = field(default_factory=PRF)
    per_type: dict[str, PRF] = field(default_factory=dict)

    def add(self, label: str, correct: int, predicted: int, gold: int) -> None:
        self.micro.add(correct, predicted, gold)
        self.per_type.setdefault(label, PRF()).add(correct, predicted, gold)

    @property
    def macro_f1(self) -> float:
        """Unweighted mean of the per-type F1 (types with gold or predictions)."""
        vals = [s.f1 for s in self.per_type.values() if s.gold or s.predicted]
        return sum(vals) / len(vals) if vals else 0.0

    def to_dict(self) -> dict:
        return {
            **self.micro.to_dict(),
            "macro_f1": self.macro_f1,
            "per_type": {k: v.to_dict() for k, v in self.per_type.items()},
        }


# --- (a) the official metric ---------------------------------------------------------------------
def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower-case, drop ASCII punctuation, then a/an/the, squash whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def official_parse(output: str) -> list[Hashable]:
    """The de-duplicated, normalised mentions of one answer, exactly as the reference reads them.

    Only a list at the very start of ``output`` counts, up to its first ``]``. An answer that
    does not parse, or holds anything but strings (or lists of strings, kept as tuples), is ``[]``.
    """
    try:
        m = _LEADING_LIST.match(output)
        items = json.loads(m.group() if m else "[]")
        out: list[Hashable] = []
        for item in items:
            if isinstance(item, (list, tuple)):
                item = tuple(normalize_answer(x) for x in item)
            else:
                item = normalize_answer(item)
            if item not in out:
                out.append(item)
        return out
    except Exception:  # the reference scores any failure as an empty answer, so do we
        return []


def reference_response(output: str) -> str:
    """The reference's post-processing of a generation: text after the last ``ASSISTANT:``, stripped.

    Idempotent, so applying it to answers that were already cleaned changes nothing.
    """
    return output.split("ASSISTANT:")[-1].strip()


def official_counts(prediction: str, gold: str) -> tuple[int, int, int]:
    """(correct, predicted, gold) for one record."""
    golds = official_parse(gold)
    preds = official_parse(prediction)
    return sum(1 for t in preds if t in golds), len(preds), len(golds)


def official_scores(
    predictions: Sequence[str], golds: Sequence[str], labels: Sequence[str] | None = None
) -> Scores:
    """Micro P/R/F1 over records, as the reference's ``NEREvaluator.evaluate`` (plus per type).

    ``predictions`` are used as given; pass them through ``reference_response`` first when
    they are raw generations. ``labels`` (one per record) only adds the per-type breakdown.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold records")
    if labels is not None and len(labels) != len(golds):
        raise ValueError(f"{len(labels)} labels for {len(golds)} gold records")
    scores = Scores()
    for i, (pred, gold) in enumerate(zip(predictions, golds, strict=True)):
        counts = official_counts(pred, gold)
        if labels is None:
            scores.micro.add(*counts)
        else:
            scores.add(labels[i], *counts)
    return scores


# --- (b) strict span-level scores ----------------------------------------------------------------
Span = tuple[int, int, str]  # (start, end, label) in character offsets


def strict_scores(
    predicted: Iterable[Iterable[Span]], gold: Iterable[Iterable[Span]], labels: Sequence[str] = ()
) -> Scores:
    """Exact-match span scores per sentence; duplicate spans in one sentence count once.

    Per-type rows come in the order of ``labels``, then any other label in sorted order.
    """
    scores = Scores(per_type={label: PRF() for label in labels})
    pred_list, gold_list = list(predicted), list(gold)
    if len(pred_list) != len(gold_list):
        raise ValueError(f"predictions for {len(pred_list)} sentences, gold for {len(gold_list)}")
    for p_spans, g_spans in zip(pred_list, gold_list, strict=True):
        p, g = set(map(tuple, p_spans)), set(map(tuple, g_spans))
        n_pred = Counter(s[2] for s in p)
        n_gold = Counter(s[2] for s in g)
        n_ok = Counter(s[2] for s in p & g)
        for label in sorted(n_pred.keys() | n_gold.keys()):
            scores.add(label, n_ok[label], n_pred[label], n_gold[label])
    return scores
