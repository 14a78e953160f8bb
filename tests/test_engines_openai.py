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
from universalner.engines.base import Request
from universalner.engines.openai import OpenAIEngine, ServerError, conversation_messages

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
