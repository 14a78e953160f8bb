"""engine="llama.cpp" on the real test GGUF: template from the file, shared passages, constraint, errors.

What needs no llama-cpp-python runs everywhere, CI included: the GGUF header reader and
``GGUFTokenizer`` (the chat layout read from the file), the GBNF grammar the openai engine sends
(checked against the library's own constraint through llguidance, a real grammar engine), and the
errors for bad files and options. The engine itself needs the optional extra, which compiles
llama.cpp for about 15 minutes, so CI leaves it out (docs/engines.md); those tests take the
``llama_cpp`` fixture and skip without it. ``benchmarks/run_llamacpp_tests.sh`` installs it and runs all:
the engine's own (prefix sharing, the grammar, errors) and the default student's features on it
(``list_threshold``, the LoRA student merged into a q8_0 GGUF, its answers against transformers', threads).
"""

from __future__ import annotations

import dataclasses
import json
import struct
import sys

import pytest

from universalner import UniversalNER
from universalner.constraints import DONE, START, PassageGrammar, TokenIndex, passage_grammar
from universalner.engines.base import Request
from universalner.engines.llamacpp import LlamaCppEngine
from universalner.prompts import Conversation, get_template, parse_answer
from universalner.weights.errors import ModelNotFoundError
from universalner.weights.gguf import GGUFError, GGUFTokenizer, find_gguf, read_gguf_metadata


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip(
        "llama_cpp",
        reason="engine='llama.cpp' needs the optional extra: pip install 'universalner[llamacpp]' "
        "(compiles llama.cpp for about 15 minutes, so CI leaves it out); benchmarks/run_llamacpp_tests.sh "
        "installs it and runs these tests",
        exc_type=ImportError,
    )


TEXTS = [
    "Barack Obama met Emmanuel Macron in Paris on Tuesday.",
    "Apple hired Tim Cook in California.",
]
LABELS = ["person", "location", "organization"]
# one answered question first, so that the untuned model answers the next in the same JSON form
SHOT = ("person", '["Barack Obama", "Emmanuel Macron"]')


@pytest.fixture(scope="module")
def lcpp(llama_cpp, test_gguf):
    return UniversalNER.from_pretrained(test_gguf, engine="llama.cpp", max_new_tokens=12, constrained=False)


def few_shot(model: UniversalNER, text: str, label: str) -> Request:
    conv = Conversation(text, [SHOT[0], label], [SHOT[1], None])
    return Request(model.template.render(conv), text)


# ---------------------------------------------------------------- without llama-cpp-python
def test_gguf_tokenizer_renders_the_files_chat_template_as_transformers(test_gguf, ner):
    hf = ner.engine.tokenizer
    tok = GGUFTokenizer.from_file(test_gguf)
    assert (tok.eos_token, tok.bos_token) == (hf.eos_token, hf.bos_token) == ("<|im_end|>", "<|im_start|>")
    conv = Conversation(TEXTS[0], [SHOT[0], "location"], [SHOT[1], None], dataset="conll2003")
    chat = get_template("chat", tok)  # the chat layout from the file's header alone
    assert chat.prompt(TEXTS[0], "person") == ner.prompt(TEXTS[0], "person")
    assert chat.render(conv) == ner.template.render(conv)
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    for gen in (True, False):
        assert tok.apply_chat_template(msgs, add_generation_prompt=gen) == hf.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=gen
        )
    with pytest.raises(ValueError, match="renders text only"):
        tok.apply_chat_template(msgs, tokenize=True)
    with pytest.raises(ValueError, match="no chat template"):
        GGUFTokenizer(None, "</s>").apply_chat_template(msgs)
    # token ids out of range name no token
    assert GGUFTokenizer.from_metadata({"tokenizer.ggml.eos_token_id": 7}).eos_token is None
    meta = read_gguf_metadata(test_gguf, ["general.architecture", "tokenizer.ggml.tokens"])
    assert set(meta) == {"general.architecture", "tokenizer.ggml.tokens"}
    assert meta["general.architecture"] == "llama" and len(meta["tokenizer.ggml.tokens"]) == len(hf)
    assert meta["tokenizer.ggml.tokens"][hf.eos_token_id] == "<|im_end|>"


def test_bad_gguf_files_and_locations(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + bytes(64))
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_gguf_metadata(bad)
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 1, 0, 0))
    with pytest.raises(GGUFError, match="GGUF version 1 is not supported"):
        read_gguf_metadata(bad)
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + struct.pack("<Q", 1000) + b"key")  # cut short
    with pytest.raises(GGUFError, match="could not read"):
        read_gguf_metadata(bad)
    with pytest.raises(ModelNotFoundError, match="loads local .gguf files only"):
        find_gguf("someone/model-GGUF")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="is not one"):
        find_gguf(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="holds 0 .gguf files"):
        find_gguf(tmp_path / "empty")
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError, match=r"holds 2 .gguf files.*bad.gguf, other.gguf"):
        find_gguf(tmp_path)
    assert find_gguf(tmp_path / "empty" / ".." / "other.gguf").name == "other.gguf"
    with pytest.raises(TypeError, match="must be a .gguf file"):
        find_gguf("  ")


def test_options_are_checked_before_llama_cpp_is_needed(test_gguf, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if the extra were not installed
    with pytest.raises(ValueError, match="already quantised"):
        LlamaCppEngine.load(test_gguf, quantization="4bit")
    with pytest.raises(ValueError, match="convert_lora_to_gguf"):
        LlamaCppEngine.load(test_gguf, adapter=tmp_path)
    for load in (
        lambda: LlamaCppEngine.load(test_gguf),
        lambda: UniversalNER.from_pretrained(test_gguf, engine="llama.cpp"),
    ):
        with pytest.raises(ImportError, match=r"pip install 'universalner\[llamacpp\]'"):
            load()


# passages with what the mention rules are about: word starts and ends, punctuation that may or may
# not end a mention, symbols that may start one, quotes, backslashes, control and non-ASCII characters
GRAMMAR_PASSAGES = [
    TEXTS[0],
    'He said "no" to the $5 deal (BBC), e.g. 3.5% -- São Paulo; café: x,y',
    "A\\B C\tD ~tilde #tag @home +1 'quoted' end.",
]


def _candidates(passage: str) -> list[str]:
    """Answers to try: every substring as a one-mention list, pairs of them, and broken lists."""
    subs = sorted(
        {passage[i:j] for i in range(len(passage)) for j in range(i + 1, min(len(passage), i + 30) + 1)}
    )
    out = [json.dumps([m], ensure_ascii=False) for m in subs if '"' not in m and "\\" not in m]
    words = passage.split()
    out += [json.dumps([a, b], ensure_ascii=False) for a in words[:6] for b in words[-4:]]
    out += ["[]", " []", "  []", "[ ]", "[]\n", '["', '[""]', '["x"', "no list"]
    out += (
        [f' ["{w}"]' for w in words]
        + [f'["{w}",  "{w}"]' for w in words[:3]]
        + [f"['{w}']" for w in words[:3]]
    )
    return out


def _constraint_accepts(grammar: PassageGrammar, answer: str) -> bool:
    """The library's answer language, byte by byte (no repeat rule: that one acts on tokens)."""
    st = (START, (), 0)
    for b in answer.encode("utf-8"):
        st = grammar.moves(st).get(b)
        if st is None:
            return False
    return st[0] == DONE


def test_passage_grammar_is_the_constraints_language(test_model_dir):
    """The GBNF grammar (what the openai engine sends with constrained=True) accepts exactly the answers
    the library's own constraint accepts, through llguidance's GBNF reading and Earley parser."""
    import llguidance.hf  # the dev extra
    from completions_server import gbnf_spec
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(test_model_dir))
    lt = llguidance.hf.from_tokenizer(hf)
    index = TokenIndex([b"x"], [0])  # the byte automaton needs no vocabulary
    for passage in GRAMMAR_PASSAGES:
        own = PassageGrammar(index, passage)
        spec = gbnf_spec(passage_grammar(passage))
        verdicts = []
        for answer in _candidates(passage):
            matcher = llguidance.LLMatcher(lt, spec, log_level=0)
            assert not matcher.is_error(), matcher.get_error()
            ok = (
                matcher.consume_tokens(hf(answer, add_special_tokens=False)["input_ids"])
                and matcher.is_accepting()
            )
            want = _constraint_accepts(own, answer)
            assert ok == want, (passage, answer, matcher.get_error()[:300])
            verdicts.append(want)
        assert 10 < sum(verdicts) < len(verdicts) - 10, (passage, sum(verdicts), len(verdicts))
    # nothing copyable: only the empty list, with or without its leading space
    assert passage_grammar('"" \\').splitlines() == ['root ::= " "? "[" "]"']


# ---------------------------------------------------------------- the engine (llama-cpp-python)
def test_template_and_tokens_come_from_the_gguf(lcpp, ner):
    assert lcpp.template.layout == "chat"
    assert isinstance(lcpp.engine.tokenizer, GGUFTokenizer)
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


def test_passage_grammar_is_enforced_by_llama_cpp(llama_cpp, test_gguf, lcpp):
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


def test_clear_errors_once_loaded(llama_cpp, tmp_path):
    """The same file errors through the engine (with the extra installed, they come before llama.cpp)."""
    with pytest.raises(ModelNotFoundError, match="loads local .gguf files only"):
        UniversalNER.from_pretrained("someone/model-GGUF", engine="llama.cpp")
    (tmp_path / "bad.gguf").write_bytes(b"GGML" + bytes(64))
    with pytest.raises(GGUFError, match="not a GGUF file"):
        LlamaCppEngine.load(tmp_path / "bad.gguf")


def test_too_long_a_prompt_names_the_limit(lcpp):
    with pytest.raises(ValueError, match="n_ctx"):
        lcpp.engine.generate([Request("word " * 2000, "word")], max_new_tokens=8)


# ---------------------------------------------------------------- the default student's features on llama.cpp
def test_list_threshold_opens_lists_greedy_keeps_closed(lcpp, ner):
    """``list_threshold`` on engine='llama.cpp': the same rule as the transformers engine's
    (``constraints.list_penalty``; its exact statement is tested in test_list_opening.py)."""
    from universalner.confidence import list_probability

    reqs = [Request(lcpp.prompt(t, label), t, group=i) for i, t in enumerate(TEXTS) for label in LABELS]
    greedy = lcpp.engine.generate(reqs, max_new_tokens=16, constrained=True)
    low = lcpp.engine.generate(reqs, max_new_tokens=16, constrained=True, list_threshold=0.02)
    empty = [json.loads(g.text) == [] for g in greedy]
    opened = [i for i, g in enumerate(low) if empty[i] and json.loads(g.text)]
    assert opened, "a list threshold of 0.02 opened no list greedy kept closed"
    for i in opened:  # the model's own probability of opening, not the penalised one: below one half
        assert list_probability(low[i]) < 0.5
    for i, g in enumerate(low):  # a lower threshold never closes a list greedy opened
        assert empty[i] or json.loads(g.text)
    again = lcpp.engine.generate(reqs, max_new_tokens=16, constrained=True, list_threshold=0.5)
    assert [g.text for g in again] == [g.text for g in greedy]  # 0.5 is plain greedy
    # the same decision as transformers on the same Q4_1 weights (one question: transformers is slow)
    (ref,) = ner.engine.generate([reqs[opened[0]]], max_new_tokens=16, constrained=True, list_threshold=0.02)
    assert ref.text == low[opened[0]].text


@pytest.fixture(scope="module")
def merged_student(llama_cpp):
    """The shipped LoRA student through engine='llama.cpp': merged into its GGUF base as q8_0."""
    return UniversalNER.from_pretrained(engine="llama.cpp")


def test_the_lora_student_runs_through_its_merged_gguf(merged_student):
    from universalner.weights.shipped import DEFAULT_STUDENT, STUDENTS_DIR

    record = json.loads((STUDENTS_DIR / DEFAULT_STUDENT / "universalner.json").read_text())
    assert merged_student.engine.name == "llama.cpp"
    assert str(merged_student.engine.path).endswith(".gguf") and "q8_0" in str(merged_student.engine.path)
    # the student's record travels with it: template, threshold and list threshold
    assert merged_student.template.layout == record["template"]
    assert merged_student.threshold == record["threshold"]
    assert merged_student.list_threshold == record.get("list_threshold", 0.5)
    ents = merged_student.extract("Barack Obama met Emmanuel Macron in Paris.", ["person", "location"])
    assert {(e.label, e.text) for e in ents} == {
        ("person", "Barack Obama"), ("person", "Emmanuel Macron"), ("location", "Paris"),
    }  # fmt: skip


def test_q8_0_answers_agree_with_the_transformers_student(merged_student):
    """q8_0 rounds the merged weights: the answers of the README sentence and a few others must be the
    float32 student's (mentions and types; scores within 0.05)."""
    ref = UniversalNER.from_pretrained(device="cpu", dtype="float32")
    cases = [
        ("Barack Obama met Emmanuel Macron in Paris.", ["person", "location"]),
        ("Tim Cook presented the iPhone 15 at Apple Park in Cupertino.", ["person", "location"]),
        ("Patients with type 2 diabetes were treated with metformin.", ["disease", "drug"]),
    ]
    for text, labels in cases:
        got = {(e.label, e.text): e.score for e in merged_student.extract(text, labels, threshold=0.0)}
        want = {(e.label, e.text): e.score for e in ref.extract(text, labels, threshold=0.0)}
        assert got.keys() == want.keys(), (text, got, want)
        for k in want:
            assert abs(got[k] - want[k]) < 0.05, (text, k, got[k], want[k])


def test_threads_sharing_one_llama_cpp_model_get_the_sequential_answers(lcpp):
    """One llama.cpp context: calls from several threads take turns, each whole (a lock)."""
    import threading

    jobs = [([TEXTS[0]], ["city"]), ([TEXTS[1]], ["person", "organization"]), (TEXTS, ["location"])]

    def answers(texts, labels):
        return [
            (p.raw, [(e.text, e.start, e.score) for e in p.entities]) for p in lcpp.predict(texts, labels)
        ]

    want = [answers(*j) for j in jobs]
    got: list = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def work(k):
        start.wait()
        got[k] = answers(*jobs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want
