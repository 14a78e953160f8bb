"""Teacher answers -> filtered, negative-sampled training conversations (the reference's format).

One conversation per passage: every entity type the teacher found, with its mentions, plus
``negatives`` types absent from the passage, drawn with probability proportional to their frequency
in the whole output and answered ``[]`` (the paper's best-scoring negative sampling). All strings of
the conversation come from ``universalner.prompts``, so ``universalner.tune`` reads it back exactly.
"""

from __future__ import annotations

import ast
import bisect
import itertools
import json
import os
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..prompts import ACK, format_answer, matching_bracket, passage_turn, question_turn
from .passages import Passage

ELSE_TYPES = {
    "none", "na", "n/a", "null", "nil", "misc", "miscellaneous", "else", "other", "others", "unknown",
    "not applicable", "no type", "no entity",
}  # fmt: skip

DROP_REASONS = ("empty", "else_type", "not_in_passage", "non_english", "duplicate")


# --- parsing the teacher's answer ----------------------------------------------------------------
_FENCE = re.compile(r"```[\w-]*\n?")
_PAIR = re.compile(
    r"""[(\[]\s*(?P<q1>["'])(?P<m>.*?)(?P=q1)\s*,\s*(?P<q2>["'])(?P<t>.*?)(?P=q2)\s*[)\]]""", re.S
)
_ENTITY_KEYS = ("entity", "name", "text", "mention", "span")
_TYPE_KEYS = ("type", "entity_type", "label", "category", "definition")


def _pairs_from_value(value: Any) -> list[tuple[str, str]] | None:
    if not isinstance(value, (list, tuple)):
        return None
    out = []
    for item in value:
        if isinstance(item, (list, tuple)) and len(item) >= 2 and all(isinstance(x, str) for x in item[:2]):
            out.append((item[0], item[1]))
        elif isinstance(item, dict):
            m = next((item[k] for k in _ENTITY_KEYS if isinstance(item.get(k), str)), None)
            t = next((item[k] for k in _TYPE_KEYS if isinstance(item.get(k), str)), None)
            if m is None or t is None:
                return None
            out.append((m, t))
        else:
            return None
    return out


def _first_list(s: str) -> str | None:
    """The first balanced ``[...]`` in ``s`` (quotes respected), or None."""
    for m in re.finditer(r"\[", s):
        end = matching_bracket(s, m.start())
        if end is not None:
            return s[m.start() : end + 1]
    return None


def parse_tuples(output: str) -> list[tuple[str, str]] | None:
    """(mention, type) pairs from a teacher's answer, or None when it does not parse.

    Accepts Python or JSON lists of tuples/lists/dicts, inside code fences or after prose, one tuple
    per line, and lists cut off at the length limit (the complete tuples are kept). ``[]`` parses to
    no entities; prose with no tuple in it does not parse.
    """
    if not isinstance(output, str):
        return None
    text = _FENCE.sub("", output)
    chunk = _first_list(text)
    if chunk is not None:
        for loader in (json.loads, ast.literal_eval):
            try:
                pairs = _pairs_from_value(loader(chunk))
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if pairs is not None:
                return pairs
    pairs = [(m.group("m"), m.group("t")) for m in _PAIR.finditer(text)]
    if pairs:
        return [(_unescape(a), _unescape(b)) for a, b in pairs]
    return None


def _unescape(s: str) -> str:
    return s.replace("\\'", "'").replace('\\"', '"')


# --- filtering -----------------------------------------------------------------------------------
def normalize_type(t: str, mode: str = "type") -> str:
    """Whitespace squashed, surrounding punctuation dropped; type names lower-cased (definitions kept)."""
    t = " ".join(t.split()).strip(" .;:,\"'`")
    return t.lower() if mode == "type" else t


def is_else_type(t: str) -> bool:
    key = t.lower().strip(" .;:!?\"'()[]")
    return key in ELSE_TYPES or key.replace("/", "") in ELSE_TYPES


def _script(c: str) -> str | None:
    """ "latin", "greek", "other" for a letter (compatibility forms folded: µ is Greek, º Latin), None
    for anything else: digits, punctuation, symbols and modifier letters (the ʻokina of Hawaiʻi)."""
    if not c.isalpha() or unicodedata.category(c) == "Lm":
        return None
    folded = unicodedata.normalize("NFKC", c)
    name = unicodedata.name(folded[0], "") if folded else ""
    if "LATIN" in name:
        return "latin"
    if "GREEK" in name:
        return "greek"
    return "other"


def is_english(mention: str) -> bool:
    """Written in the Latin script, as English names are, with at most a few Greek letters.

    Accents are fine ("Zürich"), and so are the Greek letters of scientific names ("NF-κB", "TNFα",
    "β-catenin", "α-synuclein", "5 µg"): up to three, and no more than the Latin letters and digits
    beside them. A mention with a letter of any other script ("北京", "Москва") goes, and so does
    one written in Greek ("Αθήνα").
    """
    latin = greek = digits = 0
    for c in mention:
        script = _script(c)
        if script == "other":
            return False
        latin += script == "latin"
        greek += script == "greek"
        digits += c.isdigit()
    return greek == 0 or (greek <= 3 and greek <= latin + digits)


@dataclass
class Annotation:
    """A passage's filtered entities: type -> mentions, in the teacher's order."""

    passage: Passage
    types: dict[str, list[str]]


@dataclass
class BuildReport:
    passages: int = 0
    unanswered: int = 0
    rejected: int = 0
    unparseable: int = 0
    without_entities: int = 0
    conversations: int = 0
    entities: int = 0
    questions: int = 0
    negatives: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    type_counts: Counter = field(default_factory=Counter)


def filter_pairs(
    passage: str,
    pairs: Iterable[tuple[str, str]],
    mode: str,
    dropped: dict[str, int],
    keep_non_english: bool = False,
) -> dict[str, list[str]]:
    """Keep the pairs a student can learn from; count every drop by reason."""
    out: dict[str, list[str]] = {}
    for mention, typ in pairs:
        mention, typ = mention.strip(), normalize_type(typ, mode)
        if not mention or not typ:
            reason = "empty"
        elif is_else_type(typ):
            reason = "else_type"
        elif mention not in passage:
            reason = "not_in_passage"
        elif not keep_non_english and not is_english(mention):
            reason = "non_english"
        elif mention in out.get(typ, ()):
            reason = "duplicate"
        else:
            out.setdefault(typ, []).append(mention)
            continue
        dropped[reason] += 1
    return out


def annotate(
    passages: Sequence[Passage],
    records: dict[str, dict[str, Any]],
    keys: dict[str, str],
    mode: str = "type",
    keep_non_english: bool = False,
    report: BuildReport | None = None,
) -> list[Annotation]:
    """Parse and filter the journal's answer for every passage (``keys``: passage id -> journal key)."""
    report = report if report is not None else BuildReport()
    out = []
    for p in passages:
        report.passages += 1
        rec = records.get(keys[p.id])
        if rec is None:
            report.unanswered += 1
            continue
        if "error" in rec:
            report.rejected += 1
            continue
        pairs = parse_tuples(rec.get("answer", ""))
        if pairs is None:
            report.unparseable += 1
            continue
        types = filter_pairs(p.text, pairs, mode, report.dropped, keep_non_english)
        if not types:
            report.without_entities += 1
            continue
        out.append(Annotation(p, types))
    return out


# --- negatives and conversations -----------------------------------------------------------------
class NegativeSampler:
    """Draws types absent from a passage with probability proportional to their frequency."""

    def __init__(self, type_counts: Counter):
        self.counts = dict(type_counts)
        self.types = sorted(type_counts, key=lambda t: (-type_counts[t], t))
        self.cum = list(itertools.accumulate(type_counts[t] for t in self.types))

    def sample(self, rng: random.Random, present: set[str], k: int) -> list[str]:
        if k <= 0 or not self.types:
            return []
        chosen: list[str] = []
        total = self.cum[-1]
        for _ in range(20 * k + 50):  # rejection sampling: cheap while absent types hold most mass
            if len(chosen) == k:
                return chosen
            t = self.types[bisect.bisect_right(self.cum, rng.random() * total)]
            if t not in present and t not in chosen:
                chosen.append(t)
        rest = [
            t for t in self.types if t not in present and t not in chosen
        ]  # exact, for the rare hard case
        while rest and len(chosen) < k:
            t = rng.choices(rest, weights=[self.counts[t] for t in rest])[0]
            chosen.append(t)
            rest.remove(t)
        return chosen


def conversations(
    annotations: Sequence[Annotation],
    negatives: int = 2,
    seed: int = 0,
    report: BuildReport | None = None,
    ask: Callable[[str, random.Random], str] | None = None,
) -> list[dict[str, Any]]:
    """The reference's training records: ``{"id", "conversations": [{"from", "value"}, ...]}``.

    Each passage's randomness comes from ``(seed, passage id)``, so a record does not change when
    other passages are added or answered in another order. ``ask(type, rng)`` may phrase a question
    otherwise than by the type's name (a definition, a variant spelling), for positives and
    negatives alike; its own random stream leaves the negatives and the order unchanged.
    """
    report = report if report is not None else BuildReport()
    counts: Counter = Counter()
    for a in annotations:
        for t, mentions in a.types.items():
            counts[t] += len(mentions)
    report.type_counts = counts
    sampler = NegativeSampler(counts)
    out = []
    for a in annotations:
        rng = random.Random(f"{seed}:{a.passage.id}")
        queries = [(t, m) for t, m in a.types.items()]
        negs = sampler.sample(rng, set(a.types), negatives)
        queries += [(t, []) for t in negs]
        rng.shuffle(queries)
        ask_rng = random.Random(f"{seed}:ask:{a.passage.id}")
        turns = [{"from": "human", "value": passage_turn(a.passage.text)}, {"from": "gpt", "value": ACK}]
        for t, mentions in queries:
            asked = ask(t, ask_rng) if ask else t
            turns.append({"from": "human", "value": question_turn(asked)})
            turns.append({"from": "gpt", "value": format_answer(mentions)})
        out.append({"id": a.passage.id, "conversations": turns})
        report.entities += sum(len(m) for m in a.types.values())
        report.questions += len(queries)
        report.negatives += len(negs)
    report.conversations = len(out)
    return out


def write_json(data: Any, path: str | os.PathLike) -> None:
    """Write atomically: a reader never sees half a file, a crash never leaves one."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, path)
