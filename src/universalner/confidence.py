"""Confidence of each answered mention, from the probabilities of the tokens that spell it."""

from __future__ import annotations

import json
import math
import re

from .engines.base import Generation

_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'')


def list_probability(gen: Generation) -> float:
    """The probability the model gave to answering a non-empty list at all.

    It is the product over the tokens that spell the opening ``[`` and the first quote: where a
    model hesitates between ``[]`` and ``["``. Benchmarks ask every type of a data set for every
    sentence, so most true answers are empty; a mention's own tokens do not say whether the type
    applies, this does.
    """
    start = gen.text.find("[")
    if start < 0 or not gen.token_spans:
        return 1.0
    quote = next((i for i in range(start + 1, len(gen.text)) if gen.text[i] in "\"'"), None)
    if quote is None:
        return 1.0
    lps = [lp for s, e, lp in gen.token_spans if s <= quote and e > start]
    return math.exp(sum(lps)) if lps else 1.0


def mention_scores(gen: Generation) -> dict[str, float]:
    """mention -> P(non-empty list) x geometric-mean probability of the tokens covering it and its quotes.

    The quotes count because the decision to open and close a mention is where a model shows
    doubt; ``list_probability`` adds the decision to answer anything at all. Engines without
    log-probabilities give every mention 1.0.
    """
    if not gen.token_spans:
        return {}
    start = gen.text.find("[")
    opened = list_probability(gen)
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
            score = opened * math.exp(sum(lps) / len(lps))
            out[mention] = max(out.get(mention, 0.0), score)
    return out
