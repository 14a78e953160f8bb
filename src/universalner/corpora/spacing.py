"""Natural spacing for tokenised text: ``children .`` -> ``children.``, ``end - of - life`` -> ``end-of-life``.

Corpora in BIO columns lose the original spacing; users send natural text. ``join_tokens`` rebuilds
a plausible original and returns each token's start offset, so mentions (token spans) are cut from
the rebuilt text with the same offsets and always occur in it.
"""

from __future__ import annotations

from collections.abc import Sequence

_NO_SPACE_BEFORE = set(".,;:!?)]}%…”’") | {"...", "''"}
_NO_SPACE_AFTER = set("([{$£€#“‘") | {"``"}
_JOINERS = set("-/–‐@_")  # glued to both neighbours when those are words: end-of-life, and/or
_CONTRACTIONS = {"s", "t", "m", "d", "ll", "re", "ve", "S", "T", "M", "D", "LL", "RE", "VE"}
_QUOTES = {'"'}


def _wordish(tok: str) -> bool:
    return bool(tok) and tok[0].isalnum() and tok[-1].isalnum()


def join_tokens(tokens: Sequence[str]) -> tuple[str, list[int]]:
    """(text, start offset of each token) with spaces only where English puts them."""
    starts: list[int] = []
    parts: list[str] = []
    pos = 0
    glue_next = False  # no space before the next token
    open_quote = False
    n = len(tokens)
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i else ""
        nxt = tokens[i + 1] if i + 1 < n else ""
        space = i > 0 and not glue_next
        glue_after = False
        if tok in ("'", "’") and _wordish(prev) and nxt in _CONTRACTIONS:
            space, glue_after = False, True  # didn ' t -> didn't, council ' s -> council's
        elif tok in _NO_SPACE_BEFORE:
            space = False
        elif tok in _JOINERS and _wordish(prev) and _wordish(nxt):
            space, glue_after = False, True
        elif tok in _QUOTES:
            if open_quote:
                space = False
            else:
                glue_after = True
            open_quote = not open_quote
        if tok in _NO_SPACE_AFTER:
            glue_after = True
        if space:
            parts.append(" ")
            pos += 1
        starts.append(pos)
        parts.append(tok)
        pos += len(tok)
        glue_next = glue_after
    return "".join(parts), starts
