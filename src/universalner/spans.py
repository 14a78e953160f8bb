"""Answer strings -> character offsets in the passage.

The student answers with strings, not offsets. Each string is looked up in the passage:
all occurrences, whole words first, then case-insensitive, then inside words; whitespace in
the answer matches any run of whitespace in the passage. A string found nowhere is dropped
and counted, never turned into an invented offset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .entity import Entity


@dataclass
class SpanStats:
    """How many answered strings were placed in the passage and how many were not."""

    found: int = 0
    dropped: int = 0

    def add(self, other: SpanStats) -> None:
        self.found += other.found
        self.dropped += other.dropped


def _pattern(mention: str) -> str:
    return r"\s+".join(re.escape(part) for part in mention.split())


def _whole_word(text: str, start: int, end: int) -> bool:
    before_ok = start == 0 or not (text[start - 1].isalnum() and text[start].isalnum())
    after_ok = end >= len(text) or not (text[end].isalnum() and text[end - 1].isalnum())
    return before_ok and after_ok


def find_mention(text: str, mention: str) -> list[tuple[int, int]]:
    """Every (start, end) where ``mention`` occurs in ``text``, by the most exact rule that finds any."""
    mention = mention.strip()
    if not mention or not text:
        return []
    pat = _pattern(mention)
    for flags in (0, re.IGNORECASE):
        rx = re.compile(pat, flags)
        hits = [(m.start(), m.end()) for m in rx.finditer(text)]
        whole = [h for h in hits if _whole_word(text, *h)]
        if whole:
            return whole
    for flags in (0, re.IGNORECASE):
        hits = [(m.start(), m.end()) for m in re.finditer(pat, text, flags)]
        if hits:
            return hits
    return []


def _inside(span: tuple[int, int], others: Iterable[tuple[int, int]]) -> bool:
    s, e = span
    return any(os <= s and e <= oe and (os, oe) != (s, e) for os, oe in others)


def locate(
    text: str,
    label: str,
    mentions: Iterable[str],
    scores: Mapping[str, float] | None = None,
    offset: int = 0,
    stats: SpanStats | None = None,
) -> list[Entity]:
    """Entities for one label's answered strings; ``offset`` shifts them into a larger document.

    An occurrence that lies inside an occurrence of a longer answered string of the same label
    is the same mention seen twice and is dropped, unless the shorter string never occurs on its
    own (then it is a nested entity and kept).
    """
    stats = stats if stats is not None else SpanStats()
    scores = scores or {}
    placed: dict[str, list[tuple[int, int]]] = {}
    for mention in dict.fromkeys(m.strip() for m in mentions if m and m.strip()):
        hits = find_mention(text, mention)
        if hits:
            stats.found += 1
            placed[mention] = hits
        else:
            stats.dropped += 1
    all_spans = [h for hits in placed.values() for h in hits]
    out: dict[tuple[int, int], Entity] = {}
    for mention, hits in placed.items():
        alone = [h for h in hits if not _inside(h, all_spans)]
        for s, e in alone or hits:
            score = float(scores.get(mention, 1.0))
            prev = out.get((s, e))
            if prev is None or score > prev.score:
                out[(s, e)] = Entity(text[s:e], label, s + offset, e + offset, score)
    return sorted(out.values(), key=lambda x: (x.start, -x.end, x.label))
