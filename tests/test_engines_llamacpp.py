"""engine="llama.cpp" on the real test GGUF: template from the file, shared passages, constraint, errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

llama_cpp = pytest.importorskip(
    "llama_cpp",
    reason="engine='llama.cpp' needs the optional extra: pip install 'universalner[llamacpp]' "
    "(compiles llama.cpp for many minutes, so CI leaves it out); benchmarks/run_llamacpp_tests.sh "
    "installs it and runs these tests",
    exc_type=ImportError,
)

from universalner import UniversalNER  # noqa: E402
from universalner.engines.base import Request  # noqa: E402
from universalner.engines.llamacpp import GGUFError, LlamaCppEngine, passage_grammar  # noqa: E402
from universalner.loading import ModelNotFoundError  # noqa: E402
from universalner.prompts import Conversation, parse_answer  # noqa: E402

TEXTS = [
    "Barack Obama met Emmanuel Macron in Paris on Tuesday.",
    "Apple hired Tim Cook in California.",
]
LABELS = ["person", "location", "organization"]
# one answered question first, so that the untuned model answers the next in the same JSON form
SHOT = ("person", '["Barack Obama", "Emmanuel Macron"]')


@pytest.fixture(scope="module")
def lcpp(test_gguf):
    return UniversalNER.from_pretrained(test_gguf, engine="llama.cpp", max_new_tokens=12, constrained=False)


def few_shot(model: UniversalNER, text: str, label: str) -> Request:
    conv = Conversation(text, [SHOT[0], label], [SHOT[1], None])
    return Request(model.template.render(conv), text)


def test_template_and_tokens_come_from_the_gguf(lcpp, ner):
    assert lcpp.template.layout == "chat"
    prompt = lcpp.prompt(TEXTS[0], "person")
    assert prompt == ner.prompt(TEXTS[0], "person")  # the file's chat template, rendered as transformers does
    ids = ner.engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert lcpp.engine.prompt_tokens(prompt) == ids  # special tokens parsed, no BOS for this model
    spans = lcpp.engine.token_offsets(TEXTS[1])
    assert spans[0][0] == 0 and spans[-1][1] == len(TEXTS[1])
    assert "".join(TEXTS[1][s:e] for s, e in spans) == TEXTS[1]


def _common(seqs: list[list[int]]) -> int:
    n = min(map(len, seqs)) - 1  # every question keeps one token of its own
    while any(s[:n] != seqs[0][:n] for s in seqs):
        n -= 1
    return n


def test_passages_share_their_prefix_and_batching_changes_nothing(lcpp):
    engine = lcpp.engine
    reqs = [Request(lcpp.prompt(t, label), t, group=g) for g, t in enumerate(TEXTS) for label in LABELS]
    engine.stats = type(engine.stats)()
    together = engine.generate(reqs, max_new_tokens=10)
    stats = dataclasses.replace(engine.stats)
    k = len(LABELS)
    alone = [
        g for i in range(len(TEXTS)) for g in engine.generate(reqs[i * k : (i + 1) * k], max_new_tokens=10)
    ]
    assert [(g.text, g.token_spans) for g in together] == [(g.text, g.token_spans) for g in alone]
    # each passage was evaluated once: its other questions only paid for their own tokens
    ids = [engine.prompt_tokens(r.prompt) for r in reqs]
    per_passage = [_common(ids[i * k : (i + 1) * k]) for i in range(len(TEXTS))]
    # the system text before the passages: computed once for both passages
    template = _common([ids[0][: per_passage[0] + 1], ids[k][: per_passage[1] + 1]])
    assert template >= 20
    shared = sum(n * (k - 1) for n in per_passage) + template
    assert stats.shared_tokens == shared
    upper = sum(map(len, ids)) - shared + sum(len(g.token_spans) for g in together)
    assert upper - len(reqs) <= stats.tokens <= upper
    assert stats.decode_calls <= 2 + 10  # prefixes, suffixes, then one batch per step for all six


def test_constrained_answers_copy_the_passage_and_agree_with_transformers(lcpp, ner):
    asks = [(TEXTS[0], "location"), (TEXTS[1], "person"), (TEXTS[1], "organization")]
    reqs = [few_shot(lcpp, t, label) for t, label in asks]
    got = lcpp.engine.generate(reqs, max_new_tokens=16, constrained=True)
    for g, (text, _) in zip(got, asks, strict=True):
        mentions = json.loads(g.text)  # a complete JSON list, never cut off
        assert all(isinstance(m, str) and m in text for m in mentions)
        assert g.token_spans and all(lp <= 0 for _, _, lp in g.token_spans)
    assert json.loads(got[0].text)  # the shot made it answer with mentions
    # the same language and greedy choice as the transformers engine (Q4_1 weights in both; one
    # question only: transformers is ten times slower here)
    (ref,) = ner.engine.generate(reqs[:1], max_new_tokens=16, constrained=True)
    assert got[0].text == ref.text
    ents = lcpp.extract(TEXTS[0], ["city"], constrained=True)
    assert all(TEXTS[0][e.start : e.end] == e.text and 0 < e.score <= 1 for e in ents)


def test_passage_grammar_is_enforced_by_llama_cpp(test_gguf, lcpp):
    """The GBNF form of the answer language (for servers) through llama.cpp's own grammar engine."""
    text = TEXTS[0]
    grammar = llama_cpp.LlamaGrammar.from_string(passage_grammar(text), verbose=False)
    llm = llama_cpp.Llama(str(test_gguf), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False)
    prompt = few_shot(lcpp, text, "location").prompt
    answer = llm.create_completion(prompt, max_tokens=16, temperature=0, grammar=grammar)["choices"][0][
        "text"
    ]
    # no repeat rule and no length budget in a grammar: the list may be cut off, never malformed
    assert answer.lstrip().startswith('["')
    assert parse_answer(answer) and all(m in text for m in parse_answer(answer))
    assert passage_grammar('"" \\').startswith('root ::= " "? "[" "]"')  # nothing copyable: only []


def test_clear_errors(tmp_path, test_gguf):
    with pytest.raises(ModelNotFoundError, match="loads local .gguf files only"):
        UniversalNER.from_pretrained("someone/model-GGUF", engine="llama.cpp")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="is not one"):
        LlamaCppEngine.load(tmp_path / "notes.txt")
    (tmp_path / "bad.gguf").write_bytes(b"GGML" + bytes(64))
    with pytest.raises(GGUFError, match="not a GGUF file"):
        LlamaCppEngine.load(tmp_path / "bad.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="holds 0 .gguf files"):
        LlamaCppEngine.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="already quantised"):
        LlamaCppEngine.load(test_gguf, quantization="4bit")
    with pytest.raises(ValueError, match="convert_lora_to_gguf"):
        LlamaCppEngine.load(test_gguf, adapter=tmp_path)


def test_too_long_a_prompt_names_the_limit(lcpp):
    with pytest.raises(ValueError, match="n_ctx"):
        lcpp.engine.generate([Request("word " * 2000, "word")], max_new_tokens=8)
