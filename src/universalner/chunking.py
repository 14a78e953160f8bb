"""Token windows for long texts, so nothing is ever truncated silently.

A passage longer than the window is cut into overlapping windows of at most ``max_tokens``
tokens, each ending at a sentence end (or else whitespace) where one is near, and entities found
in each window are shifted back to document offsets and merged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from .entity import Entity

TokenOffsets = Callable[[str], Sequence[tuple[int, int]]]
_SENTENCE_END = re.compile(r"[.!?。？！][\"')\]]*\s+|\n\s*\n")


def windows(
    text: str, token_offsets: TokenOffsets, max_tokens: int, overlap: int = 32
) -> list[tuple[int, int]]:
    """Character ranges (start, end) that cover ``text``, each at most ``max_tokens`` tokens long."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be at least 8, not {max_tokens}")
    overlap = max(0, min(overlap, max_tokens // 2))
    offsets = [o for o in token_offsets(text) if o[1] > o[0]]
    if len(offsets) <= max_tokens:
        return [(0, len(text))]
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(offsets):
        j = min(i + max_tokens, len(offsets))
        start = offsets[i][0]
        if j == len(offsets):
            out.append((start, len(text)))
            break
        # prefer a sentence end in the last quarter of the window, then any whitespace
        lo = offsets[i + max(1, (3 * max_tokens) // 4)][0]
        hi = offsets[j][0]
        cut = _last_boundary(text, lo, hi)
        k = j
        if cut is not None:
            k = next((t for t in range(i + 1, j + 1) if offsets[t][0] >= cut), j)
        end = offsets[k - 1][1]
        out.append((start, end))
        i = max(i + 1, k - overlap)
    return out


def _last_boundary(text: str, lo: int, hi: int) -> int | None:
    best = None
    for m in _SENTENCE_END.finditer(text, lo, hi):
        best = m.end()
    if best is None:
        ws = text.rfind(" ", lo, hi)
        best = ws + 1 if ws > lo else None
    return best


def merge(entities: Iterable[Entity]) -> list[Entity]:
    """Entities from overlapping windows, one per (start, end, label), highest score kept."""
    best: dict[tuple[int, int, str], Entity] = {}
    for e in entities:
        key = (e.start, e.end, e.label)
        if key not in best or e.score > best[key].score:
            best[key] = e
    return sorted(best.values(), key=lambda x: (x.start, -x.end, x.label))
