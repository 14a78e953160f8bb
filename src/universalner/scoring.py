"""Confidence of each answered mention, from the probabilities of the tokens that spell it."""

from __future__ import annotations

import json
import math
import re

from .engines.base import Generation

_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'')


def mention_scores(gen: Generation) -> dict[str, float]:
    """mention -> geometric-mean probability of the tokens covering it and its quotes.

    The quotes count because the decision to open and close a mention is where a model shows
    doubt. Engines without log-probabilities give every mention 1.0.
    """
    if not gen.token_spans:
        return {}
    start = gen.text.find("[")
    out: dict[str, float] = {}
    for m in _JSON_STRING.finditer(gen.text, max(start, 0)):
        raw = m.group(1) if m.group(1) is not None else m.group(2)
        try:
            mention = json.loads(f'"{raw}"') if m.group(1) is not None else raw
        except json.JSONDecodeError:
            mention = raw
        mention = mention.strip()
        lps = [lp for s, e, lp in gen.token_spans if s < m.end() and e > m.start()]
        if mention and lps:
            score = math.exp(sum(lps) / len(lps))
            out[mention] = max(out.get(mention, 0.0), score)
    return out
