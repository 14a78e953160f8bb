"""engine="openai" against real HTTP servers on 127.0.0.1 that answer with the real test model.

The server in ``tests/completions_server.py`` runs the transformers engine, so answers through the
server must equal the transformers engine's own: that checks the prompt arrives byte-exact, the
chat fallback rebuilds the same conversation, and logprobs come back as the same scores.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx
import pytest
from completions_server import CompletionsServer

from universalner import UniversalNER
from universalner.constraints import passage_grammar
from universalner.engines.base import Request
from universalner.engines.openai import OpenAIEngine, ServerError, conversation_messages, vllm_grammar_field

TEXTS = ["Barack Obama met Emmanuel Macron in Paris on Tuesday.", "The Nile flows through Egypt."]
LABELS = ["person", "location"]
NEW = 10


@pytest.fixture(scope="module")
def served(ner, test_model_dir):
    with CompletionsServer(ner.engine, "smollm2") as server:
        yield server


@pytest.fixture(scope="module")
def reference(ner):
    """What the transformers engine answers itself."""
    return UniversalNER(ner.engine, max_new_tokens=NEW, constrained=False).predict(
        TEXTS, LABELS, batch_size=2
    )


def _client(served, test_model_dir, **kw):
    engine = OpenAIEngine.load(
        str(test_model_dir), base_url=served.base_url, served_model="smollm2", max_retries=3, **kw
    )
    return UniversalNER(engine, max_new_tokens=NEW, constrained=False)  # this server takes no grammar


def test_completions_are_byte_exact_and_answer_like_transformers(served, test_model_dir, reference, ner):
    client = _client(served, test_model_dir)
    assert client.template.layout == "chat"  # the chat template came from the student's folder
    before = len(served.prompts)
    preds = client.predict(TEXTS, LABELS, batch_size=2)
    sent = served.prompts[before:]
    assert sorted(sent) == sorted(ner.prompt(t, label) for t in TEXTS for label in LABELS)
    assert [p.raw for p in preds] == [p.raw for p in reference]
    for got, ref in zip(preds, reference, strict=True):
        assert [(e.start, e.end, e.label) for e in got.entities] == [
            (e.start, e.end, e.label) for e in ref.entities
        ]
        for e, r in zip(got.entities, ref.entities, strict=True):
            assert e.score == pytest.approx(r.score, abs=1e-5)  # logprobs travelled as scores


def test_chat_fallback_rebuilds_the_same_conversation(ner, test_model_dir, reference):
    with CompletionsServer(ner.engine, "smollm2", completions=False) as server:
        client = _client(server, test_model_dir)
        preds = client.predict(TEXTS[:1], LABELS)
        assert client.engine.using == "chat"
        assert server.hits.get("/v1/chat/completions", 0) == len(LABELS)
        assert sorted(server.prompts[-len(LABELS) :]) == sorted(
            ner.prompt(TEXTS[0], label) for label in LABELS
        )
    assert preds[0].raw == reference[0].raw


def test_messages_read_back_from_a_prompt(ner):
    prompt = ner.template.prompt("Rome is old.", "city", "conll2003")
    msgs = conversation_messages(prompt, "Rome is old.")
    assert msgs[1]["content"] == "Dataset: conll2003 \n Text: Rome is old."
    assert msgs[-1]["content"] == "What describes city in the text?"
    assert (
        ner.template.tokenizer.apply_chat_template(
            [{"role": "system", "content": msgs[0]["content"]}, *msgs[1:]],
            tokenize=False,
            add_generation_prompt=True,
        )
        == prompt
    )
    with pytest.raises(ValueError, match="not a UniNER question"):
        conversation_messages("Tell me a joke.", "Rome is old.")


def test_retries_and_bounded_concurrency(ner, test_model_dir):
    with CompletionsServer(ner.engine, "smollm2", fail_first=2, delay=0.05) as server:
        engine = OpenAIEngine.load(
            str(test_model_dir),
            base_url=server.base_url,
            served_model="smollm2",
            max_retries=3,
            max_concurrency=2,
        )
        prompts = [
            Request(ner.prompt(TEXTS[0], label), TEXTS[0], group=0) for label in ["person", "city", "date"]
        ]
        prompts += [Request(ner.prompt(TEXTS[1], "river"), TEXTS[1], group=1)]
        gens = engine.generate(prompts, max_new_tokens=4)
    assert len(gens) == 4 and all(g.text for g in gens)
    assert server.hits["/v1/completions"] == 4 + 2  # two 503s, each retried
    assert server.max_in_flight == 2
    assert sorted(server.prompts) == sorted(r.prompt for r in prompts)


def test_clear_errors(served, test_model_dir, ner):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerError, match="no OpenAI-compatible server answers"):
        OpenAIEngine.load("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, tokenizer=None)
    with pytest.raises(ServerError, match=r"does not serve 'other'.*smollm2"):
        OpenAIEngine.load("other", base_url=served.base_url, tokenizer=None)
    with pytest.raises(ValueError, match="quantization is chosen by the server"):
        OpenAIEngine.load("smollm2", base_url=served.base_url, quantization="4bit")
    engine = OpenAIEngine.load("smollm2", base_url=served.base_url, tokenizer=test_model_dir, max_retries=0)
    req = Request(ner.prompt(TEXTS[0], "person"), TEXTS[0])
    with pytest.raises(ServerError, match="grammar"):  # this server takes no grammar: say what was sent
        engine.generate([req], max_new_tokens=4, constrained=True)
    for opt in ("list_threshold", "continue_threshold"):  # the server decodes: neither can be moved
        with pytest.raises(ValueError, match="cannot move the list decisions"):
            engine.generate([req], max_new_tokens=4, constrained=True, **{opt: 0.3})


def test_uniner_layout_without_a_tokenizer(served):
    """A hub id the client cannot read: the released models' UniNER layout, stopped at '</s>'."""
    engine = OpenAIEngine.load(
        "Universal-NER/UniNER-7B-type", base_url=served.base_url, served_model="smollm2"
    )
    model = UniversalNER(engine, max_new_tokens=4, constrained=False)
    assert engine.tokenizer is None and model.template.layout == "uniner"
    assert model.prompt("Rome.", "city").endswith("</s>USER: What describes city in the text? ASSISTANT:")
    (pred,) = model.predict(["Rome is old."], ["city"])
    assert isinstance(pred.raw["city"], str) and "</s>" not in pred.raw["city"]


# ---------------------------------------------------------------- constrained=True, the default: grammars
# the untuned model answers [] to "person" and copies mentions for "city" (chat layout); 32 tokens leave
# the local constraint's length budget and repeat rule nothing to cut, so both languages are the same
GTEXTS = [TEXTS[0], "Apple hired Tim Cook in California."]
ASK = ["person", "city"]
GNEW = 32


@pytest.fixture(scope="module")
def constrained_reference(ner):
    """The transformers engine's own constrained answers: (predictions, generations)."""
    model = UniversalNER(ner.engine, max_new_tokens=GNEW)
    reqs = [Request(ner.prompt(t, label), t, group=g) for g, t in enumerate(GTEXTS) for label in ASK]
    return model.predict(GTEXTS, ASK, batch_size=2), ner.engine.generate(
        reqs, max_new_tokens=GNEW, constrained=True
    )


def _grammar_client(server, test_model_dir) -> UniversalNER:
    engine = OpenAIEngine.load(
        str(test_model_dir), base_url=server.base_url, served_model="smollm2", max_retries=0
    )
    client = UniversalNER(engine, max_new_tokens=GNEW)
    assert client.constrained  # the default path, nothing asked for
    return client


def _sent(server, before: int) -> list[tuple[str, object]]:
    return sorted((b["prompt"], b[server.grammar]) for b in server.bodies[before:])


def test_default_constrained_path_on_a_llama_cpp_style_server(ner, test_model_dir, constrained_reference):
    """llama.cpp's servers take the GBNF grammar as ``grammar`` and return log-probabilities over the
    whole vocabulary: same answers as the transformers engine, lower scores (not renormalised)."""
    ref_preds, ref_gens = constrained_reference
    assert any(p.entities for p in ref_preds), [p.raw for p in ref_preds]
    with CompletionsServer(ner.engine, "smollm2", grammar="grammar") as server:
        client = _grammar_client(server, test_model_dir)
        assert client.engine.grammar_field == "grammar"  # no owner named: llama.cpp's field
        preds = client.predict(GTEXTS, ASK, batch_size=2)
        want = sorted((ner.prompt(t, label), passage_grammar(t)) for t in GTEXTS for label in ASK)
        assert _sent(server, 0) == want  # each question carried its passage's grammar
        before = len(server.bodies)
        reqs = [Request(ner.prompt(t, label), t, group=g) for g, t in enumerate(GTEXTS) for label in ASK]
        gens = client.engine.generate(reqs, max_new_tokens=GNEW, constrained=True)
        assert len(server.bodies) == before + len(reqs)
    assert [p.raw for p in preds] == [p.raw for p in ref_preds]  # the grammar held: the same answers
    for got, ref in zip(preds, ref_preds, strict=True):
        assert [(e.text, e.label, e.start, e.end) for e in got.entities] == [
            (e.text, e.label, e.start, e.end) for e in ref.entities
        ]
        for e, r in zip(got.entities, ref.entities, strict=True):
            assert e.score < r.score  # the mass on tokens the grammar forbids is not taken out
    for g, r in zip(gens, ref_gens, strict=True):
        assert g.text == r.text and [s[:2] for s in g.token_spans] == [s[:2] for s in r.token_spans]
        # log p over the whole vocabulary <= log p over the allowed tokens, token by token
        assert all(a[2] <= b[2] + 1e-4 for a, b in zip(g.token_spans, r.token_spans, strict=True))
        assert sum(a[2] for a in g.token_spans) < sum(b[2] for b in r.token_spans) - 1.0


def test_default_constrained_path_on_a_vllm_style_server(ner, test_model_dir, constrained_reference):
    """vLLM takes the grammar as ``structured_outputs`` (>= 0.11) or ``guided_grammar`` (older), picked
    from its ``/version``, and masks the logits before its log-probabilities: renormalised over the
    allowed tokens as on the local engines, so the scores are the same."""
    ref_preds, _ = constrained_reference
    with CompletionsServer(
        ner.engine, "smollm2", grammar="structured_outputs", owner="vllm", version="0.11.2"
    ) as server:
        client = _grammar_client(server, test_model_dir)
        assert client.engine.grammar_field == "structured_outputs"
        preds = client.predict(GTEXTS, ASK, batch_size=2)
        want = sorted(
            (ner.prompt(t, label), {"grammar": passage_grammar(t)}) for t in GTEXTS for label in ASK
        )
        assert _sent(server, 0) == want
    assert [p.raw for p in preds] == [p.raw for p in ref_preds]
    for got, ref in zip(preds, ref_preds, strict=True):
        assert [(e.text, e.start, e.end) for e in got.entities] == [
            (e.text, e.start, e.end) for e in ref.entities
        ]
        assert [e.score for e in got.entities] == pytest.approx([e.score for e in ref.entities], abs=1e-4)
    with CompletionsServer(
        ner.engine, "smollm2", grammar="guided_grammar", owner="vllm", version="0.10.1"
    ) as server:
        client = _grammar_client(server, test_model_dir)
        assert client.engine.grammar_field == "guided_grammar"
        (pred,) = client.predict(GTEXTS[1:], ["city"])
        assert _sent(server, 0) == [(ner.prompt(GTEXTS[1], "city"), passage_grammar(GTEXTS[1]))]
    assert pred.raw == {"city": ref_preds[1].raw["city"]}


def test_vllm_grammar_field_follows_the_version():
    assert vllm_grammar_field("0.10.2") == vllm_grammar_field("0.6.3.post1") == "guided_grammar"
    assert vllm_grammar_field("0.11.0") == vllm_grammar_field("1.2.0rc1") == "structured_outputs"
    assert vllm_grammar_field(None) == vllm_grammar_field("dev") == "structured_outputs"  # unknown: recent


def test_grammar_in_a_field_the_server_does_not_take(ner, test_model_dir):
    with CompletionsServer(ner.engine, "smollm2", grammar="grammar") as server:
        engine = OpenAIEngine.load(
            str(test_model_dir), base_url=server.base_url, served_model="smollm2", max_retries=0,
            grammar_field="structured_outputs",
        )  # fmt: skip
        req = Request(ner.prompt(GTEXTS[1], "city"), GTEXTS[1])
        with pytest.raises(ServerError, match=r"400.*'structured_outputs'.*grammar_field="):
            engine.generate([req], max_new_tokens=4, constrained=True)


# ---------------------------------------------------------------- llama.cpp's own server, when installed
@pytest.fixture(scope="module")
def llama_server(test_gguf, tmp_path_factory):
    pytest.importorskip(
        "llama_cpp.server.app",
        reason="llama.cpp's server needs pip install 'llama-cpp-python[server]' (see benchmarks/run_llamacpp_tests.sh)",
        exc_type=ImportError,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(test_gguf), "--model_alias", "smollm2"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--logits_all", "true"]
    cmd += ["--n_threads", "1", "--n_threads_batch", "1", "--verbose", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_llama_cpp_server_with_grammar_and_logprobs(llama_server, test_gguf):
    from universalner.prompts import Conversation

    client = UniversalNER.from_pretrained(
        test_gguf, engine="openai", base_url=llama_server, max_new_tokens=16
    )
    assert client.engine.model == "smollm2" and client.template.layout == "chat"  # the server's only model
    text = TEXTS[0]
    conv = Conversation(text, ["person", "location"], ['["Barack Obama", "Emmanuel Macron"]', None])
    req = Request(client.template.render(conv), text)
    (got,) = client.engine.generate([req], max_new_tokens=16, constrained=True)
    mentions = json.loads(got.text)
    assert mentions and all(m in text for m in mentions)  # the GBNF grammar held on the server
    assert got.token_spans and all(lp <= 0 for _, _, lp in got.token_spans)  # logprobs came back
    client.max_new_tokens = 8
    (pred,) = client.predict([text], ["person"], constrained=False)
    assert pred.raw["person"] and "<|im_end|>" not in pred.raw["person"]
