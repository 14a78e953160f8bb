"""Grouped key/value heads read in place (``universalner.attention``): the CPU default, same answers."""

from __future__ import annotations

import pytest

from universalner.attention import NAME, use_grouped_sdpa
from universalner.engines.base import Request

pytestmark = pytest.mark.slow

TEXTS = ["Barack Obama met Emmanuel Macron in Paris .", "Metformin treats type 2 diabetes in Boston ."]
LABELS = ["person", "location", "disease"]


def test_cpu_models_load_with_grouped_attention_and_answer_the_same(ner):
    model = ner.engine.model
    assert model.config._attn_implementation == NAME  # SmolLM2: 9 query heads over 3 key/value heads
    reqs = [Request(ner.prompt(t, lab), t, group=i) for i, t in enumerate(TEXTS) for lab in LABELS]
    opts = {"max_new_tokens": 24, "constrained": True, "list_threshold": 0.05}
    grouped = ner.engine.generate(reqs, **opts)
    try:
        model.set_attn_implementation("sdpa")  # transformers' own: K/V heads copied per query head
        copied = ner.engine.generate(reqs, **opts)
    finally:
        assert use_grouped_sdpa(model)
    assert [g.text for g in grouped] == [g.text for g in copied]
    assert any(g.text.strip() != "[]" for g in grouped)
    for a, b in zip(grouped, copied, strict=True):
        for (_, _, x), (_, _, y) in zip(a.token_spans, b.token_spans, strict=True):
            assert x == pytest.approx(y, abs=1e-4)
