"""Many types per passage on the real test model: the fast path (shared prefix, batched branches,
drafts, early stop) gives exactly the plain path's greedy answers, constrained answers always parse
and come from the passage, scores are the renormalised token probabilities, threshold= filters."""

from __future__ import annotations

import json

import pytest

from universalner import UniversalNER
from universalner.engines.base import Request
from universalner.engines.hf import EngineStats, HFEngine

# types of different token lengths, so branches have suffixes of different lengths
LABELS = ["person", "programming language", "musical artist", "country"]


def crossner_sentences(shared_data, domains=("ai", "music", "politics")) -> list[str]:
    out = []
    for domain in domains:
        cur = []
        for line in (shared_data / "crossner" / domain / "test.txt").read_text().splitlines():
            if not line.strip():
                if cur:
                    break
                continue
            cur.append(line.split("\t")[0])
        out.append(" ".join(cur))
    return out


@pytest.fixture(scope="module")
def engines(ner):
    """Two more engines on the shared model: plain (the reference) and a fast one with ``max_batch=3``.

    With the requests below (one passage asked 4 types, the other 2) the fast path's chunks are
    ``[A A A] [A B B]``: passage A's branches are split across two chunks, so its prefix computed for
    the first is reused by the second, and the second chunk holds two passages with prefixes of
    different lengths. ``chunks`` records each chunk's (request index) list as the engine ran it."""
    e = ner.engine
    fast = HFEngine(e.model, e.tokenizer, e.device, max_batch=3, path="fast")
    fast.chunks = []
    decode = fast._decode_chunk

    def recording(chunk, *args, **kw):
        fast.chunks.append([i for _, i in chunk])
        return decode(chunk, *args, **kw)

    fast._decode_chunk = recording
    return HFEngine(e.model, e.tokenizer, e.device, max_batch=16, path="plain"), fast


@pytest.fixture(scope="module")
def requests_(ner, shared_data) -> list[Request]:
    # the shorter passage first: chunks are filled in order of prefix length
    short, longer = sorted(crossner_sentences(shared_data, ("ai", "music")), key=len)
    asked = [(short, LABELS), (longer, LABELS[1::2])]
    return [
        Request(ner.prompt(t, label), t, group=g) for g, (t, labels) in enumerate(asked) for label in labels
    ]


def assert_split_and_shared(fast: HFEngine, requests: list[Request]) -> None:
    """The run took the paths under test: a passage across chunks, and passages sharing a chunk."""
    groups = [[requests[i].group for i in chunk] for chunk in fast.chunks]
    assert groups == [[0, 0, 0], [0, 1, 1]], fast.chunks


def test_fast_equals_plain_unconstrained(engines, requests_):
    plain, fast = engines
    plain.stats, fast.stats, fast.chunks = EngineStats(), EngineStats(), []
    want = plain.generate(requests_, max_new_tokens=8)
    got = fast.generate(requests_, max_new_tokens=8)
    assert_split_and_shared(fast, requests_)
    assert [g.text for g in got] == [w.text for w in want]
    assert any(w.text and not w.text.startswith("[") for w in want), "the untuned model writes prose here"
    assert len({w.text for w in want}) > 1, "different questions get different answers"
    for g, w in zip(got, want, strict=True):
        assert g.prompt_tokens == w.prompt_tokens
        assert [s[:2] for s in g.token_spans] == [s[:2] for s in w.token_spans]
        assert all(abs(a[2] - b[2]) < 1e-3 for a, b in zip(g.token_spans, w.token_spans, strict=True))
    # each passage is computed once (the system text once for all), not once per type
    assert fast.stats.prefill_tokens < 0.6 * plain.stats.prefill_tokens


def test_fast_equals_plain_constrained_and_answers_are_valid(engines, requests_):
    plain, fast = engines
    want = plain.generate(requests_, max_new_tokens=20, constrained=True)
    fast.chunks = []
    got = fast.generate(requests_, max_new_tokens=20, constrained=True)
    assert_split_and_shared(fast, requests_)
    assert [g.text for g in got] == [w.text for w in want]
    assert any(json.loads(g.text) for g in got), [g.text for g in got]  # not only empty answers compared
    for g, w in zip(got, want, strict=True):
        # renormalised over the allowed tokens; the two paths compute them differently, same numbers
        assert all(abs(a[2] - b[2]) < 1e-3 for a, b in zip(g.token_spans, w.token_spans, strict=True))
    tight = fast.generate(requests_[:3], max_new_tokens=3, constrained=True)
    for g in tight:  # even a 3-token budget ends in a closed list
        assert json.loads(g.text) == [] and len(g.token_spans) <= 3


TEXTS = ["Barack Obama met Emmanuel Macron in Paris on Tuesday.", "Apple hired Tim Cook in California."]


def test_scores_are_the_models_renormalised_probabilities_and_threshold_filters(ner):
    import torch

    from universalner.constraints import PassageGrammar

    small = UniversalNER(ner.engine, max_new_tokens=32)
    assert small.constrained  # the default
    preds = small.predict(TEXTS, ["city"])
    ents = [e for p in preds for e in p.entities]
    assert len(ents) >= 2, f"expected mentions, got {[p.raw for p in preds]}"
    for p in preds:
        for e in p.entities:
            assert 0.0 < e.score < 1.0
    assert small.stats.dropped == 0, "constrained mentions are always found in the passage"
    scores = sorted(e.score for e in ents)
    assert scores[0] < scores[-1], "a real confidence, not a constant"
    cut = (scores[0] + scores[-1]) / 2
    kept = [e for k in small.extract_batch(TEXTS, ["city"], threshold=cut) for e in k]
    want = [e for e in ents if e.score >= cut]
    assert [(e.text, e.start) for e in kept] == [(e.text, e.start) for e in want]
    assert [e.score for e in kept] == pytest.approx([e.score for e in want], abs=1e-5)
    assert 0 < len(kept) < len(ents)
    assert small.extract(TEXTS[1], ["city"], threshold=1.0) == []

    # independent check: one teacher-forced forward over prompt + answer, softmax over the allowed tokens
    eng = ner.engine
    prompt = small.prompt(TEXTS[1], "city")
    (gen,) = eng.generate([Request(prompt, TEXTS[1])], max_new_tokens=32, constrained=True)
    branch = PassageGrammar(eng.token_index(), TEXTS[1]).branch()
    pieces = eng.token_index().pieces
    ids: list[int] = []
    for start, end, _ in gen.token_spans:  # recover the answer's token ids from its spans
        want = gen.text[start:end].encode()
        tid = next(t for t in branch.allowed().ids if pieces[t] == want)
        ids.append(tid)
        branch.advance(tid)
    p_ids = eng.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = eng.model(torch.tensor([p_ids + ids])).logits[0, len(p_ids) - 1 : -1].float()
    branch = PassageGrammar(eng.token_index(), TEXTS[1]).branch()
    for k, tid in enumerate(ids):
        allowed = branch.allowed(32 - k - 1).ids
        lp = torch.log_softmax(logits[k, allowed], -1)[allowed.index(tid)].item()
        assert abs(lp - gen.token_spans[k][2]) < 1e-3, k
        branch.advance(tid)
    free = small.predict(TEXTS[1:], ["city"], constrained=False)[0]  # the per-call override
    assert free.raw["city"] != preds[1].raw["city"]


def test_paths_are_selectable_and_bad_options_fail_clearly(ner):
    e = ner.engine
    assert e.path == "fast"
    with pytest.raises(ValueError, match="path must be one of"):
        HFEngine(e.model, e.tokenizer, path="quick")
    with pytest.raises(ValueError, match="max_new_tokens"):
        e.generate([Request("Hi", "Hi")], max_new_tokens=0)
    with pytest.raises(TypeError, match="Request"):
        e.generate(["a prompt"])  # type: ignore[list-item]
    assert e.generate([]) == []
    one = HFEngine(e.model, e.tokenizer, path="plain").generate([Request("Hello", "Hello")], max_new_tokens=2)
    two = e.generate([Request("Hello", "Hello")], max_new_tokens=2)
    assert one[0].text == two[0].text  # a one-token prompt: nothing to share, still the same answer
