"""BOS: every engine and the tuning collator give the model the sequence its tokenizer builds by default.

The test model's own tokenizer adds nothing, so a tokenizer that adds a BOS is made from it with a
BOS post-processor (``tokenizers`` TemplateProcessing), the way LLaMA's puts ``<s>`` in front. Its
BOS is ``<|im_start|>``, which the test model's chat template also writes itself: the chat layout is
then the case of a template that carries its own start token, which must not get a second one.
"""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from universalner.engines.base import Request
from universalner.engines.hf import HFEngine
from universalner.prompts import Conversation, get_template
from universalner.tokens import prefix_text, prompt_ids, special_prefix, with_prefix
from universalner.tune.collate import IGNORE, Encoder, label_by_offsets, label_by_pieces

TEXT = "Barack Obama met Emmanuel Macron in Paris on Tuesday."
TEXT2 = "The Nile flows through Egypt and Sudan."
LABELS = ["person", "location"]
CONV = Conversation(
    TEXT, ["person", "location", "date"], ['["Barack Obama", "Emmanuel Macron"]', '["Paris"]', "[]"]
)


def _tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def plain_tok(test_model_dir):
    return _tokenizer(test_model_dir)


@pytest.fixture(scope="module")
def bos_tok(test_model_dir):
    from tokenizers.processors import TemplateProcessing

    tok = _tokenizer(test_model_dir)
    b = tok.bos_token
    tok._tokenizer.post_processor = TemplateProcessing(
        single=f"{b} $A", pair=f"{b} $A {b} $B", special_tokens=[(b, tok.bos_token_id)]
    )
    assert tok("Paris")["input_ids"][0] == tok.bos_token_id  # the tokenizer really adds it now
    return tok


def _engines(ner, tok):
    return {path: HFEngine(ner.engine.model, tok, "cpu", path=path) for path in ("fast", "plain")}


def _requests(template, texts=(TEXT, TEXT2)):
    return [Request(template.prompt(t, label), t, group=g) for g, t in enumerate(texts) for label in LABELS]


# ------------------------------------------------------------------ the rule
def test_the_test_models_tokenizer_adds_nothing_so_nothing_changes(plain_tok, ner):
    """The lead's students are tuned on this tokenizer: its ids must be what they always were."""
    assert special_prefix(plain_tok) == [] and prefix_text(plain_tok) == ""
    for layout in ("uniner", "chat"):
        template = get_template(layout, plain_tok)
        prompts = [r.prompt for r in _requests(template)]
        want = [plain_tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        assert prompt_ids(plain_tok, prompts)[0] == want
        assert ner.engine._encode_with_passages(_requests(template))[0] == want
        enc = Encoder(plain_tok, template).encode(CONV)
        text = template.render(CONV)
        assert enc.input_ids == plain_tok(text, add_special_tokens=False)["input_ids"]


def test_prefix_is_read_off_the_tokenizer_and_never_doubled(bos_tok):
    bos = bos_tok.bos_token_id
    assert special_prefix(bos_tok) == [bos] and prefix_text(bos_tok) == bos_tok.bos_token
    assert with_prefix([bos], [5, 6]) == [bos, 5, 6]
    assert with_prefix([bos], [bos, 5]) == [bos, 5]  # a text that starts with its own BOS
    assert with_prefix([], [5]) == [5]
    ids, offs = prompt_ids(bos_tok, ["Paris is big", "<|im_start|>user"], offsets=True)
    assert ids[0] == bos_tok("Paris is big")["input_ids"] and offs[0][0] == (0, 0)
    assert ids[1] == bos_tok("<|im_start|>user", add_special_tokens=False)["input_ids"]
    assert len(offs[1]) == len(ids[1])


# ------------------------------------------------------------------ transformers: plain and fast paths
def test_uniner_prompt_ids_are_the_tokenizers_own_in_both_paths(ner, bos_tok, monkeypatch):
    template = get_template("uniner", bos_tok)
    reqs = _requests(template)
    want = [bos_tok(r.prompt)["input_ids"] for r in reqs]
    assert all(w[0] == bos_tok.bos_token_id and w[1] != bos_tok.bos_token_id for w in want)
    engines = _engines(ner, bos_tok)

    # the fast path: its token ids, and the passage regions mapped onto them (shifted by the BOS)
    enc, regions = engines["fast"]._encode_with_passages(reqs)
    assert enc == want
    for r, (_, _, at_char) in zip(reqs, regions, strict=True):
        offs = bos_tok(r.prompt, return_offsets_mapping=True)["offset_mapping"]
        start = r.prompt.rfind(r.passage)
        assert at_char and all(offs[k][0] - start == c for c, k in at_char.items())
    # the same regions as without the BOS, one token later
    _, unshifted = ner.engine._encode_with_passages(reqs)
    for (lo, hi, at_char), (lo0, hi0, at0) in zip(regions, unshifted, strict=True):
        assert (lo, hi) == (lo0 + 1, hi0 + 1) and at_char == {c: k + 1 for c, k in at0.items()}

    # the plain path: what model.generate is given
    seen = []
    real = engines["plain"].model.generate

    def recording(**kw):
        mask = kw["attention_mask"]
        seen.extend(row[m.bool()].tolist() for row, m in zip(kw["input_ids"], mask, strict=True))
        return real(**kw)

    monkeypatch.setattr(engines["plain"].model, "generate", recording)
    plain = engines["plain"].generate(reqs, max_new_tokens=8)
    monkeypatch.undo()
    assert seen == want
    fast = engines["fast"].generate(reqs, max_new_tokens=8)
    assert [g.text for g in fast] == [g.text for g in plain]
    assert [g.prompt_tokens for g in fast] == [g.prompt_tokens for g in plain] == [len(w) for w in want]
    for f, p in zip(fast, plain, strict=True):
        assert [s[:2] for s in f.token_spans] == [s[:2] for s in p.token_spans]
        assert all(abs(a[2] - b[2]) < 1e-3 for a, b in zip(f.token_spans, p.token_spans, strict=True))
    # and the BOS reached the model: the same prompts without it are scored differently
    without = ner.engine.generate(reqs, max_new_tokens=8)
    assert any(
        abs(a[2] - b[2]) > 1e-3
        for f, w in zip(fast, without, strict=True)
        for a, b in zip(f.token_spans, w.token_spans, strict=False)
    )


def test_constrained_answers_agree_between_paths_with_a_bos(ner, bos_tok):
    reqs = _requests(get_template("uniner", bos_tok))
    engines = _engines(ner, bos_tok)
    fast = engines["fast"].generate(reqs, max_new_tokens=16, constrained=True)
    plain = engines["plain"].generate(reqs, max_new_tokens=16, constrained=True)
    assert [g.text for g in fast] == [g.text for g in plain]
    for g in fast:
        assert isinstance(json.loads(g.text), list)


def test_a_chat_template_that_writes_the_bos_gets_no_second_one(ner, bos_tok):
    template = get_template("chat", bos_tok)
    reqs = _requests(template, (TEXT,))
    assert all(r.prompt.startswith(bos_tok.bos_token) for r in reqs)
    want = [bos_tok(r.prompt, add_special_tokens=False)["input_ids"] for r in reqs]
    assert all(w[0] == bos_tok.bos_token_id and w[1] != bos_tok.bos_token_id for w in want)
    assert _engines(ner, bos_tok)["fast"]._encode_with_passages(reqs)[0] == want
    assert prompt_ids(bos_tok, [r.prompt for r in reqs])[0] == want
    enc = Encoder(bos_tok, template).encode(CONV)
    assert enc.input_ids[:2] == [bos_tok.bos_token_id, want[0][1]]
    assert enc.input_ids == bos_tok(template.render(CONV), add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------ tune's collator
@pytest.mark.parametrize("layout", ["uniner", "chat"])
def test_training_ids_start_like_inference_and_labels_line_up(bos_tok, layout):
    template = get_template(layout, bos_tok)
    encoder = Encoder(bos_tok, template)
    enc = encoder.encode(CONV)
    ids, labels = enc.input_ids, enc.labels
    text = template.render(CONV)
    if layout == "uniner":  # the tokenizer's own sequence for the whole conversation
        assert ids == bos_tok(text)["input_ids"]
    assert ids[0] == bos_tok.bos_token_id and ids[1] != bos_tok.bos_token_id
    assert labels[0] == IGNORE  # the BOS carries no loss
    assert all(lab in (IGNORE, i) for i, lab in zip(ids, labels, strict=True))
    # what inference feeds for the first question is exactly the training sequence up to the first target
    prompt = template.prompt(CONV.text, CONV.questions[0])
    (p_ids,), _ = prompt_ids(bos_tok, [prompt])
    first = next(i for i, lab in enumerate(labels) if lab != IGNORE)
    assert ids[:first] == p_ids
    # every answer is labelled, and nothing else: the targets decode to the answers with their end token
    targets, run = [], []
    for i, lab in enumerate([*labels, IGNORE]):
        if lab != IGNORE:
            run.append(ids[i])
        elif run:
            targets.append(bos_tok.decode(run))
            run = []
    assert [t.strip() for t in targets] == [a + bos_tok.eos_token for a in CONV.answers]
    # both labellers agree, BOS included
    spans = [(a, b) for a, b in _target_spans(encoder, CONV)]
    assert label_by_offsets(bos_tok, text, spans) == label_by_pieces(bos_tok, text, spans) == (ids, labels)


def _target_spans(encoder, conv):
    from universalner.tune.collate import target_spans

    return target_spans(encoder.template, conv, encoder.shift)[1]


def test_truncation_counts_the_bos(bos_tok):
    template = get_template("uniner", bos_tok)
    full = Encoder(bos_tok, template).encode(CONV)
    cut = Encoder(bos_tok, template, max_length=len(full) - 1).encode(CONV)
    assert cut.pairs == 2 and len(cut) < len(full) and cut.input_ids[0] == bos_tok.bos_token_id


def test_cache_key_changes_with_a_bos_and_only_then(plain_tok, bos_tok, test_model_dir):
    import hashlib

    from universalner import __version__
    from universalner.tune import cache
    from universalner.tune.train import TuneConfig

    cfg = TuneConfig(str(test_model_dir), "out", data=["x.json"])
    assert cache.fingerprint(cfg, "uniner", plain_tok) != cache.fingerprint(cfg, "uniner", bos_tok)
    # a tokenizer that adds nothing keeps the key it had before BOS was handled: a run being tuned on
    # it resumes from its cached tokenised data
    before = {
        "format": cache._FORMAT,
        "version": __version__,
        "data": [cache._file_stamp(p) for p in cfg.data],
        "supervised": [],
        "labels_map": None,
        "seed": cfg.seed,
        "max_length": cfg.max_length,
        "layout": "uniner",
        "tokenizer": [
            plain_tok.name_or_path,
            len(plain_tok),
            plain_tok.eos_token,
            plain_tok.chat_template,
            list(plain_tok("Text: Zürich <|x|> 12 ", add_special_tokens=False)["input_ids"]),
        ],
    }
    key = hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:24]
    assert cache.fingerprint(cfg, "uniner", plain_tok) == key


# ------------------------------------------------------------------ openai: what the server adds itself
@pytest.fixture(scope="module")
def bos_server(ner, bos_tok):
    from completions_server import CompletionsServer

    # the server runs the transformers engine on the BOS tokenizer: like vLLM, it adds the BOS itself
    with CompletionsServer(HFEngine(ner.engine.model, bos_tok, "cpu"), "bos-student") as server:
        yield server


@pytest.mark.parametrize("layout", ["uniner", "chat"])
def test_openai_sends_prompts_the_server_turns_into_one_bos(ner, bos_tok, bos_server, layout):
    import openai

    from universalner import UniversalNER
    from universalner.engines.openai import OpenAIEngine

    client = openai.OpenAI(base_url=bos_server.base_url, api_key="EMPTY", max_retries=0)
    engine = OpenAIEngine(client, "bos-student", tokenizer=bos_tok)
    ner_ = UniversalNER(engine, template=layout, max_new_tokens=8, constrained=False)
    prompt = ner_.prompt(TEXT, "person")
    intended = prompt_ids(bos_tok, [prompt])[0][0]  # what the transformers engine feeds
    before = len(bos_server.prompts)
    (gen,) = engine.generate([Request(prompt, TEXT)], max_new_tokens=8)
    (received,) = bos_server.prompts[before:]
    # a server tokenizes the completions prompt with special tokens (vLLM: add_special_tokens=True)
    assert bos_tok(received)["input_ids"] == intended
    if layout == "uniner":
        assert received == prompt
    else:  # the template's own BOS is left to the server
        assert prompt.startswith(bos_tok.bos_token) and received == prompt[len(bos_tok.bos_token) :]
    assert gen.prompt_tokens == len(intended)
    (direct,) = HFEngine(ner.engine.model, bos_tok, "cpu").generate([Request(prompt, TEXT)], max_new_tokens=8)
    assert gen.text == direct.text.split(bos_tok.eos_token)[0]


# ------------------------------------------------------------------ GGUF files (llama.cpp, openai)
def _with_add_bos(src, dst, value: bool):
    """A copy of a GGUF file with its header's ``tokenizer.ggml.add_bos_token`` set to ``value``."""
    data = bytearray(src.read_bytes())
    key = b"tokenizer.ggml.add_bos_token"
    at = data.index(struct.pack("<Q", len(key)) + key) + 8 + len(key)
    assert struct.unpack_from("<I", data, at)[0] == 7  # a bool
    data[at + 4] = int(value)
    dst.write_bytes(bytes(data))
    return dst


def test_gguf_header_says_whether_the_bos_is_added(test_gguf, tmp_path):
    from universalner.weights.gguf import GGUFTokenizer, read_gguf_metadata

    off = GGUFTokenizer.from_file(test_gguf)
    assert off.bos_token == "<|im_start|>" and not off.add_bos_token and prefix_text(off) == ""
    on = GGUFTokenizer.from_file(_with_add_bos(test_gguf, tmp_path / "bos.gguf", True))
    assert on.add_bos_token and prefix_text(on) == "<|im_start|>"
    assert read_gguf_metadata(tmp_path / "bos.gguf", ["tokenizer.ggml.add_bos_token"]) == {
        "tokenizer.ggml.add_bos_token": True
    }
    # files without the flag: llama.cpp's and transformers' default, BOS for a sentencepiece vocabulary
    meta = {"tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>"], "tokenizer.ggml.bos_token_id": 1}
    assert GGUFTokenizer.from_metadata({**meta, "tokenizer.ggml.model": "llama"}).add_bos_token
    assert not GGUFTokenizer.from_metadata({**meta, "tokenizer.ggml.model": "gpt2"}).add_bos_token


def test_llamacpp_adds_the_files_bos_like_transformers(test_gguf, bos_tok, tmp_path):
    pytest.importorskip("llama_cpp", exc_type=ImportError)
    from universalner.engines.llamacpp import LlamaCppEngine

    path = _with_add_bos(test_gguf, tmp_path / "bos.gguf", True)
    eng = LlamaCppEngine(path, n_ctx=512, max_sequences=2)
    try:
        for layout in ("uniner", "chat"):
            prompt = get_template(layout, bos_tok).prompt(TEXT, "person")
            assert eng.prompt_tokens(prompt) == prompt_ids(bos_tok, [prompt])[0][0]
    finally:
        eng.close()
    shutil.rmtree(tmp_path, ignore_errors=True)
