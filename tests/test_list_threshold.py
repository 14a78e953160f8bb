"""list_threshold: constrained answers open a list when the model gives that at least t; scores unchanged.

On the untuned test model, whose constrained answers are mostly ``[]``: a low list_threshold opens
lists greedy would not, the fast and plain paths still agree token for token, and a mention's score
is the model's own probability (the penalty moves the decision only).
"""

from __future__ import annotations

import pytest

from universalner import UniversalNER
from universalner.confidence import list_probability
from universalner.constraints import PassageGrammar, list_penalty
from universalner.engines.base import Request
from universalner.engines.hf import HFEngine

pytestmark = pytest.mark.slow

TEXTS = [
    "Barack Obama met Emmanuel Macron in Paris .",
    "Patients with type 2 diabetes were treated with metformin in Boston .",
]
LABELS = ["person", "location", "disease", "drug"]


@pytest.fixture(scope="module")
def requests_(ner) -> list[Request]:
    return [Request(ner.prompt(t, lab), t, group=i) for i, t in enumerate(TEXTS) for lab in LABELS]


@pytest.fixture(scope="module")
def paths(ner):
    e = ner.engine
    return HFEngine(e.model, e.tokenizer, e.device, path="plain"), HFEngine(e.model, e.tokenizer, e.device)


def test_penalty_arithmetic():
    assert list_penalty(0.5) == 0.0
    assert list_penalty(0.2) == pytest.approx(1.3862944)
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="list_threshold"):
            list_penalty(bad)


def test_lower_threshold_opens_lists_fast_equals_plain(paths, requests_):
    plain, fast = paths
    greedy = fast.generate(requests_, max_new_tokens=24, constrained=True)
    low_fast = fast.generate(requests_, max_new_tokens=24, constrained=True, list_threshold=0.02)
    low_plain = plain.generate(requests_, max_new_tokens=24, constrained=True, list_threshold=0.02)
    assert [g.text for g in low_fast] == [g.text for g in low_plain]
    for a, b in zip(low_fast, low_plain, strict=True):
        assert [s[:2] for s in a.token_spans] == [s[:2] for s in b.token_spans]
        for (_, _, x), (_, _, y) in zip(a.token_spans, b.token_spans, strict=True):
            assert x == pytest.approx(y, abs=2e-3)
    empty = [g.text.strip() == "[]" for g in greedy]
    opened = [i for i, lo in enumerate(low_fast) if empty[i] and lo.text.strip() != "[]"]
    assert opened, "a list threshold of 0.02 opened no list greedy kept closed"
    for i in opened:
        # the model's own probability of opening the list, not the penalised one: below one half
        assert list_probability(low_fast[i]) < 0.5
    for i, lo in enumerate(low_fast):  # a lower threshold never closes a list greedy opened
        assert empty[i] or lo.text.strip() != "[]"
    assert (
        fast.generate(requests_, max_new_tokens=24, constrained=True, list_threshold=0.5)[0].text
        == greedy[0].text
    )


def test_empty_positions_before_and_after_the_bracket(ner):
    idx = ner.engine.token_index()
    br = PassageGrammar(idx, TEXTS[0]).branch(1.0)
    ch = br.allowed(20)
    pieces = [idx.pieces[ch.ids[j]] for j in br.empty_positions(ch)]
    assert b"[" in pieces and not any(b'"' in p for p in pieces)
    br.advance(idx.pieces.index(b"["))
    ch = br.allowed(20)
    # after `[`: exactly the allowed tokens that close the list (`]`, `]"`...), found here from the pieces
    want = tuple(j for j, t in enumerate(ch.ids) if idx.pieces[t].startswith(b"]"))
    assert want and br.empty_positions(ch) == want


def test_model_setting_and_errors(ner, test_model_dir):
    assert ner.list_threshold == 0.5
    low = UniversalNER(ner.engine, list_threshold=0.02)
    got = low.extract(TEXTS[1], ["disease", "drug"], threshold=0.0)
    assert got and all(TEXTS[1][e.start : e.end] == e.text for e in got)
    with pytest.raises(ValueError, match="list_threshold"):
        UniversalNER(ner.engine, list_threshold=1.0)


def test_lower_continue_threshold_lists_more_fast_equals_plain(paths, requests_):
    """With lists opened (list_threshold 0.02), a low continue_threshold goes on to mentions greedy did
    not take, the fast and plain paths agree token for token, and no list gets shorter. The untuned
    model gives another mention odds near 1e-5 after its first, hence the tiny threshold."""
    plain, fast = paths
    opts = {"max_new_tokens": 40, "constrained": True, "list_threshold": 0.02}
    base = fast.generate(requests_, **opts)
    more_fast = fast.generate(requests_, **opts, continue_threshold=1e-6)
    more_plain = plain.generate(requests_, **opts, continue_threshold=1e-6)
    assert [g.text for g in more_fast] == [g.text for g in more_plain]
    for a, b in zip(more_fast, more_plain, strict=True):
        assert [s[:2] for s in a.token_spans] == [s[:2] for s in b.token_spans]
        for (_, _, x), (_, _, y) in zip(a.token_spans, b.token_spans, strict=True):
            assert x == pytest.approx(y, abs=2e-3)
    n = [g.text.count('"') // 2 for g in base]
    m = [g.text.count('"') // 2 for g in more_fast]
    assert sum(m) > sum(n), (n, m)
    assert all(b >= a for a, b in zip(n, m, strict=True)), (n, m)
    with pytest.raises(ValueError, match="continue_threshold"):
        UniversalNER(fast, continue_threshold=0.0)
